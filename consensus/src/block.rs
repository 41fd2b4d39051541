//! Blocks: a header committing to the parent, the state root after the
//! parent, the proposer, a timestamp and the block's sorted transaction ids.
//!
//! Layout (little-endian; also in `docs/protocol.md`):
//!
//! | field        | bytes   |
//! |--------------|---------|
//! | version      | 1       |
//! | height       | 8       |
//! | parent       | 32      |
//! | state_root   | 32      | root after executing the parent
//! | proposer     | 32      |
//! | timestamp_ms | 8       |
//! | txs_hash     | 32      | blake3 of the concatenated sorted ids
//! | tx count     | 4       | at most [`BLOCK_TXS_MAX`]
//! | tx ids       | 32 each | strictly ascending
//!
//! The id is blake3 of the header (everything before the tx count), and the
//! header commits to the ids through `txs_hash`, so a block id pins its
//! transactions. Ids are sorted strictly ascending: a block has one encoding
//! and can list a transaction only once.

use crate::error::DecodeError;
use crate::tx::{PublicKey, TxId};

/// Block encoding version.
pub const BLOCK_VERSION: u8 = 1;
/// Most transactions in one block.
pub const BLOCK_TXS_MAX: usize = 16_384;
/// Header bytes (what the id hashes).
pub const HEADER_BYTES: usize = 1 + 8 + 32 + 32 + 32 + 8 + 32;
/// Largest encoded block.
pub const BLOCK_BYTES_MAX: usize = HEADER_BYTES + 4 + 32 * BLOCK_TXS_MAX;

/// A 32-byte block id.
pub type BlockId = [u8; 32];

/// A block header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Height; genesis is 0.
    pub height: u64,
    /// Parent block id (all zeros for the genesis block).
    pub parent: BlockId,
    /// State root after executing the parent.
    pub state_root: [u8; 32],
    /// Public key of the proposing node.
    pub proposer: PublicKey,
    /// Proposer's clock at proposal, in ms since the Unix epoch. Informative
    /// only: consensus never trusts it for ordering.
    pub timestamp_ms: u64,
    /// blake3 of the concatenated sorted transaction ids.
    pub txs_hash: [u8; 32],
}

/// A block: header plus its transaction ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    header: BlockHeader,
    tx_ids: Vec<TxId>,
    id: BlockId,
}

/// blake3 over the concatenation of `ids`.
pub fn txs_hash(ids: &[TxId]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(id);
    }
    *h.finalize().as_bytes()
}

/// `len` bytes of `bytes` at `offset`, or which `field` was cut short.
fn field_at<'a>(
    bytes: &'a [u8],
    field: &'static str,
    offset: usize,
    len: usize,
) -> Result<&'a [u8], DecodeError> {
    bytes
        .get(offset..offset + len)
        .ok_or(DecodeError::Truncated { field, offset })
}

impl BlockHeader {
    /// Decodes the header at the start of `bytes` (an encoded block or
    /// more): the first [`HEADER_BYTES`], version checked; what follows is
    /// not read.
    ///
    /// # Errors
    /// [`DecodeError::UnknownVersion`], or [`DecodeError::Truncated`] when
    /// `bytes` is shorter than a header.
    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        let field_at = |field, offset, len| field_at(bytes, field, offset, len);
        let version = field_at("version", 0, 1)?[0];
        if version != BLOCK_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let u64_at = |field, offset| -> Result<u64, DecodeError> {
            let mut b = [0u8; 8];
            b.copy_from_slice(field_at(field, offset, 8)?);
            Ok(u64::from_le_bytes(b))
        };
        let arr_at = |field, offset| -> Result<[u8; 32], DecodeError> {
            let mut b = [0u8; 32];
            b.copy_from_slice(field_at(field, offset, 32)?);
            Ok(b)
        };
        Ok(BlockHeader {
            height: u64_at("height", 1)?,
            parent: arr_at("parent", 9)?,
            state_root: arr_at("state_root", 41)?,
            proposer: arr_at("proposer", 73)?,
            timestamp_ms: u64_at("timestamp", 105)?,
            txs_hash: arr_at("txs_hash", 113)?,
        })
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(BLOCK_VERSION);
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.parent);
        out.extend_from_slice(&self.state_root);
        out.extend_from_slice(&self.proposer);
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.txs_hash);
    }

    /// The header's id.
    pub fn id(&self) -> BlockId {
        let mut buf = Vec::with_capacity(HEADER_BYTES);
        self.encode_into(&mut buf);
        *blake3::hash(&buf).as_bytes()
    }
}

