//! Reads a table file through a memory map. Every block's crc32 is checked
//! before it is parsed; every length and offset is checked against the
//! file before slicing. Bad bytes are `Error::Corruption` naming the file.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use memmap2::Mmap;

use super::block;
use super::bloom::Bloom;
use super::cache::{BlockCache, CachedBlock};
use super::footer::{Footer, FOOTER_BYTES};
use crate::batch::Reader;
use crate::error::{Error, Result};
use crate::iter::Entry;
use crate::limits::KEY_BYTES_MAX;
use crate::version::TableMeta;

#[derive(Debug)]
struct IndexEntry {
    last_key: Vec<u8>,
    offset: u64,
    len: u32,
}

/// An open, immutable table.
///
/// Shared as `Arc<Table>` by the live levels, scans and compactions. Once
/// a compaction has replaced it in the manifest it is marked obsolete,
/// and the file is deleted when the last `Arc` goes (in `Drop`): never
/// while a reader can still reach it.
#[derive(Debug)]
pub(crate) struct Table {
    path: PathBuf,
    number: u64,
    map: Mmap,
    index: Vec<IndexEntry>,
    bloom: Bloom,
    footer: Footer,
    /// The first and last user keys held (a table is never empty).
    smallest: Vec<u8>,
    largest: Vec<u8>,
    size_bytes: u64,
    /// Tombstones among the entries: from the builder for a table just
    /// written, from the manifest at open (0 if it did not record them).
    deletions: u64,
    obsolete: AtomicBool,
    cache: Option<Arc<BlockCache>>,
}

/// The raw bytes of a data block: borrowed from the map (uncompressed,
/// no cache), decompressed for this read, or shared with the cache.
enum Raw<'a> {
    Read(std::borrow::Cow<'a, [u8]>),
    Cached(CachedBlock),
}

impl std::ops::Deref for Raw<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Raw::Read(c) => c,
            Raw::Cached(a) => a,
        }
    }
}

