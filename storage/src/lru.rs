//! A fixed-capacity LRU cache: a robin-hood hash table whose slots are also
//! the nodes of an intrusive doubly linked recency list, in one allocation.
//!
//! Each slot holds the key, the value, the hash fingerprint, its displacement
//! and the `prev`/`next` slot indices of the recency list. A lookup therefore
//! touches one slot (one cache line for small keys and values), where a cache
//! built from a hash map of boxed list nodes touches the map's control bytes,
//! its bucket and then the node. The price is that when robin-hood insertion
//! or backward-shift deletion moves an entry to another slot, the entry's list
//! neighbours are patched to point at the new slot. The table is sized to at
//! most 1/2 load, where such moves are rare (well under one per operation).
//!
//! Decisions:
//! - **Fixed capacity in entries**, chosen at construction: a cache is bounded
//!   by definition, and a fixed table never rehashes on the hot path.
//! - **Hashing**: generic over [`BuildHasher`]; the default is foldhash (the
//!   hasher hashbrown uses). For keys that are already uniform hashes (32-byte
//!   blake3 ids) use [`IdentityState`], which takes the first 8 key bytes as the
//!   hash and skips hashing entirely.
//! - **Bounded probing**: no entry sits more than [`DISPLACEMENT_MAX`] slots from
//!   its home, and the slot array has that many extra slots at its end instead
//!   of wrapping around. A key whose cluster is saturated (only possible with
//!   adversarial keys, e.g. ground-out ids under [`IdentityState`]) evicts an
//!   entry of that cluster instead: a cache may forget, it must not slow down
//!   without bound.
//!
//! # Example
//! ```
//! use strata_storage::lru::{LruCache, Put};
//!
//! let mut cache = LruCache::new(2);
//! assert!(matches!(cache.put("a", 1), Put::Inserted));
//! assert!(matches!(cache.put("b", 2), Put::Inserted));
//! assert_eq!(cache.get(&"a"), Some(&1)); // "a" is now the most recent
//! match cache.put("c", 3) {
//!     Put::Evicted { key, value } => assert_eq!((key, value), ("b", 2)),
//!     other => panic!("expected an eviction, got {other:?}"),
//! }
//! assert_eq!(cache.peek(&"b"), None);
//! assert_eq!(cache.pop_lru(), Some(("a", 1)));
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::mem::MaybeUninit;

/// Largest distance, in slots, between an entry and its home slot; also the
/// size of the overflow area at the end of the slot array.
pub const DISPLACEMENT_MAX: usize = 64;

/// Smallest number of home slots.
const HOME_SLOTS_MIN: usize = 16;

/// Largest capacity in entries: slot indices are `u32`, with `NIL` reserved.
pub const CAPACITY_MAX: usize = 1 << 30;

const NIL: u32 = u32::MAX;

const _: () = assert!(DISPLACEMENT_MAX < u8::MAX as usize);
const _: () = assert!((CAPACITY_MAX * 2 + DISPLACEMENT_MAX) < NIL as usize);

/// What [`LruCache::put`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Put<K, V> {
    /// The key was new and the cache had room.
    Inserted,
    /// The key was present; its value was replaced and this is the old value.
    Updated(V),
    /// The key was new; to make room this entry was evicted (the least
    /// recently used one, or with adversarial keys one from a saturated
    /// cluster).
    Evicted {
        /// The evicted key.
        key: K,
        /// The evicted value.
        value: V,
    },
}

/// A [`BuildHasher`] for keys that are already uniformly distributed hashes:
/// the hash is the first 8 bytes the key writes (little-endian), unmixed.
///
/// Only use it for keys whose `Hash` writes at least 8 uniformly random bytes
/// in one `write` (such as `[u8; 32]` blake3 outputs); for anything else the
/// table degrades to long clusters (still correct, and bounded: see the module
/// docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityState;

/// The [`Hasher`] of [`IdentityState`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher {
    hash: u64,
}

