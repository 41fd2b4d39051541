//! I/O faults injected into WAL appends and fsyncs (ENOSPC, EIO): the error
//! reaches the caller, the engine refuses writes until reopened, and every
//! acknowledged write is readable after reopening. The same for table,
//! manifest and `CURRENT` writes (through `Options::file_wrapper`), both
//! in the background flush and at open. Every scenario runs with both WAL
//! backends (`WalBackend::Std` and `WalBackend::IoUring`): the injected
//! faults wrap the backend's file, so both report them the same way.

mod fault_common;

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use fault_common::{Faulty, FAIL_APPEND, FAIL_SYNC, OK};
use strata_storage::fault::FileKind;
use strata_storage::wal::LogFile;
use strata_storage::{Db, Error, Options, WalBackend, WriteBatch, WriteOptions};

/// The backends every scenario runs with. io_uring is forced, not `Auto`,
/// so a machine without it fails the tests instead of silently testing
/// `std::fs` twice.
const BACKENDS: [WalBackend; 2] = [WalBackend::Std, WalBackend::IoUring];

fn faulty_options(mode: &Arc<AtomicU8>, backend: WalBackend) -> Options {
    let mode = Arc::clone(mode);
    Options::new()
        .wal_backend(backend)
        .wal_wrapper(Arc::new(move |inner| {
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
    for backend in BACKENDS {
        check_with(fail, backend);
    }
}

fn check_with(fail: u8, backend: WalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let mode = Arc::new(AtomicU8::new(OK));
    let db = Db::open(dir.path(), faulty_options(&mode, backend)).unwrap();
    assert_eq!(db.wal_backend(), backend);
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
    let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
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

/// Which table/manifest writes fail: `(kind, FAIL_APPEND or FAIL_SYNC)`.
type Plan = Arc<Mutex<Option<(FileKind, u8)>>>;

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn LogFile>,
    kind: FileKind,
    plan: Plan,
}

impl FaultyFile {
    fn failing(&self, what: u8) -> bool {
        *self.plan.lock().unwrap() == Some((self.kind, what))
    }
}

impl LogFile for FaultyFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.failing(FAIL_APPEND) {
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.failing(FAIL_SYNC) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
}

fn file_faulty_options(plan: &Plan, backend: WalBackend) -> Options {
    let plan = Arc::clone(plan);
    // A small memtable: the loop below freezes one every few writes.
    Options::new()
        .wal_backend(backend)
        .memtable_bytes(1 << 10)
        .file_wrapper(Arc::new(move |kind, inner| {
            Box::new(FaultyFile {
                inner,
                kind,
                plan: Arc::clone(&plan),
            }) as Box<dyn LogFile>
        }))
}

fn key(n: u32) -> Vec<u8> {
    format!("key-{n:06}").into_bytes()
}

/// The inner error of a background failure names the file that failed.
fn assert_background_io(err: &Error, file_hint: &str) {
    let Error::Background(inner) = err else {
        panic!("expected a background error, got {err}");
    };
    let Error::Io { path, .. } = &**inner else {
        panic!("expected an I/O error inside, got {inner}");
    };
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(name.contains(file_hint), "{name} is not a {file_hint} file");
}

fn check_flush_fault(kind: FileKind, fail: u8, file_hint: &str) {
    for backend in BACKENDS {
        check_flush_fault_with(kind, fail, file_hint, backend);
    }
}

fn check_flush_fault_with(kind: FileKind, fail: u8, file_hint: &str, backend: WalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let plan: Plan = Arc::default();
    let db = Db::open(dir.path(), file_faulty_options(&plan, backend)).unwrap();
    let mut acked = Vec::new();
    for n in 0..40 {
        synced_put(&db, &key(n)).unwrap();
        acked.push(n);
    }
    db.flush().unwrap();
    *plan.lock().unwrap() = Some((kind, fail));
    // Writes go on until the failed background flush reaches a writer
    // (they wait for room once `immutables_max` memtables are stuck).
    let mut failure = None;
    for n in 40..100_000 {
        match synced_put(&db, &key(n)) {
            Ok(()) => acked.push(n),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("the failed flush must reach a writer");
    assert_background_io(&err, file_hint);
    *plan.lock().unwrap() = None;
    // Sticky until reopen, even with the disk healthy again.
    assert_background_io(&synced_put(&db, b"after").unwrap_err(), file_hint);
    assert_background_io(&db.flush().unwrap_err(), file_hint);
    // Reads still see every acknowledged write, flushed or not.
    for &n in &acked {
        assert_eq!(db.get(&key(n)).unwrap(), Some(b"v".to_vec()), "key {n}");
    }
    assert_background_io(&db.close().unwrap_err(), file_hint);
    drop(db);
    let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
    for &n in &acked {
        assert_eq!(db.get(&key(n)).unwrap(), Some(b"v".to_vec()), "key {n}");
    }
    assert_eq!(db.scan(..).unwrap().count(), acked.len());
    assert_eq!(db.get(b"after").unwrap(), None);
    synced_put(&db, b"after").unwrap();
    db.flush().unwrap();
}

#[test]
fn enospc_on_table_write_is_a_sticky_background_error() {
    check_flush_fault(FileKind::Table, FAIL_APPEND, ".sst");
}

#[test]
fn eio_on_table_fsync_is_a_sticky_background_error() {
    check_flush_fault(FileKind::Table, FAIL_SYNC, ".sst");
}

#[test]
fn enospc_on_manifest_append_is_a_sticky_background_error() {
    check_flush_fault(FileKind::Manifest, FAIL_APPEND, "MANIFEST-");
}

#[test]
fn eio_on_manifest_fsync_is_a_sticky_background_error() {
    check_flush_fault(FileKind::Manifest, FAIL_SYNC, "MANIFEST-");
}

/// Open writes the recovered WALs to a table, a new manifest and
/// `CURRENT`; a failure in any of them fails the open, and the next open
/// still recovers every acknowledged write.
#[test]
fn faults_while_opening_fail_the_open_and_lose_nothing() {
    for backend in BACKENDS {
        faults_while_opening_with(backend);
    }
}

fn faults_while_opening_with(backend: WalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0u32;
    for (kind, fail, file_hint) in [
        (FileKind::Table, FAIL_APPEND, ".sst"),
        (FileKind::Table, FAIL_SYNC, ".sst"),
        (FileKind::Manifest, FAIL_APPEND, "MANIFEST-"),
        (FileKind::Manifest, FAIL_SYNC, "MANIFEST-"),
        (FileKind::Current, FAIL_APPEND, "CURRENT.tmp"),
        (FileKind::Current, FAIL_SYNC, "CURRENT.tmp"),
    ] {
        // Unflushed writes, so that open has a WAL to write to a table.
        let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
        for _ in 0..25 {
            synced_put(&db, &key(acked)).unwrap();
            acked += 1;
        }
        drop(db);
        let plan: Plan = Arc::new(Mutex::new(Some((kind, fail))));
        let err = Db::open(dir.path(), file_faulty_options(&plan, backend)).unwrap_err();
        let Error::Io { path, .. } = &err else {
            panic!("{kind:?}: expected an I/O error, got {err}");
        };
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(name.contains(file_hint), "{kind:?}: failed on {name}");
    }
    let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
    for n in 0..acked {
        assert_eq!(db.get(&key(n)).unwrap(), Some(b"v".to_vec()), "key {n}");
    }
    assert_eq!(db.scan(..).unwrap().count(), acked as usize);
    // Manifests written by the failed opens were deleted.
    let manifests = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("MANIFEST-")
        })
        .count();
    assert_eq!(manifests, 1);
}

#[derive(Debug)]
struct PanicOnSync {
    inner: Box<dyn LogFile>,
    armed: Arc<AtomicU8>,
}

impl LogFile for PanicOnSync {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        assert_eq!(self.armed.load(Ordering::SeqCst), OK, "injected panic");
        self.inner.sync()
    }
}

/// A panic in the flush worker must not leave writers waiting for room
/// forever: it becomes the sticky background error.
#[test]
fn a_panicking_flush_worker_fails_writes_instead_of_hanging() {
    for backend in BACKENDS {
        a_panicking_flush_worker_with(backend);
    }
}

fn a_panicking_flush_worker_with(backend: WalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicU8::new(OK));
    let wrap_armed = Arc::clone(&armed);
    let opts = Options::new()
        .wal_backend(backend)
        .memtable_bytes(1 << 10)
        .file_wrapper(Arc::new(move |kind, inner| match kind {
            FileKind::Table => Box::new(PanicOnSync {
                inner,
                armed: Arc::clone(&wrap_armed),
            }) as Box<dyn LogFile>,
            _ => inner,
        }));
    let db = Db::open(dir.path(), opts).unwrap();
    let mut acked = 0u32;
    for _ in 0..40 {
        synced_put(&db, &key(acked)).unwrap();
        acked += 1;
    }
    db.flush().unwrap();
    armed.store(FAIL_SYNC, Ordering::SeqCst);
    let err = loop {
        match synced_put(&db, &key(acked)) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 100_000, "the worker's panic never reached a writer");
    };
    assert!(
        matches!(&err, Error::Background(inner) if matches!(**inner, Error::WorkerPanicked)),
        "{err}"
    );
    assert!(db.flush().is_err());
    drop(db); // Joins the dead worker; must not hang or panic.
    let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
    for n in 0..acked {
        assert_eq!(db.get(&key(n)).unwrap(), Some(b"v".to_vec()), "key {n}");
    }
}

