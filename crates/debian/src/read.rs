//! Reading index files from disk: plain, gzip, xz or LZ4-frame, detected by magic bytes, with a cap on decompressed size.
//!
//! Everything streams: a file is decompressed as it is parsed, one stanza at a time, so memory
//! stays proportional to one stanza plus the parsed entries. The cap
//! ([`ReadOptions::max_decompressed_bytes`]) stops decompression bombs; the xz decoder also
//! refuses dictionaries larger than [`XZ_MEMORY_LIMIT_KIB`].
//!
//! The format is chosen by the file's first bytes. The extension only matters when it promises a
//! compression the content does not have: that is reported as [`ReadError::NotCompressed`]
//! because it usually means a truncated or half-written download.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use lz4_flex::frame::FrameDecoder;
use lzma_rust2::XzReader;

use crate::deb822::ParseError;
use crate::origin::{Release, parse_release};
use crate::packages::{InstalledPackage, PackageEntry, Parsed, read_packages, read_status};

/// Default cap on the decompressed size of one index: 1 GiB (Debian's largest `Packages` index,
/// main/amd64 of unstable, is under 100 MiB).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Largest xz dictionary accepted, in KiB (256 MiB; `xz -9` uses 64 MiB).
pub const XZ_MEMORY_LIMIT_KIB: u32 = 256 * 1024;

/// Limits applied while reading an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Reading fails once this many decompressed bytes have been produced.
    pub max_decompressed_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// How an index file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Plain,
    Gzip,
    Xz,
    /// The LZ4 frame format (what apt writes to `/var/lib/apt/lists/*.lz4`).
    Lz4,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const LZ4_FRAME_MAGIC: &[u8] = &[0x04, 0x22, 0x4d, 0x18];
/// Enough bytes to recognise every format above and the unsupported ones below.
const MAGIC_LEN: usize = 6;

/// Formats apt can use that this crate does not read, by magic bytes.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (b"BZh", "bzip2"),
    (&[0x02, 0x21, 0x4c, 0x18], "legacy LZ4"),
    (&[0x5d, 0x00, 0x00], "lzma (not xz)"),
];

impl Compression {
    /// The compression the first bytes of a file show; anything unrecognised is `Plain`.
    pub fn from_magic(start: &[u8]) -> Self {
        if start.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if start.starts_with(XZ_MAGIC) {
            Compression::Xz
        } else if start.starts_with(LZ4_FRAME_MAGIC) {
            Compression::Lz4
        } else {
            Compression::Plain
        }
    }

    /// The compression a file name's extension promises (`.gz`, `.xz`, `.lz4`), if any.
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "gz" => Some(Compression::Gzip),
            "xz" => Some(Compression::Xz),
            "lz4" => Some(Compression::Lz4),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Plain => "plain text",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Why an index could not be read. Problems inside single stanzas are not errors here: they come
/// back in [`Parsed::errors`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "cannot read {} ({compression}): {source}; the file may be truncated or corrupt, fetch it again",
        path.display(), compression = compression.name()
    )]
    Read {
        path: PathBuf,
        compression: Compression,
        source: io::Error,
    },
    #[error(
        "{} decompresses to more than {limit} bytes, the configured maximum; if the index is genuine raise ReadOptions::max_decompressed_bytes",
        path.display()
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error(
        "{} is {format}-compressed, which is not supported; use the .gz, .xz or .lz4 variant of the index or decompress it first",
        path.display()
    )]
    UnsupportedCompression { path: PathBuf, format: &'static str },
    #[error(
        "{} is named like a {expected} file but does not start with {expected} magic bytes; it is probably truncated or not an index, fetch it again",
        path.display(), expected = expected.name()
    )]
    NotCompressed {
        path: PathBuf,
        expected: Compression,
    },
    #[error("{}: {source}", path.display())]
    Release { path: PathBuf, source: ParseError },
}

/// A decompressing reader with a cap on its output; see [`open_index`] and [`decompress`].
pub struct IndexReader<R: BufRead> {
    decoder: Decoder<R>,
    compression: Compression,
    produced: u64,
    limit: u64,
}

