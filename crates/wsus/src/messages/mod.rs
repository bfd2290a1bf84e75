//! One module per operation: its request builder and its response parser.
//!
//! Each `parse_response` takes the raw HTTP body — of a 200 answer, or of a 500 answer that
//! carries a fault — and returns the operation's result, or [`WsusError::Fault`] when the
//! upstream answered with a SOAP fault.

pub mod get_auth_config;
pub mod get_authorization_cookie;
pub mod get_config_data;
pub mod get_cookie;
pub mod get_revision_id_list;
pub mod get_update_data;

use std::str::FromStr;

use crate::error::WsusError;
use crate::operation::{Endpoint, Operation};
use crate::soap::{self, SoapVersion};
use crate::types::{Cookie, UpdateIdentity};
use crate::wire;
use crate::xml::{Element, push_text_element};

/// A request ready to be sent: the operation and its SOAP body element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    /// The body element only (`<GetCookie xmlns="...">...</GetCookie>`), without envelope.
    pub body_xml: String,
}

impl Request {
    /// The whole SOAP message to post.
    pub fn envelope(&self, version: SoapVersion) -> String {
        soap::envelope(version, &self.body_xml)
    }

    /// The Content-Type header to post it with.
    pub fn content_type(&self, version: SoapVersion) -> String {
        version.content_type(self.operation.soap_action())
    }

    /// The SOAPAction header to post it with (SOAP 1.1 only).
    pub fn soap_action_header(&self, version: SoapVersion) -> Option<String> {
        version.soap_action_header(self.operation.soap_action())
    }

    /// The web service to post it to.
    pub fn endpoint(&self) -> Endpoint {
        self.operation.endpoint()
    }

    /// Opens a body element in the operation's namespace; [`Self::finish`] closes it.
    fn start(operation: Operation) -> String {
        format!("<{} xmlns=\"{}\">", operation.name(), operation.namespace())
    }

    fn finish(operation: Operation, mut body_xml: String) -> Request {
        body_xml.push_str("</");
        body_xml.push_str(operation.name());
        body_xml.push('>');
        Request {
            operation,
            body_xml,
        }
    }
}

/// Appends a Cookie (spec 2.2.4.8) as the element `name`.
fn push_cookie(out: &mut String, name: &str, cookie: &Cookie) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_text_element(
        out,
        "Expiration",
        &wire::format_datetime(&cookie.expiration),
    );
    push_text_element(
        out,
        "EncryptedData",
        &wire::encode_base64(&cookie.encrypted_data),
    );
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Appends an UpdateIdentity (spec 2.2.4.9) as the element `name`.
fn push_identity(out: &mut String, name: &str, identity: &UpdateIdentity) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_text_element(out, "UpdateID", &identity.update_id);
    push_text_element(out, "RevisionNumber", &identity.revision_number.to_string());
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A required child element.
fn required<'a>(
    operation: Operation,
    parent: &'a Element,
    name: &'static str,
) -> Result<&'a Element, WsusError> {
    parent.child(name).ok_or(WsusError::Missing {
        operation: operation.name(),
        element: name,
    })
}

/// A required child's text, trimmed; an empty element counts as missing.
fn required_text<'a>(
    operation: Operation,
    parent: &'a Element,
    name: &'static str,
) -> Result<&'a str, WsusError> {
    optional_text(parent, name).ok_or(WsusError::Missing {
        operation: operation.name(),
        element: name,
    })
}

/// An optional child's text, trimmed; `None` when absent or empty.
fn optional_text<'a>(parent: &'a Element, name: &str) -> Option<&'a str> {
    parent
        .child(name)
        .map(Element::trimmed_text)
        .filter(|text| !text.is_empty())
}

fn parse_bool(
    operation: Operation,
    parent: &Element,
    name: &'static str,
) -> Result<bool, WsusError> {
    let text = required_text(operation, parent, name)?;
    wire::parse_bool(text).ok_or_else(|| {
        WsusError::invalid(
            operation.name(),
            name,
            text,
            "is not an xsd:boolean (true/false/1/0)",
        )
    })
}

fn parse_number<T: FromStr>(
    operation: Operation,
    parent: &Element,
    name: &'static str,
) -> Result<T, WsusError> {
    let text = required_text(operation, parent, name)?;
    text.parse().map_err(|_| {
        WsusError::invalid(
            operation.name(),
            name,
            text,
            "is not a number in the expected range",
        )
    })
}

fn decode_base64(
    operation: Operation,
    name: &'static str,
    text: &str,
) -> Result<Vec<u8>, WsusError> {
    wire::decode_base64(text).map_err(|error| {
        WsusError::invalid(
            operation.name(),
            name,
            text,
            format!("is not base64 ({error})"),
        )
    })
}

/// Reads an UpdateIdentity element (`Id`, `UpdateIdentity`).
fn parse_identity(operation: Operation, element: &Element) -> Result<UpdateIdentity, WsusError> {
    let update_id = required_text(operation, element, "UpdateID")?;
    let revision_number = parse_number(operation, element, "RevisionNumber")?;
    UpdateIdentity::new(update_id, revision_number)
        .ok_or_else(|| WsusError::invalid(operation.name(), "UpdateID", update_id, "is not a GUID"))
}
