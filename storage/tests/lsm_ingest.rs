//! Bulk ingestion (`Db::ingest_sorted`): placement, shadowing, snapshots,
//! durability, refusals, and a randomized run against a `BTreeMap` model
//! with ingestions interleaved with writes, flushes and compactions.

use std::collections::BTreeMap;

use strata_storage::limits::LEVELS;
use strata_storage::{Db, Error, Options, WriteBatch, WriteOptions};

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn small_tables() -> Options {
    Options::default()
        .memtable_bytes(64 << 10)
        .table_bytes(32 << 10)
        .level1_bytes(256 << 10)
}

fn all(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.scan(..).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn a_run_into_a_fresh_store_lands_in_the_bottom_level_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000u64;
    {
        let db = Db::open(dir.path(), small_tables()).unwrap();
        let stats = db
            .ingest_sorted((0..n).map(|i| (key(i), i.to_le_bytes())))
            .unwrap();
        assert_eq!(stats.entries, n);
        assert!(stats.tables > 1, "split by table_bytes: {stats:?}");
        assert_eq!(
            stats.level,
            LEVELS - 1,
            "nothing overlaps: the bottom level"
        );
        let s = db.stats();
        assert_eq!(s.levels[LEVELS - 1].files, stats.tables);
        assert_eq!(s.levels[0].files, 0);
        assert_eq!(
            db.get(&key(12_345)).unwrap(),
            Some(12_345u64.to_le_bytes().to_vec())
        );
        // A write after the run is newer than it.
        db.put(&key(7), b"after").unwrap();
        assert_eq!(db.get(&key(7)).unwrap().as_deref(), Some(&b"after"[..]));
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), small_tables()).unwrap();
    let got = all(&db);
    assert_eq!(got.len() as u64, n);
    assert_eq!(got[7].1, b"after".to_vec());
    assert_eq!(got[8].1, 8u64.to_le_bytes().to_vec());
    // Sequence numbers continue above the run after a reopen.
    db.put(&key(9), b"later").unwrap();
    assert_eq!(db.get(&key(9)).unwrap().as_deref(), Some(&b"later"[..]));
}

#[test]
fn a_run_shadows_older_versions_in_the_memtable_and_in_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_tables()).unwrap();
    for i in 0..2_000u64 {
        db.put(&key(i), b"old-table").unwrap();
    }
    db.flush().unwrap();
    db.wait_for_compaction().unwrap();
    db.put(&key(500), b"old-mem").unwrap();
    db.delete(&key(501)).unwrap();
    let stats = db
        .ingest_sorted((400..600u64).map(|i| (key(i), b"new".to_vec())))
        .unwrap();
    // The memtable held keys of the range: flushed first, so the run sits
    // in front of L0.
    assert_eq!(stats.level, 0);
    for i in [0u64, 399, 600, 1_999] {
        assert_eq!(db.get(&key(i)).unwrap().as_deref(), Some(&b"old-table"[..]));
    }
    for i in [400u64, 500, 501, 599] {
        assert_eq!(
            db.get(&key(i)).unwrap().as_deref(),
            Some(&b"new"[..]),
            "key {i}"
        );
    }
    db.compact_all().unwrap();
    assert_eq!(db.get(&key(500)).unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(
        db.get(&key(399)).unwrap().as_deref(),
        Some(&b"old-table"[..])
    );
}

#[test]
fn a_snapshot_taken_before_a_run_does_not_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_tables()).unwrap();
    db.put(&key(1), b"before").unwrap();
    db.flush().unwrap();
    let snap = db.snapshot();
    db.ingest_sorted([(key(1), b"run"), (key(2), b"run")])
        .unwrap();
    assert_eq!(snap.get(&key(1)).unwrap().as_deref(), Some(&b"before"[..]));
    assert_eq!(snap.get(&key(2)).unwrap(), None);
    assert_eq!(db.get(&key(1)).unwrap().as_deref(), Some(&b"run"[..]));
    // Compaction keeps what the snapshot reads.
    db.compact_all().unwrap();
    assert_eq!(snap.get(&key(1)).unwrap().as_deref(), Some(&b"before"[..]));
}

#[test]
fn a_bad_run_is_refused_and_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), small_tables()).unwrap();
        db.put(&key(1), b"kept").unwrap();
        // Out of order after enough entries to have written tables.
        let mut run: Vec<([u8; 8], Vec<u8>)> =
            (10..5_000u64).map(|i| (key(i), vec![7; 32])).collect();
        run.push((key(3), vec![1]));
        match db.ingest_sorted(run) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("ascending"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let dup = [(key(20), b"a"), (key(20), b"b")];
        assert!(matches!(
            db.ingest_sorted(dup),
            Err(Error::InvalidArgument(_))
        ));
        let empty_key = [(Vec::new(), b"a".to_vec())];
        assert!(matches!(
            db.ingest_sorted(empty_key),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(all(&db), vec![(key(1).to_vec(), b"kept".to_vec())]);
        db.close().unwrap();
    }
    // No table of the refused runs is left behind.
    let db = Db::open(dir.path(), small_tables()).unwrap();
    assert_eq!(all(&db), vec![(key(1).to_vec(), b"kept".to_vec())]);
    let tables: usize = db.stats().levels.iter().map(|l| l.files).sum();
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sst")
        })
        .count();
    assert_eq!(files, tables, "every table file is named by the manifest");
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn ingestion_interleaved_with_writes_and_compaction_matches_a_model() {
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), small_tables().l0_compaction_trigger(2)).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for step in 0..300u64 {
            match rng.next() % 10 {
                0..=5 => {
                    let mut b = WriteBatch::new();
                    for _ in 0..20 {
                        let k = key(rng.next() % 5_000).to_vec();
                        if rng.next() % 5 == 0 {
                            b.delete(k.clone());
                            model.remove(&k);
                        } else {
                            let v = format!("w{step}").into_bytes();
                            b.put(k.clone(), v.clone());
                            model.insert(k, v);
                        }
                    }
                    db.write(b, WriteOptions::default()).unwrap();
                }
                6..=8 => {
                    let start = rng.next() % 5_000;
                    let len = 1 + rng.next() % 400;
                    let stride = 1 + rng.next() % 3;
                    let run: Vec<(Vec<u8>, Vec<u8>)> = (start..start + len)
                        .step_by(stride as usize)
                        .map(|i| (key(i).to_vec(), format!("i{step}").into_bytes()))
                        .collect();
                    for (k, v) in &run {
                        model.insert(k.clone(), v.clone());
                    }
                    db.ingest_sorted(run).unwrap();
                }
                _ => db.flush().unwrap(),
            }
            if step % 50 == 49 {
                assert_eq!(
                    all(&db),
                    model.clone().into_iter().collect::<Vec<_>>(),
                    "seed {seed} step {step}"
                );
            }
        }
        db.wait_for_compaction().unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        assert_eq!(all(&db), expected, "seed {seed}");
        db.close().unwrap();
        let db = Db::open(dir.path(), small_tables()).unwrap();
        assert_eq!(all(&db), expected, "seed {seed}, reopened");
    }
}
