//! The database: WAL + memtable + immutable memtables + leveled tables.
//!
//! Writes take one mutex (sequence numbers, WAL append, memtable insert,
//! publication of the visible sequence number), then synced writers leave
//! it and share fsyncs (group commit, see [`crate::wal`]). A write is
//! therefore visible to readers before its fsync; [`Db::write`] says
//! exactly when it is visible and when durable. Publishing a synced write
//! only after its fsync would hold back every later write as well, unsynced
//! ones included (seeing a write means seeing every write before it), so a
//! writer could no longer read its own unsynced write at once; publishing
//! under the writer lock keeps that simple, and one fsync still covers
//! many synced writers.
//!
//! A write that finds the memtable full first freezes it for the
//! background flush worker ([`crate::flush`]); the compaction worker
//! ([`crate::compaction`]) merges tables down the levels. Reads take a
//! read lock only to look at the memtables and clone the level list.
//!
//! The shared state and its lock order are in [`crate::inner`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use crate::batch::WriteBatch;
use crate::compaction;
use crate::dir_lock::DirLock;
use crate::error::{Error, Result};
use crate::flush;
use crate::inner::{Inner, KeyRange, LOCK};
pub use crate::iter::Scan;
pub use crate::options::{Options, WalBackend, WalRecovery};
use crate::range::{prefix_range, KeyBounds};
pub use crate::stats::{LevelStats, Stats, TableInfo};

/// Options of one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// fsync the WAL before returning (default false: the write survives a
    /// process crash, but a power loss only once a later fsync covers it;
    /// see [`Db::write`]).
    pub sync: bool,
}

