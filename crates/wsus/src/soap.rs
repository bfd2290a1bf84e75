//! SOAP 1.1 and 1.2 envelopes, and the faults an upstream answers with (spec 2.2.9).

use std::fmt;

use crate::error::{WsusError, clip};
use crate::operation::Operation;
use crate::xml::{self, Element};

/// Namespace of SOAP 1.1 envelopes.
pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Namespace of SOAP 1.2 envelopes.
pub const SOAP12_ENVELOPE_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The SOAP version both ends agreed on out of band (spec 1.7: it is not negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SoapVersion {
    /// What WSUS and Microsoft Update speak by default.
    #[default]
    Soap11,
    Soap12,
}

impl SoapVersion {
    /// The Content-Type header for a request. SOAP 1.1 carries the action in a separate
    /// `SOAPAction` header ([`Self::soap_action_header`]); SOAP 1.2 carries it here.
    pub fn content_type(&self, action: &str) -> String {
        match self {
            SoapVersion::Soap11 => "text/xml; charset=utf-8".to_owned(),
            SoapVersion::Soap12 => {
                format!("application/soap+xml; charset=utf-8; action=\"{action}\"")
            }
        }
    }

    /// The value of the `SOAPAction` header (quoted, as SOAP 1.1 requires); none for SOAP 1.2.
    pub fn soap_action_header(&self, action: &str) -> Option<String> {
        match self {
            SoapVersion::Soap11 => Some(format!("\"{action}\"")),
            SoapVersion::Soap12 => None,
        }
    }

    /// The envelope namespace.
    pub fn namespace(&self) -> &'static str {
        match self {
            SoapVersion::Soap11 => SOAP11_ENVELOPE_NS,
            SoapVersion::Soap12 => SOAP12_ENVELOPE_NS,
        }
    }
}

/// Wraps a body element in an envelope. There is no `<soap:Header>`: spec 2.2 forbids it.
pub fn envelope(version: SoapVersion, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"{namespace}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\
         <soap:Body>{body}</soap:Body></soap:Envelope>",
        namespace = version.namespace()
    )
}

/// The application-level error codes of spec 2.2.9.3 (case-sensitive on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidParameters,
    InvalidCookie,
    InternalServerError,
    IncompatibleProtocolVersion,
    InvalidAuthorizationCookie,
    FileDigestsMissing,
    ServerChanged,
    ServerBusy,
    /// A code the spec does not define.
    Unknown(String),
}

impl ErrorCode {
    /// Reads an `<ErrorCode>` value.
    pub fn parse(text: &str) -> ErrorCode {
        match text {
            "InvalidParameters" => ErrorCode::InvalidParameters,
            "InvalidCookie" => ErrorCode::InvalidCookie,
            "InternalServerError" => ErrorCode::InternalServerError,
            "IncompatibleProtocolVersion" => ErrorCode::IncompatibleProtocolVersion,
            "InvalidAuthorizationCookie" => ErrorCode::InvalidAuthorizationCookie,
            "FileDigestsMissing" => ErrorCode::FileDigestsMissing,
            "ServerChanged" => ErrorCode::ServerChanged,
            "ServerBusy" => ErrorCode::ServerBusy,
            other => ErrorCode::Unknown(other.to_owned()),
        }
    }

