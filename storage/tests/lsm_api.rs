//! API edges: limits give `InvalidArgument`, a closed `Db` gives `Closed`,
//! zstd tables read back, and large values cross block boundaries.

use strata_storage::limits::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use strata_storage::{Db, Error, Options};

#[test]
fn over_limit_keys_and_values_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    let long_key = vec![1u8; KEY_BYTES_MAX + 1];
    assert!(matches!(
        db.put(&long_key, b"v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.delete(&long_key),
        Err(Error::InvalidArgument(_))
    ));
    let big = vec![0u8; VALUE_BYTES_MAX + 1];
    assert!(matches!(db.put(b"k", &big), Err(Error::InvalidArgument(_))));
    // Not poisoned by rejected input.
    db.put(&vec![2u8; KEY_BYTES_MAX], b"max key").unwrap();
    assert_eq!(
        db.get(&vec![2u8; KEY_BYTES_MAX]).unwrap(),
        Some(b"max key".to_vec())
    );
}

#[test]
fn closed_db_refuses_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.put(b"a", b"1").unwrap();
    db.close().unwrap();
    assert!(matches!(db.put(b"b", b"2"), Err(Error::Closed)));
    assert!(matches!(db.get(b"a"), Err(Error::Closed)));
    drop(db);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn zstd_tables_and_large_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().zstd_level(Some(3)).memtable_bytes(1 << 20);
    let db = Db::open(dir.path(), opts()).unwrap();
    let big = vec![9u8; 3 << 20];
    db.put(b"big", &big).unwrap();
    for n in 0..5000u32 {
        db.put(format!("k{n:05}").as_bytes(), &[n as u8; 64])
            .unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(b"big").unwrap(), Some(big));
    assert_eq!(db.get(b"k04321").unwrap(), Some(vec![4321u32 as u8; 64]));
    assert_eq!(db.scan(b"k".to_vec()..).unwrap().count(), 5000);
}