/// An open database. `Send + Sync`: share it behind an `Arc`.
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    pub(crate) worker: Mutex<Option<JoinHandle<()>>>,
    pub(crate) compactor: Mutex<Option<JoinHandle<()>>>,
    /// Serializes `compact_range` callers (one manual request at a time).
    pub(crate) manual: Mutex<()>,
    /// Held until `close` (or drop) has stopped the worker and synced the
    /// WALs; only then may another `Db` open the directory.
    pub(crate) dir_lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
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
    /// background flush (fsyncing its WAL whole and starting a new one),
    /// and waits while `immutables_max` frozen memtables are already
    /// waiting (backpressure, see [`Db::write_stalls`]).
    ///
    /// # When a write is visible, and when it is durable
    ///
    /// Writes are ordered by sequence number: the order in which `write`
    /// calls take the writer lock, which is also the order of their WAL
    /// records. Under that lock a write is appended to the WAL (handed to
    /// the kernel), inserted in the memtable and published, in that order;
    /// a synced write then leaves the lock and waits for its fsync.
    /// - **Visible**: as soon as it is in the memtable and published, every
    ///   `get`, `scan` or `snapshot` that starts afterwards, on any thread,
    ///   sees it (and every write before it). That is before `write`
    ///   returns and, for a synced write, *before its fsync has completed*.
    /// - **Durable against a process crash** (kill -9, abort): once it is
    ///   visible, since its WAL append came first.
    /// - **Durable against a machine crash** (power loss, kernel panic):
    ///   once an fsync covers it. A synced write (`options.sync`) returns
    ///   `Ok` only after its own fsync. An unsynced write is covered by
    ///   the fsync of any later synced write (an fsync covers its WAL up
    ///   to where it started), of the next memtable switch (which fsyncs
    ///   the old WAL whole before the new one gets a byte), of
    ///   [`Db::flush`] or of [`Db::close`].
    ///
    /// So a crash can lose a write that a reader saw only if that write
    /// was not acknowledged as synced: a reader may see a synced write
    /// whose fsync is still running, and a power loss at that moment loses
    /// it, but then its `write` never returned `Ok`. Every write
    /// acknowledged as synced survives kill -9 and power loss. After any
    /// crash, recovery holds a prefix of the write order: every write up to
    /// some sequence number, each batch whole, and at least every write
    /// acknowledged as synced with everything before it (with
    /// [`WalRecovery::Strict`] and the disk assumptions of
    /// `docs/storage-format.md`; damage beyond those is
    /// [`Error::Corruption`], never a gap). A reader that must act only on
    /// durable data (before telling a peer, say) should learn of it from
    /// its writer after the synced `write` returned, or make a non-empty
    /// synced write of its own, whose fsync covers everything visible
    /// before it.
    ///
    /// If the fsync fails, `write` returns the error and the engine is
    /// poisoned ([`Error::Poisoned`] until reopened); readers may already
    /// have seen the write, and whether a reopen recovers it is unknown.
    pub fn write(&self, batch: WriteBatch, options: WriteOptions) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let user_bytes: usize = batch
            .ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut w = inner.lock_writer()?;
        let (mem_bytes, l0_files) = {
            let st = inner.read_state();
            (st.mem.bytes(), st.tables[0].len())
        };
        if l0_files >= inner.options.effective_l0_slowdown_writes() {
            inner.slow_down(&mut w, user_bytes);
        }
        if mem_bytes >= inner.options.memtable_bytes {
            inner.freeze(&mut w)?;
        }
        let first_seq = w.next_seq;
        let count = batch.len() as u64;
        let end = inner.poison(w.wal.append(first_seq, &batch))?;
        {
            let mut st = inner.write_state();
            for (i, (key, value)) in batch.ops.into_iter().enumerate() {
                st.mem.insert(key, first_seq + i as u64, value);
            }
        }
        w.next_seq += count;
        inner
            .counters
            .user_bytes
            .fetch_add(user_bytes as u64, Ordering::Relaxed);
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

    /// Writes `entries` — keys strictly ascending, each put once — straight
    /// into sorted tables, with no WAL and no memtable, and installs them
    /// in one manifest edit: a bulk load at table-writing speed. The run
    /// gets one new sequence number (it shadows older versions of its
    /// keys) and goes to the deepest level none of whose tables, nor any
    /// shallower level's, overlap its key range. Durable on return. Writes
    /// wait while it runs. Rules and reasons: the `ingest` module docs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for keys out of order, an empty or
    /// oversized key or an oversized value (nothing is installed then);
    /// I/O failures; [`Error::Closed`] or [`Error::Poisoned`].
    ///
    /// # Example
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    /// let run = (0u32..1000).map(|i| (i.to_be_bytes(), b"v"));
    /// let stats = db.ingest_sorted(run).unwrap();
    /// assert_eq!(stats.entries, 1000);
    /// assert_eq!(db.get(&7u32.to_be_bytes()).unwrap().as_deref(), Some(&b"v"[..]));
    /// ```
    pub fn ingest_sorted<K, V>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<crate::IngestStats>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.inner.ingest_sorted(entries)
    }

    /// Returns once everything written before the call is in tables: the
    /// memtable is frozen and the call waits for the background worker.
    pub fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        let id = {
            let mut w = inner.lock_writer()?;
            if inner.read_state().mem.is_empty() {
                // Nothing new: wait for what is already frozen.
                inner.lock_bg().frozen
            } else {
                inner.freeze(&mut w)?
            }
        };
        inner.wait_flushed(id)
    }

    /// Writes that had to wait for the background workers since open
    /// (backpressure: `immutables_max` frozen memtables were pending, or
    /// L0 had `l0_stop_writes` tables).
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
        inner.get_at(key, None)
    }

    /// Key/value pairs with keys in `range`, in ascending key order, as of
    /// the call (a consistent view: later writes are not seen).
    ///
    /// `range` is any standard range of byte-string keys ([`KeyBounds`]):
    /// `..`, `b"a".as_slice()..`, `b"a".to_vec()..b"c".to_vec()`,
    /// `..=b"k"`, `(Bound::Excluded(k), Bound::Unbounded)`, ...
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// for k in ["a", "b", "c", "d"] {
    ///     db.put(k.as_bytes(), b"v").unwrap();
    /// }
    /// let keys = |scan: strata_storage::Scan| -> Vec<Vec<u8>> {
    ///     scan.map(|kv| kv.unwrap().0).collect()
    /// };
    /// assert_eq!(keys(db.scan(..).unwrap()).len(), 4);
    /// assert_eq!(keys(db.scan(b"c".as_slice()..).unwrap()), [b"c", b"d"]);
    /// assert_eq!(keys(db.scan(b"a".to_vec()..b"c".to_vec()).unwrap()), [b"a", b"b"]);
    /// assert_eq!(keys(db.scan("b"..="c").unwrap()), [b"b", b"c"]);
    /// ```
    pub fn scan(&self, range: impl KeyBounds) -> Result<Scan> {
        self.inner
            .scan_at(range.start_key(), range.end_key(), None, false)
    }

    /// As [`Db::scan`], in descending key order: the last key in `range`
    /// first. Reads the same tables one decoded block at a time, back to
    /// front.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// for k in ["a", "b", "c", "d"] {
    ///     db.put(k.as_bytes(), b"v").unwrap();
    /// }
    /// db.flush().unwrap();
    /// db.delete(b"c").unwrap();
    /// let keys: Vec<_> = db.scan_rev(..).unwrap().map(|kv| kv.unwrap().0).collect();
    /// assert_eq!(keys, [b"d", b"b", b"a"]);
    /// // The last key before "c":
    /// let (k, _) = db.scan_rev(.."c").unwrap().next().unwrap().unwrap();
    /// assert_eq!(k, b"b");
    /// ```
    pub fn scan_rev(&self, range: impl KeyBounds) -> Result<Scan> {
        self.inner
            .scan_at(range.start_key(), range.end_key(), None, true)
    }

    /// Key/value pairs whose keys start with `prefix`, ascending (see
    /// [`crate::prefix_range`]; the empty prefix scans everything). For
    /// descending order: `db.scan_rev(prefix_range(prefix))`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"user/1", b"ann").unwrap();
    /// db.put(b"user/2", b"bob").unwrap();
    /// db.put(b"users", b"not a user").unwrap();
    /// let users: Vec<_> = db.scan_prefix(b"user/").unwrap().map(|kv| kv.unwrap().1).collect();
    /// assert_eq!(users, [b"ann", b"bob"]);
    /// let rev = db.scan_rev(strata_storage::prefix_range(b"user/")).unwrap();
    /// assert_eq!(rev.map(|kv| kv.unwrap().1).collect::<Vec<_>>(), [b"bob", b"ann"]);
    /// ```
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Scan> {
        self.scan(prefix_range(prefix))
    }

    /// A consistent read view at the current sequence number. While it
    /// lives, compaction keeps every version it can read.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::register(&self.inner, None)
    }

    /// Merges every table overlapping `range` down to the deepest level
    /// that holds data (at least L1), then rewrites that level's tables in
    /// the range, dropping versions no live snapshot can read and
    /// tombstones with nothing beneath them. Flushes the memtable first;
    /// returns when done. Runs on the compaction worker, between its own
    /// compactions. `range` takes the forms of [`Db::scan`].
    pub fn compact_range(&self, range: impl KeyBounds) -> Result<()> {
        let range = KeyRange {
            start: range.start_key().map(<[u8]>::to_vec),
            end: range.end_key().map(<[u8]>::to_vec),
        };
        self.flush()?;
        let _one = self.manual.lock().expect(LOCK);
        compaction::request_manual(&self.inner, range)
    }

    /// [`Db::compact_range`] over all keys.
    pub fn compact_all(&self) -> Result<()> {
        self.compact_range(..)
    }

    /// Flushes the memtable, then waits until background compaction has
    /// nothing left to do (no level over its target, L0 under its
    /// trigger). For benchmarks and tools that want a settled tree (what
    /// RocksDB calls `WaitForCompact`); writers running meanwhile can make
    /// it wait longer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"k", b"v").unwrap();
    /// db.wait_for_compaction().unwrap();
    /// assert!(db.stats().levels[0].files <= 1);
    /// ```
    pub fn wait_for_compaction(&self) -> Result<()> {
        self.flush()?;
        compaction::wait_idle(&self.inner)
    }

    /// Every live table, level by level (L0 newest first, deeper levels
    /// in key order).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"k", b"v").unwrap();
    /// db.flush().unwrap();
    /// let tables = db.tables();
    /// assert_eq!(tables.len(), 1);
    /// assert_eq!((tables[0].smallest.as_slice(), tables[0].entries), (&b"k"[..], 1));
    /// ```
    pub fn tables(&self) -> Vec<TableInfo> {
        let tables = Arc::clone(&self.inner.read_state().tables);
        tables
            .iter()
            .enumerate()
            .flat_map(|(level, l)| {
                l.iter().map(move |t| TableInfo {
                    level,
                    number: t.number(),
                    smallest: t.smallest().to_vec(),
                    largest: t.largest().to_vec(),
                    bytes: t.size_bytes(),
                    entries: t.entries(),
                    deletions: t.deletions(),
                })
            })
            .collect()
    }

    /// Level shapes and write counters since open.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let tables = Arc::clone(&inner.read_state().tables);
        let c = &inner.counters;
        Stats::new(
            tables
                .iter()
                .map(|l| LevelStats {
                    files: l.len(),
                    bytes: l.iter().map(|t| t.size_bytes()).sum(),
                    entries: l.iter().map(|t| t.entries()).sum(),
                    deletions: l.iter().map(|t| t.deletions()).sum(),
                })
                .collect(),
            c,
            inner.stalls.load(Ordering::Relaxed),
            inner.block_cache.as_deref(),
        )
    }

    /// Lets the flush worker write the frozen memtables, stops it, syncs
    /// the WALs, releases the directory lock and refuses further use. Dropping a `Db` does the same,
    /// ignoring errors. Writes still in the active memtable stay in its
    /// WAL and are recovered by the next open.
    pub fn close(&self) -> Result<()> {
        let inner = &*self.inner;
        let w = inner.lock_writer_even_closed();
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        flush::stop(inner, self.worker.lock().expect(LOCK).take());
        compaction::stop(inner, self.compactor.lock().expect(LOCK).take());
        let mut synced = w.wal.sync_all();
        // Frozen memtables left by a failed worker live only in their WALs.
        for imm in &inner.read_state().imm {
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

/// A read view of a [`Db`] at one sequence number: later writes are
/// invisible to it. Registered with the engine while it lives, so
/// compaction keeps the versions it reads: a long-lived snapshot holds
/// back space reclamation. Reads after the `Db` is closed return
/// [`Error::Closed`].
pub struct Snapshot {
    inner: Arc<Inner>,
    seq: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot::register(&self.inner, Some(self.seq))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Never panics: a drop during unwinding would abort the process.
        let mut snaps = self.inner.lock_snapshots_after_panic();
        if let Some(n) = snaps.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                snaps.remove(&self.seq);
            }
        }
    }
}

