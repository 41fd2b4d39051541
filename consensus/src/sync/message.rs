//! The sync messages and their encoding (layout in the `sync` module docs).
//!
//! Decoding is strict like `wire`: the whole input is checked against the
//! largest valid message before anything is read, every count and length
//! against its limit before anything is allocated, only canonical forms are
//! accepted, and trailing bytes are an error. Semantic checks that need the
//! request (order of keys, the range, the proof) are `verify_chunk`'s.

use strata_storage::merkle::limits::RANGE_PROOF_BYTES_MAX;
use strata_storage::merkle::{RangeProof, RangeProofError};

use super::limits::{
    CHUNK_BYTES_MAX, CHUNK_ENTRIES_MAX, CHUNK_REQUEST_BYTES, CHUNK_RESPONSE_BYTES_MAX,
    ENTRY_OVERHEAD_BYTES, HEADS_RESPONSE_BYTES_MAX, SNAPSHOT_HEADS_MAX, SNAPSHOT_HEAD_BYTES,
    STATE_VALUE_BYTES_MAX,
};
use crate::block::BlockId;
use crate::error::DecodeError;
use crate::reader::Reader;
use crate::state::StateKey;

/// Tag of [`SyncRequest::Heads`]. Sync tags start at 0x40 so they never
/// collide with the node payload tags of `wire` (1..=5).
pub const TAG_HEADS_REQUEST: u8 = 0x40;
/// Tag of [`SyncRequest::Chunk`].
pub const TAG_CHUNK_REQUEST: u8 = 0x41;
/// Tag of [`SyncResponse::Heads`].
pub const TAG_HEADS: u8 = 0x42;
/// Tag of [`SyncResponse::Chunk`].
pub const TAG_CHUNK: u8 = 0x43;
/// Tag of [`SyncResponse::Refused`].
pub const TAG_REFUSED: u8 = 0x44;

/// Whether `bytes` is a sync message (request or response), from its tag
/// alone: lets a node route request payloads before decoding them.
pub fn is_sync_payload(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&(TAG_HEADS_REQUEST..=TAG_REFUSED)))
}

/// A state snapshot a node serves: the state after committing block
/// `height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotHead {
    /// The committed height.
    pub height: u64,
    /// The id of the block at `height`.
    pub block_id: BlockId,
    /// The state root after executing that block (the root the header of
    /// block `height + 1` carries).
    pub state_root: [u8; 32],
    /// Number of state entries. Not committed by the root: trusted only
    /// through the quorum of `choose_head`, used for progress and the
    /// final count check.
    pub entries: u64,
}

/// Ask for the entries of `[lo, end]` at snapshot `height`, in key order
/// from `lo`, up to `bytes_max` bytes of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Snapshot height.
    pub height: u64,
    /// First key wanted.
    pub lo: StateKey,
    /// Last key of the sub-range (inclusive): the server stops there.
    pub end: StateKey,
    /// Byte budget for the entries; the server uses
    /// `min(bytes_max, CHUNK_BYTES_MAX)` and always sends at least one
    /// entry when there is one.
    pub bytes_max: u32,
}

/// A run of state entries with the range proof that it is exactly the
/// content of `[lo, hi]` at `height`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Snapshot height.
    pub height: u64,
    /// The requested `lo`.
    pub lo: StateKey,
    /// The last entry's key, or the requested `end` when `done`.
    pub hi: StateKey,
    /// No entry lies in `(hi, end]`: the sub-range is complete.
    pub done: bool,
    /// Entries, strictly ascending by key.
    pub entries: Vec<(StateKey, Vec<u8>)>,
    /// Range proof of `[lo, hi]` against the snapshot's state root.
    pub proof: RangeProof,
}

impl Chunk {
    /// Encoded bytes of the entries (what the byte budget counts).
    pub fn entry_bytes(&self) -> usize {
        entry_bytes(&self.entries)
    }
}

/// Encoded bytes of `entries`.
pub(crate) fn entry_bytes(entries: &[(StateKey, Vec<u8>)]) -> usize {
    entries
        .iter()
        .map(|(_, v)| ENTRY_OVERHEAD_BYTES + v.len())
        .sum()
}

/// Why a server refused a request. Not the requester's fault except
/// [`RefuseReason::BadRange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// No snapshot at the requested height (too old, or not reached yet).
    UnknownHeight = 1,
    /// Over this peer's serving budget: retry later or elsewhere.
    Busy = 2,
    /// `lo > end`.
    BadRange = 3,
}

impl RefuseReason {
    fn from_code(code: u8) -> Option<RefuseReason> {
        Some(match code {
            1 => RefuseReason::UnknownHeight,
            2 => RefuseReason::Busy,
            3 => RefuseReason::BadRange,
            _ => return None,
        })
    }
}

