//! Pruning of old history: a node that is not an archive keeps the bodies
//! of its last `blocks_retained` finalized blocks and their transaction
//! index, and deletes older ones, so its disk stays bounded by the state
//! and a window of history instead of growing with every block.
//!
//! What a height's history is (keys in the `db_chain` module docs): its
//! block (`b` + height), its transaction list (`x` + height), its id →
//! height index entry (`i` + block id) and one `n` + transaction id entry
//! per transaction. State, trie pages and the `m`, `g`, `r` records are
//! not history: the trie keeps its own window of roots.
//!
//! **The floor.** One record, `p` → u64 LE, holds the lowest height whose
//! history is still kept (1 when nothing was pruned: height 0 is the
//! genesis, which has no block). Heights below it answer "pruned below
//! height *floor*" ([`PrunedBelow`]). [`prune_next`] deletes the records of
//! the floor's height and moves the floor up by one **in the same batch**,
//! so a crash at any point leaves either both or neither, and pruning
//! resumes where it stopped. The batch is not synced: losing it in a power
//! loss only means pruning that height again.
//!
//! **Why point deletes, not range tombstones.** The two per-height records
//! (`b`, `x`) are contiguous, but they are two keys a height; what makes a
//! height's history large is its transaction index, one `n` entry per
//! transaction under the transaction's id, which is a hash: no key range
//! holds a height's entries and nothing else. A range tombstone would save
//! two deletes out of thousands, so the engine has none.
//!
//! **Who runs it.** This module is sans-thread like the rest of the crate:
//! the node calls [`prune_next`] from a background thread of its own, one
//! height per call, between which the chain's commits go on (each call is
//! one small unsynced write beside the commit's synced one).
//!
//! ```
//! use std::sync::Arc;
//! use strata_consensus::db_chain::DbChain;
//! use strata_consensus::genesis::Genesis;
//! use strata_consensus::history;
//! use strata_storage::{Db, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
//! let chain = DbChain::open(Arc::clone(&db), &Genesis::devnet(4)).unwrap();
//! // A fresh chain has pruned nothing: its floor is height 1.
//! assert_eq!(history::floor(&db).unwrap(), 1);
//! // Keep 100 blocks: at height 0 there is nothing to prune.
//! assert_eq!(history::target_floor(0, 100), 1);
//! assert!(history::prune_next(&db, 1).unwrap().is_none());
//! # drop(chain);
//! ```

use strata_storage::{Db, WriteBatch, WriteOptions};
use thiserror::Error;

use crate::db_chain::{block_record_id, key, ChainError};

/// The key of the floor record.
pub const FLOOR_KEY: &[u8] = b"p";

/// Fewest blocks a pruning node may keep: the heights the engine keeps
/// ids of in memory and answers queries about for free, so a peer a few
/// heights behind can always pull what it misses. An operator keeps far
/// more (the node's default is 100,000); tests keep this few.
pub const BLOCKS_RETAINED_MIN: u64 = 64;

/// A height whose history this node pruned.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error(
    "pruned below height {floor}: this node keeps blocks and transactions from height {floor} on"
)]
pub struct PrunedBelow {
    /// The lowest height still kept.
    pub floor: u64,
}

/// What one [`prune_next`] call removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrunedHeight {
    /// The height pruned (the floor is now one above it).
    pub height: u64,
    /// Transaction index entries deleted.
    pub txs: u64,
    /// Bytes of block and transaction records deleted.
    pub bytes: u64,
}

/// The lowest height whose history `db` keeps (1 when nothing is pruned).
///
/// # Errors
/// Storage failures or a corrupt floor record.
pub fn floor(db: &Db) -> Result<u64, ChainError> {
    match db.get(FLOOR_KEY)? {
        None => Ok(1),
        Some(bytes) => {
            let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                ChainError::Corrupt(format!("floor record of {} bytes", bytes.len()))
            })?;
            Ok(u64::from_le_bytes(raw).max(1))
        }
    }
}

