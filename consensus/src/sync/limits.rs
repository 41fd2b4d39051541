//! Every limit of state sync, in one place, with the relations between
//! them checked at compile time.

use strata_storage::merkle::limits::RANGE_PROOF_BYTES_MAX;

use crate::tx::USER_VALUE_BYTES_MAX;

/// Largest sync payload in bytes: 4 MiB, the default frame payload limit
/// of `strata-net` (`FRAME_PAYLOAD_BYTES_MAX_DEFAULT`). This crate does not
/// depend on `strata-net`, so the number is repeated here; a node that
/// lowers its frame limit below it cannot carry full chunks.
pub const SYNC_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest state value in bytes. User values ([`USER_VALUE_BYTES_MAX`])
/// are the largest values the state holds: an account takes 16 bytes and
/// the burned-fees total 8.
pub const STATE_VALUE_BYTES_MAX: usize = USER_VALUE_BYTES_MAX;

/// Bytes an entry takes in a chunk besides its value: the 32-byte state
/// key and the u16 value length. Chunk budgets count `ENTRY_OVERHEAD_BYTES
/// + value length` per entry, which is exactly its encoded size.
pub const ENTRY_OVERHEAD_BYTES: usize = 32 + 2;

/// Bytes of the largest encoded entry.
pub const ENTRY_BYTES_MAX: usize = ENTRY_OVERHEAD_BYTES + STATE_VALUE_BYTES_MAX;

/// Most bytes of entries in one chunk (the sum of their encoded sizes). A
/// server fills a chunk up to `min(bytes_max, CHUNK_BYTES_MAX)`. The
/// 64 KiB left of the payload hold the chunk's fixed fields and its range
/// proof (at most `RANGE_PROOF_BYTES_MAX`, 33 283 bytes).
pub const CHUNK_BYTES_MAX: usize = SYNC_PAYLOAD_BYTES_MAX - 64 * 1024;

/// Most entries in one chunk: every entry takes at least
/// [`ENTRY_OVERHEAD_BYTES`] (an empty value).
pub const CHUNK_ENTRIES_MAX: usize = CHUNK_BYTES_MAX / ENTRY_OVERHEAD_BYTES;

/// Fixed bytes of a chunk response: tag, height (8), lo (32), hi (32),
/// done flag (1), entry count (4), proof length (4).
pub const CHUNK_FIXED_BYTES: usize = 1 + 8 + 32 + 32 + 1 + 4 + 4;

/// Largest encoded chunk response.
pub const CHUNK_RESPONSE_BYTES_MAX: usize =
    CHUNK_FIXED_BYTES + CHUNK_BYTES_MAX + RANGE_PROOF_BYTES_MAX;

/// Bytes of an encoded chunk request: tag, height (8), lo (32), end (32),
/// bytes_max (4).
pub const CHUNK_REQUEST_BYTES: usize = 1 + 8 + 32 + 32 + 4;

/// Most snapshot heads one server announces. A node keeps a few recent
/// snapshots (every S blocks, the last K); more would only hold back
/// compaction.
pub const SNAPSHOT_HEADS_MAX: usize = 8;

/// Bytes of one encoded snapshot head: height (8), block id (32), state
/// root (32), entry count (8).
pub const SNAPSHOT_HEAD_BYTES: usize = 8 + 32 + 32 + 8;

/// Largest encoded heads response: tag, count (1), the heads.
pub const HEADS_RESPONSE_BYTES_MAX: usize = 2 + SNAPSHOT_HEADS_MAX * SNAPSHOT_HEAD_BYTES;

/// A snapshot head is trusted when peers holding more than
/// `HEAD_QUORUM_NUM / HEAD_QUORUM_DEN` of the total weight report it
/// (see `choose_head` for why two thirds).
pub const HEAD_QUORUM_NUM: u64 = 2;
/// Denominator of the head quorum fraction.
pub const HEAD_QUORUM_DEN: u64 = 3;

/// Most key sub-ranges a sync splits the state into (each fetched
/// sequentially, all in parallel).
pub const SYNC_RANGES_MAX: usize = 256;

/// Default number of key sub-ranges (`StateSyncConfig::ranges`).
pub const SYNC_RANGES_DEFAULT: usize = 16;

/// Default most chunk requests in flight to one peer.
pub const IN_FLIGHT_PER_PEER_MAX_DEFAULT: usize = 2;

/// Default most chunk requests in flight overall. At most one request is
/// in flight per sub-range, so more than the range count never helps.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 16;

/// Default time after which a chunk request counts as failed, in ms: the
/// same as `strata-net`'s default request timeout.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default time a peer that answered "busy" is left alone, in ms.
pub const BUSY_BACKOFF_MS_DEFAULT: u64 = 1_000;

/// Default consecutive failed or timed-out requests after which a peer is
/// dropped from the sync.
pub const PEER_FAILURES_MAX_DEFAULT: u32 = 3;

/// Default most peers one sync tracks.
pub const SYNC_PEERS_MAX_DEFAULT: usize = 64;

/// Upper bound of `StateSyncConfig::peers_max`.
pub const SYNC_PEERS_MAX: usize = 1024;

const _: () = assert!(CHUNK_RESPONSE_BYTES_MAX <= SYNC_PAYLOAD_BYTES_MAX);
const _: () = assert!(HEADS_RESPONSE_BYTES_MAX <= SYNC_PAYLOAD_BYTES_MAX);
// One entry always fits a chunk, whatever the requested budget.
const _: () = assert!(ENTRY_BYTES_MAX <= CHUNK_BYTES_MAX);
// Value lengths travel as u16, entry counts and byte budgets as u32.
const _: () = assert!(STATE_VALUE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CHUNK_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(SNAPSHOT_HEADS_MAX <= u8::MAX as usize);
const _: () = assert!(SYNC_RANGES_DEFAULT <= SYNC_RANGES_MAX);
const _: () = assert!(IN_FLIGHT_MAX_DEFAULT <= SYNC_RANGES_DEFAULT);
const _: () = assert!(IN_FLIGHT_PER_PEER_MAX_DEFAULT <= IN_FLIGHT_MAX_DEFAULT);
const _: () = assert!(SYNC_PEERS_MAX_DEFAULT <= SYNC_PEERS_MAX);
const _: () = assert!(HEAD_QUORUM_NUM < HEAD_QUORUM_DEN && HEAD_QUORUM_DEN > 0);
// The numbers the `sync` module docs (and docs/protocol.md) state.
const _: () = assert!(CHUNK_BYTES_MAX == 4_128_768);
const _: () = assert!(CHUNK_ENTRIES_MAX == 121_434);
const _: () = assert!(CHUNK_RESPONSE_BYTES_MAX == 4_162_133);
const _: () = assert!(HEADS_RESPONSE_BYTES_MAX == 642);
const _: () = assert!(CHUNK_REQUEST_BYTES == 77);
const _: () = assert!(RANGE_PROOF_BYTES_MAX == 33_283);
