//! Our LZX cabinets decode with the independent `cab`/`lzxd` readers, for every frame-boundary size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Read as _};

use patchbay_wsus_upstream::cab_writer::{
    LZX_2MB_COMPRESSION_TYPE, compress_update_xml, write_lzx_cab,
};
use patchbay_wsus_upstream::content::payload;

fn decode(cab_bytes: Vec<u8>, name: &str) -> Vec<u8> {
    let mut cabinet = cab::Cabinet::new(Cursor::new(cab_bytes)).expect("cabinet header");
    let folder = cabinet.folder_entries().next().expect("one folder");
    assert_eq!(
        folder.compression_type(),
        cab::CompressionType::Lzx(cab::WindowSize::MB2),
        "typeCompress {LZX_2MB_COMPRESSION_TYPE:#06x}"
    );
    let mut bytes = Vec::new();
    cabinet
        .read_file(name)
        .expect("file entry")
        .read_to_end(&mut bytes)
        .expect("LZX decodes");
    bytes
}

#[test]
fn every_size_round_trips_through_the_cab_crate() {
    for size in [
        0usize,
        1,
        2,
        777,
        32_767,
        32_768,
        32_769,
        65_536,
        200 * 1024,
        200_001,
    ] {
        let content = payload(&format!("size-{size}"), size as u64);
        let cab_bytes = write_lzx_cab("blob", &content).expect("writable");
        assert_eq!(decode(cab_bytes, "blob"), content, "size {size}");
    }
}

#[test]
fn update_xml_is_utf16le_with_a_bom() {
    let xml = "<upd:Update xmlns:upd=\"http://schemas.microsoft.com/msus/2002/12/Update\"><upd:Title>Kumulatives Update für Windows – “x”</upd:Title></upd:Update>";
    let bytes = decode(compress_update_xml(xml).expect("writable"), "blob");
    assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
    let units: Vec<u16> = bytes[2..]
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).expect("UTF-16"), xml);
}
