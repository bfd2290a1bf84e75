//! Update manifests: a JSON list of updates for managed (first-party) applications and vendors without an apt repository.

use std::collections::HashMap;
use std::str::FromStr as _;

use patchbay_debian::{Architecture, DebianVersion};
use patchbay_proto::catalog::v1 as pb;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::domain::{CveId, UpdateId};

/// The whole document: `{"source": "...", "updates": [ ... ]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    source: String,
    updates: Vec<Value>,
}

/// One update as written. Every field is optional here so that a bad value can be traced to its
/// field (see [`from_object`]); the required ones are checked while converting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Option<String>,
    title: Option<String>,
    vendor: Option<String>,
    product: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    classification: Option<String>,
    severity: Option<String>,
    cve_ids: Option<Vec<String>>,
    supersedes: Option<Vec<String>>,
    release_date: Option<String>,
    size_bytes: Option<u64>,
    eula: Option<Value>,
    min_server_version: Option<String>,
    uninstallable: Option<bool>,
    reboot: Option<String>,
    debian: Option<Value>,
    windows: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EulaEntry {
    id: Option<String>,
    text: Option<String>,
    text_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebianEntry {
    package: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    suites: Option<Vec<String>>,
    component: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowsEntry {
    kb_article: Option<String>,
    product_ids: Option<Vec<String>>,
}

/// The updates of a manifest, plus one message per entry that could not be used.
#[derive(Debug, Default)]
pub struct ManifestImport {
    /// The manifest's `source`, trimmed; the updates' source is `manifest:<source>`.
    pub source: String,
    pub entries_read: u64,
    /// `(index in updates[], id, details)`, in document order.
    pub updates: Vec<(usize, UpdateId, pb::UpdateDetails)>,
    /// `(index in updates[], what was wrong)`; the message names the field.
    pub rejected: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "not an update manifest: {0} (expected a JSON object {{\"source\": \"<feed name>\", \"updates\": [...]}}, see docs/update-manifest.md)"
    )]
    Format(#[from] serde_json::Error),
    #[error(
        "not an update manifest: the document is {0}, expected a JSON object {{\"source\": \"<feed name>\", \"updates\": [...]}} (see docs/update-manifest.md)"
    )]
    NotAnObject(&'static str),
    #[error(
        "the update manifest's \"source\" is empty: name the feed the updates come from, e.g. \"patchbay-managed-apps\""
    )]
    EmptySource,
}

const KINDS: &[(&str, pb::UpdateKind)] = &[
    ("first-party", pb::UpdateKind::FirstParty),
    ("third-party", pb::UpdateKind::ThirdParty),
    ("windows", pb::UpdateKind::Windows),
];

const CLASSIFICATIONS: &[(&str, pb::Classification)] = &[
    ("Critical", pb::Classification::Critical),
    ("Security", pb::Classification::Security),
    ("Definition", pb::Classification::Definition),
    ("Feature Pack", pb::Classification::FeaturePack),
    ("Service Pack", pb::Classification::ServicePack),
    ("Tool", pb::Classification::Tool),
    ("Update Rollup", pb::Classification::UpdateRollup),
    ("Update", pb::Classification::Update),
    ("Driver", pb::Classification::Driver),
    ("Upgrade", pb::Classification::Upgrade),
];

const SEVERITIES: &[(&str, pb::Severity)] = &[
    ("Low", pb::Severity::Low),
    ("Moderate", pb::Severity::Moderate),
    ("Important", pb::Severity::Important),
    ("Critical", pb::Severity::Critical),
];

const REBOOTS: &[(&str, pb::RebootBehaviour)] = &[
    ("never", pb::RebootBehaviour::Never),
    ("may-require", pb::RebootBehaviour::MayRequire),
    ("always", pb::RebootBehaviour::Always),
];

