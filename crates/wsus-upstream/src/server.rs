//! The HTTP side: the `FakeUpstream` handle, routing, SOAP binding checks, request recording, fault injection and content downloads.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::content::{RangeRequest, parse_range, payload};
use crate::cookies::CookieAuthority;
use crate::fixture::FixtureCatalog;
use crate::live_catalog::{CatalogHandle, CatalogState};
use crate::operations::{self, Service};
use crate::soap::{SoapFault, SoapVersion, body_operation, envelope, parse_document};

/// The operation name under which content downloads are recorded and injected.
pub const CONTENT_OPERATION: &str = "Content";

const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
const HANG_DURATION: Duration = Duration::from_secs(3600);

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOptions {
    /// `MaxNumberOfUpdatesPerRequest` of GetConfigData; larger GetUpdateData requests fail with
    /// InvalidParameters. Default 50.
    pub max_updates_per_request: u32,
    /// How long a GetCookie cookie lives. Default 1 hour.
    pub cookie_lifetime: Duration,
    /// Revisions whose catalog position (1-based, in publication order) is a multiple of this are
    /// sent as `XmlUpdateBlobCompressed`; 0 = never, 1 = always. Default 3.
    pub compress_every: u32,
    /// Validate GetAuthorizationCookie's accountName (FQDN characters) and accountGuid (GUID) and
    /// answer InvalidParameters (MS-WSUSSS 3.1.4.2). When false any values are accepted.
    /// Default true.
    pub account_check: bool,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            max_updates_per_request: 50,
            cookie_lifetime: Duration::from_secs(3600),
            compress_every: 3,
            account_check: true,
        }
    }
}

/// A fault to inject instead of an operation's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// The detail `ErrorCode` ("ServerBusy", "InvalidCookie", …); `None` = a fault whose detail is
    /// empty, which a DSS must treat as "stop the protocol".
    pub error_code: Option<String>,
    /// `faultstring` / `Message`.
    pub message: String,
}

/// A broken answer to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garble {
    /// HTTP 200 with an envelope that stops mid-element.
    MalformedXml,
    /// HTTP 200 whose envelope starts with a billion-laughs DOCTYPE.
    DoctypeBomb,
    /// For GetUpdateData: every update is sent compressed and each cabinet is cut in half. Other
    /// SOAP operations (and content downloads) get their answer cut in half.
    TruncatedCab,
    /// For content downloads (operation [`CONTENT_OPERATION`]): the served bytes have their
    /// first byte flipped, so they no longer match the metadata's Digest. No effect on SOAP
    /// operations.
    WrongDigest,
    /// Answer with this HTTP status and a small HTML body.
    HttpError(u16),
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedRequest {
    /// The operation ("GetCookie", …) or [`CONTENT_OPERATION`].
    pub operation: String,
    /// The SOAPAction header (SOAP 1.1) or `action` parameter (SOAP 1.2), unquoted.
    pub soap_action: Option<String>,
    /// The SOAP version of a SOAP request.
    pub soap_version: Option<SoapVersion>,
    /// GetUpdateData: how many UpdateIdentity elements `updateIds` held.
    pub update_id_count: Option<usize>,
    /// GetRevisionIdList: the filter's Anchor (absent or empty = `None`).
    pub filter_anchor: Option<String>,
    /// GetRevisionIdList: the filter's GetConfig.
    pub filter_get_config: Option<bool>,
    /// GetConfigData: the configAnchor (absent or empty = `None`).
    pub config_anchor: Option<String>,
    /// The request path.
    pub path: String,
    /// Content downloads: the Range header.
    pub range: Option<String>,
}

#[derive(Debug, Clone)]
enum Injection {
    Fail(InjectedFault),
    Hang,
    Garble(Garble),
}

#[derive(Debug)]
struct PendingInjection {
    operation: String,
    injection: Injection,
    remaining: u32,
}

#[derive(Debug)]
struct Control {
    requests: Vec<RecordedRequest>,
    pending: Vec<PendingInjection>,
    protocol_version: String,
    generation: u64,
}

