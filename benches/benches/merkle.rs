//! Sparse merkle trie benchmarks (issue 5): `strata` against the `jmt`
//! crate (feature `compare`), plus the raw blake3 rate on 64-byte inputs
//! that the hashing efficiency is measured against.
//!
//! `cargo bench -p strata-benches --bench merkle [--features compare]`
//! (≈ 6 min with `compare`). Set `STRATA_BENCH_10M=1` to add the 10 M-key
//! `root_from_sorted` run and `STRATA_BENCH_APPLY_10M=1` for `apply` into a
//! 10 M-key trie.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use strata_benches::{shuffled_indices, uniform_keys};
use strata_storage::merkle::{
    root_of_sorted, root_of_sorted_parallel, verify_path, MemStore, Proof, SortedRootBuilder, Trie,
    TrieConfig, Update,
};

type H = [u8; 32];

const KEYS: usize = 1_000_000;
const BATCH_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Keys for jmt's `root_from_sorted` stand-in (see `bench_root_from_sorted`).
#[cfg(feature = "compare")]
const JMT_ROOT_KEYS: usize = 100_000;

/// `n` sorted pairs of uniform paths and value hashes.
fn sorted_pairs(n: usize, seed: u64) -> Vec<(H, H)> {
    let keys = uniform_keys(n, seed);
    let values = uniform_keys(n, seed ^ 0xA5A5);
    let mut pairs: Vec<(H, H)> = keys.into_iter().zip(values).collect();
    pairs.sort_unstable();
    pairs
}

/// blake3 hashes of distinct 64-byte inputs per second, one core, best of 3.
fn blake3_64_rate() -> f64 {
    let n = 2_000_000u64;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut buf = [7u8; 64];
        let start = Instant::now();
        for i in 0..n {
            buf[..8].copy_from_slice(&i.to_le_bytes());
            black_box(blake3::hash(black_box(&buf)));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    n as f64 / best
}

/// (seconds, compressions) of the best of 3 serial streaming roots.
fn time_serial_root(pairs: &[(H, H)]) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut compressions = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let mut builder = SortedRootBuilder::new();
        for (p, v) in pairs {
            builder.push(*p, *v).unwrap();
        }
        let (root, c) = builder.finish_counted();
        black_box(root);
        best = best.min(start.elapsed().as_secs_f64());
        compressions = c;
    }
    (best, compressions)
}

fn report_efficiency(label: &str, pairs: &[(H, H)], blake3_rate: f64) {
    let (secs, compressions) = time_serial_root(pairs);
    let rate = compressions as f64 / secs;
    println!(
        "merkle efficiency [{label}] serial: {:.2} M compressions/s ({:.3} per key) = {:.0} % of blake3_64 ({:.2} M/s)",
        rate / 1e6,
        compressions as f64 / pairs.len() as f64,
        100.0 * rate / blake3_rate,
        blake3_rate / 1e6
    );
    let mut best = f64::MAX;
    let mut compressions = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let (root, c) = root_of_sorted_parallel(pairs, 2).unwrap();
        black_box(root);
        best = best.min(start.elapsed().as_secs_f64());
        compressions = c;
    }
    let rate = compressions as f64 / best;
    println!(
        "merkle efficiency [{label}] 2 threads: {:.2} M compressions/s = {:.0} % of 2 x blake3_64",
        rate / 1e6,
        100.0 * rate / (2.0 * blake3_rate)
    );
}

fn bench_blake3_64(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle/blake3_64");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("blake3", |b| {
        let mut buf = [7u8; 64];
        b.iter(|| {
            for i in 0..10_000u64 {
                buf[..8].copy_from_slice(&i.to_le_bytes());
                black_box(blake3::hash(black_box(&buf)));
            }
        })
    });
    group.finish();
}

