//! `storage/*`: the LSM `Db` (function `strata`) with 32-byte uniformly
//! distributed keys (`uniform_keys`) and 100-byte values, WAL on, sync off,
//! 64 MiB memtable, 8 MiB block cache, no compression; with
//! `--features compare`, `fjall` beside it with the same settings.
//!
//! - `fillseq`: 1 M puts in ascending key order into a fresh `Db`.
//! - `fillrandom`: 1 M puts in random order into a fresh `Db`.
//! - `readrandom`: 100 k gets of present keys from a 1 M-key `Db`.
//! - `readmissing`: 100 k gets of absent keys from the same `Db`.
//! - `scan`: a full ascending scan of the 1 M-key `Db`.
//!
//! Run: `cargo bench -p strata-benches --bench storage [--features compare]`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata_benches::uniform_keys;
use strata_storage::{Db, Options};

const KEYS: usize = 1_000_000;
const READS: usize = 100_000;
const VALUE: [u8; 100] = [0xab; 100];
/// Block cache given to every engine.
const CACHE_BYTES: u64 = 8 << 20;

/// The operations the workloads need, one implementation per engine, all
/// opened with the same settings: WAL on, sync off, 64 MiB memtable,
/// `CACHE_BYTES` block cache, no compression.
trait Engine: Sized {
    const NAME: &'static str;
    fn open(dir: &std::path::Path) -> Self;
    fn put(&self, k: &[u8; 32]);
    fn has(&self, k: &[u8; 32]) -> bool;
    fn count_all(&self) -> usize;
}

impl Engine for Db {
    const NAME: &'static str = "strata";
    fn open(dir: &std::path::Path) -> Self {
        let options = Options::new()
            .memtable_bytes(64 << 20)
            .block_cache_bytes(CACHE_BYTES as usize);
        Db::open(dir, options).expect("open")
    }
    fn put(&self, k: &[u8; 32]) {
        Db::put(self, k, &VALUE).expect("put");
    }
    fn has(&self, k: &[u8; 32]) -> bool {
        self.get(k).expect("get").is_some()
    }
    fn count_all(&self) -> usize {
        let mut n = 0;
        for kv in self.scan(..).expect("scan") {
            kv.expect("entry");
            n += 1;
        }
        n
    }
}

/// fjall 3 (pure Rust LSM), behind `--features compare`. It has no zstd,
/// so the comparison runs uncompressed for every engine.
#[cfg(feature = "compare")]
struct Fjall {
    _db: fjall::Database,
    ks: fjall::Keyspace,
}

#[cfg(feature = "compare")]
impl Engine for Fjall {
    const NAME: &'static str = "fjall";
    fn open(dir: &std::path::Path) -> Self {
        let db = fjall::Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .open()
            .expect("open fjall");
        let ks = db
            .keyspace("bench", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(64 << 20)
                    .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
            })
            .expect("keyspace");
        Fjall { _db: db, ks }
    }
    fn put(&self, k: &[u8; 32]) {
        self.ks.insert(k, VALUE).expect("insert");
    }
    fn has(&self, k: &[u8; 32]) -> bool {
        self.ks.get(k).expect("get").is_some()
    }
    fn count_all(&self) -> usize {
        let mut n = 0;
        for guard in self.ks.iter() {
            guard.into_inner().expect("entry");
            n += 1;
        }
        n
    }
}

fn fill<E: Engine>(keys: &[[u8; 32]]) -> (tempfile::TempDir, E) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = E::open(dir.path());
    for k in keys {
        db.put(k);
    }
    (dir, db)
}

fn fill_fn<E: Engine>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    keys: &[[u8; 32]],
) {
    g.bench_function(E::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (dir, db) = fill::<E>(keys);
                total += start.elapsed();
                drop(db);
                drop(dir);
            }
            total
        })
    });
}

fn bench_fill(c: &mut Criterion, name: &str, keys: &[[u8; 32]]) {
    let mut g = c.benchmark_group(name);
    // Flat sampling: 10 fills of 1 M keys, not 1 + 2 + … + 10 of them.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(keys.len() as u64));
    fill_fn::<Db>(&mut g, keys);
    #[cfg(feature = "compare")]
    fill_fn::<Fjall>(&mut g, keys);
    g.finish();
}

/// readrandom, readmissing and scan over one filled engine.
fn bench_reads<E: Engine>(
    c: &mut Criterion,
    random: &[[u8; 32]],
    reads: &[[u8; 32]],
    missing: &[[u8; 32]],
) {
    let (_dir, db) = fill::<E>(random);
    let mut g = c.benchmark_group("storage/readrandom");
    g.sample_size(10)
        .throughput(Throughput::Elements(READS as u64));
    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            for k in reads {
                assert!(db.has(k));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("storage/readmissing");
    g.sample_size(10)
        .throughput(Throughput::Elements(READS as u64));
    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            for k in missing {
                assert!(!db.has(k));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("storage/scan");
    g.sample_size(10)
        .throughput(Throughput::Elements(KEYS as u64));
    g.bench_function(E::NAME, |b| b.iter(|| assert_eq!(db.count_all(), KEYS)));
    g.finish();
}

fn storage(c: &mut Criterion) {
    let random = uniform_keys(KEYS, 1);
    let mut sorted = random.clone();
    sorted.sort_unstable();
    bench_fill(c, "storage/fillseq", &sorted);
    bench_fill(c, "storage/fillrandom", &random);

    let reads: Vec<[u8; 32]> = uniform_keys(READS, 2)
        .iter()
        .map(|h| random[(u64::from_le_bytes(h[..8].try_into().unwrap()) % KEYS as u64) as usize])
        .collect();
    let missing = uniform_keys(READS, 3);
    bench_reads::<Db>(c, &random, &reads, &missing);
    #[cfg(feature = "compare")]
    bench_reads::<Fjall>(c, &random, &reads, &missing);
}

criterion_group!(benches, storage);
criterion_main!(benches);
