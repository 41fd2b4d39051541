//! An ordered robin-hood hash table for uniformly distributed 32-byte keys.
//!
//! Keys here are already hashes (blake3 outputs: transaction ids, hashed state
//! keys), so the table does not hash them again: a key's *home slot* is its top
//! `log2(capacity)` bits. Homes are therefore monotonic in the key, and the
//! table keeps every cluster sorted by key (robin-hood with ties broken by the
//! full key, i.e. Amble & Knuth's "ordered hash table"). The slot array is then
//! a sorted array with gaps: iterating the slots in order visits the keys in
//! ascending order with no sort, and a `range` starts at the start key's home.
//!
//! Design decisions:
//! - **No wrap-around.** The slot array has `DISPLACEMENT_MAX` extra slots after
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
//!   displacement above 64 at 3/4 load is vanishingly small).
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
pub const DISPLACEMENT_MAX: usize = 64;

/// Smallest number of home slots a table has (keeps the shift below 64).
const HOME_SLOTS_MIN: usize = 16;

/// The slot array grows when it would hold more than
/// `LOAD_NUMERATOR / LOAD_DENOMINATOR` of its home slots.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;

// The displacement is stored as `displacement + 1` in a `u8`, 0 meaning empty.
const _: () = assert!(DISPLACEMENT_MAX < u8::MAX as usize);
const _: () = assert!(HOME_SLOTS_MIN.is_power_of_two());

/// One slot. `meta == 0` means empty; otherwise the slot holds a live value and
/// `meta - 1` is the entry's displacement from its home slot.
struct Slot<V> {
    key: Key,
    meta: u8,
    value: MaybeUninit<V>,
}

impl<V> Slot<V> {
    const EMPTY: Self = Slot {
        key: [0; KEY_BYTES],
        meta: 0,
        value: MaybeUninit::uninit(),
    };

    #[inline(always)]
    fn is_occupied(&self) -> bool {
        self.meta != 0
    }

    /// # Safety
    /// The slot must be occupied (`meta != 0`).
    #[inline(always)]
    unsafe fn value_ref(&self) -> &V {
        // SAFETY: the caller guarantees the slot is occupied, and an occupied
        // slot's value was written by `insert` and not yet moved out.
        unsafe { self.value.assume_init_ref() }
    }

    /// # Safety
    /// The slot must be occupied (`meta != 0`).
    #[inline(always)]
    unsafe fn value_mut(&mut self) -> &mut V {
        // SAFETY: as for `value_ref`.
        unsafe { self.value.assume_init_mut() }
    }
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

/// An ordered robin-hood hash table from 32-byte uniformly distributed keys to
/// values of type `V`. See the [module documentation](self) for the design.
pub struct OrderedTable<V> {
    /// `home_slots + DISPLACEMENT_MAX` slots.
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

// SAFETY-relevant invariants (checked by `check_invariants` in tests):
// 1. `slots[i].meta != 0` iff slot `i` holds an initialised value.
// 2. For an occupied slot `i` with key `k`: `i - home(k) == meta - 1 <=
//    DISPLACEMENT_MAX`.
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
        let slots: Box<[Slot<V>]> = (0..home_slots + DISPLACEMENT_MAX)
            .map(|_| Slot::EMPTY)
            .collect();
        OrderedTable {
            slots,
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

    /// Finds `key` in the slot array: `Ok(slot)` when present, `Err(slot)`
    /// with the slot where it would be inserted (the first empty slot or
    /// larger key), or `Err(usize::MAX)` when its cluster is too long.
    #[inline(always)]
    fn find(&self, key: &Key) -> Result<usize, usize> {
        let home = self.home(key);
        let end = home + DISPLACEMENT_MAX;
        let mut i = home;
        while i <= end {
            let slot = &self.slots[i];
            if !slot.is_occupied() {
                return Err(i);
            }
            match key_cmp(&slot.key, key) {
                Ordering::Less => i += 1,
                Ordering::Equal => return Ok(i),
                Ordering::Greater => return Err(i),
            }
        }
        Err(usize::MAX)
    }

    /// The value stored under `key`.
    #[inline]
    pub fn get(&self, key: &Key) -> Option<&V> {
        match self.find(key) {
            // SAFETY: `find` returns `Ok` only for an occupied slot.
            Ok(i) => Some(unsafe { self.slots[i].value_ref() }),
            Err(_) if self.spill.is_empty() => None,
            Err(_) => self.spill.get(key),
        }
    }

    /// A mutable reference to the value stored under `key`.
    #[inline]
    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        match self.find(key) {
            // SAFETY: `find` returns `Ok` only for an occupied slot.
            Ok(i) => Some(unsafe { self.slots[i].value_mut() }),
            Err(_) if self.spill.is_empty() => None,
            Err(_) => self.spill.get_mut(key),
        }
    }

