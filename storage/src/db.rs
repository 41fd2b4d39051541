//! The database: WAL + memtable + L0 tables, recovered at open.
//!
//! Writes take one mutex (sequence numbers, WAL append, memtable insert,
//! publication of the visible sequence number), then synced writers leave
//! it and share fsyncs (group commit, see [`crate::wal`]). Reads take a
//! read lock only to look at the memtable and clone the table list.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use crate::batch::WriteBatch;
use crate::error::{Error, Result};
pub use crate::iter::Scan;
use crate::iter::Source;
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
pub use crate::options::{Options, WalRecovery};
use crate::table::builder::TableBuilder;
use crate::table::reader::Table;
use crate::version::{EditOp, TableMeta, Version, VersionEdit};
use crate::wal::{self, LogFile, Wal};

/// Options of one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// fsync the WAL before returning (default false: the write survives a
    /// process crash but not a power loss).
    pub sync: bool,
}

fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

fn wal_name(number: u64) -> String {
    format!("{number:06}.wal")
}

struct Writer {
    wal: Arc<Wal>,
    manifest: Manifest,
    version: Version,
    next_seq: u64,
}

struct State {
    mem: Memtable,
    /// Newest first.
    tables: Arc<Vec<Arc<Table>>>,
}

/// An open database. `Send + Sync`: share it behind an `Arc`.
pub struct Db {
    dir: PathBuf,
    options: Options,
    writer: Mutex<Writer>,
    state: RwLock<State>,
    visible_seq: AtomicU64,
    poisoned: AtomicBool,
    closed: AtomicBool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.dir).finish()
    }
}

const LOCK: &str = "Db locks are poisoned only by a panic while held";

fn write_table(
    dir: &Path,
    number: u64,
    mem: &Memtable,
    zstd: Option<i32>,
) -> Result<(Arc<Table>, TableMeta)> {
    let path = dir.join(table_name(number));
    let mut b = TableBuilder::create(&path, zstd)?;
    for (key, seq, value) in mem.iter() {
        b.add(key, seq, value)?;
    }
    let info = b.finish()?;
    manifest::sync_dir(dir)?;
    let meta = TableMeta {
        number,
        size_bytes: info.size_bytes,
        max_seq: info.max_seq,
    };
    Ok((Arc::new(Table::open(&path, number)?), meta))
}