impl Hasher for IdentityHasher {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.hash = u64::from_le_bytes(*head);
        } else {
            // Short writes (never the case for 32-byte ids) are folded in so
            // the hasher still works, if poorly, for other keys.
            for &b in bytes {
                self.hash = self.hash.rotate_left(8) ^ u64::from(b);
            }
        }
    }

    #[inline(always)]
    fn write_usize(&mut self, _length_prefix: usize) {
        // Slices and arrays write their length first; it carries no entropy.
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl BuildHasher for IdentityState {
    type Hasher = IdentityHasher;

    #[inline(always)]
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher::default()
    }
}

/// A slot: a table entry and a recency-list node at once. `meta == 0` means
/// empty; otherwise `key` and `value` are initialised and `meta - 1` is the
/// displacement from the home slot.
struct Slot<K, V> {
    prev: u32,
    next: u32,
    fingerprint: u32,
    meta: u8,
    key: MaybeUninit<K>,
    value: MaybeUninit<V>,
}

impl<K, V> Slot<K, V> {
    const EMPTY: Self = Slot {
        prev: NIL,
        next: NIL,
        fingerprint: 0,
        meta: 0,
        key: MaybeUninit::uninit(),
        value: MaybeUninit::uninit(),
    };
}

/// A fixed-capacity least-recently-used cache. See the [module docs](self).
pub struct LruCache<K, V, S = foldhash::fast::RandomState> {
    slots: Box<[Slot<K, V>]>,
    shift: u32,
    len: usize,
    capacity: usize,
    /// Most recently used slot, or `NIL`.
    head: u32,
    /// Least recently used slot, or `NIL`.
    tail: u32,
    hash_builder: S,
}

// Invariants (checked by `check_invariants` in tests):
// 1. `meta != 0` iff the slot's key and value are initialised.
// 2. An occupied slot at index `i` with home `h` has `meta - 1 == i - h <=
//    DISPLACEMENT_MAX`, and robin-hood order holds: displacements along a
//    cluster never drop by more than one... (no stricter ordering is needed
//    for lookups, which stop at an empty slot or a smaller displacement).
// 3. The list from `head` through `next` visits exactly the occupied slots,
//    `prev` mirrors it, and `len` counts them; `len <= capacity`.

impl<K: Hash + Eq, V> LruCache<K, V> {
    /// A cache holding at most `capacity` entries, hashing with foldhash.
    ///
    /// # Panics
    /// If `capacity` is zero or above [`CAPACITY_MAX`].
    pub fn new(capacity: usize) -> Self {
        Self::with_hasher(capacity, foldhash::fast::RandomState::default())
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> LruCache<K, V, S> {
    /// A cache holding at most `capacity` entries, hashing with `hash_builder`.
    ///
    /// # Panics
    /// If `capacity` is zero or above [`CAPACITY_MAX`].
    pub fn with_hasher(capacity: usize, hash_builder: S) -> Self {
        assert!(
            capacity > 0 && capacity <= CAPACITY_MAX,
            "LRU capacity {capacity} outside 1..={CAPACITY_MAX}"
        );
        // At most 1/2 load: robin-hood moves (and so list patches) stay rare.
        let home_slots = (capacity * 2).next_power_of_two().max(HOME_SLOTS_MIN);
        let slots: Box<[Slot<K, V>]> = (0..home_slots + DISPLACEMENT_MAX)
            .map(|_| Slot::EMPTY)
            .collect();
        LruCache {
            slots,
            shift: 64 - home_slots.trailing_zeros(),
            len: 0,
            capacity,
            head: NIL,
            tail: NIL,
            hash_builder,
        }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the cache holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries the cache holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline(always)]
    fn hash_of<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hash_builder.hash_one(key)
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// The slot holding `key`, if present.
    #[inline(always)]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let fingerprint = hash as u32;
        let mut i = self.home(hash);
        let mut displacement: u8 = 0;
        loop {
            let slot = &self.slots[i];
            // An empty slot, or an entry closer to its home than we are to
            // ours, means the key would have been placed before it.
            if slot.meta <= displacement {
                return None;
            }
            // SAFETY: `meta > displacement >= 0`, so the slot is occupied and
            // its key initialised.
            if slot.fingerprint == fingerprint
                && unsafe { slot.key.assume_init_ref() }.borrow() == key
            {
                return Some(i);
            }
            i += 1;
            displacement += 1;
            if usize::from(displacement) > DISPLACEMENT_MAX {
                return None;
            }
        }
    }

    /// The value under `key`, marking it most recently used.
    #[inline]
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(self.hash_of(key), key)?;
        self.promote(i as u32);
        // SAFETY: `find` returned an occupied slot.
        Some(unsafe { self.slots[i].value.assume_init_ref() })
    }

