//! The serving side: chunks and heads read from a storage snapshot taken
//! right after a commit, so the `s` records, the trie (`t`) and the `m`
//! record it reads all belong to one height.

use strata_storage::Snapshot;

use super::error::SyncError;
use super::limits::{
    CHUNK_BYTES_MAX, ENTRY_OVERHEAD_BYTES, SNAPSHOT_HEADS_MAX, STATE_VALUE_BYTES_MAX,
};
use super::message::{Chunk, ChunkRequest, RefuseReason, SnapshotHead, SyncRequest, SyncResponse};
use crate::db_chain::{snapshot_trie, state_record_key, ChainError};
use crate::state::StateKey;

/// Namespace byte of state entries (`db_chain` key layout).
const NS_STATE: u8 = b's';

/// The head of `snapshot`: its `m` record, checked against the trie, and
/// the number of state entries, **counted by scanning** the `s` namespace
/// (O(state); a node computes it once per served snapshot, see
/// [`ServedSnapshot`]).
///
/// # Errors
/// Storage or trie failures, a missing or corrupt `m` record, or a trie
/// root that differs from it.
pub fn snapshot_head(snapshot: &Snapshot) -> Result<SnapshotHead, SyncError> {
    let (height, block_id, state_root, _) = snapshot_trie(snapshot)?;
    let mut entries = 0u64;
    for item in snapshot.scan_prefix([NS_STATE])? {
        item?;
        entries += 1;
    }
    Ok(SnapshotHead {
        height,
        block_id,
        state_root,
        entries,
    })
}

/// Serves `request` from `snapshot`: the entries with keys in
/// `[lo, end]`, ascending from `lo`, until one more would pass
/// `min(bytes_max, CHUNK_BYTES_MAX)` (at least one when there is one); `hi`
/// is the last one's key, or `end` with `done` when none is left; and the
/// range proof of `[lo, hi]` from the snapshot's trie.
///
/// # Errors
/// [`SyncError::SnapshotHeight`] if `snapshot` is not at `request.height`
/// (pick snapshots by height before calling); storage or trie failures;
/// a corrupt `m` record or state key, a state value over
/// `STATE_VALUE_BYTES_MAX`, or a trie root that differs from the `m`
/// record. A `lo > end` request is answered [`RefuseReason::BadRange`].
pub fn serve_chunk(snapshot: &Snapshot, request: &ChunkRequest) -> Result<SyncResponse, SyncError> {
    let (height, _, _, trie) = snapshot_trie(snapshot)?;
    if height != request.height {
        return Err(SyncError::SnapshotHeight {
            snapshot: height,
            asked: request.height,
        });
    }
    if request.lo > request.end {
        return Ok(SyncResponse::Refused(RefuseReason::BadRange));
    }
    let budget = (request.bytes_max as usize).min(CHUNK_BYTES_MAX);
    let mut entries: Vec<(StateKey, Vec<u8>)> = Vec::new();
    let mut used = 0usize;
    let mut done = true;
    let range = state_record_key(&request.lo)..=state_record_key(&request.end);
    for item in snapshot.scan(range)? {
        let (k, value) = item?;
        let key: StateKey = match k.split_first() {
            Some((&NS_STATE, rest)) => rest.try_into().ok(),
            _ => None,
        }
        .ok_or_else(|| ChainError::Corrupt(format!("state record key {}", hex::encode(&k))))?;
        if value.len() > STATE_VALUE_BYTES_MAX {
            return Err(ChainError::Corrupt(format!(
                "state value {} of {} bytes, over STATE_VALUE_BYTES_MAX",
                hex::encode(key),
                value.len()
            ))
            .into());
        }
        let size = ENTRY_OVERHEAD_BYTES + value.len();
        // The first entry always goes: a chunk must make progress whatever
        // the budget, and one entry fits CHUNK_BYTES_MAX (checked in
        // limits).
        if !entries.is_empty() && used + size > budget {
            done = false;
            break;
        }
        used += size;
        entries.push((key, value));
    }
    let hi = match entries.last() {
        Some((last, _)) if !done => *last,
        _ => request.end,
    };
    let proof = trie.prove_range(&request.lo, &hi)?;
    Ok(SyncResponse::Chunk(Chunk {
        height,
        lo: request.lo,
        hi,
        done,
        entries,
        proof,
    }))
}

/// A snapshot a node serves, with its head computed once.
#[derive(Debug)]
pub struct ServedSnapshot {
    snapshot: Snapshot,
    head: SnapshotHead,
}

impl ServedSnapshot {
    /// Checks `snapshot` and computes its head ([`snapshot_head`]: scans
    /// the state once to count it).
    ///
    /// # Errors
    /// As [`snapshot_head`].
    pub fn new(snapshot: Snapshot) -> Result<ServedSnapshot, SyncError> {
        let head = snapshot_head(&snapshot)?;
        Ok(ServedSnapshot { snapshot, head })
    }

    /// The head.
    pub fn head(&self) -> &SnapshotHead {
        &self.head
    }

    /// The storage snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Answers `request` from the snapshots a node serves: their heads (the
/// highest [`SNAPSHOT_HEADS_MAX`], ascending), a chunk of the one at the
/// requested height, or [`RefuseReason::UnknownHeight`]. Rate limiting
/// (answering [`RefuseReason::Busy`]) is the caller's.
///
/// # Errors
/// As [`serve_chunk`]: local failures only; answer the peer nothing (or
/// `Busy`) and log them.
pub fn respond(
    served: &[ServedSnapshot],
    request: &SyncRequest,
) -> Result<SyncResponse, SyncError> {
    match request {
        SyncRequest::Heads => {
            let mut heads: Vec<SnapshotHead> = served.iter().map(|s| s.head).collect();
            heads.sort_unstable_by_key(|h| h.height);
            heads.dedup_by_key(|h| h.height);
            let skip = heads.len().saturating_sub(SNAPSHOT_HEADS_MAX);
            heads.drain(..skip);
            Ok(SyncResponse::Heads(heads))
        }
        SyncRequest::Chunk(chunk) => match served.iter().find(|s| s.head.height == chunk.height) {
            Some(s) => serve_chunk(&s.snapshot, chunk),
            None => Ok(SyncResponse::Refused(RefuseReason::UnknownHeight)),
        },
    }
}
