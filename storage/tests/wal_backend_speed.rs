//! A rough, criterion-free comparison of write throughput (synced and not) on the two
//! WAL backends. Not a benchmark: one run, wall-clock time, on whatever
//! disk the temp directory is on and whatever else the machine is doing.
//! Ignored by default; run with
//! `cargo test -p strata-storage --release --test wal_backend_speed -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::{Db, Options, WalBackend, WriteBatch, WriteOptions};

/// How long each measurement writes.
const RUN_TIME: Duration = Duration::from_secs(2);
const VALUE_BYTES: usize = 100;

/// Synced one-key batches written by `threads` writers in `RUN_TIME`.
fn writes(backend: WalBackend, threads: u64, sync: bool) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap());
    assert_eq!(db.wal_backend(), backend);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < RUN_TIME {
                    let mut b = WriteBatch::new();
                    b.put(format!("t{t}-{n:010}").into_bytes(), vec![7u8; VALUE_BYTES]);
                    db.write(b, WriteOptions { sync }).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

#[test]
#[ignore = "rough timing, prints numbers; run on demand"]
fn synced_write_throughput_per_backend() {
    for (threads, sync) in [(1, true), (8, true), (1, false)] {
        for backend in [WalBackend::Std, WalBackend::IoUring] {
            let writes = writes(backend, threads, sync);
            let per_s = writes as f64 / RUN_TIME.as_secs_f64();
            let kind = if sync { "synced" } else { "unsynced" };
            println!(
                "{backend:?}: {threads} {kind} writer(s), {VALUE_BYTES}-byte values: \
                 {writes} writes in {RUN_TIME:?} = {per_s:.0} writes/s"
            );
        }
    }
}
