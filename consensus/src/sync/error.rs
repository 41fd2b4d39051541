//! Errors of state sync: what a peer did wrong (so the node can ban it)
//! and what failed locally (so it does not).

use strata_storage::merkle::{self, RangeProofError};

use crate::db_chain::ChainError;
use crate::error::DecodeError;
use crate::state::StateKey;

/// Why state sync failed. [`SyncError::Decode`] and [`SyncError::BadChunk`]
/// are the sending peer's fault ([`SyncError::is_peer_fault`]): the node
/// bans it. Everything else is local.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A peer's sync message does not decode.
    #[error("undecodable sync message: {0}")]
    Decode(#[from] DecodeError),
    /// A peer's chunk fails verification.
    #[error("bad chunk: {reason}")]
    BadChunk {
        /// Which check failed.
        reason: BadChunk,
    },
    /// The snapshot given to the server is at another height than the one
    /// requested: the caller picked the wrong snapshot.
    #[error("snapshot is at height {snapshot}, not the requested height {asked}")]
    SnapshotHeight {
        /// Height of the snapshot's `m` record.
        snapshot: u64,
        /// Height requested.
        asked: u64,
    },
    /// The local chain store failed or holds a corrupt record.
    #[error("local chain store: {0}")]
    Chain(#[from] ChainError),
    /// An invalid [`super::StateSyncConfig`] or resume point.
    #[error("invalid state sync config: {0}")]
    Config(&'static str),
    /// The sync already tracks `max` peers.
    #[error("state sync peer table full ({max} peers)")]
    PeersFull {
        /// `StateSyncConfig::peers_max`.
        max: usize,
    },
    /// `finish` was called with sub-ranges still to fetch.
    #[error("state sync not finished: {ranges_left} sub-ranges left")]
    NotFinished {
        /// Sub-ranges not yet done.
        ranges_left: usize,
    },
    /// Every chunk verified, but their entries do not add up to the head's
    /// count. The entries are right (the range proofs bind them to the
    /// root); the announced count is not, so the head's reporters lied
    /// about it or counted wrong.
    #[error("received {received} state entries, the snapshot head announced {announced}")]
    EntryCount {
        /// Entries received (and resumed from).
        received: u64,
        /// `SnapshotHead::entries`.
        announced: u64,
    },
}

impl SyncError {
    /// True when the peer that sent the message is to blame (ban it).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, SyncError::Decode(_) | SyncError::BadChunk { .. })
    }
}

impl From<strata_storage::Error> for SyncError {
    fn from(e: strata_storage::Error) -> Self {
        SyncError::Chain(ChainError::Storage(e))
    }
}

impl From<merkle::Error> for SyncError {
    fn from(e: merkle::Error) -> Self {
        SyncError::Chain(ChainError::Trie(e))
    }
}

impl From<BadChunk> for SyncError {
    fn from(reason: BadChunk) -> Self {
        SyncError::BadChunk { reason }
    }
}

/// Which check a chunk failed ([`super::verify_chunk`]). Each one means
/// the server is faulty or lying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadChunk {
    /// The answer to a chunk request is not a chunk (nor a refusal).
    #[error("the answer to a chunk request is not a chunk")]
    NotAChunk,
    /// The chunk is for another height.
    #[error("chunk for height {got}, asked for {asked}")]
    WrongHeight {
        /// Height in the chunk.
        got: u64,
        /// Height asked for.
        asked: u64,
    },
    /// The chunk starts at another key than asked.
    #[error(
        "chunk starts at {}, asked for {}",
        hex::encode(got),
        hex::encode(asked)
    )]
    WrongLo {
        /// `lo` in the chunk.
        got: StateKey,
        /// `lo` asked for.
        asked: StateKey,
    },
    /// A value is longer than any state value.
    #[error("entry {index}: value of {len} bytes, over the limit of {max}")]
    ValueTooLong {
        /// Entry position.
        index: usize,
        /// Value length.
        len: usize,
        /// `STATE_VALUE_BYTES_MAX`.
        max: usize,
    },
    /// More than one entry and more bytes than the budget asked for.
    #[error("chunk of {bytes} entry bytes, over the budget of {budget}")]
    OverBudget {
        /// Encoded bytes of the entries.
        bytes: usize,
        /// `min(bytes_max, CHUNK_BYTES_MAX)`.
        budget: usize,
    },
    /// Keys not strictly ascending.
    #[error("entry {index} is not after the one before it")]
    NotAscending {
        /// Position of the first out-of-order entry.
        index: usize,
    },
    /// A key outside the chunk's range (before `lo`, after `hi`, or after
    /// the requested end).
    #[error("entry {index} ({}) lies outside the chunk's range", hex::encode(key))]
    OutsideRange {
        /// Entry position.
        index: usize,
        /// Its key.
        key: StateKey,
    },
    /// Not done, yet no entries: the sync would never move on.
    #[error("chunk is not done but holds no entries")]
    EmptyNotDone,
    /// `hi` is not the last entry's key (not done) or the requested end
    /// (done).
    #[error(
        "chunk hi {} is neither its last key (not done) nor the range end (done)",
        hex::encode(hi)
    )]
    WrongHi {
        /// `hi` in the chunk.
        hi: StateKey,
    },
    /// The range proof does not bind the entries to the head's state root.
    #[error(
        "range proof fails against the state root ({0}): \
         a value was changed, or a key left out or added"
    )]
    Proof(RangeProofError),
}
