//! The deb822 control-file format shared by `Packages`, dpkg's `status` and `Release`: stanzas of `Field: value` lines.
//!
//! Rules (Debian Policy §5.1, as dpkg and apt read them):
//! - stanzas are separated by one or more blank lines (empty, or only spaces and tabs);
//! - a field line is `Name: value`; names are printable ASCII without spaces or colons, must not
//!   start with `#` or `-`, and are matched case-insensitively; a name may appear once per stanza;
//! - a line starting with a space or tab continues the previous field's value; it is appended
//!   after a newline with surrounding whitespace removed (so a description's ` .` stays `.`);
//! - a line starting with `#` is a comment and is ignored;
//! - a stanza with a malformed line is reported once, as a [`ParseError`] at that line, and
//!   skipped up to the next blank line; the stanzas after it are still read.
//!
//! Lines may end in `\n` or `\r\n`. Input that is not UTF-8 is read with invalid bytes replaced
//! by U+FFFD, so a stray byte in a description does not lose the package.

use std::io::{self, BufRead};
use std::path::PathBuf;

/// One `Name: value` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The value with continuation lines joined by `\n`.
    pub value: String,
    /// 1-based line number of the field's first line.
    pub line: usize,
}

/// One paragraph of fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stanza {
    /// 1-based line number of the stanza's first line.
    pub line: usize,
    pub fields: Vec<Field>,
}

impl Stanza {
    /// The field called `name`, compared case-insensitively.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// The value of the field called `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|field| field.value.as_str())
    }
}

/// A malformed stanza, or a stanza whose fields do not make a valid entry. The stanza is skipped;
/// the rest of the input is still read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}: {message}", file_prefix(.file))]
pub struct ParseError {
    /// The file being read, when known.
    pub file: Option<PathBuf>,
    /// 1-based line number of the offending line (or of the stanza's first line).
    pub line: usize,
    pub message: String,
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|path| format!("{}, ", path.display()))
        .unwrap_or_default()
}

impl ParseError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line,
            message: message.into(),
        }
    }
}

/// Parses deb822 text into stanzas, one item per stanza.
pub fn parse_stanzas(text: &str) -> Stanzas<'_> {
    Stanzas {
        lines: text.lines().enumerate(),
        assembler: Assembler::default(),
        done: false,
    }
}

/// Iterator returned by [`parse_stanzas`].
#[derive(Debug)]
pub struct Stanzas<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    assembler: Assembler,
    done: bool,
}

impl Iterator for Stanzas<'_> {
    type Item = Result<Stanza, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        for (index, line) in self.lines.by_ref() {
            if let Some(item) = self.assembler.push(index + 1, line) {
                return Some(item);
            }
        }
        self.done = true;
        self.assembler.finish()
    }
}

/// Reads stanzas from a stream one at a time, so a large index never has to be in memory whole.
///
/// Each item is an I/O error (after which the iterator ends) or one stanza's parse result.
#[derive(Debug)]
pub struct StanzaReader<R> {
    reader: R,
    buffer: Vec<u8>,
    line: usize,
    assembler: Assembler,
    done: bool,
}

impl<R: BufRead> StanzaReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buffer: Vec::new(),
            line: 0,
            assembler: Assembler::default(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for StanzaReader<R> {
    type Item = io::Result<Result<Stanza, ParseError>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Ok(0) => {
                    self.done = true;
                    return self.assembler.finish().map(Ok);
                }
                Ok(_) => {
                    self.line += 1;
                    let line = String::from_utf8_lossy(&self.buffer);
                    let line = line.strip_suffix('\n').unwrap_or(&line);
                    if let Some(item) = self.assembler.push(self.line, line) {
                        return Some(Ok(item));
                    }
                }
            }
        }
        None
    }
}

/// Builds stanzas from lines; shared by the text and the streaming front ends.
#[derive(Debug, Default)]
struct Assembler {
    stanza: Option<Stanza>,
    /// Set by the first malformed line; the stanza's remaining lines are then skipped.
    error: Option<ParseError>,
}

impl Assembler {
    /// Takes one line without its `\n`; returns a finished stanza when a blank line ends one.
    fn push(&mut self, line_no: usize, line: &str) -> Option<Result<Stanza, ParseError>> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_matches([' ', '\t']).is_empty() {
            return self.finish();
        }
        if self.error.is_some() || line.starts_with('#') {
            return None;
        }
        let stanza = self.stanza.get_or_insert_with(|| Stanza {
            line: line_no,
            fields: Vec::new(),
        });
        if let Err(message) = add_line(stanza, line_no, line) {
            self.error = Some(ParseError::new(line_no, message));
        }
        None
    }

    /// Ends the current stanza, if any, at a blank line or the end of the input.
    fn finish(&mut self) -> Option<Result<Stanza, ParseError>> {
        let stanza = self.stanza.take();
        match self.error.take() {
            Some(error) => Some(Err(error)),
            None => stanza.map(Ok),
        }
    }
}

