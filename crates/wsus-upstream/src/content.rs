//! Deterministic content-file payloads, their SHA-1/SHA-256 digests, content folder names and HTTP byte ranges.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// The bytes the fake upstream serves for a content file: a pseudo-random stream seeded from the
/// file name, `size` bytes long. The same name and size always give the same bytes.
pub fn payload(file_name: &str, size: u64) -> Vec<u8> {
    let seed_bytes = Sha256::digest(file_name.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&seed_bytes[..8]);
    let mut state = u64::from_le_bytes(seed) | 1;
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (len - bytes.len()).min(8);
        bytes.extend_from_slice(&word[..take]);
    }
    bytes
}

/// The digests update metadata gives for a content file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// SHA-1 of the content: the `Digest` attribute and the `FileDigest` of the protocol.
    pub sha1: [u8; 20],
    /// SHA-256 of the content: the `AdditionalDigest Algorithm="SHA256"` element.
    pub sha256: [u8; 32],
}

impl FileDigests {
    /// Digests of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha1: Sha1::digest(bytes).into(),
            sha256: Sha256::digest(bytes).into(),
        }
    }

    /// The SHA-1 in base64, as in metadata and in `FileDigestList`.
    pub fn sha1_base64(&self) -> String {
        BASE64.encode(self.sha1)
    }

    /// The SHA-256 in base64, as in `AdditionalDigest`.
    pub fn sha256_base64(&self) -> String {
        BASE64.encode(self.sha256)
    }

    /// The content folder: the last two hexadecimal digits of the SHA-1, upper case (MS-WSUSSS
    /// 2.1). Section 3.2.4.4 says "the last two characters of the FileDigest represented in
    /// Base64" instead; we follow section 2.1, as real servers do, and the content route accepts
    /// the hex folder in either case.
    pub fn content_folder(&self) -> String {
        format!("{:02X}", self.sha1[19])
    }
}

/// What a `Range` request header asks for, against a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single byte range: serve the whole body with 200.
    Whole,
    /// Serve `start..=end` with 206.
    Part {
        /// First byte, inclusive.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// A byte range this body cannot satisfy: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header (RFC 7233) for a body of `len` bytes. Only a single `bytes=` range
/// is honoured; other units and multi-range requests get the whole body.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let parse = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(suffix) if suffix > 0 && len > 0 => RangeRequest::Part {
                start: len.saturating_sub(suffix),
                end: len - 1,
            },
            _ => RangeRequest::Unsatisfiable,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(first) {
            Some(start) if start < len => RangeRequest::Part {
                start,
                end: len - 1,
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end && start < len => RangeRequest::Part {
                start,
                end: end.min(len - 1),
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (true, true) => RangeRequest::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_sized() {
        assert_eq!(payload("a.cab", 1000), payload("a.cab", 1000));
        assert_ne!(payload("a.cab", 64), payload("b.cab", 64));
        assert_eq!(payload("a.cab", 13).len(), 13);
        assert!(payload("a.cab", 0).is_empty());
    }

    #[test]
    fn content_folder_is_the_last_sha1_byte_in_hex() {
        let digests = FileDigests::of(b"abc");
        // SHA-1("abc") = a9993e36...9cd0d89d
        assert_eq!(digests.content_folder(), "9D");
        assert_eq!(digests.sha1_base64(), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(
            parse_range("bytes=95-200", 100),
            Part { start: 95, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=x-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
    }
}
