//! The memtable switch and recovery across several WALs: at a switch the
//! old WAL is fsynced whole before the new one gets a byte, so after a
//! power loss recovery is a prefix of the writes; and because only the
//! newest WAL can then end in a torn record, a torn tail in an older WAL
//! is corruption (unless `WalRecovery::BestEffort`).
//!
//! A crash is simulated on a copy of the directory, taken while the `Db`
//! is still open (a "crash image"): either every byte written (a process
//! crash, kill -9) or, for each WAL, only the bytes an fsync covered (a
//! power loss). The flush worker is held at a gate meanwhile, so the
//! frozen memtable's WAL is still live and the image holds every WAL the
//! engine created.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use strata_storage::wal::LogFile;
use strata_storage::{
    fault::FileKind, Db, Error, Options, WalBackend, WalRecovery, WriteBatch, WriteOptions,
};

/// Every scenario runs with both WAL backends (forced, so a machine
/// without io_uring fails instead of testing `std::fs` twice).
const BACKENDS: [WalBackend; 2] = [WalBackend::Std, WalBackend::IoUring];

/// A small memtable: the switch comes after a few dozen writes.
const MEMTABLE_BYTES: usize = 4 << 10;
/// Writes tried before the test gives up waiting for the switch.
const WRITES_MAX: u64 = 10_000;
/// Bytes of every value written.
const VALUE_BYTES: usize = 100;
/// Bytes of a WAL record header (`len: u32`, `crc32: u32`), from
/// docs/storage-format.md, "Records".
const RECORD_HEADER_BYTES: usize = 8;

/// One WAL file as its wrapper saw it: bytes appended, and bytes covered
/// by a completed fsync (what survives a power loss).
#[derive(Debug, Default)]
struct Tracked {
    appended_bytes: AtomicU64,
    synced_bytes: AtomicU64,
}

/// Every WAL the engine created, in creation order (which is file-number
/// order: numbers are handed out increasing).
#[derive(Debug, Default, Clone)]
struct Wals(Arc<Mutex<Vec<Arc<Tracked>>>>);

impl Wals {
    fn created(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Debug)]
struct TrackedFile {
    inner: Box<dyn LogFile>,
    tracked: Arc<Tracked>,
}

impl LogFile for TrackedFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.append(buf)?;
        self.tracked
            .appended_bytes
            .fetch_add(buf.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        // Only what was appended before the fsync started is covered by it.
        let covered_bytes = self.tracked.appended_bytes.load(Ordering::SeqCst);
        self.inner.sync()?;
        self.tracked
            .synced_bytes
            .fetch_max(covered_bytes, Ordering::SeqCst);
        Ok(())
    }
}

/// Holds table writes (the flush worker) until opened.
#[derive(Debug, Default, Clone)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn LogFile>,
    gate: Gate,
}

impl LogFile for GatedFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.gate.wait();
        self.inner.append(buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.gate.wait();
        self.inner.sync()
    }
}

fn options(backend: WalBackend, wals: &Wals, gate: &Gate) -> Options {
    let wals = wals.clone();
    let gate = gate.clone();
    Options::new()
        .wal_backend(backend)
        .memtable_bytes(MEMTABLE_BYTES)
        .wal_wrapper(Arc::new(move |inner| {
            let tracked = Arc::new(Tracked::default());
            wals.0.lock().unwrap().push(Arc::clone(&tracked));
            Box::new(TrackedFile { inner, tracked }) as Box<dyn LogFile>
        }))
        .file_wrapper(Arc::new(move |kind, inner| match kind {
            FileKind::Table => Box::new(GatedFile {
                inner,
                gate: gate.clone(),
            }) as Box<dyn LogFile>,
            _ => inner,
        }))
}

fn key(n: u64) -> Vec<u8> {
    format!("key-{n:06}").into_bytes()
}

