//! Which compaction to run: the level shapes decide (see the module docs
//! of [`super`]).

use std::sync::Arc;

use crate::inner::{Inner, Levels};
use crate::limits::LEVELS;
use crate::table::reader::Table;

/// One compaction: inputs (with their levels) merged into `output_level`.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) inputs: Vec<(usize, Arc<Table>)>,
    pub(super) output_level: usize,
    /// No rewrite: every input is moved to `output_level` as it is.
    pub(super) trivial: bool,
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
pub(super) fn job_into_next(levels: &Levels, level: usize, inputs: Vec<Arc<Table>>) -> Option<Job> {
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

/// Bytes on disk per live (non-tombstone) entry over every table: what a
/// tombstone is taken to free once it meets the version it deletes. Live
/// entries are counted as at least half of all entries, so a store of
/// mostly tombstones (after a mass delete) weighs each at no more than
/// twice the bytes per entry, instead of as freeing the whole store.
fn bytes_per_put(levels: &Levels) -> f64 {
    let (bytes, entries, puts) =
        levels
            .iter()
            .flatten()
            .fold((0u64, 0u64, 0u64), |(b, e, p), t| {
                (
                    b + t.size_bytes(),
                    e + t.entries(),
                    p + (t.entries() - t.deletions()),
                )
            });
    let puts = puts.max(entries / 2);
    if puts == 0 {
        0.0
    } else {
        bytes as f64 / puts as f64
    }
}

/// A table's size with its tombstones counted at what they free
/// (`per_put` bytes each): **why** — a tombstone takes some 50 bytes but
/// hides a whole older version below it, which is only freed when the
/// two meet in a compaction. Counted by file size alone, a level full of
/// tombstones looks small and is compacted last, and the versions it
/// deletes stay on disk — and the node's trie writes each changed page
/// under a new key every block and deletes the old one. RocksDB weighs
/// deletions the same way ("compensated file size").
fn compensated_bytes(table: &Table, per_put: f64) -> f64 {
    table.size_bytes() as f64 + table.deletions() as f64 * per_put
}

/// The compaction the level shapes call for, if any: L0 by file count
/// first (it slows reads and stalls writers), then the level furthest over
/// its target, sizes compensated for tombstones ([`compensated_bytes`]).
pub(super) fn pick(inner: &Inner, levels: &Levels) -> Option<Job> {
    let o = &inner.options;
    if levels[0].len() >= o.l0_compaction_trigger {
        return job_into_next(levels, 0, levels[0].clone());
    }
    let per_put = bytes_per_put(levels);
    let mut best: Option<(usize, f64)> = None;
    for (level, tables) in levels.iter().enumerate().take(LEVELS - 1).skip(1) {
        let bytes: f64 = tables.iter().map(|t| compensated_bytes(t, per_put)).sum();
        let score = bytes / o.level_target_bytes(level) as f64;
        if score > 1.0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((level, score));
        }
    }
    let (level, _) = best?;
    // The table that takes the most (compensated) bytes off its level per
    // byte rewritten: with no tombstones, the one overlapping the fewest
    // next-level bytes for its size (often none: a trivial move); a table
    // of tombstones over much older data comes first, since merging it
    // frees what it deletes.
    let next = &levels[level + 1];
    let gain = |t: &Arc<Table>| {
        let overlap: u64 = next
            .iter()
            .filter(|n| n.overlaps(t.smallest(), t.largest()))
            .map(|n| n.size_bytes())
            .sum();
        compensated_bytes(t, per_put) / (t.size_bytes() + overlap).max(1) as f64
    };
    let gains: Vec<(f64, &Arc<Table>)> = levels[level].iter().map(|t| (gain(t), t)).collect();
    // Reversed: on a tie `max_by` keeps the last, so the first in key
    // order wins.
    let (_, table) = gains.into_iter().rev().max_by(|a, b| a.0.total_cmp(&b.0))?;
    job_into_next(levels, level, vec![Arc::clone(table)])
}
