//! Entries of apt `Packages` indexes and of dpkg's `status` database, built from deb822 stanzas.

use std::io::{self, BufRead};
use std::str::FromStr;

use crate::arch::Architecture;
use crate::deb822::{ParseError, Stanza, StanzaReader, parse_stanzas};
use crate::version::DebianVersion;

/// One binary package offered by a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub package: String,
    pub version: DebianVersion,
    pub architecture: Architecture,
    /// The source package's name when the index gives one; absent means "same as `package`"
    /// (see [`PackageEntry::source_name`]).
    pub source: Option<String>,
    /// The source version when it differs from `version`, from `Source: name (version)`
    /// (binary-only rebuilds such as `+b1`).
    pub source_version: Option<DebianVersion>,
    pub section: Option<String>,
    pub priority: Option<String>,
    /// `Installed-Size`, in KiB.
    pub installed_size: Option<u64>,
    /// `Size` of the `.deb`, in bytes.
    pub size: Option<u64>,
    /// Lowercase hex SHA-256 of the `.deb`.
    pub sha256: Option<String>,
    /// Path of the `.deb` relative to the archive root.
    pub filename: Option<String>,
    /// The first line of `Description` (the synopsis).
    pub description: Option<String>,
}

impl PackageEntry {
    /// The source package's name: `Source` if given, else the binary package's name.
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.package)
    }

    /// Builds an entry from a `Packages` stanza. `Package`, `Version` and `Architecture` are
    /// required; the other fields are optional but must be well-formed when present.
    pub fn from_stanza(stanza: &Stanza) -> Result<Self, ParseError> {
        let (source, source_version) = match stanza.field("Source") {
            None => (None, None),
            Some(field) => {
                let (name, version) = parse_source(&field.value)
                    .map_err(|message| ParseError::new(field.line, message))?;
                (Some(name), version)
            }
        };
        Ok(Self {
            package: package_name(stanza)?,
            version: required(stanza, "Version")?,
            architecture: required(stanza, "Architecture")?,
            source,
            source_version,
            section: text(stanza, "Section"),
            priority: text(stanza, "Priority"),
            installed_size: optional(stanza, "Installed-Size")?,
            size: optional(stanza, "Size")?,
            sha256: sha256(stanza)?,
            filename: text(stanza, "Filename"),
            description: stanza
                .get("Description")
                .and_then(|value| value.lines().next())
                .filter(|synopsis| !synopsis.is_empty())
                .map(str::to_owned),
        })
    }
}

/// A package dpkg has installed, from its `status` database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub package: String,
    pub version: DebianVersion,
    pub architecture: Architecture,
    pub status: PackageStatus,
    /// The source package's name when it differs from `package`.
    pub source: Option<String>,
}

impl InstalledPackage {
    /// Builds an installed package from a `status` stanza, or `Ok(None)` when the stanza
    /// describes a package that is not installed (see [`PackageStatus::is_installed`]).
    pub fn from_stanza(stanza: &Stanza) -> Result<Option<Self>, ParseError> {
        let status: PackageStatus = required(stanza, "Status")?;
        if !status.is_installed() {
            return Ok(None);
        }
        let source = match stanza.field("Source") {
            None => None,
            Some(field) => Some(
                parse_source(&field.value)
                    .map_err(|message| ParseError::new(field.line, message))?
                    .0,
            ),
        };
        Ok(Some(Self {
            package: package_name(stanza)?,
            version: required(stanza, "Version")?,
            architecture: required(stanza, "Architecture")?,
            status,
            source,
        }))
    }
}

/// dpkg's `Status: want flag state` triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackageStatus {
    pub want: Want,
    /// `false` when dpkg flagged the package `reinstreq` (it needs reinstalling).
    pub ok: bool,
    pub state: State,
}