fn write(db: &Db, n: u64, sync: bool) {
    let mut b = WriteBatch::new();
    b.put(key(n), vec![(n % 251) as u8; VALUE_BYTES]);
    db.write(b, WriteOptions { sync }).unwrap();
}

/// Writes numbered from 0 in a fresh `Db`: unsynced ones until one lands
/// in a second WAL (the memtable switch), then one synced write. Returns
/// the `Db` (its flush held at `gate`), the number of the first write in
/// the second WAL and the number of the synced write.
fn write_across_a_switch(
    dir: &Path,
    backend: WalBackend,
    wals: &Wals,
    gate: &Gate,
) -> (Db, u64, u64) {
    let db = Db::open(dir, options(backend, wals, gate)).unwrap();
    assert_eq!(wals.created(), 1, "open creates one WAL");
    let mut n = 0;
    while wals.created() < 2 {
        assert!(n < WRITES_MAX, "the memtable never switched");
        write(&db, n, false);
        n += 1;
    }
    let first_in_new_wal = n - 1;
    assert!(first_in_new_wal > 0, "the old WAL holds writes");
    write(&db, n, true);
    (db, first_in_new_wal, n)
}

/// What a crash image keeps of each WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Every byte written: the process died, the kernel did not.
    Process,
    /// Only the bytes an fsync covered: the machine lost power.
    PowerLoss,
}

/// The WAL files in `dir`, in file-number order.
fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    // Names are zero-padded numbers of equal width here: name order is
    // number order.
    v.sort();
    v
}

/// Copies `dir` (of a `Db` still open, its flush held at the gate) as
/// `crash` would leave it. Every WAL the engine created must still be
/// there, so that the files map onto `wals` in order.
fn crash_image(dir: &Path, wals: &Wals, crash: Crash) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    let tracked = wals.0.lock().unwrap().clone();
    let live = wal_files(dir);
    assert_eq!(live.len(), tracked.len(), "no WAL was deleted yet");
    for entry in std::fs::read_dir(dir).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, image.path().join(from.file_name().unwrap())).unwrap();
    }
    for (from, t) in live.iter().zip(&tracked) {
        let appended_bytes = t.appended_bytes.load(Ordering::SeqCst);
        assert_eq!(std::fs::metadata(from).unwrap().len(), appended_bytes);
        if crash == Crash::PowerLoss {
            let to = image.path().join(from.file_name().unwrap());
            let f = std::fs::OpenOptions::new().write(true).open(to).unwrap();
            f.set_len(t.synced_bytes.load(Ordering::SeqCst)).unwrap();
        }
    }
    image
}

/// The numbers of the writes below `end` that `db` holds.
fn present(db: &Db, end: u64) -> Vec<u64> {
    (0..end)
        .filter(|&n| db.get(&key(n)).unwrap().is_some())
        .collect()
}

/// The byte offset of every record of the log at `path` (layout in
/// docs/storage-format.md, "Records"); the last may be torn.
fn record_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos + RECORD_HEADER_BYTES <= bytes.len() {
        offsets.push(pos as u64);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += RECORD_HEADER_BYTES + len;
    }
    offsets
}

/// Cuts the last 3 bytes of the WAL at `path` off, as a crash mid-append
/// would; returns the offset where its (now torn) last record starts.
fn tear(path: &Path) -> u64 {
    let last_record = *record_offsets(path).last().expect("the WAL has records");
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len - 3).unwrap();
    last_record
}

/// Regression (security review, issue 17 item 11): the memtable switch
/// replaced the WAL without fsyncing the old one. A power loss could then
/// drop the old WAL's unsynced writes while a later synced write in the
/// new WAL survived, so recovery was not a prefix of the writes (here: the
/// synced write came back without the ones before it).
#[test]
fn power_loss_after_a_memtable_switch_recovers_a_prefix() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let (wals, gate) = (Wals::default(), Gate::default());
        let (db, _, synced) = write_across_a_switch(dir.path(), backend, &wals, &gate);
        let image = crash_image(dir.path(), &wals, Crash::PowerLoss);
        gate.open();
        drop(db);
        let db = Db::open(image.path(), Options::new().wal_backend(backend)).unwrap();
        // The synced write was acknowledged, so it and every write before
        // it are there; it was the last write.
        assert_eq!(
            present(&db, synced + 1),
            (0..=synced).collect::<Vec<_>>(),
            "{backend:?}"
        );
    }
}

