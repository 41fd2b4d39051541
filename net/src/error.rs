//! The one error type of `strata-net`.

use std::net::SocketAddr;

/// Everything that can go wrong in `strata-net`.
///
/// Errors about bytes from the network name the limit or field involved; the
/// event loop turns them into a misbehaviour score for the peer that sent
/// them (see [`crate::peer::Misbehaviour`]) and never panics on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame did not start with [`crate::frame::MAGIC`].
    #[error("bad frame magic {found:#010x} (expected {expected:#010x})")]
    BadMagic {
        /// The magic found on the wire.
        found: u32,
        /// The magic expected.
        expected: u32,
    },
    /// A frame header announced a payload above the configured maximum. Raised
    /// from the header alone, before anything is allocated.
    #[error("frame payload of {claimed_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    FrameTooLarge {
        /// The length the header claims.
        claimed_bytes: u64,
        /// The configured maximum payload size.
        limit_bytes: u32,
    },
    /// The payload's crc32 did not match the header's.
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x}"
    )]
    BadChecksum {
        /// The crc32 in the header.
        expected: u32,
        /// The crc32 of the received payload.
        actual: u32,
    },
    /// The input ended in the middle of a frame (only from the one-shot
    /// [`crate::frame::decode_one`]; the incremental decoder just waits).
    #[error("truncated frame: needed {needed_bytes} bytes, got {got_bytes}")]
    Truncated {
        /// Bytes the frame needs.
        needed_bytes: usize,
        /// Bytes available.
        got_bytes: usize,
    },
    /// A frame decoder was used after it reported an error.
    #[error("frame decoder used after an earlier error")]
    DecoderPoisoned,
    /// The message type byte is not one we know.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// A message payload does not decode as its type says.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// The message type involved.
        kind: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A message exceeds a per-message count limit (ids, items, addresses).
    #[error("{kind} message carries {count} entries, the limit is {limit}")]
    TooManyEntries {
        /// The message type involved.
        kind: &'static str,
        /// Entries claimed.
        count: u32,
        /// The limit.
        limit: u32,
    },
    /// The handshake failed; the reason says why.
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeRefusal),
    /// A per-connection send queue is full: the caller must retry later or
    /// drop the message (backpressure).
    #[error(
        "send queue of peer {peer} is full ({queued_bytes} bytes queued, limit {limit_bytes})"
    )]
    SendQueueFull {
        /// The peer.
        peer: SocketAddr,
        /// Bytes already queued.
        queued_bytes: usize,
        /// The per-connection limit.
        limit_bytes: usize,
    },
    /// A bounded cross-thread queue is full.
    #[error("the {queue} queue is full (capacity {capacity})")]
    QueueFull {
        /// Which queue.
        queue: &'static str,
        /// Its capacity.
        capacity: usize,
    },
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// io_uring could not be set up; the message says why and how to fix it.
    #[error("io_uring unavailable ({source}); {hint}")]
    IoUringUnavailable {
        /// The OS error.
        source: std::io::Error,
        /// What the operator can do.
        hint: &'static str,
    },
    /// Any other I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeRefusal {
    /// The peer speaks a protocol version we do not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The peer is on another chain.
    #[error("peer is on another chain")]
    WrongChain,
    /// We connected to ourselves.
    #[error("self-connection")]
    SelfConnection,
    /// We already have a connection to that node key.
    #[error("duplicate connection to an already connected node")]
    Duplicate,
    /// The peer's signature did not verify.
    #[error("bad handshake signature")]
    BadSignature,
    /// The peer's node key is not a valid ed25519 point.
    #[error("invalid node key")]
    BadKey,
    /// A message arrived out of order.
    #[error("unexpected {0} message during the handshake")]
    UnexpectedMessage(&'static str),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// The peer is banned.
    #[error("peer is banned")]
    Banned,
}

/// Shorthand for `Result<T, strata_net::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
