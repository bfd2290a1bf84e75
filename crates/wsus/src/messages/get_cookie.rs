//! GetCookie (spec 3.1.4.3): trades the authorization cookie for the cookie every Server Sync call carries.

use super::{Request, decode_base64, push_cookie, required_text};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::{AuthorizationCookie, Cookie};
use crate::wire;
use crate::xml::push_text_element;

const OPERATION: Operation = Operation::GetCookie;

/// The request. `old_cookie` is the last cookie received, `None` on the first call;
/// `protocol_version` is normally [`crate::PROTOCOL_VERSION`].
pub fn request(
    authorization: &AuthorizationCookie,
    old_cookie: Option<&Cookie>,
    protocol_version: &str,
) -> Request {
    let mut body = Request::start(OPERATION);
    body.push_str("<authCookies><AuthorizationCookie>");
    push_text_element(&mut body, "PlugInId", &authorization.plugin_id);
    push_text_element(
        &mut body,
        "CookieData",
        &wire::encode_base64(&authorization.cookie_data),
    );
    body.push_str("</AuthorizationCookie></authCookies>");
    if let Some(old_cookie) = old_cookie {
        push_cookie(&mut body, "oldCookie", old_cookie);
    }
    push_text_element(&mut body, "protocolVersion", protocol_version);
    Request::finish(OPERATION, body)
}

/// Reads the cookie.
pub fn parse_response(body: &[u8]) -> Result<Cookie, WsusError> {
    let result = soap::result_element(OPERATION, body)?;
    let expiration = required_text(OPERATION, &result, "Expiration")?;
    let encrypted_data = required_text(OPERATION, &result, "EncryptedData")?;
    Ok(Cookie {
        expiration: wire::parse_datetime(expiration).ok_or_else(|| {
            WsusError::invalid(
                OPERATION.name(),
                "Expiration",
                expiration,
                "is not an xsd:dateTime",
            )
        })?,
        encrypted_data: decode_base64(OPERATION, "EncryptedData", encrypted_data)?,
    })
}
