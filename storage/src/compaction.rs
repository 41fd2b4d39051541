//! Leveled compaction on a background worker thread.
//!
//! Shape: L0 holds flushed tables, newest first, whose key ranges may
//! overlap. Each deeper level is one sorted run of tables with disjoint
//! key ranges, ten times (`level_size_ratio`) the target size of the one
//! above. Every version of a key in a shallower level is newer than every
//! version in a deeper one, which is what lets a point read stop at the
//! first level that has the key.
//!
//! What runs (one compaction at a time, so the levels it reads cannot
//! change under it except for flushes adding L0 tables):
//! - L0 → L1 when L0 has `l0_compaction_trigger` tables: *all* of L0 (so
//!   an older L0 table can never be left above newer data that moved
//!   down) merged with the L1 tables it overlaps.
//! - Level N → N+1 (N ≥ 1) when level N exceeds its target: the table of
//!   level N whose key range overlaps the fewest bytes of level N+1,
//!   merged with those tables; with no overlap the table is moved down
//!   (a manifest edit, no rewrite).
//! - [`crate::Db::compact_range`]: each level's tables in the range into
//!   the next, down to the deepest non-empty level, then that level into
//!   itself.
//!
//! What a merge drops: for each key, versions are read newest first;
//! every version above the oldest read sequence number (the oldest live
//! snapshot, else the visible sequence number) is kept, as is the newest
//! at or below it; older ones are invisible to every reader and dropped.
//! That newest one is dropped too if it is a tombstone and no level below
//! the output holds the key (nothing left for it to hide). Outputs are cut
//! at `table_bytes`, only between keys, so a key's versions stay in one
//! table and the run stays disjoint.
//!
//! Install: one manifest edit removes every input and adds every output
//! (and a trivial move is a remove and an add of the same table), then the
//! level list readers clone is swapped in one step. Input files are
//! deleted when the last reader's `Arc` of them goes (see
//! [`crate::table::reader::Table`]). A failed compaction is sticky, like a
//! failed flush: the engine refuses writes until reopened.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::db::{table_name, Inner, Levels, LOCK};
use crate::error::{Error, Result};
use crate::iter::{Merge, Source};
use crate::limits::LEVELS;
use crate::manifest;
use crate::options::FileKind;
use crate::table::builder::TableBuilder;
use crate::table::reader::Table;
use crate::version::{EditOp, TableMeta, VersionEdit};

/// A user-key range of a manual compaction.
#[derive(Debug, Clone)]
pub(crate) struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl KeyRange {
    fn overlaps(&self, t: &Table) -> bool {
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
    /// The worker's failure, for `compact_range` callers (the engine-wide
    /// sticky copy is in `FlushState::error`).
    pub(crate) error: Option<Arc<Error>>,
}

/// One compaction: inputs (with their levels) merged into `output_level`.
#[derive(Debug)]
struct Job {
    inputs: Vec<(usize, Arc<Table>)>,
    output_level: usize,
    /// No rewrite: every input is moved to `output_level` as it is.
    trivial: bool,
}

/// The smallest and largest keys of `tables` (which must not be empty).
fn key_span<'a>(tables: impl Iterator<Item = &'a Arc<Table>>) -> Option<(&'a [u8], &'a [u8])> {
    let mut span: Option<(&[u8], &[u8])> = None;
    for t in tables {
        span = Some(match span {
            None => (t.smallest(), t.largest()),
            Some((lo, hi)) => (lo.min(t.smallest()), hi.max(t.largest())),
        });
    }
    span
}

fn overlapping(level: &[Arc<Table>], lo: &[u8], hi: &[u8]) -> Vec<Arc<Table>> {
    level
        .iter()
        .filter(|t| t.overlaps(lo, hi))
        .cloned()
        .collect()
}

/// A job merging `inputs` of `level` with what they overlap in `level + 1`
/// (a trivial move if that is nothing and `level` ≥ 1: its tables are
/// disjoint, so moving them keeps the next level a disjoint run).
fn job_into_next(levels: &Levels, level: usize, inputs: Vec<Arc<Table>>) -> Option<Job> {
    let (lo, hi) = key_span(inputs.iter())?;
    let next = overlapping(&levels[level + 1], lo, hi);
    let trivial = level >= 1 && next.is_empty();
    let mut all: Vec<(usize, Arc<Table>)> = inputs.into_iter().map(|t| (level, t)).collect();
    all.extend(next.into_iter().map(|t| (level + 1, t)));
    Some(Job {
        inputs: all,
        output_level: level + 1,
        trivial,
    })
}

