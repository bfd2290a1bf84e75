//! Parses this machine's apt lists and dpkg status, and checks `upgradable` against `apt list --upgradable`; skips when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use patchbay_debian::{
    IndexOrigin, PackageEntry, ReadOptions, Upgrade, native_architecture, read_packages_file,
    read_release_file, read_status_file, upgradable,
};

const LISTS: &str = "/var/lib/apt/lists";
const STATUS: &str = "/var/lib/dpkg/status";

/// Apt's `Packages` indexes in the lists directory, sorted by name.
fn packages_indexes() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(LISTS) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            ["", ".lz4", ".gz", ".xz"]
                .iter()
                .any(|extension| name.ends_with(&format!("_Packages{extension}")))
        })
        .collect();
    paths.sort();
    paths
}

/// The `InRelease` (or `Release`) file that lists an index, by apt's naming scheme.
fn release_file_for(index: &Path) -> Option<PathBuf> {
    let name = index.file_name()?.to_str()?;
    let segments: Vec<&str> = name.split('_').collect();
    let prefix = segments.get(..segments.len().checked_sub(3)?)?.join("_");
    ["InRelease", "Release"]
        .iter()
        .map(|file| index.with_file_name(format!("{prefix}_{file}")))
        .find(|path| path.exists())
}

/// Package names apt pins in /etc/apt/preferences(.d); `None` means a `*` pin (everything).
fn pinned_packages() -> Option<BTreeSet<String>> {
    let mut files = vec![PathBuf::from("/etc/apt/preferences")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/preferences.d") {
        files.extend(dir.filter_map(Result::ok).map(|entry| entry.path()));
    }
    let mut names = BTreeSet::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("Package:") {
                for name in value.split_whitespace() {
                    if name.contains(['*', '/', '?']) {
                        return None;
                    }
                    names.insert(name.to_owned());
                }
            }
        }
    }
    Some(names)
}

/// `apt list --upgradable` as (package, candidate version, candidate architecture, installed version).
fn apt_upgradable() -> Option<BTreeSet<(String, String, String, String)>> {
    let output = Command::new("apt")
        .args(["list", "--upgradable"])
        .env("LC_ALL", "C")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let rows = text
        .lines()
        .filter_map(|line| {
            // bash/oldstable 5.2.15-2+b13 amd64 [upgradable from: 5.2.15-2+b8]
            let mut words = line.split_whitespace();
            let name = words.next()?.split('/').next()?;
            let name = name.split(':').next()?;
            let version = words.next()?;
            let arch = words.next()?;
            let from = line.split("[upgradable from: ").nth(1)?.strip_suffix(']')?;
            Some((
                name.to_owned(),
                version.to_owned(),
                arch.to_owned(),
                from.to_owned(),
            ))
        })
        .collect();
    Some(rows)
}

fn row(upgrade: &Upgrade) -> (String, String, String, String) {
    (
        upgrade.package.clone(),
        upgrade.candidate_version.to_string(),
        upgrade.candidate_architecture.to_string(),
        upgrade.installed_version.to_string(),
    )
}

#[test]
fn real_apt_lists_and_dpkg_status() {
    let indexes = packages_indexes();
    if indexes.is_empty() || !Path::new(STATUS).exists() {
        eprintln!("skipped: no {LISTS}/*_Packages* indexes or no {STATUS} on this machine");
        return;
    }
    let options = ReadOptions::default();

    let started = Instant::now();
    let mut available: Vec<(Option<IndexOrigin>, PackageEntry)> = Vec::new();
    let mut not_automatic = 0;
    for path in &indexes {
        let origin = IndexOrigin::from_path(path).unwrap();
        let parsed = read_packages_file(path, &options).unwrap();
        assert_eq!(
            parsed.errors,
            [],
            "real index {} should parse cleanly",
            path.display()
        );
        let release =
            release_file_for(path).map(|file| read_release_file(&file, &options).unwrap());
        eprintln!(
            "{}: {} entries (suite {}, release suite {:?}, codename {:?})",
            path.display(),
            parsed.entries.len(),
            origin.suite,
            release.as_ref().and_then(|r| r.suite.as_deref()),
            release.as_ref().and_then(|r| r.codename.as_deref()),
        );
        // apt gives NotAutomatic suites (experimental) priority 1: never a candidate by itself.
        if release.is_some_and(|r| r.not_automatic && !r.but_automatic_upgrades) {
            not_automatic += parsed.entries.len();
            continue;
        }
        available.extend(
            parsed
                .entries
                .into_iter()
                .map(|e| (Some(origin.clone()), e)),
        );
    }
    let status = read_status_file(Path::new(STATUS), &options).unwrap();
    assert_eq!(status.errors, [], "{STATUS} should parse cleanly");
    let parse_time = started.elapsed();

    let started = Instant::now();
    let upgrades = upgradable(&status.entries, &available);
    let upgrade_time = started.elapsed();
    eprintln!(
        "{} indexes, {} available entries ({not_automatic} in NotAutomatic suites left out); {} installed packages ({} status entries not installed), native {:?}; {} upgradable; parsed in {parse_time:?}, upgradable in {upgrade_time:?}",
        indexes.len(),
        available.len(),
        status.entries.len(),
        status.skipped,
        native_architecture(&status.entries).map(|a| a.to_string()),
        upgrades.len(),
    );

    let Some(apt) = apt_upgradable() else {
        eprintln!("skipped the comparison: no working apt binary on this machine");
        return;
    };
    let Some(pinned) = pinned_packages() else {
        eprintln!(
            "skipped the comparison: apt pins every package ('Package: *'), which this crate ignores"
        );
        return;
    };
    let ours: BTreeSet<_> = upgrades.iter().map(row).collect();
    let only_ours: Vec<_> = ours
        .difference(&apt)
        .filter(|r| !pinned.contains(&r.0))
        .collect();
    let only_apt: Vec<_> = apt
        .difference(&ours)
        .filter(|r| !pinned.contains(&r.0))
        .collect();
    let pinned_differences = ours
        .symmetric_difference(&apt)
        .filter(|r| pinned.contains(&r.0))
        .count();
    let across_all = upgrades
        .iter()
        .filter(|u| u.architecture != u.candidate_architecture)
        .count();
    eprintln!(
        "apt lists {} upgradable, this crate {}; {} agree; {across_all} cross between 'all' and the native architecture; pinned packages {pinned:?} not compared ({pinned_differences} differences among them)",
        apt.len(),
        ours.len(),
        ours.intersection(&apt).count(),
    );
    assert!(
        only_ours.is_empty() && only_apt.is_empty(),
        "differences from apt list --upgradable:\n only here: {only_ours:#?}\n only in apt: {only_apt:#?}"
    );
}
