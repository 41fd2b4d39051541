//! The engine's shared state: what the `Db` handle, the flush worker and
//! the compaction worker all reach through one `Arc<Inner>`, and the file
//! names they share. It sits below `db`, `open`, `flush` and `compaction`,
//! which each add their part of `impl Inner`; it imports none of them.
//!
//! Lock order: `writer` → `compact` → `versions` → `bg` → `state` →
//! `snapshots` (a thread takes them only in this order; [`Rank`]). The
//! locks are private to this module: everything else takes them through
//! the `lock_*` / `*_state` accessors, whose guards check the order in
//! debug builds ([`crate::lock_order`]). The workers never take `writer`,
//! so a writer waiting for room (holding `writer`) cannot block them.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::iter::{Scan, Source};
use crate::lock_order::{lock, lock_after_panic, Rank, RankToken, Ranked};
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::options::{Options, WalBackend};
use crate::table::cache::BlockCache;
use crate::table::reader::Table;
use crate::version::Version;
use crate::wal::{LogFile, Wal};

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
    /// Delay owed by slowed-down writes and not yet slept, in
    /// nanoseconds (see `Inner::slow_down`).
    pub(crate) slowdown_debt_ns: u64,
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

/// The open tables per level: L0 newest first (overlapping), each deeper
/// level sorted by smallest key with disjoint key ranges. Mirrors the
/// version's table lists.
pub(crate) type Levels = Vec<Vec<Arc<Table>>>;

/// What readers see: every place a write can be, newest first.
pub(crate) struct State {
    pub(crate) mem: Memtable,
    /// Frozen memtables waiting for the flush worker, newest first.
    pub(crate) imm: Vec<Arc<Immutable>>,
    /// Replaced whole (never mutated) so a reader's clone stays a
    /// consistent view while flushes and compactions install tables.
    pub(crate) tables: Arc<Levels>,
}

/// Counters behind [`crate::Db::stats`], since open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) user_bytes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    /// Versions flushes left out: shadowed, no reader could see them.
    pub(crate) flush_versions_dropped: AtomicU64,
    pub(crate) compaction_bytes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) trivial_moves: AtomicU64,
    /// Writes delayed by the L0 slowdown, and the time they slept.
    pub(crate) slowdowns: AtomicU64,
    pub(crate) slowdown_us: AtomicU64,
}

/// The engine, shared by the `Db` handle and the flush and compaction
/// workers.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    /// The WAL backend resolved at open (never `Auto`).
    pub(crate) wal_backend: WalBackend,
    writer: Mutex<Writer>,
    versions: Mutex<VersionSet>,
    state: RwLock<State>,
    bg: Mutex<FlushState>,
    /// Wakes the worker: a memtable was frozen, or `close` was called.
    pub(crate) work: Condvar,
    /// Wakes writers waiting for room and `flush` callers: a memtable
    /// reached a table, or the worker failed.
    pub(crate) done: Condvar,
    pub(crate) visible_seq: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Writes that waited for the flush or compaction worker
    /// (backpressure).
    pub(crate) stalls: AtomicU64,
    pub(crate) counters: Counters,
    /// Coordination with the compaction worker; `compact_work` wakes it,
    /// `compact_done` wakes `compact_range` callers.
    compact: Mutex<CompactState>,
    pub(crate) compact_work: Condvar,
    pub(crate) compact_done: Condvar,
    /// Live snapshots: sequence number → count. Compaction keeps every
    /// version a snapshot at or above the smallest of them can read.
    snapshots: Mutex<BTreeMap<u64, usize>>,
    /// Shared by every table; `None` if `block_cache_bytes` is 0.
    pub(crate) block_cache: Option<Arc<BlockCache>>,
}

/// A frozen memtable waiting for the worker.
#[derive(Debug)]
pub(crate) struct Immutable {
    pub(crate) mem: Memtable,
    /// The WAL holding exactly this memtable's writes.
    pub(crate) wal: Arc<Wal>,
    /// The WAL the next memtable writes to: the manifest's log number once
    /// this memtable is in a table.
    pub(crate) next_log_number: u64,
    /// The highest sequence number in `mem`.
    pub(crate) last_seq: u64,
}

/// Coordination between writers, `flush()` and the worker (under
/// `Inner::bg`; `Inner::work` and `Inner::done` are its condvars).
#[derive(Debug, Default)]
pub(crate) struct FlushState {
    /// Immutables not yet in a table (mirrors `State::imm.len()`).
    pub(crate) pending: usize,
    /// Memtables frozen since open; the n-th frozen has id n.
    pub(crate) frozen: u64,
    /// Memtables written to tables since open; they finish in id order.
    pub(crate) flushed: u64,
    /// Set by `close`: the worker drains the pending immutables and exits.
    pub(crate) stop: bool,
    /// The first background failure; sticky until reopen.
    pub(crate) error: Option<Arc<Error>>,
}

