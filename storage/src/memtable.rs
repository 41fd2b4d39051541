//! The memtable: every version of every key written since it was started.
//!
//! Two hash indexes, chosen per memtable by the keys it receives:
//! - **Hashed** (the start state): while every key is exactly 32 bytes —
//!   the node's blake3-hashed state keys — the index is an
//!   [`OrderedTable`], a robin-hood table whose slot order is key order.
//!   Point lookups are one probe and flushes and scans walk the slots in
//!   key order with no sort.
//! - **General**: the first key of any other length converts the memtable
//!   (once; the cost is bounded by the memtable size) to a SwissTable
//!   ([`hashbrown::HashTable`]) of indices into an arena of keys. Hash
//!   order is not key order, so flushes and scans use a sorted view: the
//!   arena indices sorted by key, built on first need and cached until a
//!   *new* key arrives (more versions of known keys keep it valid).
//!
//! Each key holds all its versions, `(seq, value or tombstone)`, stored
//! oldest first so that the common append (a newer sequence number) is
//! O(1); readers walk them newest first. Every version is kept while the
//! memtable lives (dropping one at insert would need the oldest live
//! snapshot at every write); the flush leaves out the versions no reader
//! can see any more (`flush::write_table`). Once a memtable is full it is
//! frozen (shared, read-only) until a background flush has written it to
//! a table.

use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::OnceLock;

use hashbrown::HashTable;

use crate::iter::Entry;
use crate::ordered_table::{self, OrderedTable};

/// Bytes charged per version on top of its value (seq, tag, vector slot).
const VERSION_OVERHEAD_BYTES: usize = 32;
/// Bytes charged per distinct key on top of its bytes (slot, metadata,
/// versions vector, sorted-view index).
const KEY_OVERHEAD_BYTES: usize = 64;

/// The versions of one key, oldest first; `None` is a tombstone.
type Versions = Vec<(u64, Option<Vec<u8>>)>;

/// Keys of any length: an arena plus a hash index into it.
#[derive(Debug, Default)]
struct General {
    /// Keys and their versions, in order of first write.
    entries: Vec<(Vec<u8>, Versions)>,
    /// Indices into `entries`, hashed by key.
    index: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
    /// Indices into `entries` in ascending key order, built on first need
    /// after a new key; `OnceLock` because frozen memtables are read by
    /// many threads at once.
    sorted: OnceLock<Vec<usize>>,
}

impl General {
    fn find(&self, key: &[u8]) -> Option<&Versions> {
        let hash = self.hasher.hash_one(key);
        let &i = self.index.find(hash, |&i| self.entries[i].0 == key)?;
        Some(&self.entries[i].1)
    }

    /// The versions of `key`, created empty if new; true when new.
    fn entry(&mut self, key: Vec<u8>) -> (&mut Versions, bool) {
        let hash = self.hasher.hash_one(key.as_slice());
        let entries = &self.entries;
        if let Some(&i) = self.index.find(hash, |&i| entries[i].0 == key) {
            return (&mut self.entries[i].1, false);
        }
        let i = self.entries.len();
        // Most keys get one version: room for exactly one (a plain push
        // would allocate room for four, 96 bytes more per key).
        self.entries.push((key, Vec::with_capacity(1)));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(entries[j].0.as_slice()));
        // A new key changes the order; more versions of a key do not.
        self.sorted = OnceLock::new();
        (&mut self.entries[i].1, true)
    }

    fn sorted(&self) -> &[usize] {
        self.sorted.get_or_init(|| {
            let mut order: Vec<usize> = (0..self.entries.len()).collect();
            order.sort_unstable_by(|&a, &b| self.entries[a].0.cmp(&self.entries[b].0));
            order
        })
    }

    /// Keys at or after `start`, ascending, with their versions.
    fn keys_from<'a>(
        &'a self,
        start: Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Versions)> + 'a {
        let sorted = self.sorted();
        let key = |i: usize| self.entries[i].0.as_slice();
        let first = match start {
            Bound::Included(s) => sorted.partition_point(|&i| key(i) < s),
            Bound::Excluded(s) => sorted.partition_point(|&i| key(i) <= s),
            Bound::Unbounded => 0,
        };
        sorted[first..].iter().map(move |&i| {
            let (k, v) = &self.entries[i];
            (k.as_slice(), v)
        })
    }
}