impl PackageStatus {
    /// Installed means `install ok installed` or `hold ok installed`: the package is fully
    /// unpacked and configured and nobody asked to remove it.
    ///
    /// Not counted: packages selected for removal (`deinstall`/`purge`) but still present, packages
    /// dpkg flagged `reinstreq`, and transient states of an interrupted or running dpkg
    /// (`unpacked`, `half-configured`, `triggers-awaited`, `triggers-pending`, ...). On a healthy
    /// system every present package is `ii` (`install ok installed`) or `hi` (held).
    pub fn is_installed(&self) -> bool {
        matches!(self.want, Want::Install | Want::Hold) && self.ok && self.state == State::Installed
    }

    /// True when the package is on hold (`apt-mark hold`): apt lists it as upgradable but does
    /// not upgrade it.
    pub fn is_held(&self) -> bool {
        self.want == Want::Hold
    }
}

/// What the administrator asked dpkg to do with the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    Unknown,
    Install,
    Hold,
    Deinstall,
    Purge,
}

/// How far dpkg got installing the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    NotInstalled,
    ConfigFiles,
    HalfInstalled,
    Unpacked,
    HalfConfigured,
    TriggersAwaited,
    TriggersPending,
    Installed,
}

impl FromStr for PackageStatus {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = value.split_ascii_whitespace().collect();
        let [want, flag, state] = words[..] else {
            return Err(format!(
                "Status {value:?} should be three words: want, flag and state (e.g. 'install ok installed')"
            ));
        };
        let want = match want {
            "unknown" => Want::Unknown,
            "install" => Want::Install,
            "hold" => Want::Hold,
            "deinstall" => Want::Deinstall,
            "purge" => Want::Purge,
            other => return Err(format!("Status has unknown want {other:?}")),
        };
        let ok = match flag {
            "ok" => true,
            "reinstreq" => false,
            other => return Err(format!("Status has unknown flag {other:?}")),
        };
        let state = match state {
            "not-installed" => State::NotInstalled,
            "config-files" => State::ConfigFiles,
            "half-installed" => State::HalfInstalled,
            "unpacked" => State::Unpacked,
            "half-configured" => State::HalfConfigured,
            "triggers-awaited" => State::TriggersAwaited,
            "triggers-pending" => State::TriggersPending,
            "installed" => State::Installed,
            other => return Err(format!("Status has unknown state {other:?}")),
        };
        Ok(Self { want, ok, state })
    }
}

/// What came out of parsing a file: the good entries plus one error per bad stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    pub errors: Vec<ParseError>,
    /// Well-formed stanzas deliberately left out (in `status`: packages that are not installed).
    pub skipped: usize,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            errors: Vec::new(),
            skipped: 0,
        }
    }
}

impl<T> Parsed<T> {
    fn add(&mut self, item: Result<Stanza, ParseError>, convert: Convert<T>) {
        match item.and_then(|stanza| convert(&stanza)) {
            Ok(Some(entry)) => self.entries.push(entry),
            Ok(None) => self.skipped += 1,
            Err(error) => self.errors.push(error),
        }
    }
}

type Convert<T> = fn(&Stanza) -> Result<Option<T>, ParseError>;

fn convert_package(stanza: &Stanza) -> Result<Option<PackageEntry>, ParseError> {
    PackageEntry::from_stanza(stanza).map(Some)
}

/// Parses the text of a `Packages` index.
pub fn parse_packages(text: &str) -> Parsed<PackageEntry> {
    parse_text(text, convert_package)
}

/// Parses the text of dpkg's `status` file, keeping installed packages only.
pub fn parse_status(text: &str) -> Parsed<InstalledPackage> {
    parse_text(text, InstalledPackage::from_stanza)
}

/// Parses a `Packages` index from a stream, one stanza at a time.
pub fn read_packages(reader: impl BufRead) -> io::Result<Parsed<PackageEntry>> {
    read_stream(reader, convert_package)
}

/// Parses dpkg's `status` file from a stream, keeping installed packages only.
pub fn read_status(reader: impl BufRead) -> io::Result<Parsed<InstalledPackage>> {
    read_stream(reader, InstalledPackage::from_stanza)
}