    /// True when `key` is in the table.
    #[inline]
    pub fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: Key, value: V) -> Option<V> {
        let at = match self.find(&key) {
            Ok(i) => {
                // SAFETY: `find` returned an occupied slot.
                let old = unsafe { self.slots[i].value_mut() };
                return Some(std::mem::replace(old, value));
            }
            Err(at) => at,
        };
        if !self.spill.is_empty() {
            if let Some(old) = self.spill.get_mut(&key) {
                return Some(std::mem::replace(old, value));
            }
        }
        if self.slots_len >= self.slots_len_max {
            self.grow();
            // The insertion point moved; growth never changes membership.
            return self.insert_absent(key, value);
        }
        self.place(at, key, value);
        None
    }

    /// Inserts a key known to be absent from both the slots and the spill.
    fn insert_absent(&mut self, key: Key, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(_) => unreachable!("insert_absent called with a present key"),
            Err(at) => self.place(at, key, value),
        }
        None
    }

    /// Puts an absent `key` at slot `at` (from `find`), shifting the rest of
    /// the cluster right by one; spills it when that would break the
    /// displacement bound.
    fn place(&mut self, at: usize, key: Key, value: V) {
        if at == usize::MAX {
            self.spill.insert(key, value);
            return;
        }
        // Find the end of the cluster from `at` and check that every entry
        // we would shift stays within the displacement bound.
        let mut end = at;
        while self.slots[end].is_occupied() {
            if usize::from(self.slots[end].meta) > DISPLACEMENT_MAX || end + 1 == self.slots.len()
            {
                self.spill.insert(key, value);
                return;
            }
            end += 1;
        }
        // Shift slots[at..end] to slots[at + 1..=end], one displacement more.
        for j in (at..end).rev() {
            let moved = std::mem::replace(&mut self.slots[j], Slot::EMPTY);
            let target = &mut self.slots[j + 1];
            *target = moved;
            target.meta += 1;
        }
        let displacement = at - self.home(&key);
        debug_assert!(displacement <= DISPLACEMENT_MAX);
        self.slots[at] = Slot {
            key,
            meta: displacement as u8 + 1,
            value: MaybeUninit::new(value),
        };
        self.slots_len += 1;
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        match self.find(key) {
            Ok(i) => {
                let slot = std::mem::replace(&mut self.slots[i], Slot::EMPTY);
                // SAFETY: `find` returned an occupied slot; we own the value now
                // and the slot was reset to empty, so it is read exactly once.
                let value = unsafe { slot.value.assume_init() };
                // Backward-shift: pull the rest of the cluster one slot left
                // until an empty slot or an entry already at its home.
                let mut j = i + 1;
                while j < self.slots.len() && self.slots[j].meta > 1 {
                    let mut moved = std::mem::replace(&mut self.slots[j], Slot::EMPTY);
                    moved.meta -= 1;
                    self.slots[j - 1] = moved;
                    j += 1;
                }
                self.slots_len -= 1;
                Some(value)
            }
            Err(_) if self.spill.is_empty() => None,
            Err(_) => self.spill.remove(key),
        }
    }

    /// Removes every key, keeping the allocation.
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.is_occupied() {
                let old = std::mem::replace(slot, Slot::EMPTY);
                // SAFETY: the slot was occupied; its value is dropped once.
                drop(unsafe { old.value.assume_init() });
            }
        }
        self.slots_len = 0;
        self.spill.clear();
    }

    /// Doubles the home slots, moving every entry in one ordered pass.
    fn grow(&mut self) {
        let home_slots = (self.slots.len() - DISPLACEMENT_MAX) * 2;
        let mut grown = Self::with_home_slots(home_slots);
        let old_slots = std::mem::take(&mut self.slots);
        let mut next_free = 0usize;
        for slot in old_slots.into_vec() {
            if !slot.is_occupied() {
                continue;
            }
            // SAFETY: occupied slot; the value is moved out exactly once, and
            // the slot itself is consumed by `into_vec`'s iterator.
            let value = unsafe { slot.value.assume_init() };
            let at = grown.home(&slot.key).max(next_free);
            let displacement = at - grown.home(&slot.key);
            if displacement > DISPLACEMENT_MAX {
                grown.spill.insert(slot.key, value);
                continue;
            }
            grown.slots[at] = Slot {
                key: slot.key,
                meta: displacement as u8 + 1,
                value: MaybeUninit::new(value),
            };
            grown.slots_len += 1;
            next_free = at + 1;
        }
        // Spilled keys may fit now; reinserting keeps the invariants simple.
        let spill = std::mem::take(&mut self.spill);
        for (key, value) in spill {
            let at = match grown.find(&key) {
                Ok(_) => unreachable!("a key was both spilled and in the slots"),
                Err(at) => at,
            };
            grown.place(at, key, value);
        }
        *self = grown;
    }

    /// Iterates over all entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
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
            Bound::Included(key) => match self.find(key) {
                Ok(i) => i,
                Err(_) => self.first_slot_at_or_after(key),
            },
            Bound::Excluded(key) => match self.find(key) {
                Ok(i) => i + 1,
                Err(_) => self.first_slot_at_or_after(key),
            },
        };
        let spill_range = (range.start_bound().cloned(), range.end_bound().cloned());
        Iter {
            slots: &self.slots,
            next: start,
            spill: self.spill.range(spill_range),
            spill_peek: None,
            end: range.end_bound().cloned(),
        }
        .primed()
    }

    /// The first slot whose entry (if any) sorts at or after `key`: every
    /// larger key lives at or after `key`'s home, and a cluster is sorted.
    fn first_slot_at_or_after(&self, key: &Key) -> usize {
        let mut i = self.home(key);
        while i < self.slots.len()
            && self.slots[i].is_occupied()
            && key_cmp(&self.slots[i].key, key) == Ordering::Less
        {
            i += 1;
        }
        i
    }

    /// Checks the structural invariants; panics with a message on violation.
    /// Cost is linear in the table size: meant for tests.
    pub fn check_invariants(&self) {
        let mut previous: Option<&Key> = None;
        let mut count = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.is_occupied() {
                continue;
            }
            count += 1;
            let home = self.home(&slot.key);
            assert!(i >= home, "slot {i} precedes its home {home}");
            assert_eq!(usize::from(slot.meta) - 1, i - home, "slot {i}: stale displacement");
            assert!(i - home <= DISPLACEMENT_MAX, "slot {i}: displacement over the bound");
            if let Some(p) = previous {
                assert_eq!(key_cmp(p, &slot.key), Ordering::Less, "slot {i}: keys out of order");
            }
            assert!(!self.spill.contains_key(&slot.key), "slot {i}: key also spilled");
            previous = Some(&slot.key);
        }
        assert_eq!(count, self.slots_len, "slot count mismatch");
        assert!(self.slots_len <= self.slots_len_max, "slot array over its load bound");
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
            for slot in self.slots.iter_mut() {
                if slot.is_occupied() {
                    slot.meta = 0;
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
        while self.next < self.slots.len() {
            let slot = &self.slots[self.next];
            if slot.is_occupied() {
                // SAFETY: occupied slot.
                return Some((&slot.key, unsafe { slot.value_ref() }));
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
        assert!(t.spilled_len() > 0, "a shared 12-byte prefix must overflow one cluster");
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
