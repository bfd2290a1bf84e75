//! The administrator's sync settings: validated once, stored as `WsusConfigured`.

use patchbay_proto::wsus::v1 as pb;
use sha2::{Digest as _, Sha256};

use super::DomainError;
use crate::events::WsusEvent;

/// What the administrator asked for (`patchbay wsus config set`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRequest {
    pub upstream_url: String,
    pub product_ids: Vec<String>,
    pub classification_ids: Vec<String>,
    pub languages: Vec<String>,
    pub schedule: String,
    pub download_content: bool,
}

/// How often the service syncs on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Manual,
    Daily,
    Weekly,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text.trim() {
            "" | "daily" => Ok(Schedule::Daily),
            "weekly" => Ok(Schedule::Weekly),
            "manual" => Ok(Schedule::Manual),
            other => Err(DomainError::InvalidInput(format!(
                "schedule {other:?} is not known: use daily (the default), weekly or manual"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Manual => "manual",
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
        }
    }

    /// Time between the start of one scheduled run and the next; `None` when manual.
    pub fn period(self) -> Option<chrono::Duration> {
        match self {
            Schedule::Manual => None,
            Schedule::Daily => Some(chrono::Duration::days(1)),
            Schedule::Weekly => Some(chrono::Duration::weeks(1)),
        }
    }
}

/// The account this server presents to the upstream (GetAuthorizationCookie `accountName`).
pub const DEFAULT_ACCOUNT_NAME: &str = "patchbay.local";

/// Validates the request and, if it changes anything, returns the `WsusConfigured` to store.
///
/// `account_guid` identifies this server to the upstream; it is kept from the current settings so
/// the upstream sees the same downstream server across changes.
pub fn decide_configure(
    current: Option<&pb::WsusConfigured>,
    request: ConfigRequest,
    new_account_guid: impl FnOnce() -> String,
) -> Result<Vec<WsusEvent>, DomainError> {
    let upstream_url = normalise_url(&request.upstream_url)?;
    let product_ids = guids("product", &request.product_ids)?;
    let classification_ids = guids("classification", &request.classification_ids)?;
    if product_ids.is_empty() != classification_ids.is_empty() {
        return Err(DomainError::InvalidInput(
            "a product filter needs at least one classification, and a classification filter at least one product (MS-WSUSSS 3.1.4.5.3.1); give both, or neither to sync everything".into(),
        ));
    }
    let mut languages = Vec::new();
    for language in &request.languages {
        let language = language.trim().to_ascii_lowercase();
        let valid = (2..=8).contains(&language.len())
            && language
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(DomainError::InvalidInput(format!(
                "language {language:?} is not a language short name such as en, de or pt-br"
            )));
        }
        if !languages.contains(&language) {
            languages.push(language);
        }
    }
    let schedule = Schedule::parse(&request.schedule)?;
    let account_guid = current
        .map(|c| c.account_guid.clone())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(new_account_guid);
    let configured = pb::WsusConfigured {
        upstream_url,
        product_ids,
        classification_ids,
        languages,
        schedule: schedule.as_str().to_owned(),
        download_content: request.download_content,
        account_name: current
            .map(|c| c.account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_ACCOUNT_NAME.to_owned()),
        account_guid,
    };
    if current == Some(&configured) {
        return Ok(vec![]);
    }
    Ok(vec![WsusEvent::WsusConfigured(configured)])
}

/// A digest of the update filter: anchors obtained with another filter do not apply.
pub fn filter_digest(config: &pb::WsusConfigured) -> String {
    let mut hasher = Sha256::new();
    for id in &config.product_ids {
        hasher.update(id.as_bytes());
        hasher.update(b",");
    }
    hasher.update(b"|");
    for id in &config.classification_ids {
        hasher.update(id.as_bytes());
        hasher.update(b",");
    }
    hex::encode(&hasher.finalize()[..8])
}

