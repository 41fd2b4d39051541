//! `mempool/*`: the ordered robin-hood table against the maps a user would
//! pick for a mempool keyed by 32-byte transaction ids.
//!
//! Workload (as in the Rheia note): 1,000,000 distinct blake3 ids, values
//! `u64`, every table sized for 1 M up front where it can be. Each measured
//! iteration does all 1 M operations; throughput is per element.
//! - `insert`: into an empty, pre-sized table (built outside the timing).
//! - `get`: every id, in an order unrelated to insertion, from a full table.
//! - `remove`: every id from a full table (rebuilt outside the timing).
//! - `strata_prefetch` is the same table driven as the mempool ingests a
//!   batch: `prefetch` on the key 8 ahead, so cache misses overlap.
//! - `iter_sorted`: visit every entry in ascending id order; `hashbrown_sort`
//!   collects and sorts, which is what a hash map user has to do.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_benches::{shuffled_indices, uniform_keys};
use strata_storage::ordered_table::OrderedTable;

const KEYS: usize = 1_000_000;

type Key = [u8; 32];

/// The operations every contender implements, so each bench body is written
/// once and monomorphised per contender.
trait Map {
    /// Whether the bench loop calls `prefetch` a few keys ahead.
    const PREFETCH: bool = false;
    fn with_capacity(n: usize) -> Self;
    #[inline(always)]
    fn prefetch(&self, _k: &Key) {}
    fn put(&mut self, k: Key, v: u64);
    fn find(&self, k: &Key) -> Option<u64>;
    fn delete(&mut self, k: &Key) -> Option<u64>;
}

