//! Crash test with real processes: a child (this test binary, re-executed
//! with `CHILD_DIR_ENV` set) writes synced batches and prints each
//! acknowledged batch number; the parent SIGKILLs it at a random moment,
//! reopens the database and checks that every acknowledged batch is there
//! whole and that no batch is partial. Cycles alternate the WAL backend
//! (even: `std::fs`, odd: io_uring), so each backend is killed mid-write
//! and each replays WALs the other wrote. A variant runs with tiny
//! tables and levels, so kills also land mid-compaction (outputs written
//! but not installed, manifest edits in flight, obsolete tables not yet
//! deleted).

mod support {
    pub mod kill;
}

use std::io::Write;
use std::time::{Duration, Instant};

use strata_storage::{Db, Options, WalBackend, WriteBatch, WriteOptions};

const CHILD_DIR_ENV: &str = "STRATA_LSM_CRASH_DIR";
const CHILD_CYCLE_ENV: &str = "STRATA_LSM_CRASH_CYCLE";
const CHILD_TINY_ENV: &str = "STRATA_LSM_CRASH_TINY";
const KEYS_PER_BATCH: u64 = 4;

fn options(cycle: u64, tiny_levels: bool) -> Options {
    // Forced, not `Auto`: without io_uring the odd cycles fail instead of
    // silently testing `std::fs` twice.
    let backend = options_backend(cycle);
    // Small memtable: kills also land during flushes and WAL rotations.
    let opts = Options::new().memtable_bytes(4 << 10).wal_backend(backend);
    if tiny_levels {
        // Every second flush starts an L0 compaction; deeper levels fill
        // within a few cycles, so compactions run whenever the kill lands.
        opts.l0_compaction_trigger(2)
            .l0_stop_writes(6)
            .table_bytes(4 << 10)
            .level1_bytes(16 << 10)
            .level_size_ratio(4)
    } else {
        opts
    }
}

fn options_backend(cycle: u64) -> WalBackend {
    if cycle % 2 == 0 {
        WalBackend::Std
    } else {
        WalBackend::IoUring
    }
}

fn key(cycle: u64, batch: u64, i: u64) -> Vec<u8> {
    format!("c{cycle:04}-b{batch:08}-{i}").into_bytes()
}

fn child(dir: &str, cycle: u64, tiny_levels: bool) {
    let db = Db::open(dir, options(cycle, tiny_levels)).unwrap();
    assert_eq!(db.wal_backend(), options_backend(cycle));
    let mut out = std::io::stdout().lock();
    for n in 0..1_000_000u64 {
        let mut b = WriteBatch::new();
        for i in 0..KEYS_PER_BATCH {
            b.put(key(cycle, n, i), vec![(n % 251) as u8; 64]);
        }
        db.write(b, WriteOptions { sync: true }).unwrap();
        writeln!(out, "ACK {n}").unwrap();
        out.flush().unwrap();
    }
}

/// Batches of `cycle` present; panics on a partial batch or a gap.
fn present_batches(db: &Db, cycle: u64) -> u64 {
    let prefix = format!("c{cycle:04}-").into_bytes();
    let mut end = prefix.clone();
    *end.last_mut().unwrap() += 1;
    let mut count = 0u64;
    for (i, kv) in db.scan(prefix..end).unwrap().enumerate() {
        let (k, v) = kv.unwrap();
        let (batch, j) = (i as u64 / KEYS_PER_BATCH, i as u64 % KEYS_PER_BATCH);
        assert_eq!(
            k,
            key(cycle, batch, j),
            "gap or partial batch before {batch}"
        );
        assert_eq!(v, vec![(batch % 251) as u8; 64]);
        count += 1;
    }
    assert_eq!(count % KEYS_PER_BATCH, 0, "partial final batch");
    count / KEYS_PER_BATCH
}

fn run_cycles(test_name: &str, cycles: u64, budget: Duration, tiny_levels: bool) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut acked_per_cycle = Vec::new();
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay_ms = 10 + rng % 150;
        let envs = [
            (CHILD_DIR_ENV, dir.path().display().to_string()),
            (CHILD_CYCLE_ENV, cycle.to_string()),
            (
                CHILD_TINY_ENV,
                if tiny_levels { "1" } else { "0" }.to_string(),
            ),
        ];
        let acked = support::kill::run_and_kill(test_name, &envs, Duration::from_millis(delay_ms))
            .map_or(0, |n| n + 1);
        // The parent reopens with the other backend than the child used.
        let db = Db::open(dir.path(), options(cycle + 1, tiny_levels)).unwrap();
        let present = present_batches(&db, cycle);
        assert!(
            present >= acked,
            "cycle {cycle}: {present} batches present, {acked} acknowledged"
        );
        // Earlier cycles are untouched by later crashes.
        if cycle % 10 == 9 {
            for (c, &n) in acked_per_cycle.iter().enumerate() {
                assert!(present_batches(&db, c as u64) >= n);
            }
        }
        acked_per_cycle.push(acked);
        drop(db);
        assert!(
            started.elapsed() < budget,
            "crash test over its time budget"
        );
    }
    let total: u64 = acked_per_cycle.iter().sum();
    eprintln!("{cycles} kill -9 cycles, {total} acknowledged batches: {acked_per_cycle:?}");
    // Each backend must have acknowledged writes that were then checked.
    let std_acked: u64 = acked_per_cycle.iter().step_by(2).sum();
    let uring_acked: u64 = acked_per_cycle.iter().skip(1).step_by(2).sum();
    eprintln!("acknowledged batches: std::fs {std_acked}, io_uring {uring_acked}");
    assert!(std_acked > 0, "no batch was acknowledged on std::fs");
    assert!(uring_acked > 0, "no batch was acknowledged on io_uring");
    if tiny_levels {
        let db = Db::open(dir.path(), options(0, true)).unwrap();
        let stats = db.stats();
        eprintln!("levels after the cycles: {:?}", stats.levels);
        assert!(
            stats.levels[1..].iter().any(|l| l.files > 0),
            "no compaction ever installed: {stats:?}"
        );
    }
}

/// Runs the child side if this process is a child; returns whether it was.
fn run_child() -> bool {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return false;
    };
    let cycle = std::env::var(CHILD_CYCLE_ENV).unwrap().parse().unwrap();
    let tiny = std::env::var(CHILD_TINY_ENV).is_ok_and(|v| v == "1");
    child(&dir, cycle, tiny);
    true
}

#[test]
fn kill9_keeps_every_acknowledged_batch() {
    if run_child() {
        return;
    }
    run_cycles(
        "kill9_keeps_every_acknowledged_batch",
        30,
        Duration::from_secs(60),
        false,
    );
}

#[test]
fn kill9_during_compactions_keeps_every_acknowledged_batch() {
    if run_child() {
        return;
    }
    run_cycles(
        "kill9_during_compactions_keeps_every_acknowledged_batch",
        24,
        Duration::from_secs(60),
        true,
    );
}

#[test]
#[ignore = "long: 300 kill -9 cycles"]
fn kill9_many_cycles() {
    if run_child() {
        return;
    }
    run_cycles("kill9_many_cycles", 300, Duration::from_secs(600), false);
}

#[test]
#[ignore = "long: 300 kill -9 cycles with compactions"]
fn kill9_many_cycles_during_compactions() {
    if run_child() {
        return;
    }
    run_cycles(
        "kill9_many_cycles_during_compactions",
        300,
        Duration::from_secs(600),
        true,
    );
}
