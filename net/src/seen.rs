//! The node-wide cache of item ids already seen: a bounded, set-associative
//! table of 32-byte ids.
//!
//! Why not the LRU cache used for per-peer known ids: profiling
//! `net/recv_path` showed a new item's time going mostly to the seen
//! cache — a cache miss to probe a table of several MiB, then another to
//! unlink and evict the least recently used entry elsewhere in it. A seen
//! cache needs "remembers recent ids, forgets old ones, never grows", not an
//! exact recency order, so here an id lives in one bucket of [`WAYS`] ids
//! (two cache lines), newest first: a lookup or an insert touches that bucket
//! only, and an insert into a full bucket forgets the bucket's oldest id.
//! An id therefore survives at least [`WAYS`] later inserts and on average
//! about the capacity's worth; forgetting early only means a duplicate may
//! be routed again, as with any bounded cache.
//!
//! The bucket index mixes the id with a per-process random seed, so a peer
//! cannot grind ids that all land in one bucket to evict a chosen id.
//! An all-zero way marks an empty one; the all-zero id itself (which any peer
//! may claim) is tracked by a flag of its own.

use std::hash::BuildHasher;

use crate::message::ItemId;

/// Ids per bucket. Four 32-byte ids fill two cache lines, which the
/// adjacent-line prefetcher usually loads together.
pub const WAYS: usize = 4;

const EMPTY: ItemId = [0; 32];

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Newest first; empty ways (all zero) only after the occupied ones.
    ids: [ItemId; WAYS],
}

/// Node-wide cache of ids already seen. Holds at least `ids_max` ids (the
/// bucket count is rounded up to a power of two) in at most
/// `2 * ids_max * 32` bytes plus one bucket.
pub struct SeenCache {
    buckets: Box<[Bucket]>,
    /// `64 - log2(buckets.len())`: the index is the top bits of the mix.
    shift: u32,
    seed: u64,
    zero_seen: bool,
    len: usize,
}

impl std::fmt::Debug for SeenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SeenCache({} ids in {} buckets)",
            self.len,
            self.buckets.len()
        )
    }
}

impl SeenCache {
    /// A cache of at least `ids_max` ids.
    ///
    /// # Panics
    /// If `ids_max` is zero (the config validation refuses it first).
    pub fn new(ids_max: usize) -> Self {
        // std's RandomState is seeded from the OS once per process and
        // varies per instance: enough to keep the bucket of an id unknown
        // to peers, without a fallible call here.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Self::with_seed(ids_max, seed)
    }

    /// A cache of at least `ids_max` ids whose buckets are chosen by `seed`.
    /// Tests fix the seed: which ids share a bucket, and so which are
    /// forgotten early, then no longer changes from run to run.
    fn with_seed(ids_max: usize, seed: u64) -> Self {
        assert!(ids_max > 0, "a seen cache holds at least one id");
        let buckets_len = ids_max.div_ceil(WAYS).next_power_of_two();
        SeenCache {
            buckets: vec![Bucket { ids: [EMPTY; WAYS] }; buckets_len].into_boxed_slice(),
            shift: 64 - buckets_len.trailing_zeros(),
            seed,
            zero_seen: false,
            len: 0,
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most ids held at once.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS + 1
    }

    #[inline(always)]
    fn index(&self, id: &ItemId) -> usize {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&id[..8]);
        // A folded 128-bit multiply (as in foldhash) of the seeded prefix:
        // every output bit depends on every input bit and on the seed.
        let x = u64::from_le_bytes(prefix) ^ self.seed;
        let m = u128::from(x) * 0x9E37_79B9_7F4A_7C15_u128;
        let mixed = (m as u64) ^ ((m >> 64) as u64);
        if self.shift == 64 {
            0
        } else {
            (mixed >> self.shift) as usize
        }
    }

