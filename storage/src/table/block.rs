//! Data blocks: prefix-compressed entries with restart points, and the
//! physical framing (compression byte + crc32) shared by every block.
//!
//! Entry: `shared: u16`, `unshared: u16`, `value_len: u32`, `seq: u64`,
//! `kind: u8` (1 = put, 0 = tombstone), `unshared` key bytes, `value_len`
//! value bytes. Every [`BLOCK_RESTART_INTERVAL`] entries the key is stored
//! whole (`shared = 0`) and its offset recorded. Trailer: the restart
//! offsets (`u32` each), then their count (`u32`).
//!
//! On disk a block is `payload`, `compression: u8` (0 = none, 1 = zstd),
//! `crc32: u32` of payload and compression byte. A zstd payload is
//! `raw_len: u32` followed by one zstd frame.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;

use crate::batch::Reader;
use crate::error::{Error, Result};
use crate::iter::Entry;
use crate::limits::{BLOCK_BYTES_MAX, BLOCK_RESTART_INTERVAL, KEY_BYTES_MAX};

const ENTRY_HEADER_BYTES: usize = 17;
/// Bytes after a block's payload: compression byte and crc32.
pub(crate) const BLOCK_TRAILER_BYTES: usize = 5;
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// Builds one data block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    last_key: Vec<u8>,
    count: usize,
}

impl BlockBuilder {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the finished block will take before framing.
    pub(crate) fn size_bytes(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Adds an entry; entries must come in internal-key order.
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, value: Option<&[u8]>) {
        assert!(key.len() <= KEY_BYTES_MAX, "key length checked at write");
        let shared = if self.count % BLOCK_RESTART_INTERVAL == 0 {
            self.restarts.push(self.buf.len() as u32);
            0
        } else {
            key.iter()
                .zip(&self.last_key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let v = value.unwrap_or(&[]);
        self.buf.extend_from_slice(&(shared as u16).to_le_bytes());
        self.buf
            .extend_from_slice(&((key.len() - shared) as u16).to_le_bytes());
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.push(u8::from(value.is_some()));
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(v);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.count += 1;
    }

    /// The block contents (entries and restart trailer); resets the builder.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.count = 0;
        out
    }
}

thread_local! {
    /// One zstd context per thread, made on first use and reused for every
    /// block: `zstd::bulk::{compress, decompress}` build a fresh context
    /// per call, and for 4 KiB blocks building it (allocating and zeroing
    /// its tables) cost more than the work itself: random reads of zstd
    /// tables ran at half RocksDB's rate until contexts were reused.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `raw` compressed at `level` with this thread's context.
fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("set just above");
        c.compress(raw)
    })
}

/// `payload` decompressed into at most `raw_len` bytes with this thread's
/// context.
fn decompress(payload: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut()
            .expect("set just above")
            .decompress(payload, raw_len)
    })
}

