//! XmlUpdateBlobCompressed: a one-file CAB archive (LZX, 2 MB window) holding UTF-16 metadata XML.

use std::io::{Cursor, Read as _};
use std::panic::{self, AssertUnwindSafe};

use cab::Cabinet;

/// Default cap on one decompressed blob. Real metadata is 5–50 KB; the biggest driver and
/// cumulative-update blobs stay below a few MB.
pub const DEFAULT_MAX_BLOB_BYTES: usize = 32 * 1024 * 1024;

/// Size of a CAB's fixed header (CFHEADER without the optional fields).
const CAB_HEADER_BYTES: usize = 36;

/// Why a compressed blob cannot be turned into XML text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the blob is not base64 ({reason})")]
    Base64 { reason: String },
    #[error("the blob is not a CAB archive (it does not start with \"MSCF\")")]
    NotCabinet,
    #[error(
        "the CAB archive is truncated: its header promises {expected} bytes but only {actual} arrived"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error("the CAB archive is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error("the CAB archive holds {count} files; a metadata blob holds exactly one")]
    FileCount { count: usize },
    #[error(
        "the metadata unpacks to {size} bytes, more than the limit of {limit}; raise the limit if such metadata is expected"
    )]
    TooLarge { size: u64, limit: usize },
    #[error("the unpacked metadata is not text: {reason}")]
    Encoding { reason: String },
}

/// Unpacks a compressed metadata blob (already base64-decoded) into the XML text.
///
/// Any compression the `cab` crate reads is accepted: Microsoft Update sends LZX (and the fake
/// upstream in `crates/wsus-upstream` writes LZX too); the tests here use MSZIP and stored
/// folders because the `cab` crate cannot write LZX. The file is normally UTF-16LE with a BOM.
pub fn decode_compressed(bytes: &[u8], max_bytes: usize) -> Result<String, BlobError> {
    check_header(bytes)?;
    // cab and lzxd are not hardened against hostile archives; a panic inside them must become
    // an error, not take the sync service down.
    let unpacked = panic::catch_unwind(AssertUnwindSafe(|| unpack_single_file(bytes, max_bytes)))
        .unwrap_or_else(|_| {
        Err(BlobError::Corrupt {
            reason: "the decompressor gave up on malformed data".into(),
        })
    })?;
    decode_text(&unpacked)
}

/// Cheap checks on the header, so the common failures get precise errors.
fn check_header(bytes: &[u8]) -> Result<(), BlobError> {
    let magic_len = bytes.len().min(4);
    if bytes[..magic_len] != b"MSCF"[..magic_len] {
        return Err(BlobError::NotCabinet);
    }
    let actual = bytes.len() as u64;
    let Some(declared) = bytes.get(8..12) else {
        return Err(BlobError::Truncated {
            expected: CAB_HEADER_BYTES as u64,
            actual,
        });
    };
    let declared = u64::from(u32::from_le_bytes([
        declared[0],
        declared[1],
        declared[2],
        declared[3],
    ]));
    let expected = declared.max(CAB_HEADER_BYTES as u64);
    if actual < expected {
        return Err(BlobError::Truncated { expected, actual });
    }
    Ok(())
}

fn unpack_single_file(bytes: &[u8], max_bytes: usize) -> Result<Vec<u8>, BlobError> {
    let mut cabinet = Cabinet::new(Cursor::new(bytes)).map_err(corrupt)?;
    let files: Vec<(String, u32)> = cabinet
        .folder_entries()
        .flat_map(|folder| folder.file_entries())
        .map(|file| (file.name().to_owned(), file.uncompressed_size()))
        .collect();
    let [(name, size)] = files.as_slice() else {
        return Err(BlobError::FileCount { count: files.len() });
    };
    if u64::from(*size) > max_bytes as u64 {
        return Err(BlobError::TooLarge {
            size: u64::from(*size),
            limit: max_bytes,
        });
    }
    let reader = cabinet.read_file(name).map_err(corrupt)?;
    // The declared size bounds the read already; `take` keeps that true whatever cab does.
    let mut content = Vec::with_capacity(*size as usize);
    reader
        .take(u64::from(*size))
        .read_to_end(&mut content)
        .map_err(corrupt)?;
    if content.len() != *size as usize {
        return Err(BlobError::Corrupt {
            reason: format!(
                "the file should unpack to {size} bytes but gave {}",
                content.len()
            ),
        });
    }
    Ok(content)
}

