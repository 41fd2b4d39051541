//! The peer protocol, sans I/O: handshake, ping, peer exchange, gossip
//! (announce, pull, push, flush), requests and their deadlines, scoring and
//! bans, for every connection of a node.
//!
//! It never touches a socket, a ring or a clock (its one request to the
//! OS is for each handshake's random challenge, which must not come from
//! its seeded generator). The driver
//! (`event_loop`, over io_uring; a test, in memory) tells it what happened
//! — a connection accepted or connected, bytes received, bytes sent, a
//! tick, a command — with the time in milliseconds, and it answers in
//! three ways:
//! - **bytes to send**: frames are written straight into a per-connection
//!   outgoing queue it owns (no copy and no allocation per frame); the
//!   driver takes a connection's whole queue with [`Protocol::take_output`]
//!   when [`Protocol::take_sendable`] lists it, and reports what the kernel
//!   took with [`Protocol::on_sent`];
//! - **connections to close or open**: [`Protocol::take_closes`] (the
//!   protocol side of each close is already done) and
//!   [`Protocol::take_dials`];
//! - **events for the consumer**: pushed to the node's bounded event queue
//!   in [`Shared`], with its counters, as the consumer reads them.
//!
//! Connections are named by [`ConnId`]s that the protocol hands out (on
//! accept and on dial) and takes back only when the driver says the
//! connection's resources are freed ([`Protocol::release`]), so a slot is
//! never reused while an operation of the driver may still complete on it.
//!
//! Submodules: [`admission`] (handshake messages, admission, promotion),
//! [`recv`] (frame decoding and dispatch), [`items`] (announce, pull, push
//! and the gossip flush), [`requests`] (requests, responses, deadlines).

mod admission;
mod items;
mod recv;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_storage::lru::{IdentityState, LruCache};

use crate::addr_book::AddrBook;
use crate::config::Config;
use crate::control::{Command, Event, PeerSummary, Responder, Shared};
use crate::frame::FrameDecoder;
use crate::gossip::{PeerGossip, SeenCache, TokenBucket};
use crate::handshake::{random_bytes, Handshake, Identity, PeerInfo, Role};
use crate::limits::{
    ACCEPT_IPS_REMEMBERED_MAX, ADDRS_ANSWER_MAX, BANS_MAX, DEADLINES_COMPACT_MIN, DIAL_RETRY_MS,
    HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX, ITEM_STORE_MAX, OUTBOUND_DIAL_INTERVAL_MS,
    REQUESTED_IDS_MAX, RESERVED_REDIAL_MS, SCORE_RECOVERY_INTERVAL_MS,
};
use crate::message::{ItemId, Message};
use crate::peer::{BanKey, BanList, Misbehaviour, PeerState, Score};
use crate::rng::Rng;

use requests::{fail_pending, Deadline, RequestIdState};

/// Names one connection for as long as it lives: its slot and generation
/// (a slot reused by a later connection has another generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnId {
    /// Index in the protocol's (and the driver's) connection tables.
    pub(crate) slot: usize,
    /// Tells this connection from earlier ones in the same slot.
    pub(crate) gen: u32,
}

impl ConnId {
    /// The id as one integer, for tables keyed by connection.
    fn tag(self) -> u64 {
        ((self.slot as u64) << 32) | u64::from(self.gen)
    }
}

/// The protocol's state of one connection.
struct Peer {
    gen: u32,
    remote: SocketAddr,
    outbound: bool,
    state: PeerState,
    /// Closed by the protocol; the slot waits for [`Protocol::release`].
    closing: bool,
    decoder: FrameDecoder,
    /// When the decoder started holding part of a frame (0: it holds none).
    partial_since_ms: u64,
    /// Frames queued and not yet taken by the driver.
    out: Vec<u8>,
    /// Bytes taken by the driver and not yet reported sent.
    out_in_flight: usize,
    /// True while the connection is in `Protocol::sendable`.
    sendable: bool,
    hs: Option<Handshake>,
    peer: Option<PeerInfo>,
    /// Address to dial the peer back on (outbound: where we dialed).
    peer_addr: Option<SocketAddr>,
    score: Score,
    gossip: Option<PeerGossip>,
    /// The peer asked for no gossip ([`Message::Quiet`]).
    quiet: bool,
    /// Accepted from an IP address banned for misbehaviour before
    /// authentication: the connection may only become a reserved peer.
    restricted: bool,
    ping_nonce: u64,
    ping_sent_ms: u64,
    awaiting_pong: bool,
    pending_requests: HashSet<u64, RequestIdState>,
}

