//! An ordered robin-hood hash table for uniformly distributed 32-byte keys.
//!
//! Keys here are already hashes (blake3 outputs: transaction ids, hashed state
//! keys), so the table does not hash them again: a key's *home slot* is its top
//! `log2(home slots)` bits. Homes are therefore monotonic in the key, and the
//! table keeps every cluster sorted by key (robin-hood with ties broken by the
//! full key, i.e. Amble & Knuth's "ordered hash table"). The slot array is then
//! a sorted array with gaps: iterating the slots in order visits the keys in
//! ascending order with no sort, and a `range` starts at the start key's home.
//!
//! Design decisions:
//! - **A compact metadata array beside the slots.** Each slot has a 2-byte
//!   meta word: its displacement from home (0 = empty) and a 10-bit *tag*, the
//!   key bits right after the home bits. `(home, tag)` orders entries exactly
//!   like their keys unless two share home and tag (1 in 2^10), so probing,
//!   finding the insertion point and proving a key absent read only the meta
//!   array — 2 bytes a slot, small enough to stay in cache, where the slots
//!   (key + value) are not. An insert of a new key then costs stores to the
//!   slot array but no load from it, and a lookup loads exactly one slot. This
//!   is what lets the table beat SIMD-probed general hash maps that must hash
//!   the key first.
//! - **No wrap-around.** The arrays have `DISPLACEMENT_MAX` extra slots after
//!   the last home slot (the overflow area), so a cluster near the end runs into
//!   the overflow area instead of wrapping to the front, which would break the
//!   ordering.
//! - **Bounded probing, even for adversarial keys.** No entry sits more than
//!   `DISPLACEMENT_MAX` slots from its home. Keys that share a long prefix all
//!   have one home; once a cluster cannot take another key within that bound, the
//!   key goes to a *spill map* (a `BTreeMap`) instead. Lookups probe at most
//!   `DISPLACEMENT_MAX + 1` slots and only then, if the spill map is non-empty,
//!   look there: slower for adversarial input, never wrong, never unbounded.
//!   With uniform keys the spill map stays empty (the probability of a
//!   displacement above 62 at 3/4 load is vanishingly small).
//! - **Growth, not a fixed capacity.** The table doubles when the slot array
//!   would pass 3/4 load. Because slot order is key order, growth is one
//!   linear merge pass (each key goes to `max(home, previous slot + 1)`), no
//!   re-probing. Callers that know their size (the mempool, a memtable) use
//!   [`OrderedTable::with_capacity`] and never grow. Growth is counted against
//!   the keys in the slot array only, so adversarial keys that pile into the
//!   spill map do not inflate the slot array.
//! - **Backward-shift deletion**: no tombstones, so lookups of absent keys stop
//!   at the first empty slot or the first larger key.
//!
//! # Example
//! ```
//! use strata_storage::ordered_table::OrderedTable;
//!
//! let mut table = OrderedTable::with_capacity(4);
//! let a = *blake3::hash(b"a").as_bytes();
//! let b = *blake3::hash(b"b").as_bytes();
//! assert_eq!(table.insert(a, 1u64), None);
//! assert_eq!(table.insert(b, 2), None);
//! assert_eq!(table.insert(a, 3), Some(1));
//! assert_eq!(table.get(&a), Some(&3));
//! let keys: Vec<_> = table.iter().map(|(k, _)| *k).collect();
//! let mut sorted = vec![a, b];
//! sorted.sort();
//! assert_eq!(keys, sorted);
//! assert_eq!(table.remove(&b), Some(2));
//! assert_eq!(table.len(), 1);
//! ```

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::{Bound, RangeBounds};

/// Key width in bytes.
pub const KEY_BYTES: usize = 32;

/// A table key: 32 bytes, expected to be uniformly distributed.
pub type Key = [u8; KEY_BYTES];

/// Largest distance, in slots, between an entry and its home slot. Also the
/// size of the overflow area after the last home slot.
pub const DISPLACEMENT_MAX: usize = 62;

/// Smallest number of home slots a table has.
const HOME_SLOTS_MIN: usize = 16;