fn bench_root_from_sorted(c: &mut Criterion) {
    let blake3_rate = blake3_64_rate();
    let mut sizes = vec![KEYS];
    if std::env::var_os("STRATA_BENCH_10M").is_some() {
        sizes.push(10 * KEYS);
    }
    for n in sizes {
        let pairs = sorted_pairs(n, 1);
        let mut group = c.benchmark_group("merkle/root_from_sorted");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("strata", n), &pairs, |b, pairs| {
            b.iter(|| root_of_sorted(pairs.iter().copied()).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("strata_2threads", n),
            &pairs,
            |b, pairs| b.iter(|| root_of_sorted_parallel(pairs, 2).unwrap()),
        );
        group.finish();
        report_efficiency(&format!("{n} keys"), &pairs, blake3_rate);
    }
    // jmt has no streaming root: the nearest equivalent is loading the set
    // into an empty tree. At 1 M keys that takes ~16 s per run (10 runs =
    // most of the bench budget), so it runs at 100 k keys; per key that
    // flatters jmt (its cost per key grows with depth).
    #[cfg(feature = "compare")]
    {
        let n = JMT_ROOT_KEYS;
        let pairs = sorted_pairs(n, 1);
        let mut group = c.benchmark_group("merkle/root_from_sorted");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("strata", n), &pairs, |b, pairs| {
            b.iter(|| root_of_sorted(pairs.iter().copied()).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("jmt", n), &pairs, |b, pairs| {
            b.iter(|| rival::root_from_scratch(pairs))
        });
        group.finish();
    }
}

/// `size` distinct random keys of the trie, sorted, with fresh values.
fn update_batch(keys: &[H], order: &[usize], size: usize, round: u64) -> Vec<Update> {
    let start = (round as usize * size) % keys.len();
    let mut batch: Vec<Update> = (0..size)
        .map(|j| {
            let key = keys[order[(start + j) % keys.len()]];
            let mut vh = key;
            vh[..8].copy_from_slice(&round.to_le_bytes());
            (key, Some(vh))
        })
        .collect();
    batch.sort_unstable();
    batch
}

fn bench_apply(c: &mut Criterion) {
    let pairs = sorted_pairs(KEYS, 2);
    let keys: Vec<H> = pairs.iter().map(|(k, _)| *k).collect();
    let order = shuffled_indices(KEYS, 9);
    let initial: Vec<Update> = pairs.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    let start = Instant::now();
    trie.apply(&initial).unwrap();
    let s = trie.last_stats();
    println!(
        "merkle apply: initial 1M-key load {:.2} s, {} pages, {:.1} MB in store",
        start.elapsed().as_secs_f64(),
        s.pages_written,
        trie.store().bytes() as f64 / 1e6
    );

    let mut group = c.benchmark_group("merkle/apply");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let mut round = 1u64;
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("strata", size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = update_batch(&keys, &order, size, round);
                    round += 1;
                    let start = Instant::now();
                    black_box(trie.apply(&batch).unwrap());
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    for size in BATCH_SIZES {
        let batch = update_batch(&keys, &order, size, round);
        round += 1;
        trie.apply(&batch).unwrap();
        let s = trie.last_stats();
        println!(
            "merkle apply stats [{size} updates into 1M]: {:.2} pages written/update, {:.0} bytes written/update, {:.1} compressions/update, {} pages pruned",
            s.pages_written as f64 / size as f64,
            s.bytes_written as f64 / size as f64,
            s.compressions as f64 / size as f64,
            s.pages_deleted
        );
    }
    println!(
        "merkle apply: store after the runs: {} records, {:.1} MB (16 retained versions)",
        trie.store().len(),
        trie.store().bytes() as f64 / 1e6
    );

    // Proofs against the same 1M-key trie.
    let mut group = c.benchmark_group("merkle/prove");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("strata", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            trie.prove(&keys[order[i]]).unwrap()
        })
    });
    group.finish();

    let root = trie.root();
    let samples: Vec<(H, Option<H>, Proof)> = (0..1000)
        .map(|j| {
            let key = keys[order[j * 997 % KEYS]];
            let proof = Proof::decode(&trie.prove(&key).unwrap().encode()).unwrap();
            (key, trie.get(&key).unwrap(), proof)
        })
        .collect();
    let avg_bytes: f64 = samples
        .iter()
        .map(|(_, _, p)| p.encoded_len() as f64)
        .sum::<f64>()
        / samples.len() as f64;
    println!("merkle prove: average encoded inclusion proof {avg_bytes:.0} bytes (1M keys)");
    let mut group = c.benchmark_group("merkle/verify");
    group.throughput(Throughput::Elements(1));
    let mut j = 0usize;
    group.bench_function("strata", |b| {
        b.iter(|| {
            j = (j + 1) % samples.len();
            let (key, vh, proof) = &samples[j];
            assert!(verify_path(&root, key, vh.as_ref(), proof));
        })
    });
    group.finish();
}