    /// A mutable reference to the value under `key`, marking it most recently
    /// used.
    #[inline]
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(self.hash_of(key), key)?;
        self.promote(i as u32);
        // SAFETY: `find` returned an occupied slot.
        Some(unsafe { self.slots[i].value.assume_init_mut() })
    }

    /// The value under `key`, without changing its recency.
    #[inline]
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(self.hash_of(key), key)?;
        // SAFETY: `find` returned an occupied slot.
        Some(unsafe { self.slots[i].value.assume_init_ref() })
    }

    /// True when `key` is cached (does not change its recency).
    #[inline]
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(self.hash_of(key), key).is_some()
    }

    /// Inserts or updates `key`, making it the most recently used entry.
    pub fn put(&mut self, key: K, value: V) -> Put<K, V> {
        let hash = self.hash_of(&key);
        if let Some(i) = self.find(hash, &key) {
            self.promote(i as u32);
            // SAFETY: `find` returned an occupied slot.
            let old = unsafe { self.slots[i].value.assume_init_mut() };
            return Put::Updated(std::mem::replace(old, value));
        }
        // Make room in the key's cluster first. Only saturated clusters
        // (adversarial keys) take this path, and each round frees a slot.
        let mut evicted = None;
        let at = loop {
            match self.insertion_point(hash) {
                Ok(at) => break at,
                Err(victim) => {
                    let (k, v) = self.remove_at(victim);
                    evicted = Some((k, v));
                }
            }
        };
        self.place(at, hash, key, value);
        if evicted.is_none() && self.len > self.capacity {
            evicted = self.pop_lru();
        }
        match evicted {
            Some((key, value)) => Put::Evicted { key, value },
            None => Put::Inserted,
        }
    }

    /// Where a new entry with `hash` goes (`Ok`), or the slot of an entry to
    /// evict first because the cluster cannot shift within the bound (`Err`).
    fn insertion_point(&self, hash: u64) -> Result<usize, usize> {
        let mut at = self.home(hash);
        let mut displacement: u8 = 0;
        while self.slots[at].meta > displacement {
            at += 1;
            displacement += 1;
            if usize::from(displacement) > DISPLACEMENT_MAX {
                return Err(at - 1);
            }
        }
        let mut end = at;
        while self.slots[end].meta != 0 {
            if usize::from(self.slots[end].meta) > DISPLACEMENT_MAX {
                return Err(end);
            }
            end += 1;
        }
        Ok(at)
    }

    /// Places a new entry at `at` (from `insertion_point`), shifting the
    /// cluster right by one, and links it as most recently used.
    fn place(&mut self, at: usize, hash: u64, key: K, value: V) {
        let mut end = at;
        while self.slots[end].meta != 0 {
            end += 1;
        }
        for j in (at..end).rev() {
            self.move_slot(j, j + 1);
            self.slots[j + 1].meta += 1;
        }
        let displacement = at - self.home(hash);
        debug_assert!(displacement <= DISPLACEMENT_MAX);
        self.slots[at] = Slot {
            prev: NIL,
            next: NIL,
            fingerprint: hash as u32,
            meta: displacement as u8 + 1,
            key: MaybeUninit::new(key),
            value: MaybeUninit::new(value),
        };
        self.len += 1;
        self.push_front(at as u32);
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(self.hash_of(key), key)?;
        Some(self.remove_at(i).1)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        if self.tail == NIL {
            return None;
        }
        Some(self.remove_at(self.tail as usize))
    }

    /// Removes every entry, keeping the allocation.
    pub fn clear(&mut self) {
        while self.pop_lru().is_some() {}
    }

    /// Iterates from the most to the least recently used entry.
    pub fn iter(&self) -> Iter<'_, K, V, S> {
        Iter {
            cache: self,
            at: self.head,
            left: self.len,
        }
    }

    /// Unlinks and removes the entry at slot `i`, closing the gap by
    /// backward shifting.
    fn remove_at(&mut self, i: usize) -> (K, V) {
        debug_assert!(self.slots[i].meta != 0);
        self.unlink(i as u32);
        let slot = std::mem::replace(&mut self.slots[i], Slot::EMPTY);
        // SAFETY: the slot was occupied and is now marked empty, so its key
        // and value are moved out exactly once.
        let entry = unsafe { (slot.key.assume_init(), slot.value.assume_init()) };
        let mut j = i + 1;
        while j < self.slots.len() && self.slots[j].meta > 1 {
            self.move_slot(j, j - 1);
            self.slots[j - 1].meta -= 1;
            j += 1;
        }
        self.len -= 1;
        entry
    }

    /// Moves the entry at `from` into the empty slot `to` and points its list
    /// neighbours (or head/tail) at `to`.
    #[inline(always)]
    fn move_slot(&mut self, from: usize, to: usize) {
        debug_assert!(self.slots[to].meta == 0);
        let slot = std::mem::replace(&mut self.slots[from], Slot::EMPTY);
        let (prev, next) = (slot.prev, slot.next);
        self.slots[to] = slot;
        let to = to as u32;
        if prev == NIL {
            self.head = to;
        } else {
            self.slots[prev as usize].next = to;
        }
        if next == NIL {
            self.tail = to;
        } else {
            self.slots[next as usize].prev = to;
        }
    }

    #[inline(always)]
    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let slot = &self.slots[i as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    #[inline(always)]
    fn push_front(&mut self, i: u32) {
        let old_head = self.head;
        {
            let slot = &mut self.slots[i as usize];
            slot.prev = NIL;
            slot.next = old_head;
        }
        if old_head == NIL {
            self.tail = i;
        } else {
            self.slots[old_head as usize].prev = i;
        }
        self.head = i;
    }

    #[inline(always)]
    fn promote(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Checks the structural invariants; panics on violation. Linear cost:
    /// for tests.
    pub fn check_invariants(&self) {
        let mut occupied = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.meta == 0 {
                continue;
            }
            occupied += 1;
            // SAFETY: occupied slot.
            let hash = self.hash_of(unsafe { slot.key.assume_init_ref() });
            let home = self.home(hash);
            assert!(i >= home, "slot {i} precedes its home");
            assert_eq!(usize::from(slot.meta) - 1, i - home, "slot {i}: stale displacement");
            assert!(i - home <= DISPLACEMENT_MAX, "slot {i}: displacement over the bound");
            assert_eq!(slot.fingerprint, hash as u32, "slot {i}: stale fingerprint");
            // The key must be findable from its home.
            // SAFETY: occupied slot.
            assert_eq!(
                self.find(hash, unsafe { slot.key.assume_init_ref() }),
                Some(i),
                "slot {i}: not reachable by lookup"
            );
        }
        assert_eq!(occupied, self.len, "len mismatch");
        assert!(self.len <= self.capacity, "over capacity");
        let mut walked = 0;
        let mut prev = NIL;
        let mut at = self.head;
        while at != NIL {
            let slot = &self.slots[at as usize];
            assert!(slot.meta != 0, "list reaches an empty slot");
            assert_eq!(slot.prev, prev, "broken prev link at {at}");
            prev = at;
            at = slot.next;
            walked += 1;
            assert!(walked <= self.len, "list longer than len (cycle?)");
        }
        assert_eq!(prev, self.tail, "tail mismatch");
        assert_eq!(walked, self.len, "list shorter than len");
    }
}