/// State shared by the handle and the request handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub options: UpstreamOptions,
    /// "http://127.0.0.1:PORT/".
    pub base_url: String,
    pub catalog: CatalogHandle,
    pub cookies: CookieAuthority,
    control: Mutex<Control>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server identity generation cookies must carry.
    pub fn generation(&self) -> u64 {
        self.control().generation
    }

    pub fn protocol_version(&self) -> String {
        self.control().protocol_version.clone()
    }

    pub fn sends_compressed(&self, ordinal: u64) -> bool {
        let every = u64::from(self.options.compress_every);
        every > 0 && ordinal.is_multiple_of(every)
    }

    fn record(&self, request: RecordedRequest) {
        tracing::debug!(operation = %request.operation, path = %request.path, "fake upstream request");
        self.control().requests.push(request);
    }

    fn take_injection(&self, operation: &str) -> Option<Injection> {
        let mut control = self.control();
        let index = control
            .pending
            .iter()
            .position(|pending| pending.operation == operation)?;
        let pending = &mut control.pending[index];
        let injection = pending.injection.clone();
        pending.remaining -= 1;
        if pending.remaining == 0 {
            control.pending.remove(index);
        }
        Some(injection)
    }

    async fn hang(&self) -> Response {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(HANG_DURATION) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

/// A fake upstream WSUS server on 127.0.0.1 (see the crate docs). Dropping it stops the server.
pub struct FakeUpstream {
    shared: Arc<Shared>,
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeUpstream {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FakeUpstream")
            .field("url", &self.url())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl FakeUpstream {
    /// Serves `catalog` on an ephemeral port of 127.0.0.1. Call from within a Tokio runtime.
    pub async fn start(
        catalog: FixtureCatalog,
        options: UpstreamOptions,
    ) -> std::io::Result<FakeUpstream> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            options,
            base_url: format!("http://{address}/"),
            catalog: CatalogHandle {
                state: Arc::new(Mutex::new(CatalogState::new(catalog))),
            },
            cookies: CookieAuthority::new(),
            control: Mutex::new(Control {
                requests: Vec::new(),
                pending: Vec::new(),
                protocol_version: "1.20".to_owned(),
                generation: 1,
            }),
            shutdown: shutdown.clone(),
        });
        let router = Router::new()
            .fallback(route)
            .with_state(Arc::clone(&shared));
        let mut stopping = shutdown;
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::warn!(%error, "fake upstream server stopped with an error");
            }
        });
        Ok(FakeUpstream {
            shared,
            address,
            stop,
            task: Some(task),
        })
    }

    /// "http://127.0.0.1:PORT/".
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.control().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.control().requests.clear();
    }

    /// The next `times` calls of `operation` get `fault` (HTTP 500) instead of an answer.
    pub fn fail_next(&self, operation: &str, fault: InjectedFault, times: u32) {
        self.inject(operation, Injection::Fail(fault), times);
    }

    /// The next `times` calls of `operation` never get an answer (the handler sleeps for an
    /// hour, or until the server stops), so the caller's timeout fires.
    pub fn hang_next(&self, operation: &str, times: u32) {
        self.inject(operation, Injection::Hang, times);
    }

    /// The next `times` calls of `operation` get a broken answer of this `kind`.
    pub fn garble_next(&self, operation: &str, kind: Garble, times: u32) {
        self.inject(operation, Injection::Garble(kind), times);
    }

    /// Forgets the injections no call has taken yet.
    pub fn clear_injections(&self) {
        self.shared.control().pending.clear();
    }

    fn inject(&self, operation: &str, injection: Injection, times: u32) {
        if times > 0 {
            self.shared.control().pending.push(PendingInjection {
                operation: operation.to_owned(),
                injection,
                remaining: times,
            });
        }
    }

    /// The `ProtocolVersion` GetConfigData reports (default "1.20").
    pub fn set_protocol_version(&self, version: &str) {
        self.shared.control().protocol_version = version.to_owned();
    }

    /// Becomes a "different" server: cookies and authorization cookies issued so far get
    /// InvalidCookie / InvalidAuthorizationCookie, and anchors issued so far get ServerChanged.
    pub fn change_server_identity(&self) {
        self.shared.catalog.lock().start_new_epoch();
        self.shared.control().generation += 1;
    }

    /// A handle to change the served catalog.
    pub fn catalog(&self) -> CatalogHandle {
        self.shared.catalog.clone()
    }

    /// Whether GetUpdateData sends this revision as `XmlUpdateBlobCompressed` (see
    /// [`UpstreamOptions::compress_every`]); `None` if the revision is unknown.
    pub fn sends_compressed(&self, update_id: &str, revision_number: u32) -> Option<bool> {
        let revision = self
            .shared
            .catalog
            .lock()
            .revision(&update_id.to_ascii_lowercase(), revision_number)?;
        Some(self.shared.sends_compressed(revision.ordinal))
    }

    /// Stops the server and waits until it has stopped (hanging requests are released).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn route(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_ascii_lowercase();
    match path.as_str() {
        "/serversyncwebservice/serversyncwebservice.asmx" => {
            soap_call(&shared, Service::ServerSync, request).await
        }
        "/dssauthwebservice/dssauthwebservice.asmx" => {
            soap_call(&shared, Service::DssAuth, request).await
        }
        _ if path.starts_with("/content/") => content(&shared, request).await,
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The SOAP version from Content-Type, and the action from SOAPAction or the `action` parameter.
fn soap_binding(headers: &HeaderMap) -> Option<(SoapVersion, Option<String>)> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = content_type.split(';');
    let media_type = parts.next()?.trim().to_ascii_lowercase();
    let unquote = |value: &str| value.trim().trim_matches('"').to_owned();
    match media_type.as_str() {
        "text/xml" => Some((
            SoapVersion::Soap11,
            headers
                .get("SOAPAction")
                .and_then(|value| value.to_str().ok())
                .map(unquote),
        )),
        "application/soap+xml" => Some((
            SoapVersion::Soap12,
            parts
                .filter_map(|part| part.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("action"))
                .map(|(_, value)| unquote(value)),
        )),
        _ => None,
    }
}

