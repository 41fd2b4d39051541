//! `storage/*`: the LSM `Db` (function `strata`) with 32-byte uniformly
//! distributed keys (`uniform_keys`) and 100-byte values, WAL on, sync off,
//! default options (64 MiB memtable, synchronous flush, no compaction).
//!
//! - `fillseq`: 1 M puts in ascending key order into a fresh `Db`.
//! - `fillrandom`: 1 M puts in random order into a fresh `Db`.
//! - `readrandom`: 100 k gets of present keys from a 1 M-key `Db`.
//! - `readmissing`: 100 k gets of absent keys from the same `Db`.
//! - `scan`: a full ascending scan of the 1 M-key `Db`.
//!
//! Run: `cargo bench -p strata-benches --bench storage`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata_benches::uniform_keys;
use strata_storage::{Db, Options};

const KEYS: usize = 1_000_000;
const READS: usize = 100_000;
const VALUE: [u8; 100] = [0xab; 100];

fn fill(keys: &[[u8; 32]]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(dir.path(), Options::new()).expect("open");
    for k in keys {
        db.put(k, &VALUE).expect("put");
    }
    (dir, db)
}

fn bench_fill(c: &mut Criterion, name: &str, keys: &[[u8; 32]]) {
    let mut g = c.benchmark_group(name);
    // Flat sampling: 10 fills of 1 M keys, not 1 + 2 + … + 10 of them.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("strata", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (dir, db) = fill(keys);
                total += start.elapsed();
                drop(db);
                drop(dir);
            }
            total
        })
    });
    g.finish();
}

fn storage(c: &mut Criterion) {
    let random = uniform_keys(KEYS, 1);
    let mut sorted = random.clone();
    sorted.sort_unstable();
    bench_fill(c, "storage/fillseq", &sorted);
    bench_fill(c, "storage/fillrandom", &random);

    let (_dir, db) = fill(&random);
    let reads: Vec<[u8; 32]> = uniform_keys(READS, 2)
        .iter()
        .map(|h| random[(u64::from_le_bytes(h[..8].try_into().unwrap()) % KEYS as u64) as usize])
        .collect();
    let missing = uniform_keys(READS, 3);

    let mut g = c.benchmark_group("storage/readrandom");
    g.sample_size(10)
        .throughput(Throughput::Elements(READS as u64));
    g.bench_function("strata", |b| {
        b.iter(|| {
            for k in &reads {
                assert!(db.get(k).expect("get").is_some());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("storage/readmissing");
    g.sample_size(10)
        .throughput(Throughput::Elements(READS as u64));
    g.bench_function("strata", |b| {
        b.iter(|| {
            for k in &missing {
                assert!(db.get(k).expect("get").is_none());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("storage/scan");
    g.sample_size(10)
        .throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("strata", |b| {
        b.iter(|| {
            let mut n = 0;
            for kv in db.scan(..).expect("scan") {
                kv.expect("entry");
                n += 1;
            }
            assert_eq!(n, KEYS);
        })
    });
    g.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
