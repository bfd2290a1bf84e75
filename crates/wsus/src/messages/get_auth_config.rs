//! GetAuthConfig (spec 3.1.4.1): where the DSS Authorization web service is.

use super::{Request, required, required_text};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::AuthConfig;

const OPERATION: Operation = Operation::GetAuthConfig;

/// The request; it has no fields.
pub fn request() -> Request {
    Request::finish(OPERATION, Request::start(OPERATION))
}

/// Reads the single AuthPlugInInfo of the answer.
pub fn parse_response(body: &[u8]) -> Result<AuthConfig, WsusError> {
    let result = soap::result_element(OPERATION, body)?;
    let info = required(OPERATION, &result, "AuthInfo")?;
    // The spec says exactly one; should there be more, the first one is DssTargeting's.
    let plugin = required(OPERATION, info, "AuthPlugInInfo")?;
    Ok(AuthConfig {
        plugin_id: required_text(OPERATION, plugin, "PlugInID")?.to_owned(),
        service_url: required_text(OPERATION, plugin, "ServiceUrl")?.to_owned(),
    })
}
