//! The node's payloads inside `strata-net` frames: consensus messages
//! between validators and batches of transactions from clients.
//!
//! Every payload starts with a one-byte tag (layout in docs/protocol.md,
//! "Node payloads"). Decoding is strict like the transaction and block
//! decoders: counts and lengths are checked against their limits before
//! anything is allocated, and trailing bytes are an error.
//!
//! ```
//! use strata_consensus::engine::Message;
//! use strata_consensus::wire::Payload;
//!
//! let p = Payload::Engine(Message::Query { poll_id: 7, height: 3 });
//! let bytes = p.encode();
//! assert_eq!(Payload::decode(&bytes).unwrap(), p);
//! assert!(Payload::decode(&bytes[..bytes.len() - 1]).is_err());
//! ```

use std::borrow::Borrow;
use std::sync::Arc;

use crate::block::{Block, BlockHeader, BlockId, BLOCK_BYTES_MAX, BLOCK_TXS_MAX, HEADER_BYTES};
use crate::engine::Message;
use crate::error::DecodeError;
use crate::reader::Reader;
use crate::tx::{Transaction, TX_BYTES_MAX, TX_BYTES_MIN};

/// Most transactions in one client batch.
pub const TX_BATCH_MAX: usize = 16_384;

const TAG_QUERY: u8 = 1;
const TAG_VOTE: u8 = 2;
const TAG_GET_BLOCK: u8 = 3;
const TAG_BLOCK_DATA: u8 = 4;
const TAG_TXS: u8 = 5;

/// What a payload is, from its tag alone: lets a node apply per-kind
/// budgets before it decodes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// [`Message::Query`].
    Query,
    /// [`Message::Vote`].
    Vote,
    /// [`Message::GetBlock`].
    GetBlock,
    /// [`Message::BlockData`].
    BlockData,
    /// [`Payload::Txs`].
    Txs,
}

/// The kind of the payload `bytes`, or `None` for an unknown tag (or no
/// bytes).
pub fn payload_kind(bytes: &[u8]) -> Option<PayloadKind> {
    Some(match *bytes.first()? {
        TAG_QUERY => PayloadKind::Query,
        TAG_VOTE => PayloadKind::Vote,
        TAG_GET_BLOCK => PayloadKind::GetBlock,
        TAG_BLOCK_DATA => PayloadKind::BlockData,
        TAG_TXS => PayloadKind::Txs,
        _ => return None,
    })
}

/// The id of the block in a [`Message::BlockData`] payload, hashed from
/// its header alone (the id is the blake3 of the header): what a node
/// checks against the blocks it pulled before it decodes the block's
/// transactions. `None` when the payload is not block data or too short to
/// hold a header; a full [`Payload::decode`] still checks everything.
pub fn block_data_id(bytes: &[u8]) -> Option<BlockId> {
    if payload_kind(bytes)? != PayloadKind::BlockData {
        return None;
    }
    let header = bytes.get(1 + 4..1 + 4 + HEADER_BYTES)?;
    Some(*blake3::hash(header).as_bytes())
}

/// The header of the block in a [`Message::BlockData`] payload, decoded
/// alone: what a node checks (is it pulled, or a proposer's push at the
/// height being decided?) before it decodes the block's transactions.
/// `None` when the payload is not block data or its header does not
/// decode; a full [`Payload::decode`] still checks everything.
pub fn block_data_header(bytes: &[u8]) -> Option<BlockHeader> {
    if payload_kind(bytes)? != PayloadKind::BlockData {
        return None;
    }
    BlockHeader::decode(bytes.get(1 + 4..)?).ok()
}

/// One decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A consensus message between validators.
    Engine(Message),
    /// Transactions submitted by a client (the bench tool) for the mempool.
    Txs(Vec<Transaction>),
}

impl Payload {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Payload::Engine(Message::Query { poll_id, height }) => {
                out.push(TAG_QUERY);
                out.extend_from_slice(&poll_id.to_le_bytes());
                out.extend_from_slice(&height.to_le_bytes());
            }
            Payload::Engine(Message::Vote {
                poll_id,
                height,
                block,
            }) => {
                out.push(TAG_VOTE);
                out.extend_from_slice(&poll_id.to_le_bytes());
                out.extend_from_slice(&height.to_le_bytes());
                match block {
                    None => out.push(0),
                    Some(id) => {
                        out.push(1);
                        out.extend_from_slice(id);
                    }
                }
            }
            Payload::Engine(Message::GetBlock { id, height }) => {
                out.push(TAG_GET_BLOCK);
                out.extend_from_slice(id);
                out.extend_from_slice(&height.to_le_bytes());
            }
            Payload::Engine(Message::BlockData { block, txs }) => {
                out.push(TAG_BLOCK_DATA);
                let b = block.encode();
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(&b);
                encode_txs(txs, &mut out);
            }
            Payload::Txs(txs) => {
                out.push(TAG_TXS);
                encode_txs(txs, &mut out);
            }
        }
        out
    }

    /// Decodes strictly.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault.
    pub fn decode(bytes: &[u8]) -> Result<Payload, DecodeError> {
        let mut r = Reader::new(bytes);
        let payload = match r.u8("tag")? {
            TAG_QUERY => Payload::Engine(Message::Query {
                poll_id: r.u64("poll id")?,
                height: r.u64("height")?,
            }),
            TAG_VOTE => {
                let poll_id = r.u64("poll id")?;
                let height = r.u64("height")?;
                let block = match r.u8("vote flag")? {
                    0 => None,
                    1 => Some(r.array("block id")?),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            field: "vote flag",
                            tag,
                        })
                    }
                };
                Payload::Engine(Message::Vote {
                    poll_id,
                    height,
                    block,
                })
            }
            TAG_GET_BLOCK => Payload::Engine(Message::GetBlock {
                id: r.array("block id")?,
                height: r.u64("height")?,
            }),
            TAG_BLOCK_DATA => {
                let len = r.len("block", BLOCK_BYTES_MAX)?;
                let block = Block::decode(r.take("block", len)?)?;
                let txs = r.txs(BLOCK_TXS_MAX)?;
                Payload::Engine(Message::BlockData {
                    block: Box::new(block),
                    txs: txs.into_iter().map(Arc::new).collect(),
                })
            }
            TAG_TXS => Payload::Txs(r.txs(TX_BATCH_MAX)?),
            tag => return Err(DecodeError::UnknownTag { field: "tag", tag }),
        };
        if r.at != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - r.at,
            });
        }
        Ok(payload)
    }
}

