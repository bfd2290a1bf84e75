//! Debian package versions (`[epoch:]upstream[-revision]`), parsed and ordered exactly as dpkg does.
//!
//! Why this is written here rather than taken from crates.io: the best-kept crate, `debversion`
//! (0.5, maintained by a Debian developer), orders versions correctly, but
//! - its `Hash` hashes the raw parts while its `Eq` follows dpkg, so `1.0` and `1.0-0` are equal
//!   yet hash differently, which breaks `HashMap`/`HashSet`;
//! - it accepts strings dpkg rejects (`1.0-` parses as upstream `1.0-`, `a:1` as upstream `a:1`)
//!   and epochs above dpkg's limit of `i32::MAX`;
//! - `Display` re-renders the parts instead of returning the original text (`00:1` prints `0:1`);
//! - it always pulls in `lazy-regex` (regex + proc macro), `num-bigint` and `chrono`.
//!
//! dpkg's algorithm (`lib/dpkg/version.c`, `verrevcmp`) is about sixty lines, so it is cheaper to
//! own it and test it against dpkg itself (see `tests/version.rs`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Largest epoch dpkg accepts (it stores epochs in a C `int`).
pub const MAX_EPOCH: u32 = i32::MAX as u32;

/// A Debian package version such as `1:2.30-1+deb12u1`.
///
/// # Parsing
/// `FromStr` accepts exactly the strings that dpkg's `parseversion` accepts without an error,
/// including those it only warns about (upstream not starting with a digit, characters outside
/// the Policy set such as `_`); use [`DebianVersion::policy_violation`] to find those. Leading and
/// trailing spaces and tabs are trimmed, as dpkg does. Two deliberate restrictions beyond dpkg:
/// only printable ASCII is accepted (dpkg would compare other bytes through a signed `char`), and
/// the epoch must be plain digits (dpkg's `strtol` also takes a sign, e.g. `+1:2`).
///
/// # Equality, ordering and hashing
/// `Ord` is dpkg's `dpkg_version_compare`. `Eq` and `Hash` follow `Ord`: two versions are equal
/// when dpkg says so, even if they are written differently: `1.0` == `0:1.0` == `1.0-0` ==
/// `1.00`. Compare [`DebianVersion::as_str`] when the exact spelling matters.
#[derive(Clone)]
pub struct DebianVersion {
    /// The version as written (trimmed); `Display` returns it unchanged.
    text: String,
    epoch: u32,
    /// Byte range of the upstream version in `text`.
    upstream: (usize, usize),
    /// Byte offset in `text` of the revision (just after the last hyphen), if there is one.
    revision: Option<usize>,
}

/// Why a string is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version string is empty; a Debian version looks like '1.2-3' or '1:1.2-3'")]
    Empty,
    #[error(
        "version {version:?} contains {found:?}, which is not allowed; versions are printable ASCII without spaces"
    )]
    InvalidCharacter { version: String, found: char },
    #[error(
        "version {version:?} has an empty epoch before ':'; put digits before the colon (e.g. '1:2.0') or drop it"
    )]
    EmptyEpoch { version: String },
    #[error(
        "version {version:?} has an epoch that is not a number: the part before the first ':' must be digits"
    )]
    EpochNotNumber { version: String },
    #[error("version {version:?} has an epoch larger than {MAX_EPOCH}, which dpkg rejects")]
    EpochTooBig { version: String },
    #[error("version {version:?} has nothing after the epoch's ':'")]
    NothingAfterColon { version: String },
    #[error(
        "version {version:?} ends in '-' with no revision after it; drop the '-' or add a revision"
    )]
    EmptyRevision { version: String },
    #[error("version {version:?} has an empty upstream part before its revision")]
    EmptyUpstream { version: String },
}

/// What dpkg would warn about in a version it still accepts (Debian Policy §5.6.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyViolation {
    /// The upstream version does not start with a digit.
    UpstreamDoesNotStartWithDigit,
    /// The upstream version has a character other than `A-Za-z0-9.+-~:`.
    InvalidUpstreamCharacter(char),
    /// The revision has a character other than `A-Za-z0-9.+~`.
    InvalidRevisionCharacter(char),
}