/// Regression (security review, issue 17 item 11): recovery cut a torn
/// tail off every WAL, silently losing writes from the middle of the
/// history. Only the newest WAL can legitimately be torn (the older ones
/// were fsynced whole at their switch), so a torn older WAL is corruption
/// naming the file and the offset of the torn record.
#[test]
fn a_torn_tail_in_an_older_wal_is_corruption_naming_file_and_offset() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let (wals, gate) = (Wals::default(), Gate::default());
        let (db, _, _) = write_across_a_switch(dir.path(), backend, &wals, &gate);
        let image = crash_image(dir.path(), &wals, Crash::Process);
        gate.open();
        drop(db);
        let older = wal_files(image.path())[0].clone();
        let offset = tear(&older);
        let err = Db::open(image.path(), Options::new().wal_backend(backend)).unwrap_err();
        let message = err.to_string();
        match err {
            Error::Corruption {
                file, offset: at, ..
            } => {
                assert_eq!(file, older, "{backend:?}: {message}");
                assert_eq!(at, offset, "{backend:?}: {message}");
            }
            other => panic!("{backend:?}: expected corruption, got {other}"),
        }
        let name = older.file_name().unwrap().to_string_lossy().into_owned();
        assert!(message.contains(&name), "{message}");
        assert!(message.contains(&format!("byte {offset}")), "{message}");
        // The failed open changed nothing: it fails again the same way.
        assert!(matches!(
            Db::open(image.path(), Options::new().wal_backend(backend)),
            Err(Error::Corruption { .. })
        ));
    }
}

/// `WalRecovery::BestEffort` keeps what it can: the torn record of an
/// older WAL is dropped and replay goes on with the newer WALs, so the
/// writes after it are recovered (the result is then not a prefix).
#[test]
fn best_effort_drops_a_torn_tail_in_an_older_wal_and_replays_the_rest() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let (wals, gate) = (Wals::default(), Gate::default());
        let (db, first_in_new_wal, synced) =
            write_across_a_switch(dir.path(), backend, &wals, &gate);
        let image = crash_image(dir.path(), &wals, Crash::Process);
        gate.open();
        drop(db);
        tear(&wal_files(image.path())[0]);
        let opts = Options::new()
            .wal_backend(backend)
            .wal_recovery(WalRecovery::BestEffort);
        let db = Db::open(image.path(), opts).unwrap();
        let lost = first_in_new_wal - 1;
        let expected: Vec<u64> = (0..=synced).filter(|&n| n != lost).collect();
        assert_eq!(present(&db, synced + 1), expected, "{backend:?}");
    }
}

/// The newest WAL is the one being appended to at a crash: a torn tail
/// there is an unacknowledged write, dropped while everything before it
/// opens normally, in strict mode too.
#[test]
fn a_torn_tail_in_the_newest_wal_drops_only_that_record() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let (wals, gate) = (Wals::default(), Gate::default());
        let (db, _, synced) = write_across_a_switch(dir.path(), backend, &wals, &gate);
        let image = crash_image(dir.path(), &wals, Crash::Process);
        gate.open();
        drop(db);
        let newest = wal_files(image.path()).pop().unwrap();
        tear(&newest);
        let db = Db::open(image.path(), Options::new().wal_backend(backend)).unwrap();
        // The torn record was the synced write, the last one.
        assert_eq!(
            present(&db, synced + 1),
            (0..synced).collect::<Vec<_>>(),
            "{backend:?}"
        );
    }
}
