//! Scans: every range form `Db::scan` accepts, `scan_prefix` (empty
//! prefix, `0xFF` prefixes, prefixes longer than the keys), and `scan_rev`
//! against a `BTreeMap` model over the memtable, frozen memtables, L0 and
//! deeper levels, with deletes, snapshots, flushes and compactions.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use proptest::prelude::*;
use strata_storage::{prefix_range, Db, KeyBounds, Options, Scan, Snapshot, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn pairs(scan: Scan) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan.map(|kv| kv.unwrap()).collect()
}

fn keys(scan: Scan) -> Vec<Vec<u8>> {
    scan.map(|kv| kv.unwrap().0).collect()
}

fn model_range(m: &Model, range: &impl KeyBounds) -> Vec<(Vec<u8>, Vec<u8>)> {
    let bounds = (range.start_key(), range.end_key());
    m.iter()
        .filter(|(k, _)| bounds.contains(k.as_slice()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn rev<T>(mut v: Vec<T>) -> Vec<T> {
    v.reverse();
    v
}

/// Checks `scan`, `scan_rev` and (for a prefix) `scan_prefix` of `db` and
/// of a snapshot against the model.
fn check_range(db: &Db, snap: &Snapshot, m: &Model, range: impl KeyBounds + Clone) {
    let want = model_range(m, &range);
    assert_eq!(pairs(db.scan(range.clone()).unwrap()), want);
    assert_eq!(
        pairs(db.scan_rev(range.clone()).unwrap()),
        rev(want.clone())
    );
    assert_eq!(pairs(snap.scan(range.clone()).unwrap()), want);
    assert_eq!(pairs(snap.scan_rev(range).unwrap()), rev(want));
}

fn small_tables() -> Options {
    Options::new()
        .memtable_bytes(2048)
        .block_bytes(1024)
        .table_bytes(4096)
        .level1_bytes(8192)
        .level_size_ratio(2)
        .l0_compaction_trigger(2)
        .l0_stop_writes(6)
}

/// A store whose keys are spread over a deep level, L0 and the memtable,
/// with deleted keys and overwritten keys in every layer; returns it with
/// its model.
fn layered(dir: &std::path::Path, keys: &[Vec<u8>]) -> (Db, Model) {
    let db = Db::open(dir, small_tables()).unwrap();
    let mut m = Model::new();
    let mut put = |db: &Db, k: &[u8], v: &[u8]| {
        db.put(k, v).unwrap();
        m.insert(k.to_vec(), v.to_vec());
    };
    for (i, k) in keys.iter().enumerate() {
        put(&db, k, format!("bottom{i}").as_bytes());
    }
    db.compact_all().unwrap();
    for (i, k) in keys.iter().enumerate().step_by(3) {
        put(&db, k, format!("l0-{i}").as_bytes());
    }
    db.flush().unwrap();
    for (i, k) in keys.iter().enumerate().step_by(5) {
        put(&db, k, format!("mem{i}").as_bytes());
    }
    for k in keys.iter().skip(1).step_by(4) {
        db.delete(k).unwrap();
        m.remove(k);
    }
    (db, m)
}

#[test]
fn scan_accepts_every_range_form() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    for k in ["a", "b", "c", "d"] {
        db.put(k.as_bytes(), k.as_bytes()).unwrap();
    }
    let k = |s: &[&str]| -> Vec<Vec<u8>> { s.iter().map(|s| s.as_bytes().to_vec()).collect() };
    assert_eq!(keys(db.scan(..).unwrap()), k(&["a", "b", "c", "d"]));
    assert_eq!(
        keys(db.scan(b"b".as_slice()..).unwrap()),
        k(&["b", "c", "d"])
    );
    assert_eq!(keys(db.scan(b"b"..b"d").unwrap()), k(&["b", "c"]));
    assert_eq!(
        keys(db.scan(b"a".to_vec()..b"c".to_vec()).unwrap()),
        k(&["a", "b"])
    );
    assert_eq!(keys(db.scan(b"b".to_vec()..).unwrap()), k(&["b", "c", "d"]));
    assert_eq!(keys(db.scan(..b"b".as_slice()).unwrap()), k(&["a"]));
    assert_eq!(keys(db.scan(..=b"b".as_slice()).unwrap()), k(&["a", "b"]));
    assert_eq!(keys(db.scan("b"..="c").unwrap()), k(&["b", "c"]));
    assert_eq!(
        keys(db.scan(String::from("c")..String::from("z")).unwrap()),
        k(&["c", "d"])
    );
    let owned = b"c".to_vec();
    assert_eq!(keys(db.scan(&owned..).unwrap()), k(&["c", "d"]));
    let range = b"a".to_vec()..b"b".to_vec();
    assert_eq!(keys(db.scan(&range).unwrap()), k(&["a"]));
    assert_eq!(
        range,
        b"a".to_vec()..b"b".to_vec(),
        "borrowed, not consumed"
    );
    assert_eq!(
        keys(
            db.scan((
                Bound::Excluded(b"a".as_slice()),
                Bound::Excluded(b"d".as_slice())
            ))
            .unwrap()
        ),
        k(&["b", "c"])
    );
    assert_eq!(
        keys(
            db.scan((Bound::Excluded(b"b".to_vec()), Bound::Unbounded))
                .unwrap()
        ),
        k(&["c", "d"])
    );
    // Inverted and empty ranges are empty, both ways, and do not panic.
    for range in [
        (Bound::Included("c"), Bound::Excluded("b")),
        (Bound::Excluded("b"), Bound::Excluded("b")),
        (Bound::Included("b"), Bound::Excluded("b")),
        (Bound::Excluded("b"), Bound::Included("b")),
    ] {
        assert!(keys(db.scan(range).unwrap()).is_empty(), "{range:?}");
        assert!(keys(db.scan_rev(range).unwrap()).is_empty(), "{range:?}");
    }
    // The same forms backward and on a snapshot.
    assert_eq!(keys(db.scan_rev(..).unwrap()), k(&["d", "c", "b", "a"]));
    assert_eq!(
        keys(db.scan_rev(b"b".as_slice()..).unwrap()),
        k(&["d", "c", "b"])
    );
    assert_eq!(keys(db.scan_rev(..=b"b".to_vec()).unwrap()), k(&["b", "a"]));
    assert_eq!(keys(db.scan_rev("b".."d").unwrap()), k(&["c", "b"]));
    let snap = db.snapshot();
    db.delete(b"a").unwrap();
    assert_eq!(
        keys(snap.scan(b"a".as_slice()..b"c").unwrap()),
        k(&["a", "b"])
    );
    assert_eq!(
        keys(snap.scan_rev(..b"c".to_vec()).unwrap()),
        k(&["b", "a"])
    );
    assert_eq!(keys(db.scan_rev(..b"c".to_vec()).unwrap()), k(&["b"]));
    // compact_range takes the same forms.
    db.compact_range(b"a".as_slice()..b"c").unwrap();
    db.compact_range("b"..).unwrap();
    assert_eq!(keys(db.scan(..).unwrap()), k(&["b", "c", "d"]));
}

#[test]
fn scan_prefix_matches_the_model_over_every_layer() {
    let mut all: Vec<Vec<u8>> = Vec::new();
    for a in [0x00u8, 0x01, b'a', b'b', 0xFE, 0xFF] {
        all.push(vec![a]);
        for b in [0x00u8, b'a', 0xFE, 0xFF] {
            all.push(vec![a, b]);
            for c in [0x00u8, 0x7F, 0xFF] {
                all.push(vec![a, b, c]);
                all.push(vec![a, b, c, b'x']);
            }
        }
    }
    all.push(Vec::new());
    all.push(vec![0xFF; 6]);
    let dir = tempfile::tempdir().unwrap();
    let (db, m) = layered(dir.path(), &all);
    let stats = db.stats();
    assert!(stats.levels[1..].iter().any(|l| l.files > 0), "{stats:?}");
    let snap = db.snapshot();
    // Later writes are not in the snapshot.
    db.put(&[0xFF, 0xFF, 0xFF], b"late").unwrap();
    db.delete(b"a").unwrap();
    let mut m_now = m.clone();
    m_now.insert(vec![0xFF, 0xFF, 0xFF], b"late".to_vec());
    m_now.remove(&[b'a'][..]);

    let prefixes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![b'a'],
        vec![b'a', 0xFF],
        vec![b'a', 0xFF, 0xFF],
        vec![0xFE],
        vec![0xFE, 0xFF],
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0xFF],
        vec![0xFF; 7],
        // Longer than every key it could match.
        vec![b'a', b'a', 0x00, b'x', b'y'],
        vec![b'a', b'a', 0x00, b'x', b'y', b'z'],
        b"no such prefix".to_vec(),
    ];
    for p in &prefixes {
        let want_now: Vec<_> = m_now
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let want_snap: Vec<_> = m
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(pairs(db.scan_prefix(p).unwrap()), want_now, "{p:x?}");
        assert_eq!(pairs(snap.scan_prefix(p).unwrap()), want_snap, "{p:x?}");
        assert_eq!(
            pairs(db.scan_rev(prefix_range(p)).unwrap()),
            rev(want_now),
            "{p:x?}"
        );
        assert_eq!(
            pairs(snap.scan_rev(prefix_range(p)).unwrap()),
            rev(want_snap),
            "{p:x?}"
        );
    }
    // The empty prefix is everything (the empty key included).
    assert_eq!(db.scan_prefix(b"").unwrap().count(), m_now.len());
    assert!(m_now.contains_key(&Vec::new()));
    // A prefix longer than the keys it extends matches none of them.
    assert!(keys(db.scan_prefix([b'a', b'a', 0x00, b'x', b'y']).unwrap()).is_empty());
    // Every 0xFF prefix reaches the last key.
    for n in 1..=6 {
        let got = keys(db.scan_prefix(vec![0xFF; n]).unwrap());
        assert_eq!(got.last(), Some(&vec![0xFF; 6]), "{n}");
        assert!(got
            .iter()
            .all(|k| k.len() >= n && k[..n] == vec![0xFF; n][..]));
    }
}

