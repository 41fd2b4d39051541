//! The background flush: frozen memtables stay readable until their table
//! is installed, writers wait when `immutables_max` are pending, `flush()`
//! returns only once everything is in tables (and the frozen WALs are
//! gone), and `close()` lets the worker finish.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use strata_storage::fault::FileKind;
use strata_storage::wal::LogFile;
use strata_storage::{Db, Options};

/// Delays every table fsync, so the flush worker is reliably slower than
/// the writer.
#[derive(Debug)]
struct SlowTable(Box<dyn LogFile>);

impl LogFile for SlowTable {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.0.append(buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(3));
        self.0.sync()
    }
}

fn slow_tables(opts: Options) -> Options {
    opts.file_wrapper(Arc::new(|kind, file| match kind {
        FileKind::Table => Box::new(SlowTable(file)) as Box<dyn LogFile>,
        _ => file,
    }))
}

fn key(n: u64) -> Vec<u8> {
    format!("key-{n:08}").into_bytes()
}

fn value(n: u64) -> Vec<u8> {
    vec![(n % 251) as u8; 100]
}

fn wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("wal".as_ref()))
        .count()
}

#[test]
fn writes_stay_readable_while_memtables_flush_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    // A 2 KiB memtable fills every ~15 writes and each table fsync takes
    // 3 ms more than it would, so the writer outruns the worker and must
    // wait for it.
    let opts = slow_tables(Options::new().memtable_bytes(2 << 10).immutables_max(1));
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, written, done) = (Arc::clone(&db), Arc::clone(&written), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            while !done.load(Ordering::Relaxed) {
                let n = written.load(Ordering::Acquire);
                if n == 0 {
                    continue;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Every acknowledged write is in the memtable, a frozen
                // memtable or a table: never missing in between.
                let k = rng % n;
                assert_eq!(db.get(&key(k)).unwrap(), Some(value(k)), "key {k} of {n}");
            }
        })
    };
    const WRITES: u64 = 2000;
    for n in 0..WRITES {
        db.put(&key(n), &value(n)).unwrap();
        written.store(n + 1, Ordering::Release);
    }
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(db.write_stalls() > 0, "a 1-immutable bound must stall");
    db.flush().unwrap();
    // Only the active memtable's WAL is left; frozen ones were deleted
    // once their tables were installed.
    assert_eq!(wal_files(dir.path()), 1);
    assert_eq!(db.scan(..).unwrap().count() as u64, WRITES);
    drop(db);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    for n in (0..WRITES).step_by(7) {
        assert_eq!(db.get(&key(n)).unwrap(), Some(value(n)));
    }
    assert_eq!(db.scan(..).unwrap().count() as u64, WRITES);
}

#[test]
fn close_lets_the_worker_finish_and_reopen_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().memtable_bytes(1 << 10).immutables_max(3);
    let db = Db::open(dir.path(), opts()).unwrap();
    {
        for n in 0..500 {
            db.put(&key(n), &value(n)).unwrap();
        }
        let snap = db.snapshot();
        for n in 0..500 {
            db.delete(&key(n)).unwrap();
        }
        // Snapshots read across memtable, immutables and tables alike.
        assert_eq!(snap.scan(..).unwrap().count(), 500);
        assert_eq!(snap.get(&key(123)).unwrap(), Some(value(123)));
        assert_eq!(db.scan(..).unwrap().count(), 0);
    }
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.scan(..).unwrap().count(), 0);
    assert_eq!(db.get(&key(7)).unwrap(), None);
    db.put(b"after", b"reopen").unwrap();
    db.flush().unwrap();
    assert_eq!(db.get(b"after").unwrap(), Some(b"reopen".to_vec()));
}

#[test]
fn flush_of_an_empty_memtable_waits_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.flush().unwrap();
    db.put(b"a", b"1").unwrap();
    db.flush().unwrap();
    db.flush().unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.write_stalls(), 0);
}

/// A flush leaves out the versions of a key that no reader can see (a
/// newer one shadows them and no snapshot is older: the rule compaction
/// uses), and keeps every version above a live snapshot.
#[test]
fn flush_drops_shadowed_versions_but_keeps_what_snapshots_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.put(b"k", b"v1").unwrap();
    let snap = db.snapshot();
    for v in 2..=50u32 {
        db.put(b"k", format!("v{v}").as_bytes()).unwrap();
    }
    db.flush().unwrap();
    // A snapshot at v1 is live: nothing above it is dropped.
    assert_eq!(db.stats().flush_versions_dropped, 0);
    assert_eq!(snap.get(b"k").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(db.get(b"k").unwrap(), Some(b"v50".to_vec()));
    drop(snap);
    for v in 51..=60u32 {
        db.put(b"k", format!("v{v}").as_bytes()).unwrap();
    }
    db.delete(b"gone").unwrap();
    db.put(b"gone", b"back").unwrap();
    db.delete(b"gone").unwrap();
    db.flush().unwrap();
    // No snapshot: of each key only the newest version is written (for
    // "gone" a tombstone, which must still shadow older tables).
    assert_eq!(db.stats().flush_versions_dropped, 9 + 2);
    assert_eq!(db.get(b"k").unwrap(), Some(b"v60".to_vec()));
    assert_eq!(db.get(b"gone").unwrap(), None);
    // Reopened, the tables alone answer the same.
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v60".to_vec()));
    assert_eq!(db.get(b"gone").unwrap(), None);
}