impl DebianVersion {
    /// The version as written (leading and trailing blanks removed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch, 0 when none is written.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version: between the epoch's colon and the last hyphen.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The Debian revision after the last hyphen, if any.
    pub fn revision(&self) -> Option<&str> {
        self.revision.map(|start| &self.text[start..])
    }

    /// What dpkg would warn about in this version, or `None` when it follows Debian Policy.
    pub fn policy_violation(&self) -> Option<PolicyViolation> {
        let upstream = self.upstream();
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Some(PolicyViolation::UpstreamDoesNotStartWithDigit);
        }
        if let Some(c) = upstream
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".+-~:".contains(c)))
        {
            return Some(PolicyViolation::InvalidUpstreamCharacter(c));
        }
        let revision = self.revision().unwrap_or("");
        if let Some(c) = revision
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".+~".contains(c)))
        {
            return Some(PolicyViolation::InvalidRevisionCharacter(c));
        }
        None
    }
}

impl FromStr for DebianVersion {
    type Err = VersionError;

    /// Follows dpkg's `parseversion`; see the type's documentation for what is accepted.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim_matches([' ', '\t']);
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        let version = || text.to_owned();
        if let Some(found) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(VersionError::InvalidCharacter {
                version: version(),
                found,
            });
        }

        let (epoch, upstream_start) = match text.find(':') {
            None => (0, 0),
            Some(colon) => {
                let digits = &text[..colon];
                if digits.is_empty() {
                    return Err(VersionError::EmptyEpoch { version: version() });
                }
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::EpochNotNumber { version: version() });
                }
                let epoch = digits
                    .parse::<u64>()
                    .ok()
                    .and_then(|epoch| u32::try_from(epoch).ok())
                    .filter(|&epoch| epoch <= MAX_EPOCH)
                    .ok_or_else(|| VersionError::EpochTooBig { version: version() })?;
                if colon + 1 == text.len() {
                    return Err(VersionError::NothingAfterColon { version: version() });
                }
                (epoch, colon + 1)
            }
        };

        let (upstream_end, revision) = match text[upstream_start..].rfind('-') {
            None => (text.len(), None),
            Some(offset) => {
                let hyphen = upstream_start + offset;
                if hyphen + 1 == text.len() {
                    return Err(VersionError::EmptyRevision { version: version() });
                }
                (hyphen, Some(hyphen + 1))
            }
        };
        if upstream_end == upstream_start {
            return Err(VersionError::EmptyUpstream { version: version() });
        }

        Ok(Self {
            text: text.to_owned(),
            epoch,
            upstream: (upstream_start, upstream_end),
            revision,
        })
    }
}

impl fmt::Display for DebianVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for DebianVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DebianVersion({:?})", self.text)
    }
}

impl Ord for DebianVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| {
                compare_part(
                    self.revision().unwrap_or(""),
                    other.revision().unwrap_or(""),
                )
            })
    }
}

impl PartialOrd for DebianVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebianVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebianVersion {}

impl Hash for DebianVersion {
    /// Hashes what the comparison looks at, so versions that compare equal hash equally.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        hash_part(self.upstream(), state);
        hash_part(self.revision().unwrap_or(""), state);
    }
}

/// dpkg's `verrevcmp`: compares an upstream version or a revision.
///
/// Both strings are read as alternating runs: non-digits, then digits. Non-digit runs are
/// compared character by character where `~` sorts before the end of the run, the end before
/// letters, and letters before everything else; digit runs are compared as numbers of any length.
/// A missing run counts as an empty non-digit run and the number 0.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (Runs::new(a), Runs::new(b));
    loop {
        let (left, right) = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (left, right) => (left.unwrap_or_default(), right.unwrap_or_default()),
        };
        let order = compare_non_digits(left.non_digits, right.non_digits)
            .then_with(|| compare_numbers(left.digits, right.digits));
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// One step of `verrevcmp`: a run of non-digits and the run of digits after it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Run<'a> {
    non_digits: &'a [u8],
    /// Without leading zeros, so equal numbers have equal digits.
    digits: &'a [u8],
}

struct Runs<'a> {
    rest: &'a [u8],
}

impl<'a> Runs<'a> {
    fn new(part: &'a str) -> Self {
        Self {
            rest: part.as_bytes(),
        }
    }
}

impl<'a> Iterator for Runs<'a> {
    type Item = Run<'a>;