/// The compaction the level shapes call for, if any: L0 by file count
/// first (it slows reads and stalls writers), then the level furthest over
/// its target.
fn pick(inner: &Inner, levels: &Levels) -> Option<Job> {
    let o = &inner.options;
    if levels[0].len() >= o.l0_compaction_trigger {
        return job_into_next(levels, 0, levels[0].clone());
    }
    let mut best: Option<(usize, f64)> = None;
    for (level, tables) in levels.iter().enumerate().take(LEVELS - 1).skip(1) {
        let bytes: u64 = tables.iter().map(|t| t.size_bytes()).sum();
        let score = bytes as f64 / o.level_target_bytes(level) as f64;
        if score > 1.0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((level, score));
        }
    }
    let (level, _) = best?;
    // The table that overlaps the fewest next-level bytes: the cheapest
    // rewrite per byte moved down (often none: a trivial move).
    let next = &levels[level + 1];
    let table = levels[level].iter().min_by_key(|t| {
        next.iter()
            .filter(|n| n.overlaps(t.smallest(), t.largest()))
            .map(|n| n.size_bytes())
            .sum::<u64>()
    })?;
    job_into_next(levels, level, vec![Arc::clone(table)])
}

/// Whether a level below `output_level` may hold `key`.
fn deeper_holds(levels: &Levels, output_level: usize, key: &[u8]) -> bool {
    levels.iter().skip(output_level + 1).any(|level| {
        let i = level.partition_point(|t| t.largest() < key);
        level.get(i).is_some_and(|t| t.smallest() <= key)
    })
}

impl Inner {
    pub(crate) fn lock_compact(&self) -> MutexGuard<'_, CompactState> {
        self.compact.lock().expect(LOCK)
    }

    fn levels(&self) -> Arc<Levels> {
        Arc::clone(&self.state.read().expect(LOCK).tables)
    }

    /// Wakes the compaction worker (a flush installed an L0 table).
    pub(crate) fn notify_compaction(&self) {
        let _cs = self.lock_compact();
        self.compact_work.notify_one();
    }
}

/// The outputs of a merge so far; abandoned outputs are deleted.
struct Outputs {
    done: Vec<(Arc<Table>, TableMeta)>,
    open: Option<(u64, TableBuilder)>,
}