impl Db {
    /// Opens (or creates) the database in directory `path`, replaying its
    /// WAL: a torn final record is dropped, other damage is
    /// [`Error::Corruption`] unless [`WalRecovery::BestEffort`].
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = path.as_ref().to_path_buf();
        if options.create_if_missing {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let (mut version, old_manifest) = match manifest::load(&dir)? {
            Some((v, n)) => (v, Some(n)),
            None => (Version::default(), None),
        };
        let mut tables = Vec::new();
        for meta in version.levels.iter().flatten() {
            tables.push(Arc::new(Table::open(
                &dir.join(table_name(meta.number)),
                meta.number,
            )?));
        }
        let mut wals: Vec<u64> = Vec::new();
        let mut ssts: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let name = entry.map_err(|e| Error::io(&dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
                wals.push(n);
            } else if let Some(n) = name.strip_suffix(".sst").and_then(|n| n.parse().ok()) {
                ssts.push(n);
            }
        }
        wals.sort_unstable();
        let best_effort = options.wal_recovery == WalRecovery::BestEffort;
        let mut mem = Memtable::new();
        let mut last_seq = version.last_seq;
        for &n in wals.iter().filter(|&&n| n >= version.log_number) {
            for (first_seq, batch) in wal::replay(&dir.join(wal_name(n)), best_effort, true)? {
                for (i, (key, value)) in batch.ops.into_iter().enumerate() {
                    let seq = first_seq + i as u64;
                    mem.insert(key, seq, value);
                    last_seq = last_seq.max(seq);
                }
            }
        }
        // Recovered writes go straight to an L0 table, so the engine always
        // starts with an empty memtable and a fresh WAL.
        if !mem.is_empty() {
            let number = version.next_file_number;
            version.next_file_number += 1;
            let (t, meta) = write_table(&dir, number, &mem, options.zstd_level)?;
            let op = EditOp::AddTable {
                level: 0,
                table: meta,
            };
            version.apply(&dir, 0, &VersionEdit { ops: vec![op] })?;
            tables.insert(0, t);
        }
        version.last_seq = last_seq;
        let wal_number = version.next_file_number;
        let manifest_number = wal_number + 1;
        version.next_file_number += 2;
        version.log_number = wal_number;
        let wal = Wal::create(&dir.join(wal_name(wal_number)), &wrapper(&options))?;
        let manifest = Manifest::create(&dir, manifest_number, &version)?;
        // Files no longer referenced: replayed WALs, the old manifest,
        // tables left by a flush that crashed before its manifest edit.
        for n in wals.into_iter().filter(|&n| n < wal_number) {
            let _ = std::fs::remove_file(dir.join(wal_name(n)));
        }
        if let Some(n) = old_manifest {
            let _ = std::fs::remove_file(dir.join(manifest::manifest_name(n)));
        }
        for n in ssts {
            if !version.levels.iter().flatten().any(|t| t.number == n) {
                let _ = std::fs::remove_file(dir.join(table_name(n)));
            }
        }
        Ok(Db {
            dir,
            options,
            writer: Mutex::new(Writer {
                wal: Arc::new(wal),
                manifest,
                version,
                next_seq: last_seq + 1,
            }),
            state: RwLock::new(State {
                mem: Memtable::new(),
                tables: Arc::new(tables),
            }),
            visible_seq: AtomicU64::new(last_seq),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn poison<T>(&self, r: Result<T>) -> Result<T> {
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
    pub fn write(&self, batch: WriteBatch, options: WriteOptions) -> Result<()> {
        self.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut w = self.lock_writer()?;
        let first_seq = w.next_seq;
        let count = batch.len() as u64;
        let end = self.poison(w.wal.append(first_seq, &batch))?;
        let mem_bytes = {
            let mut st = self.state.write().expect(LOCK);
            for (i, (key, value)) in batch.ops.into_iter().enumerate() {
                st.mem.insert(key, first_seq + i as u64, value);
            }
            st.mem.bytes()
        };
        w.next_seq += count;
        self.visible_seq
            .store(first_seq + count - 1, Ordering::Release);
        let wal = Arc::clone(&w.wal);
        if mem_bytes >= self.options.memtable_bytes {
            let r = self.flush_locked(&mut w);
            self.poison(r)?;
        }
        drop(w);
        if options.sync {
            self.poison(wal.sync_to(end))?;
        }
        Ok(())
    }

    /// Writes the memtable to a new L0 table and starts a new WAL.
    pub fn flush(&self) -> Result<()> {
        let mut w = self.lock_writer()?;
        let r = self.flush_locked(&mut w);
        self.poison(r)
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<()> {
        let wal_number = w.version.next_file_number;
        let table_number = wal_number + 1;
        let new_wal = Wal::create(
            &self.dir.join(wal_name(wal_number)),
            &wrapper(&self.options),
        )?;
        let table = {
            let st = self.state.read().expect(LOCK);
            if st.mem.is_empty() {
                None
            } else {
                Some(write_table(
                    &self.dir,
                    table_number,
                    &st.mem,
                    self.options.zstd_level,
                )?)
            }
        };
        manifest::sync_dir(&self.dir)?;
        let mut ops = Vec::new();
        if let Some((_, meta)) = &table {
            ops.push(EditOp::AddTable {
                level: 0,
                table: *meta,
            });
        }
        ops.push(EditOp::LastSeq(w.next_seq - 1));
        ops.push(EditOp::LogNumber(wal_number));
        ops.push(EditOp::NextFileNumber(table_number + 1));
        let edit = VersionEdit { ops };
        w.manifest.append(&edit)?;
        w.version.apply(&self.dir, 0, &edit)?;
        {
            let mut st = self.state.write().expect(LOCK);
            st.mem = Memtable::new();
            if let Some((t, _)) = table {
                let mut tables = Vec::with_capacity(st.tables.len() + 1);
                tables.push(t);
                tables.extend(st.tables.iter().cloned());
                st.tables = Arc::new(tables);
            }
        }
        let old = std::mem::replace(&mut w.wal, Arc::new(new_wal));
        // Its writes are in the table now. A failed delete only leaves a
        // file that the next open deletes.
        let _ = std::fs::remove_file(old.path());
        Ok(())
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_at(key, self.visible_seq.load(Ordering::Acquire))
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
            Arc::clone(&st.tables)
        };
        for t in tables.iter() {
            if let Some(v) = t.get(key, seq)? {
                return Ok(v);
            }
        }
        Ok(None)
    }

    /// Key/value pairs with keys in `range`, ascending.
    pub fn scan(&self, range: impl RangeBounds<Vec<u8>>) -> Result<Scan> {
        self.scan_at(range, self.visible_seq.load(Ordering::Acquire))
    }

    fn scan_at(&self, range: impl RangeBounds<Vec<u8>>, seq: u64) -> Result<Scan> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let start = range.start_bound().map(|k| k.as_slice());
        let end = range.end_bound().map(|k| k.as_slice());
        let (mem, tables) = {
            let st = self.state.read().expect(LOCK);
            (st.mem.entries_from(start, end), Arc::clone(&st.tables))
        };
        let mut sources: Vec<Source> = vec![Box::new(mem.into_iter().map(Ok))];
        for t in tables.iter() {
            sources.push(Box::new(t.iter_from(start)));
        }
        Ok(Scan::new(sources, seq, end.map(<[u8]>::to_vec)))
    }

    /// A consistent read view at the current sequence number.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            db: self,
            seq: self.visible_seq.load(Ordering::Acquire),
        }
    }

    /// A read view at an earlier `seq` of this open `Db` (for tests that
    /// cannot hold a borrowing [`Snapshot`] across a reassignment).
    #[doc(hidden)]
    pub fn snapshot_at_for_tests(&self, seq: u64) -> Snapshot<'_> {
        Snapshot {
            db: self,
            seq: seq.min(self.visible_seq.load(Ordering::Acquire)),
        }
    }

    /// Syncs the WAL and refuses further use. Dropping a `Db` does the
    /// same, ignoring errors.
    pub fn close(&self) -> Result<()> {
        let w = self.writer.lock().expect(LOCK);
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        w.wal.sync_all()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn wrapper(options: &Options) -> impl Fn(Box<dyn LogFile>) -> Box<dyn LogFile> + '_ {
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
        self.db.get_at(key, self.seq)
    }

    /// Pairs with keys in `range` as of the snapshot, ascending.
    pub fn scan(&self, range: impl RangeBounds<Vec<u8>>) -> Result<Scan> {
        self.db.scan_at(range, self.seq)
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