fn parse_text<T>(text: &str, convert: Convert<T>) -> Parsed<T> {
    let mut parsed = Parsed::default();
    for item in parse_stanzas(text) {
        parsed.add(item, convert);
    }
    parsed
}

fn read_stream<T>(reader: impl BufRead, convert: Convert<T>) -> io::Result<Parsed<T>> {
    let mut parsed = Parsed::default();
    for item in StanzaReader::new(reader) {
        parsed.add(item?, convert);
    }
    Ok(parsed)
}

fn package_name(stanza: &Stanza) -> Result<String, ParseError> {
    let field = stanza
        .field("Package")
        .ok_or_else(|| missing(stanza, "Package"))?;
    validate_package_name(&field.value).map_err(|message| ParseError::new(field.line, message))?;
    Ok(field.value.clone())
}

/// dpkg's rule (`pkg_name_is_illegal`): a letter or digit, then letters, digits and `-+._`.
/// Policy is stricter (lowercase, no `_`), but dpkg accepts these and so must we.
fn validate_package_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+._".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "package name {name:?} is not valid: it must start with a letter or digit and contain only letters, digits and '-+._'"
        ))
    }
}

/// `Source: name` or `Source: name (version)`.
fn parse_source(value: &str) -> Result<(String, Option<DebianVersion>), String> {
    let (name, version) = match value.split_once('(') {
        None => (value.trim(), None),
        Some((name, rest)) => {
            let Some(version) = rest.trim_end().strip_suffix(')') else {
                return Err(format!(
                    "Source {value:?} should be 'name' or 'name (version)'"
                ));
            };
            let version = version
                .parse::<DebianVersion>()
                .map_err(|error| format!("Source {value:?} has a bad version: {error}"))?;
            (name.trim(), Some(version))
        }
    };
    validate_package_name(name).map_err(|error| format!("Source {value:?}: {error}"))?;
    Ok((name.to_owned(), version))
}

fn missing(stanza: &Stanza, name: &str) -> ParseError {
    let package = stanza
        .get("Package")
        .map(|package| format!(" (package {package:?})"))
        .unwrap_or_default();
    ParseError::new(
        stanza.line,
        format!("stanza{package} has no {name} field, which is required; the stanza was skipped"),
    )
}

/// Parses a required field with `FromStr`.
fn required<T: FromStr>(stanza: &Stanza, name: &str) -> Result<T, ParseError>
where
    T::Err: std::fmt::Display,
{
    optional(stanza, name)?.ok_or_else(|| missing(stanza, name))
}

/// Parses an optional field with `FromStr`; present but malformed is an error.
fn optional<T: FromStr>(stanza: &Stanza, name: &str) -> Result<Option<T>, ParseError>
where
    T::Err: std::fmt::Display,
{
    let Some(field) = stanza.field(name) else {
        return Ok(None);
    };
    field.value.parse().map(Some).map_err(|error| {
        ParseError::new(
            field.line,
            format!("field {name} {:?} is not valid: {error}", field.value),
        )
    })
}