impl Outputs {
    fn finish_open(&mut self, inner: &Inner) -> Result<()> {
        let Some((number, b)) = self.open.take() else {
            return Ok(());
        };
        let path = b.path().to_path_buf();
        let r = b.finish().and_then(|info| {
            manifest::sync_dir(&inner.dir)?;
            let table = Table::open(&path, number, None, inner.block_cache.clone())?;
            let meta = table.meta();
            assert_eq!(
                meta.size_bytes, info.size_bytes,
                "read back what was written"
            );
            Ok((Arc::new(table), meta))
        });
        match r {
            Ok(out) => {
                self.done.push(out);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Deletes every output: none is named by the manifest.
    fn abandon(mut self) {
        if let Some((_, b)) = self.open.take() {
            let _ = std::fs::remove_file(b.path());
        }
        for (t, _) in &self.done {
            t.mark_obsolete();
        }
    }
}

/// What became of a job.
enum Outcome {
    Installed,
    /// `close` was called mid-merge; nothing changed.
    Stopped,
}

impl Inner {
    /// Merges the inputs of `job` into new tables, dropping what no reader
    /// can see (module docs), and installs them.
    fn run_job(&self, levels: &Levels, job: Job) -> Result<Outcome> {
        if job.trivial {
            let moved = job.inputs.iter().map(|(_, t)| Arc::clone(t)).collect();
            self.install(&job, moved)?;
            self.counters.trivial_moves.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Installed);
        }
        // Fixed before reading any input: a reader arriving later reads at
        // or above it (see `Inner::oldest_read_seq`).
        let oldest_read_seq = self.oldest_read_seq();
        let sources: Vec<Source> = job
            .inputs
            .iter()
            .map(|(_, t)| Box::new(t.iter_uncached(Bound::Unbounded)) as Source)
            .collect();
        let mut merge = Merge::new(sources);
        let mut out = Outputs {
            done: Vec::new(),
            open: None,
        };
        match self.merge_into(levels, &job, oldest_read_seq, &mut merge, &mut out) {
            Ok(true) => {}
            Ok(false) => {
                out.abandon();
                return Ok(Outcome::Stopped);
            }
            Err(e) => {
                out.abandon();
                return Err(e);
            }
        }
        let written: u64 = out.done.iter().map(|(_, m)| m.size_bytes).sum();
        let metas: Vec<TableMeta> = out.done.iter().map(|(_, m)| m.clone()).collect();
        let tables: Vec<Arc<Table>> = out.done.iter().map(|(t, _)| Arc::clone(t)).collect();
        // On failure the outputs stay: a failed append or fsync may still
        // have put the edit in the manifest, and then they are the data.
        // The next open deletes whichever side the manifest does not name.
        self.install_metas(&job, tables, &metas)?;
        self.counters
            .compaction_bytes
            .fetch_add(written, Ordering::Relaxed);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Installed)
    }

    /// The merge loop; `Ok(false)` if `close` stopped it.
    fn merge_into(
        &self,
        levels: &Levels,
        job: &Job,
        oldest_read_seq: u64,
        merge: &mut Merge,
        out: &mut Outputs,
    ) -> Result<bool> {
        let mut key: Vec<u8> = Vec::new();
        let mut first = true;
        // Whether this key's newest version at or below `oldest_read_seq`
        // was already seen: every older version is then invisible.
        let mut covered = false;
        let mut bottom = false;
        while let Some(e) = merge.next_entry()? {
            if first || e.key != key {
                first = false;
                let cut = out
                    .open
                    .as_ref()
                    .is_some_and(|(_, b)| b.estimated_bytes() >= self.options.table_bytes);
                if cut {
                    out.finish_open(self)?;
                    if self.lock_compact().stop {
                        return Ok(false);
                    }
                }
                key.clear();
                key.extend_from_slice(&e.key);
                covered = false;
                bottom = !deeper_holds(levels, job.output_level, &key);
            }
            if covered {
                continue;
            }
            if e.seq <= oldest_read_seq {
                covered = true;
                if e.value.is_none() && bottom {
                    continue;
                }
            }
            if out.open.is_none() {
                let number = self.versions.lock().expect(LOCK).new_file_number();
                let path = self.dir.join(table_name(number));
                let wrap = |f| self.options.wrap_file(FileKind::Table, f);
                let b = TableBuilder::create_wrapped(&path, self.options.zstd_level, &wrap)?;
                out.open = Some((number, b));
            }
            if let Some((_, b)) = out.open.as_mut() {
                b.add(&e.key, e.seq, e.value.as_deref())?;
            }
        }
        out.finish_open(self)?;
        Ok(true)
    }

    /// Installs a trivial move: `tables` are the inputs themselves.
    fn install(&self, job: &Job, tables: Vec<Arc<Table>>) -> Result<()> {
        let metas: Vec<TableMeta> = tables.iter().map(|t| t.meta()).collect();
        self.install_metas(job, tables, &metas)
    }

    /// One manifest edit (remove inputs, add outputs), then one swap of
    /// the level list; inputs that were rewritten become obsolete.
    fn install_metas(
        &self,
        job: &Job,
        outputs: Vec<Arc<Table>>,
        metas: &[TableMeta],
    ) -> Result<()> {
        let out_level = job.output_level as u8;
        let mut vs = self.versions.lock().expect(LOCK);
        // Checked before the edit reaches the manifest, so a bug here can
        // never be made durable. Only this worker changes levels >= 1, so
        // the output level read now is the one the swap below changes.
        {
            let current = self.levels();
            let mut ranges: Vec<(&[u8], &[u8])> = current[job.output_level]
                .iter()
                .filter(|t| !job.inputs.iter().any(|(_, i)| Arc::ptr_eq(i, t)))
                .chain(outputs.iter())
                .map(|t| (t.smallest(), t.largest()))
                .collect();
            ranges.sort();
            assert!(
                ranges.windows(2).all(|w| w[0].1 < w[1].0),
                "a compaction output overlaps its level"
            );
        }
        let mut ops: Vec<EditOp> = job
            .inputs
            .iter()
            .map(|(level, t)| EditOp::RemoveTable {
                level: *level as u8,
                number: t.number(),
            })
            .collect();
        ops.extend(metas.iter().map(|table| EditOp::AddTable {
            level: out_level,
            table: table.clone(),
        }));
        ops.push(EditOp::NextFileNumber(vs.version.next_file_number));
        let edit = VersionEdit { ops };
        vs.manifest.append(&edit)?;
        vs.version.apply(&self.dir, 0, &edit)?;
        {
            let mut st = self.state.write().expect(LOCK);
            let mut levels: Levels = (*st.tables).clone();
            for (level, t) in &job.inputs {
                levels[*level].retain(|x| !Arc::ptr_eq(x, t));
            }
            let target = &mut levels[job.output_level];
            target.extend(outputs);
            target.sort_by(|a, b| a.smallest().cmp(b.smallest()));
            st.tables = Arc::new(levels);
        }
        drop(vs);
        if !job.trivial {
            for (_, t) in &job.inputs {
                t.mark_obsolete();
            }
        }
        // Writers may be waiting for L0 to shrink.
        let _bg = self.lock_bg();
        self.done.notify_all();
        Ok(())
    }
}

/// What the worker was woken for.
enum Work {
    Manual(KeyRange, u64),
    Auto(Job, Arc<Levels>),
}

impl Inner {
    /// A manual compaction of `range` (see [`crate::Db::compact_range`]);
    /// `Ok(false)` if `close` stopped it.
    fn run_manual(&self, range: &KeyRange) -> Result<bool> {
        let levels = self.levels();
        let target = (1..LEVELS)
            .rev()
            .find(|&l| !levels[l].is_empty())
            .unwrap_or(1);
        for level in 0..target {
            let levels = self.levels();
            let inputs: Vec<Arc<Table>> = if level == 0 {
                // All of L0 or none: see the module docs.
                if levels[0].iter().any(|t| range.overlaps(t)) {
                    levels[0].clone()
                } else {
                    Vec::new()
                }
            } else {
                levels[level]
                    .iter()
                    .filter(|t| range.overlaps(t))
                    .cloned()
                    .collect()
            };
            if let Some(job) = job_into_next(&levels, level, inputs) {
                if let Outcome::Stopped = self.run_job(&levels, job)? {
                    return Ok(false);
                }
            }
        }
        // The bottom level into itself: what only a rewrite reclaims
        // (versions a released snapshot kept, tombstones now at the bottom).
        let levels = self.levels();
        let inputs: Vec<(usize, Arc<Table>)> = levels[target]
            .iter()
            .filter(|t| range.overlaps(t))
            .map(|t| (target, Arc::clone(t)))
            .collect();
        if !inputs.is_empty() {
            let job = Job {
                inputs,
                output_level: target,
                trivial: false,
            };
            if let Outcome::Stopped = self.run_job(&levels, job)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The worker's loop: a manual request first, else what [`pick`]
    /// finds; sleeps when there is nothing to do. Exits when stopped or
    /// after a failure.
    fn run_compactor(&self) {
        loop {
            let work = {
                let mut cs = self.lock_compact();
                loop {
                    if cs.stop || cs.error.is_some() {
                        return;
                    }
                    if let Some(range) = cs.manual.take() {
                        break Work::Manual(range, cs.manual_requested);
                    }
                    let levels = self.levels();
                    if let Some(job) = pick(self, &levels) {
                        break Work::Auto(job, levels);
                    }
                    cs = self.compact_work.wait(cs).expect(LOCK);
                }
            };
            let result = match work {
                Work::Manual(range, id) => self.run_manual(&range).map(|completed| {
                    if completed {
                        let mut cs = self.lock_compact();
                        cs.manual_done = cs.manual_done.max(id);
                        self.compact_done.notify_all();
                    }
                }),
                Work::Auto(job, levels) => self.run_job(&levels, job).map(|_| ()),
            };
            if let Err(e) = result {
                self.fail_compaction(Arc::new(e));
                return;
            }
        }
    }

    /// Makes a compaction failure sticky and wakes everyone who waits on
    /// the worker.
    fn fail_compaction(&self, e: Arc<Error>) {
        {
            let mut bg = self.bg.lock().unwrap_or_else(PoisonError::into_inner);
            bg.error.get_or_insert_with(|| Arc::clone(&e));
            self.done.notify_all();
        }
        let mut cs = self.compact.lock().unwrap_or_else(PoisonError::into_inner);
        cs.error.get_or_insert(e);
        self.compact_done.notify_all();
    }
}

/// Asks the worker for a manual compaction of `range` and waits for it.
pub(crate) fn request_manual(inner: &Inner, range: KeyRange) -> Result<()> {
    let mut cs = inner.lock_compact();
    cs.manual = Some(range);
    cs.manual_requested += 1;
    let id = cs.manual_requested;
    inner.compact_work.notify_one();
    loop {
        if cs.manual_done >= id {
            return Ok(());
        }
        if let Some(e) = &cs.error {
            return Err(Error::Background(Arc::clone(e)));
        }
        if cs.stop {
            return Err(Error::Closed);
        }
        cs = inner.compact_done.wait(cs).expect(LOCK);
    }
}

/// Records a panic of the worker as the sticky error.
struct PanicGuard<'a>(&'a Inner);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail_compaction(Arc::new(Error::WorkerPanicked));
        }
    }
}

/// Starts the compaction worker of `inner`.
pub(crate) fn spawn(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let dir = inner.dir.clone();
    std::thread::Builder::new()
        .name("strata-compact".into())
        .spawn(move || {
            let _guard = PanicGuard(&inner);
            inner.run_compactor();
        })
        .map_err(|e| Error::io(dir, e))
}

/// Stops the worker after its current compaction (a merge in progress
/// stops at its next output table) and waits for it.
pub(crate) fn stop(inner: &Inner, worker: Option<JoinHandle<()>>) {
    inner.lock_compact().stop = true;
    inner.compact_work.notify_all();
    inner.compact_done.notify_all();
    if let Some(handle) = worker {
        if handle.join().is_err() {
            inner.fail_compaction(Arc::new(Error::WorkerPanicked));
        }
    }
}
