//! The fetching side: a sans-IO state machine that hands out chunk
//! requests to peers, verifies the answers and says what to ingest, whom
//! to blame and what to ask again elsewhere. The caller owns the sockets
//! and the clock: it sends what [`StateSync::poll_request`] returns, feeds
//! back answers and failures by ticket, and calls [`StateSync::on_tick`]
//! with the time.
//!
//! **Why sub-ranges.** A server sets each chunk's end (`hi`, where its
//! byte budget ran out), so one range can only be consumed left to right,
//! one request at a time. To fetch from several peers at once the key
//! space is cut up front into `ranges` equal sub-ranges (state keys are
//! uniform hashes, so equal widths hold about equal numbers of entries),
//! each fetched sequentially; at most one request per sub-range is in
//! flight, so the chunks of a sub-range arrive in key order and can be
//! ingested as they come (sub-ranges never overlap).

use std::collections::BTreeMap;

use strata_storage::merkle::Hash32;

use super::error::{BadChunk, SyncError};
use super::limits::{
    BUSY_BACKOFF_MS_DEFAULT, CHUNK_BYTES_MAX, IN_FLIGHT_MAX_DEFAULT,
    IN_FLIGHT_PER_PEER_MAX_DEFAULT, PEER_FAILURES_MAX_DEFAULT, REQUEST_TIMEOUT_MS_DEFAULT,
    SYNC_PEERS_MAX, SYNC_PEERS_MAX_DEFAULT, SYNC_RANGES_DEFAULT, SYNC_RANGES_MAX,
};
use super::message::{ChunkRequest, RefuseReason, SnapshotHead, SyncRequest, SyncResponse};
use super::verify::{verify_with, VerifiedChunk};
use crate::state::StateKey;

/// Settings of a [`StateSync`]; a by-value builder whose setters say the
/// defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSyncConfig {
    ranges: usize,
    in_flight_per_peer_max: usize,
    in_flight_max: usize,
    chunk_bytes_max: u32,
    request_timeout_ms: u64,
    busy_backoff_ms: u64,
    peer_failures_max: u32,
    peers_max: usize,
}

impl Default for StateSyncConfig {
    fn default() -> Self {
        StateSyncConfig {
            ranges: SYNC_RANGES_DEFAULT,
            in_flight_per_peer_max: IN_FLIGHT_PER_PEER_MAX_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            chunk_bytes_max: CHUNK_BYTES_MAX as u32,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            busy_backoff_ms: BUSY_BACKOFF_MS_DEFAULT,
            peer_failures_max: PEER_FAILURES_MAX_DEFAULT,
            peers_max: SYNC_PEERS_MAX_DEFAULT,
        }
    }
}