fn add_line(stanza: &mut Stanza, line_no: usize, line: &str) -> Result<(), String> {
    if line.starts_with([' ', '\t']) {
        let Some(field) = stanza.fields.last_mut() else {
            return Err(
                "continuation line (starting with a space) before any field; the stanza was skipped"
                    .to_owned(),
            );
        };
        field.value.push('\n');
        field.value.push_str(line.trim());
        return Ok(());
    }
    let Some((name, value)) = line.split_once(':') else {
        return Err(format!(
            "line {:?} is not 'Field: value', a continuation line or a comment; the stanza was skipped",
            shorten(line)
        ));
    };
    let name_is_valid = !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name.chars().all(|c| c.is_ascii_graphic());
    if !name_is_valid {
        return Err(format!(
            "field name {:?} is not valid: names are printable ASCII without spaces and do not start with '#' or '-'; the stanza was skipped",
            shorten(name)
        ));
    }
    if let Some(first) = stanza.field(name) {
        return Err(format!(
            "field {name:?} appears twice in one stanza (first on line {}); the stanza was skipped",
            first.line
        ));
    }
    stanza.fields.push(Field {
        name: name.to_owned(),
        value: value.trim().to_owned(),
        line: line_no,
    });
    Ok(())
}

/// Keeps quoted input in error messages short.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Result<Stanza, ParseError>> {
        parse_stanzas(text).collect()
    }

    #[test]
    fn reads_fields_continuations_and_comments() {
        let text = "\
# a comment before the first stanza
Package: hello
Version: 2.10-3
Description: example package
 based on GNU hello
 .
 more text

Package: second
# a comment inside a stanza
Version: 1
";
        let stanzas: Vec<Stanza> = all(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0].line, 2);
        assert_eq!(stanzas[0].get("package"), Some("hello"));
        assert_eq!(
            stanzas[0].get("Description"),
            Some("example package\nbased on GNU hello\n.\nmore text")
        );
        assert_eq!(stanzas[0].field("Version").map(|f| f.line), Some(3));
        assert_eq!(stanzas[1].line, 9);
        assert_eq!(stanzas[1].get("Version"), Some("1"));
    }

    #[test]
    fn blank_lines_with_spaces_and_crlf_separate_stanzas() {
        let text = "A: 1\r\nB: 2\r\n \t\r\n\r\n\r\nA: 3\r\n";
        let stanzas: Vec<Stanza> = all(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0].get("B"), Some("2"));
        assert_eq!(stanzas[1].get("A"), Some("3"));
        assert_eq!(stanzas[1].line, 6);
    }

    #[test]
    fn a_malformed_stanza_is_reported_and_the_rest_is_read() {
        let text = "\
A: 1

 continuation first
B: 2

A: 1
no colon here
C: 3

A: 1
A: 2

Good: yes
";
        let items = all(text);
        assert_eq!(items.len(), 5);
        let errors: Vec<&ParseError> = items.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [3, 7, 11]
        );
        assert!(errors[0].message.contains("continuation"));
        assert!(errors[1].message.contains("no colon here"));
        assert!(errors[2].message.contains("first on line 10"));
        assert_eq!(items[0].as_ref().unwrap().get("A"), Some("1"));
        assert_eq!(items[4].as_ref().unwrap().get("Good"), Some("yes"));
    }

    #[test]
    fn invalid_field_names_are_errors() {
        for line in ["-Name: x", "Na me: x", ": x"] {
            let items = all(line);
            assert!(
                matches!(items.as_slice(), [Err(ParseError { line: 1, .. })]),
                "{line:?}"
            );
        }
    }

    #[test]
    fn stream_reader_matches_text_parser() {
        let text = "A: 1\n continued\n\nbroken\n\nB: 2";
        let from_text = all(text);
        let from_stream: Vec<_> = StanzaReader::new(text.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(from_text, from_stream);
        assert_eq!(from_text.len(), 3);
    }

    #[test]
    fn stream_reader_replaces_invalid_utf8() {
        let bytes = b"Package: x\nDescription: caf\xe9\n";
        let stanzas: Vec<_> = StanzaReader::new(&bytes[..]).map(Result::unwrap).collect();
        assert_eq!(
            stanzas[0].as_ref().unwrap().get("Description"),
            Some("caf\u{fffd}")
        );
    }

    #[test]
    fn error_display_names_file_and_line() {
        let mut error = ParseError::new(7, "bad");
        assert_eq!(error.to_string(), "line 7: bad");
        error.file = Some(PathBuf::from("/tmp/Packages"));
        assert_eq!(error.to_string(), "/tmp/Packages, line 7: bad");
    }
}