/// Parses an update manifest. A malformed document is an error; a malformed entry is reported in
/// `rejected` (with the field at fault) and the other entries still import.
pub fn parse(json: &[u8]) -> Result<ManifestImport, ManifestError> {
    let document: Value = serde_json::from_slice(json)?;
    if !document.is_object() {
        return Err(ManifestError::NotAnObject(json_kind(&document)));
    }
    let document = Document::deserialize(document)?;
    let source = document.source.trim();
    if source.is_empty() {
        return Err(ManifestError::EmptySource);
    }
    let origin = format!("manifest:{source}");
    let mut import = ManifestImport {
        source: source.to_owned(),
        entries_read: document.updates.len() as u64,
        ..Default::default()
    };
    let mut seen: HashMap<UpdateId, usize> = HashMap::new();
    for (index, value) in document.updates.iter().enumerate() {
        match update_of(value, &origin) {
            Ok((id, details)) => {
                if let Some(first) = seen.get(&id) {
                    import.rejected.push((
                        index,
                        format!(
                            "field `id`: update '{id}' is already entry {first} of this manifest; list each update once"
                        ),
                    ));
                    continue;
                }
                seen.insert(id.clone(), index);
                import.updates.push((index, id, details));
            }
            Err(message) => import.rejected.push((index, message)),
        }
    }
    Ok(import)
}

/// One entry as an update, or what is wrong with it (naming the field).
fn update_of(value: &Value, origin: &str) -> Result<(UpdateId, pb::UpdateDetails), String> {
    let entry: Entry =
        from_object(value, "").map_err(|e| match value.get("id").and_then(Value::as_str) {
            Some(id) => format!("update '{id}': {e}"),
            None => e,
        })?;
    let id = required(entry.id.as_deref(), "id")?;
    let id = UpdateId::parse(&id).map_err(|e| format!("field `id`: {e}"))?;
    let details = details_of(&id, entry, origin).map_err(|e| format!("update '{id}': {e}"))?;
    Ok((id, details))
}

