//! A small hardened XML reader for SOAP bodies: refuses DTDs and unknown entities, caps depth, keeps source spans.

use std::ops::Range;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::error::MalformedXml;

/// Deepest element nesting accepted; SOAP answers are about 10 deep, update metadata about 30.
pub(crate) const MAX_DEPTH: usize = 256;

/// One element of a parsed SOAP body, named by its local name (prefixes and namespaces are
/// dropped: the element names of this protocol are unambiguous, and the spec's own samples are
/// inconsistent about namespaces).
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) children: Vec<Element>,
    /// The element's own character data, entities resolved; pieces split by comments or CDATA
    /// sections are concatenated (the spec's samples trim base64 values with comments).
    pub(crate) text: String,
    /// Byte range of the content between the start and end tags in the source document.
    pub(crate) inner: Range<usize>,
}

impl Element {
    /// The first child element with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    /// The child elements with this local name, in document order.
    pub(crate) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The character data without surrounding whitespace.
    pub(crate) fn trimmed_text(&self) -> &str {
        self.text.trim()
    }

    /// Neither child elements nor text: an `xsi:nil` array entry or an empty element.
    pub(crate) fn is_empty(&self) -> bool {
        self.children.is_empty() && self.trimmed_text().is_empty()
    }
}

/// Interprets a body as UTF-8 text, skipping a byte-order mark.
pub(crate) fn utf8_text(bytes: &[u8]) -> Result<&str, MalformedXml> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| MalformedXml::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Parses a whole document into its root element.
pub(crate) fn parse_document(source: &str) -> Result<Element, MalformedXml> {
    let mut reader = Reader::from_str(source);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = offset(reader.buffer_position());
        let event = reader
            .read_event()
            .map_err(|error| syntax(&reader, error))?;
        match event {
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(MalformedXml::TooDeep {
                        limit: MAX_DEPTH,
                        position: before as u64,
                    });
                }
                let content_start = offset(reader.buffer_position());
                open.push(element(&start, content_start..content_start));
            }
            Event::Empty(start) => {
                let end = offset(reader.buffer_position());
                attach(&mut open, &mut root, element(&start, end..end), before)?;
            }
            Event::End(_) => {
                // check_end_names (on by default) guarantees the end tag matches the open element.
                let Some(mut finished) = open.pop() else {
                    return Err(MalformedXml::Syntax {
                        position: before as u64,
                        reason: "end tag without a start tag".into(),
                    });
                };
                finished.inner.end = before;
                attach(&mut open, &mut root, finished, before)?;
            }
            Event::Text(text) => match open.last_mut() {
                Some(current) => current.text.push_str(&text.xml10_content()),
                None if text.trim().is_empty() => {}
                None => return Err(outside_root(before)),
            },
            Event::CData(data) => match open.last_mut() {
                Some(current) => current.text.push_str(&data.xml10_content()),
                None => return Err(outside_root(before)),
            },
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference, before as u64)?;
                match open.last_mut() {
                    Some(current) => current.text.push_str(&resolved),
                    None => return Err(outside_root(before)),
                }
            }
            Event::DocType(_) => {
                return Err(MalformedXml::DocType {
                    position: before as u64,
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(MalformedXml::Truncated {
            element: unclosed.name.clone(),
        });
    }
    root.ok_or(MalformedXml::NoRoot)
}

/// The text an entity or character reference stands for; anything but the five predefined
/// entities and character references is refused (no DTD can define more).
pub(crate) fn resolve_reference(
    reference: &BytesRef<'_>,
    position: u64,
) -> Result<String, MalformedXml> {
    let unknown = || MalformedXml::UnknownEntity {
        name: reference.to_string(),
        position,
    };
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(character)) => Ok(character.to_string()),
            _ => Err(unknown()),
        };
    }
    resolve_predefined_entity(reference)
        .map(str::to_owned)
        .ok_or_else(unknown)
}

/// A quick-xml error with the position it happened at.
pub(crate) fn syntax(reader: &Reader<&[u8]>, error: quick_xml::Error) -> MalformedXml {
    MalformedXml::Syntax {
        position: reader.error_position(),
        reason: error.to_string(),
    }
}

fn element(start: &BytesStart<'_>, inner: Range<usize>) -> Element {
    Element {
        name: start.local_name().into_inner().to_owned(),
        inner,
        ..Element::default()
    }
}

fn attach(
    open: &mut [Element],
    root: &mut Option<Element>,
    finished: Element,
    position: usize,
) -> Result<(), MalformedXml> {
    match open.last_mut() {
        Some(parent) => parent.children.push(finished),
        None if root.is_none() => *root = Some(finished),
        None => {
            return Err(MalformedXml::Syntax {
                position: position as u64,
                reason: "a second root element follows the first".into(),
            });
        }
    }
    Ok(())
}

fn outside_root(position: usize) -> MalformedXml {
    MalformedXml::Syntax {
        position: position as u64,
        reason: "character data outside the root element".into(),
    }
}

fn offset(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// Escapes text for an element's content or an attribute value.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// Appends `<name>text</name>`, escaping the text.
pub(crate) fn push_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}