impl Block {
    /// Builds a block; `tx_ids` are sorted and deduplicated here.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] past [`BLOCK_TXS_MAX`] transactions.
    pub fn new(
        height: u64,
        parent: BlockId,
        state_root: [u8; 32],
        proposer: PublicKey,
        timestamp_ms: u64,
        mut tx_ids: Vec<TxId>,
    ) -> Result<Block, DecodeError> {
        tx_ids.sort_unstable();
        tx_ids.dedup();
        if tx_ids.len() > BLOCK_TXS_MAX {
            return Err(DecodeError::TooLong {
                field: "tx ids",
                len: tx_ids.len(),
                max: BLOCK_TXS_MAX,
            });
        }
        let header = BlockHeader {
            height,
            parent,
            state_root,
            proposer,
            timestamp_ms,
            txs_hash: txs_hash(&tx_ids),
        };
        let id = header.id();
        Ok(Block { header, tx_ids, id })
    }

    /// The header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The id (blake3 of the header).
    pub fn id(&self) -> &BlockId {
        &self.id
    }

    /// Height.
    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// Transaction ids, strictly ascending.
    pub fn tx_ids(&self) -> &[TxId] {
        &self.tx_ids
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + 4 + 32 * self.tx_ids.len());
        self.header.encode_into(&mut out);
        out.extend_from_slice(&(self.tx_ids.len() as u32).to_le_bytes());
        for id in &self.tx_ids {
            out.extend_from_slice(id);
        }
        out
    }

    /// Decodes strictly: bounded count checked before allocating, ids
    /// strictly ascending, `txs_hash` matching, no trailing bytes.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault.
    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        let field_at = |field, offset, len| field_at(bytes, field, offset, len);
        let header = BlockHeader::decode(bytes)?;
        let mut count_bytes = [0u8; 4];
        count_bytes.copy_from_slice(field_at("tx count", HEADER_BYTES, 4)?);
        let count = u32::from_le_bytes(count_bytes) as usize;
        if count > BLOCK_TXS_MAX {
            return Err(DecodeError::TooLong {
                field: "tx ids",
                len: count,
                max: BLOCK_TXS_MAX,
            });
        }
        let start = HEADER_BYTES + 4;
        let expected = start + 32 * count;
        if bytes.len() < expected {
            return Err(DecodeError::Truncated {
                field: "tx ids",
                offset: bytes.len(),
            });
        }
        if bytes.len() > expected {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - expected,
            });
        }
        let mut tx_ids = Vec::with_capacity(count);
        for chunk in bytes[start..].chunks_exact(32) {
            let mut id = [0u8; 32];
            id.copy_from_slice(chunk);
            if tx_ids.last().is_some_and(|prev: &TxId| *prev >= id) {
                return Err(DecodeError::NotSorted { field: "tx ids" });
            }
            tx_ids.push(id);
        }
        if txs_hash(&tx_ids) != header.txs_hash {
            return Err(DecodeError::Mismatch { field: "txs_hash" });
        }
        let id = header.id();
        Ok(Block { header, tx_ids, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Block {
        let ids: Vec<TxId> = (0..n as u32)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        Block::new(5, [1; 32], [2; 32], [3; 32], 1_700_000_000_000, ids).unwrap()
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let b = block(20);
        let bytes = b.encode();
        assert_eq!(Block::decode(&bytes).unwrap(), b);
        for cut in 0..bytes.len() {
            assert!(
                Block::decode(&bytes[..cut]).is_err(),
                "accepted a {cut}-byte prefix"
            );
        }
        let mut longer = bytes.clone();
        longer.push(9);
        assert!(matches!(
            Block::decode(&longer),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn huge_count_is_refused_before_allocating() {
        let mut bytes = block(0).encode();
        bytes[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Block::decode(&bytes),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn unsorted_or_mismatched_ids_are_refused() {
        let b = block(3);
        let mut bytes = b.encode();
        let start = HEADER_BYTES + 4;
        let (a, rest) = bytes[start..].split_at_mut(32);
        a.swap_with_slice(&mut rest[..32]);
        assert!(matches!(
            Block::decode(&bytes),
            Err(DecodeError::NotSorted { .. })
        ));
        let mut bytes = b.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(Block::decode(&bytes).is_err());
    }

    #[test]
    fn id_commits_to_the_transactions() {
        let a = block(3);
        let b = block(4);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), &a.header().id());
    }
}