/// Regression (security review, issue 17 item 11): the memtable switch
/// now fsyncs the old WAL before the new one gets a byte, so that a power
/// loss cannot keep later writes and lose earlier ones. That fsync failing
/// must poison the engine like any other WAL fsync failure: the write that
/// switched gets the error, later writes `Error::Poisoned`, and everything
/// written before is recovered at reopen.
#[test]
fn eio_on_the_old_wal_fsync_at_a_memtable_switch_poisons() {
    for backend in BACKENDS {
        eio_on_the_old_wal_fsync_at_a_memtable_switch_with(backend);
    }
}

fn eio_on_the_old_wal_fsync_at_a_memtable_switch_with(backend: WalBackend) {
    let dir = tempfile::tempdir().unwrap();
    // Unsynced writes never fsync, so the first fsync is the switch's.
    let mode = Arc::new(AtomicU8::new(FAIL_SYNC));
    // A 4 KiB memtable fills within a few dozen of these writes.
    let opts = faulty_options(&mode, backend).memtable_bytes(4 << 10);
    let db = Db::open(dir.path(), opts).unwrap();
    let mut acked = 0u32;
    let err = loop {
        match db.put(&key(acked), &[7u8; 100]) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1000, "no memtable switch fsynced the old WAL");
    };
    let Error::Io { path, .. } = &err else {
        panic!("expected an I/O error, got {err}");
    };
    assert!(path.to_string_lossy().ends_with(".wal"), "{err}");
    mode.store(OK, Ordering::SeqCst);
    assert!(matches!(db.put(b"after", b"v"), Err(Error::Poisoned)));
    assert!(matches!(db.flush(), Err(Error::Poisoned)));
    drop(db);
    let db = Db::open(dir.path(), Options::new().wal_backend(backend)).unwrap();
    for n in 0..acked {
        assert_eq!(db.get(&key(n)).unwrap(), Some(vec![7u8; 100]), "key {n}");
    }
    assert_eq!(db.scan(..).unwrap().count(), acked as usize);
}
