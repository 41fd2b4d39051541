//! Corruption: damaged tables and WALs give `Error::Corruption` naming the
//! file (never wrong data); a torn WAL tail recovers everything before it.

use std::path::{Path, PathBuf};

use strata_storage::{Db, Error, Options, WalRecovery, WriteBatch, WriteOptions};

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn key(n: u32) -> Vec<u8> {
    format!("key{n:06}").into_bytes()
}

fn write_batches(dir: &Path, n: u32) {
    let db = Db::open(dir, Options::new()).unwrap();
    for b in 0..n {
        let mut batch = WriteBatch::new();
        for i in 0..3 {
            batch.put(key(b * 3 + i), vec![b as u8; 20]);
        }
        db.write(batch, WriteOptions { sync: true }).unwrap();
    }
    db.close().unwrap();
}

/// Batches whose keys are all present; panics on a partial batch.
fn present_batches(db: &Db, n: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for b in 0..n {
        let got: Vec<bool> = (0..3)
            .map(|i| db.get(&key(b * 3 + i)).unwrap().is_some())
            .collect();
        assert!(
            got.iter().all(|&x| x) || got.iter().all(|&x| !x),
            "batch {b} partial"
        );
        if got[0] {
            out.push(b);
        }
    }
    out
}

fn assert_corruption_in(err: Error, ext: &str) {
    match err {
        Error::Corruption { file, .. } => {
            assert_eq!(file.extension().unwrap(), ext, "{}", file.display())
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn flipped_table_byte_is_corruption_naming_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    for n in 0..2000 {
        db.put(&key(n), &[1u8; 50]).unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    drop(db);
    let sst = files_with(dir.path(), "sst");
    assert_eq!(sst.len(), 1);
    flip(&sst[0], 100);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_corruption_in(db.get(&key(0)).unwrap_err(), "sst");
    let err = db.scan(..).unwrap().find_map(Result::err).unwrap();
    assert_corruption_in(err, "sst");
    // Keys in other blocks still read.
    assert_eq!(db.get(&key(1999)).unwrap(), Some(vec![1u8; 50]));
}

#[test]
fn flipped_table_footer_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.put(b"a", b"b").unwrap();
    db.flush().unwrap();
    drop(db);
    let sst = &files_with(dir.path(), "sst")[0];
    let len = std::fs::metadata(sst).unwrap().len() as usize;
    flip(sst, len - 20);
    assert_corruption_in(Db::open(dir.path(), Options::new()).unwrap_err(), "sst");
}

#[test]
fn truncated_wal_recovers_every_batch_before_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 20);
    let wal = &files_with(dir.path(), "wal")[0];
    let len = std::fs::metadata(wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(wal)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(present_batches(&db, 20), (0..19).collect::<Vec<_>>());
}

#[test]
fn flipped_wal_byte_is_corruption_or_best_effort_prefix() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 20);
    let wal = &files_with(dir.path(), "wal")[0];
    let len = std::fs::metadata(wal).unwrap().len() as usize;
    flip(wal, len / 2);
    assert_corruption_in(Db::open(dir.path(), Options::new()).unwrap_err(), "wal");
    let opts = Options::new().wal_recovery(WalRecovery::BestEffort);
    let db = Db::open(dir.path(), opts).unwrap();
    let present = present_batches(&db, 20);
    assert!(present.len() < 20 && present.len() >= 5, "{present:?}");
    assert_eq!(present, (0..present.len() as u32).collect::<Vec<_>>());
}

#[test]
fn corrupt_manifest_fails_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.put(b"a", b"b").unwrap();
    db.flush().unwrap();
    db.put(b"c", b"d").unwrap();
    db.flush().unwrap();
    drop(db);
    let manifest = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("MANIFEST-")
        })
        .unwrap();
    flip(&manifest, 10);
    match Db::open(dir.path(), Options::new()).unwrap_err() {
        Error::Corruption { file, .. } => assert_eq!(file, manifest),
        other => panic!("expected corruption, got {other}"),
    }
}