impl Peer {
    /// Bytes queued or in flight to this connection.
    fn queued_bytes(&self) -> usize {
        self.out.len() + self.out_in_flight
    }
}

/// Every connection's protocol state and the node-wide state they share;
/// see the module documentation.
pub(crate) struct Protocol {
    cfg: Config,
    identity: Identity,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The time of the input being handled, as the driver gave it.
    now_ms: u64,
    peers: Vec<Option<Box<Peer>>>,
    free: Vec<usize>,
    /// Connections with frames queued since the driver last took the list;
    /// each appears at most once (`Peer::sendable`).
    sendable: Vec<ConnId>,
    /// Connections closed by the protocol, for the driver to close.
    closes: Vec<ConnId>,
    /// Connections to open, for the driver to dial.
    dials: Vec<(ConnId, SocketAddr)>,
    /// Ready peers by node key. Hashed by the key's first 8 bytes: keys
    /// are ed25519 public keys, and the map holds at most the peer limits'
    /// worth of entries, so even ground-out colliding keys cost little.
    by_key: HashMap<[u8; 32], usize, IdentityState>,
    seen: SeenCache,
    store: LruCache<ItemId, Vec<u8>, IdentityState>,
    /// Ids pulled and not yet received: when, and from which connection
    /// ([`ConnId::tag`]). A pull response may carry only these.
    requested: LruCache<ItemId, (u64, u64), IdentityState>,
    /// `Config::reserved_peers`, for lookups.
    reserved: HashSet<[u8; 32]>,
    /// `Config::stranger_items_per_s_total`, when set.
    stranger_items: Option<TokenBucket>,
    /// `Config::accepts_per_s_per_ip`, when set: a bucket per recently
    /// seen IP ([`ACCEPT_IPS_REMEMBERED_MAX`]; one forgotten starts full).
    accepts: LruCache<IpAddr, TokenBucket>,
    pending_push: Vec<ItemId>,
    deadlines: VecDeque<Deadline>,
    /// Length at which `deadlines` is next compacted.
    deadlines_compact_at: usize,
    addr_book: AddrBook,
    bans: BanList,
    rng: Rng,
    last_flush_ms: u64,
    last_dial_ms: u64,
    /// When each of `Config::reserved_dials` was last dialed.
    reserved_dialed_ms: Vec<Option<u64>>,
    last_exchange_ms: u64,
    last_recover_ms: u64,
    peers_dirty: bool,
    /// Answers requests in the loop, when the node was started with one.
    responder: Option<Box<dyn Responder>>,
    /// The responder's answer buffer, reused across requests.
    answer: Vec<u8>,
}

