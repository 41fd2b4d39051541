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

/// The tables of `level` (1 or deeper: a disjoint, sorted run) whose
/// ranges meet `[lo, hi]`: one contiguous stretch, found by binary search.
fn overlapping<'a>(level: &'a [Arc<Table>], lo: &[u8], hi: &[u8]) -> &'a [Arc<Table>] {
    let from = level.partition_point(|t| t.largest() < lo);
    let to = from + level[from..].partition_point(|t| t.smallest() <= hi);
    &level[from..to]
}

/// A job merging `inputs` of `level` with what they overlap in `level + 1`
/// (see [`job_into`]).
pub(super) fn job_into_next(levels: &Levels, level: usize, inputs: Vec<Arc<Table>>) -> Option<Job> {
    job_into(levels, level, inputs, level + 1)
}

/// A job merging `inputs` of `level` with what they overlap in `output`,
/// a deeper level; every level in between must be empty (else older
/// versions there would end up above newer ones). A trivial move if
/// `output` holds nothing they overlap and `level` ≥ 1: its tables are
/// disjoint, so moving them keeps the output a disjoint run.
pub(super) fn job_into(
    levels: &Levels,
    level: usize,
    inputs: Vec<Arc<Table>>,
    output: usize,
) -> Option<Job> {
    assert!(
        output > level && output < LEVELS,
        "compaction from L{level} into L{output}"
    );
    // Checked in release builds too: a wrong caller would put older
    // versions above newer ones, and reads would return stale values.
    assert!(
        levels[level + 1..output].iter().all(|l| l.is_empty()),
        "compaction from L{level} into L{output} over a non-empty level"
    );
    let (lo, hi) = key_span(inputs.iter())?;
    let next = overlapping(&levels[output], lo, hi);
    // Into the last level, tables holding tombstones are rewritten, not
    // moved: nothing compacts the last level by size, so a tombstone
    // moved there would stay forever, although nothing below needs it.
    let into_last_with_deletes = output == LEVELS - 1 && inputs.iter().any(|t| t.deletions() > 0);
    let trivial = level >= 1 && next.is_empty() && !into_last_with_deletes;
    let mut all: Vec<(usize, Arc<Table>)> = inputs.into_iter().map(|t| (level, t)).collect();
    all.extend(next.iter().map(|t| (output, Arc::clone(t))));
    Some(Job {
        inputs: all,
        output_level: output,
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

/// Bytes and entries of the tables of `level` whose ranges meet
/// `[lo, hi]` ([`overlapping`]).
fn overlap_totals(level: &[Arc<Table>], lo: &[u8], hi: &[u8]) -> (u64, u64) {
    overlapping(level, lo, hi)
        .iter()
        .fold((0, 0), |(b, e), t| (b + t.size_bytes(), e + t.entries()))
}

/// A table's size with its tombstones counted at what they free:
/// **why** — a tombstone takes some 50 bytes but hides a whole older
/// version below it, which is only freed when the two meet in a
/// compaction. Counted by file size alone, a level full of tombstones
/// looks small and is compacted last, and the versions it deletes stay
/// on disk — and the node's trie writes each changed page under a new
/// key every block and deletes the old one. RocksDB weighs deletions the
/// same way ("compensated file size").
///
/// Each tombstone counts as the mean entry of the next level's tables
/// over the same keys (`below_bytes / below_entries`: mostly where it
/// meets its version), never less than the store-wide `per_put`:
/// **why** — values differ by orders of magnitude between key ranges
/// (a pruned block's 40 KB body against a 100-byte index entry), and one
/// store-wide mean made a table of block tombstones look free to keep
/// while the bodies it deletes piled up below.
fn compensated_bytes(table: &Table, per_put: f64, below: (u64, u64)) -> f64 {
    let (below_bytes, below_entries) = below;
    let per_delete = if below_entries == 0 {
        per_put
    } else {
        (below_bytes as f64 / below_entries as f64).max(per_put)
    };
    table.size_bytes() as f64 + table.deletions() as f64 * per_delete
}

/// Where L0 compacts to, and what each level may hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Shape {
    /// The level L0 compacts into (RocksDB's "base level"): 1 with static
    /// targets; with dynamic ones the shallowest level the data needs.
    pub(super) base: usize,
    /// Target bytes per level; levels above `base` have none (0) and
    /// hold no data.
    pub(super) targets: [u64; LEVELS],
}

/// The level targets for `levels` (see [`crate::Options::level_targets_dynamic`]).
///
/// Dynamic: the largest level (by file bytes) is taken as the last
/// level's size; going up, each level targets `ratio` times less, and
/// the base level is the first whose target is at most `level1_bytes`
/// — but never below the first level holding data (RocksDB's rule), so
/// no level above the base ever holds any. No level targets less than
/// `level1_bytes` (a level smaller than L0 would be compacted before it,
/// and L0 would stall writers).
///
/// **Why not move the base below data and drain the levels above it:**
/// bulk ingests of overlapping runs land one per level from L6 up (a
/// state-synced node's trie adoption did, before it wrote one disjoint
/// run per trie level); draining them rewrote each run level by level
/// while the adoption ran and made a 10 M-account join take 43 s
/// instead of 27 s. A store whose upper levels hold data keeps its base
/// there and sizes the levels below it from the largest.
///
/// `level_bytes` holds each level's file bytes, L0 first.
pub(super) fn shape(level_bytes: &[u64], level1_bytes: u64, ratio: u64, dynamic: bool) -> Shape {
    let mut targets = [0u64; LEVELS];
    if !dynamic {
        let mut target = level1_bytes;
        for t in targets.iter_mut().skip(1) {
            *t = target;
            target = target.saturating_mul(ratio);
        }
        return Shape { base: 1, targets };
    }
    let largest = level_bytes.iter().skip(1).copied().max().unwrap_or(0);
    let first = (1..LEVELS)
        .find(|&l| level_bytes[l] > 0)
        .unwrap_or(LEVELS - 1);
    let mut sized = LEVELS - 1;
    let mut size = largest;
    while sized > 1 && size > level1_bytes {
        sized -= 1;
        size /= ratio;
    }
    let base = sized.min(first);
    for (level, t) in targets.iter_mut().enumerate().skip(base) {
        let mut target = size;
        for _ in sized..level {
            target = target.saturating_mul(ratio);
        }
        for _ in level..sized {
            target /= ratio;
        }
        *t = target.max(level1_bytes);
    }
    Shape { base, targets }
}

/// The compaction the level shapes call for, if any: L0 by file count
/// first (it slows reads and stalls writers), into the base level; then
/// the level furthest over its target, sizes compensated for tombstones
/// ([`compensated_bytes`]).
pub(super) fn pick(inner: &Inner, levels: &Levels) -> Option<Job> {
    let o = &inner.options;
    let level_bytes: Vec<u64> = levels
        .iter()
        .map(|l| l.iter().map(|t| t.size_bytes()).sum())
        .collect();
    let shape = shape(
        &level_bytes,
        o.level1_bytes,
        o.level_size_ratio,
        o.level_targets_dynamic,
    );
    if levels[0].len() >= o.l0_compaction_trigger {
        return job_into(levels, 0, levels[0].clone(), shape.base);
    }
    let per_put = bytes_per_put(levels);
    let below = |level: usize, t: &Arc<Table>| {
        overlap_totals(&levels[level + 1], t.smallest(), t.largest())
    };
    let mut best: Option<(usize, f64)> = None;
    for (level, tables) in levels.iter().enumerate().take(LEVELS - 1).skip(1) {
        if tables.is_empty() {
            continue;
        }
        assert!(
            level >= shape.base,
            "L{level} holds data above the base level"
        );
        let bytes: f64 = tables
            .iter()
            .map(|t| compensated_bytes(t, per_put, below(level, t)))
            .sum();
        let score = bytes / shape.targets[level] as f64;
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
    let gain = |t: &Arc<Table>| {
        let under = below(level, t);
        compensated_bytes(t, per_put, under) / (t.size_bytes() + under.0).max(1) as f64
    };
    let gains: Vec<(f64, &Arc<Table>)> = levels[level].iter().map(|t| (gain(t), t)).collect();
    // Reversed: on a tie `max_by` keeps the last, so the first in key
    // order wins.
    let (_, table) = gains.into_iter().rev().max_by(|a, b| a.0.total_cmp(&b.0))?;
    job_into_next(levels, level, vec![Arc::clone(table)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sizes(at: &[(usize, u64)]) -> [u64; LEVELS] {
        let mut s = [0; LEVELS];
        for &(l, b) in at {
            s[l] = b;
        }
        s
    }

    #[test]
    fn static_targets_grow_by_the_ratio_from_l1() {
        let s = shape(&sizes(&[(6, 10_000 * MIB)]), 256 * MIB, 10, false);
        assert_eq!(s.base, 1);
        assert_eq!(&s.targets[1..4], &[256 * MIB, 2560 * MIB, 25_600 * MIB]);
    }

    #[test]
    fn a_small_store_compacts_l0_into_the_last_level() {
        for store in [
            [0; LEVELS],
            sizes(&[(6, 200 * MIB)]),
            sizes(&[(6, 256 * MIB)]),
        ] {
            let s = shape(&store, 256 * MIB, 10, true);
            assert_eq!(s.base, LEVELS - 1, "{store:?}");
            assert_eq!(&s.targets[..LEVELS - 1], &[0; LEVELS - 1]);
        }
    }

    #[test]
    fn the_base_level_rises_one_level_per_ratio_of_growth() {
        // 300 MiB at the bottom: L5 would target 30 MiB, raised to the
        // 256 MiB floor.
        let s = shape(&sizes(&[(6, 300 * MIB)]), 256 * MIB, 10, true);
        assert_eq!(
            (s.base, s.targets[5], s.targets[6]),
            (5, 256 * MIB, 300 * MIB)
        );
        // 30 GiB: L3 targets 30 MiB → 256 MiB, L4 307 MiB, L5 3 GiB.
        let s = shape(
            &sizes(&[(6, 30_720 * MIB), (4, 10 * MIB)]),
            256 * MIB,
            10,
            true,
        );
        assert_eq!(s.base, 3);
        assert_eq!(&s.targets[..3], &[0, 0, 0]);
        let l3 = 30_720 * MIB / 1000;
        assert_eq!(&s.targets[3..], &[256 * MIB, l3 * 10, l3 * 100, l3 * 1000]);
        // Never below data: a store with data in L2 (written with static
        // targets, or an adoption's runs) keeps its base there; the
        // levels below are sized from the largest as before.
        let s = shape(
            &sizes(&[(2, 900 * MIB), (6, 100 * MIB)]),
            256 * MIB,
            10,
            true,
        );
        assert_eq!(s.base, 2);
        assert_eq!(&s.targets[..3], &[0, 0, 256 * MIB]);
        assert_eq!(s.targets[5], 256 * MIB);
        assert_eq!(s.targets[6], 900 * MIB);
        // Beyond what LEVELS - 1 levels of ratio 10 hold: L1 is the base
        // and the targets still grow down from it.
        let s = shape(&sizes(&[(6, u64::MAX / 2)]), 256 * MIB, 10, true);
        assert_eq!(s.base, 1);
        assert!(s.targets.windows(2).skip(1).all(|w| w[0] <= w[1]), "{s:?}");
    }
}
