//! What the [`Handle`](crate::Handle) and the event loop exchange:
//! commands in, events out, and the state both sides read (queues, the
//! eventfd, counters, the peer table). It sits below both, so neither
//! imports the other's module for its types.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;

use crate::event_wait::EventWait;
use crate::message::ItemId;
use crate::sys;

/// Capacity of the command queue (handle → I/O thread).
pub const COMMANDS_MAX: usize = 4096;

/// Something that happened on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer completed the handshake.
    PeerUp {
        /// Its node key.
        node_key: [u8; 32],
        /// Its remote address.
        addr: SocketAddr,
    },
    /// A ready peer went away.
    PeerDown {
        /// Its node key.
        node_key: [u8; 32],
    },
    /// A gossip item new to this node (each id is reported once).
    Item {
        /// The id.
        id: ItemId,
        /// The item bytes.
        item: Vec<u8>,
        /// The peer it came from.
        from: [u8; 32],
    },
    /// A one-way message from a peer.
    Message {
        /// Sender.
        from: [u8; 32],
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// A request; answer with [`Handle::respond`].
    Request {
        /// Sender.
        from: [u8; 32],
        /// Request id to echo.
        request_id: u64,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// A response to one of our requests.
    Response {
        /// Responder.
        from: [u8; 32],
        /// Our request id.
        request_id: u64,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// One of our requests will get no [`Event::Response`]: each request id
    /// returned by [`Handle::request`] ends in exactly one `Response` or one
    /// `RequestFailed` (unless the event queue overflowed, which
    /// [`Stats::events_dropped`] counts).
    RequestFailed {
        /// The peer the request was for.
        to: [u8; 32],
        /// Our request id.
        request_id: u64,
        /// Why.
        reason: RequestFailure,
    },
}

/// Why a request got no response, in [`Event::RequestFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No response within [`Config::request_timeout_ms`]. A response that
    /// arrives later is treated as unsolicited.
    #[error("no response within the request timeout")]
    TimedOut,
    /// The connection the request went out on closed before the response
    /// came (the peer disconnected, was dropped, or the node shut down).
    #[error("the connection closed before the response came")]
    PeerGone,
    /// No ready connection to that node key when the request was made; the
    /// request was not sent.
    #[error("not connected to that peer")]
    NotConnected,
    /// The peer already had [`crate::limits::PENDING_REQUESTS_PER_PEER_MAX`]
    /// requests awaiting a response; the request was not sent.
    #[error("too many requests pending to that peer")]
    TooManyPending,
}

pub(crate) enum Command {
    /// Gossip `item` unless its id was seen (`id` is its blake3).
    Broadcast {
        id: ItemId,
        item: Vec<u8>,
    },
    /// Gossip `item` even if its id was seen (received and validated).
    Relay {
        id: ItemId,
        item: Vec<u8>,
    },
    /// [`Command::Relay`] for many items, in one command.
    RelayMany(Vec<(ItemId, Vec<u8>)>),
    Send {
        to: [u8; 32],
        payload: Vec<u8>,
    },
    Request {
        to: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
    Respond {
        to: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
    Dial(SocketAddr),
    Penalize {
        peer: [u8; 32],
        reason: crate::peer::Misbehaviour,
    },
}

/// A connected peer, as reported by [`Handle::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Node key.
    pub node_key: [u8; 32],
    /// Remote address.
    pub addr: SocketAddr,
    /// True when we dialed it.
    pub outbound: bool,
    /// Current score.
    pub score: i32,
}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames queued for sending.
    pub frames_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Items new to this node.
    pub items_new: AtomicU64,
    /// Duplicate items received.
    pub items_duplicate: AtomicU64,
    /// Items dropped by the push rate limit.
    pub items_rate_limited: AtomicU64,
    /// Connections closed for misbehaviour.
    pub peers_dropped: AtomicU64,
    /// Bans issued.
    pub bans: AtomicU64,
    /// Handshakes refused.
    pub handshakes_refused: AtomicU64,
    /// Inbound connections closed at accept: too many handshakes in
    /// progress (in all, or from that IP), or from a banned IP.
    pub accepts_refused: AtomicU64,
    /// Inbound peers evicted to make room for a newcomer (the worst-scored,
    /// having misbehaved).
    pub peers_evicted: AtomicU64,
    /// Events other than gossip items dropped because their lane of the
    /// event queue was full (the consumer fell `events_max` behind).
    pub events_dropped: AtomicU64,
    /// Gossip items dropped because the item lane was full: shed under a
    /// flood, without touching the lane of votes and requests.
    pub items_shed: AtomicU64,
    /// Gossip items from peers that are not reserved dropped unhashed:
    /// strangers together spent `Config::stranger_items_per_s_total`.
    pub stranger_items_dropped: AtomicU64,
    /// Multishot receives that found every ring buffer taken and were
    /// re-armed (`Config::recv_buffers` smaller than the receives completing
    /// at once).
    pub recv_buffer_shortages: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) commands: ArrayQueue<Command>,
    /// Every event but gossip items: consensus messages, requests,
    /// responses, peers coming and going. Taken before `items`.
    pub(crate) events: ArrayQueue<Event>,
    /// Gossip items ([`Event::Item`]), a lane of their own: a flood of
    /// items (any peer may push thousands a second, and they are cheap to
    /// make) fills this lane and is shed here, while votes and requests
    /// keep their room and are taken first, so a consumer never finds a
    /// vote behind tens of thousands of items (the February 2024 Avalanche
    /// stall came from gossip starving poll answers).
    pub(crate) items: ArrayQueue<Event>,
    /// Lets [`Handle::next_event_timeout`] sleep until the loop pushes to
    /// `events`; see [`crate::event_wait`].
    pub(crate) event_wait: EventWait,
    pub(crate) eventfd: RawFd,
    /// True while the loop is (about to be) blocked in the kernel waiting
    /// for completions. A handle that pushed commands writes the eventfd
    /// only when it finds this set (and clears it, so one write serves a
    /// burst); a loop that is awake checks the command queue itself before
    /// it blocks. Protocol in
    /// [`Shared::wake_if_asleep`] and `EventLoop::wait_completions`.
    pub(crate) loop_asleep: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) stats: Stats,
    pub(crate) peers: Mutex<Vec<PeerSummary>>,
    pub(crate) next_request_id: AtomicU64,
}

