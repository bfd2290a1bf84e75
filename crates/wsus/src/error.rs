//! Errors of the protocol layer: faults, unusable XML, and missing or invalid fields.

use crate::blob::BlobError;
use crate::soap::Fault;
use crate::types::UpdateIdentity;

/// Why a SOAP answer (or a request we were asked to build) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsusError {
    /// The upstream answered with a SOAP fault; [`Fault::reaction`] says what the DSS must do.
    #[error("{0}")]
    Fault(Fault),
    /// The body is not well-formed, or not safe, XML.
    #[error(
        "the {operation} response is not usable XML: {source}; the upstream (or a proxy in between) sent a broken body"
    )]
    Xml {
        operation: &'static str,
        source: MalformedXml,
    },
    /// The SOAP body holds another element than this operation's response.
    #[error(
        "the {operation} response carries <{found}> where <{expected}> was expected; the request reached something other than a WSUS web service (wrong URL, proxy or error page)"
    )]
    UnexpectedElement {
        operation: &'static str,
        expected: &'static str,
        found: String,
    },
    /// A required element is absent.
    #[error(
        "the {operation} response lacks the required <{element}> element; the upstream does not answer as MS-WSUSSS requires"
    )]
    Missing {
        operation: &'static str,
        element: &'static str,
    },
    /// An element holds a value this DSS cannot use.
    #[error("the {operation} response has <{element}> = {value:?}, which {reason}")]
    Invalid {
        operation: &'static str,
        element: &'static str,
        value: String,
        reason: String,
    },
    /// A metadata blob of GetUpdateData cannot be decoded; the whole answer is treated as corrupt.
    #[error(
        "the metadata of update {}/{} in the GetUpdateData response cannot be decoded: {source}; treat the answer as corrupt and request the batch again",
        update.update_id, update.revision_number
    )]
    Blob {
        update: UpdateIdentity,
        source: BlobError,
    },
    /// The caller asked for a request the protocol forbids; nothing was sent.
    #[error("cannot build the {operation} request: {reason}")]
    InvalidRequest {
        operation: &'static str,
        reason: String,
    },
}

impl WsusError {
    /// The fault, when the upstream answered with one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            WsusError::Fault(fault) => Some(fault),
            _ => None,
        }
    }

    /// Shortens a value quoted in an error, so a megabyte of base64 does not end up in a log.
    pub(crate) fn invalid(
        operation: &'static str,
        element: &'static str,
        value: &str,
        reason: impl Into<String>,
    ) -> WsusError {
        WsusError::Invalid {
            operation,
            element,
            value: clip(value, 80),
            reason: reason.into(),
        }
    }
}

/// Why a document is not usable XML. Shared by the SOAP parsers and [`crate::update_xml`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedXml {
    #[error(
        "it is not UTF-8 text (invalid byte at offset {offset}); WSUS sends UTF-8 SOAP, so the body is corrupt or not SOAP at all"
    )]
    NotUtf8 { offset: usize },
    #[error(
        "it declares a DTD (<!DOCTYPE ...> at byte {position}); DTDs are refused because entity expansion can blow up memory, and WSUS never sends one"
    )]
    DocType { position: u64 },
    #[error(
        "it references the entity &{name}; at byte {position}; only the five XML entities and character references are allowed"
    )]
    UnknownEntity { name: String, position: u64 },
    #[error(
        "its elements nest deeper than {limit} levels (at byte {position}); no WSUS message is that deep"
    )]
    TooDeep { limit: usize, position: u64 },
    #[error("it ends inside <{element}>; the body is truncated")]
    Truncated { element: String },
    #[error("it has no root element; the body is empty or holds only comments")]
    NoRoot,
    #[error("it is not well-formed at byte {position}: {reason}")]
    Syntax { position: u64, reason: String },
}

/// The first `max` characters of `text`, with an ellipsis when something was cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
