//! The protocol's data: identities, cookies, server configuration, the sync filter and results.

use chrono::{DateTime, TimeDelta, Utc};

pub use crate::wire::normalize_guid;

/// One revision of an update (spec 2.2.4.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpdateIdentity {
    /// The update's GUID, lowercase.
    pub update_id: String,
    pub revision_number: i32,
}

impl UpdateIdentity {
    /// An identity from a GUID in any case; `None` when `update_id` is not a GUID.
    pub fn new(update_id: &str, revision_number: i32) -> Option<UpdateIdentity> {
        Some(UpdateIdentity {
            update_id: normalize_guid(update_id)?,
            revision_number,
        })
    }
}

/// What GetAuthorizationCookie returns (spec 2.2.4.7); opaque to the DSS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCookie {
    /// "DssTargeting", the only plug-in the spec defines.
    pub plugin_id: String,
    pub cookie_data: Vec<u8>,
}

/// What GetCookie returns (spec 2.2.4.8): the key to every Server Sync call until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub expiration: DateTime<Utc>,
    /// Opaque to the DSS; sent back as received.
    pub encrypted_data: Vec<u8>,
}

impl Cookie {
    /// How long before its stated expiration a cookie is already treated as expired, so a
    /// request does not reach the upstream with a cookie that lapsed on the way.
    pub const EXPIRY_MARGIN: TimeDelta = TimeDelta::seconds(60);

    /// Whether the cookie must not be used at `now` (spec 3.2.4.1: never send an expired one).
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now.checked_add_signed(Self::EXPIRY_MARGIN)
            .is_none_or(|deadline| deadline >= self.expiration)
    }
}

/// What GetAuthConfig returns (spec 3.1.4.1.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// "DssTargeting".
    pub plugin_id: String,
    /// Path of the DSS Authorization web service relative to the server's root URL, normally
    /// "DssAuthWebService/DssAuthWebService.asmx".
    pub service_url: String,
}

/// What GetConfigData returns (spec 3.1.4.4.3.1), as far as a DSS uses it (spec 3.2.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The upstream serves metadata only; content comes from Microsoft Update URLs.
    pub catalog_only_sync: bool,
    /// The upstream downloads content only when something needs it.
    pub lazy_sync: bool,
    /// The upstream also hosts express (PSF) content files.
    pub server_hosts_psf_files: bool,
    /// Most revisions one GetUpdateData request may ask for; at least 1.
    pub max_updates_per_request: u32,
    /// To send as `configAnchor` in the next GetConfigData call.
    pub new_config_anchor: String,
    /// The upstream's protocol version, when it says.
    pub protocol_version: Option<String>,
    /// Languages whose settings changed since the anchor sent (all of them on a first call).
    pub languages: Vec<Language>,
}

/// One entry of the upstream's language list (spec 3.1.4.4.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// An LCID, or 0 for "all languages".
    pub id: i32,
    /// "en", or "all".
    pub short: String,
    /// "English", or "all".
    pub long: String,
    /// The upstream currently holds updates in this language.
    pub enabled: bool,
}

/// The filter of GetRevisionIdList (spec 3.1.4.5.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncFilter {
    /// The anchor of the last successful call with this filter; `None` on the first call.
    pub anchor: Option<String>,
    /// `true` for categories, classifications and detectoids; `false` for updates.
    pub get_config: bool,
    /// `true`: the DSS handles at most 63 languages. Always sent (this DSS implements 1.2).
    pub get_63_language_only: bool,
    /// Products (or other categories) wanted; empty for all. Needs classifications too.
    pub categories: Vec<IdAndDelta>,
    /// Classifications wanted; empty for all. Needs categories too.
    pub classifications: Vec<IdAndDelta>,
    /// Languages wanted. Only protocol 1.3+ DSSs send it; leave empty with [`crate::PROTOCOL_VERSION`].
    pub languages: Vec<LanguageAndDelta>,
}

