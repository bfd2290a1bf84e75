//! Where an index comes from: the repository, suite, component and architecture of an apt lists file, and the `Release`/`InRelease` header.

use std::path::Path;

use crate::arch::Architecture;
use crate::deb822::{ParseError, parse_stanzas};

/// The repository an apt `Packages` index belongs to, recovered from its file name in
/// `/var/lib/apt/lists/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexOrigin {
    /// The repository URI without scheme or credentials, e.g. `deb.debian.org/debian-security`.
    pub host_path: String,
    /// e.g. `bookworm-security`; may contain `/` (old style `stretch/updates`).
    pub suite: String,
    /// e.g. `main`.
    pub component: String,
    pub architecture: Architecture,
}

/// A file name that is not an apt lists name of a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not an apt lists file name of a Packages index ({reason}); expected HOST_PATH_dists_SUITE_COMPONENT_binary-ARCH_Packages[.gz|.xz|.lz4], as in /var/lib/apt/lists/"
)]
pub struct OriginError {
    pub name: String,
    pub reason: String,
}

impl IndexOrigin {
    /// Parses a file name such as
    /// `deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4`.
    ///
    /// apt builds these names from the URI by percent-escaping `_` (and a few other characters)
    /// and then turning `/` into `_`, so splitting on `_` and undoing the escapes is exact. Flat
    /// repositories (`deb URI ./`, no `dists/`) are not supported.
    pub fn from_lists_filename(name: &str) -> Result<Self, OriginError> {
        let error = |reason: &str| OriginError {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let stem = [".gz", ".xz", ".lz4", ".zst", ".bz2"]
            .iter()
            .find_map(|extension| name.strip_suffix(extension))
            .unwrap_or(name);
        let segments: Vec<&str> = stem.split('_').collect();
        let [before @ .., component, binary_arch, "Packages"] = &segments[..] else {
            return Err(error("it does not end in _COMPONENT_binary-ARCH_Packages"));
        };
        let Some(arch) = binary_arch.strip_prefix("binary-") else {
            return Err(error("the part before _Packages is not binary-ARCH"));
        };
        let architecture = decode(arch)
            .parse()
            .map_err(|e: crate::arch::ArchitectureError| error(&e.to_string()))?;
        let Some(dists) = before.iter().position(|segment| *segment == "dists") else {
            return Err(error(
                "it has no _dists_ part (flat repositories are not supported)",
            ));
        };
        let (host_path, suite) = (&before[..dists], &before[dists + 1..]);
        if host_path.is_empty() || suite.is_empty() || component.is_empty() {
            return Err(error("the host, suite or component is empty"));
        }
        Ok(Self {
            host_path: join_decoded(host_path),
            suite: join_decoded(suite),
            component: decode(component),
            architecture,
        })
    }

    /// [`IndexOrigin::from_lists_filename`] applied to a path's file name.
    pub fn from_path(path: &Path) -> Result<Self, OriginError> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| OriginError {
                name: path.display().to_string(),
                reason: "the path has no UTF-8 file name".to_owned(),
            })?;
        Self::from_lists_filename(name)
    }
}

fn join_decoded(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|segment| decode(segment))
        .collect::<Vec<_>>()
        .join("/")
}

/// Undoes apt's `%xx` escapes; anything that is not a valid escape is kept as written.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The header of a `Release` or `InRelease` file. The signature is not checked here: apt (or
/// the catalog's importer) must verify it before trusting the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    /// e.g. `Debian`, `Ubuntu`.
    pub origin: Option<String>,
    pub label: Option<String>,
    /// e.g. `stable`, `oldstable`, `jammy-updates`.
    pub suite: Option<String>,
    /// e.g. `bookworm`.
    pub codename: Option<String>,
    /// e.g. `12.15`.
    pub version: Option<String>,
    pub date: Option<String>,
    pub architectures: Vec<Architecture>,
    pub components: Vec<String>,
    /// `NotAutomatic: yes` (e.g. experimental): apt never picks candidates from it by itself.
    pub not_automatic: bool,
    /// `ButAutomaticUpgrades: yes` (e.g. backports): apt upgrades packages already installed from it.
    pub but_automatic_upgrades: bool,
}

/// Parses the first stanza of a `Release` file, or of an `InRelease` file inside its clear-signed
/// PGP armor. Checksum lists and other fields are ignored.
pub fn parse_release(text: &str) -> Result<Release, ParseError> {
    let body = strip_pgp_armor(text)?;
    let stanza = parse_stanzas(&body)
        .next()
        .ok_or_else(|| ParseError::new(1, "Release file has no fields"))??;
    let text = |name: &str| {
        stanza
            .get(name)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let yes = |name: &str| {
        stanza
            .get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("yes"))
    };
    let architectures = match stanza.field("Architectures") {
        None => Vec::new(),
        Some(field) => field
            .value
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|error| {
                ParseError::new(field.line, format!("field Architectures: {error}"))
            })?,
    };
    Ok(Release {
        origin: text("Origin"),
        label: text("Label"),
        suite: text("Suite"),
        codename: text("Codename"),
        version: text("Version"),
        date: text("Date"),
        architectures,
        components: stanza
            .get("Components")
            .map(|value| value.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        not_automatic: yes("NotAutomatic"),
        but_automatic_upgrades: yes("ButAutomaticUpgrades"),
    })
}

