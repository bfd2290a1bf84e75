//! Debian versions for matching: an owned, pre-parsed [`Version`] in the index and a borrowed [`VersionView`] of a device's string, compared without allocating.
//!
//! [`patchbay_debian::DebianVersion`] owns its text, so parsing one allocates. A fleet scan
//! reads about 30 million installed version strings, and the engine promises no allocation per
//! device beyond its output, so installed versions are only *viewed* here: [`VersionView::parse`]
//! accepts exactly the strings `DebianVersion::from_str` accepts, and [`VersionView::cmp`]
//! orders exactly as `DebianVersion`'s `Ord` does (dpkg's `verrevcmp`); a property test holds
//! both to `DebianVersion`. When a string is rejected, the message comes from
//! `DebianVersion::from_str` itself ([`version_error`]), so problems read the same everywhere.
//!
//! This belongs next to `DebianVersion` in `patchbay-debian` (as a borrowed variant of it); it
//! lives here until that crate grows one.

use std::cmp::Ordering;

use patchbay_debian::DebianVersion;
use patchbay_debian::version::MAX_EPOCH;

/// A Debian version borrowed from its text: `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionView<'a> {
    /// The whole version, trimmed as dpkg trims it.
    pub(crate) text: &'a str,
    pub(crate) epoch: u32,
    pub(crate) upstream: &'a str,
    /// Empty when the version has no revision (dpkg compares a missing revision as empty).
    pub(crate) revision: &'a str,
}

impl<'a> VersionView<'a> {
    /// The version `text` denotes, or `None` when `DebianVersion::from_str` would reject it.
    ///
    /// One pass over the bytes (this runs for every installed package of every device): blanks
    /// are trimmed, every other byte must be printable ASCII, the epoch ends at the first `:` and
    /// the revision starts after the last `-`.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let text = text.trim_matches(|c| c == ' ' || c == '\t');
        let mut colon = None;
        let mut hyphen = None;
        for (i, &byte) in text.as_bytes().iter().enumerate() {
            match byte {
                b':' if colon.is_none() => colon = Some(i),
                b'-' => hyphen = Some(i),
                byte if !byte.is_ascii_graphic() => return None,
                _ => {}
            }
        }
        let (epoch, upstream_start) = match colon {
            None => (0, 0),
            Some(colon) => {
                let digits = text.get(..colon)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let epoch = digits.bytes().try_fold(0u64, |value, digit| {
                    value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
                })?;
                let epoch = u32::try_from(epoch).ok().filter(|&e| e <= MAX_EPOCH)?;
                (epoch, colon + 1)
            }
        };
        // The epoch is digits only, so the last hyphen, if any, is after it.
        let (upstream, revision) = match hyphen {
            None => (text.get(upstream_start..)?, ""),
            Some(hyphen) => (text.get(upstream_start..hyphen)?, text.get(hyphen + 1..)?),
        };
        // Also rejects an empty text, and nothing after the epoch's colon.
        if upstream.is_empty() || (hyphen.is_some() && revision.is_empty()) {
            return None;
        }
        Some(Self {
            text,
            epoch,
            upstream,
            revision,
        })
    }

    /// dpkg's order, as `DebianVersion`'s `Ord`.
    pub(crate) fn cmp(&self, other: &VersionView<'_>) -> Ordering {
        if self.text == other.text {
            return Ordering::Equal;
        }
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
    }
}

/// Why `text` is not a Debian version, in `DebianVersion::from_str`'s words.
pub(crate) fn version_error(text: &str) -> String {
    match text.parse::<DebianVersion>() {
        Err(error) => error.to_string(),
        Ok(_) => "it does not parse".to_owned(),
    }
}

/// A version kept in the index: its text and where its parts start, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Version {
    text: Box<str>,
    epoch: u32,
    upstream: (u32, u32),
    revision: u32,
}