impl<K, V, S> Drop for LruCache<K, V, S> {
    fn drop(&mut self) {
        if std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>() {
            for slot in self.slots.iter_mut() {
                if slot.meta != 0 {
                    slot.meta = 0;
                    // SAFETY: the slot was occupied and is marked empty before
                    // dropping, so key and value are dropped exactly once.
                    unsafe {
                        slot.key.assume_init_drop();
                        slot.value.assume_init_drop();
                    }
                }
            }
        }
    }
}

impl<K: Hash + Eq + fmt::Debug, V: fmt::Debug, S: BuildHasher> fmt::Debug for LruCache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

// SAFETY: the cache owns its keys and values like a `Vec<(K, V)>`; the slot
// indices are plain integers, not pointers.
unsafe impl<K: Send, V: Send, S: Send> Send for LruCache<K, V, S> {}
// SAFETY: shared access hands out only `&K`/`&V` and never mutates.
unsafe impl<K: Sync, V: Sync, S: Sync> Sync for LruCache<K, V, S> {}

/// Iterator from the most to the least recently used entry.
pub struct Iter<'a, K, V, S> {
    cache: &'a LruCache<K, V, S>,
    at: u32,
    left: usize,
}

impl<'a, K, V, S> Iterator for Iter<'a, K, V, S> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL || self.left == 0 {
            return None;
        }
        let slot = &self.cache.slots[self.at as usize];
        self.at = slot.next;
        self.left -= 1;
        // SAFETY: list nodes are occupied slots (invariant 3).
        Some(unsafe { (slot.key.assume_init_ref(), slot.value.assume_init_ref()) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 32] {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut c = LruCache::with_hasher(3, IdentityState);
        for n in 0..3 {
            assert_eq!(c.put(id(n), n), Put::Inserted);
        }
        assert_eq!(c.get(&id(0)), Some(&0));
        assert_eq!(c.put(id(3), 3), Put::Evicted { key: id(1), value: 1 });
        assert_eq!(c.put(id(0), 10), Put::Updated(0));
        c.check_invariants();
        let order: Vec<u64> = c.iter().map(|(_, v)| *v).collect();
        assert_eq!(order, vec![10, 3, 2]);
        assert_eq!(c.pop_lru(), Some((id(2), 2)));
        assert_eq!(c.remove(&id(3)), Some(3));
        assert_eq!(c.len(), 1);
        c.check_invariants();
    }

    #[test]
    fn many_entries_with_moves_keep_links_right() {
        let mut c = LruCache::new(1000);
        for n in 0..5000u64 {
            c.put(n, n * 2);
            if n % 7 == 0 {
                c.get(&(n / 2));
            }
            if n % 11 == 0 {
                c.remove(&(n / 3));
            }
        }
        c.check_invariants();
        assert_eq!(c.len(), 1000);
    }

    #[test]
    fn adversarial_ids_stay_bounded_and_consistent() {
        // Every key shares its first 8 bytes: one home slot under the identity
        // hash. The cache must stay correct and bounded, forgetting entries
        // of the saturated cluster instead of probing without end.
        let mut c = LruCache::with_hasher(4096, IdentityState);
        for n in 0..10_000u64 {
            let mut k = id(n);
            k[..8].fill(0x5A);
            c.put(k, n);
            let got = c.peek(&k);
            assert_eq!(got, Some(&n), "a key just put must be present");
        }
        c.check_invariants();
        assert!(c.len() <= DISPLACEMENT_MAX + 1);
    }

    #[test]
    fn drop_releases_keys_and_values() {
        use std::rc::Rc;
        let marker = Rc::new(());
        {
            let mut c = LruCache::new(10);
            for n in 0..30 {
                c.put(n, Rc::clone(&marker));
            }
            assert_eq!(Rc::strong_count(&marker), 11);
        }
        assert_eq!(Rc::strong_count(&marker), 1);
    }
}
