//! Errors of the merkle module.

use thiserror::Error;

/// An error from building, updating or reading the trie.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Input pairs or updates were not in strictly increasing path order.
    #[error("input not strictly sorted by path at index {index}")]
    UnsortedInput {
        /// Position of the first out-of-order element.
        index: u64,
    },
    /// A batch exceeded `limits::BATCH_UPDATES_MAX`.
    #[error("batch of {len} updates exceeds the limit of {max}")]
    BatchTooLarge {
        /// Updates in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node store failed.
    #[error("node store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record failed validation (bad length, order, hash).
    #[error("corrupt trie record {key_hex} at byte {offset}: {reason}")]
    Corruption {
        /// The store key of the record, in hex.
        key_hex: String,
        /// Byte offset in the value where validation failed.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The requested version is newer than the latest or already pruned.
    #[error("version {version} not retained (retained: {oldest}..={latest})")]
    VersionNotRetained {
        /// The version asked for.
        version: u64,
        /// Oldest version still provable.
        oldest: u64,
        /// Latest committed version.
        latest: u64,
    },
    /// A previous write batch failed; the trie refuses writes until it is
    /// reopened from its store (the store may hold a partial batch).
    #[error("trie poisoned by an earlier failed write; reopen it")]
    Poisoned,
    /// An invalid configuration value.
    #[error("invalid trie config: {0}")]
    Config(&'static str),
    /// A range was asked for with `lo > hi`.
    #[error("range bounds inverted: lo {lo_hex} > hi {hi_hex}")]
    RangeInverted {
        /// The lower bound, in hex.
        lo_hex: String,
        /// The upper bound, in hex.
        hi_hex: String,
    },
    /// A [`super::Staged`] version was installed on a trie that is not at
    /// the version it was staged from (another version was installed or
    /// applied in between).
    #[error("staged version {staged} does not follow the trie's version {current}")]
    StaleStage {
        /// The version the stage would install.
        staged: u64,
        /// The trie's version now.
        current: u64,
    },
}

/// An error decoding proof bytes (untrusted input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// More bytes than any valid proof has; rejected before parsing.
    #[error("proof of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Input length.
        len: usize,
        /// `limits::PROOF_BYTES_MAX`.
        max: usize,
    },
    /// The input ended early.
    #[error("proof truncated: need {needed} bytes, got {len}")]
    Truncated {
        /// Bytes the header says the proof has (so far).
        needed: usize,
        /// Input length.
        len: usize,
    },
    /// Bytes after the end the header describes.
    #[error("proof has {len} bytes but its header describes {expected}")]
    TrailingBytes {
        /// Input length.
        len: usize,
        /// Length the header describes.
        expected: usize,
    },
    /// Unknown format byte.
    #[error("unknown proof format {0}")]
    UnknownFormat(u8),
    /// Unknown terminal kind byte.
    #[error("unknown proof terminal kind {0}")]
    UnknownTerminal(u8),
    /// Depth above 256.
    #[error("proof depth {depth} exceeds 256")]
    DepthTooLarge {
        /// The depth read.
        depth: u16,
    },
    /// A bitmap bit past the depth was set (non-canonical encoding).
    #[error("proof bitmap has bits set past its depth")]
    NonZeroPadding,
    /// A sibling marked present was the empty hash (non-canonical encoding).
    #[error("proof sibling {index} is marked present but empty")]
    EmptySiblingPresent {
        /// Sibling level.
        index: usize,
    },
}

/// An error decoding or verifying a range proof (untrusted input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RangeProofError {
    /// More bytes than any valid range proof has; rejected before parsing.
    #[error("range proof of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Input length.
        len: usize,
        /// `limits::RANGE_PROOF_BYTES_MAX`.
        max: usize,
    },
    /// The input ended early.
    #[error("range proof truncated: need {needed} bytes, got {len}")]
    Truncated {
        /// Bytes needed to read the next field.
        needed: usize,
        /// Input length.
        len: usize,
    },
    /// Bytes after the last item the header announces.
    #[error("range proof has {len} bytes but its items end at {expected}")]
    TrailingBytes {
        /// Input length.
        len: usize,
        /// Where the last item ends.
        expected: usize,
    },
    /// Unknown format byte.
    #[error("unknown range proof format {0}")]
    UnknownFormat(u8),
    /// Unknown item tag.
    #[error("unknown range proof item tag {tag} at byte {offset}")]
    UnknownTag {
        /// The tag read.
        tag: u8,
        /// Its byte offset.
        offset: usize,
    },
    /// More items than `limits::RANGE_PROOF_ITEMS_MAX`.
    #[error("range proof of {count} items exceeds the limit of {max}")]
    TooManyItems {
        /// Items announced or given.
        count: usize,
        /// `limits::RANGE_PROOF_ITEMS_MAX`.
        max: usize,
    },
    /// An internal-node item carries the empty hash (an empty subtree has
    /// its own item; non-canonical).
    #[error("range proof item {index} is a node with the empty hash")]
    EmptyNodeItem {
        /// Item position.
        index: usize,
    },
    /// `lo > hi`.
    #[error("range bounds inverted: lo > hi")]
    RangeInverted,
    /// Leaves not in strictly increasing path order.
    #[error("leaves not strictly sorted by path at index {index}")]
    Unsorted {
        /// Position of the first out-of-order leaf.
        index: usize,
    },
    /// A leaf of the run lies outside `[lo, hi]`.
    #[error("run leaf {index} lies outside the range")]
    LeafOutsideRange {
        /// Position of the leaf in the run.
        index: usize,
    },
    /// An outside leaf item does not lie under the node it stands for (it
    /// could be an in-range leaf moved out of the range).
    #[error("outside leaf item {index} does not lie under its node at depth {depth}")]
    OutsideLeafNotUnderNode {
        /// Item position.
        index: usize,
        /// Depth of the node it stands for.
        depth: usize,
    },
    /// The walk needed more outside items than the proof has.
    #[error("range proof has {len} outside items, the range needs more")]
    TooFewItems {
        /// Items in the proof.
        len: usize,
    },
    /// The walk left outside items unused.
    #[error("range proof has {len} outside items, the range uses {used}")]
    UnusedItems {
        /// Items the walk consumed.
        used: usize,
        /// Items in the proof.
        len: usize,
    },
    /// Run and outside items do not hash to the root.
    #[error("range proof does not hash to the root")]
    RootMismatch,
}
