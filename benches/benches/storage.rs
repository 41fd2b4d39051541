//! `storage/*`: the LSM `Db` (function `strata`) with 32-byte uniformly
//! distributed keys (`uniform_keys`) and 100-byte values; with
//! `--features compare`, `rocksdb` (the `rocksdb` crate, RocksDB 11) and
//! `fjall` (fjall 3) beside it in the same run. Same settings for every
//! engine: WAL on, sync off, 64 MiB memtable, 8 MiB block cache, 10-bit
//! bloom filters, the same compression; everything else is each engine's
//! default (RocksDB: 4 KiB blocks, L1 256 MiB, two background jobs;
//! strata: 16 KiB blocks, L1 64 MiB, one flush and one compaction thread).
//!
//! Values are half random, half zeros (about 2:1 under zstd, like
//! db_bench's default `compression_ratio` 0.5), from a pool of 1,024.
//!
//! - `fillseq`: `STRATA_BENCH_KEYS` puts in ascending key order into a fresh engine.
//! - `fillrandom`: `STRATA_BENCH_KEYS` puts in random order into a fresh engine.
//! - `ingest`: the same keys, sorted, loaded into a fresh engine as one
//!   bulk ingestion, each engine its own way: strata `Db::ingest_sorted`
//!   (tables written directly); RocksDB an SST file written with
//!   `SstFileWriter`, then `ingest_external_file` (what RocksDB users do
//!   for bulk loads); fjall `Keyspace::start_ingestion`. Timed until each
//!   call returns (strata's run is durable then; the rivals' as they
//!   document).
//! - `space` (printed, not a criterion group, but selected by the same
//!   filter): one more fillrandom per engine, settled, reporting write
//!   amplification and on-disk bytes (see [`report_space`]).
//! - `readrandom`: 100 k gets of present keys.
//! - `readmissing`: 100 k gets of absent keys.
//! - `scan`: a full ascending scan.
//! - `overwrite`: 100 k puts of present keys in random order.
//! - `mixed`: 100 k operations, 50 % gets and 50 % overwrites of present
//!   keys drawn uniformly (YCSB workload A's mix; A draws keys from a
//!   zipfian distribution, uniform is the harder case for caches).
//!
//! The read, overwrite and mixed groups share one filled engine each,
//! filled on first use and settled (memtable flushed, compactions done)
//! before measuring, so every engine is read in its steady shape.
//!
//! Scale and compression come from the environment, so one command line
//! selects a run and the group names say which it was:
//! - `STRATA_BENCH_KEYS` = `1M` (default) or `10M` (or a plain number);
//! - `STRATA_BENCH_COMPRESSION` = `none` (default) or `zstd` (level 3 for
//!   strata and RocksDB; fjall 3 has no zstd, so it sits zstd runs out).
//!
//! Group names: `storage/<workload>` for 1 M keys uncompressed, otherwise
//! `storage/<workload>/<10M|zstd|10M-zstd>`.
//!
//! Run: `cargo bench -p strata-benches --bench storage [--features compare]`,
//! e.g. `STRATA_BENCH_KEYS=10M STRATA_BENCH_COMPRESSION=zstd cargo bench
//! -p strata-benches --features compare --bench storage -- storage/`.

use std::cell::OnceCell;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::Throughput;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use strata_benches::uniform_keys;
use strata_storage::{Db, Options};

/// Operations per iteration of the read, overwrite and mixed groups.
const OPS: usize = 100_000;
const VALUE_BYTES: usize = 100;
/// Distinct values the workloads cycle through.
const VALUES: usize = 1024;
/// Block cache given to every engine, in bytes.
const CACHE_BYTES: usize = 8 << 20;
/// Memtable (write buffer) of every engine, in bytes.
const MEMTABLE_BYTES: usize = 64 << 20;
/// zstd level in zstd runs (RocksDB's default level for zstd is 3 too).
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Compression {
    None,
    Zstd,
}

/// What this run measures, from the environment (see the module docs).
struct Setup {
    keys: usize,
    compression: Compression,
}

