//! Versioned entries and the merging iterator behind scans and
//! compactions.
//!
//! Every source (memtable, tables) yields entries ordered by user key
//! ascending, then sequence number descending. The merge takes the
//! smallest head of all sources; for each user key it returns the first
//! version at or below the read sequence number, unless that version is a
//! tombstone, and skips the key's older versions.
//!
//! A backward scan runs the same machinery mirrored: every source yields
//! the exact reverse of internal-key order (key descending, then sequence
//! number *ascending*: a table's decoded block read back to front), the
//! merge takes the largest head, and each key's versions arrive oldest
//! first, so the scan reads a whole key's versions (one key, never more)
//! and keeps the newest at or below the read sequence number.

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
/// Internal-key order, ties by source.
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

/// The merge's heap: `BinaryHeap` pops its greatest element, so a forward
/// merge keeps `Reverse` heads (smallest internal key first) and a
/// backward one plain heads. Two types rather than a direction flag in
/// every comparison: the flag's branch cost forward scans ~3 %.
enum Heap {
    Forward(BinaryHeap<Reverse<Head>>),
    Backward(BinaryHeap<Head>),
}

impl Heap {
    fn push(&mut self, head: Head) {
        match self {
            Heap::Forward(h) => h.push(Reverse(head)),
            Heap::Backward(h) => h.push(head),
        }
    }

    fn pop(&mut self) -> Option<Head> {
        match self {
            Heap::Forward(h) => h.pop().map(|Reverse(head)| head),
            Heap::Backward(h) => h.pop(),
        }
    }

    fn peek(&self) -> Option<&Head> {
        match self {
            Heap::Forward(h) => h.peek().map(|Reverse(head)| head),
            Heap::Backward(h) => h.peek(),
        }
    }
}

/// Merges sources into one stream of every entry (all versions), in
/// internal-key order (or, built with [`Merge::backward`], its reverse).
/// Scans filter it by sequence number; compactions write what survives of
/// it to new tables.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heap: Heap,
    started: bool,
    backward: bool,
}

impl Merge {
    /// A merge of sources in internal-key order.
    pub(crate) fn new(sources: Vec<Source>) -> Merge {
        Merge {
            heap: Heap::Forward(BinaryHeap::with_capacity(sources.len())),
            sources,
            started: false,
            backward: false,
        }
    }

    /// A merge of sources in reverse internal-key order (key descending,
    /// then sequence number ascending), each source in that order too.
    pub(crate) fn backward(sources: Vec<Source>) -> Merge {
        Merge {
            heap: Heap::Backward(BinaryHeap::with_capacity(sources.len())),
            sources,
            started: false,
            backward: true,
        }
    }

    fn pull(&mut self, source: usize) -> Result<()> {
        if let Some(next) = self.sources[source].next() {
            self.heap.push(Head {
                entry: next?,
                source,
            });
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
        let Some(head) = self.heap.pop() else {
            return Ok(None);
        };
        self.pull(head.source)?;
        Ok(Some(head.entry))
    }

    /// The key of the next entry, without consuming it.
    fn peek_key(&self) -> Option<&[u8]> {
        self.heap.peek().map(|h| h.entry.key.as_slice())
    }

    fn source_count(&self) -> usize {
        self.sources.len()
    }
}

/// Key/value pairs visible at one sequence number, in ascending key order
/// (from [`crate::Db::scan`], [`crate::Db::scan_prefix`] and their
/// [`crate::Snapshot`] twins) or descending (from [`crate::Db::scan_rev`],
/// [`crate::Snapshot::scan_rev`]). Each key appears once, with its newest
/// value as of the read sequence number; deleted keys do not appear.
/// Stops after the first error.
///
/// The scan reads the state it was created from: later writes, flushes
/// and compactions do not change what it returns (it holds the tables it
/// reads, and a copy of the memtable range it covers).
pub struct Scan {
    merge: Merge,
    read_seq: u64,
    /// Where the scan stops: the end bound going forward, the start bound
    /// going backward.
    stop: Bound<Vec<u8>>,
    failed: bool,
    done: bool,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("sources", &self.merge.source_count())
            .field("read_seq", &self.read_seq)
            .field("backward", &self.merge.backward)
            .finish()
    }
}

impl Scan {
    /// A forward scan of `sources` (each in internal-key order, starting
    /// at the range's start) up to `end`.
    pub(crate) fn new(sources: Vec<Source>, read_seq: u64, end: Bound<Vec<u8>>) -> Scan {
        Scan {
            merge: Merge::new(sources),
            read_seq,
            stop: end,
            failed: false,
            done: false,
        }
    }

    /// A backward scan of `sources` (each in reverse internal-key order,
    /// starting at the range's end) down to `start`.
    pub(crate) fn backward(sources: Vec<Source>, read_seq: u64, start: Bound<Vec<u8>>) -> Scan {
        Scan {
            merge: Merge::backward(sources),
            read_seq,
            stop: start,
            failed: false,
            done: false,
        }
    }

    fn past_stop(&self, key: &[u8]) -> bool {
        match (&self.stop, self.merge.backward) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(e), false) => key > e.as_slice(),
            (Bound::Excluded(e), false) => key >= e.as_slice(),
            (Bound::Included(s), true) => key < s.as_slice(),
            (Bound::Excluded(s), true) => key <= s.as_slice(),
        }
    }

    fn advance(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.merge.backward {
            return self.advance_backward();
        }
        let mut skip_key: Option<Vec<u8>> = None;
        while let Some(e) = self.merge.next_entry()? {
            if self.past_stop(&e.key) {
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

    /// Backward, a key's versions come oldest first: read them all and
    /// keep the newest at or below the read sequence number.
    fn advance_backward(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        while let Some(first) = self.merge.next_entry()? {
            if self.past_stop(&first.key) {
                self.done = true;
                return Ok(None);
            }
            let Entry { key, seq, value } = first;
            // `None`: no version visible yet; `Some(None)`: a tombstone.
            let mut visible = (seq <= self.read_seq).then_some(value);
            while self.merge.peek_key() == Some(key.as_slice()) {
                let Some(e) = self.merge.next_entry()? else {
                    break;
                };
                if e.seq <= self.read_seq {
                    visible = Some(e.value);
                }
            }
            if let Some(Some(v)) = visible {
                return Ok(Some((key, v)));
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

impl std::iter::FusedIterator for Scan {}