    fn next(&mut self) -> Option<Run<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let digits_start = self
            .rest
            .iter()
            .position(u8::is_ascii_digit)
            .unwrap_or(self.rest.len());
        let (non_digits, rest) = self.rest.split_at(digits_start);
        let digits_end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, rest) = rest.split_at(digits_end);
        self.rest = rest;
        let zeros = digits.iter().take_while(|&&b| b == b'0').count();
        Some(Run {
            non_digits,
            digits: &digits[zeros..],
        })
    }
}

/// dpkg's `order()`: the weight of one character of a non-digit run (`None` is the run's end).
fn weight(c: Option<&u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(&c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(&c) => i32::from(c) + 256,
    }
}

fn compare_non_digits(a: &[u8], b: &[u8]) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| weight(a.get(i)).cmp(&weight(b.get(i))))
        .find(|order| order.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Compares two digit runs without leading zeros as numbers, whatever their length.
fn compare_numbers(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn hash_part<H: Hasher>(part: &str, state: &mut H) {
    // A run with no characters and the number 0 compares equal to a missing run, so it is left
    // out; such a run can only be the whole part (e.g. a revision of "0").
    for run in Runs::new(part).filter(|run| *run != Run::default()) {
        run.non_digits.hash(state);
        run.digits.hash(state);
    }
    // Separates the upstream version's runs from the revision's.
    state.write_u8(0xff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn v(s: &str) -> DebianVersion {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn hash_of(version: &DebianVersion) -> u64 {
        let mut hasher = DefaultHasher::new();
        version.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn splits_epoch_upstream_and_revision() {
        let version = v("1:2.30-1+deb12u1");
        assert_eq!(version.epoch(), 1);
        assert_eq!(version.upstream(), "2.30");
        assert_eq!(version.revision(), Some("1+deb12u1"));

        // The revision starts after the last hyphen; colons may follow an epoch.
        let version = v("7:1-a:b-5");
        assert_eq!(version.epoch(), 7);
        assert_eq!(version.upstream(), "1-a:b");
        assert_eq!(version.revision(), Some("5"));

        let version = v("2.4");
        assert_eq!(version.epoch(), 0);
        assert_eq!(version.upstream(), "2.4");
        assert_eq!(version.revision(), None);
    }

    #[test]
    fn display_returns_the_original_text() {
        for text in ["00:1.0", "0:1.0-0", "1.0", "1:2.30-1+deb12u1", "1.0~rc1"] {
            assert_eq!(v(text).to_string(), text);
        }
        assert_eq!(v(" \t1.0-1 ").to_string(), "1.0-1");
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        let owned = |s: &str| s.to_owned();
        let cases = [
            ("", VersionError::Empty),
            ("  ", VersionError::Empty),
            (
                "1.0 2",
                VersionError::InvalidCharacter {
                    version: owned("1.0 2"),
                    found: ' ',
                },
            ),
            (
                "1.0é",
                VersionError::InvalidCharacter {
                    version: owned("1.0é"),
                    found: 'é',
                },
            ),
            (
                ":1.0",
                VersionError::EmptyEpoch {
                    version: owned(":1.0"),
                },
            ),
            (
                "a:1.0",
                VersionError::EpochNotNumber {
                    version: owned("a:1.0"),
                },
            ),
            (
                "1-1:2",
                VersionError::EpochNotNumber {
                    version: owned("1-1:2"),
                },
            ),
            (
                "+1:2",
                VersionError::EpochNotNumber {
                    version: owned("+1:2"),
                },
            ),
            (
                "2147483648:1",
                VersionError::EpochTooBig {
                    version: owned("2147483648:1"),
                },
            ),
            (
                "99999999999999999999999:1",
                VersionError::EpochTooBig {
                    version: owned("99999999999999999999999:1"),
                },
            ),
            (
                "1:",
                VersionError::NothingAfterColon {
                    version: owned("1:"),
                },
            ),
            (
                "1.0-",
                VersionError::EmptyRevision {
                    version: owned("1.0-"),
                },
            ),
            (
                "1:1.0-1-",
                VersionError::EmptyRevision {
                    version: owned("1:1.0-1-"),
                },
            ),
            (
                "-1",
                VersionError::EmptyUpstream {
                    version: owned("-1"),
                },
            ),
            (
                "1:-1",
                VersionError::EmptyUpstream {
                    version: owned("1:-1"),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                text.parse::<DebianVersion>().err(),
                Some(expected),
                "{text:?}"
            );
        }
        assert_eq!(v("2147483647:1").epoch(), MAX_EPOCH);
    }

    #[test]
    fn accepts_what_dpkg_only_warns_about() {
        assert_eq!(
            v("a1.0").policy_violation(),
            Some(PolicyViolation::UpstreamDoesNotStartWithDigit)
        );
        assert_eq!(
            v("~").policy_violation(),
            Some(PolicyViolation::UpstreamDoesNotStartWithDigit)
        );
        assert_eq!(
            v("1.0_1").policy_violation(),
            Some(PolicyViolation::InvalidUpstreamCharacter('_'))
        );
        assert_eq!(
            v("1.0-a_b").policy_violation(),
            Some(PolicyViolation::InvalidRevisionCharacter('_'))
        );
        assert_eq!(v("1:2.30-1+deb12u1~bpo1").policy_violation(), None);
    }

    #[test]
    fn tilde_sorts_before_everything_including_the_end() {
        let ordered = ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a", "1.0+", "1.0."];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        // The same rules inside revisions.
        assert!(v("1.0-0~") < v("1.0"));
        assert!(v("1.0-1~bpo1") < v("1.0-1"));
    }

    #[test]
    fn policy_and_dpkg_examples() {
        let less = [
            ("1.0~rc1", "1.0"),
            ("1.0-1", "1.0-1.1"),
            ("2.3-1", "2.30-1"),
            ("1:1.25-4", "1:1.25-8"),
            ("10.3", "1:0.4"),
            ("2.0.7pre1-4", "2.0.7r-1"),
            ("0.5.0~git", "0.5.0~git2"),
            ("2a", "21"),
            ("3a9.8", "3.10.2"),
            ("3~10", "3a9.8"),
            ("1.2-5", "1.2-3-5"),
            ("1.2a+~bCd3", "1.2a++"),
            ("1.2a+~", "1.2a+~bCd3"),
            ("1:1.2.13-3", "1:1.2.13-3.1"),
            ("3.0~rc1-1", "3.0-1"),
            ("1.0", "1.0-0+b1"),
            ("1.0-0~", "1.0"),
            ("1:2:123", "1:12:3"),
            ("5:2", "304:2"),
            ("304-2", "5:2"),
            ("2.4.7-1", "2.4.7-z"),
            ("1.00", "1.002-1+b2"),
            ("5.005", "5.10.0"),
            ("1.0", "1.0a"),
        ];
        for (low, high) in less {
            assert!(v(low) < v(high), "{low} < {high}");
            assert!(v(high) > v(low), "{high} > {low}");
        }
        let equal = [
            ("1.0", "1.0-0"),
            ("0:1.0", "1.0"),
            ("1.00", "1.0"),
            ("009ab5", "9ab5"),
            ("0", "000"),
            ("0:0-0", "0"),
            ("1.2.3", "0:1.2.3-0"),
            ("57:1.2.3abYZ+~-4-5", "57:1.2.3abYZ+~-4-5"),
        ];
        for (a, b) in equal {
            assert_eq!(v(a).cmp(&v(b)), Ordering::Equal, "{a} == {b}");
            assert_eq!(v(a), v(b));
            assert_eq!(hash_of(&v(a)), hash_of(&v(b)), "hash({a}) == hash({b})");
        }
    }

    #[test]
    fn long_digit_runs_are_compared_as_numbers() {
        let big = "123456789012345678901234567890";
        let bigger = "123456789012345678901234567891";
        assert!(v(big) < v(bigger));
        assert!(v(&format!("1.{big}")) < v(&format!("1.1{big}")));
        assert_eq!(v(&format!("000000000000000000000000{big}")), v(big));
        assert!(v("99999999999999999999999") < v("100000000000000000000000"));
    }

    #[test]
    fn equal_versions_written_differently_are_one_hash_set_entry() {
        let set: std::collections::HashSet<DebianVersion> =
            ["1.0", "0:1.0", "1.0-0", "1.00", "1.0-00", "1.1"]
                .into_iter()
                .map(v)
                .collect();
        assert_eq!(set.len(), 2);
    }
}
