//! A fake upstream WSUS server (USS) that speaks the MS-WSUSSS wire format over a fixture catalog.
//!
//! [`FakeUpstream::start`] serves a [`FixtureCatalog`] on 127.0.0.1 for the WSUS sync service's
//! tests, the end-to-end test, benchmarks and demos:
//!
//! - `POST /ServerSyncWebService/ServerSyncWebService.asmx`: GetAuthConfig, GetCookie,
//!   GetConfigData, GetRevisionIdList, GetUpdateData (other operations answer
//!   InternalServerError);
//! - `POST /DssAuthWebService/DssAuthWebService.asmx`: GetAuthorizationCookie;
//! - `GET /Content/<last two hex digits of the SHA-1>/<file name>`: deterministic file bytes
//!   matching the metadata digests, with byte ranges.
//!
//! Paths are matched case-insensitively, like IIS. SOAP 1.1 (`text/xml` + `SOAPAction`) and
//! SOAP 1.2 (`application/soap+xml; action=...`) are both accepted and answered in kind; the
//! operation is the first element of the Body and the action must name it (otherwise a fault
//! without ErrorCode, as ASP.NET gives). Faults follow MS-WSUSSS 2.2.9 with HTTP 500.
//!
//! Choices where the spec leaves room:
//! - anchors are "N,yyyy-MM-dd HH:mm:ss.fff" with N the catalog change number; the initial
//!   catalog is change 1 and every [`CatalogHandle`] change takes the next number, so an
//!   incremental GetRevisionIdList returns exactly the revisions changed since the anchor. An
//!   unparseable anchor is InvalidParameters; one from before [`FakeUpstream::change_server_identity`]
//!   is ServerChanged.
//! - a GetRevisionIdList filter with Categories but no Classifications (or the reverse) is
//!   refused with InvalidParameters (the spec only says such a filter "does not work"). With
//!   both, an update matches when one of its products, or their product family or company, is
//!   listed and one of its classifications is listed; `Delta=false` on a matching entry returns
//!   the update regardless of the anchor. Languages are not filtered.
//! - GetConfigData always lists all languages (all, en, de), per 3.1.4.4's data processing.
//! - content folders are the last two hex digits of the SHA-1 (2.1), not base64 (3.2.4.4);
//!   EULA files are content files too (in FileDigestList, fileUrls and under /Content).
//! - `MUUrl` points at this server's /Content; `CatalogOnlySync` is true, so that is where a
//!   DSS downloads from.

pub mod cab_writer;
pub mod content;
mod cookies;
mod fixture;
mod generated;
mod live_catalog;
pub mod lzx;
mod metadata;
mod operations;
pub mod sample;
mod server;
mod soap;

pub use fixture::{
    CatalogError, DriverInfo, FixtureCatalog, FixtureEula, FixtureFile, FixtureUpdate,
    LocalizedText, MsrcSeverity, PublicationState, RebootBehavior, RevisionRef, UpdateKind,
};
pub use live_catalog::CatalogHandle;
pub use operations::{AUTHORIZATION_COOKIE_LIFETIME, DSS_AUTH_NS, SERVER_SYNC_NS};
pub use sample::ids;
pub use server::{
    CONTENT_OPERATION, FakeUpstream, Garble, InjectedFault, RecordedRequest, UpstreamOptions,
};
pub use soap::{SOAP11_ENVELOPE_NS, SOAP12_ENVELOPE_NS, SoapVersion};
