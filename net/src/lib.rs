//! `strata-net`: the Strata peer-to-peer layer — framing, authenticated
//! handshake, peer scoring and bans, a bounded address book and push/pull
//! gossip of opaque items with 32-byte ids.
//!
//! It knows frames and peers, never blocks or transactions.
//!
//! # State of this crate
//! Built and tested, as sans-IO code (no sockets, time passed in):
//! [`frame`] (incremental decoder, limits enforced before allocation),
//! [`message`] (zero-copy typed messages), [`handshake`] (ed25519 mutual
//! proof), [`peer`] (score, bans, backoff), [`addr_book`], [`gossip`] (seen
//! cache, per-peer known-id LRUs, token buckets).
//!
//! **Not built yet**: the io_uring event loop and the `Node::start` /
//! handle / event stream API that drive these over sockets (see the ignored
//! test `tests/missing.rs`). Until then there is no public node API rather
//! than a fake one.
//!
//! # Dependencies
//! Depends on `strata-storage` only for its fixed-capacity
//! [`strata_storage::lru::LruCache`] (with `IdentityState`, no rehash of
//! 32-byte ids), used for the seen cache and per-peer sent sets.
//!
//! # Example
//! ```
//! use strata_net::frame::FrameDecoder;
//! use strata_net::message::Message;
//!
//! let mut wire = Vec::new();
//! Message::Ping(7).encode_frame(0, &mut wire);
//! let mut dec = FrameDecoder::new(strata_net::limits::FRAME_PAYLOAD_BYTES_MAX_DEFAULT);
//! // Feed the bytes split anywhere: here one byte short, then the rest.
//! let (a, b) = wire.split_at(wire.len() - 1);
//! let mut input = a;
//! assert!(dec.next(&mut input).unwrap().is_none());
//! let mut input = b;
//! let frame = dec.next(&mut input).unwrap().unwrap();
//! let msg = Message::decode(frame.header.msg_type, frame.payload).unwrap();
//! assert_eq!(msg, Message::Ping(7));
//! ```
#![deny(missing_docs)]

pub mod addr_book;
pub mod config;
pub mod error;
pub mod frame;
pub mod gossip;
pub mod handshake;
pub mod limits;
pub mod message;
pub mod peer;
pub mod rng;

pub use config::Config;
pub use error::{Error, HandshakeRefusal, Result};
