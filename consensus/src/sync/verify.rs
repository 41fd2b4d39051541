//! The client's check of a chunk: everything a lying server could change
//! (height, bounds, order, sizes, values, missing or extra keys) is caught
//! here, before anything is written.

use strata_storage::merkle::{value_hash, verify_range, Hash32};

use super::error::{BadChunk, SyncError};
use super::limits::{CHUNK_BYTES_MAX, ENTRY_OVERHEAD_BYTES, STATE_VALUE_BYTES_MAX};
use super::message::{Chunk, ChunkRequest, SnapshotHead};
use crate::db_chain::state_record_key;
use crate::state::StateKey;

/// A chunk that passed [`verify_chunk`]: `entries` are exactly the state
/// entries of `[lo, hi]` at the head's height, strictly ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChunk {
    /// First key of the proven range (the requested `lo`).
    pub lo: StateKey,
    /// Last key of the proven range.
    pub hi: StateKey,
    /// The sub-range is complete (`hi` is its end).
    pub done: bool,
    /// The entries, strictly ascending.
    pub entries: Vec<(StateKey, Vec<u8>)>,
    /// Encoded bytes of the entries.
    pub bytes: u64,
}

impl VerifiedChunk {
    /// The entries as store records (`s` ‖ key → value), strictly
    /// ascending: ready for `Db::ingest_sorted` without a copy of the
    /// values or an allocation per key.
    pub fn records(&self) -> impl Iterator<Item = ([u8; 33], &[u8])> + '_ {
        self.entries.iter().map(|(key, value)| {
            let mut record = [0u8; 33];
            record.copy_from_slice(&state_record_key(key));
            (record, value.as_slice())
        })
    }
}

/// Checks `chunk`, the answer to `asked`, against `head`: the height,
/// `lo`, the byte budget and value sizes, strictly ascending keys inside
/// `[lo, asked.end]`, `hi` (the last key, or `asked.end` when done), and
/// the range proof of `[lo, hi]` against `head.state_root` over the
/// leaves `(key, value_hash(value))`.
///
/// ```
/// # use strata_consensus::sync::{verify_chunk, BadChunk, Chunk, ChunkRequest, SnapshotHead, SyncError};
/// # use strata_storage::merkle::{root_of_sorted, value_hash, RangeProof};
/// let entries: Vec<([u8; 32], Vec<u8>)> = (1u8..=4).map(|i| ([i * 50; 32], vec![i])).collect();
/// let leaves: Vec<_> = entries.iter().map(|(k, v)| (*k, value_hash(v))).collect();
/// let head = SnapshotHead {
///     height: 7,
///     block_id: [1; 32],
///     state_root: root_of_sorted(leaves.iter().copied()).unwrap(),
///     entries: 4,
/// };
/// let asked = ChunkRequest { height: 7, lo: [0; 32], end: [0xff; 32], bytes_max: 1 << 20 };
/// let chunk = Chunk {
///     height: 7,
///     lo: [0; 32],
///     hi: [0xff; 32],
///     done: true,
///     entries: entries.clone(),
///     proof: RangeProof::from_sorted(&leaves, &[0; 32], &[0xff; 32]).unwrap(),
/// };
/// assert_eq!(verify_chunk(&head, &asked, chunk.clone()).unwrap().entries, entries);
/// let mut lie = chunk;
/// lie.entries[2].1 = vec![9];
/// assert!(matches!(
///     verify_chunk(&head, &asked, lie),
///     Err(SyncError::BadChunk { reason: BadChunk::Proof(_) })
/// ));
/// ```
///
/// # Errors
/// [`SyncError::BadChunk`] with the check that failed: the sender is
/// faulty or lying. Never panics.
pub fn verify_chunk(
    head: &SnapshotHead,
    asked: &ChunkRequest,
    chunk: Chunk,
) -> Result<VerifiedChunk, SyncError> {
    verify_with(head, asked, chunk, &mut Vec::new())
}

/// [`verify_chunk`] with a caller's buffer for the leaves, reused across
/// chunks.
pub(crate) fn verify_with(
    head: &SnapshotHead,
    asked: &ChunkRequest,
    chunk: Chunk,
    leaves: &mut Vec<(Hash32, Hash32)>,
) -> Result<VerifiedChunk, SyncError> {
    check(head, asked, &chunk, leaves)?;
    Ok(VerifiedChunk {
        lo: chunk.lo,
        hi: chunk.hi,
        done: chunk.done,
        bytes: chunk.entry_bytes() as u64,
        entries: chunk.entries,
    })
}

fn check(
    head: &SnapshotHead,
    asked: &ChunkRequest,
    chunk: &Chunk,
    leaves: &mut Vec<(Hash32, Hash32)>,
) -> Result<(), BadChunk> {
    if asked.height != head.height || chunk.height != head.height {
        return Err(BadChunk::WrongHeight {
            got: chunk.height,
            asked: asked.height,
        });
    }
    if chunk.lo != asked.lo {
        return Err(BadChunk::WrongLo {
            got: chunk.lo,
            asked: asked.lo,
        });
    }
    let mut bytes = 0usize;
    for (index, (_, value)) in chunk.entries.iter().enumerate() {
        if value.len() > STATE_VALUE_BYTES_MAX {
            return Err(BadChunk::ValueTooLong {
                index,
                len: value.len(),
                max: STATE_VALUE_BYTES_MAX,
            });
        }
        bytes += ENTRY_OVERHEAD_BYTES + value.len();
    }
    let budget = (asked.bytes_max as usize).min(CHUNK_BYTES_MAX);
    if chunk.entries.len() > 1 && bytes > budget {
        return Err(BadChunk::OverBudget { bytes, budget });
    }
    if let Some(index) = chunk.entries.windows(2).position(|w| w[0].0 >= w[1].0) {
        return Err(BadChunk::NotAscending { index: index + 1 });
    }
    if chunk.done {
        if chunk.hi != asked.end {
            return Err(BadChunk::WrongHi { hi: chunk.hi });
        }
    } else {
        let Some((last, _)) = chunk.entries.last() else {
            return Err(BadChunk::EmptyNotDone);
        };
        // `hi < end` too: not done means keys remain after `hi`, and the
        // next request starts at `hi + 1`.
        if chunk.hi != *last || chunk.hi >= asked.end {
            return Err(BadChunk::WrongHi { hi: chunk.hi });
        }
    }
    // Keys ascend and the last is at most `hi <= end`, so only the ends
    // can be out of range. Checked here so that such a key is named as
    // such rather than as a proof failure.
    if let Some((first, _)) = chunk.entries.first().filter(|(k, _)| *k < asked.lo) {
        return Err(BadChunk::OutsideRange {
            index: 0,
            key: *first,
        });
    }
    if let Some((last, _)) = chunk.entries.last().filter(|(k, _)| *k > chunk.hi) {
        return Err(BadChunk::OutsideRange {
            index: chunk.entries.len() - 1,
            key: *last,
        });
    }
    leaves.clear();
    leaves.extend(
        chunk
            .entries
            .iter()
            .map(|(key, value)| (*key, value_hash(value))),
    );
    verify_range(&head.state_root, &chunk.lo, &chunk.hi, leaves, &chunk.proof)
        .map_err(BadChunk::Proof)
}
