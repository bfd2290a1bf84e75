//! Parsers and file reading against the fixtures in `tests/fixtures/`, plain and compressed at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use patchbay_debian::{
    Architecture, Compression, IndexOrigin, ReadError, ReadOptions, parse_packages, parse_status,
    read_index_bytes, read_packages_file, read_release_file, read_status_file, upgradable,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut encoder =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn packages_fixture_parses_with_one_error_per_bad_stanza() {
    let text = String::from_utf8(fixture_bytes("Packages")).unwrap();
    let parsed = parse_packages(&text);

    let names: Vec<&str> = parsed.entries.iter().map(|e| e.package.as_str()).collect();
    assert_eq!(names, ["bash", "ca-certificates", "libcap2-bin", "libc6"]);
    let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [57, 67], "{:?}", parsed.errors);
    assert!(parsed.errors[0].message.contains("Version"));
    assert!(parsed.errors[1].message.contains("this line has no colon"));

    let libcap = &parsed.entries[2];
    assert_eq!(libcap.version.epoch(), 1);
    assert_eq!(libcap.source.as_deref(), Some("libcap2"));
    assert_eq!(
        libcap.source_version.as_ref().map(|v| v.as_str()),
        Some("1:2.66-4+deb12u3")
    );
    let libc = &parsed.entries[3];
    assert_eq!(libc.source_name(), "glibc");
    assert_eq!(libc.installed_size, Some(12986));
    assert_eq!(
        libc.description.as_deref(),
        Some("GNU C Library: Shared libraries")
    );
}

#[test]
fn status_fixture_keeps_installed_packages() {
    let text = String::from_utf8(fixture_bytes("status")).unwrap();
    let parsed = parse_status(&text);

    let names: Vec<String> = parsed
        .entries
        .iter()
        .map(|p| format!("{}:{}={}", p.package, p.architecture, p.version))
        .collect();
    assert_eq!(
        names,
        [
            "bash:amd64=5.2.15-2+b8",
            "ca-certificates:all=20230311+deb12u1",
            "dpkg:amd64=1.21.22",
            "libc6:amd64=2.36-9+deb12u13",
            "libc6:i386=2.36-9+deb12u10",
            "libcap2-bin:amd64=1:2.66-4+deb12u2+b2",
        ]
    );
    assert!(parsed.entries[1].status.is_held());
    assert_eq!(parsed.skipped, 1, "the config-files entry is not installed");
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].line, 117);
    assert!(parsed.errors[0].message.contains("twice"));
}

#[test]
fn fixtures_give_the_expected_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let lists = write(
        dir.path(),
        "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
        &lz4(&fixture_bytes("Packages")),
    );
    let origin = IndexOrigin::from_path(&lists).unwrap();
    let available: Vec<_> = read_packages_file(&lists, &ReadOptions::default())
        .unwrap()
        .entries
        .into_iter()
        .map(|entry| (Some(origin.clone()), entry))
        .collect();
    let installed = read_status_file(&fixture("status"), &ReadOptions::default())
        .unwrap()
        .entries;

    let upgrades: Vec<String> = upgradable(&installed, &available)
        .iter()
        .map(|u| {
            format!(
                "{}:{} {} -> {} from {}",
                u.package,
                u.architecture,
                u.installed_version,
                u.candidate_version,
                u.origin.as_ref().unwrap().suite
            )
        })
        .collect();
    // libc6:amd64 is current; libc6:i386 has no i386 index here; dpkg is not offered.
    assert_eq!(
        upgrades,
        [
            "bash:amd64 5.2.15-2+b8 -> 5.2.15-2+b9 from bookworm",
            "ca-certificates:all 20230311+deb12u1 -> 20250419~deb12u2 from bookworm",
            "libcap2-bin:amd64 1:2.66-4+deb12u2+b2 -> 1:2.66-4+deb12u3+b1 from bookworm",
        ]
    );
}

