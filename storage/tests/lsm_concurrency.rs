//! Many threads on one `Db`: synced writers sharing fsyncs, readers
//! scanning and getting meanwhile, flushes in between. Every batch is seen
//! whole or not at all, and everything written is there at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_storage::{Db, Options, WriteBatch, WriteOptions};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn concurrent_writers_and_readers_see_whole_batches() {
    assert_send_sync::<Db>();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::new().memtable_bytes(64 << 10)).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done) = (Arc::clone(&db), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let snap = db.snapshot();
                    let all: Vec<_> = snap.scan(..).unwrap().map(|r| r.unwrap()).collect();
                    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
                    // Each batch writes keys "t/n/0" and "t/n/1" together.
                    for (k, _) in &all {
                        let mut pair = k.clone();
                        let last = pair.len() - 1;
                        pair[last] = if pair[last] == b'0' { b'1' } else { b'0' };
                        assert!(snap.get(&pair).unwrap().is_some(), "half a batch");
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for n in 0..200 {
                    let mut b = WriteBatch::new();
                    b.put(format!("{t}/{n:04}/0"), vec![1u8; 100]);
                    b.put(format!("{t}/{n:04}/1"), vec![2u8; 100]);
                    db.write(b, WriteOptions { sync: n % 2 == 0 }).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(db.scan(..).unwrap().count(), 4 * 200 * 2);
    drop(db);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db.scan(..).unwrap().count(), 4 * 200 * 2);
}
