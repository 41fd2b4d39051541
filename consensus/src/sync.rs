//! State sync: a joining node fetches the chain state at a recent
//! finalized height as key-range chunks from several peers, checks every
//! chunk with a range proof against the snapshot's state root, and ingests
//! the chunks as sorted runs.
//!
//! What is here, all sans-IO (no sockets, threads or clocks; time is
//! passed in):
//! - the messages and their encoding ([`SyncRequest`], [`SyncResponse`]);
//! - the server: [`serve_chunk`] and [`snapshot_head`] over a storage
//!   snapshot, [`ServedSnapshot`] and [`respond`] over the few a node
//!   keeps;
//! - the client: [`choose_head`] (which snapshot a weighted quorum vouches
//!   for), [`verify_chunk`], and the [`StateSync`] state machine that hands
//!   out requests, verifies answers, blames liars and re-asks failed or
//!   timed-out ranges elsewhere;
//! - the limits ([`limits`]) and errors ([`SyncError`], [`BadChunk`]).
//!
//! - the resume record ([`SyncProgress`]): where a sync stands, in the
//!   form a node persists it to resume after a restart.
//!
//! What it is not: it does not take or keep snapshots, write the fetched
//! entries, build the trie afterwards or persist resume points — the node
//! does, with [`VerifiedChunk::records`], [`StateSync::cursors`],
//! [`SyncProgress`] and [`StateSync::resume`].
//!
//! # Why it is safe to fetch state from strangers
//! The state key of an entry *is* its path in the sparse merkle trie, so
//! the store's key order is the trie's path order, and a chunk — every
//! entry of a key range `[lo, hi]` — is checked by one range proof
//! (`strata_storage::merkle::verify_range`): no entry changed, none left
//! out, none added. Chunks of a sub-range are asked for back to back (the
//! next `lo` is the previous `hi + 1`) and the sub-ranges tile the key
//! space, so once every sub-range is done the verified entries are the
//! whole state under the root. The root itself comes from [`choose_head`]:
//! the head reported by peers holding over 2/3 of the validator weight.
//! `SnapshotHead::state_root` is the root *after* block `height`; block
//! headers carry the root after their parent, so it is also the
//! `state_root` of block `height + 1`'s header, which a node that has that
//! header can compare.
//!
//! # Protocol
//! Sync messages travel as `strata-net` request and response payloads.
//! Their first byte is a tag from 0x40, so they never collide with the
//! node payload tags of [`crate::wire`] (1..=5). Integers are fixed-width
//! little-endian; keys, ids and roots are 32 raw bytes.
//!
//! ```text
//! request   tag   body
//! Heads     0x40  (nothing)
//! Chunk     0x41  height u64 ‖ lo [32] ‖ end [32] ‖ bytes_max u32        (77 bytes in all)
//!
//! response  tag   body
//! Heads     0x42  count u8 (≤ 8) ‖ count × head
//!                 head = height u64 ‖ block_id [32] ‖ state_root [32] ‖ entries u64
//! Chunk     0x43  height u64 ‖ lo [32] ‖ hi [32] ‖ done u8 (0 or 1)
//!                 ‖ count u32 ‖ count × (key [32] ‖ value_len u16 ‖ value)
//!                 ‖ proof_len u32 ‖ proof (range proof, docs/storage-format.md)
//! Refused   0x44  reason u8: 1 unknown height, 2 busy, 3 bad range (lo > end)
//! ```
//!
//! A decoder rejects, before allocating for it: a request over 77 bytes or
//! a response over [`limits::CHUNK_RESPONSE_BYTES_MAX`] (4 162 133
//! bytes), a heads response over 642 bytes; an unknown tag, reason
//! or done flag; more than [`limits::SNAPSHOT_HEADS_MAX`] (8) heads or
//! heights not strictly ascending; more than
//! [`limits::CHUNK_ENTRIES_MAX`] (121 434) entries, a value over
//! [`limits::STATE_VALUE_BYTES_MAX`] (1024) bytes, or entries over
//! [`limits::CHUNK_BYTES_MAX`] (4 MiB less 64 KiB: 4 128 768) bytes, an entry
//! counting `34 + value_len`; a proof over 33 283 bytes or not in its
//! canonical encoding; and trailing bytes. The order of keys, the range
//! and the proof are checked by [`verify_chunk`], not the decoder.
//!
//! **Heads** lists the snapshots a node serves: the state after committing
//! `height` (block `block_id`), its root and its entry count, at most 8,
//! by ascending height.
//!
//! **Chunk** asks for the entries of `[lo, end]` (inclusive) at `height`.
//! The server sends the entries with keys `>= lo`, ascending, until one
//! more would bring their bytes past `min(bytes_max, CHUNK_BYTES_MAX)` —
//! but always at least one if `[lo, end]` holds any — and stops at `end`.
//! If none is left in `[lo, end]` after the last one sent, `done = 1` and
//! `hi = end`; otherwise `done = 0` and `hi` is the last entry's key. The
//! proof is the range proof of `[lo, hi]` against the snapshot's state
//! root. A client accepts a chunk only if: the height and `lo` are the
//! requested ones; more than one entry only within the budget; keys
//! strictly ascending within `[lo, hi]`; `hi = end` when done, else `hi`
//! is the last key (so at least one entry) and `hi < end`; and the proof
//! verifies over the leaves `(key, blake3 value hash)`
//! (`merkle::value_hash`). It then asks for `[hi + 1, end]` unless done.
//! A client picks its sub-ranges freely; [`StateSync`] cuts the key space
//! into `ranges` equal parts on the first 8 key bytes (part `i` of `n`
//! starts at `floor(i × 2^64 / n)`).
//!
//! # Example
//! A whole sync from one node serving its genesis state:
//! ```
//! use std::sync::Arc;
//! use strata_consensus::db_chain::DbChain;
//! use strata_consensus::genesis::Genesis;
//! use strata_consensus::sync::{
//!     choose_head, respond, Outcome, ServedSnapshot, StateSync, StateSyncConfig, SyncRequest,
//!     SyncResponse,
//! };
//! use strata_storage::{merkle, Db, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
//! let _chain = DbChain::open(Arc::clone(&db), &Genesis::devnet(1)).unwrap();
//! // Serving: a snapshot taken right after a commit (here, the genesis).
//! let served = [ServedSnapshot::new(db.snapshot()).unwrap()];
//! let serve = |request: &[u8]| {
//!     let request = SyncRequest::decode(request).unwrap();
//!     respond(&served, &request).unwrap().encode()
//! };
//!
//! // Joining: ask for heads, pick the one a weighted quorum reports.
//! let SyncResponse::Heads(heads) =
//!     SyncResponse::decode(&serve(&SyncRequest::Heads.encode())).unwrap()
//! else {
//!     panic!("not heads")
//! };
//! let head = choose_head(&[("peer", 1, heads)], 1).unwrap();
//! let config = StateSyncConfig::new().ranges(4).chunk_bytes_max(64 * 1024);
//! let mut sync = StateSync::new(head, config).unwrap();
//! sync.add_peer("peer").unwrap();
//! let mut state = Vec::new();
//! let now_ms = 0;
//! while let Some(out) = sync.poll_request(now_ms) {
//!     // The network's part: send `out.payload()` to `out.peer`.
//!     let answer = serve(&out.payload());
//!     match sync.on_response_bytes(out.ticket, &answer, now_ms) {
//!         Outcome::Ingest { chunk, .. } => state.extend(chunk.entries),
//!         other => panic!("{other:?}"),
//!     }
//! }
//! assert!(sync.is_done());
//! assert_eq!(sync.finish().unwrap().entries, state.len() as u64);
//! state.sort();
//! let leaves = state.iter().map(|(k, v)| (*k, merkle::value_hash(v)));
//! assert_eq!(merkle::root_of_sorted(leaves).unwrap(), head.state_root);
//! ```

mod client;
mod error;
mod head;
pub mod limits;
mod message;
mod progress;
mod server;
mod verify;

pub use client::{Failure, Outcome, Outgoing, Progress, RangeCursor, StateSync, StateSyncConfig};
pub use error::{BadChunk, SyncError};
pub use head::choose_head;
pub use message::{
    is_sync_payload, Chunk, ChunkRequest, RefuseReason, SnapshotHead, SyncRequest, SyncResponse,
    TAG_CHUNK, TAG_CHUNK_REQUEST, TAG_HEADS, TAG_HEADS_REQUEST, TAG_REFUSED,
};
pub use progress::{SyncProgress, PROGRESS_KEY};
pub use server::{respond, serve_chunk, snapshot_head, ServedSnapshot};
pub use verify::{verify_chunk, VerifiedChunk};
