//! SOAP 1.1/1.2 plumbing: parsing request envelopes into a small namespace-aware tree, writing envelopes and faults.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use thiserror::Error;

/// SOAP 1.1 envelope namespace.
pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_ENVELOPE_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

const MAX_DEPTH: usize = 64;

/// Which SOAP binding a request used; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1: `text/xml` with a `SOAPAction` header.
    Soap11,
    /// SOAP 1.2: `application/soap+xml; action="..."`.
    Soap12,
}

impl SoapVersion {
    fn envelope_namespace(self) -> &'static str {
        match self {
            Self::Soap11 => SOAP11_ENVELOPE_NS,
            Self::Soap12 => SOAP12_ENVELOPE_NS,
        }
    }

    /// The `Content-Type` of answers.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Soap11 => "text/xml; charset=utf-8",
            Self::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// An element of a parsed request: namespace, local name, text and child elements.
#[derive(Debug, Clone, Default)]
pub(crate) struct XmlElement {
    pub namespace: String,
    pub name: String,
    pub text: String,
    pub children: Vec<XmlElement>,
}

impl XmlElement {
    /// The first child called `name` in `namespace`.
    pub fn child(&self, namespace: &str, name: &str) -> Option<&XmlElement> {
        self.children
            .iter()
            .find(|child| child.name == name && child.namespace == namespace)
    }

    /// All children called `name` in `namespace`.
    pub fn children_named<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a XmlElement> + 'a {
        self.children
            .iter()
            .filter(move |child| child.name == name && child.namespace == namespace)
    }

    /// The trimmed text of the child `name`, if present.
    pub fn child_text(&self, namespace: &str, name: &str) -> Option<&str> {
        self.child(namespace, name).map(|child| child.text.trim())
    }
}

/// Why a request body is not usable XML.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// ASP.NET's reader prohibits DTDs; so do we (no entity expansion, no billion laughs).
    #[error("For security reasons DTD is prohibited in this XML document.")]
    DoctypeProhibited,
    /// Not well-formed.
    #[error("There is an error in the XML document: {0}")]
    Malformed(String),
}

/// Parses a whole document into its root element.
pub(crate) fn parse_document(text: &str) -> Result<XmlElement, XmlError> {
    let malformed = |message: String| XmlError::Malformed(message);
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<XmlElement> = Vec::new();
    let mut root: Option<XmlElement> = None;
    loop {
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|error| malformed(error.to_string()))?;
        let namespace = match namespace {
            ResolveResult::Bound(namespace) => namespace.into_inner().to_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(malformed(format!("undeclared namespace prefix {prefix:?}")));
            }
        };
        let self_closing = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let element = XmlElement {
                    namespace,
                    name: start.local_name().into_inner().to_owned(),
                    ..XmlElement::default()
                };
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed("elements nested too deeply".to_owned()));
                }
                stack.push(element);
                if self_closing {
                    close_element(&mut stack, &mut root)?;
                }
            }
            Event::End(_) => close_element(&mut stack, &mut root)?,
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(cdata) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&cdata.into_inner());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference
                    .resolve_char_ref()
                    .map_err(|error| malformed(error.to_string()))?
                {
                    Some(character) => character,
                    None => match reference.xml10_content().as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(malformed(format!("undefined entity &{other};"))),
                    },
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(resolved);
                }
            }
            Event::DocType(_) => return Err(XmlError::DoctypeProhibited),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unexpected end of document".to_owned()));
    }
    root.ok_or_else(|| malformed("no root element".to_owned()))
}

fn close_element(
    stack: &mut Vec<XmlElement>,
    root: &mut Option<XmlElement>,
) -> Result<(), XmlError> {
    let element = stack
        .pop()
        .ok_or_else(|| XmlError::Malformed("unbalanced end tag".to_owned()))?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err(XmlError::Malformed("more than one root element".to_owned())),
    }
    Ok(())
}

/// The operation element: the first element inside `Envelope/Body` of the given SOAP version.
pub(crate) fn body_operation(
    document: &XmlElement,
    version: SoapVersion,
) -> Result<&XmlElement, SoapFault> {
    let envelope_ns = version.envelope_namespace();
    if document.name != "Envelope" || document.namespace != envelope_ns {
        return Err(SoapFault::version_mismatch(format!(
            "Possible SOAP version mismatch: Envelope namespace {:?} was unexpected. Expecting {envelope_ns}.",
            document.namespace
        )));
    }
    document
        .child(envelope_ns, "Body")
        .and_then(|body| body.children.first())
        .ok_or_else(|| SoapFault::client(None, "The SOAP Body holds no operation element."))
}

/// A SOAP fault to send (MS-WSUSSS 2.2.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `faultcode`: "Client", "Server" or "VersionMismatch" (prefixed on output).
    pub code: &'static str,
    /// The `ErrorCode` detail; `None` = a fault with an empty detail, which makes a DSS stop.
    pub error_code: Option<String>,
    /// `faultstring` and the detail `Message`.
    pub message: String,
    /// The SOAPAction of the failing method, for the detail `Method`.
    pub method: Option<String>,
}