/// The floor a node keeping `retained` blocks wants once `finalized` is
/// its last finalized height: heights `finalized - retained + 1 ..=
/// finalized` are kept.
pub fn target_floor(finalized: u64, retained: u64) -> u64 {
    (finalized + 1).saturating_sub(retained).max(1)
}

/// Prunes the history of the floor's height if it is below `target`,
/// moving the floor up by one in the same batch; `None` when the floor
/// already reached `target`. A height with no records (a node that joined
/// by state sync above it) only moves the floor.
///
/// Must not run concurrently with another `prune_next` on the same `db`
/// (one pruner per node), and `target` must not pass the last finalized
/// height plus one ([`target_floor`] never does).
///
/// # Errors
/// Storage failures or corrupt records (nothing is written then).
pub fn prune_next(db: &Db, target: u64) -> Result<Option<PrunedHeight>, ChainError> {
    let height = floor(db)?;
    if height >= target {
        return Ok(None);
    }
    let hb = height.to_be_bytes();
    let mut batch = WriteBatch::new();
    let mut bytes = 0u64;
    let mut txs = 0u64;
    if let Some(block) = db.get(&key(b'b', &hb))? {
        let id = block_record_id(height, &block)?;
        bytes += block.len() as u64;
        batch.delete(key(b'i', &id));
        batch.delete(key(b'b', &hb));
    }
    if let Some(body) = db.get(&key(b'x', &hb))? {
        for tx in tx_slices(height, &body)? {
            let id = blake3::hash(tx);
            batch.delete(key(b'n', id.as_bytes()));
            batch.delete(key(b'e', id.as_bytes()));
            txs += 1;
        }
        bytes += body.len() as u64;
        batch.delete(key(b'x', &hb));
    }
    batch.put(FLOOR_KEY.to_vec(), (height + 1).to_le_bytes().to_vec());
    db.write(batch, WriteOptions { sync: false })?;
    Ok(Some(PrunedHeight { height, txs, bytes }))
}

/// The encoded transactions of a stored transaction list (`db_chain`'s
/// `x` record, read here and by `ChainReader::read_block`: count u32 LE, then per transaction its length u32 LE and
/// bytes), checked to cover the record exactly.
pub(crate) fn tx_slices(height: u64, body: &[u8]) -> Result<Vec<&[u8]>, ChainError> {
    let corrupt = || ChainError::Corrupt(format!("block {height}: transaction list"));
    let count_bytes: [u8; 4] = body
        .get(..4)
        .ok_or_else(corrupt)?
        .try_into()
        .expect("4 bytes");
    let count = u32::from_le_bytes(count_bytes) as usize;
    if count > crate::block::BLOCK_TXS_MAX {
        return Err(corrupt());
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 4usize;
    for _ in 0..count {
        let len_bytes: [u8; 4] = body
            .get(at..at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes");
        let len = u32::from_le_bytes(len_bytes) as usize;
        at += 4;
        out.push(body.get(at..at + len).ok_or_else(corrupt)?);
        at += len;
    }
    if at != body.len() {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_keeps_the_last_retained_heights() {
        assert_eq!(target_floor(0, 10), 1);
        assert_eq!(target_floor(10, 10), 1);
        assert_eq!(target_floor(11, 10), 2);
        assert_eq!(target_floor(1_000, 10), 991);
        assert_eq!(target_floor(u64::MAX - 1, 1), u64::MAX - 1);
    }

    #[test]
    fn a_transaction_list_must_cover_its_record_exactly() {
        let mut body = 2u32.to_le_bytes().to_vec();
        for tx in [&b"abc"[..], b"de"] {
            body.extend_from_slice(&(tx.len() as u32).to_le_bytes());
            body.extend_from_slice(tx);
        }
        assert_eq!(tx_slices(1, &body).unwrap(), vec![&b"abc"[..], b"de"]);
        assert!(tx_slices(1, &body[..body.len() - 1]).is_err());
        let mut long = body.clone();
        long.push(0);
        assert!(tx_slices(1, &long).is_err());
        assert!(tx_slices(1, &[0xff; 4]).is_err(), "count over the limit");
    }
}