impl Table {
    /// Opens and validates the footer, index and bloom filter of a table.
    /// `keys` is its key range as the manifest records it; without one
    /// (a table recorded before ranges were, or just written) the range is
    /// read from the first data block. Data blocks are read through
    /// `cache` if there is one.
    pub(crate) fn open(
        path: &Path,
        number: u64,
        keys: Option<&(Vec<u8>, Vec<u8>)>,
        cache: Option<Arc<BlockCache>>,
    ) -> Result<Table> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < FOOTER_BYTES as u64 {
            return Err(Error::corruption(path, 0, "table shorter than its footer"));
        }
        // SAFETY: table files are written once, fsynced and never modified
        // or truncated while open (only deleted, which keeps the mapping
        // valid). Another process truncating the file would fault; that is
        // outside the engine's contract (documented in the crate docs).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let footer_at = len - FOOTER_BYTES as u64;
        let footer = Footer::decode(path, footer_at, &map[footer_at as usize..])?;
        let mut t = Table {
            path: path.to_path_buf(),
            number,
            map,
            index: Vec::new(),
            bloom: Bloom::decode(path, 0, &[1, 0])?,
            footer,
            smallest: Vec::new(),
            largest: Vec::new(),
            size_bytes: len,
            deletions: 0,
            obsolete: AtomicBool::new(false),
            cache,
        };
        let index_raw = t.raw_block(footer.index_offset, footer.index_len, footer_at)?;
        t.index = t.decode_index(footer.index_offset, &index_raw, footer.index_offset)?;
        let bloom_raw = t.raw_block(footer.bloom_offset, footer.bloom_len, footer_at)?;
        t.bloom = Bloom::decode(path, footer.bloom_offset, &bloom_raw)?;
        // The key range places the table in its level; an empty table is
        // never written, so one on disk is damage.
        let Some(last) = t.index.last() else {
            return Err(Error::corruption(path, 0, "table has no data blocks"));
        };
        t.largest = last.last_key.clone();
        if let Some((lo, hi)) = keys {
            // A cheap cross-check of the manifest against the table; the
            // smallest key is checked when its block is read.
            if *hi != t.largest {
                return Err(Error::corruption(
                    path,
                    footer.index_offset,
                    "largest key differs from the manifest's",
                ));
            }
            t.smallest = lo.clone();
            return Ok(t);
        }
        let first = t.block(0, false)?;
        let Some(first) = first.first() else {
            return Err(Error::corruption(path, 0, "first data block is empty"));
        };
        if first.key > t.largest {
            return Err(Error::corruption(path, 0, "first key after last key"));
        }
        t.smallest = first.key.clone();
        Ok(t)
    }

    /// The manifest's record of this table.
    pub(crate) fn meta(&self) -> TableMeta {
        TableMeta {
            number: self.number,
            size_bytes: self.size_bytes,
            max_seq: self.footer.max_seq,
            keys: Some((self.smallest.clone(), self.largest.clone())),
            deletions: self.deletions,
        }
    }

    /// Records how many of the entries are tombstones (what the builder
    /// or the manifest counted), before the table is shared.
    pub(crate) fn set_deletions(&mut self, deletions: u64) {
        self.deletions = deletions.min(self.footer.entries);
    }

    /// Whether the table may hold `key` (its bloom filter: no false
    /// negatives).
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.bloom.may_contain(key)
    }

    /// Entries (versions and tombstones) in the table.
    pub(crate) fn entries(&self) -> u64 {
        self.footer.entries
    }

    /// Tombstones among them.
    pub(crate) fn deletions(&self) -> u64 {
        self.deletions
    }

    /// The file number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// The smallest user key in the table.
    pub(crate) fn smallest(&self) -> &[u8] {
        &self.smallest
    }

    /// The largest user key in the table.
    pub(crate) fn largest(&self) -> &[u8] {
        &self.largest
    }

    /// The file's length.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Marks the file for deletion once the last reference is dropped.
    /// Called only after a durable manifest edit stopped naming it.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    fn raw_block(&self, offset: u64, len: u32, limit: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(u64::from(len));
        if end.is_none_or(|e| e > limit) {
            return Err(Error::corruption(
                &self.path,
                offset,
                format!("block of {len} bytes at {offset} runs past byte {limit}"),
            ));
        }
        let framed = &self.map[offset as usize..(offset + u64::from(len)) as usize];
        Ok(block::unframe(&self.path, offset, framed)?.into_owned())
    }

    fn decode_index(&self, at: u64, raw: &[u8], data_end: u64) -> Result<Vec<IndexEntry>> {
        let bad = |reason: &str| Error::corruption(&self.path, at, format!("index: {reason}"));
        let mut r = Reader { data: raw, pos: 0 };
        let mut out: Vec<IndexEntry> = Vec::new();
        let mut expected_offset = 0u64;
        while r.pos < raw.len() {
            let key_len = r.u16().ok_or_else(|| bad("short entry"))? as usize;
            if key_len > KEY_BYTES_MAX {
                return Err(bad("key too long"));
            }
            let last_key = r.bytes(key_len).ok_or_else(|| bad("short key"))?.to_vec();
            let _last_seq = r.u64().ok_or_else(|| bad("short entry"))?;
            let offset = r.u64().ok_or_else(|| bad("short entry"))?;
            let len = r.u32().ok_or_else(|| bad("short entry"))?;
            if offset != expected_offset {
                return Err(bad("blocks not contiguous"));
            }
            expected_offset = offset + u64::from(len);
            if expected_offset > data_end {
                return Err(bad("block past the data region"));
            }
            if out.last().is_some_and(|p| p.last_key > last_key) {
                return Err(bad("keys out of order"));
            }
            out.push(IndexEntry {
                last_key,
                offset,
                len,
            });
        }
        Ok(out)
    }

    /// The checked, decompressed bytes of data block `i`: through the
    /// cache for a user read (`use_cache`), else straight from the file.
    fn data_block(&self, i: usize, use_cache: bool) -> Result<Raw<'_>> {
        let e = &self.index[i];
        let cache = self.cache.as_ref().filter(|_| use_cache);
        if let Some(hit) = cache.and_then(|c| c.get(self.number, e.offset)) {
            return Ok(Raw::Cached(hit));
        }
        let end = e.offset + u64::from(e.len);
        if end > self.footer.index_offset {
            return Err(Error::corruption(
                &self.path,
                e.offset,
                "block past the data region",
            ));
        }
        let framed = &self.map[e.offset as usize..end as usize];
        let raw = block::unframe(&self.path, e.offset, framed)?;
        match cache {
            Some(cache) => {
                let shared: CachedBlock = Arc::from(&*raw);
                cache.insert(self.number, e.offset, Arc::clone(&shared));
                Ok(Raw::Cached(shared))
            }
            _ => Ok(Raw::Read(raw)),
        }
    }

    /// Decoded entries of data block `i`.
    fn block(&self, i: usize, use_cache: bool) -> Result<Vec<Entry>> {
        let raw = self.data_block(i, use_cache)?;
        block::decode(&self.path, self.index[i].offset, &raw)
    }

    /// First block whose last key is >= `key`.
    fn first_block_for(&self, key: &[u8]) -> usize {
        self.index.partition_point(|e| e.last_key.as_slice() < key)
    }

    /// The newest version of `key` at or below `seq`: `Some(None)` is a
    /// tombstone, `None` means the table has no visible version.
    pub(crate) fn get(&self, key: &[u8], seq: u64) -> Result<Option<Option<Vec<u8>>>> {
        if !self.bloom.may_contain(key) {
            return Ok(None);
        }
        for i in self.first_block_for(key)..self.index.len() {
            let raw = self.data_block(i, true)?;
            match block::get(&self.path, self.index[i].offset, &raw, key, seq)? {
                block::Lookup::Found(v) => return Ok(Some(v)),
                block::Lookup::Absent => return Ok(None),
                block::Lookup::Next => {}
            }
        }
        Ok(None)
    }

    /// Entries from the first key within `start`, in internal-key order,
    /// reading data blocks through the block cache.
    pub(crate) fn iter_from(self: &Arc<Self>, start: Bound<&[u8]>) -> TableIter {
        let mut it = self.iter_uncached(start);
        it.use_cache = true;
        it
    }

    /// As [`Table::iter_from`], but bypassing the block cache (a
    /// compaction's one pass over cold data would evict the hot set).
    pub(crate) fn iter_uncached(self: &Arc<Self>, start: Bound<&[u8]>) -> TableIter {
        let (block, skip_to): (usize, Option<(Vec<u8>, bool)>) = match start {
            Bound::Unbounded => (0, None),
            Bound::Included(k) => (self.first_block_for(k), Some((k.to_vec(), true))),
            Bound::Excluded(k) => (self.first_block_for(k), Some((k.to_vec(), false))),
        };
        TableIter {
            table: Arc::clone(self),
            next_block: block,
            entries: Vec::new().into_iter(),
            skip_to,
            failed: false,
            use_cache: false,
        }
    }
}

