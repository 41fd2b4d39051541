//! The memtable: every version of every key written since the last flush.
//!
//! Choice made here (documented limit): a `BTreeMap` keyed by
//! `(user key, Reverse(seq))`, so all versions of a key sit together, newest
//! first, and snapshots read at a sequence number. The planned design
//! (issue 3) is a robin-hood hash table for point lookups plus the
//! [`crate::ordered_table::OrderedTable`] for 32-byte hashed keys; the
//! B-tree was chosen to land a correct engine within the time box, and
//! sits behind this small API so it can be swapped without touching the
//! rest of the engine.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::iter::Entry;

/// Bytes charged per version on top of key and value (node, seq, kind).
const VERSION_OVERHEAD_BYTES: usize = 48;

/// A user key and a sequence number, ordered key ascending, seq descending.
type InternalKey = (Vec<u8>, Reverse<u64>);

/// An in-memory sorted map of versions.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    map: BTreeMap<InternalKey, Option<Vec<u8>>>,
    bytes: usize,
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
        self.map.is_empty()
    }

    /// Records version `seq` of `key`: a value, or a tombstone (`None`).
    pub(crate) fn insert(&mut self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len) + VERSION_OVERHEAD_BYTES;
        // Sequence numbers are unique, so nothing is replaced (a corrupt
        // WAL with a repeated number just keeps its later record).
        self.map.insert((key, Reverse(seq)), value);
    }

    /// The newest version of `key` at or below `seq`: `Some(None)` is a
    /// tombstone, `None` means this memtable knows nothing of the key.
    pub(crate) fn get(&self, key: &[u8], seq: u64) -> Option<Option<Vec<u8>>> {
        let from = (key.to_vec(), Reverse(seq));
        let ((k, _), v) = self.map.range(from..).next()?;
        (k.as_slice() == key).then(|| v.clone())
    }

    /// Every version with key at or after `start`, in (key asc, seq desc)
    /// order, copied out (the memtable is bounded by `memtable_bytes`).
    pub(crate) fn entries_from(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        let lower = match start {
            Bound::Included(k) => Bound::Included((k.to_vec(), Reverse(u64::MAX))),
            Bound::Excluded(k) => Bound::Excluded((k.to_vec(), Reverse(0))),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.map
            .range((lower, Bound::Unbounded))
            .take_while(|((k, _), _)| match end {
                Bound::Included(e) => k.as_slice() <= e,
                Bound::Excluded(e) => k.as_slice() < e,
                Bound::Unbounded => true,
            })
            .map(|((k, Reverse(seq)), v)| Entry {
                key: k.clone(),
                seq: *seq,
                value: v.clone(),
            })
            .collect()
    }

    /// All versions in table order, borrowed (for flush).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], u64, Option<&[u8]>)> {
        self.map
            .iter()
            .map(|((k, Reverse(seq)), v)| (k.as_slice(), *seq, v.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
