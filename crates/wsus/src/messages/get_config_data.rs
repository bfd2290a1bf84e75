//! GetConfigData (spec 3.1.4.4): the upstream's sync settings and languages.

use super::{Request, optional_text, parse_bool, parse_number, push_cookie, required_text};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::{Cookie, Language, ServerConfig};
use crate::xml::push_text_element;

const OPERATION: Operation = Operation::GetConfigData;

/// The request. `config_anchor` is the `new_config_anchor` of the last successful call, `None`
/// the first time (the element must then be absent).
pub fn request(cookie: &Cookie, config_anchor: Option<&str>) -> Request {
    let mut body = Request::start(OPERATION);
    push_cookie(&mut body, "cookie", cookie);
    if let Some(anchor) = config_anchor {
        push_text_element(&mut body, "configAnchor", anchor);
    }
    Request::finish(OPERATION, body)
}

/// Reads the settings a DSS stores (spec 3.2.4.2); the driver and decryption limits are not used.
pub fn parse_response(body: &[u8]) -> Result<ServerConfig, WsusError> {
    let result = soap::result_element(OPERATION, body)?;
    let max_updates_per_request: i64 =
        parse_number(OPERATION, &result, "MaxNumberOfUpdatesPerRequest")?;
    let max_updates_per_request = u32::try_from(max_updates_per_request)
        .ok()
        .filter(|max| *max >= 1)
        .ok_or_else(|| {
            WsusError::invalid(
                OPERATION.name(),
                "MaxNumberOfUpdatesPerRequest",
                &max_updates_per_request.to_string(),
                "must be at least 1, or GetUpdateData could never be called",
            )
        })?;
    let mut languages = Vec::new();
    if let Some(list) = result.child("LanguageUpdateList") {
        for entry in list.children_named("ServerSyncLanguageData") {
            if entry.is_empty() {
                continue;
            }
            languages.push(Language {
                id: parse_number(OPERATION, entry, "LanguageID")?,
                short: optional_text(entry, "ShortLanguage")
                    .unwrap_or_default()
                    .to_owned(),
                long: optional_text(entry, "LongLanguage")
                    .unwrap_or_default()
                    .to_owned(),
                enabled: parse_bool(OPERATION, entry, "Enabled")?,
            });
        }
    }
    Ok(ServerConfig {
        catalog_only_sync: parse_bool(OPERATION, &result, "CatalogOnlySync")?,
        lazy_sync: parse_bool(OPERATION, &result, "LazySync")?,
        server_hosts_psf_files: parse_bool(OPERATION, &result, "ServerHostsPsfFiles")?,
        max_updates_per_request,
        new_config_anchor: required_text(OPERATION, &result, "NewConfigAnchor")?.to_owned(),
        protocol_version: optional_text(&result, "ProtocolVersion").map(str::to_owned),
        languages,
    })
}