/// A state sync request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// Which snapshots do you serve?
    Heads,
    /// Send a chunk.
    Chunk(ChunkRequest),
}

/// A state sync response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResponse {
    /// The snapshots served, heights strictly ascending, at most
    /// [`SNAPSHOT_HEADS_MAX`].
    Heads(Vec<SnapshotHead>),
    /// A chunk.
    Chunk(Chunk),
    /// The request is not served.
    Refused(RefuseReason),
}

impl SyncRequest {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SyncRequest::Heads => vec![TAG_HEADS_REQUEST],
            SyncRequest::Chunk(r) => {
                let mut out = Vec::with_capacity(CHUNK_REQUEST_BYTES);
                out.push(TAG_CHUNK_REQUEST);
                out.extend_from_slice(&r.height.to_le_bytes());
                out.extend_from_slice(&r.lo);
                out.extend_from_slice(&r.end);
                out.extend_from_slice(&r.bytes_max.to_le_bytes());
                assert_eq!(out.len(), CHUNK_REQUEST_BYTES);
                out
            }
        }
    }

    /// Decodes strictly. Any `lo`, `end` and `bytes_max` decode; a server
    /// answers `lo > end` with [`RefuseReason::BadRange`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SyncRequest, DecodeError> {
        if bytes.len() > CHUNK_REQUEST_BYTES {
            return Err(DecodeError::TooLong {
                field: "sync request",
                len: bytes.len(),
                max: CHUNK_REQUEST_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let request = match r.u8("sync tag")? {
            TAG_HEADS_REQUEST => SyncRequest::Heads,
            TAG_CHUNK_REQUEST => SyncRequest::Chunk(ChunkRequest {
                height: r.u64("height")?,
                lo: r.array("lo")?,
                end: r.array("end")?,
                bytes_max: r.u32("bytes_max")?,
            }),
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "sync request tag",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(request)
    }
}

impl SyncResponse {
    /// The encoding.
    ///
    /// # Panics
    /// If the response breaks a limit the decoder checks: more than
    /// [`SNAPSHOT_HEADS_MAX`] heads or heights not strictly ascending, a
    /// value over [`STATE_VALUE_BYTES_MAX`] or entries over
    /// [`CHUNK_BYTES_MAX`]. The server never builds such a response.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SyncResponse::Heads(heads) => {
                assert!(heads.len() <= SNAPSHOT_HEADS_MAX, "see SNAPSHOT_HEADS_MAX");
                assert!(
                    heads.windows(2).all(|w| w[0].height < w[1].height),
                    "heads are sent by ascending height"
                );
                let mut out = Vec::with_capacity(2 + heads.len() * SNAPSHOT_HEAD_BYTES);
                out.push(TAG_HEADS);
                out.push(heads.len() as u8);
                for h in heads {
                    out.extend_from_slice(&h.height.to_le_bytes());
                    out.extend_from_slice(&h.block_id);
                    out.extend_from_slice(&h.state_root);
                    out.extend_from_slice(&h.entries.to_le_bytes());
                }
                out
            }
            SyncResponse::Chunk(c) => {
                let bytes = c.entry_bytes();
                assert!(bytes <= CHUNK_BYTES_MAX, "see CHUNK_BYTES_MAX");
                let proof = c.proof.encode();
                let mut out =
                    Vec::with_capacity(super::limits::CHUNK_FIXED_BYTES + bytes + proof.len());
                out.push(TAG_CHUNK);
                out.extend_from_slice(&c.height.to_le_bytes());
                out.extend_from_slice(&c.lo);
                out.extend_from_slice(&c.hi);
                out.push(u8::from(c.done));
                out.extend_from_slice(&(c.entries.len() as u32).to_le_bytes());
                for (key, value) in &c.entries {
                    assert!(
                        value.len() <= STATE_VALUE_BYTES_MAX,
                        "see STATE_VALUE_BYTES_MAX"
                    );
                    out.extend_from_slice(key);
                    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
                    out.extend_from_slice(value);
                }
                out.extend_from_slice(&(proof.len() as u32).to_le_bytes());
                out.extend_from_slice(&proof);
                assert!(out.len() <= CHUNK_RESPONSE_BYTES_MAX);
                out
            }
            SyncResponse::Refused(reason) => vec![TAG_REFUSED, *reason as u8],
        }
    }

    /// Decodes strictly.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SyncResponse, DecodeError> {
        if bytes.len() > CHUNK_RESPONSE_BYTES_MAX {
            return Err(DecodeError::TooLong {
                field: "sync response",
                len: bytes.len(),
                max: CHUNK_RESPONSE_BYTES_MAX,
            });
        }
        let mut r = Reader::new(bytes);
        let response = match r.u8("sync tag")? {
            TAG_HEADS => {
                if bytes.len() > HEADS_RESPONSE_BYTES_MAX {
                    return Err(DecodeError::TooLong {
                        field: "heads response",
                        len: bytes.len(),
                        max: HEADS_RESPONSE_BYTES_MAX,
                    });
                }
                let count = r.u8("head count")? as usize;
                if count > SNAPSHOT_HEADS_MAX {
                    return Err(DecodeError::TooLong {
                        field: "head count",
                        len: count,
                        max: SNAPSHOT_HEADS_MAX,
                    });
                }
                let mut heads: Vec<SnapshotHead> = Vec::with_capacity(count);
                for _ in 0..count {
                    let head = SnapshotHead {
                        height: r.u64("head height")?,
                        block_id: r.array("head block id")?,
                        state_root: r.array("head state root")?,
                        entries: r.u64("head entries")?,
                    };
                    if heads.last().is_some_and(|last| last.height >= head.height) {
                        return Err(DecodeError::NotSorted {
                            field: "snapshot heights",
                        });
                    }
                    heads.push(head);
                }
                SyncResponse::Heads(heads)
            }
            TAG_CHUNK => SyncResponse::Chunk(r.chunk()?),
            TAG_REFUSED => {
                let code = r.u8("refuse reason")?;
                let reason = RefuseReason::from_code(code).ok_or(DecodeError::UnknownTag {
                    field: "refuse reason",
                    tag: code,
                })?;
                SyncResponse::Refused(reason)
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "sync response tag",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(response)
    }
}

