//! Framed, checksummed records: the shared format of the WAL and the
//! manifest. A record is `len: u32 LE`, `crc32: u32 LE` (of the payload),
//! then `len` payload bytes.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of a record header (length + crc32).
pub(crate) const HEADER_BYTES: usize = 8;

/// Appends one framed record of `payload` to `out`.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= u32::MAX as usize,
        "record payload too long"
    );
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// How a log read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Every byte was part of a valid record.
    Clean,
    /// The last record was incomplete or zero-filled (a crash mid-append)
    /// and starts at this offset; everything before it is valid.
    Torn(u64),
    /// A bad record with more bytes after it, at this offset (returned only
    /// in best-effort mode; otherwise it is an error).
    Corrupt(u64),
}

/// Record payloads with their offsets in the file.
pub(crate) type Records<'a> = Vec<(u64, &'a [u8])>;

/// Splits `data` (all bytes of the log `file`) into record payloads.
///
/// An incomplete final record, or a tail of zero bytes, is a torn tail: the
/// crash happened during the last append, which was never acknowledged. A
/// record failing its checksum with further bytes after it is corruption:
/// an `Err` naming the offset, unless `best_effort`, which stops there.
pub(crate) fn split<'a>(
    file: &Path,
    data: &'a [u8],
    payload_bytes_max: usize,
    best_effort: bool,
) -> Result<(Records<'a>, Tail)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.iter().all(|&b| b == 0) {
            return Ok((out, Tail::Torn(pos as u64)));
        }
        if rest.len() < HEADER_BYTES {
            return Ok((out, Tail::Torn(pos as u64)));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let bad = if len == 0 || len > payload_bytes_max {
            Some(format!(
                "record length {len} outside 1..={payload_bytes_max}"
            ))
        } else if rest.len() - HEADER_BYTES < len {
            return Ok((out, Tail::Torn(pos as u64)));
        } else if crc32fast::hash(&rest[HEADER_BYTES..HEADER_BYTES + len]) != crc {
            if HEADER_BYTES + len == rest.len() {
                // The final record, cut short by a crash: never acknowledged.
                return Ok((out, Tail::Torn(pos as u64)));
            }
            Some("record checksum mismatch".to_string())
        } else {
            None
        };
        if let Some(reason) = bad {
            if best_effort {
                return Ok((out, Tail::Corrupt(pos as u64)));
            }
            return Err(Error::corruption(file, pos as u64, reason));
        }
        out.push((pos as u64, &rest[HEADER_BYTES..HEADER_BYTES + len]));
        pos += HEADER_BYTES + len;
    }
    Ok((out, Tail::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode(b"one", &mut buf);
        encode(b"two", &mut buf);
        let full = buf.len();
        let (recs, tail) = split(Path::new("x"), &buf, 100, false).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(tail, Tail::Clean);
        let (recs, tail) = split(Path::new("x"), &buf[..full - 1], 100, false).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(tail, Tail::Torn(11));
        buf.extend_from_slice(&[0; 20]);
        let (recs, tail) = split(Path::new("x"), &buf, 100, false).unwrap();
        assert_eq!((recs.len(), tail), (2, Tail::Torn(full as u64)));
    }

    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let mut buf = Vec::new();
        encode(b"one", &mut buf);
        encode(b"two", &mut buf);
        buf[9] ^= 1;
        assert!(split(Path::new("x"), &buf, 100, false).is_err());
        let (recs, tail) = split(Path::new("x"), &buf, 100, true).unwrap();
        assert_eq!((recs.len(), tail), (0, Tail::Corrupt(0)));
    }
}
