//! Debian/Ubuntu apt `Packages` indexes as third-party updates: one update per (package, version,
//! architecture), with the suite and component it was published in.

use std::io::BufReader;

use patchbay_debian::{IndexOrigin, PackageEntry, ReadOptions, decompress, read_packages};
use patchbay_proto::catalog::v1 as pb;

use crate::domain::UpdateId;

/// The updates of one index, and the stanzas that could not be used (with their line).
#[derive(Debug, Default)]
pub struct AptImport {
    pub entries_read: u64,
    pub updates: Vec<(UpdateId, pb::UpdateDetails)>,
    pub problems: Vec<pb::ImportProblem>,
}

#[derive(Debug, thiserror::Error)]
pub enum AptImportError {
    #[error("index '{file}': {reason}")]
    Unreadable { file: String, reason: String },
    #[error(
        "index '{0}': cannot tell its suite; pass the suite (e.g. bookworm-security), or use the file name apt gives it in /var/lib/apt/lists"
    )]
    NoSuite(String),
}

/// Parses a (possibly compressed) `Packages` index. The suite and component come from the header,
/// else from an apt lists file name. Malformed stanzas are reported with their line; the rest import.
pub fn parse_index(header: &pb::AptIndexHeader, data: &[u8]) -> Result<AptImport, AptImportError> {
    let unreadable = |reason: String| AptImportError::Unreadable {
        file: header.file_name.clone(),
        reason,
    };
    let from_name = IndexOrigin::from_lists_filename(base_name(&header.file_name)).ok();
    let suite = non_empty(&header.suite)
        .or_else(|| from_name.as_ref().map(|o| o.suite.clone()))
        .ok_or_else(|| AptImportError::NoSuite(header.file_name.clone()))?;
    let component = non_empty(&header.component)
        .or_else(|| from_name.as_ref().map(|o| o.component.clone()))
        .unwrap_or_else(|| "main".to_owned());
    let origin = non_empty(&header.origin)
        .or_else(|| from_name.as_ref().map(|o| o.host_path.clone()))
        .unwrap_or_else(|| "unknown".to_owned());

    let reader = decompress(BufReader::new(data), &ReadOptions::default())
        .map_err(|e| unreadable(e.to_string()))?;
    let parsed = read_packages(BufReader::new(reader)).map_err(|e| unreadable(e.to_string()))?;
    let mut import = AptImport {
        entries_read: (parsed.entries.len() + parsed.errors.len()) as u64,
        ..Default::default()
    };
    import
        .problems
        .extend(parsed.errors.into_iter().map(|e| pb::ImportProblem {
            line: e.line as u64,
            message: e.message,
        }));
    for entry in parsed.entries {
        match update_of(&entry, &suite, &component, &origin) {
            Ok(update) => import.updates.push(update),
            Err(error) => import.problems.push(pb::ImportProblem {
                line: 0,
                message: error.to_string(),
            }),
        }
    }
    Ok(import)
}

fn update_of(
    entry: &PackageEntry,
    suite: &str,
    component: &str,
    origin: &str,
) -> Result<(UpdateId, pb::UpdateDetails), crate::domain::CatalogError> {
    let version = entry.version.to_string();
    let architecture = entry.architecture.to_string();
    let id = UpdateId::debian(&entry.package, &version, &architecture)?;
    let security = suite.ends_with("-security") || suite.contains("/updates");
    let details = pb::UpdateDetails {
        title: format!("{} {version}", entry.package),
        vendor: vendor_of(origin).to_owned(),
        product: entry.package.clone(),
        version: version.clone(),
        kind: pb::UpdateKind::ThirdParty as i32,
        classification: if security {
            pb::Classification::Security
        } else {
            pb::Classification::Update
        } as i32,
        size_bytes: entry.size.unwrap_or(0),
        uninstallable: true,
        reboot: pb::RebootBehaviour::Never as i32,
        source: format!("apt:{origin}"),
        applicability: Some(pb::update_details::Applicability::Debian(
            pb::DebianPackage {
                package: entry.package.clone(),
                version,
                architecture,
                suites: vec![suite.to_owned()],
                component: component.to_owned(),
                source_package: entry.source_name().to_owned(),
            },
        )),
        ..Default::default()
    };
    Ok((id, details))
}

fn vendor_of(origin: &str) -> &'static str {
    if origin.contains("ubuntu") {
        "Ubuntu"
    } else if origin.contains("debian") {
        "Debian"
    } else {
        "apt"
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn non_empty(value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: openssl
Version: 3.0.17-1~deb12u2
Architecture: amd64
Source: openssl
Size: 1434060
Description: Secure Sockets Layer toolkit

Package: broken
Architecture: amd64

Package: tzdata
Version: 2025b-0+deb12u1
Architecture: all
Description: time zone and daylight-saving time data
";

    fn header(file_name: &str, suite: &str) -> pb::AptIndexHeader {
        pb::AptIndexHeader {
            file_name: file_name.into(),
            suite: suite.into(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_become_updates_and_a_bad_stanza_is_reported_with_its_line() {
        let name =
            "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages";
        let import = parse_index(&header(name, ""), INDEX.as_bytes()).unwrap();
        assert_eq!(import.entries_read, 3);
        assert_eq!(import.updates.len(), 2);
        let (id, details) = &import.updates[0];
        assert_eq!(id.as_str(), "deb:openssl:3.0.17-1~deb12u2:amd64");
        assert_eq!(details.vendor, "Debian");
        assert_eq!(details.classification, pb::Classification::Security as i32);
        assert_eq!(details.source, "apt:deb.debian.org/debian-security");
        let Some(pb::update_details::Applicability::Debian(debian)) = &details.applicability else {
            panic!()
        };
        assert_eq!(
            (debian.suites.as_slice(), debian.component.as_str()),
            (&["bookworm-security".to_owned()][..], "main")
        );
        assert_eq!(
            import.updates[1].0.as_str(),
            "deb:tzdata:2025b-0+deb12u1:all"
        );
        assert_eq!(import.problems.len(), 1);
        assert_eq!(import.problems[0].line, 8);
    }

    #[test]
    fn the_suite_is_required_when_the_name_does_not_tell_it() {
        let error = parse_index(&header("Packages", ""), INDEX.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("suite"), "{error}");
        let import = parse_index(&header("Packages", "bookworm"), INDEX.as_bytes()).unwrap();
        assert_eq!(
            import.updates[0].1.classification,
            pb::Classification::Update as i32
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let import = parse_index(
            &header("Packages", "bookworm"),
            b"\x04\x22\x4d\x18garbage-lz4",
        );
        assert!(import.is_err() || import.is_ok_and(|i| i.updates.is_empty()));
    }
}
