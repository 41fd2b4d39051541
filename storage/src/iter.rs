//! Versioned entries and the merging iterator behind scans and
//! compactions.
//!
//! Every source (memtable, tables) yields entries ordered by user key
//! ascending, then sequence number descending. The merge takes the
//! smallest head of all sources; for each user key it returns the first
//! version at or below the read sequence number, unless that version is a
//! tombstone, and skips the key's older versions.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Bound;

use crate::error::Result;

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: Vec<u8>,
    pub(crate) seq: u64,
    /// `None` is a tombstone.
    pub(crate) value: Option<Vec<u8>>,
}

/// Internal-key order: key ascending, then seq descending.
pub(crate) fn cmp_internal(a_key: &[u8], a_seq: u64, b_key: &[u8], b_seq: u64) -> Ordering {
    a_key.cmp(b_key).then(b_seq.cmp(&a_seq))
}

/// A source of entries in internal-key order.
pub(crate) type Source = Box<dyn Iterator<Item = Result<Entry>> + Send>;

struct Head {
    entry: Entry,
    source: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_internal(
            &self.entry.key,
            self.entry.seq,
            &other.entry.key,
            other.entry.seq,
        )
        .then(self.source.cmp(&other.source))
    }
}

/// Merges sources into one stream of every entry (all versions), in
/// internal-key order. Scans filter it by sequence number; compactions
/// write what survives of it to new tables.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<Head>>,
    started: bool,
}

impl Merge {
    pub(crate) fn new(sources: Vec<Source>) -> Merge {
        Merge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
        }
    }

    fn pull(&mut self, source: usize) -> Result<()> {
        if let Some(next) = self.sources[source].next() {
            self.heap.push(Reverse(Head {
                entry: next?,
                source,
            }));
        }
        Ok(())
    }

    /// The next entry of all sources, or `None` when all are exhausted.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            for s in 0..self.sources.len() {
                self.pull(s)?;
            }
        }
        let Some(Reverse(head)) = self.heap.pop() else {
            return Ok(None);
        };
        self.pull(head.source)?;
        Ok(Some(head.entry))
    }

    /// The key of the next entry, without consuming it.
    fn peek_key(&self) -> Option<&[u8]> {
        self.heap.peek().map(|Reverse(h)| h.entry.key.as_slice())
    }

    fn source_count(&self) -> usize {
        self.sources.len()
    }
}

/// Ascending key/value pairs visible at one sequence number, from a
/// [`crate::Db::scan`] or [`crate::Snapshot::scan`]. Stops after the first
/// error.
pub struct Scan {
    merge: Merge,
    read_seq: u64,
    end: Bound<Vec<u8>>,
    failed: bool,
    done: bool,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("sources", &self.merge.source_count())
            .field("read_seq", &self.read_seq)
            .finish()
    }
}

impl Scan {
    pub(crate) fn new(sources: Vec<Source>, read_seq: u64, end: Bound<Vec<u8>>) -> Scan {
        Scan {
            merge: Merge::new(sources),
            read_seq,
            end,
            failed: false,
            done: false,
        }
    }

    fn past_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_slice(),
            Bound::Excluded(e) => key >= e.as_slice(),
            Bound::Unbounded => false,
        }
    }

    fn advance(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut skip_key: Option<Vec<u8>> = None;
        while let Some(e) = self.merge.next_entry()? {
            if self.past_end(&e.key) {
                self.done = true;
                return Ok(None);
            }
            if e.seq > self.read_seq || skip_key.as_deref() == Some(e.key.as_slice()) {
                continue;
            }
            match e.value {
                Some(v) => {
                    // Older versions of this key are not returned.
                    self.skip_older(&e.key)?;
                    return Ok(Some((e.key, v)));
                }
                None => skip_key = Some(e.key),
            }
        }
        self.done = true;
        Ok(None)
    }

    fn skip_older(&mut self, key: &[u8]) -> Result<()> {
        while self.merge.peek_key() == Some(key) {
            self.merge.next_entry()?;
        }
        Ok(())
    }
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.done {
            return None;
        }
        match self.advance() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
