//! Identifiers validated at the boundary: update ids and CVE ids.

use std::fmt;

use super::CatalogError;

/// An update's id, e.g. `deb:openssl:3.0.17-1~deb12u2:amd64` or a WSUS UpdateID (a GUID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpdateId(String);

impl UpdateId {
    pub fn parse(id: &str) -> Result<Self, CatalogError> {
        let valid = !id.is_empty()
            && id.len() <= 200
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:+~-".contains(&b));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(CatalogError::InvalidInput(format!(
                "update id {id:?} is not valid: use 1 to 200 characters from A-Z, a-z, 0-9 and . _ : + ~ -"
            )))
        }
    }

    /// The id of a Debian package version: `deb:<package>:<version>:<architecture>`.
    pub fn debian(package: &str, version: &str, architecture: &str) -> Result<Self, CatalogError> {
        Self::parse(&format!("deb:{package}:{version}:{architecture}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream holding the update's revisions.
    pub fn stream_id(&self) -> String {
        format!("update-{}", self.0)
    }
}

impl fmt::Display for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CVE id, `CVE-YYYY-NNNN...`, kept in upper case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CveId(String);

impl CveId {
    pub fn parse(id: &str) -> Result<Self, CatalogError> {
        let upper = id.trim().to_ascii_uppercase();
        let mut parts = upper.splitn(3, '-');
        let valid = parts.next() == Some("CVE")
            && parts
                .next()
                .is_some_and(|year| year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_some_and(|number| {
                (4..=19).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
            });
        if valid {
            Ok(Self(upper))
        } else {
            Err(CatalogError::InvalidInput(format!(
                "{id:?} is not a CVE id: expected CVE-YYYY-NNNN (at least four digits)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn stream_id(&self) -> String {
        format!("vulnerability-{}", self.0)
    }
}

impl fmt::Display for CveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_ids_keep_debian_version_characters() {
        let id = UpdateId::debian("openssl", "1:3.0.17-1~deb12u2", "amd64").unwrap();
        assert_eq!(id.as_str(), "deb:openssl:1:3.0.17-1~deb12u2:amd64");
        assert_eq!(
            id.stream_id(),
            "update-deb:openssl:1:3.0.17-1~deb12u2:amd64"
        );
        for bad in ["", "has space", "a/b", &"x".repeat(201)] {
            assert!(UpdateId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cve_ids_are_normalised_and_checked() {
        assert_eq!(
            CveId::parse(" cve-2025-48384 ").unwrap().as_str(),
            "CVE-2025-48384"
        );
        assert!(CveId::parse("CVE-2021-44228").is_ok());
        for bad in [
            "",
            "CVE-25-1234",
            "CVE-2025-12",
            "GHSA-xxxx",
            "CVE-2025-12a4",
        ] {
            assert!(CveId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
