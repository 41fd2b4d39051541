//! `lru/*`: Strata's intrusive robin-hood LRU against the `lru` crate.
//!
//! Workload, following the Rheia note: 1,000,000 distinct blake3 ids (values
//! `u64`) against a cache over 2^20 slots at a given load, i.e. a capacity of
//! `2^20 × load` entries:
//! - `load50`: capacity 524,288, so about half of the 1 M puts evict;
//! - `load100`: capacity 1,048,576, so all 1 M keys fit.
//!
//! Groups (throughput per element, 1 M operations per iteration):
//! - `put`: put every id into an empty cache (built outside the timing);
//! - `get`: get every id, in an order unrelated to insertion, from the cache
//!   the puts left (at `load50` about half miss), promoting hits;
//! - `remove`: remove every id from that cache (rebuilt outside the timing).
//!
//! Functions: `strata` is the configuration the node uses for ids
//! (`IdentityState`: the id's bytes are the hash); `strata_foldhash` hashes
//! like hashbrown does; `lru_crate` is the `lru` crate with its default
//! hasher, and `lru_crate_identity` gives it the same identity hash, so the
//! data structure can be compared apart from hashing.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use strata_benches::{shuffled_indices, uniform_keys};
use strata_storage::lru::{IdentityState, LruCache};

const KEYS: usize = 1_000_000;
const SLOTS: usize = 1 << 20;

type Key = [u8; 32];

trait Cache {
    fn with_capacity(n: usize) -> Self;
    fn put(&mut self, k: Key, v: u64);
    fn find(&mut self, k: &Key) -> Option<u64>;
    fn delete(&mut self, k: &Key) -> Option<u64>;
}

impl<S: std::hash::BuildHasher + Default> Cache for LruCache<Key, u64, S> {
    fn with_capacity(n: usize) -> Self {
        LruCache::with_hasher(n, S::default())
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        LruCache::put(self, k, v);
    }
    #[inline]
    fn find(&mut self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

impl<S: std::hash::BuildHasher + Default> Cache for lru::LruCache<Key, u64, S> {
    fn with_capacity(n: usize) -> Self {
        lru::LruCache::with_hasher(NonZeroUsize::new(n).expect("capacity > 0"), S::default())
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.push(k, v);
    }
    #[inline]
    fn find(&mut self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.pop(k)
    }
}

/// `lru` crate's default hasher (it re-exports hashbrown's).
type LruDefault = lru::DefaultHasher;

fn filled<C: Cache>(capacity: usize, keys: &[Key]) -> C {
    let mut c = C::with_capacity(capacity);
    for (i, k) in keys.iter().enumerate() {
        c.put(*k, i as u64);
    }
    c
}

fn bench_contender<C: Cache>(c: &mut Criterion, name: &str, keys: &[Key], order: &[Key]) {
    for (load, capacity) in [("load50", SLOTS / 2), ("load100", SLOTS)] {
        let id = BenchmarkId::new(name, load);
        c.benchmark_group("lru/put")
            .throughput(Throughput::Elements(KEYS as u64))
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .bench_with_input(id.clone(), &capacity, |b, &capacity| {
                b.iter_batched(
                    || C::with_capacity(capacity),
                    |mut cache| {
                        for (i, k) in keys.iter().enumerate() {
                            cache.put(*k, i as u64);
                        }
                        cache
                    },
                    BatchSize::PerIteration,
                )
            });

        let mut cache: C = filled(capacity, keys);
        c.benchmark_group("lru/get")
            .throughput(Throughput::Elements(KEYS as u64))
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .bench_function(id.clone(), |b| {
                b.iter(|| {
                    let mut hits = 0u64;
                    for k in order {
                        hits += cache.find(k).is_some() as u64;
                    }
                    hits
                })
            });
        drop(cache);

        c.benchmark_group("lru/remove")
            .throughput(Throughput::Elements(KEYS as u64))
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .bench_with_input(id, &capacity, |b, &capacity| {
                b.iter_batched(
                    || filled::<C>(capacity, keys),
                    |mut cache| {
                        let mut removed = 0u64;
                        for k in order {
                            removed += cache.delete(k).is_some() as u64;
                        }
                        black_box(removed);
                        cache
                    },
                    BatchSize::PerIteration,
                )
            });
    }
}

fn benches(c: &mut Criterion) {
    let keys = uniform_keys(KEYS, 11);
    let order: Vec<Key> = shuffled_indices(KEYS, 12)
        .into_iter()
        .map(|i| keys[i])
        .collect();
    bench_contender::<LruCache<Key, u64, IdentityState>>(c, "strata", &keys, &order);
    bench_contender::<LruCache<Key, u64, foldhash::fast::RandomState>>(
        c,
        "strata_foldhash",
        &keys,
        &order,
    );
    bench_contender::<lru::LruCache<Key, u64, LruDefault>>(c, "lru_crate", &keys, &order);
    bench_contender::<lru::LruCache<Key, u64, IdentityState>>(
        c,
        "lru_crate_identity",
        &keys,
        &order,
    );
}

criterion_group!(lru_benches, benches);
criterion_main!(lru_benches);
