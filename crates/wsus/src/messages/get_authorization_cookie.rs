//! GetAuthorizationCookie (spec 3.1.4.2): the DSS introduces itself to the DSS Authorization service.

use super::{Request, decode_base64, required_text};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::AuthorizationCookie;
use crate::xml::push_text_element;

const OPERATION: Operation = Operation::GetAuthorizationCookie;

/// The request: this server's FQDN and its GUID, sent as given. `programKeys` ("reserved, MUST
/// be set to empty") is left out, as in the spec's sample.
pub fn request(account_name: &str, account_guid: &str) -> Request {
    let mut body = Request::start(OPERATION);
    push_text_element(&mut body, "accountName", account_name);
    push_text_element(&mut body, "accountGuid", account_guid);
    Request::finish(OPERATION, body)
}

/// Reads the authorization cookie to hand to GetCookie.
pub fn parse_response(body: &[u8]) -> Result<AuthorizationCookie, WsusError> {
    let result = soap::result_element(OPERATION, body)?;
    let cookie_data = required_text(OPERATION, &result, "CookieData")?;
    Ok(AuthorizationCookie {
        plugin_id: required_text(OPERATION, &result, "PlugInId")?.to_owned(),
        cookie_data: decode_base64(OPERATION, "CookieData", cookie_data)?,
    })
}