#[test]
fn scan_rev_matches_the_model_over_every_layer() {
    let all: Vec<Vec<u8>> = (0u32..600)
        .map(|i| format!("key{:05}", i * 7 % 600).into_bytes())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (db, m) = layered(dir.path(), &all);
    let snap = db.snapshot();
    check_range(&db, &snap, &m, ..);
    let k = |i: u32| format!("key{i:05}").into_bytes();
    for (a, b) in [
        (0, 600),
        (3, 4),
        (10, 500),
        (599, 600),
        (250, 251),
        (300, 200),
    ] {
        check_range(&db, &snap, &m, k(a)..k(b));
        check_range(&db, &snap, &m, k(a)..=k(b));
        check_range(&db, &snap, &m, k(a)..);
        check_range(&db, &snap, &m, ..k(b));
        check_range(
            &db,
            &snap,
            &m,
            (Bound::Excluded(k(a)), Bound::Included(k(b))),
        );
        // Bounds between keys.
        let mut mid = k(a);
        mid.push(b'!');
        check_range(
            &db,
            &snap,
            &m,
            (Bound::Excluded(mid.clone()), Bound::Unbounded),
        );
        check_range(&db, &snap, &m, (Bound::Unbounded, Bound::Included(mid)));
    }
}

#[test]
fn scan_rev_reads_versions_split_across_blocks_and_tables() {
    // One key with many versions (each held by a snapshot) fills several
    // data blocks; its neighbours sit on both sides.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new().block_bytes(1024)).unwrap();
    db.put(b"a", b"before").unwrap();
    db.put(b"c", b"after").unwrap();
    let mut snaps = Vec::new();
    for i in 0..60u32 {
        db.put(b"b", format!("{i:0>200}").as_bytes()).unwrap();
        snaps.push((i, db.snapshot()));
        if i == 30 {
            db.delete(b"b").unwrap();
            snaps.push((u32::MAX, db.snapshot()));
        }
    }
    for round in 0..3 {
        for (i, snap) in &snaps {
            let got = pairs(snap.scan_rev(..).unwrap());
            let mut want = vec![(b"c".to_vec(), b"after".to_vec())];
            if *i != u32::MAX {
                want.push((b"b".to_vec(), format!("{i:0>200}").into_bytes()));
            }
            want.push((b"a".to_vec(), b"before".to_vec()));
            assert_eq!(got, want, "round {round}, version {i}");
            assert_eq!(pairs(snap.scan(..).unwrap()), rev(want), "round {round}");
        }
        // Round 1 reads it from one L0 table, round 2 from a compacted
        // level (the snapshots keep every version).
        match round {
            0 => db.flush().unwrap(),
            1 => db.compact_all().unwrap(),
            _ => {}
        }
    }
}

