//! Helpers shared by the integration tests: spec fixtures and an independent XML tree for comparing requests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// A spec fixture exactly as stored (see `tests/fixtures/spec/README.md`).
pub fn spec_fixture_verbatim(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spec")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Line wraps of the spec's rendering that fall inside markup (README: "Rendering artefacts").
const REPAIRS: &[(&str, &str, &str)] = &[
    (
        "get_config_data_request.xml",
        "<\n\n/EncryptedData>",
        "</EncryptedData>",
    ),
    (
        "get_update_data_response.xml",
        "</Xml\n\nUpdateBlobCompressed>",
        "</XmlUpdateBlobCompressed>",
    ),
    (
        "fault_invalid_cookie.xml",
        "InvalidCookie -\n\n->",
        "InvalidCookie -->",
    ),
    (
        "fault_invalid_cookie.xml",
        "</faultst\n\nring>",
        "</faultstring>",
    ),
    ("fault_invalid_cookie.xml", "</\n\nMethod>", "</Method>"),
];

/// Requests whose envelope the spec leaves open, and responses that carry its closing tags.
const UNCLOSED_ENVELOPES: &[&str] = &[
    "get_authorization_cookie_request.xml",
    "get_cookie_request.xml",
];
const SURPLUS_CLOSING_TAGS: &[&str] = &[
    "get_authorization_cookie_response.xml",
    "get_cookie_response.xml",
];

/// A spec fixture as a complete, well-formed message.
pub fn spec_message(name: &str) -> String {
    let mut text = spec_fixture_verbatim(name);
    for (file, broken, repaired) in REPAIRS {
        if *file == name {
            assert!(
                text.contains(broken),
                "{name} no longer contains {broken:?}"
            );
            text = text.replace(broken, repaired);
        }
    }
    if UNCLOSED_ENVELOPES.contains(&name) {
        text.push_str("</soap:Body></soap:Envelope>\n");
    }
    if SURPLUS_CLOSING_TAGS.contains(&name) {
        let end = text.rfind("</soap:Body>").unwrap();
        text.truncate(end);
    }
    text
}

/// An element with its resolved namespace, for structural comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub namespace: Option<String>,
    pub name: String,
    /// Text with all whitespace removed: base64 values arrive wrapped, the rest has none.
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> &Node {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("<{}> has no <{name}>: {self:#?}", self.name))
    }

    pub fn children_named(&self, name: &str) -> Vec<&Node> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    pub fn text_of(&self, name: &str) -> &str {
        &self.child(name).text
    }
}

/// Parses a document with namespaces resolved; comments and declarations are dropped.
pub fn parse_tree(xml: &str) -> Node {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let (namespace, event) = reader.read_resolved_event().unwrap();
        let namespace = match namespace {
            ResolveResult::Bound(ns) => Some(ns.into_inner().to_owned()),
            _ => None,
        };
        match event {
            Event::Start(e) => stack.push(Node {
                namespace,
                name: e.local_name().into_inner().to_owned(),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(e) => {
                let node = Node {
                    namespace,
                    name: e.local_name().into_inner().to_owned(),
                    text: String::new(),
                    children: Vec::new(),
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return node,
                }
            }
            Event::End(_) => {
                let node = stack.pop().unwrap();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return node,
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .extend(t.xml10_content().chars().filter(|c| !c.is_whitespace()));
                }
            }
            Event::GeneralRef(r) => {
                let resolved = quick_xml::escape::resolve_predefined_entity(&r).unwrap();
                stack.last_mut().unwrap().text.push_str(resolved);
            }
            Event::Eof => panic!("document ended early"),
            _ => {}
        }
    }
}

/// The body element of an envelope, or the document itself when it is a bare body element.
pub fn body_element(xml: &str) -> Node {
    let root = parse_tree(xml);
    if root.name == "Envelope" {
        assert!(
            root.children.iter().all(|c| c.name != "Header"),
            "requests carry no SOAP header"
        );
        let body = root.child("Body");
        assert_eq!(body.children.len(), 1, "one element in the body");
        body.children[0].clone()
    } else {
        root
    }
}