#[derive(Debug)]
enum Index {
    /// Every key so far is 32 bytes.
    Hashed(OrderedTable<Versions>),
    General(General),
}

/// Spilled keys below which the ordered table is kept whatever the share.
const SKEW_SPILLED_MIN: usize = 1024;
/// The ordered table is dropped once more than 1/`SKEW_SPILLED_SHARE` of
/// its keys have spilled.
const SKEW_SPILLED_SHARE: usize = 16;

/// An in-memory map of key versions; see the module docs.
#[derive(Debug)]
pub(crate) struct Memtable {
    index: Index,
    bytes: usize,
}

impl Default for Memtable {
    fn default() -> Self {
        Memtable {
            index: Index::Hashed(OrderedTable::new()),
            bytes: 0,
        }
    }
}

fn satisfies_start(key: &[u8], start: Bound<&[u8]>) -> bool {
    match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    }
}

fn satisfies_end(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    }
}

/// The first 32 bytes of `key`, zero-padded: no 32-byte key at or after
/// `key` sorts below it (a shorter key is a prefix of its padding; a longer
/// one sorts after its own first 32 bytes), so a table range may start here
/// and skip the few entries below the real bound.
fn lower_key32(key: &[u8]) -> ordered_table::Key {
    let mut out = [0u8; ordered_table::KEY_BYTES];
    let n = key.len().min(out.len());
    out[..n].copy_from_slice(&key[..n]);
    out
}