/// A user-key range of a manual compaction.
#[derive(Debug, Clone)]
pub(crate) struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub(crate) fn overlaps(&self, t: &Table) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => t.largest() >= s.as_slice(),
            Bound::Excluded(s) => t.largest() > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => t.smallest() <= e.as_slice(),
            Bound::Excluded(e) => t.smallest() < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

/// Coordination with the compaction worker (under `Inner::compact`).
#[derive(Debug, Default)]
pub(crate) struct CompactState {
    /// Set by `close`: the worker exits after its current compaction.
    pub(crate) stop: bool,
    /// A pending `compact_range` request.
    pub(crate) manual: Option<KeyRange>,
    /// Manual requests made and finished since open.
    pub(crate) manual_requested: u64,
    pub(crate) manual_done: u64,
    /// The worker is running a job (taken from `manual` or `pick`).
    pub(crate) running: bool,
    /// The worker's failure, for `compact_range` callers (the engine-wide
    /// sticky copy is in `FlushState::error`).
    pub(crate) error: Option<Arc<Error>>,
}

pub(crate) const LOCK: &str = crate::lock_order::POISONED;

impl Inner {
    /// The engine as `open` recovered it.
    pub(crate) fn new(
        dir: PathBuf,
        options: Options,
        wal_backend: WalBackend,
        writer: Writer,
        versions: VersionSet,
        state: State,
        block_cache: Option<Arc<BlockCache>>,
    ) -> Self {
        let visible = writer.next_seq - 1;
        Inner {
            dir,
            options,
            wal_backend,
            writer: Mutex::new(writer),
            versions: Mutex::new(versions),
            state: RwLock::new(state),
            bg: Mutex::new(FlushState::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            visible_seq: AtomicU64::new(visible),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stalls: AtomicU64::new(0),
            counters: Counters::default(),
            compact: Mutex::new(CompactState::default()),
            compact_work: Condvar::new(),
            compact_done: Condvar::new(),
            snapshots: Mutex::new(BTreeMap::new()),
            block_cache,
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
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

    /// The writer's lock, once the engine is still writable.
    pub(crate) fn lock_writer(&self) -> Result<Ranked<MutexGuard<'_, Writer>>> {
        let w = self.lock_writer_even_closed();
        self.check_writable()?;
        Ok(w)
    }

    /// The writer's lock whatever the engine's state (for `close`).
    pub(crate) fn lock_writer_even_closed(&self) -> Ranked<MutexGuard<'_, Writer>> {
        lock(&self.writer, Rank::Writer)
    }

    /// The manifest and current version.
    pub(crate) fn lock_versions(&self) -> Ranked<MutexGuard<'_, VersionSet>> {
        lock(&self.versions, Rank::Versions)
    }

