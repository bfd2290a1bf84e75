//! Writes single-file CAB archives whose folder is LZX-compressed (type 0x1503), the `XmlUpdateBlobCompressed` format.
//!
//! Layout (MS-CAB): CFHEADER (36 bytes, no reserve area), one CFFOLDER, one CFFILE, then one
//! CFDATA block per 32 KiB LZX frame, each with the real CAB checksum. The header fields mirror the
//! compressed blob in MS-WSUSSS section 4 (version 1.3, file date and time 0, attributes 0, file
//! name "blob"). The LZX data comes from [`crate::lzx`], which stores rather than compresses.

use thiserror::Error;

use crate::lzx::{self, FRAME_SIZE};

/// CAB compression type: LZX (3) with a 2^21 = 2 MiB window, as MS-WSUSSS 3.1.4.6.3.3 requires.
pub const LZX_2MB_COMPRESSION_TYPE: u16 = 0x1503;

/// The file name real upstream servers use inside `XmlUpdateBlobCompressed` cabinets.
pub const UPDATE_BLOB_FILE_NAME: &str = "blob";

const CFHEADER_LEN: usize = 36;
const CFFOLDER_LEN: usize = 8;
const CFFILE_FIXED_LEN: usize = 16;
const CFDATA_HEADER_LEN: usize = 8;

/// Why a cabinet could not be written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CabWriteError {
    /// The content needs more CFDATA blocks or bytes than the CAB format can count.
    #[error("content of {0} bytes is too large for a single-folder cabinet")]
    TooLarge(usize),
    /// The file name is empty, longer than 255 bytes, or not plain printable ASCII.
    #[error("invalid cabinet file name {0:?}")]
    InvalidFileName(String),
}

/// Writes a cabinet holding one file, `file_name`, with `content` in an LZX folder.
pub fn write_lzx_cab(file_name: &str, content: &[u8]) -> Result<Vec<u8>, CabWriteError> {
    let name_ok = !file_name.is_empty()
        && file_name.len() <= 255
        && file_name.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if !name_ok {
        return Err(CabWriteError::InvalidFileName(file_name.to_owned()));
    }
    let too_large = || CabWriteError::TooLarge(content.len());
    let frames = lzx::encode_uncompressed(content);
    let data_block_count = u16::try_from(frames.len()).map_err(|_| too_large())?;
    let content_len = u32::try_from(content.len()).map_err(|_| too_large())?;

    let files_offset = CFHEADER_LEN + CFFOLDER_LEN;
    let data_offset = files_offset + CFFILE_FIXED_LEN + file_name.len() + 1;
    let total_len = data_offset
        + frames
            .iter()
            .map(|frame| CFDATA_HEADER_LEN + frame.encoded.len())
            .sum::<usize>();
    let total_len_u32 = u32::try_from(total_len).map_err(|_| too_large())?;

    let mut cab = Vec::with_capacity(total_len);
    // CFHEADER
    cab.extend_from_slice(b"MSCF");
    cab.extend_from_slice(&0u32.to_le_bytes()); // reserved1
    cab.extend_from_slice(&total_len_u32.to_le_bytes()); // cbCabinet
    cab.extend_from_slice(&0u32.to_le_bytes()); // reserved2
    cab.extend_from_slice(&(files_offset as u32).to_le_bytes()); // coffFiles
    cab.extend_from_slice(&0u32.to_le_bytes()); // reserved3
    cab.extend_from_slice(&[3, 1]); // versionMinor, versionMajor
    cab.extend_from_slice(&1u16.to_le_bytes()); // cFolders
    cab.extend_from_slice(&1u16.to_le_bytes()); // cFiles
    cab.extend_from_slice(&0u16.to_le_bytes()); // flags
    cab.extend_from_slice(&0u16.to_le_bytes()); // setID
    cab.extend_from_slice(&0u16.to_le_bytes()); // iCabinet
    // CFFOLDER
    cab.extend_from_slice(&(data_offset as u32).to_le_bytes()); // coffCabStart
    cab.extend_from_slice(&data_block_count.to_le_bytes()); // cCFData
    cab.extend_from_slice(&LZX_2MB_COMPRESSION_TYPE.to_le_bytes()); // typeCompress
    // CFFILE
    cab.extend_from_slice(&content_len.to_le_bytes()); // cbFile
    cab.extend_from_slice(&0u32.to_le_bytes()); // uoffFolderStart
    cab.extend_from_slice(&0u16.to_le_bytes()); // iFolder
    cab.extend_from_slice(&0u16.to_le_bytes()); // date
    cab.extend_from_slice(&0u16.to_le_bytes()); // time
    cab.extend_from_slice(&0u16.to_le_bytes()); // attribs
    cab.extend_from_slice(file_name.as_bytes());
    cab.push(0);
    debug_assert_eq!(cab.len(), data_offset);
    // CFDATA
    for frame in &frames {
        // An encoded frame is at most FRAME_SIZE + 17 bytes and decodes to at most FRAME_SIZE.
        let encoded_len = frame.encoded.len() as u16;
        let decoded_len = frame.decoded_len as u16;
        debug_assert!(frame.decoded_len <= FRAME_SIZE);
        let mut sizes = [0u8; 4];
        sizes[..2].copy_from_slice(&encoded_len.to_le_bytes());
        sizes[2..].copy_from_slice(&decoded_len.to_le_bytes());
        let checksum = cab_checksum(&sizes, cab_checksum(&frame.encoded, 0));
        cab.extend_from_slice(&checksum.to_le_bytes());
        cab.extend_from_slice(&sizes);
        cab.extend_from_slice(&frame.encoded);
    }
    debug_assert_eq!(cab.len(), total_len);
    Ok(cab)
}