    /// The code as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidParameters => "InvalidParameters",
            ErrorCode::InvalidCookie => "InvalidCookie",
            ErrorCode::InternalServerError => "InternalServerError",
            ErrorCode::IncompatibleProtocolVersion => "IncompatibleProtocolVersion",
            ErrorCode::InvalidAuthorizationCookie => "InvalidAuthorizationCookie",
            ErrorCode::FileDigestsMissing => "FileDigestsMissing",
            ErrorCode::ServerChanged => "ServerChanged",
            ErrorCode::ServerBusy => "ServerBusy",
            ErrorCode::Unknown(other) => other,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a DSS must do after a fault (spec 2.2.9.3 and 3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultReaction {
    /// Stop the protocol (also for faults without an ErrorCode).
    StopProtocol,
    /// Start over with GetAuthConfig: the cookie or authorization cookie is no longer good.
    RestartProtocol,
    /// Forget the config, sync and deployment anchors, then continue (ServerChanged).
    ResetAnchors,
    /// Back off and try again later, or stop (ServerBusy).
    RetryLater,
}

/// A SOAP fault, in SOAP 1.1 or 1.2 form, with the WSUS details of spec 2.2.9.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    /// `faultcode` (1.1) or `Code/Value` (1.2), such as "soap:Client".
    pub code: String,
    /// `faultstring` (1.1) or the first `Reason/Text` (1.2); WSUS puts a stack trace here.
    pub reason: String,
    /// `Detail/ErrorCode`; `None` when the fault has none (the DSS must then stop).
    pub error_code: Option<ErrorCode>,
    /// `Detail/Message`, when not empty.
    pub message: Option<String>,
    /// `Detail/ID`: a GUID naming this fault instance in the upstream's logs.
    pub id: Option<String>,
    /// `Detail/Method`: the SOAPAction of the failed call, surrounding quotes removed.
    pub method: Option<String>,
}

impl Fault {
    /// What the DSS must do about this fault.
    pub fn reaction(&self) -> FaultReaction {
        match &self.error_code {
            Some(ErrorCode::InvalidCookie | ErrorCode::InvalidAuthorizationCookie) => {
                FaultReaction::RestartProtocol
            }
            Some(ErrorCode::ServerChanged) => FaultReaction::ResetAnchors,
            Some(ErrorCode::ServerBusy) => FaultReaction::RetryLater,
            // InvalidParameters, InternalServerError, IncompatibleProtocolVersion and
            // FileDigestsMissing all stop the protocol; so do unknown codes and no code.
            _ => FaultReaction::StopProtocol,
        }
    }