#[test]
fn compressed_files_read_the_same_as_plain() {
    let dir = tempfile::tempdir().unwrap();
    let plain = fixture_bytes("Packages");
    let options = ReadOptions::default();
    let expected = read_packages_file(&fixture("Packages"), &options).unwrap();
    assert_eq!(expected.entries.len(), 4);

    let variants = [
        ("Packages.gz", gzip(&plain), Compression::Gzip),
        ("Packages.lz4", lz4(&plain), Compression::Lz4),
        ("Packages.xz", xz(&plain), Compression::Xz),
        // The magic bytes decide, not the name.
        ("Packages", xz(&plain), Compression::Xz),
        ("Packages.gz.partial", lz4(&plain), Compression::Lz4),
    ];
    for (name, bytes, compression) in variants {
        assert_eq!(Compression::from_magic(&bytes), compression);
        let path = write(dir.path(), name, &bytes);
        assert_eq!(read_index_bytes(&path, &options).unwrap(), plain, "{name}");
        let parsed = read_packages_file(&path, &options).unwrap();
        assert_eq!(parsed.entries, expected.entries, "{name}");
        assert_eq!(parsed.errors.len(), 2, "{name}");
        assert_eq!(parsed.errors[0].file.as_deref(), Some(path.as_path()));
        assert!(
            parsed.errors[0]
                .to_string()
                .starts_with(&path.display().to_string())
        );
    }
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gzip(b"Package: a\nVersion: 1\nArchitecture: all\n\n");
    bytes.extend(gzip(b"Package: b\nVersion: 2\nArchitecture: all\n"));
    let path = write(dir.path(), "Packages.gz", &bytes);
    let parsed = read_packages_file(&path, &ReadOptions::default()).unwrap();
    assert_eq!(parsed.entries.len(), 2);
}

#[test]
fn decompression_bombs_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![b'\n'; 4 << 20];
    let options = ReadOptions {
        max_decompressed_bytes: 1 << 20,
    };
    for (name, bytes) in [
        ("bomb.gz", gzip(&zeros)),
        ("bomb.lz4", lz4(&zeros)),
        ("bomb.xz", xz(&zeros)),
        ("bomb", zeros.clone()),
    ] {
        // A few KiB on disk that would expand to 4 MiB.
        let path = write(dir.path(), name, &bytes);
        let error = read_packages_file(&path, &options).unwrap_err();
        assert!(
            matches!(error, ReadError::TooLarge { limit, .. } if limit == 1 << 20),
            "{name}: {error}"
        );
        assert!(
            error.to_string().contains("max_decompressed_bytes"),
            "{error}"
        );
        assert!(matches!(
            read_index_bytes(&path, &options),
            Err(ReadError::TooLarge { .. })
        ));
    }
}

#[test]
fn file_problems_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let options = ReadOptions::default();

    let missing = dir.path().join("missing_Packages");
    let error = read_packages_file(&missing, &options).unwrap_err();
    assert!(matches!(error, ReadError::Open { .. }), "{error}");
    assert!(error.to_string().contains("missing_Packages"));

    let plain_named_gz = write(dir.path(), "Packages.gz", &fixture_bytes("Packages"));
    let error = read_packages_file(&plain_named_gz, &options).unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::NotCompressed {
                expected: Compression::Gzip,
                ..
            }
        ),
        "{error}"
    );
    let empty_lz4 = write(dir.path(), "empty_Packages.lz4", b"");
    assert_eq!(
        read_packages_file(&empty_lz4, &options).unwrap().entries,
        []
    );

    let mut truncated = xz(&fixture_bytes("Packages"));
    truncated.truncate(truncated.len() - 20);
    let truncated = write(dir.path(), "truncated.xz", &truncated);
    let error = read_packages_file(&truncated, &options).unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::Read {
                compression: Compression::Xz,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("fetch it again"), "{error}");

    let zstd = write(
        dir.path(),
        "Packages.zst",
        &[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3],
    );
    let error = read_packages_file(&zstd, &options).unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::UnsupportedCompression { format: "zstd", .. }
        ),
        "{error}"
    );
}

#[test]
fn in_release_fixture() {
    let release = read_release_file(&fixture("InRelease"), &ReadOptions::default()).unwrap();
    assert_eq!(release.origin.as_deref(), Some("Debian"));
    assert_eq!(release.label.as_deref(), Some("Debian-Security"));
    assert_eq!(release.suite.as_deref(), Some("oldstable-security"));
    assert_eq!(release.codename.as_deref(), Some("bookworm-security"));
    assert_eq!(release.architectures.len(), 9);
    assert!(
        release
            .architectures
            .contains(&Architecture::Other("mipsel".to_owned()))
    );
    assert_eq!(release.components.len(), 4);
}
