//! An LZX stream writer that stores data in uncompressed blocks (block type 3), one block per 32 KiB frame.
//!
//! The result is valid LZX that libmspack, the `lzxd` crate and Windows' cabinet.dll decode; it
//! simply does not compress. The bit-level layout (see `lzxd`'s `bitstream.rs` and `block.rs`):
//!
//! - bits are packed into 16-bit little-endian words, each word filled from its most significant
//!   bit;
//! - the very first frame starts with one bit telling whether E8 call translation is on (we write
//!   0, so no 32-bit translation size follows);
//! - every block starts with a 3-bit block type (3 = uncompressed) and a 24-bit block size;
//! - an uncompressed block then aligns the stream to a 16-bit boundary, consuming 1–16 bits (a
//!   whole zero word when the header ended exactly on a word boundary), stores the three 32-bit
//!   repeated-offset registers R0, R1, R2 little-endian (we store 1, 1, 1), then the raw bytes,
//!   then one padding byte when the block size is odd.
//!
//! In a CAB folder every CFDATA block carries exactly one 32 KiB frame of output (the last one may
//! be shorter) and decoders restart the bit reader at each CFDATA block, so we emit one
//! self-contained uncompressed block per frame.

/// Uncompressed bytes per LZX frame (and per CFDATA block in a CAB folder).
pub const FRAME_SIZE: usize = 32 * 1024;

const BLOCK_TYPE_UNCOMPRESSED: u32 = 3;

/// One encoded frame: the bytes of one CFDATA block and how many bytes they decode to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LzxFrame {
    /// The LZX bytes of this frame.
    pub encoded: Vec<u8>,
    /// The number of bytes this frame decodes to (at most [`FRAME_SIZE`]).
    pub decoded_len: usize,
}

/// Encodes `data` as an LZX stream of uncompressed blocks, split into frames of [`FRAME_SIZE`].
///
/// Empty input gives no frames.
pub fn encode_uncompressed(data: &[u8]) -> Vec<LzxFrame> {
    data.chunks(FRAME_SIZE)
        .enumerate()
        .map(|(index, chunk)| {
            let mut writer = LzxBitWriter::with_capacity(chunk.len() + 20);
            if index == 0 {
                writer.write_bits(0, 1); // no E8 translation
            }
            writer.write_bits(BLOCK_TYPE_UNCOMPRESSED, 3);
            // A chunk is at most FRAME_SIZE bytes, far below the 24-bit limit.
            writer.write_bits(chunk.len() as u32, 24);
            writer.align_for_uncompressed_block();
            let mut encoded = writer.into_bytes();
            for _ in 0..3 {
                encoded.extend_from_slice(&1u32.to_le_bytes()); // R0, R1, R2
            }
            encoded.extend_from_slice(chunk);
            if chunk.len() % 2 == 1 {
                encoded.push(0);
            }
            LzxFrame {
                encoded,
                decoded_len: chunk.len(),
            }
        })
        .collect()
}

/// Packs bits into 16-bit little-endian words, most significant bit first.
struct LzxBitWriter {
    bytes: Vec<u8>,
    word: u16,
    bits_in_word: u32,
}

impl LzxBitWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            word: 0,
            bits_in_word: 0,
        }
    }

    /// Writes the low `count` bits of `value`, most significant first.
    fn write_bits(&mut self, value: u32, count: u32) {
        for shift in (0..count).rev() {
            let bit = ((value >> shift) & 1) as u16;
            self.word = (self.word << 1) | bit;
            self.bits_in_word += 1;
            if self.bits_in_word == 16 {
                self.bytes.extend_from_slice(&self.word.to_le_bytes());
                self.word = 0;
                self.bits_in_word = 0;
            }
        }
    }

    /// The alignment before an uncompressed block's registers: 1–16 zero bits, never 0.
    fn align_for_uncompressed_block(&mut self) {
        let padding = 16 - self.bits_in_word;
        self.write_bits(0, padding);
    }

    fn into_bytes(self) -> Vec<u8> {
        debug_assert_eq!(self.bits_in_word, 0, "LZX bit writer left a partial word");
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_lzxd_reference_bytes_for_a_tiny_uncompressed_block() {
        // The "check_uncompressed" vector of the lzxd crate: "abc" in one uncompressed block.
        let frames = encode_uncompressed(b"abc");
        assert_eq!(frames.len(), 1);
        assert_eq!(
            frames[0].encoded,
            [
                0x00, 0x30, 0x30, 0x00, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', b'c', 0
            ]
        );
    }

    #[test]
    fn later_frames_have_no_e8_bit_and_five_bits_of_padding() {
        let data = vec![7u8; FRAME_SIZE + 2];
        let frames = encode_uncompressed(&data);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].decoded_len, FRAME_SIZE);
        assert_eq!(frames[0].encoded.len(), 4 + 12 + FRAME_SIZE);
        // 011 then 24-bit size 2, then 5 zero bits: 0110 0000 0000 0000 | 0000 0000 0100 0000.
        assert_eq!(&frames[1].encoded[..4], &[0x00, 0x60, 0x40, 0x00]);
        assert_eq!(frames[1].encoded.len(), 4 + 12 + 2);
    }

    #[test]
    fn a_header_ending_on_a_word_boundary_gets_a_whole_padding_word() {
        let mut writer = LzxBitWriter::with_capacity(8);
        writer.write_bits(0b101, 16);
        writer.align_for_uncompressed_block();
        assert_eq!(writer.into_bytes(), [0x05, 0x00, 0x00, 0x00]);
    }
}