impl Shared {
    /// Empty queues of [`COMMANDS_MAX`] commands and `events_max` events
    /// in each of the two event lanes,
    /// waking the loop through `eventfd` (owned from now on).
    pub(crate) fn new(events_max: usize, eventfd: RawFd) -> Shared {
        Shared {
            commands: ArrayQueue::new(COMMANDS_MAX),
            events: ArrayQueue::new(events_max),
            items: ArrayQueue::new(events_max),
            event_wait: EventWait::default(),
            eventfd,
            loop_asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            peers: Mutex::new(Vec::new()),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// The next event: any queued non-item event before any item.
    pub(crate) fn pop_event(&self) -> Option<Event> {
        self.events.pop().or_else(|| self.items.pop())
    }

    /// Queues `ev` in its lane; false (and nothing queued) when the lane is
    /// full.
    pub(crate) fn push_event(&self, ev: Event) -> bool {
        let lane = match ev {
            Event::Item { .. } => &self.items,
            _ => &self.events,
        };
        lane.push(ev).is_ok()
    }

    pub(crate) fn wake(&self) {
        sys::eventfd_signal(self.eventfd);
    }

    /// Called after pushing commands: writes the eventfd if the loop is
    /// asleep or about to block.
    ///
    /// Pairs with `EventLoop::wait_completions`, which sets `loop_asleep`,
    /// issues a `SeqCst` fence and only then checks the command queue,
    /// blocking only if it is empty. Here the push comes before the fence
    /// and the load of `loop_asleep`. The two fences rule out both sides
    /// missing each other (store buffering): either the loop sees the
    /// command and does not block, or this load sees the flag and writes
    /// the eventfd. Whoever clears the flag first (with the swap) writes;
    /// a handle that finds it clear relies on a write already made or on
    /// the loop's own check before its next block.
    pub(crate) fn wake_if_asleep(&self) {
        fence(Ordering::SeqCst);
        if self.loop_asleep.load(Ordering::Relaxed)
            && self.loop_asleep.swap(false, Ordering::AcqRel)
        {
            self.wake();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The eventfd is owned by `Shared` and closed exactly once.
        sys::close(self.eventfd);
    }
}

/// Answers requests on the I/O thread; see [`Node::start_with_responder`].
///
/// It runs inside the event loop, so it must be quick and must not block:
/// every socket of the node waits while it runs. Anything slow (a disk
/// read, a lock another thread holds for long) belongs in a consumer of
/// [`Event::Request`]: decline such requests by returning false.
pub trait Responder: Send + 'static {
    /// Called for each request from a ready peer (`from`, its node key)
    /// with the request payload. To answer, write the answer payload into
    /// `answer` (empty on entry, its capacity reused across calls) and
    /// return true; it is sent as the [`Event::Response`] the requester
    /// waits for. An answer longer than [`Config::frame_payload_bytes_max`]
    /// is not sent: the request is then passed on as an event, as when
    /// this returns false.
    fn respond(&mut self, from: &[u8; 32], request: &[u8], answer: &mut Vec<u8>) -> bool;
}

impl<F> Responder for F
where
    F: FnMut(&[u8; 32], &[u8], &mut Vec<u8>) -> bool + Send + 'static,
{
    fn respond(&mut self, from: &[u8; 32], request: &[u8], answer: &mut Vec<u8>) -> bool {
        self(from, request, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> Event {
        Event::Item {
            id: [n; 32],
            item: vec![n],
            from: [1; 32],
        }
    }

    #[test]
    fn a_full_item_lane_leaves_room_for_votes_and_they_come_first() {
        let efd = sys::eventfd().expect("eventfd");
        let shared = Shared::new(8, efd);
        for n in 0..8 {
            assert!(shared.push_event(item(n)));
        }
        // The flood's next item is shed; a consensus message still gets in.
        assert!(!shared.push_event(item(8)));
        let vote = Event::Message {
            from: [2; 32],
            payload: b"vote".to_vec(),
        };
        assert!(shared.push_event(vote));
        // And it is taken before the eight items queued ahead of it.
        assert!(matches!(shared.pop_event(), Some(Event::Message { .. })));
        let items = std::iter::from_fn(|| shared.pop_event()).count();
        assert_eq!(items, 8);
    }
}
