//! Bulk ingestion: a sorted run written straight into tables.
//!
//! [`crate::Db::ingest_sorted`] takes entries in strictly ascending key
//! order and writes them as sorted tables with no WAL and no memtable
//! (the way RocksDB ingests external files), then installs the tables in
//! one manifest edit. A chain's genesis with millions of accounts, or the
//! chunks of a state sync, load at table-writing speed: no record is
//! written twice, and nothing waits for a flush or a compaction.
//!
//! # Rules
//! - The whole run gets one new sequence number, above every write before
//!   it: it shadows older versions of its keys, and a snapshot taken
//!   before it does not see it.
//! - The run goes to the deepest level where no table of that level or
//!   any shallower one overlaps its key range (a fresh store: the bottom
//!   level, so it is never compacted again), else to the front of L0.
//!   Reads search shallow levels first; nothing shallower holds its keys.
//! - Keys of the range must not be in the memtable or a frozen memtable
//!   (their versions there are older but would be read first): when they
//!   are, the memtables are flushed to L0 first, and the run goes in front
//!   of them.
//! - The writer lock is held for the whole ingestion, tables included:
//!   writes wait. A run's sequence number must be the newest *when it
//!   becomes visible*, or a snapshot taken in between would see it appear
//!   later; ingestion is for loading (a genesis, a state sync), not for
//!   a store under write load. The compaction worker is let finish its
//!   job and kept from starting another while the run is placed, so the
//!   level chosen is still free when installed.
//! - Durable on return: every table and the directory are fsynced before
//!   the manifest edit that names them, and the edit is synced. A crash
//!   before the edit leaves unnamed tables, which the next open deletes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::inner::{Inner, KeyRange, Levels};
use crate::limits::{KEY_BYTES_MAX, LEVELS, VALUE_BYTES_MAX};
use crate::outputs::Outputs;
use crate::table::reader::Table;
use crate::version::{EditOp, VersionEdit};

/// What an ingestion wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Entries written.
    pub entries: u64,
    /// Tables written.
    pub tables: usize,
    /// Bytes of those tables.
    pub table_bytes: u64,
    /// The level they were installed in (0 when the run overlapped
    /// every level's tables, or nothing was written).
    pub level: usize,
    /// The sequence number the run was written at.
    pub seq: u64,
}

impl Inner {
    /// See [`crate::Db::ingest_sorted`].
    pub(crate) fn ingest_sorted<K, V>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<IngestStats>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut w = self.lock_writer()?;
        let seq = w.next_seq;
        let mut out = Outputs::default();
        let (first, last, count) = match self.write_run(entries, seq, &mut out) {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Ok(IngestStats {
                    seq,
                    ..IngestStats::default()
                })
            }
            Err(e) => {
                out.abandon();
                return Err(e);
            }
        };
        let range = KeyRange {
            start: std::ops::Bound::Included(first),
            end: std::ops::Bound::Included(last),
        };
        // Frozen or active memtables holding keys of the range would be
        // read before the run: they go to tables first (the writer lock is
        // held, so nothing new lands in them meanwhile).
        if self.memtables_overlap(&range) {
            let flushed = if self.read_state().mem.is_empty() {
                Ok(self.lock_bg().frozen)
            } else {
                self.freeze(&mut w)
            };
            if let Err(e) = flushed.and_then(|id| self.wait_flushed(id)) {
                out.abandon();
                return Err(e);
            }
        }
        w.next_seq = seq + 1;
        let mut cs = self.lock_compact();
        while cs.running {
            cs = cs.wait(&self.compact_done);
        }
        let written = &out.done;
        let level = {
            let mut vs = self.lock_versions();
            let levels = Arc::clone(&self.read_state().tables);
            let level = target_level(&levels, &range);
            let mut ops: Vec<EditOp> = written
                .iter()
                .map(|(_, meta)| EditOp::AddTable {
                    level: level as u8,
                    table: meta.clone(),
                })
                .collect();
            ops.push(EditOp::LastSeq(seq));
            ops.push(EditOp::NextFileNumber(vs.version.next_file_number));
            let edit = VersionEdit { ops };
            self.poison(vs.manifest.append(&edit))?;
            self.poison(vs.version.apply(&self.dir, 0, &edit))?;
            let mut st = self.write_state();
            let mut levels: Levels = (*st.tables).clone();
            if level == 0 {
                // Newest first: the run (one seq, disjoint tables) goes
                // in front of every L0 table, in any order among itself.
                let tables: Vec<Arc<Table>> = written.iter().map(|(t, _)| Arc::clone(t)).collect();
                levels[0].splice(0..0, tables);
            } else {
                levels[level].extend(written.iter().map(|(t, _)| Arc::clone(t)));
                levels[level].sort_by(|a, b| a.smallest().cmp(b.smallest()));
            }
            st.tables = Arc::new(levels);
            level
        };
        self.visible_seq.store(seq, Ordering::Release);
        drop(cs);
        drop(w);
        if level == 0 {
            self.notify_compaction();
        }
        Ok(IngestStats {
            entries: count,
            tables: written.len(),
            table_bytes: written.iter().map(|(_, m)| m.size_bytes).sum(),
            level,
            seq,
        })
    }

    /// Writes the run as tables at `seq` into `out`; returns its first
    /// and last key and its length, or `None` when it is empty.
    #[allow(clippy::type_complexity)]
    fn write_run<K, V>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        seq: u64,
        out: &mut Outputs,
    ) -> Result<Option<(Vec<u8>, Vec<u8>, u64)>>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut first: Option<Vec<u8>> = None;
        let mut last: Vec<u8> = Vec::new();
        let mut count = 0u64;
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            if key.is_empty() || key.len() > KEY_BYTES_MAX {
                return Err(Error::InvalidArgument(format!(
                    "ingest_sorted: key of {} bytes (1..={KEY_BYTES_MAX})",
                    key.len()
                )));
            }
            if value.len() > VALUE_BYTES_MAX {
                return Err(Error::InvalidArgument(format!(
                    "ingest_sorted: value of {} bytes (at most {VALUE_BYTES_MAX})",
                    value.len()
                )));
            }
            if first.is_some() && key <= last.as_slice() {
                return Err(Error::InvalidArgument(
                    "ingest_sorted: keys must be strictly ascending".into(),
                ));
            }
            out.builder(self)?.add(key, seq, Some(value))?;
            count += 1;
            if first.is_none() {
                first = Some(key.to_vec());
            }
            last.clear();
            last.extend_from_slice(key);
            if out.open_is_full(self) {
                out.finish_open(self)?;
            }
        }
        out.finish_open(self)?;
        Ok(first.map(|f| (f, last, count)))
    }

    /// Whether the active or a frozen memtable holds a key of `range`.
    fn memtables_overlap(&self, range: &KeyRange) -> bool {
        let st = self.read_state();
        let start = range.start.as_ref().map(Vec::as_slice);
        let end = range.end.as_ref().map(Vec::as_slice);
        std::iter::once(&st.mem)
            .chain(st.imm.iter().map(|i| &i.mem))
            .any(|m| m.holds_key_in(start, end))
    }
}

/// The deepest level whose tables, and every shallower level's, are
/// disjoint from `range`; 0 when L0 itself overlaps it.
fn target_level(levels: &Levels, range: &KeyRange) -> usize {
    debug_assert_eq!(levels.len(), LEVELS);
    let mut level = 0;
    for (l, tables) in levels.iter().enumerate() {
        if tables.iter().any(|t| range.overlaps(t)) {
            break;
        }
        level = l;
    }
    level
}
