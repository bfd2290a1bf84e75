//! Compressed metadata blobs: CAB round trips (MSZIP, stored, and a hand-made LZX archive) and damaged archives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write as _};

use cab::CompressionType;
use patchbay_wsus::{BlobError, decode_compressed};
use proptest::prelude::*;

const LIMIT: usize = 1024 * 1024;

fn metadata_xml(padding: usize) -> String {
    format!(
        r#"<upd:Update xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update"><upd:UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1" /><upd:Properties UpdateType="Category" /><!--{}--></upd:Update>"#,
        "Größe ".repeat(padding)
    )
}

/// What Microsoft Update puts in the CAB: UTF-16LE with a byte-order mark.
fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

/// A CAB written by the `cab` crate, which writes stored or MSZIP folders (not LZX).
fn cab_with(files: &[(&str, &[u8])], compression: CompressionType) -> Vec<u8> {
    let mut builder = cab::CabinetBuilder::new();
    // The builder cannot write an empty folder; no files means no folder.
    if !files.is_empty() {
        let folder = builder.add_folder(compression);
        for (name, _) in files {
            folder.add_file(*name);
        }
    }
    let mut writer = builder.build(Cursor::new(Vec::new())).unwrap();
    let mut contents = files.iter().map(|(_, content)| *content);
    while let Some(mut file) = writer.next_file().unwrap() {
        file.write_all(contents.next().unwrap()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A one-file CAB with an LZX folder (2 MB window, as the spec says) holding a single
/// uncompressed LZX block, split into 32 KB frames like a real LZX CAB.
fn lzx_cab(content: &[u8]) -> Vec<u8> {
    const FRAME: usize = 32 * 1024;
    let size = u32::try_from(content.len()).unwrap();
    // LZX bits, read as 16-bit little-endian words, most significant bit first: no E8
    // translation (1 bit), block type 3 = uncompressed (3 bits), block size (24 bits), then
    // padding to the word boundary; R0, R1, R2 follow as raw little-endian u32s.
    let bits: u32 = (0b011 << 28) | (size << 4);
    let mut stream = Vec::new();
    stream.extend_from_slice(&((bits >> 16) as u16).to_le_bytes());
    stream.extend_from_slice(&(bits as u16).to_le_bytes());
    for r in [1u32, 1, 1] {
        stream.extend_from_slice(&r.to_le_bytes());
    }
    let header_len = stream.len();
    let mut frames: Vec<(Vec<u8>, usize)> = Vec::new();
    for (index, chunk) in content.chunks(FRAME).enumerate() {
        let mut data = if index == 0 {
            stream.clone()
        } else {
            Vec::new()
        };
        data.extend_from_slice(chunk);
        frames.push((data, chunk.len()));
    }
    assert_eq!(frames[0].0.len(), header_len + content.len().min(FRAME));

    let name = b"blob\0";
    let files_offset = 36 + 8;
    let data_offset = files_offset + 16 + name.len();
    let total = data_offset + frames.iter().map(|(data, _)| 8 + data.len()).sum::<usize>();
    let mut cab = Vec::new();
    cab.extend_from_slice(b"MSCF");
    cab.extend_from_slice(&0u32.to_le_bytes());
    cab.extend_from_slice(&u32::try_from(total).unwrap().to_le_bytes());
    cab.extend_from_slice(&0u32.to_le_bytes());
    cab.extend_from_slice(&u32::try_from(files_offset).unwrap().to_le_bytes());
    cab.extend_from_slice(&0u32.to_le_bytes());
    cab.extend_from_slice(&[3, 1]); // version 1.3
    cab.extend_from_slice(&1u16.to_le_bytes()); // folders
    cab.extend_from_slice(&1u16.to_le_bytes()); // files
    cab.extend_from_slice(&[0; 6]); // flags, set id, index
    // CFFOLDER: first data block, block count, LZX with a 2^21-byte window.
    cab.extend_from_slice(&u32::try_from(data_offset).unwrap().to_le_bytes());
    cab.extend_from_slice(&u16::try_from(frames.len()).unwrap().to_le_bytes());
    cab.extend_from_slice(&0x1503u16.to_le_bytes());
    // CFFILE
    cab.extend_from_slice(&size.to_le_bytes());
    cab.extend_from_slice(&[0; 4 + 2 + 2 + 2 + 2]);
    cab.extend_from_slice(name);
    // CFDATA blocks without checksums.
    for (data, uncompressed) in &frames {
        cab.extend_from_slice(&0u32.to_le_bytes());
        cab.extend_from_slice(&u16::try_from(data.len()).unwrap().to_le_bytes());
        cab.extend_from_slice(&u16::try_from(*uncompressed).unwrap().to_le_bytes());
        cab.extend_from_slice(data);
    }
    assert_eq!(cab.len(), total);
    cab
}

#[test]
fn lzx_cabs_unpack_like_microsoft_updates() {
    for padding in [1, 20_000] {
        let xml = metadata_xml(padding);
        let content = utf16le_with_bom(&xml);
        let cab = lzx_cab(&content);
        assert_eq!(
            decode_compressed(&cab, LIMIT).unwrap(),
            xml,
            "{} bytes",
            content.len()
        );
    }
}

#[test]
fn mszip_and_stored_cabs_unpack() {
    for compression in [CompressionType::MsZip, CompressionType::None] {
        for padding in [1, 20_000] {
            let xml = metadata_xml(padding);
            let cab = cab_with(&[("blob", &utf16le_with_bom(&xml))], compression);
            assert_eq!(
                decode_compressed(&cab, LIMIT).unwrap(),
                xml,
                "{compression:?}"
            );
        }
    }
    let utf8 = cab_with(
        &[("blob", metadata_xml(1).as_bytes())],
        CompressionType::MsZip,
    );
    assert_eq!(decode_compressed(&utf8, LIMIT).unwrap(), metadata_xml(1));
}

#[test]
fn oversized_content_is_refused_before_unpacking() {
    let content = utf16le_with_bom(&metadata_xml(20_000));
    for cab in [
        cab_with(&[("blob", &content)], CompressionType::MsZip),
        lzx_cab(&content),
    ] {
        assert_eq!(
            decode_compressed(&cab, 4096),
            Err(BlobError::TooLarge {
                size: content.len() as u64,
                limit: 4096
            })
        );
    }
}

#[test]
fn archives_with_other_than_one_file_are_refused() {
    let two = cab_with(
        &[("blob", b"<a/>"), ("more", b"<b/>")],
        CompressionType::None,
    );
    assert_eq!(
        decode_compressed(&two, LIMIT),
        Err(BlobError::FileCount { count: 2 })
    );
    let none = cab_with(&[], CompressionType::None);
    assert_eq!(
        decode_compressed(&none, LIMIT),
        Err(BlobError::FileCount { count: 0 })
    );
}

#[test]
fn damaged_archives_give_typed_errors() {
    let cab = cab_with(
        &[("blob", &utf16le_with_bom(&metadata_xml(200)))],
        CompressionType::MsZip,
    );
    assert_eq!(
        decode_compressed(b"<xml/>", LIMIT),
        Err(BlobError::NotCabinet)
    );
    let cut = &cab[..cab.len() - 10];
    assert_eq!(
        decode_compressed(cut, LIMIT),
        Err(BlobError::Truncated {
            expected: cab.len() as u64,
            actual: cut.len() as u64
        })
    );
    // A flipped byte in the compressed data breaks the block checksum or the deflate stream.
    let mut flipped = cab.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0xFF;
    assert!(matches!(
        decode_compressed(&flipped, LIMIT),
        Err(BlobError::Corrupt { .. })
    ));
    // LZX data cut short inside its block.
    let mut lzx = lzx_cab(&utf16le_with_bom(&metadata_xml(10)));
    let data_size_at = 36 + 8 + 16 + 5 + 4;
    let shorter = u16::from_le_bytes([lzx[data_size_at], lzx[data_size_at + 1]]) - 40;
    lzx[data_size_at..data_size_at + 2].copy_from_slice(&shorter.to_le_bytes());
    assert!(matches!(
        decode_compressed(&lzx, LIMIT),
        Err(BlobError::Corrupt { .. })
    ));
    // Not text.
    let binary = cab_with(
        &[("blob", &[0x00, 0xC3, 0x28, 0xA0])],
        CompressionType::None,
    );
    assert!(matches!(
        decode_compressed(&binary, LIMIT),
        Err(BlobError::Encoding { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens to an archive, decoding returns (it never panics or hangs).
    #[test]
    fn damaged_archives_never_panic(
        seed in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let content = utf16le_with_bom(&metadata_xml(300));
        let mut cab = match seed {
            0 => lzx_cab(&content),
            1 => cab_with(&[("blob", &content)], CompressionType::MsZip),
            _ => cab_with(&[("blob", &content)], CompressionType::None),
        };
        for (at, byte) in edits {
            let at = at % cab.len();
            cab[at] = byte;
        }
        let keep = cab.len() - cut % (cab.len() / 4);
        let _ = decode_compressed(&cab[..keep], LIMIT);
    }

    #[test]
    fn random_bytes_after_the_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"MSCF".to_vec();
        bytes.extend(tail);
        let _ = decode_compressed(&bytes, LIMIT);
    }
}
