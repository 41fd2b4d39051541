//! Running one compaction: merge the inputs, write what survives to new
//! tables, install them with one manifest edit (see the module docs of
//! [`super`]).

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::pick::Job;
use crate::error::Result;
use crate::inner::{Inner, Levels};
use crate::iter::{Merge, Source};
use crate::outputs::Outputs;
use crate::table::reader::Table;
use crate::version::{EditOp, TableMeta, VersionEdit};

/// Whether a level below `output_level` may hold `key`: a table there
/// whose range holds it and whose bloom filter does not rule it out.
/// **Why the filter:** by range alone, one wide table deep down (a bulk
/// ingest of the whole state, say) keeps every tombstone above it alive
/// forever, although it holds none of their keys; the filter has no false
/// negatives, so a "no" is certain.
fn deeper_holds(levels: &Levels, output_level: usize, key: &[u8]) -> bool {
    levels.iter().skip(output_level + 1).any(|level| {
        let i = level.partition_point(|t| t.largest() < key);
        level
            .get(i)
            .is_some_and(|t| t.smallest() <= key && t.may_contain(key))
    })
}

/// What became of a job.
pub(super) enum Outcome {
    Installed,
    /// `close` was called mid-merge; nothing changed.
    Stopped,
}

impl Inner {
    /// Merges the inputs of `job` into new tables, dropping what no reader
    /// can see (module docs), and installs them.
    pub(super) fn run_job(&self, levels: &Levels, job: Job) -> Result<Outcome> {
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
        let mut out = Outputs::default();
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
        // Whether no deeper level may hold the key: asked only for a
        // tombstone (a bloom probe per deeper level), once per key.
        let mut bottom: Option<bool> = None;
        while let Some(e) = merge.next_entry()? {
            if first || e.key != key {
                first = false;
                if out.open_is_full(self) {
                    out.finish_open(self)?;
                    if self.lock_compact().stop {
                        return Ok(false);
                    }
                }
                key.clear();
                key.extend_from_slice(&e.key);
                covered = false;
                bottom = None;
            }
            if covered {
                continue;
            }
            if e.seq <= oldest_read_seq {
                covered = true;
                if e.value.is_none()
                    && *bottom.get_or_insert_with(|| !deeper_holds(levels, job.output_level, &key))
                {
                    continue;
                }
            }
            out.builder(self)?.add(&e.key, e.seq, e.value.as_deref())?;
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
        let mut vs = self.lock_versions();
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
            let mut st = self.write_state();
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