impl Table {
    /// Entries from the last key within `end` down to the first, in
    /// reverse internal-key order (key descending, then sequence number
    /// ascending), one decoded block at a time, through the block cache.
    pub(crate) fn iter_rev_from(self: &Arc<Self>, end: Bound<&[u8]>) -> TableIterRev {
        // Blocks after the first one whose last key passes `end` hold
        // only keys past it.
        let (blocks, skip_from) = match end {
            Bound::Unbounded => (self.index.len(), None),
            Bound::Included(k) => (
                self.index.partition_point(|e| e.last_key.as_slice() <= k) + 1,
                Some((k.to_vec(), true)),
            ),
            Bound::Excluded(k) => (
                self.index.partition_point(|e| e.last_key.as_slice() < k) + 1,
                Some((k.to_vec(), false)),
            ),
        };
        // A table wholly past `end` reads no block at all.
        let past_end = match end {
            Bound::Included(k) => self.smallest.as_slice() > k,
            Bound::Excluded(k) => self.smallest.as_slice() >= k,
            Bound::Unbounded => false,
        };
        TableIterRev {
            table: Arc::clone(self),
            blocks_left: if past_end {
                0
            } else {
                blocks.min(self.index.len())
            },
            entries: Vec::new().into_iter().rev(),
            skip_from,
            failed: false,
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // A failed delete only leaves a file the next open deletes
            // (the manifest no longer names it).
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Iterates a table's entries one decoded block at a time.
pub(crate) struct TableIter {
    table: Arc<Table>,
    next_block: usize,
    entries: std::vec::IntoIter<Entry>,
    skip_to: Option<(Vec<u8>, bool)>,
    failed: bool,
    use_cache: bool,
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(e) = self.entries.next() {
                if let Some((k, inclusive)) = &self.skip_to {
                    let before = if *inclusive { e.key < *k } else { e.key <= *k };
                    if before {
                        continue;
                    }
                    self.skip_to = None;
                }
                return Some(Ok(e));
            }
            if self.next_block >= self.table.index.len() {
                return None;
            }
            match self.table.block(self.next_block, self.use_cache) {
                Ok(entries) => self.entries = entries.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            self.next_block += 1;
        }
    }
}

/// Iterates a table's entries backward, one decoded block at a time.
pub(crate) struct TableIterRev {
    table: Arc<Table>,
    /// Blocks `0..blocks_left` are still to be read, the last one first.
    blocks_left: usize,
    entries: std::iter::Rev<std::vec::IntoIter<Entry>>,
    /// The end bound (key, inclusive) until an entry within it is seen.
    skip_from: Option<(Vec<u8>, bool)>,
    failed: bool,
}

impl Iterator for TableIterRev {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(e) = self.entries.next() {
                if let Some((k, inclusive)) = &self.skip_from {
                    let past = if *inclusive { e.key > *k } else { e.key >= *k };
                    if past {
                        continue;
                    }
                    self.skip_from = None;
                }
                return Some(Ok(e));
            }
            if self.blocks_left == 0 {
                return None;
            }
            self.blocks_left -= 1;
            match self.table.block(self.blocks_left, true) {
                Ok(entries) => self.entries = entries.into_iter().rev(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
