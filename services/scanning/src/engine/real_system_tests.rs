//! This machine's apt lists as a catalog and its dpkg status as a device: the engine must find what `patchbay_debian::upgradable` finds; skips when the files are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use patchbay_debian::{
    IndexOrigin, PackageEntry, ReadOptions, native_architecture, read_packages_file,
    read_release_file, read_status_file, upgradable,
};
use patchbay_proto::catalog::v1 as pb;

use super::{DeviceInventory, InstalledPackage, MatchingIndex};

const LISTS: &str = "/var/lib/apt/lists";
const STATUS: &str = "/var/lib/dpkg/status";

/// apt's LZ4-compressed `Packages` indexes, sorted by name.
fn packages_indexes() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(LISTS) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.to_str().is_some_and(|p| p.ends_with("_Packages.lz4")))
        .collect();
    paths.sort();
    paths
}

/// True when the index's `InRelease`/`Release` says `NotAutomatic` without
/// `ButAutomaticUpgrades` (e.g. experimental): apt never takes candidates from it by itself.
fn not_automatic(index: &Path) -> bool {
    let Some(name) = index.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let segments: Vec<&str> = name.split('_').collect();
    let Some(prefix) = segments
        .len()
        .checked_sub(3)
        .map(|n| segments[..n].join("_"))
    else {
        return false;
    };
    ["InRelease", "Release"]
        .iter()
        .map(|file| index.with_file_name(format!("{prefix}_{file}")))
        .find(|path| path.exists())
        .and_then(|path| read_release_file(&path, &ReadOptions::default()).ok())
        .is_some_and(|release| release.not_automatic && !release.but_automatic_upgrades)
}

/// The catalog's importer in miniature: one update per (package, version, architecture) with
/// every suite that publishes it.
fn details_of(entry: &PackageEntry, suite: &str) -> pb::UpdateDetails {
    pb::UpdateDetails {
        title: format!("{} {}", entry.package, entry.version),
        version: entry.version.to_string(),
        applicability: Some(pb::update_details::Applicability::Debian(
            pb::DebianPackage {
                package: entry.package.clone(),
                version: entry.version.to_string(),
                architecture: entry.architecture.to_string(),
                suites: vec![suite.to_owned()],
                component: String::new(),
                source_package: entry.source_name().to_owned(),
            },
        )),
        ..Default::default()
    }
}

#[test]
fn real_apt_lists_and_dpkg_status_match_upgradable() {
    let indexes = packages_indexes();
    if indexes.is_empty() || !Path::new(STATUS).exists() {
        eprintln!("skipped: no {LISTS}/*_Packages.lz4 indexes or no {STATUS} on this machine");
        return;
    }
    let options = ReadOptions::default();
    let mut available: Vec<(Option<IndexOrigin>, PackageEntry)> = Vec::new();
    let mut catalog: BTreeMap<String, pb::UpdateDetails> = BTreeMap::new();
    let mut suites = BTreeSet::new();
    for path in indexes.iter().filter(|path| !not_automatic(path)) {
        let origin = IndexOrigin::from_path(path).unwrap();
        let parsed = read_packages_file(path, &options).unwrap();
        for entry in &parsed.entries {
            let id = format!(
                "deb:{}:{}:{}",
                entry.package, entry.version, entry.architecture
            );
            let details = catalog
                .entry(id)
                .or_insert_with(|| details_of(entry, &origin.suite));
            if let Some(pb::update_details::Applicability::Debian(debian)) =
                &mut details.applicability
                && !debian.suites.contains(&origin.suite)
            {
                debian.suites.push(origin.suite.clone());
                debian.suites.sort();
            }
        }
        suites.insert(origin.suite.clone());
        available.extend(
            parsed
                .entries
                .into_iter()
                .map(|e| (Some(origin.clone()), e)),
        );
    }
    let status = read_status_file(Path::new(STATUS), &options).unwrap();

    let started = Instant::now();
    let mut index = MatchingIndex::new();
    for (id, details) in &catalog {
        index.upsert(id, details).unwrap();
    }
    let built = started.elapsed();
    let native =
        native_architecture(&status.entries).map_or_else(|| "amd64".to_owned(), |a| a.to_string());
    let device = DeviceInventory {
        native_architecture: native,
        packages: status
            .entries
            .iter()
            .map(|p| InstalledPackage {
                name: p.package.clone(),
                version: p.version.to_string(),
                architecture: p.architecture.to_string(),
            })
            .collect(),
        apt_suites: suites.iter().cloned().collect(),
        ..Default::default()
    };
    let started = Instant::now();
    let findings = index.evaluate(&device);
    let evaluated = started.elapsed();

    let expected: BTreeSet<(String, String, String, String)> =
        upgradable(&status.entries, &available)
            .iter()
            .map(|u| {
                (
                    u.package.clone(),
                    u.architecture.to_string(),
                    u.installed_version.to_string(),
                    format!(
                        "deb:{}:{}:{}",
                        u.package, u.candidate_version, u.candidate_architecture
                    ),
                )
            })
            .collect();
    let found: BTreeSet<(String, String, String, String)> = findings
        .required
        .iter()
        .map(|r| {
            (
                r.package_or_product.clone(),
                r.architecture.clone(),
                r.installed_version.clone(),
                r.update_id.clone(),
            )
        })
        .collect();
    eprintln!(
        "{} updates from {} indexes (suites {suites:?}), {} installed packages: {} required, {} expected; index built in {built:?}, evaluated in {evaluated:?}",
        index.len(),
        indexes.len(),
        device.packages.len(),
        found.len(),
        expected.len(),
    );
    assert_eq!(findings.problems, Vec::<String>::new());
    assert_eq!(
        findings.required.len(),
        found.len(),
        "no package is required twice"
    );
    assert_eq!(
        found.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String, String, String)>::new(),
        "required here but not upgradable"
    );
    assert_eq!(
        expected.difference(&found).collect::<Vec<_>>(),
        Vec::<&(String, String, String, String)>::new(),
        "upgradable but not required here"
    );
}
