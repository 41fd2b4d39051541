//! Requests, responses and one-way messages between ready peers, and the
//! deadlines of this node's requests.
//!
//! Every request sent with a request id gets an entry in one FIFO deadline
//! queue. The timeout is the same for every request and time only moves
//! forward, so the queue is sorted by deadline and the tick only looks at
//! its front. Answered requests are not searched for in the queue (that
//! would be O(n)); their entries are skipped when they expire, and the
//! queue is compacted when it has grown to twice its live size.

use super::{push_event, ConnId, Peer, Protocol};
use crate::control::{Event, RequestFailure, Shared};
use crate::frame::Header;
use crate::limits::{DEADLINES_COMPACT_MIN, PENDING_REQUESTS_PER_PEER_MAX};
use crate::message::Message;
use crate::peer::Misbehaviour;

/// When a pending request times out. `conn` names the connection it went
/// out on; the entry is stale once that connection is gone or the id is no
/// longer in its `pending_requests`.
#[derive(Clone, Copy)]
pub(super) struct Deadline {
    at_ms: u64,
    conn: ConnId,
    request_id: u64,
}

impl Protocol {
    /// Sends a request and arms its deadline, or reports at once why it
    /// cannot be sent ([`Event::RequestFailed`]).
    pub(crate) fn request(&mut self, to: [u8; 32], request_id: u64, payload: &[u8], now_ms: u64) {
        self.now_ms = now_ms;
        let Some(&slot) = self.by_key.get(&to) else {
            push_request_failed(&self.shared, to, request_id, RequestFailure::NotConnected);
            return;
        };
        // `now_ms` truncates to whole milliseconds, so without the extra
        // millisecond a request could be reported timed out up to 1 ms
        // before `request_timeout_ms` had passed (the likely cause of one
        // failure of the `waited >= timeout` check in
        // `unanswered_request_times_out_and_a_late_response_is_unsolicited`).
        // One more covers the driver's cached clock, which may be read up
        // to 64 commands (well under 1 ms) before this one was pushed.
        let at_ms = now_ms + self.cfg.request_timeout_ms + 2;
        let conn = self.peers[slot].as_mut().expect("ready peers are live");
        if conn.pending_requests.len() >= PENDING_REQUESTS_PER_PEER_MAX {
            push_request_failed(&self.shared, to, request_id, RequestFailure::TooManyPending);
            return;
        }
        conn.pending_requests.insert(request_id);
        let gen = conn.gen;
        if self.deadlines.len() >= self.deadlines_compact_at {
            self.compact_deadlines();
        }
        self.deadlines.push_back(Deadline {
            at_ms,
            conn: ConnId { slot, gen },
            request_id,
        });
        // If the send overflows the peer's queue, the connection is closed
        // and `close` reports this request as `PeerGone`, so no event is
        // pushed here.
        self.send_msg(slot, &Message::Request(payload), request_id);
    }

    /// Answers request `request_id` of ready peer `to` (dropped if it is
    /// gone).
    pub(crate) fn respond(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        if let Some(&s) = self.by_key.get(&to) {
            self.send_msg(s, &Message::Response(payload), request_id);
        }
    }

    /// Sends a one-way message to ready peer `to` (dropped if it is gone).
    pub(crate) fn send(&mut self, to: [u8; 32], payload: &[u8]) {
        if let Some(&s) = self.by_key.get(&to) {
            self.send_msg(s, &Message::Request(payload), 0);
        }
    }

    /// Reports the requests whose deadline has passed and that are still
    /// pending; a response arriving later is unsolicited.
    pub(super) fn expire_requests(&mut self, now: u64) {
        while let Some(&d) = self.deadlines.front() {
            if d.at_ms > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(conn) = self.peer_mut(d.conn) else {
                continue;
            };
            if !conn.pending_requests.remove(&d.request_id) {
                continue;
            }
            if let Some(info) = conn.peer {
                push_request_failed(
                    &self.shared,
                    info.node_key,
                    d.request_id,
                    RequestFailure::TimedOut,
                );
            }
        }
    }