impl Setup {
    fn from_env() -> Setup {
        let keys = match std::env::var("STRATA_BENCH_KEYS").as_deref() {
            Err(_) | Ok("1M") => 1_000_000,
            Ok("10M") => 10_000_000,
            Ok(n) => n.parse().expect("STRATA_BENCH_KEYS: 1M, 10M or a number"),
        };
        let compression = match std::env::var("STRATA_BENCH_COMPRESSION").as_deref() {
            Err(_) | Ok("none") => Compression::None,
            Ok("zstd") => Compression::Zstd,
            Ok(other) => panic!("STRATA_BENCH_COMPRESSION: none or zstd, not {other}"),
        };
        assert!(keys >= OPS, "at least {OPS} keys");
        Setup { keys, compression }
    }

    /// `storage/<workload>`, suffixed with the scale and compression when
    /// they are not the defaults.
    fn group(&self, workload: &str) -> String {
        let scale = match self.keys {
            1_000_000 => String::new(),
            n if n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
            n => n.to_string(),
        };
        let label = match (scale.is_empty(), self.compression) {
            (true, Compression::None) => return format!("storage/{workload}"),
            (true, Compression::Zstd) => "zstd".to_string(),
            (false, Compression::None) => scale,
            (false, Compression::Zstd) => format!("{scale}-zstd"),
        };
        format!("storage/{workload}/{label}")
    }
}

/// The operations the workloads need. Object-safe so that the engines sit
/// in one list; the virtual call costs every engine the same nanosecond.
trait Engine {
    fn put(&self, k: &[u8; 32], v: &[u8]);
    fn has(&self, k: &[u8; 32]) -> bool;
    fn count_all(&self) -> usize;
    /// Flushes the memtable and waits until background compaction is idle.
    fn settle(&self);
    /// Loads `keys` (ascending) with `data`'s values as one bulk ingestion;
    /// `scratch` is an empty directory for files the engine's method
    /// needs before ingesting.
    fn ingest_sorted(&self, scratch: &Path, keys: &[[u8; 32]], data: &Data);
}

/// An engine the run can open: its criterion function name, whether it
/// has zstd, and how to open it in an empty directory.
#[derive(Clone, Copy)]
struct Kind {
    name: &'static str,
    zstd: bool,
    open: fn(&Path, Compression) -> Box<dyn Engine>,
}

/// The engines that run with `compression`.
fn engines(compression: Compression) -> Vec<Kind> {
    let mut list = vec![Kind {
        name: "strata",
        zstd: true,
        open: open_strata,
    }];
    #[cfg(feature = "compare")]
    {
        list.push(Kind {
            name: "rocksdb",
            zstd: true,
            open: rival::open_rocksdb,
        });
        list.push(Kind {
            name: "fjall",
            zstd: false,
            open: rival::open_fjall,
        });
    }
    list.retain(|k| compression == Compression::None || k.zstd);
    list
}

/// Whether criterion's filter (the command line's plain arguments, which
/// it matches against benchmark ids) can select something in `group`.
fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return false;
    }
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()))
}

fn open_strata(dir: &Path, compression: Compression) -> Box<dyn Engine> {
    let zstd = (compression == Compression::Zstd).then_some(ZSTD_LEVEL);
    let options = Options::new()
        .memtable_bytes(MEMTABLE_BYTES)
        .block_cache_bytes(CACHE_BYTES)
        .zstd_level(zstd);
    Box::new(Db::open(dir, options).expect("open strata"))
}

impl Engine for Db {
    fn put(&self, k: &[u8; 32], v: &[u8]) {
        Db::put(self, k, v).expect("put");
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
    fn settle(&self) {
        self.wait_for_compaction().expect("wait for compaction");
    }
    fn ingest_sorted(&self, _scratch: &Path, keys: &[[u8; 32]], data: &Data) {
        let run = keys.iter().enumerate().map(|(i, k)| (k, data.value(i)));
        Db::ingest_sorted(self, run).expect("ingest");
    }
}

#[cfg(feature = "compare")]
mod rival {
    use super::*;