impl Protocol {
    /// The protocol of a node listening on `local_addr`; `seed` seeds its
    /// random choices (fanout, peer sampling, ping nonces).
    pub(crate) fn new(
        cfg: Config,
        identity: Identity,
        shared: Arc<Shared>,
        responder: Option<Box<dyn Responder>>,
        local_addr: SocketAddr,
        seed: u64,
    ) -> Protocol {
        let mut addr_book = AddrBook::new(cfg.addr_book_entries_max);
        for s in &cfg.seeds {
            addr_book.add(*s);
        }
        Protocol {
            identity,
            shared,
            local_addr,
            now_ms: 0,
            peers: Vec::new(),
            free: Vec::new(),
            sendable: Vec::new(),
            closes: Vec::new(),
            dials: Vec::new(),
            by_key: HashMap::with_hasher(IdentityState),
            seen: SeenCache::new(cfg.seen_ids_max),
            store: LruCache::with_hasher(ITEM_STORE_MAX, IdentityState),
            requested: LruCache::with_hasher(REQUESTED_IDS_MAX, IdentityState),
            reserved: cfg.reserved_peers.iter().copied().collect(),
            stranger_items: (cfg.stranger_items_per_s_total > 0).then(|| {
                TokenBucket::new(
                    cfg.stranger_items_per_s_total,
                    cfg.stranger_items_per_s_total,
                    0,
                )
            }),
            accepts: LruCache::new(ACCEPT_IPS_REMEMBERED_MAX),
            pending_push: Vec::new(),
            deadlines: VecDeque::new(),
            deadlines_compact_at: DEADLINES_COMPACT_MIN,
            addr_book,
            bans: BanList::new(BANS_MAX),
            rng: Rng::from_seed(seed),
            last_flush_ms: 0,
            last_dial_ms: 0,
            reserved_dialed_ms: vec![None; cfg.reserved_dials.len()],
            last_exchange_ms: 0,
            last_recover_ms: 0,
            peers_dirty: false,
            responder,
            answer: Vec::new(),
            cfg,
        }
    }

    // ---- Outputs, taken by the driver ----

    /// Moves the connections that have frames to send into `out` (which
    /// should be empty; its capacity is reused), each once.
    pub(crate) fn take_sendable(&mut self, out: &mut Vec<ConnId>) {
        std::mem::swap(&mut self.sendable, out);
        for id in out.iter() {
            if let Some(p) = self.peer_mut(*id) {
                p.sendable = false;
            }
        }
    }

    /// Swaps the frames queued for `id` into `buf` (cleared first; the two
    /// vectors trade capacities, so neither side allocates in steady
    /// state). Returns false, leaving `buf` alone, when nothing is queued.
    /// The bytes count as in flight until [`Protocol::on_sent`] reports
    /// them sent.
    pub(crate) fn take_output(&mut self, id: ConnId, buf: &mut Vec<u8>) -> bool {
        let Some(p) = self.peer_mut(id) else {
            return false;
        };
        if p.out.is_empty() {
            return false;
        }
        buf.clear();
        std::mem::swap(&mut p.out, buf);
        p.out_in_flight = buf.len();
        true
    }

    /// The kernel took `n` bytes of what [`Protocol::take_output`] gave:
    /// `id` is listed for the next [`Protocol::take_sendable`], so that
    /// the rest, or whatever was queued meanwhile, goes next.
    pub(crate) fn on_sent(&mut self, id: ConnId, n: usize) {
        if let Some(p) = self.peer_mut(id) {
            p.out_in_flight = p.out_in_flight.saturating_sub(n);
            if !p.sendable {
                p.sendable = true;
                self.sendable.push(id);
            }
        }
    }

    /// True when [`Protocol::take_closes`] has something (cheap: checked
    /// after every receive).
    pub(crate) fn has_closes(&self) -> bool {
        !self.closes.is_empty()
    }

    /// Moves the connections the protocol closed into `out`: their
    /// requests are failed and their peers reported down already; the
    /// driver shuts their sockets and then [`Protocol::release`]s them.
    pub(crate) fn take_closes(&mut self, out: &mut Vec<ConnId>) {
        std::mem::swap(&mut self.closes, out);
    }

    /// True when [`Protocol::take_dials`] has something.
    pub(crate) fn has_dials(&self) -> bool {
        !self.dials.is_empty()
    }

    /// Moves the connections to dial into `out`. For each, the driver
    /// calls [`Protocol::on_dial_started`] or [`Protocol::on_dial_failed`],
    /// then [`Protocol::on_connected`] or [`Protocol::on_connect_failed`].
    pub(crate) fn take_dials(&mut self, out: &mut Vec<(ConnId, SocketAddr)>) {
        std::mem::swap(&mut self.dials, out);
    }