/// Largest number of home slots: the home index and the tag must fit one
/// `u64` ordering value (`home << TAG_BITS | tag`).
const HOME_BITS_MAX: u32 = 64 - TAG_BITS;

/// Key bits after the home bits kept in the meta word.
const TAG_BITS: u32 = 10;

/// Low bits of a meta word holding `displacement + 1`.
const DIST_BITS: u32 = 6;

/// The slot array grows when it would hold more than
/// `LOAD_NUMERATOR / LOAD_DENOMINATOR` of its home slots.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;

// The displacement is stored as `displacement + 1` in the low `DIST_BITS`
// of a meta word, 0 meaning empty.
const _: () = assert!(DISPLACEMENT_MAX < (1 << DIST_BITS) - 1);
const _: () = assert!(HOME_SLOTS_MIN.is_power_of_two());
const _: () = assert!(TAG_BITS + DIST_BITS == Meta::BITS);

/// A meta word: `tag << DIST_BITS | (displacement + 1)`, or 0 for an empty
/// slot. Two bytes a slot: a million-key table's metas take 4 MiB, which is
/// what has to stay cache-resident for inserts and misses to be fast.
type Meta = u16;

#[inline(always)]
fn meta_dist1(meta: Meta) -> u32 {
    u32::from(meta) & ((1 << DIST_BITS) - 1)
}

/// The meta word of an entry with `order` (from `order_of`) at `displacement`.
#[inline(always)]
fn meta_of(order: u64, displacement: usize) -> Meta {
    let tag = (order & ((1 << TAG_BITS) - 1)) as Meta;
    tag << DIST_BITS | (displacement as Meta + 1)
}

/// One slot's payload. Meaningful only where the meta word is non-zero; the
/// key of an empty slot is stale bytes and its value uninitialised.
struct Slot<V> {
    key: Key,
    value: MaybeUninit<V>,
}

impl<V> Slot<V> {
    const EMPTY: Self = Slot {
        key: [0; KEY_BYTES],
        value: MaybeUninit::uninit(),
    };
}

/// Compares two keys; the first eight bytes decide almost always.
#[inline(always)]
fn key_cmp(a: &Key, b: &Key) -> Ordering {
    let a0 = prefix_u64(a);
    let b0 = prefix_u64(b);
    if a0 != b0 {
        return a0.cmp(&b0);
    }
    a[8..].cmp(&b[8..])
}

#[inline(always)]
fn prefix_u64(key: &Key) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&key[..8]);
    u64::from_be_bytes(head)
}