#[test]
fn scan_rev_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::new()).unwrap();
        let mut b = WriteBatch::new();
        for i in 0..2000u32 {
            b.put(format!("k{i:06}").into_bytes(), vec![7u8; 64]);
        }
        db.write(b, Default::default()).unwrap();
        db.flush().unwrap();
        db.close().unwrap();
    }
    let sst = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    // A byte in the first data block (the last one a reverse scan reads).
    bytes[100] ^= 0xFF;
    std::fs::write(&sst, bytes).unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    let mut scan = db.scan_rev(..).unwrap();
    let err = scan.by_ref().find_map(Result::err).unwrap();
    assert!(
        matches!(err, strata_storage::Error::Corruption { .. }),
        "{err:?}"
    );
    assert!(scan.next().is_none(), "a scan stops after its first error");
}

// The model test: random operations, then forward and backward scans with
// random bounds of every kind, on the live store and on held snapshots.

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Batch(Vec<(u8, Option<u8>)>),
    Scan(BoundSpec, BoundSpec),
    Snapshot,
    SnapshotCheck(BoundSpec, BoundSpec),
    Flush,
    CompactAll,
    CompactRange(u8, u8),
}

#[derive(Debug, Clone, Copy)]
enum BoundSpec {
    Included(u8),
    Excluded(u8),
    Unbounded,
}

