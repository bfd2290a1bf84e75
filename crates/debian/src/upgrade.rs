//! Which installed packages have a newer version available: what `apt list --upgradable` shows, without apt's pinning.
//!
//! # Matching rule
//! apt identifies a package by name and architecture, and files `Architecture: all` packages
//! under the *native* architecture (`apt-cache show adduser:amd64` finds the `all` package on an
//! amd64 machine). So an installed package matches an available entry with the same name when
//! their architectures are equal after mapping `all` to the native architecture:
//! - an `amd64` install on an amd64 machine matches `amd64` and `all` entries (a package that
//!   became architecture-independent is still an upgrade), and an `all` install matches both too;
//! - a foreign-architecture install (`libc6:i386` on amd64) matches `i386` entries only;
//! - `Multi-Arch` does not change identity (it only affects dependency resolution), so it is
//!   ignored here.
//!
//! Without a native architecture, `all` matches `all` only.
//!
//! # Candidate
//! The candidate is the highest available version of the matching entries; the package is
//! upgradable when that is strictly higher than the installed version. Among equal versions (the
//! same version in two suites) the first entry in the input wins. apt's policy is ignored: pin
//! priorities from `/etc/apt/preferences`, `NotAutomatic`/`ButAutomaticUpgrades` suites (e.g.
//! experimental, backports) and phased updates can make apt pick a lower candidate or none.
//! Held packages are included, as apt lists them too.

use std::collections::HashMap;

use crate::arch::Architecture;
use crate::origin::IndexOrigin;
use crate::packages::{InstalledPackage, PackageEntry};
use crate::version::DebianVersion;

/// An installed package with a newer candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub package: String,
    /// The installed package's architecture.
    pub architecture: Architecture,
    pub installed_version: DebianVersion,
    pub candidate_version: DebianVersion,
    /// The candidate's architecture; differs from `architecture` only across `all`.
    pub candidate_architecture: Architecture,
    /// The index the candidate came from, when known.
    pub origin: Option<IndexOrigin>,
}

/// Available entries indexed by package name, built once and queried for many devices.
#[derive(Debug)]
pub struct CandidateIndex<'a> {
    by_name: HashMap<&'a str, Vec<&'a (Option<IndexOrigin>, PackageEntry)>>,
}

impl<'a> CandidateIndex<'a> {
    pub fn new(available: &'a [(Option<IndexOrigin>, PackageEntry)]) -> Self {
        let mut by_name: HashMap<&str, Vec<_>> = HashMap::with_capacity(available.len());
        for item in available {
            by_name
                .entry(item.1.package.as_str())
                .or_default()
                .push(item);
        }
        Self { by_name }
    }

    /// The highest available version of `package` for an install of `architecture`.
    pub fn candidate(
        &self,
        package: &str,
        architecture: &Architecture,
        native: Option<&Architecture>,
    ) -> Option<&'a (Option<IndexOrigin>, PackageEntry)> {
        let mut best: Option<&'a (Option<IndexOrigin>, PackageEntry)> = None;
        for &item in self.by_name.get(package)? {
            if !same_slot(architecture, &item.1.architecture, native) {
                continue;
            }
            if best.is_none_or(|best| item.1.version > best.1.version) {
                best = Some(item);
            }
        }
        best
    }

    /// The installed packages with a strictly newer candidate, in the order of `installed`.
    pub fn upgradable(
        &self,
        installed: &[InstalledPackage],
        native: Option<&Architecture>,
    ) -> Vec<Upgrade> {
        installed
            .iter()
            .filter_map(|package| {
                let (origin, entry) =
                    self.candidate(&package.package, &package.architecture, native)?;
                (entry.version > package.version).then(|| Upgrade {
                    package: package.package.clone(),
                    architecture: package.architecture.clone(),
                    installed_version: package.version.clone(),
                    candidate_version: entry.version.clone(),
                    candidate_architecture: entry.architecture.clone(),
                    origin: origin.clone(),
                })
            })
            .collect()
    }
}

/// Installed packages with a newer candidate in `available`; the native architecture is taken
/// from [`native_architecture`]. For many devices, build one [`CandidateIndex`] instead.
pub fn upgradable(
    installed: &[InstalledPackage],
    available: &[(Option<IndexOrigin>, PackageEntry)],
) -> Vec<Upgrade> {
    let native = native_architecture(installed);
    CandidateIndex::new(available).upgradable(installed, native.as_ref())
}

/// The machine's native architecture as seen in its package list: the architecture of the
/// installed `dpkg` package (dpkg is always native). `None` when dpkg is not in the list.
pub fn native_architecture(installed: &[InstalledPackage]) -> Option<Architecture> {
    installed
        .iter()
        .find(|package| package.package == "dpkg" && !package.architecture.is_all())
        .map(|package| package.architecture.clone())
}

