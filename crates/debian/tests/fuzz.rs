//! Random and mangled input must never panic any parser or decoder: it gives entries, per-stanza errors or a read error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use patchbay_debian::{
    IndexOrigin, ReadOptions, StanzaReader, decompress, parse_packages, parse_release,
    parse_stanzas, parse_status, read_packages, read_status,
};
use proptest::prelude::*;

const PACKAGES: &str = include_str!("fixtures/Packages");
const STATUS: &str = include_str!("fixtures/status");
const IN_RELEASE: &str = include_str!("fixtures/InRelease");

/// Bytes that look like control files often enough to get past the first line.
fn control_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"Package: x".to_vec()),
        Just(b"Version: 1:2.0-1".to_vec()),
        Just(b"Architecture: amd64".to_vec()),
        Just(b"Status: install ok installed".to_vec()),
        Just(b" continuation".to_vec()),
        Just(b"-----BEGIN PGP SIGNED MESSAGE-----".to_vec()),
        Just(b"-----BEGIN PGP SIGNATURE-----".to_vec()),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join(&b'\n'))
}

/// A fixture with a few bytes overwritten, inserted or removed.
fn mangled(text: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..12);
    edits.prop_map(move |edits| {
        let mut bytes = text.as_bytes().to_vec();
        for (index, byte, kind) in edits {
            let at = index.index(bytes.len().max(1)).min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

fn parse_everything(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_stanzas(&text).count();
    let _ = StanzaReader::new(bytes).count();
    let packages = parse_packages(&text);
    let status = parse_status(&text);
    let _ = parse_release(&text);
    // The streaming and in-memory front ends must agree on valid UTF-8.
    if std::str::from_utf8(bytes).is_ok() {
        assert_eq!(read_packages(bytes).unwrap(), packages);
        assert_eq!(read_status(bytes).unwrap(), status);
    }
    if let Ok(name) = std::str::from_utf8(bytes) {
        let _ = IndexOrigin::from_lists_filename(name);
    }
}

fn decode_everything(bytes: &[u8]) {
    let options = ReadOptions {
        max_decompressed_bytes: 1 << 20,
    };
    if let Ok(mut reader) = decompress(bytes, &options) {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        assert!(out.len() <= 1 << 20);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
        decode_everything(&bytes);
    }

    #[test]
    fn control_like_bytes(bytes in control_like()) {
        parse_everything(&bytes);
    }

    #[test]
    fn mangled_fixtures(
        packages in mangled(PACKAGES),
        status in mangled(STATUS),
        release in mangled(IN_RELEASE),
    ) {
        parse_everything(&packages);
        parse_everything(&status);
        parse_everything(&release);
    }

    #[test]
    fn mangled_compressed_streams(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        format in 0..3u8,
    ) {
        let plain = PACKAGES.as_bytes();
        let mut bytes = match format {
            0 => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(plain).unwrap();
                encoder.finish().unwrap()
            }
            1 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(plain).unwrap();
                encoder.finish().unwrap()
            }
            _ => {
                let mut encoder = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
                encoder.write_all(plain).unwrap();
                encoder.finish().unwrap()
            }
        };
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        decode_everything(&bytes);
    }
}
