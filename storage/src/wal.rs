//! The write-ahead log: one framed record (`docs/storage-format.md`,
//! "Records") per write batch, appended before the batch reaches the
//! memtable.
//!
//! Group commit: appends are serialized by a mutex, fsyncs are not. A
//! synced writer calls `Wal::sync_to` with the end offset of its record;
//! if an fsync that started after that offset was written is running or has
//! finished, it waits for it instead of issuing its own (leader/follower),
//! so N concurrent synced writers share about one fsync.
//!
//! # Backends
//!
//! How the bytes and fsyncs reach the kernel is the WAL's backend
//! ([`crate::WalBackend`]), chosen once at open and used for every WAL
//! that `Db` creates:
//! - io_uring (Linux 5.6+): each WAL file owns two small rings, one for
//!   appends (a write at the file offset) and one for fsyncs
//!   (`fdatasync`), each operation waited for before the call returns.
//!   Separate rings keep appends and a running fsync from serializing, so
//!   group commit works as with `std::fs`.
//! - `std::fs`: `write(2)` and `fdatasync(2)`.
//!
//! The default is [`crate::WalBackend::Std`], by measurement (below).
//! [`crate::WalBackend::Auto`] sets up a probe ring at open
//! and uses io_uring if that works and the kernel supports the write and
//! fsync operations, else `std::fs`. The fallback is silent on purpose:
//! containers commonly block `io_uring_setup` with seccomp (`EPERM`) or
//! run kernels without it (`ENOSYS`), and a storage engine that refuses to
//! start there would be worse than a slightly slower one. The choice is
//! reported by `Db::wal_backend`. Forcing
//! [`crate::WalBackend::IoUring`] turns that fallback into
//! [`Error::IoUringUnavailable`] at open. Both backends write the same
//! bytes, so a WAL written by one is replayed by the other; replay itself
//! always reads with `std::fs` (once per open, not on the write path).
//!
//! Speed: io_uring has not been measured to be faster here, hence the
//! `Std` default. The same ignored test with one *unsynced* writer (the
//! common case: sync off) measured std::fs 388 k writes/s against io_uring
//! 15 k writes/s (2026-11-28), where buffered file writes through io_uring
//! are punted to kernel worker threads; with synced writers std::fs was
//! also ahead (1 writer 5.4 k vs 4.5 k/s, 8 writers 17.8 k vs 12.5 k/s). A rough run
//! of the ignored `wal_backend_speed` test on a loaded 2-core VM (ext4) showed no
//! clear difference for one synced writer and io_uring at roughly half to
//! three quarters of `std::fs` for eight. A likely cause is that each
//! append waits for its own completion while holding the writer lock, so
//! any hand-off to a kernel worker thread is paid inside the critical
//! section; linking the append and the fsync in one submission (which the
//! `LogFile` trait's separate calls do not allow) is the obvious next
//! step. Until that is measured properly, `WalBackend::Std` is the choice
//! for many concurrent synced writers.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::limits::BATCH_BYTES_MAX;
use crate::options::WalBackend;
use crate::record::{self, Tail};

/// How to make io_uring available, or do without it.
pub(crate) const IO_URING_HINT: &str = "The io_uring WAL backend needs Linux 5.6+. In a \
container, allow the io_uring_setup and io_uring_enter syscalls in the seccomp profile \
(e.g. docker --security-opt seccomp=unconfined) and check that \
/proc/sys/kernel/io_uring_disabled is 0; or use WalBackend::Auto (falls back to std::fs) \
or WalBackend::Std";

/// Resolves the requested backend at open: `Auto` becomes `IoUring` if a
/// probe ring can be set up, else `Std`. `unavailable_for_tests` makes
/// the probe fail as a blocked `io_uring_setup` would.
pub(crate) fn resolve_backend(
    requested: WalBackend,
    unavailable_for_tests: bool,
) -> Result<WalBackend> {
    if requested == WalBackend::Std {
        return Ok(WalBackend::Std);
    }
    let probe = if unavailable_for_tests {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring setup disabled by Options::io_uring_unavailable_for_tests",
        ))
    } else {
        probe_io_uring()
    };
    match (requested, probe) {
        (_, Ok(())) => Ok(WalBackend::IoUring),
        (WalBackend::IoUring, Err(source)) => Err(Error::IoUringUnavailable {
            source,
            hint: IO_URING_HINT,
        }),
        (_, Err(_)) => Ok(WalBackend::Std),
    }
}

#[cfg(target_os = "linux")]
fn probe_io_uring() -> io::Result<()> {
    crate::wal_uring::probe()
}

#[cfg(not(target_os = "linux"))]
fn probe_io_uring() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring exists only on Linux",
    ))
}

/// `file` behind the resolved `backend` (never `Auto`).
fn backend_file(file: File, backend: WalBackend) -> io::Result<Box<dyn LogFile>> {
    match backend {
        #[cfg(target_os = "linux")]
        WalBackend::IoUring => Ok(Box::new(crate::wal_uring::UringFile::new(file)?)),
        #[cfg(not(target_os = "linux"))]
        WalBackend::IoUring => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring exists only on Linux",
        )),
        _ => {
            assert_eq!(backend, WalBackend::Std, "backend resolved at open");
            Ok(Box::new(file))
        }
    }
}