impl Map for OrderedTable<u64> {
    fn with_capacity(n: usize) -> Self {
        OrderedTable::with_capacity(n)
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

/// The same table driven the way the mempool ingests a batch: each key's
/// home slot is prefetched `PREFETCH_DISTANCE` keys ahead.
struct Prefetched(OrderedTable<u64>);

/// How many keys ahead the prefetching contender hints.
const PREFETCH_DISTANCE: usize = 8;

impl Map for Prefetched {
    const PREFETCH: bool = true;
    fn with_capacity(n: usize) -> Self {
        Prefetched(OrderedTable::with_capacity(n))
    }
    #[inline(always)]
    fn prefetch(&self, k: &Key) {
        self.0.prefetch(k);
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.0.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.0.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.0.remove(k)
    }
}

/// Calls `prefetch` on the key `PREFETCH_DISTANCE` ahead, for contenders
/// that have one.
#[inline(always)]
fn hint_ahead<M: Map>(m: &M, keys: &[Key], i: usize) {
    if M::PREFETCH {
        if let Some(ahead) = keys.get(i + PREFETCH_DISTANCE) {
            m.prefetch(ahead);
        }
    }
}

impl Map for hashbrown::HashMap<Key, u64> {
    fn with_capacity(n: usize) -> Self {
        hashbrown::HashMap::with_capacity(n)
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

impl Map for HashMap<Key, u64> {
    fn with_capacity(n: usize) -> Self {
        HashMap::with_capacity(n)
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

impl Map for BTreeMap<Key, u64> {
    fn with_capacity(_: usize) -> Self {
        BTreeMap::new() // a B-tree cannot be pre-sized
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

impl Map for crossbeam_skiplist::SkipMap<Key, u64> {
    fn with_capacity(_: usize) -> Self {
        crossbeam_skiplist::SkipMap::new()
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).map(|e| *e.value())
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k).map(|e| *e.value())
    }
}

impl Map for blart::TreeMap<Key, u64> {
    fn with_capacity(_: usize) -> Self {
        blart::TreeMap::new()
    }
    #[inline]
    fn put(&mut self, k: Key, v: u64) {
        self.insert(k, v);
    }
    #[inline]
    fn find(&self, k: &Key) -> Option<u64> {
        self.get(k).copied()
    }
    #[inline]
    fn delete(&mut self, k: &Key) -> Option<u64> {
        self.remove(k)
    }
}

fn filled<M: Map>(keys: &[Key]) -> M {
    let mut m = M::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        m.put(*k, i as u64);
    }
    m
}

struct Workload {
    keys: Vec<Key>,
    lookup_order: Vec<Key>,
}

fn bench_contender<M: Map>(c: &mut Criterion, name: &str, w: &Workload) {
    c.benchmark_group("mempool/insert")
        .throughput(Throughput::Elements(KEYS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .bench_function(name, |b| {
            b.iter_batched(
                || M::with_capacity(KEYS),
                |mut m| {
                    for (i, k) in w.keys.iter().enumerate() {
                        hint_ahead(&m, &w.keys, i);
                        m.put(*k, i as u64);
                    }
                    m
                },
                BatchSize::PerIteration,
            )
        });

    let full: M = filled(&w.keys);
    c.benchmark_group("mempool/get")
        .throughput(Throughput::Elements(KEYS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0u64;
                for (i, k) in w.lookup_order.iter().enumerate() {
                    hint_ahead(&full, &w.lookup_order, i);
                    hits += full.find(k).is_some() as u64;
                }
                assert_eq!(hits, KEYS as u64);
                hits
            })
        });
    drop(full);

    c.benchmark_group("mempool/remove")
        .throughput(Throughput::Elements(KEYS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .bench_function(name, |b| {
            b.iter_batched(
                || filled::<M>(&w.keys),
                |mut m| {
                    let mut removed = 0u64;
                    for (i, k) in w.lookup_order.iter().enumerate() {
                        hint_ahead(&m, &w.lookup_order, i);
                        removed += m.delete(k).is_some() as u64;
                    }
                    assert_eq!(removed, KEYS as u64);
                    m
                },
                BatchSize::PerIteration,
            )
        });
}

fn bench_iter_sorted(c: &mut Criterion, w: &Workload) {
    let mut group = c.benchmark_group("mempool/iter_sorted");
    group
        .throughput(Throughput::Elements(KEYS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));

    let table: OrderedTable<u64> = filled(&w.keys);
    group.bench_function("strata", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for (k, v) in table.iter() {
                acc = acc.wrapping_add(u64::from(k[0]) ^ *v);
            }
            acc
        })
    });
    drop(table);

    let tree: BTreeMap<Key, u64> = filled(&w.keys);
    group.bench_function("btreemap", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for (k, v) in tree.iter() {
                acc = acc.wrapping_add(u64::from(k[0]) ^ *v);
            }
            acc
        })
    });
    drop(tree);

    let map: hashbrown::HashMap<Key, u64> = filled(&w.keys);
    group.bench_function("hashbrown_sort", |b| {
        b.iter(|| {
            let mut entries: Vec<(&Key, &u64)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut acc = 0u64;
            for (k, v) in entries {
                acc = acc.wrapping_add(u64::from(k[0]) ^ *v);
            }
            acc
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let keys = uniform_keys(KEYS, 1);
    let lookup_order = shuffled_indices(KEYS, 2)
        .into_iter()
        .map(|i| keys[i])
        .collect();
    let w = Workload { keys, lookup_order };
    bench_contender::<OrderedTable<u64>>(c, "strata", &w);
    bench_contender::<Prefetched>(c, "strata_prefetch", &w);
    bench_contender::<hashbrown::HashMap<Key, u64>>(c, "hashbrown", &w);
    bench_contender::<HashMap<Key, u64>>(c, "std_hashmap", &w);
    bench_contender::<BTreeMap<Key, u64>>(c, "btreemap", &w);
    bench_contender::<crossbeam_skiplist::SkipMap<Key, u64>>(c, "skiplist", &w);
    bench_contender::<blart::TreeMap<Key, u64>>(c, "art", &w);
    bench_iter_sorted(c, &w);
    black_box(w);
}

criterion_group!(mempool, benches);
criterion_main!(mempool);
