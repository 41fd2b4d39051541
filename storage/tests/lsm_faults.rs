//! I/O faults injected into WAL appends and fsyncs (ENOSPC, EIO): the error
//! reaches the caller, the engine refuses writes until reopened, and every
//! acknowledged write is readable after reopening.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use strata_storage::wal::LogFile;
use strata_storage::{Db, Error, Options, WriteBatch, WriteOptions};

const OK: u8 = 0;
const FAIL_APPEND: u8 = 1;
const FAIL_SYNC: u8 = 2;

#[derive(Debug)]
struct Faulty {
    inner: Box<dyn LogFile>,
    mode: Arc<AtomicU8>,
}

impl LogFile for Faulty {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAIL_APPEND {
            // A partial write, then no space: the torn record must not
            // survive as data.
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAIL_SYNC {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
}

fn faulty_options(mode: &Arc<AtomicU8>) -> Options {
    let mode = Arc::clone(mode);
    Options::new().wal_wrapper(Arc::new(move |inner| {
        Box::new(Faulty {
            inner,
            mode: Arc::clone(&mode),
        }) as Box<dyn LogFile>
    }))
}

fn synced_put(db: &Db, k: &[u8]) -> Result<(), Error> {
    let mut b = WriteBatch::new();
    b.put(k, b"v");
    db.write(b, WriteOptions { sync: true })
}

fn check(fail: u8) {
    let dir = tempfile::tempdir().unwrap();
    let mode = Arc::new(AtomicU8::new(OK));
    let db = Db::open(dir.path(), faulty_options(&mode)).unwrap();
    for i in 0..10u8 {
        synced_put(&db, &[i]).unwrap();
    }
    mode.store(fail, Ordering::SeqCst);
    let err = synced_put(&db, b"failing").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    mode.store(OK, Ordering::SeqCst);
    assert!(matches!(synced_put(&db, b"after"), Err(Error::Poisoned)));
    assert!(matches!(db.flush(), Err(Error::Poisoned)));
    // Reads still work.
    assert_eq!(db.get(&[3]).unwrap(), Some(b"v".to_vec()));
    drop(db);
    let db = Db::open(dir.path(), Options::new()).unwrap();
    for i in 0..10u8 {
        assert_eq!(db.get(&[i]).unwrap(), Some(b"v".to_vec()), "key {i}");
    }
    assert_eq!(db.get(b"after").unwrap(), None);
    synced_put(&db, b"after").unwrap();
}

#[test]
fn enospc_on_wal_append_poisons_and_keeps_acknowledged_writes() {
    check(FAIL_APPEND);
}

#[test]
fn eio_on_wal_fsync_poisons_and_keeps_acknowledged_writes() {
    check(FAIL_SYNC);
}

#[test]
#[ignore = "missing: the fault seam covers WAL appends/fsyncs only; table and manifest writes use std::fs directly"]
fn faults_in_table_and_manifest_writes() {}