enum Decoder<R: BufRead> {
    Plain(Chain<Cursor<Vec<u8>>, R>),
    Gzip(Box<MultiGzDecoder<Chain<Cursor<Vec<u8>>, R>>>),
    Xz(Box<XzReader<Chain<Cursor<Vec<u8>>, R>>>),
    Lz4(Box<FrameDecoder<Chain<Cursor<Vec<u8>>, R>>>),
}

impl<R: BufRead> std::fmt::Debug for IndexReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("compression", &self.compression)
            .field("produced", &self.produced)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> IndexReader<R> {
    /// The compression detected from the input's first bytes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    fn read_decoded(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.decoder {
            Decoder::Plain(reader) => reader.read(buf),
            Decoder::Gzip(reader) => reader.read(buf),
            Decoder::Xz(reader) => reader.read(buf),
            Decoder::Lz4(reader) => reader.read(buf),
        }
    }
}

/// The error an [`IndexReader`] returns (inside an `io::Error`) once it passes its cap.
#[derive(Debug, thiserror::Error)]
#[error("decompressed data exceeds the limit of {limit} bytes")]
pub struct LimitExceeded {
    pub limit: u64,
}

impl<R: BufRead> Read for IndexReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.produced >= self.limit {
            // Probe for one more byte: only fail if the input really goes on.
            let mut probe = [0u8; 1];
            return match self.read_decoded(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(LimitExceeded { limit: self.limit })),
            };
        }
        let room = usize::try_from(self.limit - self.produced).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let read = self.read_decoded(&mut buf[..want])?;
        self.produced += read as u64;
        Ok(read)
    }
}

/// The error [`decompress`] returns (inside an `io::Error` of kind `Unsupported`) for formats apt
/// may use but this crate does not read: zstd, bzip2, legacy LZ4, lzma.
#[derive(Debug, thiserror::Error)]
#[error("{format} compression is not supported")]
pub struct UnsupportedFormat {
    pub format: &'static str,
}

/// Wraps a stream in the decoder its first bytes call for, capped at the configured size.
///
/// Fails with an [`UnsupportedFormat`] error for formats apt may use but this crate does not read.
pub fn decompress<R: BufRead>(mut input: R, options: &ReadOptions) -> io::Result<IndexReader<R>> {
    let mut magic = Vec::with_capacity(MAGIC_LEN);
    (&mut input)
        .take(MAGIC_LEN as u64)
        .read_to_end(&mut magic)?;
    if let Some(&(_, format)) = UNSUPPORTED.iter().find(|(m, _)| magic.starts_with(m)) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            UnsupportedFormat { format },
        ));
    }
    let compression = Compression::from_magic(&magic);
    let stream = Cursor::new(magic).chain(input);
    let decoder = match compression {
        Compression::Plain => Decoder::Plain(stream),
        Compression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(stream))),
        Compression::Xz => Decoder::Xz(Box::new(XzReader::new_mem_limit(
            stream,
            true,
            XZ_MEMORY_LIMIT_KIB,
        ))),
        Compression::Lz4 => Decoder::Lz4(Box::new(FrameDecoder::new(stream))),
    };
    Ok(IndexReader {
        decoder,
        compression,
        produced: 0,
        limit: options.max_decompressed_bytes,
    })
}

/// Opens an index file for streaming: decompressed, capped, buffered for line reading.
pub fn open_index(
    path: &Path,
    options: &ReadOptions,
) -> Result<BufReader<IndexReader<BufReader<File>>>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let reader = decompress(BufReader::new(file), options)
        .map_err(|source| read_error(path, Compression::Plain, options, source))?;
    // The content decides the format; but a `.gz`/`.xz`/`.lz4` name on uncompressed content
    // means a broken download. An empty file is an empty index, whatever its name.
    if let Some(expected) = Compression::from_extension(path)
        && reader.compression() == Compression::Plain
        && std::fs::metadata(path).map_or(true, |m| m.len() > 0)
    {
        return Err(ReadError::NotCompressed {
            path: path.to_owned(),
            expected,
        });
    }
    Ok(BufReader::new(reader))
}

/// Reads a whole index into memory (decompressed and capped).
pub fn read_index_bytes(path: &Path, options: &ReadOptions) -> Result<Vec<u8>, ReadError> {
    let mut reader = open_index(path, options)?;
    let compression = reader.get_ref().compression();
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| read_error(path, compression, options, source))?;
    Ok(bytes)
}