impl SoapFault {
    /// A `soap:Client` fault.
    pub fn client(error_code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            code: "Client",
            error_code: error_code.map(str::to_owned),
            message: message.into(),
            method: None,
        }
    }

    /// A fault for an application `ErrorCode` (MS-WSUSSS 2.2.9.3).
    pub fn error(error_code: &str, message: impl Into<String>) -> Self {
        let server_side = matches!(error_code, "InternalServerError" | "ServerBusy");
        Self {
            code: if server_side { "Server" } else { "Client" },
            ..Self::client(Some(error_code), message)
        }
    }

    fn version_mismatch(message: String) -> Self {
        Self {
            code: "VersionMismatch",
            ..Self::client(None, message)
        }
    }

    /// Renders the whole fault envelope.
    pub(crate) fn to_envelope(&self, version: SoapVersion) -> String {
        let mut detail = String::new();
        if let Some(error_code) = &self.error_code {
            let _ = write!(
                detail,
                "<ErrorCode>{}</ErrorCode><Message>{}</Message><ID>{}</ID>",
                escape_text(error_code),
                escape_text(&self.message),
                uuid::Uuid::new_v4()
            );
            if let Some(method) = &self.method {
                let _ = write!(detail, "<Method>\"{}\"</Method>", escape_text(method));
            }
        }
        let reason = format!(
            "System.Web.Services.Protocols.SoapException: {}",
            self.message
        );
        let fault = match version {
            SoapVersion::Soap11 => format!(
                "<soap:Fault><faultcode>soap:{}</faultcode><faultstring>{}</faultstring><detail>{detail}</detail></soap:Fault>",
                self.code,
                escape_text(&reason)
            ),
            SoapVersion::Soap12 => {
                let code = match self.code {
                    "Client" => "Sender",
                    "Server" => "Receiver",
                    other => other,
                };
                // MS-WSUSSS 2.2.9.2: a child "Detail" with no namespace holds ErrorCode, Message, ID.
                format!(
                    "<soap:Fault><soap:Code><soap:Value>soap:{code}</soap:Value></soap:Code><soap:Reason>\
                     <soap:Text xml:lang=\"en\">{}</soap:Text></soap:Reason><Detail>{detail}</Detail></soap:Fault>",
                    escape_text(&reason)
                )
            }
        };
        envelope(version, &fault)
    }
}

/// Wraps body content in a SOAP envelope of `version`.
pub(crate) fn envelope(version: SoapVersion, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\
         <soap:Body>{body}</soap:Body></soap:Envelope>",
        version.envelope_namespace()
    )
}

/// Escapes text content (`&`, `<`, `>`).
pub(crate) fn escape_text(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Escapes an attribute value (`&`, `<`, `>`, `"`).
pub(crate) fn escape_attribute(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, quotes: bool) -> Cow<'_, str> {
    let mut escaped: Option<String> = None;
    let mut copied_up_to = 0;
    for (index, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if quotes => "&quot;",
            _ => continue,
        };
        let out = escaped.get_or_insert_with(|| String::with_capacity(text.len() + text.len() / 4));
        // `index` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&text[copied_up_to..index]);
        out.push_str(replacement);
        copied_up_to = index + 1;
    }
    match escaped {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied_up_to..]);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_entities_and_nesting() {
        let document = parse_document(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <Op xmlns=\"urn:x\"><a>1 &amp; &#50;<![CDATA[<3>]]></a><b/></Op></s:Body></s:Envelope>",
        )
        .expect("well-formed");
        let op = body_operation(&document, SoapVersion::Soap11).expect("op");
        assert_eq!((op.namespace.as_str(), op.name.as_str()), ("urn:x", "Op"));
        assert_eq!(op.child_text("urn:x", "a"), Some("1 & 2<3>"));
        assert!(op.child("urn:x", "b").is_some());
        assert!(op.child("", "b").is_none());
    }

    #[test]
    fn refuses_doctype_and_broken_xml() {
        assert_eq!(
            parse_document("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>").err(),
            Some(XmlError::DoctypeProhibited)
        );
        assert!(parse_document("<x><y></x>").is_err());
        assert!(parse_document("<x>&nope;</x>").is_err());
        assert!(parse_document("<x/><y/>").is_err());
        assert!(parse_document("<p:x/>").is_err());
    }

    #[test]
    fn wrong_envelope_version_is_a_version_mismatch() {
        let document = parse_document(
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><Op/></s:Body></s:Envelope>",
        )
        .expect("well-formed");
        let fault = body_operation(&document, SoapVersion::Soap11).expect_err("1.1 expected");
        assert_eq!(fault.code, "VersionMismatch");
    }

    #[test]
    fn fault_detail_has_the_spec_children() {
        let mut fault = SoapFault::error("InvalidCookie", "cookie expired");
        fault.method = Some("http://www.microsoft.com/SoftwareDistribution/GetConfigData".into());
        let xml = fault.to_envelope(SoapVersion::Soap11);
        assert!(xml.contains("<faultcode>soap:Client</faultcode>"));
        assert!(xml.contains(
            "<detail><ErrorCode>InvalidCookie</ErrorCode><Message>cookie expired</Message><ID>"
        ));
        assert!(xml.contains(
            "<Method>\"http://www.microsoft.com/SoftwareDistribution/GetConfigData\"</Method>"
        ));
        let bare = SoapFault::client(None, "x").to_envelope(SoapVersion::Soap12);
        assert!(
            bare.contains("<soap:Value>soap:Sender</soap:Value>")
                && bare.contains("<Detail></Detail>")
        );
    }
}