fn key(k: u8) -> Vec<u8> {
    let mut v = b"key-".to_vec();
    v.extend(std::iter::repeat_n(b'x', usize::from(k % 3)));
    v.push(k);
    v
}

fn value(v: u8, salt: usize) -> Vec<u8> {
    let mut out = vec![v; usize::from(v % 64) + 1];
    out.extend_from_slice(&salt.to_le_bytes());
    out
}

impl BoundSpec {
    fn bound(self) -> Bound<Vec<u8>> {
        match self {
            BoundSpec::Included(k) => Bound::Included(key(k)),
            BoundSpec::Excluded(k) => Bound::Excluded(key(k)),
            BoundSpec::Unbounded => Bound::Unbounded,
        }
    }
}

fn bound_spec() -> impl Strategy<Value = BoundSpec> {
    prop_oneof![
        2 => any::<u8>().prop_map(|k| BoundSpec::Included(k % 70)),
        2 => any::<u8>().prop_map(|k| BoundSpec::Excluded(k % 70)),
        1 => Just(BoundSpec::Unbounded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 64, v)),
        3 => any::<u8>().prop_map(|k| Op::Delete(k % 64)),
        2 => proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u8>())), 0..8)
            .prop_map(|v| Op::Batch(v.into_iter().map(|(k, v)| (k % 64, v)).collect())),
        3 => (bound_spec(), bound_spec()).prop_map(|(a, b)| Op::Scan(a, b)),
        1 => Just(Op::Snapshot),
        2 => (bound_spec(), bound_spec()).prop_map(|(a, b)| Op::SnapshotCheck(a, b)),
        1 => Just(Op::Flush),
        1 => Just(Op::CompactAll),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::CompactRange(a % 64, b % 64)),
    ]
}

fn check(
    scan: impl Fn(&(Bound<Vec<u8>>, Bound<Vec<u8>>), bool) -> Scan,
    m: &Model,
    a: BoundSpec,
    b: BoundSpec,
) -> Result<(), TestCaseError> {
    let range = (a.bound(), b.bound());
    let want = model_range(m, &range);
    prop_assert_eq!(pairs(scan(&range, false)), want.clone());
    prop_assert_eq!(pairs(scan(&range, true)), rev(want));
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options::new()
            .memtable_bytes(1024)
            .block_bytes(1024)
            .table_bytes(2048)
            .level1_bytes(4096)
            .level_size_ratio(2)
            .l0_compaction_trigger(2)
            .l0_stop_writes(6),
    )
    .unwrap();
    let mut model = Model::new();
    let mut snaps: Vec<(Snapshot, Model)> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                db.put(&key(k), &value(v, n)).unwrap();
                model.insert(key(k), value(v, n));
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
                            b.put(key(k), value(v, n));
                            model.insert(key(k), value(v, n));
                        }
                        None => {
                            b.delete(key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                db.write(b, Default::default()).unwrap();
            }
            Op::Scan(a, b) => check(
                |r, back| {
                    if back {
                        db.scan_rev(r).unwrap()
                    } else {
                        db.scan(r).unwrap()
                    }
                },
                &model,
                a,
                b,
            )?,
            Op::Snapshot => {
                if snaps.len() == 4 {
                    snaps.remove(0);
                }
                snaps.push((db.snapshot(), model.clone()));
            }
            Op::SnapshotCheck(a, b) => {
                for (snap, m) in &snaps {
                    check(
                        |r, back| {
                            if back {
                                snap.scan_rev(r).unwrap()
                            } else {
                                snap.scan(r).unwrap()
                            }
                        },
                        m,
                        a,
                        b,
                    )?;
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::CompactAll => db.compact_all().unwrap(),
            Op::CompactRange(a, b) => db.compact_range(key(a.min(b))..=key(a.max(b))).unwrap(),
        }
    }
    prop_assert_eq!(
        pairs(db.scan_rev(..).unwrap()),
        rev(model_range(&model, &..))
    );
    for (snap, m) in &snaps {
        prop_assert_eq!(pairs(snap.scan_rev(..).unwrap()), rev(model_range(m, &..)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn scan_and_scan_rev_match_btreemap(ops in proptest::collection::vec(op(), 1..400)) {
        run(ops)?;
    }
}
