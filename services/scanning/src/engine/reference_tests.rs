//! The engine's rules, one given/when/then test each, and a property test against a naive reference implementation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use patchbay_debian::{Architecture, DebianVersion};
use patchbay_proto::catalog::v1 as pb;
use proptest::prelude::*;

use super::evaluate::cve_order;
use super::index::kb_key;
use super::{
    DeviceFindings, DeviceInventory, InstalledPackage, MatchingIndex, RequiredUpdate,
    Vulnerability, evaluate_fleet, evaluate_fleet_with,
};
use crate::scan_payload::tests::prost_message;
use crate::scan_payload::{ScanHeader, encode_scan_completed};
use prost::Message as _;

pub(crate) fn debian(
    package: &str,
    version: &str,
    architecture: &str,
    suites: &[&str],
    cves: &[&str],
) -> pb::UpdateDetails {
    pb::UpdateDetails {
        title: format!("{package} {version}"),
        version: version.into(),
        cve_ids: cves.iter().map(|&c| c.into()).collect(),
        applicability: Some(pb::update_details::Applicability::Debian(
            pb::DebianPackage {
                package: package.into(),
                version: version.into(),
                architecture: architecture.into(),
                suites: suites.iter().map(|&s| s.into()).collect(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

pub(crate) fn windows(
    kb: &str,
    products: &[&str],
    supersedes: &[&str],
    cves: &[&str],
) -> pb::UpdateDetails {
    pb::UpdateDetails {
        title: kb.into(),
        cve_ids: cves.iter().map(|&c| c.into()).collect(),
        supersedes: supersedes.iter().map(|&s| s.into()).collect(),
        applicability: Some(pb::update_details::Applicability::Windows(
            pb::WindowsApplicability {
                kb_article: kb.into(),
                product_ids: products.iter().map(|&p| p.into()).collect(),
            },
        )),
        ..Default::default()
    }
}

fn package(name: &str, version: &str, architecture: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        architecture: architecture.into(),
    }
}

fn debian_device(packages: &[(&str, &str, &str)], suites: &[&str]) -> DeviceInventory {
    DeviceInventory {
        native_architecture: "amd64".into(),
        packages: packages.iter().map(|&(n, v, a)| package(n, v, a)).collect(),
        apt_suites: suites.iter().map(|&s| s.into()).collect(),
        ..Default::default()
    }
}

fn windows_device(products: &[&str], installed: &[&str]) -> DeviceInventory {
    DeviceInventory {
        windows_products: products.iter().map(|&p| p.into()).collect(),
        installed_kbs: installed.iter().map(|&k| k.into()).collect(),
        ..Default::default()
    }
}

fn index_of(updates: &[(&str, pb::UpdateDetails)]) -> MatchingIndex {
    let mut index = MatchingIndex::new();
    for (id, details) in updates {
        index.upsert(id, details).unwrap();
    }
    index
}

/// `update_id required_version` of each required update, in order.
fn required(findings: &DeviceFindings) -> Vec<String> {
    findings
        .required
        .iter()
        .map(|r| format!("{} {}", r.update_id, r.required_version))
        .collect()
}

fn ids(findings: &DeviceFindings) -> Vec<&str> {
    findings
        .required
        .iter()
        .map(|r| r.update_id.as_str())
        .collect()
}

// ---- Debian -------------------------------------------------------------------------------

#[test]
fn given_an_older_installed_package_when_a_newer_update_is_in_a_used_suite_then_it_is_required() {
    let index = index_of(&[(
        "deb:bash:5.2.15-2+b9:amd64",
        debian(
            "bash",
            "5.2.15-2+b9",
            "amd64",
            &["bookworm", "bookworm-updates"],
            &["CVE-2024-1"],
        ),
    )]);
    let device = debian_device(&[("bash", "5.2.15-2+b8", "amd64")], &["bookworm-updates"]);

    let findings = index.evaluate(&device);

    assert_eq!(
        findings.required,
        [RequiredUpdate {
            update_id: "deb:bash:5.2.15-2+b9:amd64".into(),
            package_or_product: "bash".into(),
            installed_version: "5.2.15-2+b8".into(),
            required_version: "5.2.15-2+b9".into(),
            architecture: "amd64".into(),
            cve_ids: vec!["CVE-2024-1".into()],
            known_exploited: false,
        }]
    );
    assert_eq!(
        findings.vulnerabilities,
        [Vulnerability {
            cve_id: "CVE-2024-1".into(),
            known_exploited: false,
            fixed_by: vec!["deb:bash:5.2.15-2+b9:amd64".into()],
        }]
    );
    assert!(findings.problems.is_empty());
}

#[test]
fn given_an_update_equal_to_or_older_than_the_installed_version_then_it_is_not_required() {
    let index = index_of(&[
        ("same", debian("bash", "5.2-1", "amd64", &["s"], &[])),
        ("older", debian("bash", "5.1-9", "amd64", &["s"], &[])),
        // dpkg considers 5.2-1 and 0:5.2-1 equal.
        ("spelled", debian("bash", "0:5.2-1", "amd64", &["s"], &[])),
    ]);
    let findings = index.evaluate(&debian_device(&[("bash", "5.2-1", "amd64")], &[]));
    assert_eq!(required(&findings), Vec::<String>::new());
}

#[test]
fn given_several_newer_versions_when_evaluated_then_the_highest_is_required_with_the_cves_of_all_skipped_ones()
 {
    let mut index = index_of(&[
        (
            "u1",
            debian(
                "openssl",
                "3.0.15-1~deb12u1",
                "amd64",
                &["bookworm-security"],
                &["CVE-2024-5535"],
            ),
        ),
        (
            "u2",
            debian(
                "openssl",
                "3.0.17-1~deb12u2",
                "amd64",
                &["bookworm-security"],
                &["CVE-2025-9230", "CVE-2025-9232"],
            ),
        ),
        (
            "u3",
            debian(
                "openssl",
                "3.0.16-1~deb12u1",
                "amd64",
                &["bookworm-security"],
                &["CVE-2024-13176"],
            ),
        ),
        // Older than installed: the device is not exposed to what it fixed.
        (
            "u0",
            debian(
                "openssl",
                "3.0.11-1~deb12u2",
                "amd64",
                &["bookworm-security"],
                &["CVE-2023-5678"],
            ),
        ),
    ]);
    index.set_known_exploited("CVE-2024-5535", true);
    let device = debian_device(&[("openssl", "3.0.14-1~deb12u1", "amd64")], &[]);

    let findings = index.evaluate(&device);

    assert_eq!(required(&findings), ["u2 3.0.17-1~deb12u2"]);
    let update = &findings.required[0];
    assert_eq!(
        update.cve_ids,
        [
            "CVE-2024-5535",
            "CVE-2024-13176",
            "CVE-2025-9230",
            "CVE-2025-9232"
        ]
    );
    assert!(update.known_exploited, "a skipped update's KEV counts");
    let vulnerabilities: Vec<_> = findings
        .vulnerabilities
        .iter()
        .map(|v| (v.cve_id.as_str(), v.known_exploited, v.fixed_by.join(",")))
        .collect();
    assert_eq!(
        vulnerabilities,
        [
            ("CVE-2024-5535", true, "u2".to_owned()),
            ("CVE-2024-13176", false, "u2".to_owned()),
            ("CVE-2025-9230", false, "u2".to_owned()),
            ("CVE-2025-9232", false, "u2".to_owned()),
        ]
    );
}

#[test]
fn given_the_newest_update_expired_when_evaluated_then_the_next_newest_is_the_candidate() {
    let mut index = index_of(&[
        (
            "u1",
            debian("curl", "7.88.1-10+deb12u8", "amd64", &["s"], &["CVE-1"]),
        ),
        (
            "u2",
            debian("curl", "7.88.1-10+deb12u12", "amd64", &["s"], &["CVE-2"]),
        ),
    ]);
    index.expire("u2");
    let device = debian_device(&[("curl", "7.88.1-10+deb12u5", "amd64")], &[]);

    let findings = index.evaluate(&device);

    assert_eq!(required(&findings), ["u1 7.88.1-10+deb12u8"]);
    assert_eq!(
        findings.required[0].cve_ids,
        ["CVE-1"],
        "expired updates count for nothing"
    );

    index.expire("u1");
    assert_eq!(required(&index.evaluate(&device)), Vec::<String>::new());
}

#[test]
fn given_updates_in_suites_the_device_does_not_use_then_they_are_not_required() {
    let index = index_of(&[
        (
            "stable",
            debian("git", "1:2.39.5-0+deb12u1", "amd64", &["bookworm"], &[]),
        ),
        (
            "backports",
            debian(
                "git",
                "1:2.45.2-1~bpo12+1",
                "amd64",
                &["bookworm-backports"],
                &["CVE-9"],
            ),
        ),
    ]);
    let installed = [("git", "1:2.39.2-1.1", "amd64")];

    let without_backports = index.evaluate(&debian_device(
        &installed,
        &["bookworm", "bookworm-security"],
    ));
    assert_eq!(required(&without_backports), ["stable 1:2.39.5-0+deb12u1"]);
    assert!(
        without_backports.vulnerabilities.is_empty(),
        "CVE-9 is fixed in a suite it does not use"
    );

    let every_suite = index.evaluate(&debian_device(&installed, &[]));
    assert_eq!(required(&every_suite), ["backports 1:2.45.2-1~bpo12+1"]);

    let unknown_suites = index.evaluate(&debian_device(&installed, &["trixie"]));
    assert_eq!(required(&unknown_suites), Vec::<String>::new());
}

#[test]
fn given_multiarch_installs_then_architectures_follow_apts_native_slot() {
    let index = index_of(&[
        (
            "libc6-amd64",
            debian("libc6", "2.36-9+deb12u10", "amd64", &["s"], &[]),
        ),
        (
            "libc6-i386",
            debian("libc6", "2.36-9+deb12u9", "i386", &["s"], &[]),
        ),
        (
            "tzdata",
            debian("tzdata", "2025b-0+deb12u1", "all", &["s"], &[]),
        ),
        (
            "tzdata-arm64",
            debian("tzdata", "2099a-0", "arm64", &["s"], &[]),
        ),
        (
            "became-all",
            debian("became-all", "2.0", "all", &["s"], &[]),
        ),
        (
            "became-arch",
            debian("became-arch", "2.0", "amd64", &["s"], &[]),
        ),
        (
            "foreign-amd64",
            debian("foreign", "2.0", "amd64", &["s"], &[]),
        ),
        ("foreign-all", debian("foreign", "3.0", "all", &["s"], &[])),
    ]);
    let installed = [
        ("libc6", "2.36-9", "amd64"),
        ("libc6", "2.36-9", "i386"),
        ("tzdata", "2024a-0", "all"),
        ("became-all", "1.0", "amd64"),
        ("became-arch", "1.0", "all"),
        ("foreign", "1.0", "i386"),
    ];
    let mut device = debian_device(&installed, &[]);

    let findings = index.evaluate(&device);
    let found: Vec<_> = findings
        .required
        .iter()
        .map(|r| {
            format!(
                "{}:{} -> {}",
                r.package_or_product, r.architecture, r.update_id
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "became-all:amd64 -> became-all",
            "became-arch:all -> became-arch",
            "libc6:amd64 -> libc6-amd64",
            "libc6:i386 -> libc6-i386",
            "tzdata:all -> tzdata",
        ]
    );

    // Without a native architecture `all` matches `all` only.
    device.native_architecture.clear();
    assert_eq!(
        ids(&index.evaluate(&device)),
        ["libc6-amd64", "libc6-i386", "tzdata"]
    );

    // A native architecture no update uses still pairs its packages with `all` updates.
    device.native_architecture = "riscv64".into();
    device.packages = vec![
        package("became-all", "1.0", "riscv64"),
        package("libc6", "2.36-9", "riscv64"),
    ];
    assert_eq!(ids(&index.evaluate(&device)), ["became-all"]);
}

#[test]
fn given_packages_at_the_newest_version_then_only_an_invalid_architecture_is_a_problem() {
    // Packages at the newest version take a shorter path (the name table holds that version);
    // it must report what the full path reports.
    let index = index_of(&[
        ("bash-1", debian("bash", "5.2-1", "amd64", &["s"], &[])),
        ("bash-2", debian("bash", "5.2-2", "amd64", &["s"], &[])),
        ("zsh", debian("zsh", "5.9-5", "all", &["s"], &[])),
    ]);
    let mut device = debian_device(
        &[
            ("bash", "5.2-2", "amd 64"),
            ("zsh", "5.9-5", "all"),
            ("bash", "5.2-2", "i386"),
            ("zsh", "5.9-4", "amd64"),
        ],
        &[],
    );
    let findings = index.evaluate(&device);
    assert_eq!(ids(&findings), ["zsh"]);
    assert_eq!(findings.problems.len(), 1, "{:?}", findings.problems);
    assert!(
        findings.problems[0].starts_with("package bash: architecture name \"amd 64\""),
        "{}",
        findings.problems[0]
    );

    // Without a native architecture an empty architecture is invalid on both paths.
    device.native_architecture.clear();
    device.packages = vec![package("bash", "5.2-2", ""), package("zsh", "5.9-5", "")];
    let findings = index.evaluate(&device);
    assert!(findings.required.is_empty());
    assert_eq!(findings.problems.len(), 2, "{:?}", findings.problems);
}

#[test]
fn given_an_unparsable_installed_version_then_it_is_a_problem_and_the_rest_is_evaluated() {
    let index = index_of(&[
        ("bash", debian("bash", "5.2-2", "amd64", &["s"], &[])),
        ("zsh", debian("zsh", "5.9-5", "amd64", &["s"], &[])),
    ]);
    let device = debian_device(
        &[
            ("bash", "5.2-", "amd64"),
            ("zsh", "5.9-4", "amd64"),
            ("weird", "1.0", "amd 64"),
        ],
        &[],
    );

    let findings = index.evaluate(&device);

    assert_eq!(ids(&findings), ["zsh"]);
    assert_eq!(findings.problems.len(), 2, "{:?}", findings.problems);
    assert!(
        findings.problems[0].starts_with("package bash: version '5.2-' is not a Debian version: "),
        "{}",
        findings.problems[0]
    );
    assert!(
        findings.problems[1].starts_with("package weird: architecture name \"amd 64\""),
        "{}",
        findings.problems[1]
    );
}

#[test]
fn given_known_exploited_cves_then_their_updates_and_vulnerabilities_come_first() {
    let mut index = index_of(&[
        (
            "a",
            debian("aaa", "2", "amd64", &[], &["CVE-2024-3", "CVE-2024-1"]),
        ),
        ("b", debian("bbb", "2", "amd64", &[], &["CVE-2024-1"])),
        ("c", debian("ccc", "2", "amd64", &[], &["CVE-2024-2"])),
        ("d", debian("ddd", "2", "amd64", &[], &[])),
    ]);
    let device = debian_device(
        &[
            ("ddd", "1", "amd64"),
            ("ccc", "1", "amd64"),
            ("bbb", "1", "amd64"),
            ("aaa", "1", "amd64"),
        ],
        &[],
    );
    assert_eq!(ids(&index.evaluate(&device)), ["a", "b", "c", "d"]);

    // The KEV entry may arrive after the updates; it applies at once, and can be withdrawn.
    index.set_known_exploited("CVE-2024-2", true);
    index.set_known_exploited("CVE-2099-1", true);
    let findings = index.evaluate(&device);
    assert_eq!(ids(&findings), ["c", "a", "b", "d"]);
    let vulnerabilities: Vec<_> = findings
        .vulnerabilities
        .iter()
        .map(|v| {
            format!(
                "{} {} {}",
                v.cve_id,
                v.known_exploited,
                v.fixed_by.join(",")
            )
        })
        .collect();
    assert_eq!(
        vulnerabilities,
        [
            "CVE-2024-2 true c",
            "CVE-2024-1 false a,b",
            "CVE-2024-3 false a"
        ]
    );

    index.set_known_exploited("CVE-2024-2", false);
    assert_eq!(ids(&index.evaluate(&device)), ["a", "b", "c", "d"]);
}

// ---- Windows ------------------------------------------------------------------------------

#[test]
fn given_a_windows_update_for_a_device_product_when_its_kb_is_missing_then_it_is_required() {
    let index = index_of(&[
        (
            "w1",
            windows("KB5034441", &["win11"], &[], &["CVE-2024-20666"]),
        ),
        ("w2", windows("KB5000001", &["server2022"], &[], &[])),
    ]);

    let findings = index.evaluate(&windows_device(&["win11"], &[]));

    assert_eq!(
        findings.required,
        [RequiredUpdate {
            update_id: "w1".into(),
            package_or_product: "KB5034441".into(),
            cve_ids: vec!["CVE-2024-20666".into()],
            ..Default::default()
        }]
    );
    assert_eq!(findings.vulnerabilities[0].fixed_by, ["w1"]);
}

#[test]
fn given_an_installed_kb_or_an_expired_update_then_it_is_not_required() {
    let mut index = index_of(&[
        ("w1", windows("KB1", &["win11"], &[], &[])),
        ("w2", windows("KB2", &["win11"], &[], &[])),
        ("w3", windows("KB3", &["win11", "win10"], &[], &[])),
    ]);
    index.expire("w2");
    // The KB prefix and its case do not matter.
    let findings = index.evaluate(&windows_device(&["win11", "win10"], &["kb1"]));
    assert_eq!(ids(&findings), ["w3"]);
    assert_eq!(
        ids(&index.evaluate(&windows_device(&["win11"], &["3", "KB1 "]))),
        Vec::<&str>::new()
    );
}

#[test]
fn given_an_installed_superseding_update_then_the_superseded_one_is_not_required() {
    let mut index = index_of(&[
        ("old", windows("KB1", &["win11"], &[], &[])),
        ("by-event", windows("KB2", &["win11"], &[], &[])),
        ("by-details", windows("KB3", &["other"], &["old2"], &[])),
        ("old2", windows("KB4", &["win11"], &[], &[])),
    ]);
    index.supersede("old", "by-event");

    // KB2 supersedes KB1 through UpdateSuperseded; KB3 supersedes KB4 through its details, even
    // though KB3 itself is for another product.
    let findings = index.evaluate(&windows_device(&["win11"], &["KB2", "KB3"]));
    assert_eq!(ids(&findings), Vec::<&str>::new());

    let findings = index.evaluate(&windows_device(&["win11"], &[]));
    assert_eq!(
        ids(&findings),
        ["by-event", "old2"],
        "only the newest of the chain KB1 <- KB2"
    );
}

#[test]
fn given_a_chain_of_cumulative_updates_then_only_the_newest_applicable_one_is_required() {
    let mut index = index_of(&[
        ("jan", windows("KB1", &["win11"], &[], &["CVE-1"])),
        ("feb", windows("KB2", &["win11"], &["jan"], &["CVE-2"])),
        ("mar", windows("KB3", &["win11"], &["feb"], &["CVE-3"])),
    ]);
    let device = windows_device(&["win11"], &[]);
    let findings = index.evaluate(&device);
    assert_eq!(ids(&findings), ["mar"]);
    assert_eq!(findings.required[0].cve_ids, ["CVE-3"]);

    // Installing the newest, or the one in the middle, covers the older ones.
    assert_eq!(
        ids(&index.evaluate(&windows_device(&["win11"], &["KB3"]))),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids(&index.evaluate(&windows_device(&["win11"], &["KB2"]))),
        ["mar"]
    );

    // An expired newest update no longer hides the one before it.
    index.expire("mar");
    assert_eq!(ids(&index.evaluate(&device)), ["feb"]);

    // A superseding update for another product, not installed, hides nothing.
    index
        .upsert("apr", &windows("KB4", &["server"], &["feb"], &[]))
        .unwrap();
    assert_eq!(ids(&index.evaluate(&device)), ["feb"]);
}

#[test]
fn given_a_supersession_cycle_then_evaluation_terminates() {
    let mut index = index_of(&[
        ("a", windows("KB1", &["p"], &["b"], &[])),
        ("b", windows("KB2", &["p"], &["a"], &[])),
        ("c", windows("KB3", &["p"], &["c"], &[])),
    ]);
    index.supersede("c", "c");
    // a and b supersede each other and are both applicable, so each hides the other.
    assert_eq!(ids(&index.evaluate(&windows_device(&["p"], &[]))), ["c"]);
}

#[test]
fn given_a_revision_that_changes_supersedes_then_the_old_edges_are_gone() {
    let mut index = index_of(&[
        ("old", windows("KB1", &["p"], &[], &[])),
        ("new", windows("KB2", &["p"], &["old"], &[])),
    ]);
    let device = windows_device(&["p"], &[]);
    assert_eq!(ids(&index.evaluate(&device)), ["new"]);
    index
        .upsert("new", &windows("KB2", &["p"], &[], &[]))
        .unwrap();
    assert_eq!(ids(&index.evaluate(&device)), ["old", "new"]);
}

// ---- Property test against a naive reference -------------------------------------------------

/// A catalog event, as the service shell hands it to the index.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // test data, built a few hundred times
enum Event {
    Upsert(String, pb::UpdateDetails),
    Supersede(String, String),
    Expire(String),
    KnownExploited(String, bool),
}

/// What the catalog knows of one update id, the way the catalog's own view keeps it.
#[derive(Debug, Default)]
struct ModelUpdate {
    details: Option<pb::UpdateDetails>,
    expired: bool,
    superseded_by: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    updates: BTreeMap<String, ModelUpdate>,
    known_exploited: HashSet<String>,
}

impl Model {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Upsert(id, details) => {
                self.updates.entry(id.clone()).or_default().details = Some(details.clone());
            }
            Event::Supersede(id, by) => {
                self.updates.entry(id.clone()).or_default().superseded_by = Some(by.clone());
            }
            Event::Expire(id) => self.updates.entry(id.clone()).or_default().expired = true,
            Event::KnownExploited(cve, true) => {
                self.known_exploited.insert(cve.clone());
            }
            Event::KnownExploited(cve, false) => {
                self.known_exploited.remove(cve);
            }
        }
    }

    fn debian(
        &self,
    ) -> impl Iterator<Item = (&str, &ModelUpdate, &pb::DebianPackage, DebianVersion)> {
        self.updates.iter().filter_map(|(id, update)| {
            let Some(pb::update_details::Applicability::Debian(debian)) =
                &update.details.as_ref()?.applicability
            else {
                return None;
            };
            let version = debian.version.parse().ok()?;
            (!debian.package.is_empty() && debian.architecture.parse::<Architecture>().is_ok())
                .then_some((id.as_str(), update, debian, version))
        })
    }

    fn windows(&self, id: &str) -> Option<&pb::WindowsApplicability> {
        let update = self.updates.get(id)?;
        let Some(pb::update_details::Applicability::Windows(windows)) =
            &update.details.as_ref()?.applicability
        else {
            return None;
        };
        (!kb_key(&windows.kb_article).is_empty()
            && windows.product_ids.iter().any(|p| !p.is_empty()))
        .then_some(windows)
    }

    fn cves(&self, id: &str) -> Vec<String> {
        self.updates[id]
            .details
            .as_ref()
            .map(|d| d.cve_ids.clone())
            .unwrap_or_default()
    }

    /// The rules of docs/scanning-engine.md, written as plainly as possible.
    fn evaluate(&self, device: &DeviceInventory) -> DeviceFindings {
        let mut findings = DeviceFindings::default();
        let mut required: Vec<(RequiredUpdate, Vec<String>)> = Vec::new();
        let native = device.native_architecture.as_str();
        let slot = |architecture: &str| -> String {
            if architecture == "all" && !native.is_empty() {
                native.to_owned()
            } else {
                architecture.to_owned()
            }
        };

        for installed in &device.packages {
            let Ok(version) = installed.version.parse::<DebianVersion>() else {
                let error = installed.version.parse::<DebianVersion>().unwrap_err();
                findings.problems.push(format!(
                    "package {}: version '{}' is not a Debian version: {error}",
                    installed.name, installed.version
                ));
                continue;
            };
            let matching: Vec<_> = self
                .debian()
                .filter(|(_, update, debian, candidate)| {
                    debian.package == installed.name
                        && !update.expired
                        && slot(&debian.architecture) == slot(&installed.architecture)
                        && (device.apt_suites.is_empty()
                            || debian.suites.iter().any(|s| device.apt_suites.contains(s)))
                        && *candidate > version
                })
                .collect();
            let Some(best) = matching
                .iter()
                .max_by(|a, b| a.3.cmp(&b.3).then_with(|| b.0.cmp(a.0)))
            else {
                continue;
            };
            let cves: BTreeSet<String> =
                matching.iter().flat_map(|(id, ..)| self.cves(id)).collect();
            required.push((
                RequiredUpdate {
                    update_id: best.0.to_owned(),
                    package_or_product: installed.name.clone(),
                    installed_version: installed.version.clone(),
                    required_version: best.2.version.clone(),
                    architecture: installed.architecture.clone(),
                    cve_ids: Vec::new(),
                    known_exploited: false,
                },
                cves.into_iter().collect(),
            ));
        }

        let installed_kbs: HashSet<&str> =
            device.installed_kbs.iter().map(|kb| kb_key(kb)).collect();
        let installed = |id: &str| {
            self.windows(id)
                .is_some_and(|w| installed_kbs.contains(kb_key(&w.kb_article)))
        };
        let applicable = |id: &str| {
            self.windows(id).is_some_and(|w| {
                !self.updates[id].expired
                    && !installed_kbs.contains(kb_key(&w.kb_article))
                    && w.product_ids
                        .iter()
                        .any(|p| device.windows_products.contains(p))
            })
        };
        let superseders = |id: &str| -> Vec<String> {
            let mut by: Vec<String> = self
                .updates
                .get(id)
                .and_then(|u| u.superseded_by.clone())
                .into_iter()
                .collect();
            for (other, update) in &self.updates {
                if update
                    .details
                    .as_ref()
                    .is_some_and(|d| d.supersedes.iter().any(|s| s == id))
                {
                    by.push(other.clone());
                }
            }
            by
        };
        for (id, _) in self.updates.iter().filter(|(id, _)| applicable(id)) {
            // Every update above `id` in the supersession graph.
            let mut above = BTreeSet::new();
            let mut todo = superseders(id);
            while let Some(next) = todo.pop() {
                if next != *id && above.insert(next.clone()) {
                    todo.extend(superseders(&next));
                }
            }
            if above.iter().any(|x| installed(x) || applicable(x)) {
                continue;
            }
            let windows = self.windows(id).unwrap();
            let cves: BTreeSet<String> = self.cves(id).into_iter().collect();
            required.push((
                RequiredUpdate {
                    update_id: id.clone(),
                    package_or_product: windows.kb_article.trim().to_owned(),
                    required_version: self.updates[id].details.as_ref().unwrap().version.clone(),
                    ..Default::default()
                },
                cves.into_iter().collect(),
            ));
        }

        let mut vulnerabilities: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (update, mut cves) in required {
            cves.sort_by(|a, b| cve_order(a, b));
            for cve in &cves {
                vulnerabilities
                    .entry(cve.clone())
                    .or_default()
                    .insert(update.update_id.clone());
            }
            let known_exploited = cves.iter().any(|c| self.known_exploited.contains(c));
            findings.required.push(RequiredUpdate {
                cve_ids: cves,
                known_exploited,
                ..update
            });
        }
        findings.required.sort_by(|a, b| {
            (
                !a.known_exploited,
                &a.package_or_product,
                &a.architecture,
                &a.update_id,
            )
                .cmp(&(
                    !b.known_exploited,
                    &b.package_or_product,
                    &b.architecture,
                    &b.update_id,
                ))
        });
        findings.vulnerabilities = vulnerabilities
            .into_iter()
            .map(|(cve_id, fixed_by)| Vulnerability {
                known_exploited: self.known_exploited.contains(&cve_id),
                cve_id,
                fixed_by: fixed_by.into_iter().collect(),
            })
            .collect();
        findings.vulnerabilities.sort_by(|a, b| {
            (!a.known_exploited)
                .cmp(&!b.known_exploited)
                .then_with(|| cve_order(&a.cve_id, &b.cve_id))
        });
        findings
    }
}

fn subset(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool, 0..=max.min(pool.len()))
        .prop_map(|s| s.into_iter().map(str::to_owned).collect())
}

const IDS: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"];
const NAMES: &[&str] = &["bash", "libc6", "zsh"];
/// Equal-but-differently-written, tilde, epoch and invalid versions.
const VERSIONS: &[&str] = &[
    "1.0",
    "1.0-0",
    "1.0-1",
    "0:1.0-1",
    "1.0~rc1",
    "1.0+deb12u1",
    "1:0.1",
    "2.0",
    "1.00-1",
    "1.0-",
    ":1",
];
const ARCHITECTURES: &[&str] = &["amd64", "i386", "all"];
const SUITES: &[&str] = &["bookworm", "bookworm-security", "bookworm-updates"];
const CVES: &[&str] = &[
    "CVE-2024-9",
    "CVE-2024-10",
    "CVE-2023-1",
    "CVE-2024-100",
    "GHSA-2",
    "DLA-1",
];
const KBS: &[&str] = &["KB1", "KB2", "kb3", "", "4"];
const PRODUCTS: &[&str] = &["win10", "win11", "server"];

fn details() -> impl Strategy<Value = pb::UpdateDetails> {
    let debian = (
        prop::sample::select(NAMES),
        prop::sample::select(VERSIONS),
        prop::sample::select(ARCHITECTURES),
        subset(SUITES, 2),
        // Up to five: a candidate keeps three CVE ids itself and reads longer lists from the slot.
        subset(CVES, 5),
    )
        .prop_map(|(name, version, arch, suites, cves)| {
            let suites: Vec<&str> = suites.iter().map(String::as_str).collect();
            let cves: Vec<&str> = cves.iter().map(String::as_str).collect();
            debian(name, version, arch, &suites, &cves)
        });
    let windows = (
        prop::sample::select(KBS),
        subset(PRODUCTS, 2),
        subset(IDS, 2),
        subset(CVES, 2),
    )
        .prop_map(|(kb, products, supersedes, cves)| {
            let products: Vec<&str> = products.iter().map(String::as_str).collect();
            let supersedes: Vec<&str> = supersedes.iter().map(String::as_str).collect();
            let cves: Vec<&str> = cves.iter().map(String::as_str).collect();
            windows(kb, &products, &supersedes, &cves)
        });
    prop_oneof![4 => debian, 3 => windows, 1 => Just(pb::UpdateDetails::default())]
}

fn event() -> impl Strategy<Value = Event> {
    let id = || prop::sample::select(IDS).prop_map(str::to_owned);
    prop_oneof![
        6 => (id(), details()).prop_map(|(id, details)| Event::Upsert(id, details)),
        1 => (id(), id()).prop_map(|(id, by)| Event::Supersede(id, by)),
        1 => id().prop_map(Event::Expire),
        1 => (prop::sample::select(CVES), any::<bool>()).prop_map(|(cve, known)| Event::KnownExploited(cve.to_owned(), known)),
    ]
}

fn device() -> impl Strategy<Value = DeviceInventory> {
    let package = (
        prop::sample::select(NAMES),
        prop::sample::select(VERSIONS),
        prop::sample::select(&["amd64", "i386", "all", "arm64"][..]),
    )
        .prop_map(|(name, version, arch)| InstalledPackage {
            name: name.into(),
            version: version.into(),
            architecture: arch.into(),
        });
    (
        prop::sample::select(&["amd64", "i386", "", "arm64"][..]),
        prop::collection::vec(package, 0..6),
        subset(SUITES, 2),
        subset(&["KB1", "kb2", "3", "KB9"], 3),
        subset(&["win10", "win11", "xp"], 2),
    )
        .prop_map(
            |(native, packages, apt_suites, installed_kbs, windows_products)| DeviceInventory {
                native_architecture: native.into(),
                packages,
                apt_suites,
                installed_kbs,
                windows_products,
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn evaluate_agrees_with_the_naive_reference(
        events in prop::collection::vec(event(), 0..30),
        devices in prop::collection::vec(device(), 1..4),
    ) {
        let mut index = MatchingIndex::new();
        let mut model = Model::default();
        for event in &events {
            model.apply(event);
            match event {
                Event::Upsert(id, details) => { let _ = index.upsert(id, details); }
                Event::Supersede(id, by) => index.supersede(id, by),
                Event::Expire(id) => index.expire(id),
                Event::KnownExploited(cve, known) => index.set_known_exploited(cve, *known),
            }
        }
        prop_assert_eq!(index.len(), model.updates.values().filter(|u| u.details.is_some()).count());
        let fleet = evaluate_fleet(&index, &devices);
        let header = ScanHeader { device_id: "device", task_id: "task", run: 2, catalog_position: 7 };
        let payloads = evaluate_fleet_with(&index, &devices, |_, findings| {
            encode_scan_completed(&header, &findings)
        });
        for ((device, from_fleet), payload) in devices.iter().zip(&fleet).zip(&payloads) {
            let expected = model.evaluate(device);
            prop_assert_eq!(&index.evaluate(device), &expected, "device {:?}", device);
            prop_assert_eq!(from_fleet, &expected);
            // The event payload, encoded from the borrowed findings, is prost's for the same scan.
            prop_assert_eq!(payload, &prost_message(&header, &expected).encode_to_vec());
        }
    }
}