    /// Starts loading the bucket of `id` into the cache, so that a
    /// [`Self::insert`] or [`Self::contains`] a little later does not wait
    /// for memory. A hint only: it has no effect on results.
    #[inline(always)]
    pub fn prefetch(&self, id: &ItemId) {
        #[cfg(target_arch = "x86_64")]
        {
            let p: *const Bucket = &self.buckets[self.index(id)];
            // SAFETY: a prefetch is a hint that never faults and reads
            // nothing into the program; `p` points into a live allocation.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// True when `id` is new (and remembers it).
    #[inline]
    pub fn insert(&mut self, id: &ItemId) -> bool {
        if *id == EMPTY {
            let new = !std::mem::replace(&mut self.zero_seen, true);
            self.len += usize::from(new);
            return new;
        }
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        for way in &bucket.ids {
            if way == id {
                return false;
            }
            if *way == EMPTY {
                self.len += 1;
                break;
            }
        }
        // Newest first: shift the others down one way, forgetting the
        // oldest when the bucket was full.
        bucket.ids.copy_within(0..WAYS - 1, 1);
        bucket.ids[0] = *id;
        true
    }

    /// True when `id` was seen.
    #[inline]
    pub fn contains(&self, id: &ItemId) -> bool {
        if *id == EMPTY {
            return self.zero_seen;
        }
        for way in &self.buckets[self.index(id)].ids {
            if way == id {
                return true;
            }
            if *way == EMPTY {
                return false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ItemId {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    /// Any fixed seed: with a random one, 100 ids in 256 buckets put five
    /// in one bucket in about 1 % of runs, and the oldest of them is
    /// forgotten (as designed), which made this test fail at random.
    const SEED: u64 = 0x5eed;

    #[test]
    fn remembers_and_reports_duplicates() {
        let mut s = SeenCache::with_seed(1024, SEED);
        assert!(s.is_empty());
        for n in 0..100 {
            assert!(!s.contains(&id(n)));
            assert!(s.insert(&id(n)));
        }
        for n in 0..100 {
            assert!(s.contains(&id(n)));
            assert!(!s.insert(&id(n)));
        }
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn the_zero_id_is_an_id_not_an_empty_way() {
        let mut s = SeenCache::with_seed(8, SEED);
        assert!(!s.contains(&EMPTY));
        assert!(s.insert(&EMPTY));
        assert!(s.contains(&EMPTY));
        assert!(!s.insert(&EMPTY));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn one_bucket_forgets_its_oldest_id_first() {
        // Capacity WAYS: a single bucket, so eviction is exact FIFO.
        let mut s = SeenCache::with_seed(WAYS, SEED);
        for n in 0..WAYS as u64 {
            assert!(s.insert(&id(n)));
        }
        assert!(s.insert(&id(100)));
        assert!(!s.contains(&id(0)), "the oldest id is forgotten");
        for n in 1..WAYS as u64 {
            assert!(s.contains(&id(n)));
        }
        assert!(s.contains(&id(100)));
        assert_eq!(s.len(), WAYS);
    }

    #[test]
    fn bounded_and_keeps_most_recent_ids() {
        const IDS_MAX: usize = 4096;
        let mut s = SeenCache::with_seed(IDS_MAX, SEED);
        for n in 0..10 * IDS_MAX as u64 {
            s.insert(&id(n));
            assert!(s.len() <= s.capacity());
        }
        assert!(s.capacity() <= 2 * IDS_MAX + 1);
        // Every id survives at least WAYS later inserts...
        let last = 10 * IDS_MAX as u64;
        for n in last - WAYS as u64..last {
            assert!(s.contains(&id(n)));
        }
        // ...and most of the last half capacity's worth are still there.
        let recent = (last - IDS_MAX as u64 / 2..last)
            .filter(|&n| s.contains(&id(n)))
            .count();
        assert!(
            recent > IDS_MAX / 2 * 8 / 10,
            "only {recent} recent ids kept"
        );
    }
}