impl StateSyncConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Key sub-ranges fetched in parallel, 1..=`SYNC_RANGES_MAX`. Default
    /// `SYNC_RANGES_DEFAULT` (16).
    pub fn ranges(mut self, n: usize) -> Self {
        self.ranges = n;
        self
    }

    /// Most requests in flight to one peer, at least 1. Default
    /// `IN_FLIGHT_PER_PEER_MAX_DEFAULT` (2).
    pub fn in_flight_per_peer_max(mut self, n: usize) -> Self {
        self.in_flight_per_peer_max = n;
        self
    }

    /// Most requests in flight overall, at least 1 (more than `ranges`
    /// never helps). Default `IN_FLIGHT_MAX_DEFAULT` (16).
    pub fn in_flight_max(mut self, n: usize) -> Self {
        self.in_flight_max = n;
        self
    }

    /// Byte budget asked for per chunk, 1..=`CHUNK_BYTES_MAX`. Default
    /// `CHUNK_BYTES_MAX` (4 MiB less 64 KiB).
    pub fn chunk_bytes_max(mut self, bytes: u32) -> Self {
        self.chunk_bytes_max = bytes;
        self
    }

    /// Time after which an unanswered request fails, in ms, at least 1.
    /// Default `REQUEST_TIMEOUT_MS_DEFAULT` (10 s).
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout_ms = ms;
        self
    }

    /// Time a peer that answered "busy" gets no request, in ms. Default
    /// `BUSY_BACKOFF_MS_DEFAULT` (1 s).
    pub fn busy_backoff_ms(mut self, ms: u64) -> Self {
        self.busy_backoff_ms = ms;
        self
    }

    /// Consecutive failed or timed-out requests after which a peer is
    /// dropped, at least 1. Default `PEER_FAILURES_MAX_DEFAULT` (3).
    pub fn peer_failures_max(mut self, n: u32) -> Self {
        self.peer_failures_max = n;
        self
    }

    /// Most peers tracked, 1..=`SYNC_PEERS_MAX`. Default
    /// `SYNC_PEERS_MAX_DEFAULT` (64).
    pub fn peers_max(mut self, n: usize) -> Self {
        self.peers_max = n;
        self
    }

    fn validate(&self) -> Result<(), SyncError> {
        let checks = [
            (
                (1..=SYNC_RANGES_MAX).contains(&self.ranges),
                "ranges must be in 1..=SYNC_RANGES_MAX",
            ),
            (
                self.in_flight_per_peer_max >= 1,
                "in_flight_per_peer_max must be at least 1",
            ),
            (self.in_flight_max >= 1, "in_flight_max must be at least 1"),
            (
                (1..=CHUNK_BYTES_MAX as u32).contains(&self.chunk_bytes_max),
                "chunk_bytes_max must be in 1..=CHUNK_BYTES_MAX",
            ),
            (
                self.request_timeout_ms >= 1,
                "request_timeout_ms must be at least 1",
            ),
            (
                self.peer_failures_max >= 1,
                "peer_failures_max must be at least 1",
            ),
            (
                (1..=SYNC_PEERS_MAX).contains(&self.peers_max),
                "peers_max must be in 1..=SYNC_PEERS_MAX",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(SyncError::Config(why)),
            None => Ok(()),
        }
    }
}

/// Where a sub-range stands; what a node persists to resume after a
/// restart ([`StateSync::cursors`], [`StateSync::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeCursor {
    /// Entries from this key on are still to fetch.
    Next(StateKey),
    /// The sub-range is complete.
    Done,
}

/// A chunk request to send: `request` to `peer`; its answer or failure is
/// reported with `ticket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing<P> {
    /// Names this request in [`StateSync::on_response`] and
    /// [`StateSync::on_failure`].
    pub ticket: u64,
    /// Whom to send it to.
    pub peer: P,
    /// The request.
    pub request: ChunkRequest,
}

impl<P> Outgoing<P> {
    /// The request's payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        SyncRequest::Chunk(self.request).encode()
    }
}

/// What to do after an answer ([`StateSync::on_response`]).
#[derive(Debug)]
pub enum Outcome<P> {
    /// A verified chunk of sub-range `range`: ingest its entries. They
    /// are strictly ascending and follow every earlier chunk of the same
    /// sub-range; sub-ranges never overlap.
    Ingest {
        /// The sub-range (index into [`StateSync::range_bounds`]).
        range: usize,
        /// The entries.
        chunk: VerifiedChunk,
    },
    /// The peer sent a bad or undecodable answer: ban it. It is dropped
    /// from the sync and its requests will be asked of other peers.
    Blame {
        /// The sender.
        peer: P,
        /// What it did wrong ([`SyncError::is_peer_fault`] holds).
        error: SyncError,
    },
    /// The peer refused; the range will be asked elsewhere. Not a fault:
    /// "busy" puts the peer on a back-off, the others drop it from this
    /// sync (it does not serve the height).
    Refused {
        /// The peer.
        peer: P,
        /// Its reason.
        reason: RefuseReason,
        /// Whether it was dropped from the sync.
        dropped: bool,
    },
    /// The ticket is not in flight (already answered, failed, timed out or
    /// its peer removed): ignore the answer.
    Stale,
}

/// A request that failed or timed out ([`StateSync::on_failure`],
/// [`StateSync::on_tick`]); its range will be asked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<P> {
    /// The request's ticket.
    pub ticket: u64,
    /// The peer it was sent to.
    pub peer: P,
    /// The peer reached `peer_failures_max` failures in a row and was
    /// dropped from the sync.
    pub dropped: bool,
}