/// The operations the engine needs on a file it writes sequentially (WAL,
/// tables, manifest): the seam where tests inject faults (ENOSPC, EIO)
/// into appends and fsyncs.
pub trait LogFile: Send + Sync + fmt::Debug {
    /// Appends all of `buf` at the end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

impl LogFile for File {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut f: &File = self;
        f.write_all(buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[derive(Debug, Default)]
struct SyncState {
    synced_bytes: u64,
    syncing: bool,
    failed: bool,
}

/// An open WAL file being appended to.
#[derive(Debug)]
pub(crate) struct Wal {
    path: PathBuf,
    file: Box<dyn LogFile>,
    /// The append lock; holds a reusable encode buffer.
    append: Mutex<Vec<u8>>,
    written_bytes: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// fsyncs issued, for the group-commit test.
    pub(crate) syncs: AtomicU64,
}

const LOCK: &str = "WAL lock poisoned only by a panic while holding it";

impl Wal {
    /// Creates (truncating) the WAL file at `path`, written through
    /// `backend` (resolved, never `Auto`) and wrapped by `wrap`.
    pub(crate) fn create(
        path: &Path,
        backend: WalBackend,
        wrap: &dyn Fn(Box<dyn LogFile>) -> Box<dyn LogFile>,
    ) -> Result<Wal> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let file = backend_file(file, backend).map_err(|e| Error::io(path, e))?;
        Ok(Wal {
            path: path.to_path_buf(),
            file: wrap(file),
            append: Mutex::new(Vec::new()),
            written_bytes: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            syncs: AtomicU64::new(0),
        })
    }

    /// The file path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record for `batch` (first sequence number `first_seq`)
    /// and returns the end offset of the record, to pass to `sync_to`.
    pub(crate) fn append(&self, first_seq: u64, batch: &WriteBatch) -> Result<u64> {
        let mut buf = self.append.lock().expect(LOCK);
        buf.clear();
        let mut payload = Vec::new();
        batch.encode(first_seq, &mut payload);
        assert!(
            payload.len() <= BATCH_BYTES_MAX,
            "batch validated before append"
        );
        record::encode(&payload, &mut buf);
        self.file
            .append(&buf)
            .map_err(|e| Error::io(&self.path, e))?;
        let end = self.written_bytes.load(Ordering::Acquire) + buf.len() as u64;
        self.written_bytes.store(end, Ordering::Release);
        // A big batch must not pin its buffer for the life of the WAL.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(end)
    }

    /// Returns once every byte up to `end_bytes` is durable, issuing at most
    /// one fsync and sharing it with concurrent callers.
    pub(crate) fn sync_to(&self, end_bytes: u64) -> Result<()> {
        let mut st = self.sync.lock().expect(LOCK);
        loop {
            if st.failed {
                return Err(Error::Poisoned);
            }
            if st.synced_bytes >= end_bytes {
                return Ok(());
            }
            if st.syncing {
                // A leader is syncing; it may cover us. Wait and re-check.
                st = self.synced.wait(st).expect(LOCK);
                continue;
            }
            st.syncing = true;
            // Everything appended so far is covered by the fsync below.
            let target = self.written_bytes.load(Ordering::Acquire);
            drop(st);
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let result = self.file.sync();
            st = self.sync.lock().expect(LOCK);
            st.syncing = false;
            match result {
                Ok(()) => st.synced_bytes = st.synced_bytes.max(target),
                Err(e) => {
                    st.failed = true;
                    self.synced.notify_all();
                    return Err(Error::io(&self.path, e));
                }
            }
            self.synced.notify_all();
        }
    }

    /// Syncs everything appended so far.
    pub(crate) fn sync_all(&self) -> Result<()> {
        self.sync_to(self.written_bytes.load(Ordering::Acquire))
    }

    /// Whether every byte appended so far is covered by a completed fsync.
    pub(crate) fn is_synced_whole(&self) -> bool {
        let written_bytes = self.written_bytes.load(Ordering::Acquire);
        self.sync.lock().expect(LOCK).synced_bytes >= written_bytes
    }
}

/// What [`replay`] does with a torn tail (an incomplete or zero-filled
/// final record, see `record::Tail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TornTail {
    /// Cut it off (truncate the file to its valid prefix): the tail of the
    /// WAL that was being appended to when the process stopped, a write
    /// that was never acknowledged as synced. Used for the newest WAL, and
    /// for every WAL in best-effort recovery.
    Truncate,
    /// Report it as [`Error::Corruption`] naming the file and the offset
    /// of the torn record: a WAL that was fsynced whole when the next one
    /// was started (`Inner::freeze`) cannot have one.
    Reject,
}

/// Why a torn tail in a WAL other than the newest is corruption, and what
/// the operator can do about it.
const TORN_OLDER_WAL: &str = "torn final record in a WAL that is not the newest: a WAL is \
fsynced whole before the next one is started, so only the newest may be torn, and replaying \
past lost bytes here would skip writes from the middle of the history. Open with \
WalRecovery::BestEffort to drop the torn record and replay the newer WALs";

/// Reads the WAL at `path` into its batches, in order.
///
/// A torn tail is handled as `torn` says. A bad record before the tail is
/// `Error::Corruption`, unless `best_effort`, which keeps the batches
/// before it and drops the rest (and truncates the file there with
/// [`TornTail::Truncate`]).
pub(crate) fn replay(
    path: &Path,
    best_effort: bool,
    torn: TornTail,
) -> Result<Vec<(u64, WriteBatch)>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (records, tail) = record::split(path, &data, BATCH_BYTES_MAX, best_effort)?;
    if let (Tail::Torn(offset), TornTail::Reject) = (tail, torn) {
        return Err(Error::corruption(path, offset, TORN_OLDER_WAL));
    }
    let mut out = Vec::with_capacity(records.len());
    for (offset, payload) in records {
        match WriteBatch::decode(path, offset, payload) {
            Ok(b) => out.push(b),
            Err(e) if !best_effort => return Err(e),
            Err(_) => break,
        }
    }
    if let Tail::Torn(valid_bytes) | Tail::Corrupt(valid_bytes) = tail {
        if torn == TornTail::Truncate {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            f.set_len(valid_bytes).map_err(|e| Error::io(path, e))?;
            f.sync_all().map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batch(n: u8) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(vec![n], vec![n; 10]);
        b
    }

    /// Both backends, so every test below runs on each. io_uring must be
    /// available where the tests run (it is the backend in production).
    const BACKENDS: [WalBackend; 2] = [WalBackend::Std, WalBackend::IoUring];

    #[test]
    fn append_replay_and_torn_tail() {
        for backend in BACKENDS {
            append_replay_and_torn_tail_with(backend);
        }
    }

    fn append_replay_and_torn_tail_with(backend: WalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.wal");
        let wal = Wal::create(&path, backend, &|f| f).unwrap();
        let mut end = 0;
        for n in 0..5 {
            end = wal.append(u64::from(n) * 10, &batch(n)).unwrap();
        }
        wal.sync_to(end).unwrap();
        drop(wal);
        let got = replay(&path, false, TornTail::Truncate).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[3], (30, batch(3)));
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        assert_eq!(replay(&path, false, TornTail::Truncate).unwrap().len(), 4);
        assert!(std::fs::metadata(&path).unwrap().len() < len - 3);
    }