/// True when two architectures name the same apt package slot (see the module documentation).
fn same_slot<'a>(
    installed: &'a Architecture,
    offered: &'a Architecture,
    native: Option<&'a Architecture>,
) -> bool {
    let slot = |architecture: &'a Architecture| match native {
        Some(native) if architecture.is_all() => native,
        _ => architecture,
    };
    slot(installed) == slot(offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::{PackageStatus, State, Want};

    fn installed(name: &str, version: &str, arch: &str) -> InstalledPackage {
        InstalledPackage {
            package: name.to_owned(),
            version: version.parse().unwrap(),
            architecture: arch.parse().unwrap(),
            status: PackageStatus {
                want: Want::Install,
                ok: true,
                state: State::Installed,
            },
            source: None,
        }
    }

    fn entry(
        name: &str,
        version: &str,
        arch: &str,
        suite: &str,
    ) -> (Option<IndexOrigin>, PackageEntry) {
        let origin = IndexOrigin {
            host_path: "deb.debian.org/debian".to_owned(),
            suite: suite.to_owned(),
            component: "main".to_owned(),
            architecture: Architecture::Amd64,
        };
        let text = format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\n");
        let parsed = crate::packages::parse_packages(&text);
        (Some(origin), parsed.entries[0].clone())
    }

    fn summary(upgrades: &[Upgrade]) -> Vec<String> {
        upgrades
            .iter()
            .map(|u| {
                format!(
                    "{}:{} {} -> {} {} ({})",
                    u.package,
                    u.architecture,
                    u.installed_version,
                    u.candidate_version,
                    u.candidate_architecture,
                    u.origin.as_ref().map_or("-", |o| o.suite.as_str())
                )
            })
            .collect()
    }

    #[test]
    fn picks_the_highest_strictly_newer_version() {
        let installed = [
            installed("dpkg", "1.21.22", "amd64"),
            installed("bash", "5.2.15-2+b8", "amd64"),
            installed("current", "1.0", "amd64"),
            installed("newer-than-archive", "2.0", "amd64"),
            installed("local-only", "1.0", "amd64"),
        ];
        let available = [
            entry("bash", "5.2.15-2+b8", "amd64", "bookworm"),
            entry("bash", "5.2.15-2+b9", "amd64", "bookworm-updates"),
            entry("bash", "5.2.15-2+b10~rc1", "amd64", "bookworm-security"),
            entry("dpkg", "1.21.23", "amd64", "bookworm"),
            entry("dpkg", "1.21.23", "amd64", "bookworm-security"),
            entry("current", "1.0-0", "amd64", "bookworm"),
            entry("newer-than-archive", "1.9", "amd64", "bookworm"),
        ];
        assert_eq!(
            summary(&upgradable(&installed, &available)),
            [
                "dpkg:amd64 1.21.22 -> 1.21.23 amd64 (bookworm)",
                "bash:amd64 5.2.15-2+b8 -> 5.2.15-2+b10~rc1 amd64 (bookworm-security)",
            ]
        );
    }

    #[test]
    fn architectures_follow_apts_native_slot() {
        let installed = [
            installed("dpkg", "1.0", "amd64"),
            installed("libc6", "2.36-9", "amd64"),
            installed("libc6", "2.36-9", "i386"),
            installed("tzdata", "2024a-0", "all"),
            installed("became-all", "1.0", "amd64"),
            installed("became-arch", "1.0", "all"),
            installed("foreign", "1.0", "i386"),
        ];
        let available = [
            entry("libc6", "2.36-10", "amd64", "s"),
            entry("tzdata", "2025b-0", "all", "s"),
            entry("tzdata", "2099a-0", "arm64", "s"),
            entry("became-all", "2.0", "all", "s"),
            entry("became-arch", "2.0", "amd64", "s"),
            entry("foreign", "2.0", "amd64", "s"),
            entry("foreign", "3.0", "all", "s"),
        ];
        assert_eq!(
            summary(&upgradable(&installed, &available)),
            [
                "libc6:amd64 2.36-9 -> 2.36-10 amd64 (s)",
                "tzdata:all 2024a-0 -> 2025b-0 all (s)",
                "became-all:amd64 1.0 -> 2.0 all (s)",
                "became-arch:all 1.0 -> 2.0 amd64 (s)",
            ]
        );

        // Without a native architecture `all` only matches `all`.
        let index = CandidateIndex::new(&available);
        assert_eq!(
            summary(&index.upgradable(&installed, None)),
            [
                "libc6:amd64 2.36-9 -> 2.36-10 amd64 (s)",
                "tzdata:all 2024a-0 -> 2025b-0 all (s)",
            ]
        );
    }

    #[test]
    fn native_architecture_comes_from_dpkg() {
        assert_eq!(
            native_architecture(&[installed("x", "1", "i386"), installed("dpkg", "1", "arm64")]),
            Some(Architecture::Arm64)
        );
        assert_eq!(native_architecture(&[installed("x", "1", "amd64")]), None);
    }
}
