//! The USS operations of MS-WSUSSS 3.1.4.1–3.1.4.6: request validation, data processing and response bodies.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::cab_writer::compress_update_xml;
use crate::cookies::CookieClaims;
use crate::fixture::is_guid;
use crate::live_catalog::{CatalogState, Revision};
use crate::server::{RecordedRequest, Shared};
use crate::soap::{SoapFault, XmlElement, escape_text};

/// Namespace of the Server Sync Web Service.
pub const SERVER_SYNC_NS: &str = "http://www.microsoft.com/SoftwareDistribution";
/// Namespace of the DSS Authorization Web Service.
pub const DSS_AUTH_NS: &str =
    "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService";

/// How long an authorization cookie (`CookieData`) stays valid.
pub const AUTHORIZATION_COOKIE_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(8);

/// The two SOAP services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    ServerSync,
    DssAuth,
}

impl Service {
    pub fn namespace(self) -> &'static str {
        match self {
            Self::ServerSync => SERVER_SYNC_NS,
            Self::DssAuth => DSS_AUTH_NS,
        }
    }
}

fn invalid_parameters(parameter: &str) -> SoapFault {
    SoapFault::error("InvalidParameters", parameter)
}

/// Answers one operation; `Ok` is the response element, `Err` a fault.
pub(crate) fn answer(
    shared: &Shared,
    service: Service,
    operation: &XmlElement,
    truncate_cabs: bool,
) -> Result<String, SoapFault> {
    match (service, operation.name.as_str()) {
        (Service::ServerSync, "GetAuthConfig") => Ok(get_auth_config()),
        (Service::DssAuth, "GetAuthorizationCookie") => get_authorization_cookie(shared, operation),
        (Service::ServerSync, "GetCookie") => get_cookie(shared, operation),
        (Service::ServerSync, "GetConfigData") => get_config_data(shared, operation),
        (Service::ServerSync, "GetRevisionIdList") => get_revision_id_list(shared, operation),
        (Service::ServerSync, "GetUpdateData") => get_update_data(shared, operation, truncate_cabs),
        (_, other) => Err(SoapFault::error(
            "InternalServerError",
            format!("{other} is not implemented by the fake upstream server"),
        )),
    }
}

/// Fills the operation-specific fields of a recorded request.
pub(crate) fn describe(operation: &XmlElement, record: &mut RecordedRequest) {
    let ns = SERVER_SYNC_NS;
    match operation.name.as_str() {
        "GetUpdateData" => {
            record.update_id_count = operation
                .child(ns, "updateIds")
                .map(|ids| ids.children_named(ns, "UpdateIdentity").count());
        }
        "GetRevisionIdList" => {
            let filter = operation.child(ns, "filter");
            record.filter_anchor = filter
                .and_then(|filter| filter.child_text(ns, "Anchor"))
                .filter(|anchor| !anchor.is_empty())
                .map(str::to_owned);
            record.filter_get_config = filter
                .and_then(|filter| filter.child_text(ns, "GetConfig"))
                .and_then(parse_bool);
        }
        "GetConfigData" => {
            record.config_anchor = operation
                .child_text(ns, "configAnchor")
                .filter(|anchor| !anchor.is_empty())
                .map(str::to_owned);
        }
        _ => {}
    }
}

fn get_auth_config() -> String {
    format!(
        "<GetAuthConfigResponse xmlns=\"{SERVER_SYNC_NS}\"><GetAuthConfigResult><LastChange>2024-01-01T00:00:00Z</LastChange>\
         <AuthInfo><AuthPlugInInfo><PlugInID>DssTargeting</PlugInID><ServiceUrl>DssAuthWebService/DssAuthWebService.asmx</ServiceUrl>\
         </AuthPlugInInfo></AuthInfo></GetAuthConfigResult></GetAuthConfigResponse>"
    )
}