    /// A torn tail in a WAL that is not the newest is corruption at the
    /// torn record (see `TornTail::Reject`), and the file is left as found.
    #[test]
    fn rejected_torn_tail_is_corruption_at_the_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.wal");
        let wal = Wal::create(&path, WalBackend::Std, &|f| f).unwrap();
        let mut ends = Vec::new();
        for n in 0..3 {
            ends.push(wal.append(u64::from(n) * 10, &batch(n)).unwrap());
        }
        wal.sync_all().unwrap();
        drop(wal);
        let torn_len = ends[2] - 3;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(torn_len).unwrap();
        match replay(&path, false, TornTail::Reject).unwrap_err() {
            Error::Corruption { file, offset, .. } => {
                assert_eq!((file, offset), (path.clone(), ends[1]));
            }
            other => panic!("expected corruption, got {other}"),
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), torn_len);
    }

    #[test]
    fn concurrent_synced_writers_share_fsyncs() {
        for backend in BACKENDS {
            concurrent_synced_writers_share_fsyncs_with(backend);
        }
    }

    fn concurrent_synced_writers_share_fsyncs_with(backend: WalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::create(&dir.path().join("1.wal"), backend, &|f| f).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        let end = wal.append(0, &batch(t * 25 + i)).unwrap();
                        wal.sync_to(end).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let syncs = wal.syncs.load(Ordering::Relaxed);
        assert!(
            syncs <= 200,
            "{backend:?}: {syncs} fsyncs for 200 synced appends"
        );
        // Every append completed before its fsync: the WAL is whole.
        assert_eq!(
            replay(wal.path(), false, TornTail::Reject).unwrap().len(),
            200
        );
    }

    #[test]
    fn auto_falls_back_and_forced_io_uring_fails_with_a_hint() {
        assert_eq!(
            resolve_backend(WalBackend::Auto, true).unwrap(),
            WalBackend::Std
        );
        assert_eq!(
            resolve_backend(WalBackend::Std, true).unwrap(),
            WalBackend::Std
        );
        let err = resolve_backend(WalBackend::IoUring, true).unwrap_err();
        assert!(matches!(err, Error::IoUringUnavailable { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("seccomp") && msg.contains("WalBackend::Std"),
            "{msg}"
        );
        // Where io_uring works (where the tests run), Auto picks it.
        assert_eq!(
            resolve_backend(WalBackend::Auto, false).unwrap(),
            WalBackend::IoUring
        );
    }
}