fn text(stanza: &Stanza, name: &str) -> Option<String> {
    stanza
        .get(name)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn sha256(stanza: &Stanza) -> Result<Option<String>, ParseError> {
    let Some(field) = stanza.field("SHA256") else {
        return Ok(None);
    };
    let valid = field.value.len() == 64 && field.value.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(ParseError::new(
            field.line,
            format!(
                "field SHA256 {:?} is not 64 hex digits; the index is corrupt, download it again",
                field.value
            ),
        ));
    }
    Ok(Some(field.value.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: bash
Source: bash (5.2.15-2)
Version: 5.2.15-2+b8
Installed-Size: 7160
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Pre-Depends: libc6 (>= 2.36), libtinfo6 (>= 6)
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
Section: shells
Priority: required
Filename: pool/main/b/bash/bash_5.2.15-2+b8_amd64.deb
Size: 1489176
SHA256: 0BD39A1C2F84CE4CC1E3F1C6A0C7F2D55A5C3FC9E9D0EFB4C2D8D3F2D93C5A41

Package: adduser
Version: 3.134
Architecture: all
";

    #[test]
    fn parses_packages_entries() {
        let parsed = parse_packages(PACKAGES);
        assert_eq!(parsed.errors, []);
        let [bash, adduser] = &parsed.entries[..] else {
            panic!("two entries expected: {parsed:?}");
        };
        assert_eq!(bash.package, "bash");
        assert_eq!(bash.version.as_str(), "5.2.15-2+b8");
        assert_eq!(bash.architecture, Architecture::Amd64);
        assert_eq!(bash.source.as_deref(), Some("bash"));
        assert_eq!(
            bash.source_version.as_ref().map(DebianVersion::as_str),
            Some("5.2.15-2")
        );
        assert_eq!(bash.installed_size, Some(7160));
        assert_eq!(bash.size, Some(1_489_176));
        assert_eq!(
            bash.sha256.as_deref(),
            Some("0bd39a1c2f84ce4cc1e3f1c6a0c7f2d55a5c3fc9e9d0efb4c2d8d3f2d93c5a41")
        );
        assert_eq!(bash.description.as_deref(), Some("GNU Bourne Again SHell"));
        assert_eq!(bash.section.as_deref(), Some("shells"));
        assert_eq!(bash.priority.as_deref(), Some("required"));
        assert_eq!(
            bash.filename.as_deref(),
            Some("pool/main/b/bash/bash_5.2.15-2+b8_amd64.deb")
        );
        assert_eq!(adduser.architecture, Architecture::All);
        assert_eq!(adduser.source_name(), "adduser");
        assert_eq!(adduser.size, None);
    }

    #[test]
    fn bad_fields_are_reported_with_their_line() {
        let text = "\
Package: a
Version: 1.0-
Architecture: amd64

Package: b
Version: 1
Architecture: amd 64

Package: c
Version: 1
Architecture: amd64
Size: big

Version: 1
Architecture: amd64

Package: Bad Name!
Version: 1
Architecture: amd64

Package: ok
Version: 1
Architecture: amd64
";
        let parsed = parse_packages(text);
        assert_eq!(parsed.entries.len(), 1);
        let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 7, 12, 14, 17]);
        assert!(parsed.errors[0].message.contains("revision"));
        assert!(parsed.errors[3].message.contains("no Package field"));
    }

    #[test]
    fn status_keeps_installed_packages_only() {
        let text = "\
Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u10

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9+deb12u10

Package: held
Status: hold ok installed
Architecture: all
Version: 1.0

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: broken
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: nostatus
Architecture: amd64
Version: 1.0
";
        let parsed = parse_status(text);
        let names: Vec<String> = parsed
            .entries
            .iter()
            .map(|p| format!("{}:{}", p.package, p.architecture))
            .collect();
        assert_eq!(names, ["libc6:amd64", "libc6:i386", "held:all"]);
        assert!(parsed.entries[2].status.is_held());
        assert_eq!(parsed.skipped, 3);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 31);
        assert!(parsed.errors[0].message.contains("no Status field"));
    }

    #[test]
    fn status_words_are_validated() {
        assert!("install ok".parse::<PackageStatus>().is_err());
        assert!(
            "install ok installed extra"
                .parse::<PackageStatus>()
                .is_err()
        );
        assert!("want ok installed".parse::<PackageStatus>().is_err());
        let status: PackageStatus = "install ok triggers-pending".parse().unwrap();
        assert!(!status.is_installed());
    }

    #[test]
    fn streaming_and_text_parsing_agree() {
        let from_text = parse_packages(PACKAGES);
        let from_stream = read_packages(PACKAGES.as_bytes()).unwrap();
        assert_eq!(from_text, from_stream);
    }
}
