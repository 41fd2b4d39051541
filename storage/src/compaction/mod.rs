//! Leveled compaction on a background worker thread.
//!
//! Shape: L0 holds flushed tables, newest first, whose key ranges may
//! overlap. Each deeper level is one sorted run of tables with disjoint
//! key ranges, ten times (`level_size_ratio`) the target size of the one
//! above; by default the targets are sized from the largest level up and
//! L0 compacts into the *base level*, the shallowest one they need
//! (`pick::shape`, `docs/storage-format.md`). Every version of a key in
//! a shallower level is newer than every version in a deeper one, which
//! is what lets a point read stop at the first level that has the key.
//!
//! What runs (one compaction at a time, so the levels it reads cannot
//! change under it except for flushes adding L0 tables):
//! - L0 → base when L0 has `l0_compaction_trigger` tables: *all* of L0
//!   (so an older L0 table can never be left above newer data that moved
//!   down) merged with the base level tables it overlaps.
//! - Level N → N+1 (N ≥ 1) when level N exceeds its target, tombstones
//!   weighed at what they free below: the table of level N that frees
//!   the most per byte rewritten (with no tombstones, the one overlapping
//!   the fewest bytes of level N+1), merged with those tables; with no
//!   overlap the table is moved down (a manifest edit, no rewrite).
//! - [`crate::Db::compact_range`]: each level's tables in the range into
//!   the next, down to the deepest non-empty level, then that level into
//!   itself.
//!
//! What a merge drops: for each key, versions are read newest first;
//! every version above the oldest read sequence number (the oldest live
//! snapshot, else the visible sequence number) is kept, as is the newest
//! at or below it; older ones are invisible to every reader and dropped.
//! That newest one is dropped too if it is a tombstone and no level below
//! the output holds the key (nothing left for it to hide): no table there
//! whose range holds it and whose bloom filter admits it. Outputs are cut
//! at `table_bytes`, only between keys, so a key's versions stay in one
//! table and the run stays disjoint.
//!
//! Install: one manifest edit removes every input and adds every output
//! (and a trivial move is a remove and an add of the same table), then the
//! level list readers clone is swapped in one step. Input files are
//! deleted when the last reader's `Arc` of them goes (see
//! [`crate::table::reader::Table`]). A failed compaction is sticky, like a
//! failed flush: the engine refuses writes until reopened.

mod merge;
mod pick;

use std::sync::Arc;
use std::thread::JoinHandle;

use self::merge::Outcome;
use self::pick::{job_into_next, pick, Job};
use crate::error::{Error, Result};
use crate::inner::{Inner, KeyRange, Levels};
use crate::limits::LEVELS;
use crate::table::reader::Table;

impl Inner {
    fn levels(&self) -> Arc<Levels> {
        Arc::clone(&self.read_state().tables)
    }

    /// Wakes the compaction worker (a flush installed an L0 table).
    pub(crate) fn notify_compaction(&self) {
        let _cs = self.lock_compact();
        self.compact_work.notify_one();
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
                    // `running` is set in the same critical section as the
                    // pick: a bulk ingestion waits for it to clear before
                    // it places a table, and must not slip in between.
                    if let Some(range) = cs.manual.take() {
                        cs.running = true;
                        break Work::Manual(range, cs.manual_requested);
                    }
                    let levels = self.levels();
                    if let Some(job) = pick(self, &levels) {
                        cs.running = true;
                        break Work::Auto(job, levels);
                    }
                    cs = cs.wait(&self.compact_work);
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
            {
                let mut cs = self.lock_compact();
                cs.running = false;
                self.compact_done.notify_all();
            }
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
            let mut bg = self.lock_bg_after_panic();
            bg.error.get_or_insert_with(|| Arc::clone(&e));
            self.done.notify_all();
        }
        let mut cs = self.lock_compact_after_panic();
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
        cs = cs.wait(&inner.compact_done);
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

/// Waits until the worker is idle: no job running, no manual request
/// pending and nothing [`pick`] would start. Flushes that land meanwhile
/// can give it more work, which this waits for too.
pub(crate) fn wait_idle(inner: &Inner) -> Result<()> {
    let mut cs = inner.lock_compact();
    loop {
        if let Some(e) = &cs.error {
            return Err(Error::Background(Arc::clone(e)));
        }
        if cs.stop {
            return Err(Error::Closed);
        }
        if !cs.running && cs.manual.is_none() && pick(inner, &inner.levels()).is_none() {
            return Ok(());
        }
        // Woken after every job; the timeout covers a flush that installed
        // a table between our check and the wait (it wakes only the worker).
        cs = cs.wait_timeout(&inner.compact_done, std::time::Duration::from_millis(10));
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
