//! The fixed-size table footer, the last [`FOOTER_BYTES`] of a table file.
//!
//! Layout (little-endian): `index_offset: u64`, `index_len: u32`,
//! `bloom_offset: u64`, `bloom_len: u32`, `entries: u64`, `max_seq: u64`,
//! `format_version: u32`, `crc32: u32` (of the 44 bytes before it),
//! `magic: u64`.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of the footer.
pub(crate) const FOOTER_BYTES: usize = 56;
/// Table magic number: "STRATASST" squeezed into 8 bytes.
pub(crate) const MAGIC: u64 = 0x5453_5341_5441_5254;
/// The only table format version so far.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Where the index and bloom blocks are, and table totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index_offset: u64,
    pub(crate) index_len: u32,
    pub(crate) bloom_offset: u64,
    pub(crate) bloom_len: u32,
    pub(crate) entries: u64,
    pub(crate) max_seq: u64,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_BYTES] {
        let mut out = [0u8; FOOTER_BYTES];
        out[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.index_len.to_le_bytes());
        out[12..20].copy_from_slice(&self.bloom_offset.to_le_bytes());
        out[20..24].copy_from_slice(&self.bloom_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.entries.to_le_bytes());
        out[32..40].copy_from_slice(&self.max_seq.to_le_bytes());
        out[40..44].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        out[48..56].copy_from_slice(&MAGIC.to_le_bytes());
        out
    }

    /// Parses and checks the footer at `offset` of `file`.
    pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Footer> {
        let bad = |reason: &str| Error::corruption(file, offset, format!("footer: {reason}"));
        if raw.len() != FOOTER_BYTES {
            return Err(bad("wrong length"));
        }
        let f = Footer {
            index_offset: u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes")),
            index_len: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
            bloom_offset: u64::from_le_bytes(raw[12..20].try_into().expect("8 bytes")),
            bloom_len: u32::from_le_bytes(raw[20..24].try_into().expect("4 bytes")),
            entries: u64::from_le_bytes(raw[24..32].try_into().expect("8 bytes")),
            max_seq: u64::from_le_bytes(raw[32..40].try_into().expect("8 bytes")),
        };
        let version = u32::from_le_bytes(raw[40..44].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(raw[44..48].try_into().expect("4 bytes"));
        let magic = u64::from_le_bytes(raw[48..56].try_into().expect("8 bytes"));
        if magic != MAGIC {
            return Err(bad("bad magic number (not a Strata table)"));
        }
        if crc32fast::hash(&raw[..44]) != crc {
            return Err(bad("checksum mismatch"));
        }
        if version != FORMAT_VERSION {
            return Err(bad(&format!("unsupported format version {version}")));
        }
        Ok(f)
    }
}