impl SyncFilter {
    /// Checks what the spec requires of a filter before it is sent (spec 3.1.4.5.3.1).
    pub fn validate(&self) -> Result<(), String> {
        if self.categories.is_empty() != self.classifications.is_empty() {
            return Err(format!(
                "the filter names {} categories and {} classifications; the upstream only filters when both lists are non-empty (or both empty for everything)",
                self.categories.len(),
                self.classifications.len()
            ));
        }
        for entry in self.categories.iter().chain(&self.classifications) {
            if normalize_guid(&entry.id).is_none() {
                return Err(format!(
                    "{:?} is not a GUID; categories and classifications are named by their update id",
                    entry.id
                ));
            }
        }
        Ok(())
    }
}

/// A category or classification id in a filter (spec 3.1.4.5.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdAndDelta {
    pub id: String,
    /// Only revisions newer than the anchor.
    pub delta: bool,
}

/// A language in a filter (spec 3.1.4.5.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageAndDelta {
    /// An LCID.
    pub id: i32,
    /// Only revisions newer than the anchor.
    pub delta: bool,
}

/// What GetRevisionIdList returns (spec 3.1.4.5.3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionIdList {
    /// To send as the filter's anchor next time.
    pub anchor: String,
    pub new_revisions: Vec<UpdateIdentity>,
}

/// What GetUpdateData returns (spec 3.1.4.6.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateData {
    pub updates: Vec<SyncedRevision>,
    pub file_urls: Vec<FileUrl>,
}

/// The metadata of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRevision {
    pub identity: UpdateIdentity,
    /// The metadata XML (an `<upd:Update>` document), decompressed when it came compressed.
    pub xml: String,
    /// It came as `XmlUpdateBlobCompressed`.
    pub was_compressed: bool,
    /// SHA-1 digests of the revision's content files.
    pub file_digests: Vec<Vec<u8>>,
}

impl SyncedRevision {
    /// Reads the metadata XML.
    pub fn metadata(&self) -> Result<crate::UpdateMetadata, crate::UpdateXmlError> {
        crate::update_xml::parse(&self.xml)
    }
}

/// Where a content file can be downloaded from (spec 3.1.4.6.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUrl {
    /// SHA-1 of the file.
    pub file_digest: Vec<u8>,
    /// The file on Microsoft Update, when the upstream knows one.
    pub mu_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_expiring(at: DateTime<Utc>) -> Cookie {
        Cookie {
            expiration: at,
            encrypted_data: vec![1],
        }
    }

    #[test]
    fn cookies_expire_a_minute_early() {
        let now = Utc::now();
        assert!(!cookie_expiring(now + TimeDelta::seconds(61)).is_expired_at(now));
        assert!(cookie_expiring(now + TimeDelta::seconds(60)).is_expired_at(now));
        assert!(cookie_expiring(now - TimeDelta::seconds(1)).is_expired_at(now));
        assert!(!cookie_expiring(DateTime::<Utc>::MAX_UTC).is_expired_at(now));
        assert!(cookie_expiring(DateTime::<Utc>::MAX_UTC).is_expired_at(DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn a_filter_needs_categories_and_classifications_together() {
        let product = IdAndDelta {
            id: "a0a08746-4dbe-4a37-9adf-9e7652c0b421".into(),
            delta: false,
        };
        let only_categories = SyncFilter {
            categories: vec![product.clone()],
            ..SyncFilter::default()
        };
        assert!(only_categories.validate().is_err());
        let only_classifications = SyncFilter {
            classifications: vec![product.clone()],
            ..SyncFilter::default()
        };
        assert!(only_classifications.validate().is_err());
        let both = SyncFilter {
            categories: vec![product.clone()],
            classifications: vec![product],
            ..SyncFilter::default()
        };
        assert_eq!(both.validate(), Ok(()));
        assert_eq!(SyncFilter::default().validate(), Ok(()));
        let not_a_guid = SyncFilter {
            categories: vec![IdAndDelta {
                id: "windows".into(),
                delta: false,
            }],
            classifications: vec![IdAndDelta {
                id: "security".into(),
                delta: false,
            }],
            ..SyncFilter::default()
        };
        assert!(not_a_guid.validate().unwrap_err().contains("not a GUID"));
    }
}
