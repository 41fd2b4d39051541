//! The block cache: repeated reads of a block hit it, it stays within its
//! bytes, compaction reads do not fill it, and with it off (0 bytes) or
//! with compressed tables every read is still right.

use strata_storage::{Db, Options};

fn key(n: u64) -> Vec<u8> {
    format!("key-{n:06}").into_bytes()
}

fn value(n: u64) -> Vec<u8> {
    let mut v = format!("value-{n}-").into_bytes();
    v.resize(100, b'.');
    v
}

const KEYS: u64 = 3000;

fn filled(opts: Options) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    for n in 0..KEYS {
        db.put(&key(n), &value(n)).unwrap();
    }
    db.compact_all().unwrap();
    (dir, db)
}

#[test]
fn repeated_reads_hit_and_compaction_does_not_fill() {
    for zstd in [None, Some(3)] {
        let (_dir, db) = filled(Options::new().zstd_level(zstd));
        let s = db.stats();
        // Flush and compaction read tables, but fill nothing.
        assert_eq!(s.block_cache_bytes, 0, "{s:?}");
        assert_eq!(db.get(&key(7)).unwrap(), Some(value(7)));
        assert_eq!(db.get(&key(8)).unwrap(), Some(value(8)));
        let s = db.stats();
        assert_eq!((s.block_cache_misses, s.block_cache_hits), (1, 1), "{s:?}");
        assert!(s.block_cache_bytes > 0);
        let all: Vec<_> = db.scan(..).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(all.len() as u64, KEYS);
        assert!(all.iter().all(|(k, v)| {
            let n: u64 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
            *v == value(n)
        }));
        assert!(db.stats().block_cache_hit_rate() > 0.0);
    }
}

#[test]
fn stays_within_its_bytes() {
    let cache_bytes = 64 << 10;
    let (_dir, db) = filled(Options::new().block_cache_bytes(cache_bytes));
    for round in 0..2 {
        for n in (0..KEYS).step_by(3) {
            assert_eq!(db.get(&key(n)).unwrap(), Some(value(n)), "round {round}");
        }
        let s = db.stats();
        assert!(s.block_cache_bytes <= cache_bytes as u64, "{s:?}");
        assert!(s.block_cache_bytes > 0);
    }
    // 300 KB of blocks through a 64 KiB cache: the second pass misses too.
    assert!(db.stats().block_cache_misses > 20);
}

#[test]
fn zero_bytes_turns_it_off() {
    let (_dir, db) = filled(Options::new().block_cache_bytes(0));
    for n in (0..KEYS).step_by(7) {
        assert_eq!(db.get(&key(n)).unwrap(), Some(value(n)));
    }
    assert_eq!(db.scan(..).unwrap().count() as u64, KEYS);
    let s = db.stats();
    assert_eq!(
        (
            s.block_cache_hits,
            s.block_cache_misses,
            s.block_cache_bytes
        ),
        (0, 0, 0)
    );
    assert_eq!(s.block_cache_hit_rate(), 0.0);
}