    /// Bloom filter bits per key where the engine lets us choose (strata
    /// builds 10-bit filters; fjall's default is about the same).
    const BLOOM_BITS_PER_KEY: f64 = 10.0;

    /// RocksDB through the `rocksdb` crate: WAL on and sync off are its
    /// `WriteOptions` defaults. Reads use `get_pinned` and scans the raw
    /// iterator (no copy per entry): what a user after speed writes.
    struct Rocks(rocksdb::DB, rocksdb::Options);

    pub(super) fn open_rocksdb(dir: &Path, compression: Compression) -> Box<dyn Engine> {
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(CACHE_BYTES));
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.set_write_buffer_size(MEMTABLE_BYTES);
        o.set_block_based_table_factory(&table);
        o.set_compression_type(match compression {
            Compression::None => rocksdb::DBCompressionType::None,
            Compression::Zstd => rocksdb::DBCompressionType::Zstd,
        });
        if compression == Compression::Zstd {
            // (window_bits, level, strategy, max_dict_bytes): only the level matters.
            o.set_compression_options(-14, ZSTD_LEVEL, 0, 0);
        }
        let db = rocksdb::DB::open(&o, dir).expect("open rocksdb");
        Box::new(Rocks(db, o))
    }

    impl Engine for Rocks {
        fn put(&self, k: &[u8; 32], v: &[u8]) {
            self.0.put(k, v).expect("put");
        }
        fn has(&self, k: &[u8; 32]) -> bool {
            self.0.get_pinned(k).expect("get").is_some()
        }
        fn count_all(&self) -> usize {
            let mut it = self.0.raw_iterator();
            it.seek_to_first();
            let mut n = 0;
            while it.valid() {
                std::hint::black_box(it.value());
                n += 1;
                it.next();
            }
            it.status().expect("scan");
            n
        }
        fn settle(&self) {
            let mut w = rocksdb::WaitForCompactOptions::default();
            w.set_flush(true);
            self.0.wait_for_compact(&w).expect("wait for compact");
        }
        fn ingest_sorted(&self, scratch: &Path, keys: &[[u8; 32]], data: &Data) {
            let path = scratch.join("run.sst");
            let mut w = rocksdb::SstFileWriter::create(&self.1);
            w.open(&path).expect("sst open");
            for (i, k) in keys.iter().enumerate() {
                w.put(k, data.value(i)).expect("sst put");
            }
            w.finish().expect("sst finish");
            self.0.ingest_external_file(vec![path]).expect("ingest");
        }
    }

    /// fjall 3 (pure Rust LSM). Its compression is lz4 or none: it runs
    /// only uncompressed.
    struct Fjall {
        db: fjall::Database,
        ks: fjall::Keyspace,
    }

    pub(super) fn open_fjall(dir: &Path, compression: Compression) -> Box<dyn Engine> {
        assert!(compression == Compression::None, "fjall has no zstd");
        let db = fjall::Database::builder(dir)
            .cache_size(CACHE_BYTES as u64)
            .open()
            .expect("open fjall");
        let ks = db
            .keyspace("bench", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES as u64)
                    .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
            })
            .expect("keyspace");
        Box::new(Fjall { db, ks })
    }

    impl Engine for Fjall {
        fn put(&self, k: &[u8; 32], v: &[u8]) {
            self.ks.insert(k, v).expect("insert");
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
        fn settle(&self) {
            self.ks.rotate_memtable_and_wait().expect("flush");
            // fjall has no wait-for-compaction call: poll its counters
            // until they read idle twice, 50 ms apart.
            let mut idle = 0;
            while idle < 2 {
                std::thread::sleep(Duration::from_millis(50));
                let busy = self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0;
                idle = if busy { 0 } else { idle + 1 };
            }
        }
        fn ingest_sorted(&self, _scratch: &Path, keys: &[[u8; 32]], data: &Data) {
            let mut run = self.ks.start_ingestion().expect("ingestion");
            for (i, k) in keys.iter().enumerate() {
                run.write(k, data.value(i)).expect("ingest write");
            }
            run.finish().expect("ingest finish");
        }
    }
}