/// Reads and parses a `Packages` index (plain or compressed).
pub fn read_packages_file(
    path: &Path,
    options: &ReadOptions,
) -> Result<Parsed<PackageEntry>, ReadError> {
    let reader = open_index(path, options)?;
    let compression = reader.get_ref().compression();
    let parsed =
        read_packages(reader).map_err(|source| read_error(path, compression, options, source))?;
    Ok(with_file(parsed, path))
}

/// Reads and parses dpkg's `status` file (usually `/var/lib/dpkg/status`).
pub fn read_status_file(
    path: &Path,
    options: &ReadOptions,
) -> Result<Parsed<InstalledPackage>, ReadError> {
    let reader = open_index(path, options)?;
    let compression = reader.get_ref().compression();
    let parsed =
        read_status(reader).map_err(|source| read_error(path, compression, options, source))?;
    Ok(with_file(parsed, path))
}

/// Reads and parses a `Release` or `InRelease` file.
pub fn read_release_file(path: &Path, options: &ReadOptions) -> Result<Release, ReadError> {
    let bytes = read_index_bytes(path, options)?;
    parse_release(&String::from_utf8_lossy(&bytes)).map_err(|mut source| {
        source.file = Some(path.to_owned());
        ReadError::Release {
            path: path.to_owned(),
            source,
        }
    })
}

fn with_file<T>(mut parsed: Parsed<T>, path: &Path) -> Parsed<T> {
    for error in &mut parsed.errors {
        error.file = Some(path.to_owned());
    }
    parsed
}

fn read_error(
    path: &Path,
    compression: Compression,
    options: &ReadOptions,
    source: io::Error,
) -> ReadError {
    let path = path.to_owned();
    if let Some(inner) = source.get_ref() {
        if inner.downcast_ref::<LimitExceeded>().is_some() {
            return ReadError::TooLarge {
                path,
                limit: options.max_decompressed_bytes,
            };
        }
        if let Some(unsupported) = inner.downcast_ref::<UnsupportedFormat>() {
            return ReadError::UnsupportedCompression {
                path,
                format: unsupported.format,
            };
        }
    }
    ReadError::Read {
        path,
        compression,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn read_all(input: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        let options = ReadOptions {
            max_decompressed_bytes: limit,
        };
        let mut out = Vec::new();
        decompress(input, &options)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn detects_formats_by_magic() {
        assert_eq!(Compression::from_magic(b"Package: x"), Compression::Plain);
        assert_eq!(Compression::from_magic(b""), Compression::Plain);
        assert_eq!(Compression::from_magic(&gzip(b"x")), Compression::Gzip);
        assert_eq!(
            Compression::from_magic(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::from_magic(&[0x04, 0x22, 0x4d, 0x18, 0x64]),
            Compression::Lz4
        );
    }

    #[test]
    fn plain_and_short_inputs_pass_through() {
        assert_eq!(read_all(b"", 10).unwrap(), b"");
        assert_eq!(read_all(b"ab", 10).unwrap(), b"ab");
        assert_eq!(read_all(b"Package: x\n", 100).unwrap(), b"Package: x\n");
    }

    #[test]
    fn the_cap_allows_exactly_the_limit_and_no_more() {
        let data = vec![b'a'; 1000];
        assert_eq!(read_all(&gzip(&data), 1000).unwrap(), data);
        let error = read_all(&gzip(&data), 999).unwrap_err();
        assert!(
            error
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<LimitExceeded>().is_some()),
            "{error}"
        );
    }

    #[test]
    fn unsupported_formats_are_named() {
        let error = read_all(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0], 10).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        let error = read_error(
            Path::new("/x/Packages.zst"),
            Compression::Plain,
            &ReadOptions::default(),
            error,
        );
        assert!(
            matches!(
                error,
                ReadError::UnsupportedCompression { format: "zstd", .. }
            ),
            "{error}"
        );
    }

    #[test]
    fn corrupt_compressed_input_is_an_error_not_a_panic() {
        let mut data = gzip(b"Package: x\nVersion: 1\n");
        let middle = data.len() / 2;
        data.truncate(middle);
        assert!(read_all(&data, 1000).is_err());
        assert!(read_all(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3], 1000).is_err());
        assert!(read_all(&[0x04, 0x22, 0x4d, 0x18, 0xff, 0xff], 1000).is_err());
    }
}
