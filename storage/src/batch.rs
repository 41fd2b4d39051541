//! Write batches and their encoding (the payload of one WAL record).
//!
//! Encoding (little-endian): `first_seq: u64`, `count: u32`, then `count`
//! operations, each `kind: u8` (1 = put, 0 = delete), `key_len: u16`, key
//! bytes, and for a put `value_len: u32` and value bytes. Operation `i` of
//! the batch gets sequence number `first_seq + i`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::limits::{BATCH_BYTES_MAX, BATCH_OPS_MAX, KEY_BYTES_MAX, VALUE_BYTES_MAX};

const KIND_DELETE: u8 = 0;
const KIND_PUT: u8 = 1;
const BATCH_HEADER_BYTES: usize = 12;

/// A group of puts and deletes applied atomically by [`crate::Db::write`].
/// Later operations on the same key win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `value` under `key`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.bytes += 7 + key.len() + 4 + value.len();
        self.ops.push((key, Some(value)));
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += 7 + key.len();
        self.ops.push((key, None));
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every key and value against the limits in [`crate::limits`].
    #[allow(dead_code)] // Used by the Db.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.ops.len() > BATCH_OPS_MAX {
            return Err(Error::InvalidArgument(format!(
                "batch of {} operations exceeds {BATCH_OPS_MAX}",
                self.ops.len()
            )));
        }
        if self.bytes + BATCH_HEADER_BYTES > BATCH_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "batch of {} bytes exceeds {BATCH_BYTES_MAX}",
                self.bytes
            )));
        }
        for (key, value) in &self.ops {
            if key.len() > KEY_BYTES_MAX {
                return Err(Error::InvalidArgument(format!(
                    "key of {} bytes exceeds {KEY_BYTES_MAX}",
                    key.len()
                )));
            }
            if let Some(v) = value {
                if v.len() > VALUE_BYTES_MAX {
                    return Err(Error::InvalidArgument(format!(
                        "value of {} bytes exceeds {VALUE_BYTES_MAX}",
                        v.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Encodes the batch with its first sequence number into `out`.
    pub(crate) fn encode(&self, first_seq: u64, out: &mut Vec<u8>) {
        out.reserve(BATCH_HEADER_BYTES + self.bytes);
        out.extend_from_slice(&first_seq.to_le_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for (key, value) in &self.ops {
            out.push(if value.is_some() {
                KIND_PUT
            } else {
                KIND_DELETE
            });
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            if let Some(v) = value {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    /// Decodes a batch payload read from `file` at `offset`.
    pub(crate) fn decode(file: &Path, offset: u64, data: &[u8]) -> Result<(u64, WriteBatch)> {
        let bad = |reason: &str| Error::corruption(file, offset, format!("write batch: {reason}"));
        let mut r = Reader { data, pos: 0 };
        let first_seq = r.u64().ok_or_else(|| bad("short header"))?;
        let count = r.u32().ok_or_else(|| bad("short header"))? as usize;
        if count > BATCH_OPS_MAX {
            return Err(bad("too many operations"));
        }
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            let kind = r.u8().ok_or_else(|| bad("short operation"))?;
            let key_len = r.u16().ok_or_else(|| bad("short operation"))? as usize;
            if key_len > KEY_BYTES_MAX {
                return Err(bad("key too long"));
            }
            let key = r.bytes(key_len).ok_or_else(|| bad("short key"))?.to_vec();
            match kind {
                KIND_PUT => {
                    let len = r.u32().ok_or_else(|| bad("short value length"))? as usize;
                    if len > VALUE_BYTES_MAX {
                        return Err(bad("value too long"));
                    }
                    let value = r.bytes(len).ok_or_else(|| bad("short value"))?;
                    batch.put(key, value);
                }
                KIND_DELETE => batch.delete(key),
                _ => return Err(bad("unknown operation kind")),
            }
        }
        if r.pos != data.len() {
            return Err(bad("trailing bytes"));
        }
        if first_seq.checked_add(count as u64).is_none() {
            return Err(bad("sequence number overflow"));
        }
        Ok((first_seq, batch))
    }
}

/// A bounds-checked little-endian reader over untrusted bytes.
#[allow(dead_code)] // Used by the table reader.
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        b.delete(b"b".to_vec());
        let mut buf = Vec::new();
        b.encode(7, &mut buf);
        let (seq, back) = WriteBatch::decode(Path::new("x"), 0, &buf).unwrap();
        assert_eq!((seq, back), (7, b));
        for cut in 0..buf.len() {
            assert!(WriteBatch::decode(Path::new("x"), 0, &buf[..cut]).is_err());
        }
    }
}