/// RFC 1035 2.3 host name characters: letters, digits, hyphens, dot-separated labels of ≤ 63.
fn is_fqdn(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn get_authorization_cookie(shared: &Shared, operation: &XmlElement) -> Result<String, SoapFault> {
    let account_name = operation
        .child_text(DSS_AUTH_NS, "accountName")
        .unwrap_or("");
    let account_guid = operation
        .child_text(DSS_AUTH_NS, "accountGuid")
        .unwrap_or("");
    if shared.options.account_check {
        if !is_fqdn(account_name) {
            return Err(invalid_parameters("accountName"));
        }
        if !is_guid(account_guid) {
            return Err(invalid_parameters("accountGuid"));
        }
    }
    let expires = Utc::now() + AUTHORIZATION_COOKIE_LIFETIME;
    let data = shared.cookies.issue_authorization(
        &account_guid.to_ascii_lowercase(),
        account_name,
        expires.timestamp_millis(),
        shared.generation(),
    );
    Ok(format!(
        "<GetAuthorizationCookieResponse xmlns=\"{DSS_AUTH_NS}\"><GetAuthorizationCookieResult><PlugInId>DssTargeting</PlugInId>\
         <CookieData>{}</CookieData></GetAuthorizationCookieResult></GetAuthorizationCookieResponse>",
        BASE64.encode(data)
    ))
}

/// Checks "x.y" (InvalidParameters) and major version 1 (IncompatibleProtocolVersion).
fn check_protocol_version(version: &str) -> Result<(), SoapFault> {
    let Some((major, minor)) = version.split_once('.') else {
        return Err(invalid_parameters("protocolVersion"));
    };
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !numeric(major) || !numeric(minor) {
        return Err(invalid_parameters("protocolVersion"));
    }
    if major.trim_start_matches('0') != "1" {
        return Err(SoapFault::error(
            "IncompatibleProtocolVersion",
            format!("protocol version {version} is not 1.x"),
        ));
    }
    Ok(())
}

fn get_cookie(shared: &Shared, operation: &XmlElement) -> Result<String, SoapFault> {
    let ns = SERVER_SYNC_NS;
    let auth_cookies: Vec<&XmlElement> = operation
        .child(ns, "authCookies")
        .map(|list| list.children_named(ns, "AuthorizationCookie").collect())
        .unwrap_or_default();
    let [auth_cookie] = auth_cookies.as_slice() else {
        return Err(invalid_parameters("authCookies"));
    };
    let bad_auth = |why: &str| SoapFault::error("InvalidAuthorizationCookie", why);
    if auth_cookie.child_text(ns, "PlugInId") != Some("DssTargeting") {
        return Err(bad_auth(
            "the authorization cookie is not from the DssTargeting plug-in",
        ));
    }
    let claims = auth_cookie
        .child_text(ns, "CookieData")
        .and_then(|data| BASE64.decode(data).ok())
        .ok_or_else(|| bad_auth("CookieData is missing or not base64"))
        .and_then(|data| {
            shared
                .cookies
                .verify_authorization(&data)
                .map_err(|error| bad_auth(&error.to_string()))
        })?;
    if claims.expires_at_ms <= Utc::now().timestamp_millis() {
        return Err(bad_auth("the authorization cookie expired"));
    }
    if claims.generation != shared.generation() {
        return Err(bad_auth(
            "the authorization cookie was issued by an earlier server identity",
        ));
    }
    let protocol_version = operation.child_text(ns, "protocolVersion").unwrap_or("");
    check_protocol_version(protocol_version)?;
    let lifetime = chrono::TimeDelta::from_std(shared.options.cookie_lifetime)
        .unwrap_or(chrono::TimeDelta::MAX);
    let expires = Utc::now()
        .checked_add_signed(lifetime)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let cookie = shared.cookies.issue_cookie(&CookieClaims {
        account_guid: claims.account_guid,
        expires_at_ms: expires.timestamp_millis(),
        protocol_version: protocol_version.to_owned(),
        generation: claims.generation,
    });
    Ok(format!(
        "<GetCookieResponse xmlns=\"{ns}\"><GetCookieResult><Expiration>{}</Expiration><EncryptedData>{}</EncryptedData>\
         </GetCookieResult></GetCookieResponse>",
        format_expiration(expires),
        BASE64.encode(cookie)
    ))
}

/// "2006-06-08T19:32:23.7190987Z": seven fraction digits, like .NET's round-trip format.
pub(crate) fn format_expiration(time: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        time.format("%Y-%m-%dT%H:%M:%S"),
        time.timestamp_subsec_nanos() / 100
    )
}

