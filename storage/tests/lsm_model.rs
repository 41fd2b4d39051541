//! Model test: random put/delete/batch/get/scan/snapshot/flush/compact/
//! reopen against a `BTreeMap`, with a tiny memtable so flushes happen
//! often. Up to three snapshots are held at once (each checked against a
//! copy of the model taken with it) while flushes and compactions run.
//! Each case starts on a random WAL backend and switches backend at every
//! reopen, so both run and each replays WALs the other wrote.
//!
//! Two configurations: the default compaction settings (compaction is
//! rare), and tiny table and level sizes with an L0 trigger of 2, so
//! compactions run constantly in the background, across several levels,
//! with snapshots held across them and reopens in the middle.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_storage::{Db, Options, Snapshot, WalBackend, WriteBatch, WriteOptions};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Batch(Vec<(u8, Option<u8>)>),
    Get(u8),
    Scan(u8, u8),
    Snapshot,
    SnapshotCheck,
    SnapshotRelease(u8),
    CompactAll,
    Flush,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    // Shared prefixes exercise prefix compression; varied lengths too.
    let mut v = b"key-".to_vec();
    v.extend(std::iter::repeat_n(b'x', usize::from(k % 3)));
    v.push(k);
    v
}

fn value(v: u8) -> Vec<u8> {
    vec![v; usize::from(v % 40) + 1]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 64, v)),
        2 => any::<u8>().prop_map(|k| Op::Delete(k % 64)),
        2 => proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u8>())), 0..8)
            .prop_map(|v| Op::Batch(v.into_iter().map(|(k, v)| (k % 64, v)).collect())),
        3 => any::<u8>().prop_map(|k| Op::Get(k % 70)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Scan(a % 70, b % 70)),
        1 => Just(Op::Snapshot),
        1 => Just(Op::SnapshotCheck),
        1 => any::<u8>().prop_map(Op::SnapshotRelease),
        1 => Just(Op::CompactAll),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn options(uring: bool, tiny_levels: bool) -> Options {
    // Forced, not `Auto`: a machine without io_uring fails the test
    // instead of silently running `std::fs` only.
    let backend = if uring {
        WalBackend::IoUring
    } else {
        WalBackend::Std
    };
    let opts = Options::new().memtable_bytes(600).wal_backend(backend);
    if tiny_levels {
        opts.l0_compaction_trigger(2)
            .l0_stop_writes(4)
            .table_bytes(256)
            .level1_bytes(512)
            .level_size_ratio(2)
    } else {
        opts
    }
}

const SNAPSHOTS_HELD_MAX: usize = 3;

fn check_scan(got: strata_storage::Scan, model: &BTreeMap<Vec<u8>, Vec<u8>>, a: u8, b: u8) {
    let (lo, hi) = (key(a), key(b));
    let got: Vec<_> = got.map(|r| r.unwrap()).collect();
    let want: Vec<_> = model
        .iter()
        .filter(|(k, _)| **k >= lo && **k < hi)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, want);
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn check_snapshot(snap: &Snapshot, m: &Model) -> Result<(), TestCaseError> {
    let all: Vec<_> = snap.scan(..).unwrap().map(|r| r.unwrap()).collect();
    let want: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(all, want);
    for k in 0..64 {
        prop_assert_eq!(snap.get(&key(k)).unwrap(), m.get(&key(k)).cloned());
    }
    Ok(())
}

fn run(mut uring: bool, tiny_levels: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), options(uring, tiny_levels)).unwrap();
    let mut model: Model = BTreeMap::new();
    let mut snaps: Vec<(Snapshot, Model)> = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                db.put(&key(k), &value(v)).unwrap();
                model.insert(key(k), value(v));
            }
            Op::Delete(k) => {
                db.delete(&key(k)).unwrap();
                model.remove(&key(k));
            }
            Op::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => {
                            b.put(key(k), value(v));
                            model.insert(key(k), value(v));
                        }
                        None => {
                            b.delete(key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                db.write(b, WriteOptions { sync: false }).unwrap();
            }
            Op::Get(k) => {
                prop_assert_eq!(db.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
            }
            Op::Scan(a, b) => check_scan(db.scan(key(a)..key(b)).unwrap(), &model, a, b),
            Op::Snapshot => {
                if snaps.len() == SNAPSHOTS_HELD_MAX {
                    snaps.remove(0);
                }
                snaps.push((db.snapshot(), model.clone()));
            }
            Op::SnapshotCheck => {
                for (snap, m) in &snaps {
                    check_snapshot(snap, m)?;
                }
            }
            Op::SnapshotRelease(i) => {
                if !snaps.is_empty() {
                    let i = usize::from(i) % snaps.len();
                    snaps.remove(i);
                }
            }
            Op::CompactAll => db.compact_all().unwrap(),
            Op::Flush => db.flush().unwrap(),
            Op::Reopen => {
                // Snapshots do not survive a reopen.
                for (snap, m) in &snaps {
                    check_snapshot(snap, m)?;
                }
                snaps.clear();
                db.close().unwrap();
                drop(db);
                uring = !uring;
                db = Db::open(dir.path(), options(uring, tiny_levels)).unwrap();
            }
        }
    }
    for (snap, m) in &snaps {
        check_snapshot(snap, m)?;
    }
    let all: Vec<_> = db.scan(..).unwrap().map(|r| r.unwrap()).collect();
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(all, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn db_matches_btreemap(
        uring in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..160),
    ) {
        run(uring, false, ops)?;
    }

    #[test]
    fn db_matches_btreemap_with_constant_compaction(
        uring in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run(uring, true, ops)?;
    }
}