/// How far a sync got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries received (with those a resume started from).
    pub entries: u64,
    /// Encoded bytes of the entries received in this run.
    pub bytes: u64,
    /// Verified chunks received in this run.
    pub chunks: u64,
    /// Sub-ranges in all.
    pub ranges: usize,
    /// Sub-ranges complete.
    pub ranges_done: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// Peers tracked.
    pub peers: usize,
}

#[derive(Debug)]
struct InFlight<P> {
    ticket: u64,
    peer: P,
    request: ChunkRequest,
    sent_ms: u64,
}

#[derive(Debug)]
struct RangeState<P> {
    start: StateKey,
    end: StateKey,
    cursor: RangeCursor,
    in_flight: Option<InFlight<P>>,
    /// The peer that last failed this range: asked again only when no
    /// other peer can take the request.
    avoid: Option<P>,
}

#[derive(Debug, Default)]
struct PeerState {
    in_flight: usize,
    /// Requests sent in all: spreads requests over peers evenly.
    sent: u64,
    /// Failures in a row.
    failures: u32,
    backoff_until_ms: u64,
}

/// A state sync in progress: see the [module docs](super) for an example.
///
/// `P` names a peer (the node's peer id; any `Clone + Ord`).
#[derive(Debug)]
pub struct StateSync<P> {
    head: SnapshotHead,
    config: StateSyncConfig,
    ranges: Vec<RangeState<P>>,
    peers: BTreeMap<P, PeerState>,
    in_flight: usize,
    next_ticket: u64,
    entries: u64,
    bytes: u64,
    chunks: u64,
    /// Leaves of the chunk being verified, reused across chunks.
    leaves: Vec<(Hash32, Hash32)>,
}

/// The `index`-th of `n` equal sub-ranges of the key space, cut on the
/// first 8 key bytes: `[start, end]`, inclusive.
fn sub_range(index: usize, n: usize) -> (StateKey, StateKey) {
    debug_assert!(index < n && n <= SYNC_RANGES_MAX);
    // floor(i × 2^64 / n) < 2^64 for i < n.
    let cut = |i: usize| (((i as u128) << 64) / n as u128) as u64;
    let mut start = [0u8; 32];
    start[..8].copy_from_slice(&cut(index).to_be_bytes());
    let mut end = [0xffu8; 32];
    if index + 1 < n {
        // cut(i + 1) > cut(i) >= 0 since n <= 256 < 2^64.
        end[..8].copy_from_slice(&(cut(index + 1) - 1).to_be_bytes());
    }
    (start, end)
}

/// The key right after `key`, or `None` after the last key.
fn key_after(key: &StateKey) -> Option<StateKey> {
    let mut next = *key;
    for byte in next.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            return Some(next);
        }
    }
    None
}

impl<P: Clone + Ord> StateSync<P> {
    /// A sync of the state at `head` (pick it with
    /// [`super::choose_head`]), starting from nothing.
    ///
    /// # Errors
    /// [`SyncError::Config`] for an invalid `config`.
    pub fn new(head: SnapshotHead, config: StateSyncConfig) -> Result<Self, SyncError> {
        config.validate()?;
        let ranges = (0..config.ranges)
            .map(|i| {
                let (start, end) = sub_range(i, config.ranges);
                RangeState {
                    start,
                    end,
                    cursor: RangeCursor::Next(start),
                    in_flight: None,
                    avoid: None,
                }
            })
            .collect();
        Ok(StateSync {
            head,
            config,
            ranges,
            peers: BTreeMap::new(),
            in_flight: 0,
            next_ticket: 1,
            entries: 0,
            bytes: 0,
            chunks: 0,
            leaves: Vec::new(),
        })
    }

