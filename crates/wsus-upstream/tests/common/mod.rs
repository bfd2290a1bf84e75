//! Test helpers: a minimal HTTP/1.1 client over TcpStream, SOAP request builders and a DSS-side authorization sequence.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Read as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use patchbay_wsus_upstream::{DSS_AUTH_NS, FakeUpstream, SERVER_SYNC_NS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub const SERVER_SYNC_PATH: &str = "/ServerSyncWebService/ServerSyncWebService.asmx";
pub const DSS_AUTH_PATH: &str = "/DssAuthWebService/DssAuthWebService.asmx";
pub const DSS_GUID: &str = "ADB2FE48-0B2E-451e-8FC8-44B29845B0C6";

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The detail ErrorCode of a fault, if any.
    pub fn error_code(&self) -> Option<String> {
        between(&self.text(), "<ErrorCode>", "</ErrorCode>").map(str::to_owned)
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub async fn http(
    base_url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let authority = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A SOAP 1.1 request body: `<op xmlns="ns">inner</op>` in an envelope.
pub fn soap11_envelope(namespace: &str, operation: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\
         <soap:Body><{operation} xmlns=\"{namespace}\">{inner}</{operation}></soap:Body></soap:Envelope>"
    )
}

/// Posts a SOAP 1.1 ServerSync (or DssAuth for GetAuthorizationCookie) call.
pub async fn call(server: &FakeUpstream, operation: &str, inner: &str) -> HttpResponse {
    let (namespace, path) = if operation == "GetAuthorizationCookie" {
        (DSS_AUTH_NS, DSS_AUTH_PATH)
    } else {
        (SERVER_SYNC_NS, SERVER_SYNC_PATH)
    };
    let action = format!("\"{namespace}/{operation}\"");
    let body = soap11_envelope(namespace, operation, inner);
    http(
        &server.url(),
        "POST",
        path,
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("SOAPAction", &action),
        ],
        body.as_bytes(),
    )
    .await
}

/// The text between the first `start` and the following `end`.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// Every text between `start` and `end`.
pub fn all_between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(from) = rest.find(start) {
        let after = &rest[from + start.len()..];
        let Some(to) = after.find(end) else { break };
        found.push(&after[..to]);
        rest = &after[to + end.len()..];
    }
    found
}