/// Frames `raw` for disk, compressing with zstd at `zstd_level` if given
/// and if that makes it smaller.
pub(crate) fn frame(raw: &[u8], zstd_level: Option<i32>, out: &mut Vec<u8>) {
    let start = out.len();
    let mut kind = COMPRESSION_NONE;
    if let Some(level) = zstd_level {
        if let Ok(z) = compress(raw, level) {
            if z.len() + 4 < raw.len() {
                out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                out.extend_from_slice(&z);
                kind = COMPRESSION_ZSTD;
            }
        }
    }
    if kind == COMPRESSION_NONE {
        out.extend_from_slice(raw);
    }
    out.push(kind);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the crc of the framed block `framed` (at `offset` in `file`)
/// and returns its raw contents, decompressed if needed.
pub(crate) fn unframe<'a>(file: &Path, offset: u64, framed: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    let bad = |reason: &str| Error::corruption(file, offset, format!("block: {reason}"));
    if framed.len() < BLOCK_TRAILER_BYTES || framed.len() > BLOCK_BYTES_MAX {
        return Err(bad("length out of range"));
    }
    let (body, crc) = framed.split_at(framed.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    let (payload, kind) = body.split_at(body.len() - 1);
    match kind[0] {
        COMPRESSION_NONE => Ok(Cow::Borrowed(payload)),
        COMPRESSION_ZSTD => {
            let mut r = Reader {
                data: payload,
                pos: 0,
            };
            let raw_len = r.u32().ok_or_else(|| bad("short zstd header"))? as usize;
            if raw_len > BLOCK_BYTES_MAX {
                return Err(bad("decompressed length too large"));
            }
            let raw = decompress(&payload[4..], raw_len).map_err(|e| bad(&format!("zstd: {e}")))?;
            if raw.len() != raw_len {
                return Err(bad("decompressed length mismatch"));
            }
            Ok(Cow::Owned(raw))
        }
        _ => Err(bad("unknown compression")),
    }
}

/// Decodes every entry of a raw data block, validating all lengths and the
/// restart points.
pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Vec<Entry>> {
    let bad = |reason: &str| Error::corruption(file, offset, format!("data block: {reason}"));
    if raw.len() < 4 {
        return Err(bad("too short"));
    }
    let n = u32::from_le_bytes(raw[raw.len() - 4..].try_into().expect("4 bytes")) as usize;
    let trailer = n
        .checked_mul(4)
        .and_then(|t| t.checked_add(4))
        .filter(|&t| t <= raw.len())
        .ok_or_else(|| bad("restart count too large"))?;
    let entries_end = raw.len() - trailer;
    let mut restarts = Reader {
        data: &raw[entries_end..raw.len() - 4],
        pos: 0,
    };
    let mut next_restart = restarts.u32();
    let mut r = Reader {
        data: &raw[..entries_end],
        pos: 0,
    };
    let mut out: Vec<Entry> = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    while r.pos < entries_end {
        let at_restart = next_restart == Some(r.pos as u32);
        if at_restart {
            next_restart = restarts.u32();
        }
        let h = r
            .bytes(ENTRY_HEADER_BYTES)
            .ok_or_else(|| bad("short entry"))?;
        let shared = u16::from_le_bytes([h[0], h[1]]) as usize;
        let unshared = u16::from_le_bytes([h[2], h[3]]) as usize;
        let value_len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let kind = h[16];
        if shared > key.len() || (at_restart && shared != 0) || shared + unshared > KEY_BYTES_MAX {
            return Err(bad("bad key prefix"));
        }
        key.truncate(shared);
        key.extend_from_slice(r.bytes(unshared).ok_or_else(|| bad("short key"))?);
        let value = r.bytes(value_len).ok_or_else(|| bad("short value"))?;
        let value = match kind {
            1 => Some(value.to_vec()),
            0 if value_len == 0 => None,
            _ => return Err(bad("bad entry kind")),
        };
        if let Some(prev) = out.last() {
            if crate::iter::cmp_internal(&prev.key, prev.seq, &key, seq).is_ge() {
                return Err(bad("entries out of order"));
            }
        }
        out.push(Entry {
            key: key.clone(),
            seq,
            value,
        });
    }
    if next_restart.is_some() || out.is_empty() {
        return Err(bad("restart points do not match entries"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_frame_decode() {
        let mut b = BlockBuilder::default();
        for i in 0..100u32 {
            let key = format!("key{i:05}");
            b.add(
                key.as_bytes(),
                7,
                (i % 3 != 0).then_some(&b"vvvvvvvvvv"[..]),
            );
        }
        let raw = b.finish();
        for level in [None, Some(3)] {
            let mut framed = Vec::new();
            frame(&raw, level, &mut framed);
            let back = unframe(Path::new("t"), 0, &framed).unwrap();
            let entries = decode(Path::new("t"), 0, &back).unwrap();
            assert_eq!(entries.len(), 100);
            assert_eq!(entries[5].key, b"key00005");
            assert_eq!(entries[6].value, None);
            for i in 0..framed.len() {
                let mut bad = framed.clone();
                bad[i] ^= 0x40;
                assert!(unframe(Path::new("t"), 0, &bad).is_err());
            }
        }
        for cut in 0..raw.len() {
            let _ = decode(Path::new("t"), 0, &raw[..cut]);
        }
    }
}

/// The outcome of looking a key up in one data block.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The newest visible version: a value or a tombstone (`None`).
    Found(Option<Vec<u8>>),
    /// The key has no visible version here or in any later block.
    Absent,
    /// The block ended on versions of the key newer than the read
    /// sequence number: look in the next block.
    Next,
}

/// Finds the newest version of `key` at or below `seq` in a raw data block
/// (crc already checked): binary search over the restart points, then a
/// scan of at most one restart interval onwards, allocating only the
/// result. Lengths are checked; bad ones are corruption.
pub(crate) fn get(file: &Path, offset: u64, raw: &[u8], key: &[u8], seq: u64) -> Result<Lookup> {
    let bad = |reason: &str| Error::corruption(file, offset, format!("data block: {reason}"));
    if raw.len() < 4 {
        return Err(bad("too short"));
    }
    let n = u32::from_le_bytes(raw[raw.len() - 4..].try_into().expect("4 bytes")) as usize;
    let trailer = n
        .checked_mul(4)
        .and_then(|t| t.checked_add(4))
        .filter(|&t| t <= raw.len())
        .ok_or_else(|| bad("restart count too large"))?;
    let entries_end = raw.len() - trailer;
    let restart = |i: usize| -> usize {
        let at = entries_end + 4 * i;
        u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes")) as usize
    };
    let restart_key = |off: usize| -> Result<&[u8]> {
        let h = raw
            .get(off..off + ENTRY_HEADER_BYTES)
            .filter(|_| off + ENTRY_HEADER_BYTES <= entries_end)
            .ok_or_else(|| bad("restart past entries"))?;
        let unshared = u16::from_le_bytes([h[2], h[3]]) as usize;
        if h[0] != 0 || h[1] != 0 {
            return Err(bad("restart entry shares a prefix"));
        }
        let start = off + ENTRY_HEADER_BYTES;
        raw.get(start..start + unshared)
            .filter(|_| start + unshared <= entries_end)
            .ok_or_else(|| bad("short restart key"))
    };
    // Number of restarts whose key is < `key`.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if restart_key(restart(mid))? < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut pos = if lo == 0 { 0 } else { restart(lo - 1) };
    let mut cur: Vec<u8> = Vec::with_capacity(key.len());
    while pos < entries_end {
        let h = raw
            .get(pos..pos + ENTRY_HEADER_BYTES)
            .ok_or_else(|| bad("short entry"))?;
        let shared = u16::from_le_bytes([h[0], h[1]]) as usize;
        let unshared = u16::from_le_bytes([h[2], h[3]]) as usize;
        let value_len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let entry_seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let kind = h[16];
        if shared > cur.len() {
            return Err(bad("bad key prefix"));
        }
        let key_start = pos + ENTRY_HEADER_BYTES;
        let value_start = key_start + unshared;
        let end = value_start
            .checked_add(value_len)
            .filter(|&e| e <= entries_end)
            .ok_or_else(|| bad("entry past block end"))?;
        cur.truncate(shared);
        cur.extend_from_slice(&raw[key_start..value_start]);
        match cur.as_slice().cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Greater => return Ok(Lookup::Absent),
            std::cmp::Ordering::Equal if entry_seq <= seq => {
                return match kind {
                    1 => Ok(Lookup::Found(Some(raw[value_start..end].to_vec()))),
                    0 => Ok(Lookup::Found(None)),
                    _ => Err(bad("bad entry kind")),
                };
            }
            std::cmp::Ordering::Equal => {}
        }
        pos = end;
    }
    Ok(Lookup::Next)
}

#[cfg(test)]
mod get_tests {
    use super::*;

    #[test]
    fn get_matches_decode_for_every_key_and_seq() {
        let mut b = BlockBuilder::default();
        for i in 0..200u32 {
            let key = format!("key{:05}", i / 3);
            let seq = 1000 - u64::from(i % 3) * 10;
            b.add(key.as_bytes(), seq, (i % 7 != 0).then_some(&b"value"[..]));
        }
        let raw = b.finish();
        let entries = decode(Path::new("t"), 0, &raw).unwrap();
        for probe in 0..70u32 {
            let key = format!("key{probe:05}");
            for seq in [0, 975, 985, 995, 2000] {
                let want = entries
                    .iter()
                    .find(|e| e.key == key.as_bytes() && e.seq <= seq)
                    .map(|e| e.value.clone());
                let got = get(Path::new("t"), 0, &raw, key.as_bytes(), seq).unwrap();
                match (want, got) {
                    (Some(v), Lookup::Found(g)) => assert_eq!(v, g),
                    (None, Lookup::Absent | Lookup::Next) => {}
                    (w, g) => panic!("{key} @ {seq}: want {w:?}, got {g:?}"),
                }
            }
        }
        for cut in 0..raw.len() {
            let _ = get(Path::new("t"), 0, &raw[..cut], b"key00030", 5000);
        }
    }
}