    /// Drops the entries of answered or failed requests. Run when the queue
    /// has doubled since the last compaction, so its cost is amortised over
    /// at least as many requests as it scans, and the queue stays within
    /// twice the pending requests (or `DEADLINES_COMPACT_MIN`).
    fn compact_deadlines(&mut self) {
        let peers = &self.peers;
        self.deadlines.retain(|d| match peers.get(d.conn.slot) {
            Some(Some(c)) if c.gen == d.conn.gen => c.pending_requests.contains(&d.request_id),
            _ => false,
        });
        self.deadlines_compact_at = (2 * self.deadlines.len()).max(DEADLINES_COMPACT_MIN);
    }

    /// A request (or one-way message, request id 0) or a response from a
    /// ready peer, turned into its event, or answered by the responder.
    pub(super) fn on_opaque(
        &mut self,
        slot: usize,
        h: Header,
        response: bool,
        payload: Opaque<'_>,
    ) {
        let conn = self.peers[slot].as_mut().expect("live slot");
        let from = conn.peer.expect("ready").node_key;
        let ev = if response {
            if !conn.pending_requests.remove(&h.request_id) {
                self.misbehave(slot, Misbehaviour::UnsolicitedResponse);
                return;
            }
            Event::Response {
                from,
                request_id: h.request_id,
                payload: payload.into_vec(),
            }
        } else if h.request_id == 0 {
            Event::Message {
                from,
                payload: payload.into_vec(),
            }
        } else {
            if let Some(r) = self.responder.as_mut() {
                self.answer.clear();
                let answered = r.respond(&from, payload.as_slice(), &mut self.answer)
                    && self.answer.len() <= self.cfg.frame_payload_bytes_max as usize;
                if answered {
                    let answer = std::mem::take(&mut self.answer);
                    self.send_msg(slot, &Message::Response(&answer), h.request_id);
                    self.answer = answer;
                    return;
                }
            }
            Event::Request {
                from,
                request_id: h.request_id,
                payload: payload.into_vec(),
            }
        };
        push_event(&self.shared, ev);
    }
}

/// Hashes request ids (our own counter's values, so no attacker picks
/// the keys inserted; a response's id is only looked up) with one
/// multiplication instead of SipHash, which was 4 % of the I/O thread's
/// samples in the 128-byte `net/loopback` profile (with the node-key map).
/// The odd multiplier spreads sequential ids over the high bits, which the
/// std table uses for its control bytes.
#[derive(Clone, Copy, Default)]
pub(super) struct RequestIdState;

#[derive(Default)]
pub(super) struct RequestIdHasher(u64);

impl std::hash::Hasher for RequestIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::hash::BuildHasher for RequestIdState {
    type Hasher = RequestIdHasher;
    fn build_hasher(&self) -> RequestIdHasher {
        RequestIdHasher(0)
    }
}

/// The payload of a request or response on its way into an event: owned
/// when the decoder handed over its reassembly buffer (moved, not copied),
/// else borrowed from the receive buffer (copied once).
pub(super) enum Opaque<'b> {
    Borrowed(&'b [u8]),
    Owned(Vec<u8>),
}

impl Opaque<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Opaque::Borrowed(p) => p,
            Opaque::Owned(v) => v,
        }
    }

    fn into_vec(self) -> Vec<u8> {
        match self {
            Opaque::Borrowed(p) => p.to_vec(),
            Opaque::Owned(v) => v,
        }
    }
}

fn push_request_failed(shared: &Shared, to: [u8; 32], request_id: u64, reason: RequestFailure) {
    push_event(
        shared,
        Event::RequestFailed {
            to,
            request_id,
            reason,
        },
    );
}

/// Reports every request pending on `conn` as failed and forgets them.
pub(super) fn fail_pending(shared: &Shared, conn: &mut Peer, reason: RequestFailure) {
    let Some(info) = conn.peer else {
        // Only ready connections (which have a peer) send requests.
        debug_assert!(conn.pending_requests.is_empty());
        return;
    };
    for request_id in conn.pending_requests.drain() {
        push_request_failed(shared, info.node_key, request_id, reason);
    }
}