    /// What readers see, shared.
    pub(crate) fn read_state(&self) -> Ranked<RwLockReadGuard<'_, State>> {
        RankToken::check(Rank::State);
        Ranked::new(self.state.read().expect(LOCK), Rank::State)
    }

    /// What readers see, to change it.
    pub(crate) fn write_state(&self) -> Ranked<RwLockWriteGuard<'_, State>> {
        RankToken::check(Rank::State);
        Ranked::new(self.state.write().expect(LOCK), Rank::State)
    }

    /// Live snapshots' sequence numbers.
    pub(crate) fn lock_snapshots(&self) -> Ranked<MutexGuard<'_, BTreeMap<u64, usize>>> {
        lock(&self.snapshots, Rank::Snapshots)
    }

    /// As [`Self::lock_snapshots`], also after a panic poisoned the lock
    /// (a snapshot dropped while unwinding must not panic again).
    pub(crate) fn lock_snapshots_after_panic(
        &self,
    ) -> Ranked<MutexGuard<'_, BTreeMap<u64, usize>>> {
        lock_after_panic(&self.snapshots, Rank::Snapshots)
    }

    /// The smallest sequence number a reader may still read at: the
    /// oldest live snapshot, else the visible sequence number. Taken under
    /// the snapshot lock, so a snapshot registered after it reads at or
    /// above it.
    pub(crate) fn oldest_read_seq(&self) -> u64 {
        let snaps = self.lock_snapshots();
        let visible = self.visible_seq.load(Ordering::Acquire);
        snaps.keys().next().map_or(visible, |&s| s.min(visible))
    }

    /// Reads at `seq`, or (`None`) at the visible sequence number loaded
    /// under the state lock: a compaction installed before that load chose
    /// what to drop knowing a reader could read at it.
    pub(crate) fn get_at(&self, key: &[u8], seq: Option<u64>) -> Result<Option<Vec<u8>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (tables, seq) = {
            let st = self.read_state();
            let seq = seq.unwrap_or_else(|| self.visible_seq.load(Ordering::Acquire));
            if let Some(v) = st.mem.get(key, seq) {
                return Ok(v);
            }
            for imm in &st.imm {
                if let Some(v) = imm.mem.get(key, seq) {
                    return Ok(v);
                }
            }
            (Arc::clone(&st.tables), seq)
        };
        for t in &tables[0] {
            if let Some(v) = t.get(key, seq)? {
                return Ok(v);
            }
        }
        // Deeper levels are disjoint runs: at most one table per level
        // can hold the key, and shallower levels hold newer versions.
        for level in &tables[1..] {
            let i = level.partition_point(|t| t.largest() < key);
            if let Some(t) = level.get(i).filter(|t| t.smallest() <= key) {
                if let Some(v) = t.get(key, seq)? {
                    return Ok(v);
                }
            }
        }
        Ok(None)
    }

    /// A scan of the keys within `(start, end)` visible at `seq` (`None`:
    /// the visible sequence number), ascending, or descending if
    /// `backward`.
    pub(crate) fn scan_at(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        seq: Option<u64>,
        backward: bool,
    ) -> Result<Scan> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut sources: Vec<Source> = Vec::new();
        let (tables, seq) = {
            let st = self.read_state();
            let seq = seq.unwrap_or_else(|| self.visible_seq.load(Ordering::Acquire));
            for mem in std::iter::once(&st.mem).chain(st.imm.iter().map(|imm| &imm.mem)) {
                let entries = mem.entries_from(start, end).into_iter();
                if backward {
                    sources.push(Box::new(entries.rev().map(Ok)));
                } else {
                    sources.push(Box::new(entries.map(Ok)));
                }
            }
            (Arc::clone(&st.tables), seq)
        };
        if backward {
            for t in &tables[0] {
                sources.push(Box::new(t.iter_rev_from(end)));
            }
            // One source per deeper level: its tables that start within
            // `end`, last first, each opened only when the scan reaches it.
            for level in tables.iter().skip(1).filter(|l| !l.is_empty()) {
                let to = match end {
                    Bound::Included(k) => level.partition_point(|t| t.smallest() <= k),
                    Bound::Excluded(k) => level.partition_point(|t| t.smallest() < k),
                    Bound::Unbounded => level.len(),
                };
                let run: Vec<Arc<Table>> = level[..to].to_vec();
                let end_owned = end.map(<[u8]>::to_vec);
                sources.push(Box::new(run.into_iter().rev().flat_map(move |t| {
                    t.iter_rev_from(end_owned.as_ref().map(Vec::as_slice))
                })));
            }
            return Ok(Scan::backward(sources, seq, start.map(<[u8]>::to_vec)));
        }
        for t in &tables[0] {
            sources.push(Box::new(t.iter_from(start)));
        }
        // One source per deeper level: its tables in key order, each
        // opened only when the scan reaches it.
        for level in tables.iter().skip(1).filter(|l| !l.is_empty()) {
            let from = match start {
                Bound::Included(k) | Bound::Excluded(k) => {
                    level.partition_point(|t| t.largest() < k)
                }
                Bound::Unbounded => 0,
            };
            let run: Vec<Arc<Table>> = level[from..].to_vec();
            let start_owned = start.map(<[u8]>::to_vec);
            sources.push(Box::new(run.into_iter().flat_map(move |t| {
                t.iter_from(start_owned.as_ref().map(Vec::as_slice))
            })));
        }
        Ok(Scan::new(sources, seq, end.map(<[u8]>::to_vec)))
    }
}

impl Inner {
    /// Coordination with the flush worker.
    pub(crate) fn lock_bg(&self) -> Ranked<MutexGuard<'_, FlushState>> {
        lock(&self.bg, Rank::Bg)
    }

    /// As [`Self::lock_bg`], also after a panic poisoned the lock: for
    /// recording a worker's panic as the sticky error.
    pub(crate) fn lock_bg_after_panic(&self) -> Ranked<MutexGuard<'_, FlushState>> {
        lock_after_panic(&self.bg, Rank::Bg)
    }

    /// The sticky background error, if the worker has failed.
    pub(crate) fn background_error(&self) -> Option<Error> {
        self.lock_bg().error.clone().map(Error::Background)
    }

    /// The compaction worker's coordination state.
    pub(crate) fn lock_compact(&self) -> Ranked<MutexGuard<'_, CompactState>> {
        lock(&self.compact, Rank::Compact)
    }

    /// As [`Self::lock_compact`], also after a panic poisoned the lock.
    pub(crate) fn lock_compact_after_panic(&self) -> Ranked<MutexGuard<'_, CompactState>> {
        lock_after_panic(&self.compact, Rank::Compact)
    }
}

/// Applies the WAL wrapper of `options` (the fault-injection seam).
pub(crate) fn wrapper(options: &Options) -> impl Fn(Box<dyn LogFile>) -> Box<dyn LogFile> + '_ {
    move |f| match &options.wal_wrapper {
        Some(w) => w(f),
        None => f,
    }
}
