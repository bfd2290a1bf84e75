//! The CISA Known Exploited Vulnerabilities catalog (JSON, `vulnerabilities[].cveID` ...) as
//! `VulnerabilityPublished` payloads.

use patchbay_proto::catalog::v1 as pb;
use serde::Deserialize;

use crate::domain::CveId;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevCatalog {
    catalog_version: Option<String>,
    vulnerabilities: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevEntry {
    #[serde(rename = "cveID")]
    cve_id: String,
    #[serde(default)]
    vendor_project: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    vulnerability_name: String,
    #[serde(default)]
    date_added: String,
    #[serde(default)]
    short_description: String,
    #[serde(default)]
    required_action: String,
    #[serde(default)]
    due_date: String,
    #[serde(default)]
    known_ransomware_campaign_use: String,
}

/// The entries of a KEV document, plus one message per entry that could not be used.
#[derive(Debug, Default)]
pub struct KevImport {
    pub catalog_version: Option<String>,
    pub vulnerabilities: Vec<pb::VulnerabilityPublished>,
    /// `(index in vulnerabilities[], what was wrong)`.
    pub rejected: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KevError {
    #[error(
        "not a CISA KEV catalog: {0} (expected a JSON object with a \"vulnerabilities\" array)"
    )]
    Format(#[from] serde_json::Error),
}

/// Parses a KEV catalog. A malformed document is an error; a malformed entry is reported in
/// `rejected` and the other entries still import.
pub fn parse(json: &[u8], source: &str) -> Result<KevImport, KevError> {
    let catalog: KevCatalog = serde_json::from_slice(json)?;
    let mut import = KevImport {
        catalog_version: catalog.catalog_version,
        ..Default::default()
    };
    for (index, value) in catalog.vulnerabilities.into_iter().enumerate() {
        let entry: KevEntry = match serde_json::from_value(value) {
            Ok(entry) => entry,
            Err(error) => {
                import.rejected.push((index, error.to_string()));
                continue;
            }
        };
        let cve = match CveId::parse(&entry.cve_id) {
            Ok(cve) => cve,
            Err(error) => {
                import.rejected.push((index, error.to_string()));
                continue;
            }
        };
        import.vulnerabilities.push(pb::VulnerabilityPublished {
            cve_id: cve.to_string(),
            known_exploited: true,
            vendor: entry.vendor_project,
            product: entry.product,
            name: entry.vulnerability_name,
            date_added: entry.date_added,
            due_date: entry.due_date,
            known_ransomware_use: entry
                .known_ransomware_campaign_use
                .eq_ignore_ascii_case("known"),
            required_action: entry.required_action,
            description: entry.short_description,
            source: source.to_owned(),
        });
    }
    Ok(import)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"{
      "title": "CISA Catalog of Known Exploited Vulnerabilities",
      "catalogVersion": "2025.08.25",
      "dateReleased": "2025-08-25T17:04:19.9796Z",
      "count": 3,
      "vulnerabilities": [
        {"cveID": "CVE-2025-48384", "vendorProject": "Git", "product": "Git",
         "vulnerabilityName": "Git Link Following Vulnerability", "dateAdded": "2025-08-25",
         "shortDescription": "Git mishandles carriage returns.", "requiredAction": "Apply mitigations.",
         "dueDate": "2025-09-15", "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": ["CWE-59"]},
        {"cveID": "not-a-cve", "vendorProject": "X"},
        {"cveID": "CVE-2021-44228", "vendorProject": "Apache", "product": "Log4j2",
         "vulnerabilityName": "Log4Shell", "dateAdded": "2021-12-10", "dueDate": "2021-12-24",
         "knownRansomwareCampaignUse": "Known"}
      ]
    }"#;

    #[test]
    fn entries_import_and_a_bad_one_is_reported_by_index() {
        let import = parse(FIXTURE.as_bytes(), "kev").unwrap();
        assert_eq!(import.catalog_version.as_deref(), Some("2025.08.25"));
        assert_eq!(import.vulnerabilities.len(), 2);
        assert_eq!(import.vulnerabilities[0].cve_id, "CVE-2025-48384");
        assert!(!import.vulnerabilities[0].known_ransomware_use);
        assert!(import.vulnerabilities[1].known_ransomware_use);
        assert!(import.vulnerabilities.iter().all(|v| v.known_exploited));
        assert_eq!(import.rejected.len(), 1);
        assert_eq!(import.rejected[0].0, 1);
    }

    #[test]
    fn a_document_that_is_not_kev_is_an_error() {
        for bad in ["", "[]", "{\"vulnerabilities\": 3}", "{\"title\": \"x\"}"] {
            let error = parse(bad.as_bytes(), "kev").unwrap_err();
            assert!(
                error.to_string().contains("not a CISA KEV catalog"),
                "{error}"
            );
        }
    }

    /// The real catalog from `../shared/data`, when it is beside the repository.
    #[test]
    fn the_real_kev_catalog_imports_completely() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/kev.json");
        let Ok(json) = std::fs::read(path) else {
            eprintln!("skipping: {path} not found");
            return;
        };
        let import = parse(&json, "kev").unwrap();
        assert_eq!(import.vulnerabilities.len(), 1404);
        assert!(import.rejected.is_empty(), "{:?}", import.rejected);
        assert_eq!(
            import
                .vulnerabilities
                .iter()
                .filter(|v| v.known_ransomware_use)
                .count(),
            293
        );
    }
}
