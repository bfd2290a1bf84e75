//! Properties of `DebianVersion` ordering, checked against a literal port of dpkg's C code and against the real `dpkg` binary when present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::process::Command;

use patchbay_debian::DebianVersion;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A line-by-line port of dpkg's `verrevcmp` and `dpkg_version_compare` (lib/dpkg/version.c),
/// kept deliberately close to the C (NUL-terminated walking, `order()` weights) to serve as an
/// independent reference for the crate's run-based implementation.
mod reference {
    fn order(c: u8) -> i32 {
        if c.is_ascii_digit() {
            0
        } else if c.is_ascii_alphabetic() {
            i32::from(c)
        } else if c == b'~' {
            -1
        } else if c != 0 {
            i32::from(c) + 256
        } else {
            0
        }
    }

    fn verrevcmp(a: &str, b: &str) -> i32 {
        let a: Vec<u8> = a.bytes().chain([0]).collect();
        let b: Vec<u8> = b.bytes().chain([0]).collect();
        let (mut i, mut j) = (0, 0);
        while a[i] != 0 || b[j] != 0 {
            let mut first_diff = 0;
            while (a[i] != 0 && !a[i].is_ascii_digit()) || (b[j] != 0 && !b[j].is_ascii_digit()) {
                let (ac, bc) = (order(a[i]), order(b[j]));
                if ac != bc {
                    return ac - bc;
                }
                i += 1;
                j += 1;
            }
            while a[i] == b'0' {
                i += 1;
            }
            while b[j] == b'0' {
                j += 1;
            }
            while a[i].is_ascii_digit() && b[j].is_ascii_digit() {
                if first_diff == 0 {
                    first_diff = i32::from(a[i]) - i32::from(b[j]);
                }
                i += 1;
                j += 1;
            }
            if a[i].is_ascii_digit() {
                return 1;
            }
            if b[j].is_ascii_digit() {
                return -1;
            }
            if first_diff != 0 {
                return first_diff;
            }
        }
        0
    }

    /// Splits like dpkg's `parseversion` for strings the crate accepted.
    fn parts(version: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) => (epoch.parse().unwrap(), rest),
            None => (0, version),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }

    pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
        let (a, b) = (parts(a.trim()), parts(b.trim()));
        a.0.cmp(&b.0)
            .then_with(|| verrevcmp(a.1, b.1).cmp(&0))
            .then_with(|| verrevcmp(a.2, b.2).cmp(&0))
    }
}

/// Versions built from a small alphabet so that generated pairs often share prefixes and hit
/// the interesting cases (`~` against the end, letters against symbols, leading zeros).
fn version_string() -> impl Strategy<Value = String> {
    let piece = "[0-9a-c.+~]{0,6}";
    (
        prop::option::of("[0-9]{1,3}"),
        "[0-9]{1,3}",
        piece,
        prop::option::of("[0-9a-c.+~][0-9a-c.+~-]{0,5}"),
    )
        .prop_map(|(epoch, head, tail, revision)| {
            let mut version = String::new();
            if let Some(epoch) = epoch {
                version.push_str(&epoch);
                version.push(':');
            }
            version.push_str(&head);
            version.push_str(&tail);
            if let Some(revision) = revision {
                version.push('-');
                version.push_str(&revision);
            }
            version
        })
        .prop_filter("must parse", |v| v.parse::<DebianVersion>().is_ok())
}

/// Anything printable: exercises the parser's rejections and dpkg's warning-only cases.
fn any_version_like() -> impl Strategy<Value = String> {
    "[ -~]{0,16}"
}

fn parse(text: &str) -> DebianVersion {
    text.parse().unwrap()
}