fn normalise_url(url: &str) -> Result<String, DomainError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            DomainError::InvalidInput(format!(
                "upstream URL {url:?} must start with http:// or https://, e.g. https://wsus.example.com:8531/"
            ))
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err(DomainError::InvalidInput(format!(
            "upstream URL {url:?} has no host, or has a query: give the server's base URL, e.g. https://wsus.example.com:8531/"
        )));
    }
    // The service paths (ServerSyncWebService/...) are appended to the base.
    Ok(if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    })
}

/// Lower-case, sorted, de-duplicated GUIDs.
fn guids(what: &str, ids: &[String]) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.trim().to_ascii_lowercase();
        if !is_guid(&id) {
            return Err(DomainError::InvalidInput(format!(
                "{what} id {id:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); `patchbay wsus status` lists the known categories"
            )));
        }
        out.push(id);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn is_guid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCT: &str = "A3C2375D-0C8A-42F9-BCE0-28333E198407";
    const CLASSIFICATION: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";

    fn request() -> ConfigRequest {
        ConfigRequest {
            upstream_url: "https://wsus.example.com:8531".into(),
            product_ids: vec![PRODUCT.into()],
            classification_ids: vec![CLASSIFICATION.into()],
            languages: vec!["EN".into(), "de".into(), "en".into()],
            schedule: String::new(),
            download_content: false,
        }
    }

    fn configured(events: Vec<WsusEvent>) -> pb::WsusConfigured {
        match events.as_slice() {
            [WsusEvent::WsusConfigured(c)] => c.clone(),
            other => panic!("expected one WsusConfigured, got {other:?}"),
        }
    }

    #[test]
    fn settings_are_normalised_with_daily_default_and_a_stable_account() {
        let first = configured(decide_configure(None, request(), || "guid-1".into()).unwrap());
        assert_eq!(first.upstream_url, "https://wsus.example.com:8531/");
        assert_eq!(first.product_ids, vec![PRODUCT.to_ascii_lowercase()]);
        assert_eq!(first.languages, vec!["en", "de"]);
        assert_eq!(first.schedule, "daily");
        assert_eq!(first.account_guid, "guid-1");
        // The same settings again change nothing; a new schedule keeps the account.
        assert!(
            decide_configure(Some(&first), request(), || "guid-2".into())
                .unwrap()
                .is_empty()
        );
        let weekly = configured(
            decide_configure(
                Some(&first),
                ConfigRequest {
                    schedule: "weekly".into(),
                    ..request()
                },
                || "guid-2".into(),
            )
            .unwrap(),
        );
        assert_eq!(weekly.account_guid, "guid-1");
        assert_eq!(weekly.schedule, "weekly");
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_do() {
        let cases = [
            (
                ConfigRequest {
                    upstream_url: "ftp://x".into(),
                    ..request()
                },
                "http://",
            ),
            (
                ConfigRequest {
                    classification_ids: vec![],
                    ..request()
                },
                "at least one classification",
            ),
            (
                ConfigRequest {
                    product_ids: vec!["windows".into()],
                    ..request()
                },
                "not a GUID",
            ),
            (
                ConfigRequest {
                    schedule: "hourly".into(),
                    ..request()
                },
                "daily",
            ),
            (
                ConfigRequest {
                    languages: vec!["en us".into()],
                    ..request()
                },
                "language",
            ),
        ];
        for (request, expected) in cases {
            let error = decide_configure(None, request, || "g".into()).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn no_filter_at_all_syncs_everything() {
        let events = decide_configure(
            None,
            ConfigRequest {
                product_ids: vec![],
                classification_ids: vec![],
                ..request()
            },
            || "g".into(),
        )
        .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn the_filter_digest_changes_with_the_filter() {
        let a = configured(decide_configure(None, request(), || "g".into()).unwrap());
        let mut b = a.clone();
        b.classification_ids
            .push("cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83".into());
        assert_ne!(filter_digest(&a), filter_digest(&b));
        assert_eq!(filter_digest(&a), filter_digest(&a.clone()));
    }
}