/// Keys and values of one run.
struct Data {
    random: Vec<[u8; 32]>,
    sorted: Vec<[u8; 32]>,
    /// `OPS` present keys in a random order.
    present: Vec<[u8; 32]>,
    /// `OPS` keys never written.
    missing: Vec<[u8; 32]>,
    values: Vec<[u8; VALUE_BYTES]>,
}

impl Data {
    fn new(keys: usize) -> Data {
        let random = uniform_keys(keys, 1);
        let mut sorted = random.clone();
        sorted.sort_unstable();
        let present = uniform_keys(OPS, 2)
            .iter()
            .map(|h| {
                random[(u64::from_le_bytes(h[..8].try_into().unwrap()) % keys as u64) as usize]
            })
            .collect();
        let values = uniform_keys(VALUES, 4)
            .iter()
            .map(|seed| {
                // Half random (blake3 output), half zeros.
                let mut v = [0u8; VALUE_BYTES];
                let mut xof = blake3::Hasher::new().update(seed).finalize_xof();
                xof.fill(&mut v[..VALUE_BYTES / 2]);
                v
            })
            .collect();
        Data {
            random,
            sorted,
            present,
            missing: uniform_keys(OPS, 3),
            values,
        }
    }

    fn value(&self, i: usize) -> &[u8] {
        &self.values[i % VALUES]
    }
}

fn fill(kind: Kind, dir: &Path, c: Compression, keys: &[[u8; 32]], data: &Data) -> Box<dyn Engine> {
    let db = (kind.open)(dir, c);
    for (i, k) in keys.iter().enumerate() {
        db.put(k, data.value(i));
    }
    db
}

/// A workload timed on a fresh engine per sample: `load` runs on an
/// engine just opened in an empty directory (with a second empty
/// directory for its scratch files), and only `load` is timed (opening an
/// empty engine takes milliseconds, a fill seconds; an ingestion of 1 M
/// entries a fifth of a second, where they would count); `check` then runs
/// untimed.
fn bench_fresh(
    c: &mut Criterion,
    setup: &Setup,
    workload: &str,
    elements: usize,
    load: &dyn Fn(&dyn Engine, &Path),
    check: &dyn Fn(Kind, &dyn Engine),
) {
    let mut g = c.benchmark_group(setup.group(workload));
    // Flat sampling: 10 loads, not 1 + 2 + … + 10 of them.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(elements as u64));
    for kind in engines(setup.compression) {
        g.bench_function(kind.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let scratch = tempfile::tempdir().expect("temp dir");
                    let db = (kind.open)(dir.path(), setup.compression);
                    let start = Instant::now();
                    load(&*db, scratch.path());
                    total += start.elapsed();
                    check(kind, &*db);
                    drop(db);
                }
                total
            })
        });
    }
    g.finish();
}

/// `storage/fillseq` and `storage/fillrandom`: `keys` put one by one.
fn bench_fill(c: &mut Criterion, setup: &Setup, workload: &str, keys: &[[u8; 32]], data: &Data) {
    let load = |db: &dyn Engine, _: &Path| {
        for (i, k) in keys.iter().enumerate() {
            db.put(k, data.value(i));
        }
    };
    bench_fresh(c, setup, workload, keys.len(), &load, &|_, _| {});
}

/// `storage/ingest`: the sorted keys as one bulk ingestion; checked
/// afterwards (untimed) by a scan of every key.
fn bench_ingest(c: &mut Criterion, setup: &Setup, data: &Data) {
    let keys = &data.sorted;
    let load = |db: &dyn Engine, scratch: &Path| db.ingest_sorted(scratch, keys, data);
    let check = |kind: Kind, db: &dyn Engine| {
        assert_eq!(db.count_all(), keys.len(), "{} ingested all", kind.name);
    };
    bench_fresh(c, setup, "ingest", keys.len(), &load, &check);
}

