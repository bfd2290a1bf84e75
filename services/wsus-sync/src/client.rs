//! The HTTP edge: posts one SOAP request to the upstream and returns the response body.

use std::time::Duration;

use patchbay_wsus::{Endpoint, Request, SoapVersion};

/// Why a request got no usable answer (a SOAP fault is an answer: it comes back as the body).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "the upstream did not answer {operation} within {seconds} s; check that it is up and not overloaded"
    )]
    Timeout {
        operation: &'static str,
        seconds: u64,
    },
    #[error("cannot reach the upstream at {url}: {reason}; check the URL, DNS, firewall and TLS")]
    Unreachable { url: String, reason: String },
    #[error("the upstream answered {operation} with HTTP {status}{detail}")]
    Http {
        operation: &'static str,
        status: u16,
        detail: String,
    },
    #[error("the upstream's answer to {operation} is larger than {limit} bytes; refusing it")]
    TooLarge {
        operation: &'static str,
        limit: usize,
    },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

/// An HTTP client over rustls; `configure` sets the request timeouts (a whole SOAP exchange, or
/// the gap between reads of a large download). Connecting takes at most 30 s.
pub(crate) fn http_client(
    timeout: Duration,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default TLS crypto provider; ring is the one async-nats already
    // uses. Installing fails harmlessly if another part of the process did it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    configure(reqwest::Client::builder().connect_timeout(timeout.min(Duration::from_secs(30))))
        .build()
}

/// Posts SOAP requests to one upstream server.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl UpstreamClient {
    /// A client for the server at `base_url` (ending in `/`).
    pub fn new(
        base_url: &str,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, TransportError> {
        let http = http_client(timeout, |builder| builder.timeout(timeout))
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
            timeout,
            max_response_bytes,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of a web service: the spec's path for the Server Sync service, or the DSS
    /// authorization service's path as GetAuthConfig named it.
    pub fn endpoint_url(&self, endpoint: Endpoint, auth_service_url: Option<&str>) -> String {
        match (endpoint, auth_service_url) {
            (Endpoint::DssAuth, Some(path)) if !path.is_empty() => {
                if path.starts_with("http://") || path.starts_with("https://") {
                    path.to_owned()
                } else {
                    format!("{}{}", self.base_url, path.trim_start_matches('/'))
                }
            }
            _ => format!("{}{}", self.base_url, endpoint.path()),
        }
    }

    /// Posts `request` as SOAP 1.1 and returns the body of a 200 answer, or of a 500 answer that
    /// carries a SOAP fault (the caller's parser turns it into the fault).
    pub async fn post(
        &self,
        request: &Request,
        auth_service_url: Option<&str>,
    ) -> Result<Vec<u8>, TransportError> {
        let operation = request.operation.name();
        let url = self.endpoint_url(request.operation.endpoint(), auth_service_url);
        let version = SoapVersion::Soap11;
        let sent = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                version.content_type(request.operation.soap_action()),
            )
            .header(
                "SOAPAction",
                format!("\"{}\"", request.operation.soap_action()),
            )
            .body(request.envelope(version))
            .send()
            .await;
        let mut response = sent.map_err(|e| self.transport_error(operation, &url, &e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_response_bytes {
                        return Err(TransportError::TooLarge {
                            operation,
                            limit: self.max_response_bytes,
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(operation, &url, &e)),
            }
        }
        let is_fault = status == 500 && looks_like_soap(&body);
        if status == 200 || is_fault {
            return Ok(body);
        }
        let snippet: String = String::from_utf8_lossy(&body[..body.len().min(200)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        Err(TransportError::Http {
            operation,
            status,
            detail: if snippet.is_empty() {
                String::new()
            } else {
                format!(": {snippet}")
            },
        })
    }

    fn transport_error(
        &self,
        operation: &'static str,
        url: &str,
        error: &reqwest::Error,
    ) -> TransportError {
        if error.is_timeout() {
            TransportError::Timeout {
                operation,
                seconds: self.timeout.as_secs().max(1),
            }
        } else {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            TransportError::Unreachable {
                url: url.to_owned(),
                reason,
            }
        }
    }
}

fn looks_like_soap(body: &[u8]) -> bool {
    let head = &body[..body.len().min(2048)];
    head.windows(8).any(|w| w.eq_ignore_ascii_case(b"envelope"))
}