fn encode_txs<T: Borrow<Transaction>>(txs: &[T], out: &mut Vec<u8>) {
    out.extend_from_slice(&(txs.len() as u32).to_le_bytes());
    for tx in txs {
        let tx = tx.borrow();
        out.extend_from_slice(&(tx.encoded().len() as u32).to_le_bytes());
        out.extend_from_slice(tx.encoded());
    }
}

impl<'a> Reader<'a> {
    /// A u32 length checked against `max`.
    fn len(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = u32::from_le_bytes(self.array(field)?) as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    fn txs(&mut self, max: usize) -> Result<Vec<Transaction>, DecodeError> {
        let count = self.len("tx count", max)?;
        // Each transaction takes at least its length prefix and the
        // smallest encoding: never reserve more than the input can hold.
        let room = (self.bytes.len() - self.at) / (4 + TX_BYTES_MIN);
        let mut txs = Vec::with_capacity(count.min(room));
        for _ in 0..count {
            let len = self.len("tx", TX_BYTES_MAX)?;
            txs.push(Transaction::decode(self.take("tx", len)?)?);
        }
        Ok(txs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{signing_key_from_seed, TxBody, TxKind};

    fn tx(nonce: u64) -> Transaction {
        let key = signing_key_from_seed(&[3; 32]);
        TxBody {
            chain_id: 9,
            sender: key.verifying_key().to_bytes(),
            nonce,
            fee: 1,
            kind: TxKind::Transfer {
                to: [4; 32],
                amount: 5,
            },
        }
        .sign(&key)
        .unwrap()
    }

    fn samples() -> Vec<Payload> {
        let block = Block::new(1, [1; 32], [2; 32], [3; 32], 4, vec![*tx(0).id()]).unwrap();
        vec![
            Payload::Engine(Message::Query {
                poll_id: 1,
                height: 2,
            }),
            Payload::Engine(Message::Vote {
                poll_id: 1,
                height: 2,
                block: None,
            }),
            Payload::Engine(Message::Vote {
                poll_id: 1,
                height: 2,
                block: Some([9; 32]),
            }),
            Payload::Engine(Message::GetBlock {
                id: [5; 32],
                height: 8,
            }),
            Payload::Engine(Message::BlockData {
                block: Box::new(block),
                txs: vec![Arc::new(tx(0))],
            }),
            Payload::Txs(vec![tx(0), tx(1)]),
            Payload::Txs(vec![]),
        ]
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        for p in samples() {
            let bytes = p.encode();
            assert_eq!(Payload::decode(&bytes).unwrap(), p);
            for cut in 0..bytes.len() {
                assert!(Payload::decode(&bytes[..cut]).is_err(), "{p:?} cut {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(matches!(
                Payload::decode(&long),
                Err(DecodeError::TrailingBytes { extra: 1 })
            ));
        }
    }

    #[test]
    fn kind_and_block_data_id_come_from_the_first_bytes() {
        for p in samples() {
            let bytes = p.encode();
            let kind = payload_kind(&bytes).expect("known tag");
            let id = block_data_id(&bytes);
            let header = block_data_header(&bytes);
            match &p {
                Payload::Engine(Message::BlockData { block, .. }) => {
                    assert_eq!(kind, PayloadKind::BlockData);
                    assert_eq!(id, Some(*block.id()));
                    assert_eq!(header.as_ref(), Some(block.header()));
                }
                _ => assert_eq!((id, header), (None, None)),
            }
        }
        assert_eq!(payload_kind(&[]), None);
        assert_eq!(payload_kind(&[77]), None);
        assert_eq!(block_data_id(&[TAG_BLOCK_DATA, 0, 0]), None);
        assert_eq!(block_data_header(&[TAG_BLOCK_DATA, 0, 0]), None);
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut bytes = vec![TAG_TXS];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Payload::decode(&bytes),
            Err(DecodeError::TooLong { .. })
        ));
        let mut bytes = vec![TAG_TXS];
        bytes.extend_from_slice(&(TX_BATCH_MAX as u32).to_le_bytes());
        assert!(matches!(
            Payload::decode(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Payload::decode(&[99]),
            Err(DecodeError::UnknownTag { .. })
        ));
    }
}