fn soap_response(version: SoapVersion, status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, version.content_type())],
        body,
    )
        .into_response()
}

fn fault_response(version: SoapVersion, fault: &SoapFault) -> Response {
    soap_response(
        version,
        StatusCode::INTERNAL_SERVER_ERROR,
        fault.to_envelope(version),
    )
}

fn http_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/html")],
        format!(
            "<html><body><h1>HTTP Error {}</h1></body></html>",
            status.as_u16()
        ),
    )
        .into_response()
}

async fn soap_call(shared: &Shared, service: Service, request: Request) -> Response {
    if request.method() != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some((version, action)) = soap_binding(request.headers()) else {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    };
    let path = request.uri().path().to_owned();
    let Ok(body) = to_bytes(request.into_body(), MAX_REQUEST_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return fault_response(
            version,
            &SoapFault::client(None, "The request is not UTF-8."),
        );
    };
    let document = match parse_document(text) {
        Ok(document) => document,
        Err(error) => return fault_response(version, &SoapFault::client(None, error.to_string())),
    };
    let operation = match body_operation(&document, version) {
        Ok(operation) => operation,
        Err(fault) => return fault_response(version, &fault),
    };
    let mut record = RecordedRequest {
        operation: operation.name.clone(),
        soap_action: action.clone(),
        soap_version: Some(version),
        path,
        ..RecordedRequest::default()
    };
    operations::describe(operation, &mut record);
    shared.record(record);

    // ASP.NET dispatches on the action; one that does not name this element is a bare fault.
    let expected_action = format!("{}/{}", service.namespace(), operation.name);
    if operation.namespace != service.namespace()
        || action.as_deref() != Some(expected_action.as_str())
    {
        let message = format!(
            "Server did not recognize the value of HTTP Header SOAPAction: {}.",
            action.unwrap_or_default()
        );
        return fault_response(version, &SoapFault::client(None, message));
    }

    let mut garble = None;
    match shared.take_injection(&operation.name) {
        Some(Injection::Hang) => return shared.hang().await,
        Some(Injection::Fail(injected)) => {
            let mut fault = SoapFault::client(injected.error_code.as_deref(), injected.message);
            fault.method = Some(expected_action);
            return fault_response(version, &fault);
        }
        Some(Injection::Garble(Garble::HttpError(status))) => return http_error(status),
        Some(Injection::Garble(kind)) => garble = Some(kind),
        None => {}
    }

    let truncate_cabs = garble == Some(Garble::TruncatedCab) && operation.name == "GetUpdateData";
    let body = match operations::answer(shared, service, operation, truncate_cabs) {
        Ok(answer) => envelope(version, &answer),
        Err(mut fault) => {
            fault.method = Some(expected_action);
            return fault_response(version, &fault);
        }
    };
    let body = match garble {
        Some(Garble::MalformedXml) => {
            let cut = body.find("Result>").map_or(body.len() / 2, |at| at + 7);
            format!("{}<Broken attribute=\"unterminated>", &body[..cut])
        }
        Some(Garble::DoctypeBomb) => billion_laughs(&body),
        Some(Garble::TruncatedCab) if !truncate_cabs => {
            let mut cut = body.len() / 2;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body[..cut].to_owned()
        }
        Some(Garble::WrongDigest) => {
            tracing::warn!(operation = %operation.name, "Garble::WrongDigest only affects content downloads");
            body
        }
        _ => body,
    };
    soap_response(version, StatusCode::OK, body)
}

