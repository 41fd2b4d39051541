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

/// The compaction the level shapes call for, if any: L0 by file count
/// first (it slows reads and stalls writers), then the level furthest over
/// its target.
pub(super) fn pick(inner: &Inner, levels: &Levels) -> Option<Job> {
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
