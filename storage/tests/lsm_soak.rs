//! Soak test (ignored by default; long): random writes with overwrites and
//! deletes. Once background compaction settles, the directory holds at
//! most twice the live data, and the process's peak anonymous memory
//! (heap: `RssAnon`, sampled) stays within the memtables, the block cache
//! and 256 MiB. The peak RSS including file-backed pages of the
//! memory-mapped tables (`VmHWM`, which a compaction inflates by reading
//! its inputs; the kernel reclaims those pages under pressure) is printed,
//! not asserted.
//!
//! `cargo test -p strata-storage --test lsm_soak -- --ignored --nocapture`
//! runs the 20 M writes at default sizes; `STRATA_SOAK_WRITES=N`
//! runs N writes with memtable, level, table and cache sizes scaled by
//! N / 20 M, so the tree has the same shape.

use std::time::{Duration, Instant};

use strata_storage::{Db, Options, WriteBatch, WriteOptions};

const WRITES_DEFAULT: u64 = 20_000_000;
const KEY_BYTES: usize = 32;
const VALUE_BYTES: usize = 100;
/// Writes per batch (one WAL record).
const BATCH_OPS: u64 = 100;
const SLACK_BYTES: u64 = 256 << 20;

fn key(n: u64) -> [u8; KEY_BYTES] {
    // Hashed: writes land uniformly over the key space, as in the node.
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// A field of `/proc/self/status` in bytes (`VmHWM`, `RssAnon`, ...).
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
#[ignore = "long: 20 M writes (set STRATA_SOAK_WRITES for fewer)"]
fn space_and_memory_stay_bounded_under_sustained_writes() {
    let writes: u64 = std::env::var("STRATA_SOAK_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WRITES_DEFAULT);
    // A tenth as many keys as writes: each key is overwritten ~10 times.
    let key_space = (writes / 10).max(1);
    let dir = tempfile::tempdir().unwrap();
    let scale = |default: u64| {
        ((default as f64 * writes as f64 / WRITES_DEFAULT as f64) as u64).max(64 << 10)
    };
    let (memtable, cache) = (scale(64 << 20), scale(8 << 20));
    let opts = Options::new()
        .memtable_bytes(memtable as usize)
        .level1_bytes(scale(64 << 20))
        .table_bytes(scale(32 << 20))
        .block_cache_bytes(cache as usize);
    // The active memtable and `immutables_max` (default 2) frozen ones.
    let budget = 3 * memtable + cache + SLACK_BYTES;
    let db = Db::open(dir.path(), opts).unwrap();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_status_bytes("RssAnon").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let mut live = vec![false; key_space as usize];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let started = Instant::now();
    let mut b = WriteBatch::new();
    for i in 0..writes {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = rng % key_space;
        // One write in ten is a delete.
        if rng >> 60 == 0 {
            b.delete(key(k).to_vec());
            live[k as usize] = false;
        } else {
            let mut v = vec![0u8; VALUE_BYTES];
            v[..8].copy_from_slice(&i.to_le_bytes());
            b.put(key(k).to_vec(), v);
            live[k as usize] = true;
        }
        if (i + 1) % BATCH_OPS == 0 {
            db.write(std::mem::take(&mut b), WriteOptions::default())
                .unwrap();
        }
    }
    db.write(b, WriteOptions::default()).unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    db.flush().unwrap();
    // Settled: no compaction finished for two seconds.
    let mut last = db.stats();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
        let now = db.stats();
        if (now.compactions, now.trivial_moves) != (last.compactions, last.trivial_moves) {
            quiet_since = Instant::now();
        }
        last = now;
    }
    let live_keys = live.iter().filter(|&&l| l).count() as u64;
    let live_bytes = live_keys * (KEY_BYTES + VALUE_BYTES) as u64;
    let used = dir_bytes(dir.path());
    let stats = db.stats();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_anon = sampler.join().unwrap();
    let peak_rss = proc_status_bytes("VmHWM");
    eprintln!(
        "{writes} writes in {write_secs:.1} s ({:.0}/s); live {live_bytes} B, on disk {used} B \
         ({:.2}x); write amplification {:.2}; stalls {}; peak anonymous {peak_anon} B, \
         peak RSS with mapped tables {peak_rss:?} B (budget {budget})",
        writes as f64 / write_secs,
        used as f64 / live_bytes as f64,
        stats.write_amplification,
        stats.write_stalls,
    );
    eprintln!("levels: {:?}", stats.levels);
    assert!(
        used <= 2 * live_bytes,
        "{used} bytes on disk for {live_bytes} live bytes"
    );
    if peak_anon > 0 {
        assert!(
            peak_anon <= budget,
            "peak anonymous memory {peak_anon} over {budget}"
        );
    }
    // Spot-check reads.
    for k in (0..key_space).step_by((key_space / 1000).max(1) as usize) {
        assert_eq!(
            db.get(&key(k)).unwrap().is_some(),
            live[k as usize],
            "key {k}"
        );
    }
}