impl Memtable {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Approximate memory used, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        match &self.index {
            Index::Hashed(t) => t.is_empty(),
            Index::General(g) => g.entries.is_empty(),
        }
    }

    /// Whether the 32-byte ordered index is in use (for tests).
    #[cfg(test)]
    fn is_hashed(&self) -> bool {
        matches!(self.index, Index::Hashed(_))
    }

    /// The general index, converting the ordered table into one first if
    /// it is in use (every key moves; done at most once per memtable).
    fn general(index: &mut Index) -> &mut General {
        if let Index::Hashed(table) = index {
            let keys: Vec<ordered_table::Key> = table.iter().map(|(k, _)| *k).collect();
            let mut general = General::default();
            for k in keys {
                if let Some(versions) = table.remove(&k) {
                    *general.entry(k.to_vec()).0 = versions;
                }
            }
            *index = Index::General(general);
        }
        match index {
            Index::General(general) => general,
            Index::Hashed(_) => unreachable!("replaced by a general index just above"),
        }
    }

    /// Records version `seq` of `key`: a value, or a tombstone (`None`).
    pub(crate) fn insert(&mut self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
        // The ordered table assumes keys spread over the whole key space
        // (hashes). Keys written in ascending order, or all under one
        // prefix, pile into one part of it and overflow into its spill
        // B-tree; once a sixteenth of the keys have spilled, the general
        // index (hash table + sorted view) serves this memtable instead.
        if let Index::Hashed(table) = &self.index {
            let spilled = table.spilled_len();
            if spilled >= SKEW_SPILLED_MIN && spilled * SKEW_SPILLED_SHARE > table.len() {
                Self::general(&mut self.index);
            }
        }
        let key_bytes = key.len();
        let key32 = ordered_table::Key::try_from(key.as_slice()).ok();
        let (versions, new_key) = match (&mut self.index, key32) {
            (Index::Hashed(table), Some(k)) => {
                let new_key = !table.contains_key(&k);
                if new_key {
                    table.insert(k, Vec::with_capacity(1)); // See `General::entry`.
                }
                let versions = table.get_mut(&k).expect("present: inserted just above");
                (versions, new_key)
            }
            (index, _) => Self::general(index).entry(key),
        };
        self.bytes += value.as_ref().map_or(0, Vec::len) + VERSION_OVERHEAD_BYTES;
        if new_key {
            self.bytes += key_bytes + KEY_OVERHEAD_BYTES;
        }
        match versions.last() {
            Some(&(last, _)) if last >= seq => {
                // Sequence numbers arrive in increasing order; only a
                // corrupt WAL repeats one, and then the later record wins.
                match versions.binary_search_by_key(&seq, |&(s, _)| s) {
                    Ok(i) => versions[i].1 = value,
                    Err(i) => versions.insert(i, (seq, value)),
                }
            }
            _ => versions.push((seq, value)),
        }
    }

    /// The newest version of `key` at or below `seq`: `Some(None)` is a
    /// tombstone, `None` means this memtable knows nothing of the key.
    pub(crate) fn get(&self, key: &[u8], seq: u64) -> Option<Option<Vec<u8>>> {
        let versions = match &self.index {
            Index::Hashed(table) => table.get(key.try_into().ok()?)?,
            Index::General(general) => general.find(key)?,
        };
        let (_, value) = versions.iter().rev().find(|&&(s, _)| s <= seq)?;
        Some(value.clone())
    }

    /// Keys at or after `start`, ascending, with their versions.
    fn keys_from<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a Versions)> + 'a> {
        match &self.index {
            Index::Hashed(table) => {
                let iter = match start {
                    Bound::Unbounded => table.iter(),
                    Bound::Included(s) | Bound::Excluded(s) => {
                        table.range((Bound::Included(lower_key32(s)), Bound::Unbounded))
                    }
                };
                Box::new(
                    iter.map(|(k, v)| (k.as_slice(), v))
                        .skip_while(move |(k, _)| !satisfies_start(k, start)),
                )
            }
            Index::General(general) => Box::new(general.keys_from(start)),
        }
    }

    /// Whether some key lies in the range (for bulk ingestion).
    pub(crate) fn holds_key_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
        self.keys_from(start)
            .next()
            .is_some_and(|(k, _)| satisfies_end(k, end))
    }

    /// Every version with key in the range, in (key asc, seq desc) order,
    /// copied out (the memtable is bounded by `memtable_bytes`).
    pub(crate) fn entries_from(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        self.keys_from(start)
            .take_while(|(k, _)| satisfies_end(k, end))
            .flat_map(|(k, versions)| {
                versions.iter().rev().map(move |(seq, value)| Entry {
                    key: k.to_vec(),
                    seq: *seq,
                    value: value.clone(),
                })
            })
            .collect()
    }

    /// All versions in table order (key asc, seq desc), borrowed (for
    /// flush).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], u64, Option<&[u8]>)> {
        self.keys_from(Bound::Unbounded).flat_map(|(k, versions)| {
            versions
                .iter()
                .rev()
                .map(move |(seq, value)| (k, *seq, value.as_deref()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ascending_keys_leave_the_ordered_table_and_read_back() {
        let mut m = Memtable::new();
        let n = 200_000u32;
        for i in 0..n {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            m.insert(k.to_vec(), u64::from(i) + 1, Some(vec![1]));
        }
        assert!(
            !m.is_hashed(),
            "ascending keys must switch to the general index"
        );
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&(n / 2).to_be_bytes());
        assert_eq!(m.get(&k, u64::MAX), Some(Some(vec![1])));
        assert_eq!(m.iter().count(), n as usize);
        assert!(m.iter().zip(m.iter().skip(1)).all(|(a, b)| a.0 < b.0));

        // Hashed keys (the node's state keys) keep the ordered table.
        let mut m = Memtable::new();
        for i in 0..n {
            let k = blake3::hash(&i.to_le_bytes());
            m.insert(k.as_bytes().to_vec(), u64::from(i) + 1, Some(vec![1]));
        }
        assert!(m.is_hashed(), "uniform keys must stay in the ordered table");
    }

    #[test]
    fn versions_and_snapshots() {
        let mut m = Memtable::new();
        m.insert(b"a".to_vec(), 1, Some(b"1".to_vec()));
        m.insert(b"a".to_vec(), 3, None);
        m.insert(b"b".to_vec(), 2, Some(b"2".to_vec()));
        assert_eq!(m.get(b"a", 0), None);
        assert_eq!(m.get(b"a", 2), Some(Some(b"1".to_vec())));
        assert_eq!(m.get(b"a", 5), Some(None));
        assert_eq!(m.get(b"c", 5), None);
        let all = m.entries_from(Bound::Excluded(b"a"), Bound::Unbounded);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].key, b"b");
    }

    /// The reference: the B-tree memtable this module replaced.
    type Model = BTreeMap<(Vec<u8>, Reverse<u64>), Option<Vec<u8>>>;

    fn model_get(model: &Model, key: &[u8], seq: u64) -> Option<Option<Vec<u8>>> {
        let ((k, _), v) = model.range((key.to_vec(), Reverse(seq))..).next()?;
        (k.as_slice() == key).then(|| v.clone())
    }

    fn model_entries(model: &Model, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        model
            .iter()
            .filter(|((k, _), _)| satisfies_start(k, start) && satisfies_end(k, end))
            .map(|((k, Reverse(seq)), v)| Entry {
                key: k.clone(),
                seq: *seq,
                value: v.clone(),
            })
            .collect()
    }

    /// A key from a small pool: 32-byte keys, some sharing a 20-byte prefix
    /// (one home slot, so they cluster), or, if `mixed`, keys of
    /// other lengths too, including prefixes of the 32-byte ones.
    fn pool_key(n: u8, mixed: bool) -> Vec<u8> {
        let mut k = blake3::hash(&[n % 24]).as_bytes().to_vec();
        if n % 5 == 0 {
            k[..20].fill(0xab);
        }
        if mixed {
            match n % 4 {
                0 => k.truncate(usize::from(n % 7)),
                1 => k.extend_from_slice(&[n, 0, 1]),
                _ => {}
            }
        }
        k
    }

    fn bound(kind: u8, key: Vec<u8>) -> Bound<Vec<u8>> {
        match kind % 3 {
            0 => Bound::Included(key),
            1 => Bound::Excluded(key),
            _ => Bound::Unbounded,
        }
    }

    fn check(ops: &[(u8, bool, bool)], queries: &[(u8, u8, u8, u8)], mixed: bool) {
        let mut mem = Memtable::new();
        let mut model = Model::new();
        for (seq, &(n, tombstone, repeat_seq)) in (1u64..).zip(ops) {
            // Occasionally reuse a sequence number: the later record wins,
            // as it did in the B-tree.
            let seq = if repeat_seq { seq - 1 } else { seq };
            let key = pool_key(n, mixed);
            let value = (!tombstone).then(|| vec![n; usize::from(n % 9)]);
            mem.insert(key.clone(), seq, value.clone());
            model.insert((key, Reverse(seq)), value);
            if seq % 16 == 0 {
                // Builds (or reuses) the sorted view mid-stream, so later
                // new keys must invalidate it.
                let all = (Bound::Unbounded, Bound::Unbounded);
                assert_eq!(
                    mem.entries_from(all.0, all.1),
                    model_entries(&model, all.0, all.1)
                );
            }
        }
        if !mixed {
            assert!(mem.is_hashed(), "only 32-byte keys: ordered index kept");
        }
        let top = ops.len() as u64 + 1;
        for &(a, b, kinds, seq) in queries {
            let seq = u64::from(seq) % (top + 1);
            for key in [pool_key(a, mixed), pool_key(a, true)] {
                assert_eq!(mem.get(&key, seq), model_get(&model, &key, seq));
            }
            let start = bound(kinds, pool_key(a, true));
            let end = bound(kinds / 3, pool_key(b, true));
            let start = start.as_ref().map(Vec::as_slice);
            let end = end.as_ref().map(Vec::as_slice);
            assert_eq!(
                mem.entries_from(start, end),
                model_entries(&model, start, end)
            );
        }
        let flushed: Vec<_> = mem
            .iter()
            .map(|(k, s, v)| (k.to_vec(), s, v.map(<[u8]>::to_vec)))
            .collect();
        let want: Vec<_> = model
            .iter()
            .map(|((k, Reverse(s)), v)| (k.clone(), *s, v.clone()))
            .collect();
        assert_eq!(flushed, want);
        assert_eq!(mem.is_empty(), model.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn hashed_and_general_memtables_match_a_btreemap(
            ops in proptest::collection::vec((any::<u8>(), any::<bool>(), proptest::bool::weighted(0.05)), 0..120),
            queries in proptest::collection::vec(any::<(u8, u8, u8, u8)>(), 1..40),
        ) {
            check(&ops, &queries, false);
            check(&ops, &queries, true);
        }
    }
}
