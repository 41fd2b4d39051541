//! The database: WAL + memtable + immutable memtables + L0 tables.
//!
//! Writes take one mutex (sequence numbers, WAL append, memtable insert,
//! publication of the visible sequence number), then synced writers leave
//! it and share fsyncs (group commit, see [`crate::wal`]). A write that
//! finds the memtable full first freezes it for the background worker
//! ([`crate::flush`]). Reads take a read lock only to look at the
//! memtables and clone the table list.
//!
//! Lock order: `writer` → `versions`; `writer` → `bg` → `state`. The
//! worker takes `versions` alone and `bg` → `state`, never `writer`, so a
//! writer waiting for room (holding `writer`) cannot block it.

use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

pub use crate::batch::WriteBatch;
use crate::dir_lock::DirLock;
use crate::error::{Error, Result};
use crate::flush::{self, FlushState, Immutable};
pub use crate::iter::Scan;
use crate::iter::Source;
use crate::manifest::Manifest;
use crate::memtable::Memtable;
pub use crate::options::{FileKind, FileWrapper, LogFileWrapper, Options, WalBackend, WalRecovery};
use crate::table::reader::Table;
use crate::version::Version;
use crate::wal::{LogFile, Wal};

/// Options of one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// fsync the WAL before returning (default false: the write survives a
    /// process crash but not a power loss).
    pub sync: bool,
}

pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

pub(crate) fn wal_name(number: u64) -> String {
    format!("{number:06}.wal")
}

/// What only the writer (holding `Inner::writer`) changes.
pub(crate) struct Writer {
    /// The WAL of the active memtable.
    pub(crate) wal: Arc<Wal>,
    pub(crate) next_seq: u64,
}

/// The live manifest and the version it describes.
pub(crate) struct VersionSet {
    pub(crate) manifest: Manifest,
    pub(crate) version: Version,
}

impl VersionSet {
    /// Allocates a file number. The counter reaches the manifest with the
    /// next edit; a file numbered past it that a crash leaves behind is
    /// found by the next open, which numbers new files after it.
    pub(crate) fn new_file_number(&mut self) -> u64 {
        let n = self.version.next_file_number;
        self.version.next_file_number += 1;
        n
    }
}

/// What readers see: every place a write can be, newest first.
pub(crate) struct State {
    pub(crate) mem: Memtable,
    /// Frozen memtables waiting for the flush worker, newest first.
    pub(crate) imm: Vec<Arc<Immutable>>,
    /// Newest first.
    pub(crate) tables: Arc<Vec<Arc<Table>>>,
}

/// The engine, shared by the `Db` handle and the flush worker.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    /// The WAL backend resolved at open (never `Auto`).
    pub(crate) wal_backend: WalBackend,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) versions: Mutex<VersionSet>,
    pub(crate) state: RwLock<State>,
    pub(crate) bg: Mutex<FlushState>,
    /// Wakes the worker: a memtable was frozen, or `close` was called.
    pub(crate) work: Condvar,
    /// Wakes writers waiting for room and `flush` callers: a memtable
    /// reached a table, or the worker failed.
    pub(crate) done: Condvar,
    pub(crate) visible_seq: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Writes that waited for the flush worker (backpressure).
    pub(crate) stalls: AtomicU64,
}

/// An open database. `Send + Sync`: share it behind an `Arc`.
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    pub(crate) worker: Mutex<Option<JoinHandle<()>>>,
    /// Held until `close` (or drop) has stopped the worker and synced the
    /// WALs; only then may another `Db` open the directory.
    pub(crate) dir_lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

pub(crate) const LOCK: &str = "Db locks are poisoned only by a panic while held";

impl Inner {
    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        if let Some(e) = self.background_error() {
            return Err(e);
        }
        Ok(())
    }

    /// Marks the engine poisoned if `r` is a failure of a foreground write.
    pub(crate) fn poison<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        r
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.lock().expect(LOCK);
        self.check_writable()?;
        Ok(w)
    }

    fn get_at(&self, key: &[u8], seq: u64) -> Result<Option<Vec<u8>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let tables = {
            let st = self.state.read().expect(LOCK);
            if let Some(v) = st.mem.get(key, seq) {
                return Ok(v);
            }
            for imm in &st.imm {
                if let Some(v) = imm.mem.get(key, seq) {
                    return Ok(v);
                }
            }
            Arc::clone(&st.tables)
        };
        for t in tables.iter() {
            if let Some(v) = t.get(key, seq)? {
                return Ok(v);
            }
        }
        Ok(None)
    }

    fn scan_at(&self, range: impl RangeBounds<Vec<u8>>, seq: u64) -> Result<Scan> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let start = range.start_bound().map(|k| k.as_slice());
        let end = range.end_bound().map(|k| k.as_slice());
        let mut sources: Vec<Source> = Vec::new();
        let tables = {
            let st = self.state.read().expect(LOCK);
            for mem in std::iter::once(&st.mem).chain(st.imm.iter().map(|imm| &imm.mem)) {
                sources.push(Box::new(mem.entries_from(start, end).into_iter().map(Ok)));
            }
            Arc::clone(&st.tables)
        };
        for t in tables.iter() {
            sources.push(Box::new(t.iter_from(start)));
        }
        Ok(Scan::new(sources, seq, end.map(<[u8]>::to_vec)))
    }
}