/// Bytes this process has passed to `write`-family syscalls so far
/// (`wchar` of /proc/self/io): WAL, flushes and compactions of every
/// engine alike, whatever their own statistics call them.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("wchar in /proc/self/io")
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// One more fillrandom per engine, settled: write amplification (bytes
/// written / user bytes, WAL included) and on-disk bytes against the user
/// bytes (`keys × 132`). Printed as a markdown table.
fn report_space(setup: &Setup, data: &Data) {
    let user = (setup.keys * (32 + VALUE_BYTES)) as f64;
    println!("\n{} — after fillrandom, settled:", setup.group("space"));
    println!(
        "| engine | bytes written / user bytes (WAL incl.) | on disk / user bytes | on disk |"
    );
    println!("|---|---|---|---|");
    for kind in engines(setup.compression) {
        let dir = tempfile::tempdir().expect("temp dir");
        let before = bytes_written();
        let db = fill(kind, dir.path(), setup.compression, &data.random, data);
        db.settle();
        let written = bytes_written() - before;
        let disk = dir_bytes(dir.path());
        println!(
            "| {} | {:.2} | {:.2} | {:.1} MiB |",
            kind.name,
            written as f64 / user,
            disk as f64 / user,
            disk as f64 / (1 << 20) as f64
        );
        drop(db);
    }
    println!();
}

/// One engine filled with `data.random` and settled, built on first use.
struct Filled {
    kind: Kind,
    cell: OnceCell<(tempfile::TempDir, Box<dyn Engine>)>,
}

impl Filled {
    fn get(&self, setup: &Setup, data: &Data) -> &dyn Engine {
        let (_, db) = self.cell.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = fill(self.kind, dir.path(), setup.compression, &data.random, data);
            db.settle();
            (dir, db)
        });
        &**db
    }
}

/// One group over every engine's filled instance; `op(db, i)` is run for
/// `i` in `0..OPS` per iteration.
fn bench_ops(
    c: &mut Criterion,
    setup: &Setup,
    data: &Data,
    filled: &[Filled],
    workload: &str,
    elements: usize,
    op: impl Fn(&dyn Engine),
) {
    let mut g: BenchmarkGroup<'_, WallTime> = c.benchmark_group(setup.group(workload));
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(elements as u64));
    for f in filled {
        // The fill happens inside, so a filtered-out group fills nothing.
        g.bench_function(f.kind.name, |b| {
            let db = f.get(setup, data);
            b.iter(|| op(db))
        });
    }
    g.finish();
}

fn storage(c: &mut Criterion) {
    let setup = Setup::from_env();
    let data = Data::new(setup.keys);
    bench_fill(c, &setup, "fillseq", &data.sorted, &data);
    bench_fill(c, &setup, "fillrandom", &data.random, &data);
    bench_ingest(c, &setup, &data);
    if selected(&setup.group("space")) {
        report_space(&setup, &data);
    }

    let filled: Vec<Filled> = engines(setup.compression)
        .into_iter()
        .map(|kind| Filled {
            kind,
            cell: OnceCell::new(),
        })
        .collect();
    let ops = |c: &mut Criterion, workload: &str, elements: usize, op: &dyn Fn(&dyn Engine)| {
        bench_ops(c, &setup, &data, &filled, workload, elements, op)
    };
    ops(c, "readrandom", OPS, &|db| {
        for k in &data.present {
            assert!(db.has(k));
        }
    });
    ops(c, "readmissing", OPS, &|db| {
        for k in &data.missing {
            assert!(!db.has(k));
        }
    });
    ops(c, "scan", setup.keys, &|db| {
        assert_eq!(db.count_all(), setup.keys)
    });
    ops(c, "overwrite", OPS, &|db| {
        for (i, k) in data.present.iter().enumerate() {
            db.put(k, data.value(i + 1));
        }
    });
    ops(c, "mixed", OPS, &|db| {
        for (i, k) in data.present.iter().enumerate() {
            // Even positions read, odd ones update: 50/50, interleaved.
            if i % 2 == 0 {
                assert!(db.has(k));
            } else {
                db.put(k, data.value(i + 2));
            }
        }
    });
}

criterion_group!(benches, storage);
criterion_main!(benches);
