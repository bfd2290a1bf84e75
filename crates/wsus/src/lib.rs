//! The WSUS Server-Server protocol (MS-WSUSSS) from the downstream server's side, as pure code.
//!
//! Patchbay acts as a downstream server (DSS): it authorizes with an upstream server (USS, or
//! Microsoft Update itself), then synchronizes configuration, categories and update metadata
//! (spec 3.2.4.1–3.2.4.2). This crate builds the SOAP requests ([`messages`]), parses the answers
//! and faults ([`soap`]), unpacks compressed metadata blobs ([`blob`]) and reads the update
//! metadata XML ([`update_xml`]). It does no IO: the caller posts [`Request::envelope`] to
//! [`Operation::endpoint`] and hands the answer's body to the operation's `parse_response`.
//!
//! Every parser refuses DTDs and unknown entities, caps nesting depth and decompressed sizes,
//! and reports bad input as a typed error instead of panicking.

#![allow(
    clippy::result_large_err,
    reason = "WsusError holds a Fault by value so callers can match and move it; errors end an HTTP exchange, so their size costs nothing measurable"
)]

pub mod blob;
mod error;
pub mod messages;
pub mod operation;
pub mod soap;
pub mod types;
pub mod update_xml;
mod wire;
mod xml;

pub use blob::{BlobError, DEFAULT_MAX_BLOB_BYTES, decode_compressed};
pub use error::{MalformedXml, WsusError};
pub use messages::Request;
pub use operation::{Endpoint, Operation};
pub use soap::{ErrorCode, Fault, FaultReaction, SoapVersion};
pub use types::{
    AuthConfig, AuthorizationCookie, Cookie, FileUrl, IdAndDelta, Language, LanguageAndDelta,
    RevisionIdList, ServerConfig, SyncFilter, SyncedRevision, UpdateData, UpdateIdentity,
};
pub use update_xml::{
    Behaviour, CategoryType, EulaFile, LocalizedProperties, MsrcSeverity, PayloadFile,
    Prerequisite, RebootBehaviour, UpdateMetadata, UpdateType, UpdateXmlError,
};

/// Namespace of the Server Sync web service's messages and of the shared complex types.
pub const SOFTWARE_DISTRIBUTION_NS: &str = "http://www.microsoft.com/SoftwareDistribution";

/// Namespace of the DSS Authorization web service's messages (GetAuthorizationCookie).
pub const DSS_AUTH_NS: &str =
    "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService";

/// The protocol version this DSS announces in GetCookie (`protocolVersion`, spec 3.1.4.3.2.1).
///
/// "1.2" (WSUS 2.0 SP1) is the newest version whose DSS duties we fully meet: we always send
/// `Get63LanguageOnly` (required from 1.2 on), never send the `Languages` filter (which 1.1 and
/// 1.2 MUST NOT send) and do not perform the reporting rollup that 1.3 and later expect
/// (spec 1.7, 3.2.4.5). The spec's own GetCookie sample sends "1.2", and Microsoft's USS only
/// checks that the major version is 1 (spec 3.1.4.3).
///
/// Trade-off: a USS may leave out updates whose `CompatibleProtocolVersion` is higher than the
/// DSS's version (spec 3.1.4.5). If a real upstream turns out to hold back updates from a 1.2
/// DSS, pass "1.20" to [`messages::get_cookie::request`] instead — the wire format of the six
/// operations here is the same — and accept that we then skip the 1.3+ reporting phase.
pub const PROTOCOL_VERSION: &str = "1.2";