/// Validates the `cookie` parameter of a Server Sync call.
fn check_cookie(shared: &Shared, operation: &XmlElement) -> Result<CookieClaims, SoapFault> {
    let ns = SERVER_SYNC_NS;
    let invalid = |why: &str| SoapFault::error("InvalidCookie", why);
    let data = operation
        .child(ns, "cookie")
        .and_then(|cookie| cookie.child_text(ns, "EncryptedData"))
        .filter(|data| !data.is_empty())
        .ok_or_else(|| invalid("cookie"))?;
    let bytes = BASE64
        .decode(data)
        .map_err(|_| invalid("cookie EncryptedData is not base64"))?;
    let claims = shared
        .cookies
        .verify_cookie(&bytes)
        .map_err(|error| invalid(&error.to_string()))?;
    if claims.expires_at_ms <= Utc::now().timestamp_millis() {
        return Err(invalid("cookie expired"));
    }
    if claims.generation != shared.generation() {
        return Err(invalid(
            "the cookie was issued by an earlier server identity",
        ));
    }
    check_protocol_version(&claims.protocol_version)?;
    Ok(claims)
}

/// "N,yyyy-MM-dd HH:mm:ss.fff", N = the change number (MS-WSUSSS note <31>).
fn format_anchor(change_number: u64) -> String {
    format!(
        "{change_number},{}",
        Utc::now().format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

/// Parses an anchor this server issued; returns its change number.
fn check_anchor(anchor: &str, state: &CatalogState, parameter: &str) -> Result<u64, SoapFault> {
    let (number, time) = anchor
        .split_once(',')
        .ok_or_else(|| invalid_parameters(parameter))?;
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| invalid_parameters(parameter))?;
    NaiveDateTime::parse_from_str(time.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|_| invalid_parameters(parameter))?;
    if number < state.epoch_start || number > state.change_number {
        return Err(SoapFault::error(
            "ServerChanged",
            format!("{parameter} was issued by another server identity"),
        ));
    }
    Ok(number)
}

fn get_config_data(shared: &Shared, operation: &XmlElement) -> Result<String, SoapFault> {
    check_cookie(shared, operation)?;
    let new_anchor = {
        let state = shared.catalog.lock();
        if let Some(anchor) = operation
            .child_text(SERVER_SYNC_NS, "configAnchor")
            .filter(|anchor| !anchor.is_empty())
        {
            check_anchor(anchor, &state, "configAnchor")?;
        }
        format_anchor(state.change_number)
    };
    let max = shared.options.max_updates_per_request;
    let mut xml = format!(
        "<GetConfigDataResponse xmlns=\"{SERVER_SYNC_NS}\"><GetConfigDataResult><CatalogOnlySync>true</CatalogOnlySync>\
         <LazySync>true</LazySync><ServerHostsPsfFiles>false</ServerHostsPsfFiles>\
         <MaxNumberOfUpdatesPerRequest>{max}</MaxNumberOfUpdatesPerRequest><MaxNumberOfDriverSetsPerRequest>{max}</MaxNumberOfDriverSetsPerRequest>\
         <MaxNumberOfComputerIdsInRequest>500</MaxNumberOfComputerIdsInRequest><MaxNumberOfPnpHardwareIdsInRequest>500</MaxNumberOfPnpHardwareIdsInRequest>\
         <NewConfigAnchor>{new_anchor}</NewConfigAnchor><ProtocolVersion>{}</ProtocolVersion><LanguageUpdateList>",
        escape_text(&shared.protocol_version())
    );
    for (id, short, long) in [
        (0, "all", "all"),
        (1033, "en", "English"),
        (1031, "de", "German"),
    ] {
        let _ = write!(
            xml,
            "<ServerSyncLanguageData><LanguageID>{id}</LanguageID><ShortLanguage>{short}</ShortLanguage>\
             <LongLanguage>{long}</LongLanguage><Enabled>true</Enabled></ServerSyncLanguageData>"
        );
    }
    let _ = write!(
        xml,
        "</LanguageUpdateList><MaxUpdatesPerRequestInGetUpdateDecryptionData>{max}</MaxUpdatesPerRequestInGetUpdateDecryptionData>\
         </GetConfigDataResult></GetConfigDataResponse>"
    );
    Ok(xml)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `ArrayOfIdAndDelta` → (lower-case id, delta) pairs.
fn id_and_deltas(
    list: Option<&XmlElement>,
    parameter: &str,
) -> Result<Vec<(String, bool)>, SoapFault> {
    let ns = SERVER_SYNC_NS;
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.children_named(ns, "IdAndDelta")
        .map(|entry| {
            let id = entry.child_text(ns, "Id").filter(|id| is_guid(id));
            let delta = entry.child_text(ns, "Delta").and_then(parse_bool);
            match (id, delta) {
                (Some(id), Some(delta)) => Ok((id.to_ascii_lowercase(), delta)),
                _ => Err(invalid_parameters(parameter)),
            }
        })
        .collect()
}

fn get_revision_id_list(shared: &Shared, operation: &XmlElement) -> Result<String, SoapFault> {
    check_cookie(shared, operation)?;
    let ns = SERVER_SYNC_NS;
    let filter = operation
        .child(ns, "filter")
        .ok_or_else(|| invalid_parameters("filter"))?;
    let get_config = filter
        .child_text(ns, "GetConfig")
        .and_then(parse_bool)
        .ok_or_else(|| invalid_parameters("filter.GetConfig"))?;
    let categories = id_and_deltas(filter.child(ns, "Categories"), "filter.Categories")?;
    let classifications = id_and_deltas(
        filter.child(ns, "Classifications"),
        "filter.Classifications",
    )?;
    // The spec says a filter with only one of the two lists "does not work"; we refuse it.
    if !get_config && categories.is_empty() != classifications.is_empty() {
        return Err(invalid_parameters(
            "filter.Categories and filter.Classifications must both be empty or both be non-empty",
        ));
    }

    let state = shared.catalog.lock();
    let since = match filter
        .child_text(ns, "Anchor")
        .filter(|anchor| !anchor.is_empty())
    {
        Some(anchor) => check_anchor(anchor, &state, "filter.Anchor")?,
        None => 0,
    };
    let selected: Vec<&Arc<Revision>> = if get_config {
        state
            .latest_revisions()
            .filter(|revision| revision.update.kind.is_config() && revision.changed_at > since)
            .collect()
    } else {
        let ancestors = category_parents(&state);
        state
            .latest_revisions()
            .filter(|revision| !revision.update.kind.is_config())
            .filter(|revision| {
                let changed = revision.changed_at > since;
                if categories.is_empty() {
                    return changed;
                }
                let update = &revision.update;
                let in_categories = with_ancestors(&update.products, &ancestors);
                let product_hits: Vec<bool> = categories
                    .iter()
                    .filter(|(id, _)| in_categories.contains(id.as_str()))
                    .map(|&(_, delta)| delta)
                    .collect();
                let classification_hits: Vec<bool> = classifications
                    .iter()
                    .filter(|(id, _)| update.classifications.contains(id))
                    .map(|&(_, delta)| delta)
                    .collect();
                // Delta=false on a matching entry asks for all revisions regardless of the anchor.
                !product_hits.is_empty()
                    && !classification_hits.is_empty()
                    && (changed
                        || product_hits.contains(&false)
                        || classification_hits.contains(&false))
            })
            .collect()
    };
    let mut xml = format!(
        "<GetRevisionIdListResponse xmlns=\"{ns}\"><GetRevisionIdListResult><Anchor>{}</Anchor><NewRevisions>",
        format_anchor(state.change_number)
    );
    for revision in selected {
        push_identity(
            &mut xml,
            "UpdateIdentity",
            &revision.update.update_id,
            revision.update.revision_number,
        );
    }
    xml.push_str("</NewRevisions></GetRevisionIdListResult></GetRevisionIdListResponse>");
    Ok(xml)
}

/// Category id → its parent categories (latest revisions).
fn category_parents(state: &CatalogState) -> HashMap<&str, &[String]> {
    state
        .latest_revisions()
        .filter(|revision| revision.update.kind.category_type().is_some())
        .map(|revision| {
            (
                revision.update.update_id.as_str(),
                revision.update.parent_categories.as_slice(),
            )
        })
        .collect()
}

/// The products plus their families and companies.
fn with_ancestors<'a>(
    products: &'a [String],
    parents: &HashMap<&'a str, &'a [String]>,
) -> HashSet<&'a str> {
    let mut found: HashSet<&str> = HashSet::new();
    let mut pending: Vec<&str> = products.iter().map(String::as_str).collect();
    while let Some(id) = pending.pop() {
        if found.insert(id) {
            pending.extend(
                parents
                    .get(id)
                    .into_iter()
                    .flat_map(|up| up.iter().map(String::as_str)),
            );
        }
    }
    found
}