const SIGNED_MESSAGE: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";

/// Returns the signed text of a clear-signed message (or the input when it is not signed), with
/// the armor lines blanked so that line numbers still match the file.
fn strip_pgp_armor(text: &str) -> Result<String, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .skip_while(|(_, line)| line.trim().is_empty());
    let Some((start, first)) = lines.next() else {
        return Ok(String::new());
    };
    if first.trim_end() != SIGNED_MESSAGE {
        return Ok(text.to_owned());
    }
    let mut body = "\n".repeat(start + 1);
    // Armor headers (`Hash: SHA512`) run up to the first blank line.
    for (_, line) in lines.by_ref() {
        body.push('\n');
        if line.trim().is_empty() {
            break;
        }
    }
    for (_, line) in lines {
        if line.trim_end() == SIGNATURE {
            return Ok(body);
        }
        // Clear-signing escapes lines starting with '-' as "- -...".
        body.push_str(line.strip_prefix("- ").unwrap_or(line));
        body.push('\n');
    }
    Err(ParseError::new(
        start + 1,
        "the PGP signed message has no '-----BEGIN PGP SIGNATURE-----' line; the file is truncated, fetch it again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_from_debian_security_lists_name() {
        let origin = IndexOrigin::from_lists_filename(
            "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
        )
        .unwrap();
        assert_eq!(
            origin,
            IndexOrigin {
                host_path: "deb.debian.org/debian-security".to_owned(),
                suite: "bookworm-security".to_owned(),
                component: "main".to_owned(),
                architecture: Architecture::Amd64,
            }
        );
    }

    #[test]
    fn origin_handles_escapes_ports_and_old_security_suites() {
        let origin = IndexOrigin::from_lists_filename(
            "mirror.example.com:8080_my%5frepo_ubuntu_dists_jammy-updates_multiverse_binary-arm64_Packages",
        )
        .unwrap();
        assert_eq!(origin.host_path, "mirror.example.com:8080/my_repo/ubuntu");
        assert_eq!(origin.suite, "jammy-updates");
        assert_eq!(origin.component, "multiverse");
        assert_eq!(origin.architecture, Architecture::Arm64);

        let origin = IndexOrigin::from_lists_filename(
            "security.debian.org_dists_stretch_updates_main_binary-i386_Packages.gz",
        )
        .unwrap();
        assert_eq!(origin.host_path, "security.debian.org");
        assert_eq!(origin.suite, "stretch/updates");
        assert_eq!(origin.architecture, Architecture::I386);
    }

    #[test]
    fn other_lists_files_are_rejected() {
        for name in [
            "deb.debian.org_debian_dists_bookworm_InRelease",
            "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en",
            "deb.debian.org_debian_dists_bookworm_main_source_Sources.xz",
            "example.com_repo_._Packages",
            "dists_bookworm_main_binary-amd64_Packages",
            "example.com_dists_bookworm_main_binary-amd_64_Packages",
            "",
        ] {
            assert!(IndexOrigin::from_lists_filename(name).is_err(), "{name:?}");
        }
    }

    const IN_RELEASE: &str = "\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Label: Debian-Security
Suite: oldstable-security
Version: 12
Codename: bookworm-security
Date: Sat, 11 Jul 2026 10:16:37 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64 i386
Components: updates/main updates/contrib
Description: Debian 12 - Security Updates
SHA256:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/binary-amd64/Packages
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEE
-----END PGP SIGNATURE-----
";

    #[test]
    fn release_fields_inside_pgp_armor() {
        let release = parse_release(IN_RELEASE).unwrap();
        assert_eq!(release.origin.as_deref(), Some("Debian"));
        assert_eq!(release.label.as_deref(), Some("Debian-Security"));
        assert_eq!(release.suite.as_deref(), Some("oldstable-security"));
        assert_eq!(release.codename.as_deref(), Some("bookworm-security"));
        assert_eq!(release.version.as_deref(), Some("12"));
        assert_eq!(
            release.architectures,
            [Architecture::Amd64, Architecture::Arm64, Architecture::I386]
        );
        assert_eq!(release.components, ["updates/main", "updates/contrib"]);
        assert!(!release.not_automatic);
    }

    #[test]
    fn unsigned_release_and_errors_keep_line_numbers() {
        let release =
            parse_release("Suite: experimental\nNotAutomatic: yes\nButAutomaticUpgrades: yes\n")
                .unwrap();
        assert_eq!(release.suite.as_deref(), Some("experimental"));
        assert!(release.not_automatic && release.but_automatic_upgrades);

        let broken = IN_RELEASE.replace("Version: 12", "Version 12");
        let error = parse_release(&broken).unwrap_err();
        assert_eq!(error.line, 7);

        let escaped = "-----BEGIN PGP SIGNED MESSAGE-----\n\n- -dash: escaped\n-----BEGIN PGP SIGNATURE-----\n";
        assert_eq!(strip_pgp_armor(escaped).unwrap(), "\n\n-dash: escaped\n");

        let truncated = &IN_RELEASE[..IN_RELEASE.find(SIGNATURE).unwrap()];
        assert!(
            parse_release(truncated)
                .unwrap_err()
                .message
                .contains("truncated")
        );
        assert!(parse_release("").is_err());
    }
}