/// Issues a prefetch of the cache line at `ptr` (no-op off x86_64).
#[inline(always)]
fn prefetch_read(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address;
    // SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Where a key was found, or where it would go.
enum Probe {
    /// Present at this slot.
    Found(usize),
    /// Absent; it would be inserted at this slot.
    Vacant(usize),
    /// Absent from the slots, and its cluster is too long to take it.
    ClusterFull,
}

/// An ordered robin-hood hash table from 32-byte uniformly distributed keys to
/// values of type `V`. See the [module documentation](self) for the design.
pub struct OrderedTable<V> {
    /// `home_slots + DISPLACEMENT_MAX` meta words.
    metas: Box<[Meta]>,
    /// `home_slots + DISPLACEMENT_MAX` slots, parallel to `metas`.
    slots: Box<[Slot<V>]>,
    /// `64 - log2(home_slots)`: `home = prefix >> shift`.
    shift: u32,
    /// Entries in `slots`.
    slots_len: usize,
    /// Entries in `slots` at which the table grows.
    slots_len_max: usize,
    /// Keys that could not be placed within `DISPLACEMENT_MAX` of their home.
    spill: BTreeMap<Key, V>,
}

// Invariants (checked by `check_invariants` in tests):
// 1. `metas[i] != 0` iff slot `i` holds a key and an initialised value.
// 2. For an occupied slot `i` with key `k`: `i - home(k) == dist1 - 1 <=
//    DISPLACEMENT_MAX` and the meta's tag is `tag(k)`.
// 3. Occupied slots hold strictly increasing keys in slot order.
// 4. No key is both in `slots` and in `spill`.

impl<V> OrderedTable<V> {
    /// An empty table with the minimum number of slots; it grows as needed.
    pub fn new() -> Self {
        Self::with_home_slots(HOME_SLOTS_MIN)
    }

    /// An empty table that holds `entries` uniformly distributed keys without
    /// growing.
    pub fn with_capacity(entries: usize) -> Self {
        let wanted = entries
            .saturating_mul(LOAD_DENOMINATOR)
            .div_ceil(LOAD_NUMERATOR)
            .max(HOME_SLOTS_MIN);
        let home_slots = wanted
            .checked_next_power_of_two()
            .expect("OrderedTable capacity overflows usize");
        Self::with_home_slots(home_slots)
    }

    fn with_home_slots(home_slots: usize) -> Self {
        assert!(home_slots.is_power_of_two() && home_slots >= HOME_SLOTS_MIN);
        assert!(
            home_slots.trailing_zeros() <= HOME_BITS_MAX,
            "OrderedTable too large"
        );
        let total = home_slots + DISPLACEMENT_MAX;
        OrderedTable {
            metas: vec![0; total].into_boxed_slice(),
            slots: (0..total).map(|_| Slot::EMPTY).collect(),
            shift: 64 - home_slots.trailing_zeros(),
            slots_len: 0,
            slots_len_max: home_slots / LOAD_DENOMINATOR * LOAD_NUMERATOR,
            spill: BTreeMap::new(),
        }
    }

    /// Number of keys in the table.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots_len + self.spill.len()
    }

    /// True when the table holds no key.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys the table holds before it next grows (for uniform keys).
    pub fn capacity(&self) -> usize {
        self.slots_len_max
    }

    /// Number of keys that live in the spill map because their cluster was
    /// full (zero for uniformly distributed keys; see the module docs).
    pub fn spilled_len(&self) -> usize {
        self.spill.len()
    }

    #[inline(always)]
    fn home(&self, key: &Key) -> usize {
        (prefix_u64(key) >> self.shift) as usize
    }

    /// The key's home and tag as one ordering value: `home << 24 | tag`.
    #[inline(always)]
    fn order_of(&self, key: &Key) -> u64 {
        // The top `64 - shift + TAG_BITS` bits of the key's prefix.
        prefix_u64(key) >> (self.shift - TAG_BITS)
    }

    /// The ordering value of the entry in slot `i` with meta `meta`.
    #[inline(always)]
    fn order_at(i: usize, meta: Meta) -> u64 {
        let home = (i - (meta_dist1(meta) as usize - 1)) as u64;
        home << TAG_BITS | u64::from(meta >> DIST_BITS)
    }

    /// Probes for `key`, reading the meta array and, only when home and tag
    /// both match, the slot's key.
    #[inline(always)]
    fn probe(&self, key: &Key) -> Probe {
        let home = self.home(key);
        let order = self.order_of(key);
        let end = home + DISPLACEMENT_MAX;
        let mut i = home;
        while i <= end {
            let meta = self.metas[i];
            if meta == 0 {
                return Probe::Vacant(i);
            }
            match Self::order_at(i, meta).cmp(&order) {
                Ordering::Less => i += 1,
                Ordering::Greater => return Probe::Vacant(i),
                Ordering::Equal => match key_cmp(&self.slots[i].key, key) {
                    Ordering::Less => i += 1,
                    Ordering::Equal => return Probe::Found(i),
                    Ordering::Greater => return Probe::Vacant(i),
                },
            }
        }
        Probe::ClusterFull
    }

    /// Hints the CPU to start loading `key`'s meta word and slot. A caller
    /// with a batch of keys (the mempool ingesting a network batch) calls this
    /// a few keys ahead of `insert`/`get`/`remove`, so the cache misses of
    /// several keys overlap instead of being paid one after another. It
    /// changes nothing and is free to skip.
    #[inline(always)]
    pub fn prefetch(&self, key: &Key) {
        let home = self.home(key);
        prefetch_read((&self.metas[home] as *const Meta).cast());
        prefetch_read((&self.slots[home] as *const Slot<V>).cast());
    }

    /// The value stored under `key`.
    #[inline]
    pub fn get(&self, key: &Key) -> Option<&V> {
        match self.probe(key) {
            // SAFETY: `probe` reports `Found` only for an occupied slot.
            Probe::Found(i) => Some(unsafe { self.slots[i].value.assume_init_ref() }),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get(key),
        }
    }

    /// A mutable reference to the value stored under `key`.
    #[inline]
    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        match self.probe(key) {
            // SAFETY: `probe` reports `Found` only for an occupied slot.
            Probe::Found(i) => Some(unsafe { self.slots[i].value.assume_init_mut() }),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get_mut(key),
        }
    }

    /// True when `key` is in the table.
    #[inline]
    pub fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: Key, value: V) -> Option<V> {
        // Start fetching the home slot now: if the insertion shifts the
        // cluster, the shift reads it, and the meta probe below overlaps
        // with that fetch instead of preceding it.
        prefetch_read((&self.slots[self.home(&key)] as *const Slot<V>).cast());
        let at = match self.probe(&key) {
            Probe::Found(i) => {
                // SAFETY: `probe` reported an occupied slot.
                let old = unsafe { self.slots[i].value.assume_init_mut() };
                return Some(std::mem::replace(old, value));
            }
            Probe::Vacant(at) => Some(at),
            Probe::ClusterFull => None,
        };
        if !self.spill.is_empty() {
            if let Some(old) = self.spill.get_mut(&key) {
                return Some(std::mem::replace(old, value));
            }
        }
        if self.slots_len >= self.slots_len_max {
            self.grow();
            // The insertion point moved; growth never changes membership.
            let at = match self.probe(&key) {
                Probe::Found(_) => unreachable!("growth invented a key"),
                Probe::Vacant(at) => Some(at),
                Probe::ClusterFull => None,
            };
            self.place(at, key, value);
            return None;
        }
        self.place(at, key, value);
        None
    }

    /// Puts an absent `key` at slot `at` (from `probe`), shifting the rest of
    /// the cluster right by one; spills it when there is no slot (`None`) or
    /// the shift would break the displacement bound.
    fn place(&mut self, at: Option<usize>, key: Key, value: V) {
        let Some(at) = at else {
            self.spill.insert(key, value);
            return;
        };
        // Find the end of the cluster from `at`, checking that every entry we
        // would shift stays within the displacement bound.
        let mut end = at;
        loop {
            let meta = self.metas[end];
            if meta == 0 {
                break;
            }
            if meta_dist1(meta) as usize > DISPLACEMENT_MAX || end + 1 == self.metas.len() {
                self.spill.insert(key, value);
                return;
            }
            end += 1;
        }
        if end > at {
            // Shift metas[at..end] and slots[at..end] right by one; every
            // shifted entry is one slot further from home.
            self.metas.copy_within(at..end, at + 1);
            for meta in &mut self.metas[at + 1..=end] {
                *meta += 1;
            }
            let base = self.slots.as_mut_ptr();
            // SAFETY: `at < end < slots.len()`, so both ranges are in bounds;
            // `ptr::copy` handles the overlap. Slot `end` was empty (its meta
            // was 0), so nothing is overwritten without being moved, and slot
            // `at` is rewritten right below, so no value is duplicated.
            unsafe { std::ptr::copy(base.add(at), base.add(at + 1), end - at) };
        }
        let displacement = at - self.home(&key);
        debug_assert!(displacement <= DISPLACEMENT_MAX);
        self.metas[at] = meta_of(self.order_of(&key), displacement);
        self.slots[at] = Slot {
            key,
            value: MaybeUninit::new(value),
        };
        self.slots_len += 1;
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        match self.probe(key) {
            Probe::Found(i) => {
                // SAFETY: `probe` reported an occupied slot; its meta is
                // overwritten below, so the value is read out exactly once.
                let value = unsafe { self.slots[i].value.assume_init_read() };
                // Backward shift: pull the rest of the cluster one slot left,
                // up to an empty slot or an entry already at its home.
                let mut end = i + 1;
                while end < self.metas.len() && meta_dist1(self.metas[end]) > 1 {
                    end += 1;
                }
                if end > i + 1 {
                    self.metas.copy_within(i + 1..end, i);
                    for meta in &mut self.metas[i..end - 1] {
                        *meta -= 1;
                    }
                    let base = self.slots.as_mut_ptr();
                    // SAFETY: `i + 1 <= end - 1 < slots.len()`: in bounds,
                    // overlap handled by `ptr::copy`. Slot `i`'s value was
                    // read out above, and slot `end - 1` is marked empty
                    // below, so each value stays owned exactly once.
                    unsafe { std::ptr::copy(base.add(i + 1), base.add(i), end - 1 - i) };
                }
                self.metas[end - 1] = 0;
                self.slots_len -= 1;
                Some(value)
            }
            _ if self.spill.is_empty() => None,
            _ => self.spill.remove(key),
        }
    }

    /// Removes every key, keeping the allocation.
    pub fn clear(&mut self) {
        for (meta, slot) in self.metas.iter_mut().zip(self.slots.iter_mut()) {
            if *meta != 0 {
                *meta = 0;
                // SAFETY: the slot was occupied and is now marked empty, so
                // its value is dropped exactly once.
                unsafe { slot.value.assume_init_drop() };
            }
        }
        self.slots_len = 0;
        self.spill.clear();
    }

    /// Doubles the home slots, moving every entry in one ordered pass.
    fn grow(&mut self) {
        let home_slots = (self.slots.len() - DISPLACEMENT_MAX) * 2;
        let mut grown = Self::with_home_slots(home_slots);
        let old_metas = std::mem::take(&mut self.metas);
        let old_slots = std::mem::take(&mut self.slots);
        // Everything now lives in the locals; `self` holds empty arrays, so
        // its drop (on `*self = grown`) touches nothing.
        self.slots_len = 0;
        let mut next_free = 0usize;
        for (meta, slot) in old_metas.iter().zip(old_slots.into_vec()) {
            if *meta == 0 {
                continue;
            }
            // SAFETY: occupied slot; the value is moved out exactly once (the
            // slot itself is consumed by the iterator and has no destructor).
            let value = unsafe { slot.value.assume_init() };
            let home = grown.home(&slot.key);
            let at = home.max(next_free);
            if at - home > DISPLACEMENT_MAX {
                grown.spill.insert(slot.key, value);
                continue;
            }
            grown.metas[at] = meta_of(grown.order_of(&slot.key), at - home);
            grown.slots[at] = Slot {
                key: slot.key,
                value: MaybeUninit::new(value),
            };
            grown.slots_len += 1;
            next_free = at + 1;
        }
        // Spilled keys may fit now; reinserting keeps the invariants simple.
        let spill = std::mem::take(&mut self.spill);
        for (key, value) in spill {
            let at = match grown.probe(&key) {
                Probe::Found(_) => unreachable!("a key was both spilled and in the slots"),
                Probe::Vacant(at) => Some(at),
                Probe::ClusterFull => None,
            };
            grown.place(at, key, value);
        }
        *self = grown;
    }

    /// Iterates over all entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            metas: &self.metas,
            slots: &self.slots,
            next: 0,
            spill: self.spill.range::<Key, _>(..),
            spill_peek: None,
            end: Bound::Unbounded,
        }
        .primed()
    }

    /// Iterates in ascending key order over the entries whose keys lie in
    /// `range`, starting at the range's start key without scanning the keys
    /// before it.
    pub fn range<R: RangeBounds<Key>>(&self, range: R) -> Iter<'_, V> {
        let start = match range.start_bound() {
            Bound::Unbounded => 0,
            Bound::Included(key) => self.first_slot_at_or_after(key, false),
            Bound::Excluded(key) => self.first_slot_at_or_after(key, true),
        };
        let spill_range = (range.start_bound().cloned(), range.end_bound().cloned());
        Iter {
            metas: &self.metas,
            slots: &self.slots,
            next: start,
            spill: self.spill.range(spill_range),
            spill_peek: None,
            end: range.end_bound().cloned(),
        }
        .primed()
    }

    /// The first slot whose entry (if any) sorts after `key` (or at it, unless
    /// `exclusive`): every larger key lives at or after `key`'s home, and a
    /// cluster is sorted.
    fn first_slot_at_or_after(&self, key: &Key, exclusive: bool) -> usize {
        match self.probe(key) {
            Probe::Found(i) => i + usize::from(exclusive),
            Probe::Vacant(i) => i,
            // Every slot of a full cluster sorts before `key` up to the
            // bound; continue past them.
            Probe::ClusterFull => {
                let mut i = self.home(key);
                while i < self.slots.len()
                    && self.metas[i] != 0
                    && key_cmp(&self.slots[i].key, key) == Ordering::Less
                {
                    i += 1;
                }
                i
            }
        }
    }

    /// Checks the structural invariants; panics with a message on violation.
    /// Cost is linear in the table size: meant for tests.
    pub fn check_invariants(&self) {
        let mut previous: Option<&Key> = None;
        let mut count = 0;
        for (i, (meta, slot)) in self.metas.iter().zip(self.slots.iter()).enumerate() {
            if *meta == 0 {
                continue;
            }
            count += 1;
            let home = self.home(&slot.key);
            assert!(i >= home, "slot {i} precedes its home {home}");
            assert_eq!(
                meta_dist1(*meta) as usize - 1,
                i - home,
                "slot {i}: stale displacement"
            );
            assert!(
                i - home <= DISPLACEMENT_MAX,
                "slot {i}: displacement over the bound"
            );
            assert_eq!(
                Self::order_at(i, *meta),
                self.order_of(&slot.key),
                "slot {i}: stale tag"
            );
            if let Some(p) = previous {
                assert_eq!(
                    key_cmp(p, &slot.key),
                    Ordering::Less,
                    "slot {i}: keys out of order"
                );
            }
            assert!(
                !self.spill.contains_key(&slot.key),
                "slot {i}: key also spilled"
            );
            previous = Some(&slot.key);
        }
        assert_eq!(count, self.slots_len, "slot count mismatch");
        assert!(
            self.slots_len <= self.slots_len_max,
            "slot array over its load bound"
        );
    }
}