/// The same apply / prove / verify workloads on `jmt`, run after the Strata
/// trie is dropped so neither runs in a heap fragmented by the other (both
/// use the process's glibc malloc, and a 1 M-key jmt tree is ~4 GB).
#[cfg(feature = "compare")]
fn bench_apply_jmt(c: &mut Criterion) {
    let pairs = sorted_pairs(KEYS, 2);
    let keys: Vec<H> = pairs.iter().map(|(k, _)| *k).collect();
    let order = shuffled_indices(KEYS, 9);
    let mut jmt_tree = rival::Rival::load(&pairs);
    drop(pairs);
    let mut group = c.benchmark_group("merkle/apply");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let mut round = 1u64;
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("jmt", size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = update_batch(&keys, &order, size, round);
                    round += 1;
                    total += jmt_tree.apply_timed(&batch);
                }
                total
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("merkle/prove");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("jmt", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            jmt_tree.prove(&keys[order[i]])
        })
    });
    group.finish();
    let sample_keys: Vec<H> = (0..1000).map(|j| keys[order[j * 997 % KEYS]]).collect();
    let proofs = jmt_tree.sample_proofs(&sample_keys);
    let mut group = c.benchmark_group("merkle/verify");
    group.throughput(Throughput::Elements(1));
    let mut j = 0usize;
    group.bench_function("jmt", |b| {
        b.iter(|| {
            j = (j + 1) % proofs.len();
            jmt_tree.verify(&proofs[j]);
        })
    });
    group.finish();
}

#[cfg(not(feature = "compare"))]
fn bench_apply_jmt(_: &mut Criterion) {}