fn push_identity(xml: &mut String, element: &str, update_id: &str, revision_number: u32) {
    let _ = write!(
        xml,
        "<{element}><UpdateID>{update_id}</UpdateID><RevisionNumber>{revision_number}</RevisionNumber></{element}>"
    );
}

fn get_update_data(
    shared: &Shared,
    operation: &XmlElement,
    truncate_cabs: bool,
) -> Result<String, SoapFault> {
    check_cookie(shared, operation)?;
    let ns = SERVER_SYNC_NS;
    let list = operation
        .child(ns, "updateIds")
        .ok_or_else(|| invalid_parameters("updateIds"))?;
    let requested = list
        .children_named(ns, "UpdateIdentity")
        .map(|identity| {
            let id = identity.child_text(ns, "UpdateID").filter(|id| is_guid(id));
            let revision = identity
                .child_text(ns, "RevisionNumber")
                .and_then(|n| n.parse::<u32>().ok());
            match (id, revision) {
                (Some(id), Some(revision)) => Ok((id.to_ascii_lowercase(), revision)),
                _ => Err(invalid_parameters("updateIds")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max = shared.options.max_updates_per_request;
    if requested.len() > max as usize {
        return Err(invalid_parameters(&format!(
            "updateIds: {} identities exceed MaxNumberOfUpdatesPerRequest {max}",
            requested.len()
        )));
    }
    let revisions: Vec<Arc<Revision>> = {
        let state = shared.catalog.lock();
        requested
            .iter()
            .filter_map(|(id, revision)| state.revision(id, *revision))
            .collect()
    };

    let mut xml = format!("<GetUpdateDataResponse xmlns=\"{ns}\"><GetUpdateDataResult><updates>");
    let mut file_urls = String::new();
    let mut listed_digests = HashSet::new();
    for revision in &revisions {
        xml.push_str("<ServerSyncUpdateData>");
        push_identity(
            &mut xml,
            "Id",
            &revision.update.update_id,
            revision.update.revision_number,
        );
        let metadata = revision.render();
        let compress = truncate_cabs || shared.sends_compressed(revision.ordinal);
        if !compress {
            let _ = write!(
                xml,
                "<XmlUpdateBlob>{}</XmlUpdateBlob>",
                escape_text(&metadata)
            );
        }
        if !revision.files.is_empty() {
            xml.push_str("<FileDigestList>");
            for file in &revision.files {
                let digests = file.digests();
                let digest = digests.sha1_base64();
                let _ = write!(xml, "<base64Binary>{digest}</base64Binary>");
                if listed_digests.insert(digest.clone()) {
                    let _ = write!(
                        file_urls,
                        "<ServerSyncUrlData><FileDigest>{digest}</FileDigest><MUUrl>{}Content/{}/{}</MUUrl></ServerSyncUrlData>",
                        shared.base_url,
                        digests.content_folder(),
                        escape_text(&file.name)
                    );
                }
            }
            xml.push_str("</FileDigestList>");
        }
        if compress {
            let mut cab = compress_update_xml(&metadata)
                .map_err(|error| SoapFault::error("InternalServerError", error.to_string()))?;
            if truncate_cabs {
                cab.truncate(cab.len() / 2);
            }
            let _ = write!(
                xml,
                "<XmlUpdateBlobCompressed>{}</XmlUpdateBlobCompressed>",
                BASE64.encode(cab)
            );
        }
        xml.push_str("</ServerSyncUpdateData>");
    }
    let _ = write!(
        xml,
        "</updates><fileUrls>{file_urls}</fileUrls></GetUpdateDataResult></GetUpdateDataResponse>"
    );
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::UpdateKind;

    #[test]
    fn fqdn_and_protocol_version_rules() {
        assert!(is_fqdn("HemantTest.redmond.microsoft.com"));
        assert!(is_fqdn("dss-01"));
        assert!(!is_fqdn("bad_name.example"));
        assert!(!is_fqdn("a..b"));
        assert!(!is_fqdn(""));
        assert!(check_protocol_version("1.20").is_ok());
        assert_eq!(
            check_protocol_version("1")
                .err()
                .and_then(|f| f.error_code)
                .as_deref(),
            Some("InvalidParameters")
        );
        assert_eq!(
            check_protocol_version("2.0")
                .err()
                .and_then(|f| f.error_code)
                .as_deref(),
            Some("IncompatibleProtocolVersion")
        );
    }

    #[test]
    fn expiration_has_seven_fraction_digits() {
        let time = DateTime::parse_from_rfc3339("2006-06-08T19:32:23.719098700Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(format_expiration(time), "2006-06-08T19:32:23.7190987Z");
    }

    #[test]
    fn update_kind_split() {
        assert!(UpdateKind::Detectoid.is_config());
        assert!(!UpdateKind::Driver.is_config());
    }
}