impl<'a> Reader<'a> {
    /// A u32 length or count checked against `max`.
    fn bounded_u32(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    fn chunk(&mut self) -> Result<Chunk, DecodeError> {
        let height = self.u64("height")?;
        let lo = self.array("lo")?;
        let hi = self.array("hi")?;
        let done = match self.u8("done flag")? {
            0 => false,
            1 => true,
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "done flag",
                    tag,
                })
            }
        };
        let count = self.bounded_u32("entry count", CHUNK_ENTRIES_MAX)?;
        // Never reserve more entries than the rest of the input can hold.
        let room = (self.bytes.len() - self.at) / ENTRY_OVERHEAD_BYTES;
        let mut entries = Vec::with_capacity(count.min(room));
        let mut entry_bytes = 0usize;
        for _ in 0..count {
            let key = self.array("entry key")?;
            let len = self.u16("value length")? as usize;
            if len > STATE_VALUE_BYTES_MAX {
                return Err(DecodeError::TooLong {
                    field: "state value",
                    len,
                    max: STATE_VALUE_BYTES_MAX,
                });
            }
            entry_bytes += ENTRY_OVERHEAD_BYTES + len;
            if entry_bytes > CHUNK_BYTES_MAX {
                return Err(DecodeError::TooLong {
                    field: "chunk entries",
                    len: entry_bytes,
                    max: CHUNK_BYTES_MAX,
                });
            }
            let value = self.take("state value", len)?.to_vec();
            entries.push((key, value));
        }
        let proof_len = self.bounded_u32("proof length", RANGE_PROOF_BYTES_MAX)?;
        let proof_at = self.at;
        let proof = RangeProof::decode(self.take("range proof", proof_len)?)
            .map_err(|e| proof_error(e, proof_at))?;
        Ok(Chunk {
            height,
            lo,
            hi,
            done,
            entries,
            proof,
        })
    }
}

/// A range proof's decode error as the crate's [`DecodeError`] (the proof
/// starts at offset `base` of the message).
fn proof_error(e: RangeProofError, base: usize) -> DecodeError {
    match e {
        RangeProofError::Oversized { len, max }
        | RangeProofError::TooManyItems { count: len, max } => DecodeError::TooLong {
            field: "range proof",
            len,
            max,
        },
        RangeProofError::Truncated { .. } => DecodeError::Truncated {
            field: "range proof",
            offset: base,
        },
        RangeProofError::TrailingBytes { len, expected } => DecodeError::TrailingBytes {
            extra: len.saturating_sub(expected),
        },
        RangeProofError::UnknownFormat(format) => DecodeError::UnknownVersion(format),
        RangeProofError::UnknownTag { tag, .. } => DecodeError::UnknownTag {
            field: "range proof item",
            tag,
        },
        // The remaining errors are verification errors, or an internal
        // node with the empty hash (non-canonical: an empty subtree has its
        // own item).
        _ => DecodeError::Mismatch {
            field: "range proof item",
        },
    }
}