impl Version {
    /// Parses `text` (see [`VersionView::parse`]); the error says why it is not a version.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let view = VersionView::parse(text).ok_or_else(|| version_error(text))?;
        let len =
            u32::try_from(view.text.len()).map_err(|_| "the version is too long".to_owned())?;
        // Offsets fit in u32 because the whole text does.
        let revision = len - view.revision.len() as u32;
        let upstream_end = if view.revision.is_empty() {
            len
        } else {
            revision - 1
        };
        Ok(Self {
            text: view.text.into(),
            epoch: view.epoch,
            upstream: (upstream_end - view.upstream.len() as u32, upstream_end),
            revision,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn view(&self) -> VersionView<'_> {
        let part = |start: u32, end: u32| self.text.get(start as usize..end as usize).unwrap_or("");
        VersionView {
            text: &self.text,
            epoch: self.epoch,
            upstream: part(self.upstream.0, self.upstream.1),
            revision: self.text.get(self.revision as usize..).unwrap_or(""),
        }
    }
}

/// dpkg's `order()`: the weight of a character in a non-digit run; 0 ends the run.
fn order(c: u8) -> i32 {
    match c {
        b'0'..=b'9' => 0,
        b'~' => -1,
        c if c.is_ascii_alphabetic() => i32::from(c),
        c => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` over bytes, as in `lib/dpkg/version.c`: alternating non-digit runs
/// (compared by [`order`], the end of a string weighing 0) and digit runs (compared as numbers).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b {
        return Ordering::Equal;
    }
    // Versions of one package mostly share a long prefix (`9+deb12u7` vs `9+deb12u10`). The
    // comparison walks both strings in lockstep and identical characters compare equal, so it can
    // start after the common prefix, provided it starts outside a digit run (digit runs are
    // compared as whole numbers): back off over any digits the prefix ends with.
    let mut common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while common > 0 && a[common - 1].is_ascii_digit() {
        common -= 1;
    }
    let (a, b) = (&a[common..], &b[common..]);
    let at = |s: &[u8], i: usize| s.get(i).copied();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while at(a, i).is_some_and(|c| !c.is_ascii_digit())
            || at(b, j).is_some_and(|c| !c.is_ascii_digit())
        {
            let (ac, bc) = (at(a, i).map_or(0, order), at(b, j).map_or(0, order));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == Some(b'0') {
            i += 1;
        }
        while at(b, j) == Some(b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while let (Some(x), Some(y)) = (at(a, i), at(b, j)) {
            if !(x.is_ascii_digit() && y.is_ascii_digit()) {
                break;
            }
            if first_difference.is_eq() {
                first_difference = x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_some_and(|c| c.is_ascii_digit()) {
            return Ordering::Greater;
        }
        if at(b, j).is_some_and(|c| c.is_ascii_digit()) {
            return Ordering::Less;
        }
        if first_difference.is_ne() {
            return first_difference;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> DebianVersion {
        s.parse().unwrap()
    }

    #[test]
    fn splits_like_debian_version() {
        let view = VersionView::parse(" 1:2.30-1+deb12u1\t").unwrap();
        assert_eq!(
            (view.epoch, view.upstream, view.revision),
            (1, "2.30", "1+deb12u1")
        );
        let view = VersionView::parse("7:1-a:b-5").unwrap();
        assert_eq!(
            (view.epoch, view.upstream, view.revision),
            (7, "1-a:b", "5")
        );
        let view = VersionView::parse("2.4").unwrap();
        assert_eq!((view.epoch, view.upstream, view.revision), (0, "2.4", ""));
    }

    #[test]
    fn rejects_what_debian_version_rejects() {
        for bad in [
            "",
            " ",
            "1.0 2",
            "1.0é",
            ":1.0",
            "a:1.0",
            "1-1:2",
            "99999999999:1",
            "1:",
            "1.0-",
            "-1",
            "1:-1",
        ] {
            assert!(VersionView::parse(bad).is_none(), "{bad:?}");
            assert!(bad.parse::<DebianVersion>().is_err(), "{bad:?}");
        }
        assert!(VersionView::parse("0000000000000000000000001:1").is_some());
    }

    #[test]
    fn orders_like_dpkg() {
        let cases = [
            ("1.0", "1.0-0", Ordering::Equal),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0", "1.0+b1", Ordering::Less),
            ("1:0.9", "2.0", Ordering::Greater),
            ("2.39.5-0+deb12u1", "2.39.5-0+deb12u2", Ordering::Less),
            ("1.00", "1.0", Ordering::Equal),
            ("1.0a", "1.0.", Ordering::Less),
            ("5.2.15-2+b10~rc1", "5.2.15-2+b9", Ordering::Greater),
        ];
        for (a, b, expected) in cases {
            let view = VersionView::parse(a).unwrap();
            assert_eq!(
                view.cmp(&Version::parse(b).unwrap().view()),
                expected,
                "{a} vs {b}"
            );
            assert_eq!(v(a).cmp(&v(b)), expected, "{a} vs {b} by DebianVersion");
        }
    }

    fn version_text() -> impl Strategy<Value = String> {
        prop_oneof![
            // Mostly well-formed pieces, so that many strings parse and comparisons get deep.
            (
                prop::option::of(0u32..3),
                "[0-9][0-9a-z.+~]{0,6}",
                prop::option::of("[0-9a-z.+~]{1,5}"),
            )
                .prop_map(|(epoch, upstream, revision)| {
                    let mut text = epoch.map(|e| format!("{e}:")).unwrap_or_default();
                    text.push_str(&upstream);
                    if let Some(revision) = revision {
                        text.push('-');
                        text.push_str(&revision);
                    }
                    text
                }),
            // Anything from a small alphabet that exercises every parsing rule.
            "[ \t0-9a:~.+\\-é_]{0,10}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Versions sharing a prefix (digits included), to exercise the skipped common prefix.
        #[test]
        fn agrees_with_debian_version_on_shared_prefixes(
            prefix in "[0-9][0-9a~.+]{0,6}",
            x in "[0-9a~.+]{0,4}",
            y in "[0-9a~.+]{0,4}",
            revision in prop::option::of("[0-9a~.+]{1,4}"),
        ) {
            let revision = revision.map(|r| format!("-{r}")).unwrap_or_default();
            for (a, b) in [
                (format!("{prefix}{x}"), format!("{prefix}{y}")),
                (format!("1{revision}{prefix}{x}"), format!("1{revision}{prefix}{y}")),
                (format!("{prefix}{x}{revision}"), format!("{prefix}{y}")),
            ] {
                let (Ok(left), Ok(right)) = (a.parse::<DebianVersion>(), b.parse::<DebianVersion>()) else {
                    continue;
                };
                let (view, stored) = (VersionView::parse(&a).unwrap(), Version::parse(&b).unwrap());
                prop_assert_eq!(view.cmp(&stored.view()), left.cmp(&right), "{} vs {}", a, b);
            }
        }

        #[test]
        fn agrees_with_debian_version(a in version_text(), b in version_text()) {
            let view = VersionView::parse(&a);
            let parsed = a.parse::<DebianVersion>();
            prop_assert_eq!(view.is_some(), parsed.is_ok(), "accepting {:?}", a);
            prop_assert_eq!(Version::parse(&a).is_ok(), view.is_some());
            if let (Some(view), Ok(left), Ok(right)) = (view, parsed, b.parse::<DebianVersion>()) {
                let stored = Version::parse(&b).unwrap();
                prop_assert_eq!(stored.as_str(), right.as_str());
                let (stored, parsed) = (stored.view(), VersionView::parse(&b).unwrap());
                prop_assert_eq!(stored, parsed, "stored parts of {}", b);
                prop_assert_eq!(view.cmp(&stored), left.cmp(&right), "{} vs {}", a, b);
            }
        }
    }
}