impl Db {
    /// Stores `value` under `key` (not synced).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b, WriteOptions::default())
    }

    /// Deletes `key` (not synced).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b, WriteOptions::default())
    }

    /// Applies `batch` atomically: readers and recovery see all of it or
    /// none of it. With `options.sync`, returns only once it is durable.
    ///
    /// If the memtable is full, the write first freezes it for the
    /// background flush, and waits while `immutables_max` frozen memtables
    /// are already waiting (backpressure, see [`Db::write_stalls`]).
    pub fn write(&self, batch: WriteBatch, options: WriteOptions) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut w = inner.lock_writer()?;
        let mem_bytes = inner.state.read().expect(LOCK).mem.bytes();
        if mem_bytes >= inner.options.memtable_bytes {
            inner.freeze(&mut w)?;
        }
        let first_seq = w.next_seq;
        let count = batch.len() as u64;
        let end = inner.poison(w.wal.append(first_seq, &batch))?;
        {
            let mut st = inner.state.write().expect(LOCK);
            for (i, (key, value)) in batch.ops.into_iter().enumerate() {
                st.mem.insert(key, first_seq + i as u64, value);
            }
        }
        w.next_seq += count;
        inner
            .visible_seq
            .store(first_seq + count - 1, Ordering::Release);
        let wal = Arc::clone(&w.wal);
        drop(w);
        if options.sync {
            // The WAL may have been frozen meanwhile; `wal` is still the
            // file this record went to.
            inner.poison(wal.sync_to(end))?;
        }
        Ok(())
    }

    /// Returns once everything written before the call is in tables: the
    /// memtable is frozen and the call waits for the background worker.
    pub fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        let id = {
            let mut w = inner.lock_writer()?;
            if inner.state.read().expect(LOCK).mem.is_empty() {
                // Nothing new: wait for what is already frozen.
                inner.lock_bg().frozen
            } else {
                inner.freeze(&mut w)?
            }
        };
        inner.wait_flushed(id)
    }

    /// Writes that had to wait for the background flush since open
    /// (backpressure: `immutables_max` frozen memtables were pending).
    pub fn write_stalls(&self) -> u64 {
        self.inner.stalls.load(Ordering::Relaxed)
    }

    /// The WAL backend in use, chosen at open: [`WalBackend::IoUring`] or
    /// [`WalBackend::Std`], never `Auto` (see [`crate::wal`]).
    pub fn wal_backend(&self) -> WalBackend {
        self.inner.wal_backend
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = &*self.inner;
        inner.get_at(key, inner.visible_seq.load(Ordering::Acquire))
    }

    /// Key/value pairs with keys in `range`, ascending.
    pub fn scan(&self, range: impl RangeBounds<Vec<u8>>) -> Result<Scan> {
        let inner = &*self.inner;
        inner.scan_at(range, inner.visible_seq.load(Ordering::Acquire))
    }

    /// A consistent read view at the current sequence number.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            db: self,
            seq: self.inner.visible_seq.load(Ordering::Acquire),
        }
    }

    /// A read view at an earlier `seq` of this open `Db` (for tests that
    /// cannot hold a borrowing [`Snapshot`] across a reassignment).
    #[doc(hidden)]
    pub fn snapshot_at_for_tests(&self, seq: u64) -> Snapshot<'_> {
        Snapshot {
            db: self,
            seq: seq.min(self.inner.visible_seq.load(Ordering::Acquire)),
        }
    }

    /// Lets the flush worker write the frozen memtables, stops it, syncs
    /// the WALs, releases the directory lock and refuses further use. Dropping a `Db` does the same,
    /// ignoring errors. Writes still in the active memtable stay in its
    /// WAL and are recovered by the next open.
    pub fn close(&self) -> Result<()> {
        let inner = &*self.inner;
        let w = inner.writer.lock().expect(LOCK);
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        flush::stop(inner, self.worker.lock().expect(LOCK).take());
        let mut synced = w.wal.sync_all();
        // Frozen memtables left by a failed worker live only in their WALs.
        for imm in &inner.state.read().expect(LOCK).imm {
            synced = synced.and(imm.wal.sync_all());
        }
        // Nothing of this `Db` writes to the directory any more.
        drop(self.dir_lock.lock().expect(LOCK).take());
        if inner.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        if let Some(e) = inner.background_error() {
            return Err(e);
        }
        synced
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Applies the WAL wrapper of `options` (the fault-injection seam).
pub(crate) fn wrapper(options: &Options) -> impl Fn(Box<dyn LogFile>) -> Box<dyn LogFile> + '_ {
    move |f| match &options.wal_wrapper {
        Some(w) => w(f),
        None => f,
    }
}

/// A read view of a [`Db`] at one sequence number: later writes are
/// invisible to it. Cheap; holds no files open beyond the `Db`'s.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    db: &'a Db,
    seq: u64,
}

impl Snapshot<'_> {
    /// The sequence number this view reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The value of `key` as of the snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.inner.get_at(key, self.seq)
    }

    /// Pairs with keys in `range` as of the snapshot, ascending.
    pub fn scan(&self, range: impl RangeBounds<Vec<u8>>) -> Result<Scan> {
        self.db.inner.scan_at(range, self.seq)
    }
}

impl crate::merkle::NodeStore for Db {
    type Error = Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Db::get(self, key)
    }

    /// One synced `Db` write batch: deletes first, then puts.
    fn write_batch(&self, puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>>) -> Result<()> {
        let mut b = WriteBatch::new();
        for k in deletes {
            b.delete(k);
        }
        for (k, v) in puts {
            b.put(k, v);
        }
        self.write(b, WriteOptions { sync: true })
    }
}