fn details_of(id: &UpdateId, entry: Entry, origin: &str) -> Result<pb::UpdateDetails, String> {
    let kind = choose("kind", &required(entry.kind.as_deref(), "kind")?, KINDS)?;
    let classification = choose(
        "classification",
        &required(entry.classification.as_deref(), "classification")?,
        CLASSIFICATIONS,
    )?;
    let severity = match entry.severity.as_deref() {
        Some(severity) => choose("severity", severity, SEVERITIES)? as i32,
        None => pb::Severity::Unspecified as i32,
    };
    let reboot = match entry.reboot.as_deref() {
        Some(reboot) => choose("reboot", reboot, REBOOTS)? as i32,
        None => pb::RebootBehaviour::Unspecified as i32,
    };
    let mut cve_ids = entry
        .cve_ids
        .unwrap_or_default()
        .iter()
        .map(|cve| {
            CveId::parse(cve)
                .map(|cve| cve.to_string())
                .map_err(|e| format!("field `cve_ids`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    cve_ids.sort();
    cve_ids.dedup();
    let mut supersedes = Vec::new();
    for superseded in entry.supersedes.unwrap_or_default() {
        let superseded =
            UpdateId::parse(superseded.trim()).map_err(|e| format!("field `supersedes`: {e}"))?;
        if &superseded == id {
            return Err("field `supersedes`: an update cannot supersede itself".to_owned());
        }
        if !supersedes.contains(&superseded.to_string()) {
            supersedes.push(superseded.to_string());
        }
    }
    let release_date = match entry.release_date.as_deref() {
        Some(date) => release_date(date)?,
        None => String::new(),
    };
    let eula = entry.eula.as_ref().map(eula).transpose()?;
    let min_server_version = match entry.min_server_version.as_deref() {
        Some(version) => semver::Version::parse(version.trim())
            .map_err(|e| {
                format!(
                    "field `min_server_version`: {version:?} is not a semantic version ({e}); write MAJOR.MINOR.PATCH, e.g. \"1.4.0\""
                )
            })?
            .to_string(),
        None => String::new(),
    };
    let applicability = match (&entry.debian, &entry.windows) {
        (Some(debian_value), None) => {
            if kind == pb::UpdateKind::Windows {
                return Err(
                    "field `kind`: a windows update applies through `windows` (kb_article, product_ids), not `debian`"
                        .to_owned(),
                );
            }
            pb::update_details::Applicability::Debian(debian(debian_value)?)
        }
        (None, Some(windows_value)) => {
            pb::update_details::Applicability::Windows(windows(windows_value)?)
        }
        (Some(_), Some(_)) => {
            return Err(
                "give either `debian` or `windows` as the applicability, not both".to_owned(),
            );
        }
        (None, None) => {
            return Err(
                "the applicability is missing: add `debian` {package, version, architecture, suites} or `windows` {kb_article, product_ids}"
                    .to_owned(),
            );
        }
    };
    Ok(pb::UpdateDetails {
        title: required(entry.title.as_deref(), "title")?,
        vendor: required(entry.vendor.as_deref(), "vendor")?,
        product: required(entry.product.as_deref(), "product")?,
        version: required(entry.version.as_deref(), "version")?,
        kind: kind as i32,
        classification: classification as i32,
        severity,
        cve_ids,
        supersedes,
        release_date,
        size_bytes: entry.size_bytes.unwrap_or(0),
        eula,
        min_server_version,
        uninstallable: entry.uninstallable.unwrap_or(false),
        reboot,
        source: origin.to_owned(),
        applicability: Some(applicability),
    })
}

fn eula(value: &Value) -> Result<pb::Eula, String> {
    let entry: EulaEntry = from_object(value, "eula")?;
    let eula_id = required(entry.id.as_deref(), "eula.id")?;
    let text_sha256 = match (entry.text, entry.text_sha256) {
        (Some(text), None) => {
            if text.trim().is_empty() {
                return Err("field `eula.text` is empty: give the EULA's full text".to_owned());
            }
            hex::encode(Sha256::digest(text.as_bytes()))
        }
        (None, Some(digest)) => {
            let digest = digest.trim().to_ascii_lowercase();
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "field `eula.text_sha256`: {digest:?} is not a SHA-256 digest; write 64 hex digits, or give the EULA's `text` instead"
                ));
            }
            digest
        }
        (Some(_), Some(_)) => {
            return Err("field `eula`: give either `text` or `text_sha256`, not both".to_owned());
        }
        (None, None) => {
            return Err(
                "field `eula` needs the EULA's `text` (or its SHA-256 as `text_sha256`)".to_owned(),
            );
        }
    };
    Ok(pb::Eula {
        eula_id,
        text_sha256,
    })
}

fn debian(value: &Value) -> Result<pb::DebianPackage, String> {
    let entry: DebianEntry = from_object(value, "debian")?;
    let package = required(entry.package.as_deref(), "debian.package")?;
    if !is_package_name(&package) {
        return Err(format!(
            "field `debian.package`: {package:?} is not a Debian package name; use lower-case letters, digits and + - . (at least two characters, starting with a letter or digit)"
        ));
    }
    let version = required(entry.version.as_deref(), "debian.version")?;
    let version =
        DebianVersion::from_str(&version).map_err(|e| format!("field `debian.version`: {e}"))?;
    let architecture = required(entry.architecture.as_deref(), "debian.architecture")?;
    match Architecture::from_str(&architecture) {
        Err(e) => return Err(format!("field `debian.architecture`: {e}")),
        Ok(Architecture::Any) => {
            return Err(
                "field `debian.architecture`: \"any\" is only for source packages; give the binary package's architecture, e.g. \"amd64\" or \"all\""
                    .to_owned(),
            );
        }
        Ok(_) => {}
    }
    let mut suites = Vec::new();
    for suite in entry.suites.unwrap_or_default() {
        let suite = suite.trim();
        if suite.is_empty() || suite.contains(char::is_whitespace) {
            return Err(format!(
                "field `debian.suites`: {suite:?} is not a suite name (e.g. \"bookworm\")"
            ));
        }
        suites.push(suite.to_owned());
    }
    if suites.is_empty() {
        return Err(
            "field `debian.suites` is missing or empty: list the apt suites the package is for, e.g. [\"bookworm\"]"
                .to_owned(),
        );
    }
    // Sorted, as the catalog keeps them, so that re-importing the same manifest changes nothing.
    suites.sort();
    suites.dedup();
    let component = match entry.component.as_deref() {
        Some(component) => required(Some(component), "debian.component")?,
        None => "main".to_owned(),
    };
    Ok(pb::DebianPackage {
        package,
        version: version.as_str().to_owned(),
        architecture,
        suites,
        component,
        source_package: String::new(),
    })
}

fn windows(value: &Value) -> Result<pb::WindowsApplicability, String> {
    let entry: WindowsEntry = from_object(value, "windows")?;
    let kb_article = required(entry.kb_article.as_deref(), "windows.kb_article")?;
    let mut product_ids = Vec::new();
    for product in entry.product_ids.unwrap_or_default() {
        let product = product.trim();
        if product.is_empty() {
            return Err("field `windows.product_ids` holds an empty id".to_owned());
        }
        if !product_ids.iter().any(|known| known == product) {
            product_ids.push(product.to_owned());
        }
    }
    if product_ids.is_empty() {
        return Err(
            "field `windows.product_ids` is missing or empty: list the products the update applies to"
                .to_owned(),
        );
    }
    Ok(pb::WindowsApplicability {
        kb_article,
        product_ids,
    })
}

/// Deserializes the JSON object at `path` ("" for an update). serde's message for a bad value does
/// not say which field held it, so on failure the fields are tried one at a time to name it.
fn from_object<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, String> {
    let Value::Object(fields) = value else {
        return Err(if path.is_empty() {
            format!("an update must be a JSON object, not {}", json_kind(value))
        } else {
            format!(
                "field `{path}` must be a JSON object, not {}",
                json_kind(value)
            )
        });
    };
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    T::deserialize(value).map_err(|error| {
        for (name, field) in fields {
            let single = Value::Object(serde_json::Map::from_iter([(name.clone(), field.clone())]));
            if let Err(error) = T::deserialize(&single) {
                return format!("field `{prefix}{name}`: {error}");
            }
        }
        error.to_string()
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A text field that must be present and not blank, trimmed.
fn required(value: Option<&str>, field: &str) -> Result<String, String> {
    match value.map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        Some(_) => Err(format!("field `{field}` is empty")),
        None => Err(format!("field `{field}` is missing")),
    }
}

/// The value named `value` among `choices`, ignoring case, spaces, `-` and `_`.
fn choose<T: Copy>(field: &str, value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    let wanted = folded(value);
    choices
        .iter()
        .find(|(name, _)| folded(name) == wanted)
        .map(|&(_, choice)| choice)
        .ok_or_else(|| {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            format!(
                "field `{field}`: {value:?} is not one of {}",
                names.join(", ")
            )
        })
}

fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `YYYY-MM-DD`, a real calendar date.
fn release_date(date: &str) -> Result<String, String> {
    let date = date.trim();
    let shaped = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if shaped && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() {
        Ok(date.to_owned())
    } else {
        Err(format!(
            "field `release_date`: {date:?} is not a date; write YYYY-MM-DD, e.g. \"2026-03-01\""
        ))
    }
}

/// Debian Policy §5.6.1: lower-case letters, digits, `+`, `-` and `.`, at least two characters,
/// starting with a letter or digit.
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A good first-party entry with a EULA and a minimum server version.
    fn first_party() -> Value {
        json!({
            "id": "app:patchbay-reporting:2.1.0-1:amd64",
            "title": "Patchbay Reporting 2.1.0",
            "vendor": "Patchbay",
            "product": "patchbay-reporting",
            "version": "2.1.0",
            "kind": "first-party",
            "classification": "Feature Pack",
            "severity": "Moderate",
            "cve_ids": ["cve-2025-48384"],
            "supersedes": ["app:patchbay-reporting:2.0.3-1:amd64"],
            "release_date": "2026-03-02",
            "size_bytes": 5242880,
            "eula": {"id": "patchbay-reporting-eula", "text": "You may use this software."},
            "min_server_version": "0.1.0",
            "uninstallable": true,
            "reboot": "may-require",
            "debian": {
                "package": "patchbay-reporting",
                "version": "2.1.0-1",
                "architecture": "amd64",
                "suites": ["bookworm-updates", "bookworm", "bookworm"],
                "component": "contrib"
            }
        })
    }

    fn manifest(updates: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"source": "managed-apps", "updates": updates}))
            .unwrap_or_default()
    }

    /// The one entry's rejection message.
    fn rejection(entry: Value) -> String {
        let import = parse(&manifest(vec![entry])).unwrap();
        assert!(import.updates.is_empty(), "{:?}", import.updates);
        assert_eq!(import.rejected.len(), 1);
        import.rejected[0].1.clone()
    }

    fn with(mut entry: Value, field: &str, value: Value) -> Value {
        entry[field] = value;
        entry
    }

    fn without(mut entry: Value, field: &str) -> Value {
        if let Value::Object(fields) = &mut entry {
            fields.remove(field);
        }
        entry
    }

    #[test]
    fn a_first_party_update_with_eula_and_min_version_imports_every_field() {
        let import = parse(&manifest(vec![first_party()])).unwrap();
        assert_eq!(import.source, "managed-apps");
        assert_eq!(import.entries_read, 1);
        assert!(import.rejected.is_empty(), "{:?}", import.rejected);
        let (index, id, details) = &import.updates[0];
        assert_eq!(
            (*index, id.as_str()),
            (0, "app:patchbay-reporting:2.1.0-1:amd64")
        );
        let expected = pb::UpdateDetails {
            title: "Patchbay Reporting 2.1.0".into(),
            vendor: "Patchbay".into(),
            product: "patchbay-reporting".into(),
            version: "2.1.0".into(),
            kind: pb::UpdateKind::FirstParty as i32,
            classification: pb::Classification::FeaturePack as i32,
            severity: pb::Severity::Moderate as i32,
            cve_ids: vec!["CVE-2025-48384".into()],
            supersedes: vec!["app:patchbay-reporting:2.0.3-1:amd64".into()],
            release_date: "2026-03-02".into(),
            size_bytes: 5_242_880,
            eula: Some(pb::Eula {
                eula_id: "patchbay-reporting-eula".into(),
                // sha256sum of the text, without a trailing newline.
                text_sha256: hex::encode(Sha256::digest(b"You may use this software.")),
            }),
            min_server_version: "0.1.0".into(),
            uninstallable: true,
            reboot: pb::RebootBehaviour::MayRequire as i32,
            source: "manifest:managed-apps".into(),
            applicability: Some(pb::update_details::Applicability::Debian(
                pb::DebianPackage {
                    package: "patchbay-reporting".into(),
                    version: "2.1.0-1".into(),
                    architecture: "amd64".into(),
                    suites: vec!["bookworm".into(), "bookworm-updates".into()],
                    component: "contrib".into(),
                    source_package: String::new(),
                },
            )),
        };
        assert_eq!(details, &expected);
    }

    #[test]
    fn optional_fields_default_and_a_windows_applicability_is_accepted() {
        let entry = json!({
            "id": "3f7d9a52-1c4b-4e0a-9d53-0b1f2e6a7c88",
            "title": "2026-03 Cumulative Update for Windows 11 (KB5034441)",
            "vendor": "Microsoft", "product": "Windows 11", "version": "22631.3155",
            "kind": "windows", "classification": "security",
            "windows": {"kb_article": "KB5034441", "product_ids": ["windows-11", "windows-11"]}
        });
        let import = parse(&manifest(vec![entry])).unwrap();
        assert!(import.rejected.is_empty(), "{:?}", import.rejected);
        let details = &import.updates[0].2;
        assert_eq!(details.kind, pb::UpdateKind::Windows as i32);
        assert_eq!(details.classification, pb::Classification::Security as i32);
        assert_eq!(details.severity, pb::Severity::Unspecified as i32);
        assert_eq!(details.reboot, pb::RebootBehaviour::Unspecified as i32);
        assert!(!details.uninstallable);
        assert!(details.eula.is_none() && details.min_server_version.is_empty());
        assert_eq!(
            details.applicability,
            Some(pb::update_details::Applicability::Windows(
                pb::WindowsApplicability {
                    kb_article: "KB5034441".into(),
                    product_ids: vec!["windows-11".into()],
                }
            ))
        );
    }

    #[test]
    fn a_eula_may_give_the_digest_instead_of_the_text() {
        let digest = "A".repeat(64);
        let entry = with(
            first_party(),
            "eula",
            json!({"id": "e-1", "text_sha256": digest}),
        );
        let import = parse(&manifest(vec![entry])).unwrap();
        let eula = import.updates[0].2.eula.clone().unwrap();
        assert_eq!(eula.text_sha256, "a".repeat(64));
        for (eula, field) in [
            (
                json!({"id": "e-1", "text_sha256": "abc"}),
                "eula.text_sha256",
            ),
            (json!({"id": "e-1"}), "eula"),
            (
                json!({"id": "e-1", "text": "t", "text_sha256": "a".repeat(64)}),
                "eula",
            ),
            (json!({"text": "t"}), "eula.id"),
            (json!({"id": "e-1", "text": "  "}), "eula.text"),
            (json!({"id": "e-1", "txt": "t"}), "eula.txt"),
            (json!("accepted"), "eula"),
        ] {
            let message = rejection(with(first_party(), "eula", eula.clone()));
            assert!(message.contains(&format!("`{field}`")), "{eula}: {message}");
        }
    }

    #[test]
    fn classification_kind_severity_and_reboot_names_ignore_case() {
        for (written, expected) in [
            ("update rollup", pb::Classification::UpdateRollup),
            ("FEATURE PACK", pb::Classification::FeaturePack),
            ("Service-Pack", pb::Classification::ServicePack),
            ("critical", pb::Classification::Critical),
            ("Upgrade", pb::Classification::Upgrade),
        ] {
            let import = parse(&manifest(vec![with(
                first_party(),
                "classification",
                json!(written),
            )]))
            .unwrap();
            assert_eq!(
                import.updates[0].2.classification, expected as i32,
                "{written}"
            );
        }
        let entry = with(first_party(), "kind", json!("Third-Party"));
        let entry = with(entry, "severity", json!("critical"));
        let entry = with(entry, "reboot", json!("ALWAYS"));
        let details = &parse(&manifest(vec![entry])).unwrap().updates[0].2;
        assert_eq!(details.kind, pb::UpdateKind::ThirdParty as i32);
        assert_eq!(details.severity, pb::Severity::Critical as i32);
        assert_eq!(details.reboot, pb::RebootBehaviour::Always as i32);
    }

    #[test]
    fn bad_enum_names_are_refused_naming_the_field_and_the_choices() {
        for (field, value, choice) in [
            ("kind", "1st-party", "\"first-party\""),
            ("classification", "Hotfix", "\"Update Rollup\""),
            ("severity", "Urgent", "\"Important\""),
            ("reboot", "sometimes", "\"may-require\""),
        ] {
            let message = rejection(with(first_party(), field, json!(value)));
            assert!(
                message.contains(&format!("field `{field}`"))
                    && message.contains(value)
                    && message.contains(choice),
                "{message}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_errors_at_every_level() {
        let message = rejection(with(first_party(), "titel", json!("x")));
        assert!(message.contains("`titel`"), "{message}");
        let mut entry = first_party();
        entry["debian"]["arch"] = json!("amd64");
        let message = rejection(entry);
        assert!(message.contains("field `debian.arch`"), "{message}");
        let windows = json!({"kb_article": "KB1", "product_ids": ["p"], "kb": "KB1"});
        let entry = with(without(first_party(), "debian"), "windows", windows);
        assert!(rejection(entry).contains("field `windows.kb`"));
        let error = parse(br#"{"source": "s", "updates": [], "extra": 1}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `extra`"),
            "{error}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported_with_its_field() {
        for (field, value) in [
            ("size_bytes", json!(-1)),
            ("size_bytes", json!("5 MB")),
            ("uninstallable", json!("yes")),
            ("cve_ids", json!("CVE-2025-48384")),
            ("title", json!(3)),
        ] {
            let message = rejection(with(first_party(), field, value.clone()));
            assert!(
                message.contains(&format!("field `{field}`")),
                "{value}: {message}"
            );
        }
        let mut entry = first_party();
        entry["debian"]["suites"] = json!("bookworm");
        assert!(rejection(entry).contains("field `debian.suites`"));
        assert!(rejection(json!(["not", "an", "object"])).contains("must be a JSON object"));
    }

    #[test]
    fn bad_ids_are_refused() {
        for id in [
            json!(""),
            json!("has space"),
            json!("a/b"),
            json!("x".repeat(201)),
        ] {
            let message = rejection(with(first_party(), "id", id.clone()));
            assert!(message.contains("field `id`"), "{id}: {message}");
        }
        assert!(rejection(without(first_party(), "id")).contains("field `id` is missing"));
        let message = rejection(with(first_party(), "supersedes", json!(["ok", "not ok"])));
        assert!(message.contains("field `supersedes`"), "{message}");
        let itself = json!(["app:patchbay-reporting:2.1.0-1:amd64"]);
        let message = rejection(with(first_party(), "supersedes", itself));
        assert!(message.contains("cannot supersede itself"), "{message}");
    }

    #[test]
    fn a_repeated_id_is_refused_and_the_first_one_kept() {
        let import = parse(&manifest(vec![first_party(), first_party()])).unwrap();
        assert_eq!(import.updates.len(), 1);
        assert_eq!(import.rejected.len(), 1);
        assert_eq!(import.rejected[0].0, 1);
        assert!(
            import.rejected[0].1.contains("already entry 0"),
            "{:?}",
            import.rejected
        );
    }

    #[test]
    fn bad_versions_and_dates_are_refused() {
        for (field, value) in [
            ("debian.version", json!("1.0-")),
            ("debian.version", json!("a:1.0")),
            ("debian.version", json!("1.0 beta")),
            ("debian.package", json!("Patchbay_Tools")),
            ("debian.architecture", json!("any")),
            ("debian.architecture", json!("amd 64")),
            ("debian.suites", json!([])),
        ] {
            let mut entry = first_party();
            let key = field.trim_start_matches("debian.");
            entry["debian"][key] = value.clone();
            let message = rejection(entry);
            assert!(
                message.contains(&format!("field `{field}`")),
                "{value}: {message}"
            );
        }
        for version in ["1.2", "v1.2.3", "latest", ""] {
            let message = rejection(with(first_party(), "min_server_version", json!(version)));
            assert!(
                message.contains("field `min_server_version`"),
                "{version}: {message}"
            );
        }
        let import = parse(&manifest(vec![with(
            first_party(),
            "min_server_version",
            json!("99.0.0-rc.1"),
        )]))
        .unwrap();
        assert_eq!(import.updates[0].2.min_server_version, "99.0.0-rc.1");
        for date in [
            "2026-3-2",
            "2026-02-30",
            "02/03/2026",
            "2026-03-02T10:00:00Z",
        ] {
            let message = rejection(with(first_party(), "release_date", json!(date)));
            assert!(
                message.contains("field `release_date`"),
                "{date}: {message}"
            );
        }
    }

    #[test]
    fn required_fields_and_the_applicability_are_checked() {
        for field in [
            "title",
            "vendor",
            "product",
            "version",
            "kind",
            "classification",
        ] {
            let message = rejection(without(first_party(), field));
            assert!(
                message.contains(&format!("field `{field}` is missing")),
                "{message}"
            );
            let message = rejection(with(first_party(), field, json!(" ")));
            assert!(
                message.contains(&format!("field `{field}` is empty")),
                "{message}"
            );
        }
        let message = rejection(without(first_party(), "debian"));
        assert!(message.contains("applicability is missing"), "{message}");
        let windows = json!({"kb_article": "KB1", "product_ids": ["p"]});
        let message = rejection(with(first_party(), "windows", windows.clone()));
        assert!(message.contains("not both"), "{message}");
        let message = rejection(with(first_party(), "kind", json!("windows")));
        assert!(message.contains("field `kind`"), "{message}");
        let no_products = json!({"kb_article": "KB1", "product_ids": []});
        let message = rejection(with(
            without(first_party(), "debian"),
            "windows",
            no_products,
        ));
        assert!(message.contains("field `windows.product_ids`"), "{message}");
        let message = rejection(with(first_party(), "cve_ids", json!(["CVE-1"])));
        assert!(message.contains("field `cve_ids`"), "{message}");
    }

    #[test]
    fn one_bad_entry_does_not_stop_the_others() {
        let import = parse(&manifest(vec![
            with(first_party(), "id", json!("app:one")),
            with(first_party(), "kind", json!("nope")),
            with(first_party(), "id", json!("app:three")),
        ]))
        .unwrap();
        assert_eq!(import.entries_read, 3);
        let ids: Vec<_> = import
            .updates
            .iter()
            .map(|(i, id, _)| (*i, id.as_str()))
            .collect();
        assert_eq!(ids, [(0, "app:one"), (2, "app:three")]);
        assert_eq!(import.rejected.len(), 1);
        assert_eq!(import.rejected[0].0, 1);
        assert!(
            import.rejected[0]
                .1
                .starts_with("update 'app:patchbay-reporting:2.1.0-1:amd64'")
        );
    }

    #[test]
    fn a_document_that_is_not_a_manifest_is_an_error() {
        for bad in [
            "",
            "[]",
            "{\"updates\": []}",
            "{\"source\": \"s\"}",
            "{\"source\": \"s\", \"updates\": {}}",
            "{\"vulnerabilities\": []}",
        ] {
            let error = parse(bad.as_bytes()).unwrap_err();
            assert!(
                error.to_string().contains("not an update manifest"),
                "{bad}: {error}"
            );
        }
        let error = parse(br#"{"source": " ", "updates": []}"#).unwrap_err();
        assert!(error.to_string().contains("\"source\" is empty"), "{error}");
    }

    /// `tests/fixtures/managed-apps.json` imports completely, and its managed device
    /// (`tests/fixtures/managed-device/status`) has an older version of every Debian update in it.
    #[test]
    fn the_managed_apps_fixture_imports_and_its_device_needs_every_update() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
        let json = std::fs::read(format!("{fixtures}/managed-apps.json")).unwrap();
        let import = parse(&json).unwrap();
        assert!(import.rejected.is_empty(), "{:?}", import.rejected);
        assert_eq!(import.updates.len(), 4);
        let by_id = |id: &str| {
            import
                .updates
                .iter()
                .find(|(_, update, _)| update.as_str() == id)
                .map(|(_, _, details)| details.clone())
                .unwrap()
        };
        let tools = by_id("app:patchbay-tools:1.4.2-1:amd64");
        assert_eq!(tools.kind, pb::UpdateKind::FirstParty as i32);
        assert!(tools.uninstallable && tools.eula.is_none() && tools.min_server_version.is_empty());
        let reporting = by_id("app:patchbay-reporting:2.1.0-1:amd64");
        assert_eq!(reporting.eula.unwrap().eula_id, "patchbay-reporting-eula-2");
        let collector = by_id("app:patchbay-collector:3.0.0-1:amd64");
        assert_eq!(collector.min_server_version, "99.0.0");
        let vpn = by_id("app:contoso-vpn-client:5.2.1-1:amd64");
        assert_eq!(vpn.kind, pb::UpdateKind::ThirdParty as i32);
        assert!(!vpn.uninstallable);

        let status = std::fs::read_to_string(format!("{fixtures}/managed-device/status")).unwrap();
        let installed = patchbay_debian::parse_status(&status);
        assert!(installed.errors.is_empty(), "{:?}", installed.errors);
        for (_, id, details) in &import.updates {
            let Some(pb::update_details::Applicability::Debian(debian)) = &details.applicability
            else {
                panic!("{id} is not a Debian update")
            };
            let offered = DebianVersion::from_str(&debian.version).unwrap();
            let on_device = installed
                .entries
                .iter()
                .find(|p| p.package == debian.package)
                .unwrap_or_else(|| panic!("{} is not installed", debian.package));
            assert!(on_device.version < offered, "{id}");
        }
    }
}
