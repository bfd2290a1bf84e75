//! What a Debian/Ubuntu device has: installed packages from the dpkg database, the suites its apt
//! sources use, and its OS name.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use patchbay_debian::{ReadOptions, native_architecture, parse_stanzas, read_status_file};
use patchbay_proto::scanning::v1 as pb;

/// Where the Debian executor reads the machine's state.
#[derive(Debug, Clone)]
pub struct DebianPaths {
    pub dpkg_status: PathBuf,
    pub apt_sources: PathBuf,
    pub os_release: PathBuf,
}

impl Default for DebianPaths {
    fn default() -> Self {
        Self {
            dpkg_status: PathBuf::from("/var/lib/dpkg/status"),
            apt_sources: PathBuf::from("/etc/apt"),
            os_release: PathBuf::from("/etc/os-release"),
        }
    }
}

/// Reads the device's inventory. Malformed dpkg stanzas are reported (returned as warnings) and
/// skipped; an unreadable status file is an error.
pub fn read_debian_inventory(paths: &DebianPaths) -> anyhow::Result<(pb::Inventory, Vec<String>)> {
    let parsed =
        read_status_file(&paths.dpkg_status, &ReadOptions::default()).with_context(|| {
            format!(
                "cannot read the dpkg database {}",
                paths.dpkg_status.display()
            )
        })?;
    let warnings = parsed.errors.iter().map(ToString::to_string).collect();
    let native = native_architecture(&parsed.entries)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let packages = parsed
        .entries
        .iter()
        .map(|p| pb::InstalledPackage {
            name: p.package.clone(),
            version: p.version.to_string(),
            architecture: p.architecture.to_string(),
        })
        .collect();
    let inventory = pb::Inventory {
        os: os_name(&paths.os_release),
        native_architecture: native,
        packages,
        apt_suites: apt_suites(&paths.apt_sources),
        ..Default::default()
    };
    Ok((inventory, warnings))
}

/// `PRETTY_NAME` from os-release, or "unknown".
fn os_name(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|value| value.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The suites of every enabled `deb` source in `sources.list`, `sources.list.d/*.list` and
/// `sources.list.d/*.sources`, sorted and deduplicated.
pub fn apt_suites(apt_dir: &Path) -> Vec<String> {
    let mut suites = Vec::new();
    if let Ok(text) = std::fs::read_to_string(apt_dir.join("sources.list")) {
        suites.extend(one_line_suites(&text));
    }
    if let Ok(entries) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => suites.extend(one_line_suites(&text)),
                Some("sources") => suites.extend(deb822_suites(&text)),
                _ => {}
            }
        }
    }
    suites.sort();
    suites.dedup();
    suites
}

/// `deb [options] URI SUITE [COMPONENT...]` lines.
fn one_line_suites(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1.trim_start(),
                None => rest,
            };
            rest.split_whitespace().nth(1).map(str::to_owned)
        })
        .collect()
}

/// deb822 `.sources` stanzas with `Types: deb` and not `Enabled: no`.
fn deb822_suites(text: &str) -> Vec<String> {
    parse_stanzas(text)
        .filter_map(Result::ok)
        .filter(|stanza| {
            stanza
                .field("Types")
                .is_some_and(|f| f.value.split_whitespace().any(|t| t == "deb"))
                && !stanza
                    .field("Enabled")
                    .is_some_and(|f| f.value.trim().eq_ignore_ascii_case("no"))
        })
        .flat_map(|stanza| {
            stanza
                .field("Suites")
                .map(|f| {
                    f.value
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_come_from_both_source_formats() {
        let list = "deb http://deb.debian.org/debian bookworm main\n# deb http://x y z\ndeb [arch=amd64 signed-by=/k] https://repo bookworm-security main\ndeb-src http://a b c\n";
        assert_eq!(one_line_suites(list), ["bookworm", "bookworm-security"]);
        let sources = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: x\nSuites: sid\n\nTypes: deb\nEnabled: no\nURIs: y\nSuites: trixie\n";
        assert_eq!(deb822_suites(sources), ["bookworm", "bookworm-updates"]);
    }
}