impl Snapshot {
    /// Registers a snapshot at `seq` (at most the visible sequence number;
    /// `None`: at it).
    pub(crate) fn register(inner: &Arc<Inner>, seq: Option<u64>) -> Snapshot {
        let mut snaps = inner.lock_snapshots();
        let visible = inner.visible_seq.load(Ordering::Acquire);
        let seq = seq.map_or(visible, |s| s.min(visible));
        *snaps.entry(seq).or_insert(0) += 1;
        Snapshot {
            inner: Arc::clone(inner),
            seq,
        }
    }

    /// The sequence number this view reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The value of `key` as of the snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_at(key, Some(self.seq))
    }

    /// Pairs with keys in `range` as of the snapshot, ascending (see
    /// [`Db::scan`] for the range forms).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"a", b"1").unwrap();
    /// let snap = db.snapshot();
    /// db.put(b"b", b"2").unwrap();
    /// assert_eq!(snap.scan(..).unwrap().count(), 1);
    /// assert_eq!(db.scan(..).unwrap().count(), 2);
    /// ```
    pub fn scan(&self, range: impl KeyBounds) -> Result<Scan> {
        self.inner
            .scan_at(range.start_key(), range.end_key(), Some(self.seq), false)
    }

    /// Pairs with keys in `range` as of the snapshot, descending (see
    /// [`Db::scan_rev`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"a", b"1").unwrap();
    /// db.put(b"b", b"1").unwrap();
    /// let snap = db.snapshot();
    /// db.put(b"b", b"2").unwrap();
    /// db.put(b"c", b"2").unwrap();
    /// let rev: Vec<_> = snap.scan_rev(..).unwrap().map(|kv| kv.unwrap()).collect();
    /// assert_eq!(rev, [(b"b".to_vec(), b"1".to_vec()), (b"a".to_vec(), b"1".to_vec())]);
    /// ```
    pub fn scan_rev(&self, range: impl KeyBounds) -> Result<Scan> {
        self.inner
            .scan_at(range.start_key(), range.end_key(), Some(self.seq), true)
    }

    /// Pairs whose keys start with `prefix` as of the snapshot, ascending
    /// (see [`Db::scan_prefix`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = strata_storage::Db::open(dir.path(), strata_storage::Options::new()).unwrap();
    /// db.put(b"tx/1", b"").unwrap();
    /// let snap = db.snapshot();
    /// db.put(b"tx/2", b"").unwrap();
    /// assert_eq!(snap.scan_prefix(b"tx/").unwrap().count(), 1);
    /// ```
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Scan> {
        self.scan(prefix_range(prefix))
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