/// Wraps update metadata the way `XmlUpdateBlobCompressed` carries it: UTF-16LE with a byte
/// order mark, in a cabinet file named "blob".
pub fn compress_update_xml(xml: &str) -> Result<Vec<u8>, CabWriteError> {
    let mut utf16 = Vec::with_capacity(2 + xml.len() * 2);
    utf16.extend_from_slice(&[0xFF, 0xFE]);
    for unit in xml.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    write_lzx_cab(UPDATE_BLOB_FILE_NAME, &utf16)
}

/// The CAB checksum (MS-CAB 2.5 "CSUMCompute"): XOR of little-endian 32-bit words, with the
/// 1–3 trailing bytes folded in most significant first.
pub fn cab_checksum(bytes: &[u8], seed: u32) -> u32 {
    let mut checksum = seed;
    let mut words = bytes.chunks_exact(4);
    for word in &mut words {
        checksum ^= u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    }
    let tail = words
        .remainder()
        .iter()
        .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    checksum ^ tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_ms_cab_example() {
        // The example cabinet in MS-CAB: the data checksum seeded into the 4 size bytes.
        let data = b"#include <stdio.h>\r\n\r\nvoid main(void)\r\n{\r\n    printf(\"Hello, world!\\n\");\r\n}\r\n#include <stdio.h>\r\n\r\nvoid main(void)\r\n{\r\n    printf(\"Welcome!\\n\");\r\n}\r\n\r\n";
        let checksum = cab_checksum(&[0x97, 0, 0x97, 0], cab_checksum(data, 0));
        assert_eq!(checksum, 0x30a6_5abd);
    }

    #[test]
    fn header_mirrors_the_spec_example_blob() {
        let cab = compress_update_xml("<x/>").expect("small blob");
        assert_eq!(&cab[..4], b"MSCF");
        assert_eq!(&cab[24..26], &[3, 1]);
        assert_eq!(u16::from_le_bytes([cab[42], cab[43]]), 0x1503);
        assert_eq!(&cab[60..65], b"blob\0");
        // BOM + 4 UTF-16 units.
        assert_eq!(u32::from_le_bytes([cab[44], cab[45], cab[46], cab[47]]), 10);
    }

    #[test]
    fn rejects_names_the_format_cannot_hold() {
        assert!(matches!(
            write_lzx_cab("", b"x"),
            Err(CabWriteError::InvalidFileName(_))
        ));
        assert!(matches!(
            write_lzx_cab("bl\u{f6}b", b"x"),
            Err(CabWriteError::InvalidFileName(_))
        ));
    }
}