    /// Reads a `Fault` element of either SOAP version.
    pub(crate) fn from_element(fault: &Element) -> Fault {
        let text_of = |element: Option<&Element>| {
            element
                .map(|e| e.trimmed_text().to_owned())
                .unwrap_or_default()
        };
        let (code, reason) =
            if fault.child("faultcode").is_some() || fault.child("faultstring").is_some() {
                (
                    text_of(fault.child("faultcode")),
                    text_of(fault.child("faultstring")),
                )
            } else {
                (
                    text_of(fault.child("Code").and_then(|code| code.child("Value"))),
                    text_of(
                        fault
                            .child("Reason")
                            .and_then(|reason| reason.child("Text")),
                    ),
                )
            };
        // SOAP 1.1 names it `detail`; SOAP 1.2 has the standard `Detail` and WSUS's
        // unqualified `Detail` (spec 2.2.9.2): take the one that holds the WSUS fields.
        let detail = fault
            .children
            .iter()
            .filter(|child| child.name.eq_ignore_ascii_case("detail"))
            .find(|detail| detail.child("ErrorCode").is_some())
            .or_else(|| {
                fault
                    .children
                    .iter()
                    .find(|child| child.name.eq_ignore_ascii_case("detail"))
            });
        let detail_text = |name: &str| {
            detail
                .and_then(|detail| detail.child(name))
                .map(|element| element.trimmed_text())
                .filter(|text| !text.is_empty())
        };
        Fault {
            code,
            reason,
            error_code: detail_text("ErrorCode").map(ErrorCode::parse),
            message: detail_text("Message").map(str::to_owned),
            id: detail_text("ID").map(str::to_owned),
            method: detail_text("Method").map(|method| method.trim_matches('"').to_owned()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_code {
            Some(code) => write!(f, "the upstream answered with fault {code}")?,
            None => write!(f, "the upstream answered with a fault without ErrorCode")?,
        }
        write!(
            f,
            " ({}",
            if self.code.is_empty() {
                "no faultcode"
            } else {
                &self.code
            }
        )?;
        if let Some(method) = &self.method {
            write!(f, ", method {method}")?;
        }
        if let Some(id) = &self.id {
            write!(f, ", fault ID {id}")?;
        }
        f.write_str(")")?;
        match (&self.message, self.reason.is_empty()) {
            (Some(message), _) => write!(f, ": {message}")?,
            (None, false) => {
                // WSUS puts a wrapped stack trace here; one line of it is enough for a log.
                let reason: Vec<&str> = self.reason.split_whitespace().collect();
                write!(f, ": {}", clip(&reason.join(" "), 200))?;
            }
            (None, true) => {}
        }
        let advice = match self.reaction() {
            FaultReaction::StopProtocol => "the sync must stop",
            FaultReaction::RestartProtocol => "the sync must restart from authorization",
            FaultReaction::ResetAnchors => "the sync must reset its anchors and continue",
            FaultReaction::RetryLater => "retry later",
        };
        write!(f, "; {advice}")
    }
}

/// The body of an answer as text.
pub(crate) fn response_text(operation: Operation, body: &[u8]) -> Result<&str, WsusError> {
    xml::utf8_text(body).map_err(|source| WsusError::Xml {
        operation: operation.name(),
        source,
    })
}

/// The operation's response element from an answer, or the fault it carries.
///
/// Accepts a SOAP 1.1 or 1.2 envelope, and also a bare response element or fault without an
/// envelope, as the spec's samples show them.
pub(crate) fn response_element(operation: Operation, text: &str) -> Result<Element, WsusError> {
    let root = xml::parse_document(text).map_err(|source| WsusError::Xml {
        operation: operation.name(),
        source,
    })?;
    let content = if root.name == "Envelope" {
        let body = root
            .children
            .into_iter()
            .find(|child| child.name == "Body")
            .ok_or(WsusError::Missing {
                operation: operation.name(),
                element: "Body",
            })?;
        body.children.into_iter().next().ok_or(WsusError::Missing {
            operation: operation.name(),
            element: operation.response_element(),
        })?
    } else {
        root
    };
    if content.name == "Fault" {
        return Err(WsusError::Fault(Fault::from_element(&content)));
    }
    if content.name != operation.response_element() {
        return Err(WsusError::UnexpectedElement {
            operation: operation.name(),
            expected: operation.response_element(),
            found: content.name,
        });
    }
    Ok(content)
}

/// The operation's result element (`<XxxResult>`) from an answer's body.
pub(crate) fn result_element(operation: Operation, body: &[u8]) -> Result<Element, WsusError> {
    let response = response_element(operation, response_text(operation, body)?)?;
    take_result(operation, response)
}

/// Moves the result element out of a response element.
pub(crate) fn take_result(operation: Operation, response: Element) -> Result<Element, WsusError> {
    response
        .children
        .into_iter()
        .find(|child| child.name == operation.result_element())
        .ok_or(WsusError::Missing {
            operation: operation.name(),
            element: operation.result_element(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault_of(body: &str) -> Fault {
        match response_element(Operation::GetCookie, body) {
            Err(WsusError::Fault(fault)) => fault,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn soap12_faults_use_the_unqualified_detail() {
        let fault = fault_of(
            r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>
                <env:Fault>
                  <env:Code><env:Value>env:Receiver</env:Value></env:Code>
                  <env:Reason><env:Text xml:lang="en">Server was unable to process request.</env:Text></env:Reason>
                  <env:Detail/>
                  <Detail><ErrorCode>ServerBusy</ErrorCode><Message>try later</Message><ID>6f4e36c7-46c4-4b3e-9f3b-8f35f9a0e2a1</ID></Detail>
                </env:Fault>
              </env:Body></env:Envelope>"#,
        );
        assert_eq!(fault.code, "env:Receiver");
        assert_eq!(fault.reason, "Server was unable to process request.");
        assert_eq!(fault.error_code, Some(ErrorCode::ServerBusy));
        assert_eq!(fault.message.as_deref(), Some("try later"));
        assert_eq!(
            fault.id.as_deref(),
            Some("6f4e36c7-46c4-4b3e-9f3b-8f35f9a0e2a1")
        );
        assert_eq!(fault.reaction(), FaultReaction::RetryLater);
        assert!(fault.to_string().contains("ServerBusy"), "{fault}");
    }

    #[test]
    fn faults_without_an_error_code_stop_the_protocol() {
        let fault = fault_of(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
                 <faultcode>soap:Server</faultcode><faultstring>Object reference not set</faultstring>
               </soap:Fault></soap:Body></soap:Envelope>"#,
        );
        assert_eq!(fault.code, "soap:Server");
        assert_eq!(fault.error_code, None);
        assert_eq!(fault.reaction(), FaultReaction::StopProtocol);
        let shown = fault.to_string();
        assert!(
            shown.contains("without ErrorCode") && shown.contains("must stop"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_error_codes_are_kept() {
        let fault = fault_of(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
                 <faultcode>soap:Client</faultcode><faultstring>x</faultstring>
                 <detail><ErrorCode>QuotaExceeded</ErrorCode><Message/><ID>1</ID></detail>
               </soap:Fault></soap:Body></soap:Envelope>"#,
        );
        assert_eq!(
            fault.error_code,
            Some(ErrorCode::Unknown("QuotaExceeded".into()))
        );
        assert_eq!(fault.message, None);
        assert_eq!(fault.reaction(), FaultReaction::StopProtocol);
        assert_eq!(
            ErrorCode::parse("invalidcookie"),
            ErrorCode::Unknown("invalidcookie".into())
        );
    }

    #[test]
    fn reactions_follow_the_spec_table() {
        let reaction = |code: &str| {
            Fault {
                error_code: Some(ErrorCode::parse(code)),
                ..Fault::default()
            }
            .reaction()
        };
        assert_eq!(reaction("InvalidCookie"), FaultReaction::RestartProtocol);
        assert_eq!(
            reaction("InvalidAuthorizationCookie"),
            FaultReaction::RestartProtocol
        );
        assert_eq!(reaction("ServerChanged"), FaultReaction::ResetAnchors);
        assert_eq!(reaction("InternalServerError"), FaultReaction::StopProtocol);
        assert_eq!(
            reaction("IncompatibleProtocolVersion"),
            FaultReaction::StopProtocol
        );
        for code in [
            "InvalidParameters",
            "InvalidCookie",
            "InternalServerError",
            "IncompatibleProtocolVersion",
            "InvalidAuthorizationCookie",
            "FileDigestsMissing",
            "ServerChanged",
            "ServerBusy",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
    }

    #[test]
    fn envelopes_have_no_header_and_carry_the_version() {
        let soap11 = envelope(SoapVersion::Soap11, "<GetAuthConfig/>");
        assert!(soap11.contains(SOAP11_ENVELOPE_NS) && !soap11.contains("Header"));
        assert!(envelope(SoapVersion::Soap12, "<X/>").contains(SOAP12_ENVELOPE_NS));
        let action = Operation::GetCookie.soap_action();
        assert_eq!(
            SoapVersion::Soap11.content_type(action),
            "text/xml; charset=utf-8"
        );
        assert_eq!(
            SoapVersion::Soap11.soap_action_header(action).as_deref(),
            Some("\"http://www.microsoft.com/SoftwareDistribution/GetCookie\"")
        );
        assert_eq!(
            SoapVersion::Soap12.content_type(action),
            "application/soap+xml; charset=utf-8; action=\"http://www.microsoft.com/SoftwareDistribution/GetCookie\""
        );
        assert_eq!(SoapVersion::Soap12.soap_action_header(action), None);
    }

    #[test]
    fn the_body_must_hold_the_operations_response() {
        let wrong = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetConfigDataResponse/></s:Body></s:Envelope>"#;
        assert!(matches!(
            response_element(Operation::GetCookie, wrong),
            Err(WsusError::UnexpectedElement { found, .. }) if found == "GetConfigDataResponse"
        ));
        let no_body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>"#;
        assert!(matches!(
            response_element(Operation::GetCookie, no_body),
            Err(WsusError::Missing {
                element: "Body",
                ..
            })
        ));
        let html = "<html><body>502 Bad Gateway</body></html>";
        assert!(matches!(
            response_element(Operation::GetCookie, html),
            Err(WsusError::UnexpectedElement { found, .. }) if found == "html"
        ));
    }
}