    /// A sync that resumes where an earlier one (same `head`, same
    /// `config.ranges`) stopped: `cursors` as it last reported them after
    /// ingesting, `entries_done` the entries ingested by then.
    ///
    /// # Errors
    /// [`SyncError::Config`] for an invalid `config`, a cursor count other
    /// than `ranges`, or a cursor outside its sub-range.
    pub fn resume(
        head: SnapshotHead,
        config: StateSyncConfig,
        cursors: &[RangeCursor],
        entries_done: u64,
    ) -> Result<Self, SyncError> {
        let mut sync = StateSync::new(head, config)?;
        if cursors.len() != sync.ranges.len() {
            return Err(SyncError::Config("resume needs one cursor per sub-range"));
        }
        for (range, cursor) in sync.ranges.iter_mut().zip(cursors) {
            if let RangeCursor::Next(key) = cursor {
                if *key < range.start || *key > range.end {
                    return Err(SyncError::Config("resume cursor outside its sub-range"));
                }
            }
            range.cursor = *cursor;
        }
        sync.entries = entries_done;
        Ok(sync)
    }

    /// The head being synced.
    pub fn head(&self) -> &SnapshotHead {
        &self.head
    }

    /// Sub-range `range` as `[start, end]` (inclusive), `None` past the
    /// last.
    pub fn range_bounds(&self, range: usize) -> Option<(StateKey, StateKey)> {
        self.ranges.get(range).map(|r| (r.start, r.end))
    }