fn hash_of(version: &DebianVersion) -> u64 {
    let mut hasher = DefaultHasher::new();
    version.hash(&mut hasher);
    hasher.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_the_reference(a in version_string(), b in version_string()) {
        prop_assert_eq!(parse(&a).cmp(&parse(&b)), reference::compare(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn agrees_with_the_reference_on_anything_accepted(a in any_version_like(), b in any_version_like()) {
        if let (Ok(va), Ok(vb)) = (a.parse::<DebianVersion>(), b.parse::<DebianVersion>()) {
            prop_assert_eq!(va.cmp(&vb), reference::compare(&a, &b), "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn antisymmetric_and_consistent_with_eq_and_hash(a in version_string(), b in version_string()) {
        let (a, b) = (parse(&a), parse(&b));
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        if a == b {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
    }

    #[test]
    fn transitive(a in version_string(), b in version_string(), c in version_string()) {
        let mut sorted = [parse(&a), parse(&b), parse(&c)];
        sorted.sort();
        prop_assert!(sorted[0] <= sorted[1] && sorted[1] <= sorted[2]);
        prop_assert!(sorted[0] <= sorted[2]);
        if sorted[0] == sorted[1] && sorted[1] == sorted[2] {
            prop_assert_eq!(&sorted[0], &sorted[2]);
        }
    }

    #[test]
    fn display_round_trips(text in version_string()) {
        let version = parse(&text);
        prop_assert_eq!(version.to_string(), text.clone());
        let again = parse(&version.to_string());
        prop_assert_eq!(again.as_str(), version.as_str());
        prop_assert_eq!(again.epoch(), version.epoch());
        prop_assert_eq!(again.upstream(), version.upstream());
        prop_assert_eq!(again.revision(), version.revision());
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,24}") {
        let _ = text.parse::<DebianVersion>();
    }

    #[test]
    fn zeros_and_zero_epochs_do_not_matter(text in version_string()) {
        let version = parse(&text);
        if !text.contains(':') {
            let with_epoch = parse(&format!("0:{text}"));
            prop_assert_eq!(&with_epoch, &version);
            prop_assert_eq!(hash_of(&with_epoch), hash_of(&version));
        }
        if version.revision().is_none() && !version.upstream().contains('-') {
            let with_revision = parse(&format!("{text}-0"));
            prop_assert_eq!(&with_revision, &version);
            prop_assert_eq!(hash_of(&with_revision), hash_of(&version));
        }
    }
}

/// Versions that differ from `version` by one small edit, several of them equal to it for dpkg.
fn near(version: &str) -> Vec<String> {
    let mut out = vec![
        format!("{version}~"),
        format!("{version}a"),
        format!("{version}+"),
        format!("{version}0"),
        format!("0{version}"),
        version.replacen('.', ".0", 1),
    ];
    if !version.contains(':') {
        out.push(format!("0:{version}"));
    }
    if !version.contains('-') {
        out.push(format!("{version}-0"));
        out.push(format!("{version}-0~"));
    }
    out.retain(|candidate| candidate.parse::<DebianVersion>().is_ok());
    out
}

/// True when `dpkg --compare-versions a op b` holds.
fn dpkg_says(a: &str, op: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .expect("run dpkg")
        .success()
}

#[test]
fn agrees_with_the_dpkg_binary() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("skipped: no dpkg binary on this machine");
        return;
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (version_string(), version_string());
    let mut pairs: Vec<(String, String)> = (0..300)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    // Random pairs are rarely equal or adjacent, so also compare versions with small edits.
    let neighbours: Vec<(String, String)> = pairs
        .iter()
        .take(40)
        .flat_map(|(a, _)| near(a).into_iter().map(move |b| (a.clone(), b)))
        .collect();
    pairs.extend(neighbours);
    // Known tricky pairs.
    for (a, b) in [
        ("1.0", "1.0-0"),
        ("0:1.0", "1.0"),
        ("1.0~rc1", "1.0"),
        ("1.0~~", "1.0~"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0+"),
        ("1.0-1", "1.0-1.1"),
        ("2.30-1", "2.3-1"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567891",
        ),
        ("1:2.66-4+deb12u3+b1", "1:2.66-4+deb12u2+b2"),
    ] {
        pairs.push((a.to_owned(), b.to_owned()));
    }

    let mut mismatches = Vec::new();
    let mut counts = [0usize; 3];
    for (a, b) in &pairs {
        let ours = parse(a).cmp(&parse(b));
        counts[(ours as i8 + 1) as usize] += 1;
        let op = match ours {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        if !dpkg_says(a, op, b) {
            mismatches.push(format!("{a} {op} {b}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "dpkg disagrees on {} of {} pairs: {mismatches:?}",
        mismatches.len(),
        pairs.len()
    );
    eprintln!(
        "dpkg agreed on all {} pairs ({} lt, {} eq, {} gt)",
        pairs.len(),
        counts[0],
        counts[1],
        counts[2]
    );
}