    /// Publishes the peer table for [`crate::Handle::peers`] if it changed.
    pub(crate) fn publish_peers_if_changed(&mut self) {
        if !self.peers_dirty {
            return;
        }
        self.peers_dirty = false;
        let list: Vec<PeerSummary> = self
            .by_key
            .values()
            .filter_map(|&s| self.peers[s].as_ref())
            .filter_map(|c| {
                c.peer.map(|p| PeerSummary {
                    node_key: p.node_key,
                    addr: c.remote,
                    outbound: c.outbound,
                    score: c.score.0,
                })
            })
            .collect();
        if let Ok(mut p) = self.shared.peers.lock() {
            *p = list;
        }
    }

    // ---- Connection life cycle ----

    fn peer_mut(&mut self, id: ConnId) -> Option<&mut Peer> {
        match self.peers.get_mut(id.slot) {
            Some(Some(p)) if p.gen == id.gen => Some(p),
            _ => None,
        }
    }

    fn new_peer(&mut self, remote: SocketAddr, outbound: bool, state: PeerState) -> ConnId {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.peers.push(None);
            self.peers.len() - 1
        });
        let gen = self.rng.next_u64() as u32;
        self.peers[slot] = Some(Box::new(Peer {
            gen,
            remote,
            outbound,
            state,
            closing: false,
            // Raised to `frame_payload_bytes_max` once the peer is
            // authenticated (`on_bytes`): before that a connection can make
            // this node buffer no more than a handshake message.
            decoder: FrameDecoder::new(HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX),
            partial_since_ms: 0,
            out: Vec::new(),
            out_in_flight: 0,
            sendable: false,
            hs: None,
            peer: None,
            peer_addr: if outbound { Some(remote) } else { None },
            score: Score::default(),
            gossip: None,
            quiet: false,
            restricted: false,
            ping_nonce: 0,
            ping_sent_ms: 0,
            awaiting_pong: false,
            pending_requests: HashSet::with_hasher(RequestIdState),
        }));
        ConnId { slot, gen }
    }

    /// An inbound connection from `remote` was accepted: returns its id,
    /// with its hello queued, or `None` when it is refused (too many
    /// handshakes in all or from that IP, or a banned IP while no peer is
    /// reserved), counted in [`crate::Stats::accepts_refused`].
    pub(crate) fn on_accepted(&mut self, remote: SocketAddr, now_ms: u64) -> Option<ConnId> {
        self.now_ms = now_ms;
        // The inbound peer limit applies once a peer is authenticated (a
        // validator must get in however many strangers hold the slots);
        // until then the handshake limits bound what connections cost.
        let (handshaking, same_ip) = self
            .peers
            .iter()
            .flatten()
            .filter(|c| !c.closing && c.state == PeerState::Handshaking)
            .fold((0, 0), |(all, ip), c| {
                (all + 1, ip + usize::from(c.remote.ip() == remote.ip()))
            });
        let ip_banned = self.bans.is_banned(&BanKey::Ip(remote.ip()), now_ms);
        if handshaking >= self.cfg.handshakes_max
            || same_ip >= self.cfg.handshakes_per_ip_max
            || (ip_banned && self.reserved.is_empty())
            || !self.accept_rate_allows(remote.ip(), now_ms)
        {
            self.shared
                .stats
                .accepts_refused
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.new_peer(remote, false, PeerState::Handshaking);
        self.peers[id.slot]
            .as_mut()
            .expect("just created")
            .restricted = ip_banned;
        self.start_handshake(id.slot);
        Some(id)
    }

    /// Takes one token of `ip`'s accept bucket (`Config::accepts_per_s_per_ip`);
    /// true when there was one or no rate is set.
    fn accept_rate_allows(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let rate = self.cfg.accepts_per_s_per_ip;
        if rate == 0 {
            return true;
        }
        if self.accepts.get_mut(&ip).is_none() {
            let burst = self.cfg.handshakes_per_ip_max as u64;
            self.accepts.put(ip, TokenBucket::new(burst, rate, now_ms));
        }
        self.accepts
            .get_mut(&ip)
            .expect("just inserted")
            .try_take(1, now_ms)
    }

    /// Decides to dial `addr` (not our own, not banned): the driver gets
    /// it from [`Protocol::take_dials`].
    fn dial(&mut self, addr: SocketAddr) {
        if addr == self.local_addr || self.bans.is_banned(&BanKey::Addr(addr), self.now_ms) {
            return;
        }
        let id = self.new_peer(addr, true, PeerState::Connecting);
        self.dials.push((id, addr));
    }

    /// The driver has a socket for dial `id` and is connecting it.
    pub(crate) fn on_dial_started(&mut self, id: ConnId) {
        let now = self.now_ms;
        if let Some(a) = self.peer_mut(id).and_then(|p| p.peer_addr) {
            self.addr_book.attempted(&a, now);
        }
    }

    /// The driver could not get a socket for dial `id`: it is forgotten
    /// as if never made.
    pub(crate) fn on_dial_failed(&mut self, id: ConnId) {
        if self.peer_mut(id).is_some() {
            self.peers[id.slot] = None;
            self.free.push(id.slot);
        }
    }

    /// Outbound connection `id` is established: the handshake starts.
    pub(crate) fn on_connected(&mut self, id: ConnId, now_ms: u64) {
        self.now_ms = now_ms;
        let Some(p) = self.peer_mut(id) else {
            return;
        };
        if p.closing {
            return;
        }
        p.state = PeerState::Handshaking;
        self.start_handshake(id.slot);
    }

    /// Outbound connection `id` could not be established (refused, timed
    /// out): its address failed, and it is closed.
    pub(crate) fn on_connect_failed(&mut self, id: ConnId) {
        if let Some(a) = self.peer_mut(id).and_then(|p| p.peer_addr) {
            self.addr_book.failed(&a);
        }
        self.close(id);
    }

    /// Closes `id` on the protocol's side: its pending requests fail, and
    /// its peer, if ready, is reported down. Also how the driver reports a
    /// connection it lost (a receive or send failed, the peer hung up).
    pub(crate) fn close(&mut self, id: ConnId) {
        if self.peer_mut(id).is_some() {
            self.close_slot(id.slot);
        }
    }

    /// The driver freed connection `id` (no operation of its is pending):
    /// its slot may be reused.
    pub(crate) fn release(&mut self, id: ConnId) {
        if self.peer_mut(id).is_some() {
            self.peers[id.slot] = None;
            self.free.push(id.slot);
        }
    }

    fn close_slot(&mut self, slot: usize) {
        let Some(conn) = self.peers[slot].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        conn.state = PeerState::Closing;
        let gen = conn.gen;
        fail_pending(&self.shared, conn, crate::control::RequestFailure::PeerGone);
        if let Some(info) = conn.peer {
            if self.by_key.get(&info.node_key) == Some(&slot) {
                self.by_key.remove(&info.node_key);
                self.peers_dirty = true;
                push_event(
                    &self.shared,
                    Event::PeerDown {
                        node_key: info.node_key,
                    },
                );
            }
        }
        self.closes.push(ConnId { slot, gen });
    }

    fn is_open(&self, slot: usize) -> bool {
        self.peers[slot].as_ref().is_some_and(|c| !c.closing)
    }

    fn start_handshake(&mut self, slot: usize) {
        let now = self.now_ms;
        let challenge = random_bytes().unwrap_or_else(|_| {
            let mut b = [0u8; 32];
            for c in b.chunks_mut(8) {
                c.copy_from_slice(&self.rng.next_u64().to_le_bytes());
            }
            b
        });
        let conn = self.peers[slot].as_mut().expect("live slot");
        let role = if conn.outbound {
            Role::Initiator
        } else {
            Role::Responder
        };
        let hs = Handshake::new(
            &self.identity,
            self.cfg.chain_id,
            role,
            self.local_addr.port(),
            challenge,
            now,
            self.cfg.handshake_timeout_ms,
        );
        let hello = hs.hello();
        conn.hs = Some(hs);
        self.send_msg(slot, &Message::Hello(hello), 0);
    }

    /// Queues a message; returns false when the connection was dropped
    /// because its queue overflowed (a peer that does not read).
    fn send_msg(&mut self, slot: usize, msg: &Message<'_>, request_id: u64) -> bool {
        let cap = self.cfg.send_queue_bytes_max;
        let Some(conn) = self.peers[slot].as_mut() else {
            return false;
        };
        if conn.closing {
            return false;
        }
        let before = conn.out.len();
        msg.encode_frame(request_id, &mut conn.out);
        if conn.queued_bytes() > cap {
            conn.out.truncate(before);
            self.misbehave(slot, Misbehaviour::NotReading);
            return false;
        }
        self.shared.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        if !conn.sendable {
            conn.sendable = true;
            let id = ConnId {
                slot,
                gen: conn.gen,
            };
            self.sendable.push(id);
        }
        true
    }

    fn misbehave(&mut self, slot: usize, m: Misbehaviour) {
        let now = self.now_ms;
        let Some(conn) = self.peers[slot].as_mut() else {
            return;
        };
        let ban = conn.score.penalize(m);
        // Keep the score in `Handle::peers` current.
        self.peers_dirty |= conn.state == PeerState::Ready;
        // Only a proven key is banned: the key in a peer's hello is a
        // claim, and banning it would let anyone get any key banned.
        let key = match conn.peer {
            Some(info) => BanKey::Node(info.node_key),
            None => BanKey::Ip(conn.remote.ip()),
        };
        if ban {
            self.bans.ban(key, now, self.cfg.ban_duration_ms);
            self.shared.stats.bans.fetch_add(1, Ordering::Relaxed);
        }
        if ban || m.closes_connection() {
            self.shared
                .stats
                .peers_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.close_slot(slot);
        }
    }

    // ---- Time ----

    /// The periodic tick: handshake, partial-frame and pong timeouts,
    /// pings, score recovery, request deadlines, the gossip flush, outbound
    /// dials and the address exchange.
    pub(crate) fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let now = now_ms;
        let mut bad: Vec<(usize, Misbehaviour)> = Vec::new();
        let mut pings: Vec<(usize, u64)> = Vec::new();
        for (slot, c) in self.peers.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if c.closing {
                continue;
            }
            if c.state == PeerState::Handshaking {
                if let Some(hs) = &c.hs {
                    if hs.check_timeout(now).is_err() {
                        bad.push((slot, Misbehaviour::SlowHandshake));
                        continue;
                    }
                }
            }
            if c.partial_since_ms != 0
                && now > c.partial_since_ms + self.cfg.partial_frame_timeout_ms
            {
                bad.push((slot, Misbehaviour::SlowFrame));
                continue;
            }
            if c.state == PeerState::Ready {
                if c.awaiting_pong && now > c.ping_sent_ms + self.cfg.pong_timeout_ms {
                    bad.push((slot, Misbehaviour::Unresponsive));
                } else if !c.awaiting_pong && now >= c.ping_sent_ms + self.cfg.ping_interval_ms {
                    c.ping_nonce = self.rng.next_u64();
                    c.ping_sent_ms = now;
                    c.awaiting_pong = true;
                    pings.push((slot, c.ping_nonce));
                }
                if now >= self.last_recover_ms + SCORE_RECOVERY_INTERVAL_MS && c.score.0 < 0 {
                    c.score.recover();
                    self.peers_dirty = true;
                }
            }
        }
        if now >= self.last_recover_ms + SCORE_RECOVERY_INTERVAL_MS {
            self.last_recover_ms = now;
        }
        for (slot, m) in bad {
            self.misbehave(slot, m);
        }
        for (slot, n) in pings {
            self.send_msg(slot, &Message::Ping(n), 0);
        }
        self.expire_requests(now);
        if now >= self.last_flush_ms + self.cfg.gossip_flush_interval_ms {
            self.last_flush_ms = now;
            self.flush_gossip();
        }
        if now >= self.last_dial_ms + OUTBOUND_DIAL_INTERVAL_MS {
            self.last_dial_ms = now;
            self.maintain_outbound(now);
        }
        if now >= self.last_exchange_ms + self.cfg.addr_exchange_interval_ms {
            self.last_exchange_ms = now;
            let ready = self.ready_slots();
            if !ready.is_empty() {
                let s = ready[self.rng.below(ready.len())];
                self.send_msg(s, &Message::GetAddrs(ADDRS_ANSWER_MAX as u16), 0);
            }
        }
    }

    fn ready_slots(&self) -> Vec<usize> {
        self.by_key.values().copied().collect()
    }

    fn maintain_outbound(&mut self, now: u64) {
        self.maintain_reserved(now);
        let mut outbound = self
            .peers
            .iter()
            .flatten()
            .filter(|c| c.outbound && !c.closing)
            .count();
        let mut tries = 0;
        while outbound < self.cfg.outbound_peers_max && tries < 4 {
            tries += 1;
            let busy: HashSet<SocketAddr> = self
                .peers
                .iter()
                .flatten()
                .filter(|c| !c.closing)
                .filter_map(|c| c.peer_addr)
                .collect();
            let local = self.local_addr;
            let bans = &self.bans;
            let Some(a) = self.addr_book.pick(now, DIAL_RETRY_MS, &mut self.rng, |a| {
                *a == local || busy.contains(a) || bans.is_banned(&BanKey::Addr(*a), now)
            }) else {
                break;
            };
            self.dial(a);
            outbound += 1;
        }
    }

    /// Dials each reserved peer of `Config::reserved_dials` that is not
    /// connected, nor being dialed, nor dialed in the last
    /// `RESERVED_REDIAL_MS`; outside `outbound_peers_max`.
    fn maintain_reserved(&mut self, now: u64) {
        // Every tick (100 ms): nothing to build once all are connected.
        let by_key = &self.by_key;
        if self
            .cfg
            .reserved_dials
            .iter()
            .all(|(k, _)| by_key.contains_key(k))
        {
            return;
        }
        let dialing: HashSet<SocketAddr> = self
            .peers
            .iter()
            .flatten()
            .filter(|c| c.outbound && !c.closing)
            .filter_map(|c| c.peer_addr)
            .collect();
        for i in 0..self.cfg.reserved_dials.len() {
            let (key, addr) = self.cfg.reserved_dials[i];
            let recent = self.reserved_dialed_ms[i].is_some_and(|t| now < t + RESERVED_REDIAL_MS);
            if recent
                || key == self.identity.public()
                || self.by_key.contains_key(&key)
                || dialing.contains(&addr)
            {
                continue;
            }
            self.reserved_dialed_ms[i] = Some(now);
            self.dial(addr);
        }
    }

    // ---- Commands ----

    /// Runs one command from the node's [`crate::Handle`].
    pub(crate) fn on_command(&mut self, cmd: Command, now_ms: u64) {
        self.now_ms = now_ms;
        match cmd {
            Command::Broadcast { id, item } => self.broadcast(id, item),
            Command::Relay { id, item } => self.relay(id, item),
            Command::RelayMany(items) => {
                for (id, item) in items {
                    self.relay(id, item);
                }
            }
            Command::Send { to, payload } => self.send(to, &payload),
            Command::Request {
                to,
                request_id,
                payload,
            } => self.request(to, request_id, &payload, now_ms),
            Command::Respond {
                to,
                request_id,
                payload,
            } => self.respond(to, request_id, &payload),
            Command::Dial(a) => {
                self.addr_book.add(a);
                self.dial(a);
            }
            Command::Penalize { peer, reason } => {
                if let Some(&s) = self.by_key.get(&peer) {
                    self.misbehave(s, reason);
                }
            }
        }
    }
}

/// Queues an event; waiters are woken once per loop iteration, by the
/// driver.
fn push_event(shared: &Shared, ev: Event) {
    let item = matches!(ev, Event::Item { .. });
    if !shared.push_event(ev) {
        let counter = if item {
            &shared.stats.items_shed
        } else {
            &shared.stats.events_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.event_wait.pushed();
    }
}