fn corrupt(error: std::io::Error) -> BlobError {
    BlobError::Corrupt {
        reason: error.to_string(),
    }
}

/// Decodes the unpacked file: UTF-16LE/BE by BOM, UTF-8 by BOM, UTF-16LE without BOM when it
/// looks like it (`<` then a zero byte), else UTF-8.
fn decode_text(bytes: &[u8]) -> Result<String, BlobError> {
    let text = if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)?
    } else if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        utf8(rest)?
    } else if bytes.len() >= 2 && bytes[0] != 0 && bytes[1] == 0 {
        utf16(bytes, u16::from_le_bytes)?
    } else {
        utf8(bytes)?
    };
    // Some producers end the file with a NUL terminator.
    Ok(text.trim_end_matches('\0').to_owned())
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, BlobError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(BlobError::Encoding {
            reason: format!("UTF-16 text of odd length ({} bytes)", bytes.len()),
        });
    }
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|error| BlobError::Encoding {
            reason: format!("invalid UTF-16 ({error})"),
        })
}

fn utf8(bytes: &[u8]) -> Result<String, BlobError> {
    String::from_utf8(bytes.to_vec()).map_err(|error| BlobError::Encoding {
        reason: format!("neither UTF-16 nor UTF-8 ({error})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_encodings_are_recognised() {
        let xml = "<a>é</a>";
        let utf16le: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = xml.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            decode_text(&[b"\xFF\xFE".as_slice(), &utf16le].concat()).unwrap(),
            xml
        );
        assert_eq!(
            decode_text(&[b"\xFE\xFF".as_slice(), &utf16be].concat()).unwrap(),
            xml
        );
        assert_eq!(decode_text(&utf16le).unwrap(), xml);
        assert_eq!(
            decode_text(&[b"\xEF\xBB\xBF".as_slice(), xml.as_bytes()].concat()).unwrap(),
            xml
        );
        assert_eq!(decode_text(xml.as_bytes()).unwrap(), xml);
        assert_eq!(
            decode_text(b"\xFF\xFE<\x00a\x00>\x00\x00\x00").unwrap(),
            "<a>"
        );
        assert!(matches!(
            decode_text(b"\xFF\xFE<\x00a"),
            Err(BlobError::Encoding { .. })
        ));
        assert!(matches!(
            decode_text(b"\xFF\xFE\x00\xD8a\x00"),
            Err(BlobError::Encoding { .. })
        ));
        assert!(matches!(
            decode_text(b"<a>\xFF</a>"),
            Err(BlobError::Encoding { .. })
        ));
    }

    #[test]
    fn headers_are_checked_before_unpacking() {
        assert_eq!(
            decode_compressed(b"PK\x03\x04", 100),
            Err(BlobError::NotCabinet)
        );
        assert_eq!(
            decode_compressed(b"", 100),
            Err(BlobError::Truncated {
                expected: 36,
                actual: 0
            })
        );
        assert_eq!(
            decode_compressed(b"MSC", 100),
            Err(BlobError::Truncated {
                expected: 36,
                actual: 3
            })
        );
        let mut header = b"MSCF\0\0\0\0".to_vec();
        header.extend_from_slice(&5000u32.to_le_bytes());
        header.resize(60, 0);
        assert_eq!(
            decode_compressed(&header, 100),
            Err(BlobError::Truncated {
                expected: 5000,
                actual: 60
            })
        );
    }
}