    /// Where each sub-range stands: persist these after ingesting a chunk
    /// to resume after a restart.
    pub fn cursors(&self) -> impl Iterator<Item = RangeCursor> + '_ {
        self.ranges.iter().map(|r| r.cursor)
    }

    /// Adds a peer that serves the head (a no-op if it is known).
    ///
    /// # Errors
    /// [`SyncError::PeersFull`] when `peers_max` peers are tracked.
    pub fn add_peer(&mut self, peer: P) -> Result<(), SyncError> {
        if self.peers.contains_key(&peer) {
            return Ok(());
        }
        if self.peers.len() >= self.config.peers_max {
            return Err(SyncError::PeersFull {
                max: self.config.peers_max,
            });
        }
        self.peers.insert(peer, PeerState::default());
        Ok(())
    }

    /// Removes a peer (disconnected, banned); its requests in flight will
    /// be asked elsewhere and their answers become stale. Returns how many
    /// requests it had in flight.
    pub fn remove_peer(&mut self, peer: &P) -> usize {
        if self.peers.remove(peer).is_none() {
            return 0;
        }
        let mut requeued = 0;
        for range in &mut self.ranges {
            if range.in_flight.as_ref().is_some_and(|f| f.peer == *peer) {
                range.in_flight = None;
                requeued += 1;
            }
        }
        self.in_flight -= requeued;
        requeued
    }

    /// The next request to send, if a sub-range awaits one and a peer has
    /// room (under `in_flight_per_peer_max`, not backing off) within
    /// `in_flight_max`. Call until `None` after every event.
    pub fn poll_request(&mut self, now_ms: u64) -> Option<Outgoing<P>> {
        if self.in_flight >= self.config.in_flight_max {
            return None;
        }
        let index = self
            .ranges
            .iter()
            .position(|r| r.in_flight.is_none() && matches!(r.cursor, RangeCursor::Next(_)))?;
        let range = &self.ranges[index];
        let RangeCursor::Next(lo) = range.cursor else {
            unreachable!("position() chose a range with a next key");
        };
        // Fewest in flight, then fewest sent; the peer that last failed
        // this range only when no other can take it.
        let peer = self
            .peers
            .iter()
            .filter(|(_, s)| {
                s.in_flight < self.config.in_flight_per_peer_max && s.backoff_until_ms <= now_ms
            })
            .min_by_key(|(p, s)| (range.avoid.as_ref() == Some(*p), s.in_flight, s.sent))
            .map(|(p, _)| p.clone())?;
        let request = ChunkRequest {
            height: self.head.height,
            lo,
            end: range.end,
            bytes_max: self.config.chunk_bytes_max,
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let state = self.peers.get_mut(&peer).expect("chosen from the table");
        state.in_flight += 1;
        state.sent += 1;
        self.in_flight += 1;
        self.ranges[index].in_flight = Some(InFlight {
            ticket,
            peer: peer.clone(),
            request,
            sent_ms: now_ms,
        });
        Some(Outgoing {
            ticket,
            peer,
            request,
        })
    }

    /// Takes request `ticket` out of flight: its range and what was sent.
    fn take(&mut self, ticket: u64) -> Option<(usize, InFlight<P>)> {
        let index = self
            .ranges
            .iter()
            .position(|r| r.in_flight.as_ref().is_some_and(|f| f.ticket == ticket))?;
        let sent = self.ranges[index].in_flight.take()?;
        self.in_flight -= 1;
        if let Some(state) = self.peers.get_mut(&sent.peer) {
            state.in_flight -= 1;
        }
        Some((index, sent))
    }

    /// Handles the answer to request `ticket`, decoded by the caller.
    pub fn on_response(&mut self, ticket: u64, response: SyncResponse, now_ms: u64) -> Outcome<P> {
        let Some((index, sent)) = self.take(ticket) else {
            return Outcome::Stale;
        };
        match response {
            SyncResponse::Chunk(chunk) => {
                match verify_with(&self.head, &sent.request, chunk, &mut self.leaves) {
                    Ok(chunk) => {
                        let range = &mut self.ranges[index];
                        // Not done means hi < end, so a next key exists.
                        range.cursor = match key_after(&chunk.hi) {
                            Some(next) if !chunk.done => RangeCursor::Next(next),
                            _ => RangeCursor::Done,
                        };
                        range.avoid = None;
                        if let Some(state) = self.peers.get_mut(&sent.peer) {
                            state.failures = 0;
                        }
                        self.entries += chunk.entries.len() as u64;
                        self.bytes += chunk.bytes;
                        self.chunks += 1;
                        Outcome::Ingest {
                            range: index,
                            chunk,
                        }
                    }
                    Err(error) => self.blame(sent.peer, error),
                }
            }
            SyncResponse::Heads(_) => self.blame(sent.peer, BadChunk::NotAChunk.into()),
            SyncResponse::Refused(reason) => {
                self.ranges[index].avoid = Some(sent.peer.clone());
                let dropped = match reason {
                    RefuseReason::Busy => {
                        if let Some(state) = self.peers.get_mut(&sent.peer) {
                            state.backoff_until_ms =
                                now_ms.saturating_add(self.config.busy_backoff_ms);
                        }
                        false
                    }
                    // It does not serve the head's height (or claims our
                    // well-formed request is malformed): no use asking it
                    // again in this sync.
                    _ => {
                        self.remove_peer(&sent.peer);
                        true
                    }
                };
                Outcome::Refused {
                    peer: sent.peer,
                    reason,
                    dropped,
                }
            }
        }
    }

    /// Handles the answer to request `ticket` as bytes: an undecodable
    /// answer blames its sender.
    pub fn on_response_bytes(&mut self, ticket: u64, bytes: &[u8], now_ms: u64) -> Outcome<P> {
        match SyncResponse::decode(bytes) {
            Ok(response) => self.on_response(ticket, response, now_ms),
            Err(error) => match self.take(ticket) {
                Some((_, sent)) => self.blame(sent.peer, error.into()),
                None => Outcome::Stale,
            },
        }
    }

    fn blame(&mut self, peer: P, error: SyncError) -> Outcome<P> {
        self.remove_peer(&peer);
        Outcome::Blame { peer, error }
    }

    /// Request `ticket` failed in transport (the peer went away, the
    /// network layer timed it out): its range will be asked elsewhere.
    /// `None` if the ticket was not in flight.
    pub fn on_failure(&mut self, ticket: u64) -> Option<Failure<P>> {
        let (index, sent) = self.take(ticket)?;
        self.ranges[index].avoid = Some(sent.peer.clone());
        let dropped = match self.peers.get_mut(&sent.peer) {
            Some(state) => {
                state.failures += 1;
                state.failures >= self.config.peer_failures_max
            }
            None => false,
        };
        if dropped {
            self.remove_peer(&sent.peer);
        }
        Some(Failure {
            ticket,
            peer: sent.peer,
            dropped,
        })
    }

    /// Fails every request in flight for `request_timeout_ms` or longer at
    /// `now_ms` (as [`StateSync::on_failure`]) and returns them.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Failure<P>> {
        let timeout_ms = self.config.request_timeout_ms;
        let expired: Vec<u64> = self
            .ranges
            .iter()
            .filter_map(|r| r.in_flight.as_ref())
            .filter(|f| now_ms.saturating_sub(f.sent_ms) >= timeout_ms)
            .map(|f| f.ticket)
            .collect();
        expired
            .into_iter()
            .filter_map(|ticket| self.on_failure(ticket))
            .collect()
    }

    /// How far the sync got.
    pub fn progress(&self) -> Progress {
        Progress {
            entries: self.entries,
            bytes: self.bytes,
            chunks: self.chunks,
            ranges: self.ranges.len(),
            ranges_done: self
                .ranges
                .iter()
                .filter(|r| r.cursor == RangeCursor::Done)
                .count(),
            in_flight: self.in_flight,
            peers: self.peers.len(),
        }
    }

    /// Peers in the sync now (added, and not dropped since).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether every sub-range is complete.
    pub fn is_done(&self) -> bool {
        self.ranges.iter().all(|r| r.cursor == RangeCursor::Done)
    }

    /// The final check once every sub-range is complete: the entries add
    /// up to the head's count. The state itself is already proven chunk by
    /// chunk (the sub-ranges tile the key space and each chunk starts
    /// right after the one before), so the caller can now build the trie
    /// and compare its root with `head.state_root` as a last local check.
    ///
    /// # Errors
    /// [`SyncError::NotFinished`] or [`SyncError::EntryCount`].
    pub fn finish(&self) -> Result<Progress, SyncError> {
        let progress = self.progress();
        if progress.ranges_done != progress.ranges {
            return Err(SyncError::NotFinished {
                ranges_left: progress.ranges - progress.ranges_done,
            });
        }
        if progress.entries != self.head.entries {
            return Err(SyncError::EntryCount {
                received: progress.entries,
                announced: self.head.entries,
            });
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_tile_the_key_space() {
        for n in [1, 2, 3, 7, 16, 255, 256] {
            let mut expected_start = [0u8; 32];
            for i in 0..n {
                let (start, end) = sub_range(i, n);
                assert_eq!(start, expected_start, "n {n} range {i}");
                assert!(start <= end);
                match key_after(&end) {
                    Some(next) => expected_start = next,
                    None => assert_eq!(i, n - 1, "only the last range ends at ff…"),
                }
            }
            assert_eq!(sub_range(n - 1, n).1, [0xff; 32]);
        }
    }

    #[test]
    fn key_after_carries() {
        let mut k = [0u8; 32];
        k[31] = 0xff;
        k[30] = 0x01;
        let next = key_after(&k).unwrap();
        assert_eq!((next[30], next[31]), (0x02, 0x00));
        assert_eq!(key_after(&[0xff; 32]), None);
    }

    #[test]
    fn config_limits_are_checked() {
        let head = SnapshotHead {
            height: 1,
            block_id: [0; 32],
            state_root: [0; 32],
            entries: 0,
        };
        let bad = [
            StateSyncConfig::new().ranges(0),
            StateSyncConfig::new().ranges(SYNC_RANGES_MAX + 1),
            StateSyncConfig::new().in_flight_max(0),
            StateSyncConfig::new().in_flight_per_peer_max(0),
            StateSyncConfig::new().chunk_bytes_max(0),
            StateSyncConfig::new().chunk_bytes_max(CHUNK_BYTES_MAX as u32 + 1),
            StateSyncConfig::new().request_timeout_ms(0),
            StateSyncConfig::new().peer_failures_max(0),
            StateSyncConfig::new().peers_max(SYNC_PEERS_MAX + 1),
        ];
        for config in bad {
            assert!(matches!(
                StateSync::<u8>::new(head, config.clone()),
                Err(SyncError::Config(_))
            ));
        }
        let mut sync = StateSync::new(head, StateSyncConfig::new().peers_max(1)).unwrap();
        sync.add_peer(1u8).unwrap();
        sync.add_peer(1u8).unwrap();
        assert!(matches!(
            sync.add_peer(2),
            Err(SyncError::PeersFull { max: 1 })
        ));
    }
}
