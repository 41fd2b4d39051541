//! `strata-net`: the Strata peer-to-peer layer — framing, authenticated
//! handshake, peer scoring and bans, a bounded address book and push/pull
//! gossip of opaque items with 32-byte ids.
//!
//! It knows frames and peers, never blocks or transactions.
//!
//! # Structure
//! Sans-IO and unit-tested: [`frame`] (incremental decoder, limits enforced
//! before allocation), [`message`] (zero-copy typed messages), [`handshake`]
//! (ed25519 mutual proof), [`peer`] (score, bans, backoff), [`addr_book`],
//! [`gossip`] (per-peer known-id LRUs, token buckets), [`seen`] (the
//! node-wide seen cache), and on top of them the private `protocol`: every
//! connection's peer protocol (handshake, ping, peer exchange,
//! announce/pull/push, request deadlines, the gossip flush, scoring and
//! admission), which takes received bytes, connection events, ticks and
//! commands with the time, writes frames into per-connection queues, and
//! lists the connections to send on, close and dial. Its tests run two
//! nodes back to back in memory.
//!
//! Driven over sockets by one io_uring ring on one thread ([`ring`], the
//! private `event_loop`, with every socket, sockaddr and eventfd system
//! call in the private `sys`): multishot accept, multishot receives into one
//! provided-buffer ring shared by every connection (128 × 32 KiB by
//! default; one 64 KiB buffer per connection where the kernel lacks
//! buffer rings or [`Config::recv_buffer_ring`] is off), per-connection
//! send queues capped in bytes, connect linked to a timeout, a tick timer, and an
//! eventfd through which [`Handle`] methods wake the loop after pushing to a
//! bounded `crossbeam-queue` command queue — only when the loop is about to
//! block (a flag it sets before its last check of the queue), so commands
//! sent while it is awake cost no syscall. Events come back through a
//! bounded queue, polled with [`Handle::try_next_event`], waited on with
//! [`Handle::next_event_timeout`] or taken in batches with
//! [`Handle::next_events`]; when it is full, events are dropped and
//! counted in [`Stats::events_dropped`]. Frames queued for a peer during
//! one loop iteration go out in one send.
//!
//! Each hand-over between threads costs a wake-up, and on a small host a
//! context switch: the loop is built so that a consumer pays it once per
//! batch, not per message. [`Handle::batch`] queues many commands (say,
//! the answers to every request [`Handle::next_events`] returned) with one
//! wake of the loop. A [`Responder`] given to [`Node::start_with_responder`]
//! answers requests on the I/O thread itself, with no hand-over at all;
//! it must be quick and never block (docs/benchmarks.md, `net/loopback`,
//! has the measurements behind these choices).
//!
//! [`Node::start_driven`] runs the same loop without a thread of its own:
//! the caller turns it inside [`DrivenNode::poll_events`], and
//! [`DrivenNode::request`] frames a borrowed payload straight into the
//! peer's send queue. A consumer that mostly waits on the network (a
//! client, a bench) then pays no hand-over at all, like a tokio client
//! doing its I/O inside `block_on`. The ring is set up single-issuer with
//! deferred task work (Linux 6.1+; a plain ring otherwise): completions are
//! processed when the loop's thread waits, not by interrupting it.
//!
//! The blocking wait is a condvar that the I/O thread signals at most once
//! per loop iteration, and only when it pushed events and a consumer is
//! registered as waiting (an atomic counter it reads after a fence): a
//! node whose consumer polls pays no syscall for it, and a waiting
//! consumer costs one futex wake per batch, not per event.
//!
//! # Decisions
//! - **No fallback backend**: if the kernel refuses io_uring, [`Node::start`]
//!   fails with [`Error::IoUringUnavailable`], whose message says how to fix
//!   the host. A node silently running on a slower path would hide it.
//! - **Pull is the default, push is limited**: new items are pushed to
//!   `gossip_fanout` random peers and only announced (ids) to the others, who
//!   pull what they miss; pushes are rate limited per peer.
//! - **Bans** are keyed by node key once the peer is authenticated, else by
//!   socket address.
//!
//! # Limits
//! Every bound is in [`limits`] or [`Config`]. Requests made with
//! [`Handle::request`] end in a response or in [`Event::RequestFailed`]
//! (timeout after [`Config::request_timeout_ms`], disconnect, no connection,
//! too many pending). Receive memory is bounded by the buffer ring
//! (`Config::recv_buffers` × [`limits::RECV_BUFFER_BYTES`]), whatever the
//! number of peers.
//!
//! # Fuzzing
//! `net/fuzz` is a cargo-fuzz crate outside the workspace with targets
//! `frame_decoder`, `message_decode` and `handshake`:
//! `cd net/fuzz && cargo +nightly fuzz run frame_decoder -- -max_total_time=600`.
//! `tests/decoder_smoke.rs` runs the same checks on pseudo-random input in
//! the normal test suite.
//!
//! # Dependencies
//! Depends on `strata-storage` only for its fixed-capacity
//! [`strata_storage::lru::LruCache`] (with `IdentityState`, no rehash of
//! 32-byte ids), used for the per-peer sent sets and the item store.
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
mod control;
pub mod error;
mod event_loop;
mod event_wait;
pub mod frame;
pub mod gossip;
pub mod handshake;
pub mod limits;
pub mod message;
pub mod node;
pub mod peer;
mod protocol;
mod ring;
mod rng;
pub mod seen;
mod sys;

pub use config::Config;
pub use error::{Error, HandshakeRefusal, Result};
pub use node::{
    CommandBatch, DrivenNode, Event, Handle, Node, PeerSummary, RequestFailure, Responder, Stats,
};