impl<V> Default for OrderedTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Drop for OrderedTable<V> {
    fn drop(&mut self) {
        if std::mem::needs_drop::<V>() {
            for (meta, slot) in self.metas.iter_mut().zip(self.slots.iter_mut()) {
                if *meta != 0 {
                    *meta = 0;
                    // SAFETY: the slot was occupied; marking it empty first
                    // means the value is dropped exactly once even if a `V`
                    // destructor panics part way through.
                    unsafe { slot.value.assume_init_drop() };
                }
            }
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for OrderedTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

// SAFETY: the table owns its values like a `Vec<V>` does; the raw
// `MaybeUninit` storage adds no shared state.
unsafe impl<V: Send> Send for OrderedTable<V> {}
// SAFETY: shared access only hands out `&V`.
unsafe impl<V: Sync> Sync for OrderedTable<V> {}

/// Iterator over a table's entries in ascending key order, from
/// [`OrderedTable::iter`] or [`OrderedTable::range`].
pub struct Iter<'a, V> {
    metas: &'a [Meta],
    slots: &'a [Slot<V>],
    next: usize,
    spill: btree_map::Range<'a, Key, V>,
    spill_peek: Option<(&'a Key, &'a V)>,
    end: Bound<Key>,
}

impl<'a, V> Iter<'a, V> {
    fn primed(mut self) -> Self {
        self.spill_peek = self.spill.next();
        self
    }

    #[inline(always)]
    fn next_slot(&mut self) -> Option<(&'a Key, &'a V)> {
        while self.next < self.metas.len() {
            if self.metas[self.next] != 0 {
                let slot = &self.slots[self.next];
                // SAFETY: occupied slot (non-zero meta).
                return Some((&slot.key, unsafe { slot.value.assume_init_ref() }));
            }
            self.next += 1;
        }
        None
    }

    #[inline(always)]
    fn within_end(&self, key: &Key) -> bool {
        match &self.end {
            Bound::Unbounded => true,
            Bound::Included(end) => key_cmp(key, end) != Ordering::Greater,
            Bound::Excluded(end) => key_cmp(key, end) == Ordering::Less,
        }
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Key, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let from_slots = self.next_slot();
        let item = match (from_slots, self.spill_peek) {
            (None, None) => return None,
            (Some(entry), None) => {
                self.next += 1;
                entry
            }
            (None, Some(spilled)) => {
                self.spill_peek = self.spill.next();
                spilled
            }
            (Some(entry), Some(spilled)) => {
                if key_cmp(entry.0, spilled.0) == Ordering::Less {
                    self.next += 1;
                    entry
                } else {
                    self.spill_peek = self.spill.next();
                    spilled
                }
            }
        };
        if self.within_end(item.0) {
            Some(item)
        } else {
            self.next = self.slots.len();
            self.spill_peek = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    /// Keys sharing their first `prefix_bytes` bytes: all land on one home.
    fn adversarial_key(n: u64, prefix_bytes: usize) -> Key {
        let mut k = key(n);
        k[..prefix_bytes].fill(0xAB);
        k
    }

    #[test]
    fn insert_get_remove_small() {
        let mut t = OrderedTable::new();
        for n in 0..1000 {
            assert_eq!(t.insert(key(n), n), None);
        }
        t.check_invariants();
        assert_eq!(t.len(), 1000);
        for n in 0..1000 {
            assert_eq!(t.get(&key(n)), Some(&n));
        }
        for n in (0..1000).step_by(2) {
            assert_eq!(t.remove(&key(n)), Some(n));
        }
        t.check_invariants();
        for n in 0..1000 {
            assert_eq!(t.get(&key(n)).copied(), (n % 2 == 1).then_some(n));
        }
        assert_eq!(t.spilled_len(), 0);
    }

    #[test]
    fn iteration_is_sorted_without_sorting() {
        let mut t = OrderedTable::new();
        let mut keys: Vec<Key> = (0..5000).map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            t.insert(*k, i);
        }
        keys.sort();
        let seen: Vec<Key> = t.iter().map(|(k, _)| *k).collect();
        assert_eq!(seen, keys);
    }

    #[test]
    fn range_starts_at_the_start_key() {
        let mut t = OrderedTable::new();
        let mut keys: Vec<Key> = (0..3000).map(key).collect();
        for k in &keys {
            t.insert(*k, ());
        }
        keys.sort();
        let from = keys[1234];
        let to = keys[2000];
        let got: Vec<Key> = t.range(from..to).map(|(k, _)| *k).collect();
        assert_eq!(got, keys[1234..2000].to_vec());
        let got: Vec<Key> = t
            .range((Bound::Excluded(from), Bound::Included(to)))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(got, keys[1235..=2000].to_vec());
    }

    #[test]
    fn adversarial_prefix_stays_correct_and_bounded() {
        let mut t = OrderedTable::with_capacity(1024);
        let n = 2000u64;
        for i in 0..n {
            assert_eq!(t.insert(adversarial_key(i, 12), i), None);
        }
        t.check_invariants();
        assert_eq!(t.len(), n as usize);
        assert!(
            t.spilled_len() > 0,
            "a shared 12-byte prefix must overflow one cluster"
        );
        for i in 0..n {
            assert_eq!(t.get(&adversarial_key(i, 12)), Some(&i));
        }
        let mut keys: Vec<Key> = (0..n).map(|i| adversarial_key(i, 12)).collect();
        keys.sort();
        let seen: Vec<Key> = t.iter().map(|(k, _)| *k).collect();
        assert_eq!(seen, keys);
        for i in 0..n {
            assert_eq!(t.remove(&adversarial_key(i, 12)), Some(i));
        }
        assert!(t.is_empty());
        t.check_invariants();
    }

    #[test]
    fn drop_runs_value_destructors_once() {
        use std::rc::Rc;
        let marker = Rc::new(());
        {
            let mut t = OrderedTable::new();
            for n in 0..200 {
                t.insert(key(n), Rc::clone(&marker));
            }
            for n in 0..50 {
                t.remove(&key(n));
            }
            assert_eq!(Rc::strong_count(&marker), 151);
        }
        assert_eq!(Rc::strong_count(&marker), 1);
    }
}
