//! GetRevisionIdList (spec 3.1.4.5): which revisions changed since an anchor, under a filter.

use super::{Request, parse_identity, push_cookie, required_text};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::{Cookie, IdAndDelta, RevisionIdList, SyncFilter};
use crate::xml::push_text_element;

const OPERATION: Operation = Operation::GetRevisionIdList;

/// The request; fails, sending nothing, when the filter breaks spec 3.1.4.5.3.1.
pub fn request(cookie: &Cookie, filter: &SyncFilter) -> Result<Request, WsusError> {
    filter
        .validate()
        .map_err(|reason| WsusError::InvalidRequest {
            operation: OPERATION.name(),
            reason,
        })?;
    let mut body = Request::start(OPERATION);
    push_cookie(&mut body, "cookie", cookie);
    // Schema order; DssProtocolVersion is reserved and MUST NOT be sent.
    body.push_str("<filter>");
    if let Some(anchor) = &filter.anchor {
        push_text_element(&mut body, "Anchor", anchor);
    }
    push_text_element(&mut body, "GetConfig", bool_text(filter.get_config));
    push_text_element(
        &mut body,
        "Get63LanguageOnly",
        bool_text(filter.get_63_language_only),
    );
    push_id_list(&mut body, "Categories", &filter.categories);
    push_id_list(&mut body, "Classifications", &filter.classifications);
    if !filter.languages.is_empty() {
        body.push_str("<Languages>");
        for language in &filter.languages {
            body.push_str("<LanguageAndDelta>");
            push_text_element(&mut body, "Id", &language.id.to_string());
            push_text_element(&mut body, "Delta", bool_text(language.delta));
            body.push_str("</LanguageAndDelta>");
        }
        body.push_str("</Languages>");
    }
    body.push_str("</filter>");
    Ok(Request::finish(OPERATION, body))
}

/// Reads the new anchor and the revisions; a missing `NewRevisions` means none.
pub fn parse_response(body: &[u8]) -> Result<RevisionIdList, WsusError> {
    let result = soap::result_element(OPERATION, body)?;
    let anchor = required_text(OPERATION, &result, "Anchor")?.to_owned();
    let mut new_revisions = Vec::new();
    if let Some(list) = result.child("NewRevisions") {
        for identity in list.children_named("UpdateIdentity") {
            if !identity.is_empty() {
                new_revisions.push(parse_identity(OPERATION, identity)?);
            }
        }
    }
    Ok(RevisionIdList {
        anchor,
        new_revisions,
    })
}

fn push_id_list(body: &mut String, name: &str, ids: &[IdAndDelta]) {
    if ids.is_empty() {
        return;
    }
    body.push('<');
    body.push_str(name);
    body.push('>');
    for entry in ids {
        body.push_str("<IdAndDelta>");
        push_text_element(body, "Id", &entry.id.to_ascii_lowercase());
        push_text_element(body, "Delta", bool_text(entry.delta));
        body.push_str("</IdAndDelta>");
    }
    body.push_str("</");
    body.push_str(name);
    body.push('>');
}

fn bool_text(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}