/// `merkle/apply_10m`: the same batches into a 10 M-key trie, Strata only
/// (loading jmt with 10 M keys alone takes minutes). Runs only with
/// `STRATA_BENCH_APPLY_10M=1`: it needs ~4 GB of RAM and ~2 minutes.
fn bench_apply_10m(c: &mut Criterion) {
    if std::env::var_os("STRATA_BENCH_APPLY_10M").is_none() {
        return;
    }
    let n = 10 * KEYS;
    let pairs = sorted_pairs(n, 3);
    let keys: Vec<H> = pairs.iter().map(|(k, _)| *k).collect();
    let order = shuffled_indices(n, 11);
    let initial: Vec<Update> = pairs.iter().map(|(k, v)| (*k, Some(*v))).collect();
    drop(pairs);
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    let start = Instant::now();
    trie.apply(&initial).unwrap();
    drop(initial);
    println!(
        "merkle apply: initial 10M-key load {:.2} s, {:.1} MB in store",
        start.elapsed().as_secs_f64(),
        trie.store().bytes() as f64 / 1e6
    );
    let mut group = c.benchmark_group("merkle/apply_10m");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let mut round = 1u64;
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("strata", size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = update_batch(&keys, &order, size, round);
                    round += 1;
                    let start = Instant::now();
                    black_box(trie.apply(&batch).unwrap());
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    for size in BATCH_SIZES {
        let batch = update_batch(&keys, &order, size, round);
        round += 1;
        trie.apply(&batch).unwrap();
        let s = trie.last_stats();
        println!(
            "merkle apply stats [{size} updates into 10M]: {:.2} pages written/update, {:.0} bytes written/update, {:.1} compressions/update",
            s.pages_written as f64 / size as f64,
            s.bytes_written as f64 / size as f64,
            s.compressions as f64 / size as f64,
        );
    }
}

#[cfg(feature = "compare")]
mod rival {
    //! The `jmt` crate (Jellyfish Merkle Tree, 16-ary, SHA-256) on its own
    //! in-memory `MockTreeStore`, driven like Strata's trie.
    use super::{Update, H};
    use jmt::mock::MockTreeStore;
    use jmt::proof::SparseMerkleProof;
    use jmt::{KeyHash, RootHash, Sha256Jmt};
    use std::time::{Duration, Instant};

    /// A fresh tree holding `pairs` at version 0; returns its root.
    pub fn root_from_scratch(pairs: &[(H, H)]) -> RootHash {
        let store = MockTreeStore::default();
        let tree = Sha256Jmt::new(&store);
        let (root, batch) = tree
            .put_value_set(
                pairs.iter().map(|(k, v)| (KeyHash(*k), Some(v.to_vec()))),
                0,
            )
            .unwrap();
        store.write_tree_update_batch(batch).unwrap();
        root
    }

    pub struct Rival {
        store: MockTreeStore,
        version: u64,
        root: RootHash,
    }

    impl Rival {
        pub fn load(pairs: &[(H, H)]) -> Self {
            let store = MockTreeStore::default();
            let (root, batch) = Sha256Jmt::new(&store)
                .put_value_set(
                    pairs.iter().map(|(k, v)| (KeyHash(*k), Some(v.to_vec()))),
                    0,
                )
                .unwrap();
            store.write_tree_update_batch(batch).unwrap();
            Self {
                store,
                version: 0,
                root,
            }
        }

        /// Applies a batch as the next version; times put + write, not the
        /// pruning of old versions (done after, untimed, to bound memory).
        pub fn apply_timed(&mut self, batch: &[Update]) -> Duration {
            self.version += 1;
            let start = Instant::now();
            let (root, update) = Sha256Jmt::new(&self.store)
                .put_value_set(
                    batch
                        .iter()
                        .map(|(k, v)| (KeyHash(*k), v.map(|v| v.to_vec()))),
                    self.version,
                )
                .unwrap();
            self.store.write_tree_update_batch(update).unwrap();
            let elapsed = start.elapsed();
            self.root = root;
            if self.version > 16 {
                self.store.purge_stale_nodes(self.version - 15).unwrap();
            }
            elapsed
        }

        pub fn prove(&self, key: &H) -> SparseMerkleProof<sha2::Sha256> {
            Sha256Jmt::new(&self.store)
                .get_with_proof(KeyHash(*key), self.version)
                .unwrap()
                .1
        }

        pub fn sample_proofs(
            &self,
            keys: &[H],
        ) -> Vec<(H, Option<Vec<u8>>, SparseMerkleProof<sha2::Sha256>)> {
            keys.iter()
                .map(|k| {
                    let (v, p) = Sha256Jmt::new(&self.store)
                        .get_with_proof(KeyHash(*k), self.version)
                        .unwrap();
                    (*k, v, p)
                })
                .collect()
        }

        pub fn verify(&self, sample: &(H, Option<Vec<u8>>, SparseMerkleProof<sha2::Sha256>)) {
            sample
                .2
                .verify(self.root, KeyHash(sample.0), sample.1.as_ref())
                .unwrap();
        }
    }
}

criterion_group!(
    benches,
    bench_blake3_64,
    bench_root_from_sorted,
    bench_apply,
    bench_apply_jmt,
    bench_apply_10m
);
criterion_main!(benches);