/// GetAuthorizationCookie's CookieData for `DSS_GUID`.
pub async fn authorization_cookie(server: &FakeUpstream) -> String {
    let response = call(
        server,
        "GetAuthorizationCookie",
        &format!(
            "<accountName>dss01.contoso.example</accountName><accountGuid>{DSS_GUID}</accountGuid>"
        ),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    between(&response.text(), "<CookieData>", "</CookieData>")
        .expect("CookieData")
        .to_owned()
}

pub fn get_cookie_body(cookie_data: &str, protocol_version: &str) -> String {
    format!(
        "<authCookies><AuthorizationCookie><PlugInId>DssTargeting</PlugInId><CookieData>{cookie_data}</CookieData>\
         </AuthorizationCookie></authCookies><protocolVersion>{protocol_version}</protocolVersion>"
    )
}

/// The whole authorization phase; returns the `<cookie>` element to put in later calls.
pub async fn authorize(server: &FakeUpstream) -> String {
    let config = call(server, "GetAuthConfig", "").await;
    assert_eq!(config.status, 200);
    let cookie_data = authorization_cookie(server).await;
    let response = call(server, "GetCookie", &get_cookie_body(&cookie_data, "1.20")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    format!(
        "<cookie><Expiration>{}</Expiration><EncryptedData>{}</EncryptedData></cookie>",
        between(&text, "<Expiration>", "</Expiration>").expect("Expiration"),
        between(&text, "<EncryptedData>", "</EncryptedData>").expect("EncryptedData")
    )
}

/// A GetRevisionIdList filter.
pub fn filter(
    get_config: bool,
    anchor: Option<&str>,
    categories: &[(&str, bool)],
    classifications: &[(&str, bool)],
) -> String {
    let list = |name: &str, entries: &[(&str, bool)]| {
        if entries.is_empty() {
            return String::new();
        }
        let items: String = entries
            .iter()
            .map(|(id, delta)| {
                format!("<IdAndDelta><Id>{id}</Id><Delta>{delta}</Delta></IdAndDelta>")
            })
            .collect();
        format!("<{name}>{items}</{name}>")
    };
    format!(
        "<filter>{}<GetConfig>{get_config}</GetConfig><Get63LanguageOnly>false</Get63LanguageOnly>{}{}</filter>",
        anchor
            .map(|anchor| format!("<Anchor>{anchor}</Anchor>"))
            .unwrap_or_default(),
        list("Categories", categories),
        list("Classifications", classifications),
    )
}

/// GetRevisionIdList → (anchor, [(update id, revision)]).
pub async fn revision_ids(
    server: &FakeUpstream,
    cookie: &str,
    filter: &str,
) -> (String, Vec<(String, u32)>) {
    let response = call(server, "GetRevisionIdList", &format!("{cookie}{filter}")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let anchor = between(&text, "<Anchor>", "</Anchor>")
        .expect("Anchor")
        .to_owned();
    let ids = all_between(&text, "<UpdateIdentity>", "</UpdateIdentity>")
        .into_iter()
        .map(|identity| {
            (
                between(identity, "<UpdateID>", "</UpdateID>")
                    .expect("UpdateID")
                    .to_owned(),
                between(identity, "<RevisionNumber>", "</RevisionNumber>")
                    .and_then(|n| n.parse().ok())
                    .expect("RevisionNumber"),
            )
        })
        .collect();
    (anchor, ids)
}

pub fn update_ids_body(cookie: &str, ids: &[(String, u32)]) -> String {
    let identities: String = ids
        .iter()
        .map(|(id, revision)| {
            format!("<UpdateIdentity><UpdateID>{id}</UpdateID><RevisionNumber>{revision}</RevisionNumber></UpdateIdentity>")
        })
        .collect();
    format!("{cookie}<updateIds>{identities}</updateIds>")
}

/// One update of a GetUpdateData answer.
#[derive(Debug)]
pub struct ReceivedUpdate {
    pub update_id: String,
    pub revision_number: u32,
    pub compressed: bool,
    pub xml: String,
    pub file_digests: Vec<String>,
}

/// Decodes an XmlUpdateBlobCompressed value: base64 → CAB → "blob" → UTF-16LE with BOM.
pub fn decode_compressed_blob(base64: &str) -> std::io::Result<String> {
    let cab_bytes = BASE64.decode(base64).map_err(std::io::Error::other)?;
    let mut cabinet = cab::Cabinet::new(Cursor::new(cab_bytes))?;
    let mut bytes = Vec::new();
    cabinet.read_file("blob")?.read_to_end(&mut bytes)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let (bom, rest) = units
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty"))?;
    assert_eq!(*bom, 0xFEFF, "UTF-16LE byte order mark");
    String::from_utf16(rest).map_err(std::io::Error::other)
}

/// Parses a GetUpdateData answer.
pub fn parse_update_data(text: &str) -> (Vec<ReceivedUpdate>, Vec<(String, String)>) {
    let updates = all_between(text, "<ServerSyncUpdateData>", "</ServerSyncUpdateData>")
        .into_iter()
        .map(|entry| {
            let compressed_blob = between(
                entry,
                "<XmlUpdateBlobCompressed>",
                "</XmlUpdateBlobCompressed>",
            );
            let xml = match compressed_blob {
                Some(blob) => decode_compressed_blob(blob).expect("decodable cabinet"),
                None => quick_xml::escape::unescape(
                    between(entry, "<XmlUpdateBlob>", "</XmlUpdateBlob>").expect("blob"),
                )
                .expect("escaped XML")
                .into_owned(),
            };
            ReceivedUpdate {
                update_id: between(entry, "<UpdateID>", "</UpdateID>")
                    .expect("id")
                    .to_owned(),
                revision_number: between(entry, "<RevisionNumber>", "</RevisionNumber>")
                    .and_then(|n| n.parse().ok())
                    .expect("revision"),
                compressed: compressed_blob.is_some(),
                xml,
                file_digests: all_between(entry, "<base64Binary>", "</base64Binary>")
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect();
    let urls = all_between(text, "<ServerSyncUrlData>", "</ServerSyncUrlData>")
        .into_iter()
        .map(|entry| {
            (
                between(entry, "<FileDigest>", "</FileDigest>")
                    .expect("FileDigest")
                    .to_owned(),
                between(entry, "<MUUrl>", "</MUUrl>")
                    .expect("MUUrl")
                    .to_owned(),
            )
        })
        .collect();
    (updates, urls)
}