/// The answer with a billion-laughs DOCTYPE in front and `&lol9;` inside the body.
fn billion_laughs(body: &str) -> String {
    let mut doctype = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for level in 1..=9 {
        let previous = if level == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", level - 1)
        };
        doctype.push_str(&format!(
            "<!ENTITY lol{level} \"{}\">",
            format!("&{previous};").repeat(10)
        ));
    }
    doctype.push_str("]>");
    let without_declaration = body
        .strip_prefix("<?xml version=\"1.0\" encoding=\"utf-8\"?>")
        .unwrap_or(body);
    let with_entity = without_declaration.replacen("<soap:Body>", "<soap:Body>&lol9;", 1);
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{doctype}{with_entity}")
}

async fn content(shared: &Shared, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = request.uri().path().to_owned();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    shared.record(RecordedRequest {
        operation: CONTENT_OPERATION.to_owned(),
        path: path.clone(),
        range: range.clone(),
        ..RecordedRequest::default()
    });
    let mut corrupt = false;
    let mut truncate = false;
    match shared.take_injection(CONTENT_OPERATION) {
        Some(Injection::Hang) => return shared.hang().await,
        Some(Injection::Fail(fault)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, fault.message).into_response();
        }
        Some(Injection::Garble(Garble::HttpError(status))) => return http_error(status),
        Some(Injection::Garble(Garble::WrongDigest)) => corrupt = true,
        Some(Injection::Garble(_)) => truncate = true,
        None => {}
    }

    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let [_, folder, file_name] = segments.as_slice() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(file) = shared.catalog.lock().file(file_name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !folder.eq_ignore_ascii_case(&file.digests().content_folder()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut bytes = payload(&file.name, file.size);
    if corrupt && let Some(first) = bytes.first_mut() {
        *first ^= 0xFF;
    }
    if truncate {
        bytes.truncate(bytes.len() / 2);
    }
    let total = bytes.len() as u64;
    let octet_stream = HeaderValue::from_static("application/octet-stream");
    let accept_ranges = HeaderValue::from_static("bytes");
    match range.map_or(RangeRequest::Whole, |range| parse_range(&range, total)) {
        RangeRequest::Whole => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, octet_stream),
                (header::ACCEPT_RANGES, accept_ranges),
            ],
            Body::from(bytes),
        )
            .into_response(),
        RangeRequest::Part { start, end } => {
            let part = bytes[start as usize..=end as usize].to_vec();
            (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_TYPE, octet_stream),
                    (header::ACCEPT_RANGES, accept_ranges),
                    (
                        header::CONTENT_RANGE,
                        content_range(&format!("bytes {start}-{end}/{total}")),
                    ),
                ],
                Body::from(part),
            )
                .into_response()
        }
        RangeRequest::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(
                header::CONTENT_RANGE,
                content_range(&format!("bytes */{total}")),
            )],
        )
            .into_response(),
    }
}

fn content_range(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}
