//! The I/O thread: one io_uring ring driving every socket, timer and wake-up
//! of a node, and the peer protocol on top (handshake, ping/pong, peer
//! exchange, gossip, request/response).
//!
//! Completions are drained into a reused vector and dispatched one by one in
//! a flat loop (no recursion). Sends are queued per connection up to
//! `send_queue_bytes_max`; a peer whose queue would overflow is not reading
//! and is dropped. Commands from other threads arrive through a bounded
//! queue and an eventfd.
//!
//! Request deadlines: every request sent with a request id gets an entry in
//! one FIFO deadline queue. The timeout is the same for every request and
//! time only moves forward, so the queue is sorted by deadline and the tick
//! only looks at its front. Answered requests are not searched for in the
//! queue (that would be O(n)); their entries are skipped when they expire,
//! and the queue is compacted when it has grown to twice its live size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Instant;

use io_uring::types::Timespec;
use strata_storage::lru::{IdentityState, LruCache};

use crate::addr_book::AddrBook;
use crate::config::Config;
use crate::control::{Command, Event, PeerSummary, RequestFailure, Responder, Shared};
use crate::error::{Error, HandshakeRefusal, Result};
use crate::frame::{FrameDecoder, Header};
use crate::gossip::{on_items, PeerGossip, PushLimits, SeenCache};
use crate::handshake::{random_bytes, Handshake, Identity, PeerInfo, Role};
use crate::limits::{
    ADDRS_ANSWER_MAX, BANS_MAX, COMMANDS_PER_CLOCK_READ, COMPLETIONS_PER_WAIT,
    DEADLINES_COMPACT_MIN, DIAL_RETRY_MS, HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX, ITEM_STORE_MAX,
    PENDING_PUSH_MAX, PENDING_REQUESTS_PER_PEER_MAX, PULL_RETRY_MS, RECV_BUF_BYTES,
    REQUESTED_IDS_MAX, RING_ENTRIES,
};
use crate::message::{write_addr, write_item, Addrs, Ids, ItemId, Items, Message, MsgType};
use crate::peer::{BanKey, BanList, Misbehaviour, PeerState, Score};
use crate::ring::{timespec_ms, Completion, Ring};
use crate::rng::Rng;
use crate::sys;

const K_ACCEPT: u64 = 1;
const K_EVENTFD: u64 = 2;
const K_TICK: u64 = 3;
const K_RECV: u64 = 4;
const K_SEND: u64 = 5;
const K_CONNECT: u64 = 6;
const K_CONNECT_TIMEOUT: u64 = 7;

fn ud(kind: u64, slot: usize, gen: u32) -> u64 {
    (kind << 56) | ((slot as u64 & 0xFF_FFFF) << 32) | u64::from(gen)
}
/// Names one connection for as long as it lives: its slot and generation
/// (a slot reused by a later connection has another generation).
fn conn_tag(slot: usize, gen: u32) -> u64 {
    ((slot as u64) << 32) | u64::from(gen)
}

fn ud_parts(u: u64) -> (u64, usize, u32) {
    (u >> 56, ((u >> 32) & 0xFF_FFFF) as usize, u as u32)
}

/// When a pending request times out. `slot` and `gen` name the connection
/// it went out on; the entry is stale once that connection is gone or the
/// id is no longer in its `pending_requests`.
#[derive(Clone, Copy)]
struct Deadline {
    at_ms: u64,
    slot: usize,
    gen: u32,
    request_id: u64,
}

struct Conn {
    gen: u32,
    fd: RawFd,
    remote: SocketAddr,
    outbound: bool,
    state: PeerState,
    closing: bool,
    inflight: u32,
    recv_buf: Box<[u8]>,
    decoder: FrameDecoder,
    partial_since_ms: u64,
    send_queue: Vec<u8>,
    send_inflight: Vec<u8>,
    send_off: usize,
    sending: bool,
    /// True while the slot is in `EventLoop::to_flush`.
    flush_queued: bool,
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
    sockaddr: libc::sockaddr_storage,
    sockaddr_len: libc::socklen_t,
    connect_ts: Timespec,
}

pub(crate) struct EventLoop {
    // The ring is declared first so it is dropped first: the kernel stops
    // using buffers before the connections that own them are freed.
    ring: Ring,
    cfg: Config,
    identity: Identity,
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    start: Instant,
    /// See [`EventLoop::now_ms`].
    now_cached_ms: u64,
    conns: Vec<Option<Box<Conn>>>,
    free: Vec<usize>,
    /// Connections with frames queued this loop iteration, sent once at
    /// its end so that every frame queued for a peer in one iteration goes
    /// out in one send. Each connection appears at most once
    /// (`flush_queued`), so it is bounded by the connections of one
    /// iteration.
    to_flush: Vec<usize>,
    /// Ready peers by node key. Hashed by the key's first 8 bytes: keys
    /// are ed25519 public keys, and the map holds at most the peer limits'
    /// worth of entries, so even ground-out colliding keys cost little.
    by_key: HashMap<[u8; 32], usize, IdentityState>,
    seen: SeenCache,
    store: LruCache<ItemId, Vec<u8>, IdentityState>,
    /// Ids pulled and not yet received: when, and from which connection
    /// ([`conn_tag`]). A pull response may carry only these.
    requested: LruCache<ItemId, (u64, u64), IdentityState>,
    /// `Config::reserved_peers`, for lookups.
    reserved: HashSet<[u8; 32]>,
    pending_push: Vec<ItemId>,
    deadlines: VecDeque<Deadline>,
    /// Length at which `deadlines` is next compacted.
    deadlines_compact_at: usize,
    addr_book: AddrBook,
    bans: BanList,
    rng: Rng,
    tick_ts: Box<Timespec>,
    eventfd_buf: Box<[u8; 8]>,
    last_flush_ms: u64,
    last_dial_ms: u64,
    last_exchange_ms: u64,
    last_recover_ms: u64,
    peers_dirty: bool,
    /// Answers requests in the loop, when the node was started with one.
    responder: Option<Box<dyn Responder>>,
    /// The responder's answer buffer, reused across requests.
    answer: Vec<u8>,
}

impl EventLoop {
    pub(crate) fn new(
        cfg: Config,
        identity: Identity,
        shared: Arc<Shared>,
        responder: Option<Box<dyn Responder>>,
    ) -> Result<EventLoop> {
        let ring = Ring::new(RING_ENTRIES, cfg.io_uring_force_unavailable)?;
        let listener = TcpListener::bind(cfg.listen_addr)?;
        let local_addr = listener.local_addr()?;
        let seed = u64::from_le_bytes(random_bytes()?[..8].try_into().expect("8 bytes"));
        let mut addr_book = AddrBook::new(cfg.addr_book_entries_max);
        for s in &cfg.seeds {
            addr_book.add(*s);
        }
        Ok(EventLoop {
            ring,
            identity,
            shared,
            listener,
            local_addr,
            start: Instant::now(),
            now_cached_ms: 0,
            conns: Vec::new(),
            free: Vec::new(),
            to_flush: Vec::new(),
            by_key: HashMap::with_hasher(IdentityState),
            seen: SeenCache::new(cfg.seen_ids_max),
            store: LruCache::with_hasher(ITEM_STORE_MAX, IdentityState),
            requested: LruCache::with_hasher(REQUESTED_IDS_MAX, IdentityState),
            reserved: cfg.reserved_peers.iter().copied().collect(),
            pending_push: Vec::new(),
            deadlines: VecDeque::new(),
            deadlines_compact_at: DEADLINES_COMPACT_MIN,
            addr_book,
            bans: BanList::new(BANS_MAX),
            rng: Rng::from_seed(seed),
            tick_ts: Box::new(timespec_ms(cfg.tick_ms)),
            eventfd_buf: Box::new([0; 8]),
            last_flush_ms: 0,
            last_dial_ms: 0,
            last_exchange_ms: 0,
            last_recover_ms: 0,
            peers_dirty: false,
            responder,
            answer: Vec::new(),
            cfg,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Milliseconds since the loop started, as of the last
    /// [`EventLoop::refresh_now`]: the clock is read once per loop
    /// iteration (and every `COMMANDS_PER_CLOCK_READ` commands), not once
    /// per frame, where it was 6 % of the I/O thread's samples in the
    /// 128-byte `net/loopback` profile. Everything timed here (ticks,
    /// timeouts, rate limits) is in milliseconds and tolerates a reading
    /// some microseconds old.
    fn now_ms(&self) -> u64 {
        self.now_cached_ms
    }

    fn refresh_now(&mut self) {
        self.now_cached_ms = self.start.elapsed().as_millis() as u64;
    }

    /// Makes the calling thread the ring's submitter and arms the
    /// multishot accept, the eventfd read and the tick timer: once, on the
    /// thread that will turn the loop, before the first
    /// [`EventLoop::turn`].
    pub(crate) fn arm(&mut self) -> Result<()> {
        self.ring.enable()?;
        if self.cfg.recv_buffer_ring {
            // A kernel without provided-buffer rings gets per-connection
            // buffers instead (see `Config::recv_buffer_ring`).
            let _ = self
                .ring
                .register_recv_buffers(self.cfg.recv_buffers, crate::limits::RECV_BUFFER_BYTES);
        }
        self.ring
            .accept_multi(self.listener.as_raw_fd(), ud(K_ACCEPT, 0, 0))?;
        self.arm_eventfd()?;
        self.arm_tick()
    }

    /// The I/O thread's body: turns until the node is stopped.
    pub(crate) fn run(&mut self) -> Result<()> {
        self.arm()?;
        let mut cqes: Vec<Completion> = Self::completions_buffer();
        while !self.stopped() {
            self.turn(&mut cqes, None)?;
        }
        self.shutdown_all();
        Ok(())
    }

    pub(crate) fn completions_buffer() -> Vec<Completion> {
        Vec::with_capacity(COMPLETIONS_PER_WAIT)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// One iteration of the loop: waits for completions (at most `wait`,
    /// `None`: until one comes; not at all when commands are queued),
    /// dispatches them, drains the commands, sends what they queued and
    /// wakes event consumers.
    pub(crate) fn turn(
        &mut self,
        cqes: &mut Vec<Completion>,
        wait: Option<std::time::Duration>,
    ) -> Result<()> {
        self.wait_completions(cqes, wait)?;
        self.refresh_now();
        for &c in cqes.iter() {
            self.dispatch(c)?;
        }
        self.take_commands();
        if self.peers_dirty {
            self.publish_peers();
        }
        // One wake-up per iteration for everything pushed above, and
        // none when nobody waits; the sends queued above go to the
        // kernel before a woken consumer can take this core. A failed
        // submit is reported by `submit_and_wait` at the loop's top.
        let ring = &mut self.ring;
        self.shared.event_wait.signal(|| {
            let _ = ring.submit();
        });
        Ok(())
    }

    /// Drains the command queue and queues the sends it produced (handed
    /// to the kernel by the next wait). A driven node calls it before it
    /// waits, so commands its own thread queued go out in that wait's
    /// submission.
    pub(crate) fn take_commands(&mut self) {
        self.drain_commands();
        self.flush_queued();
    }

    /// Fills `cqes` with completions, blocking in the kernel for at least
    /// one (for at most `wait`, when given) unless a command is queued.
    /// Blocking follows the protocol of
    /// [`Shared::wake_if_asleep`]: set `loop_asleep`, fence, check the
    /// command queue, and block only if it is empty.
    ///
    /// (Spinning here for up to 10–50 µs after waking an event consumer,
    /// to take its answer without sleeping, was measured slower on the
    /// 2-core bench host: docs/benchmarks.md, `net/loopback`.)
    fn wait_completions(
        &mut self,
        cqes: &mut Vec<Completion>,
        wait: Option<std::time::Duration>,
    ) -> Result<()> {
        let asleep = &self.shared.loop_asleep;
        asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let want = usize::from(self.shared.commands.is_empty());
        if want == 0 {
            asleep.store(false, Ordering::Relaxed);
        }
        let r = self.ring.submit_and_wait_timeout(cqes, want, wait);
        asleep.store(false, Ordering::Relaxed);
        r?;
        Ok(())
    }

    pub(crate) fn shutdown_all(&mut self) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_some() {
                self.close(slot);
            }
        }
        // Reap what the shutdowns complete, bounded; the ring is dropped
        // before the connections in any case.
        let mut cqes = Vec::with_capacity(COMPLETIONS_PER_WAIT);
        for _ in 0..200 {
            if self.conns.iter().all(|c| c.is_none()) {
                break;
            }
            if self.ring.submit_and_wait(&mut cqes).is_err() {
                break;
            }
            for &c in &cqes {
                let (kind, slot, gen) = ud_parts(c.user_data);
                if let Some(bid) = c.buffer {
                    self.ring.recycle_recv_buffer(bid);
                }
                if kind == K_TICK {
                    let _ = self.arm_tick();
                } else if matches!(kind, K_RECV | K_SEND | K_CONNECT | K_CONNECT_TIMEOUT) {
                    // A multishot receive stays in flight until its last
                    // completion.
                    if let Some(conn) = self.conn_mut(slot, gen).filter(|_| !c.more) {
                        conn.inflight -= 1;
                        self.maybe_free(slot);
                    }
                }
            }
        }
        // Anything still in flight is leaked rather than freed under the kernel.
        for c in self.conns.iter_mut() {
            if let Some(conn) = c.take() {
                if conn.inflight > 0 {
                    self.ring.leak_recv_buffers();
                    Box::leak(conn);
                } else {
                    sys::close(conn.fd);
                }
            }
        }
    }

    fn arm_tick(&mut self) -> Result<()> {
        let ts: *const Timespec = &*self.tick_ts;
        // SAFETY: `tick_ts` is boxed and owned by the loop, which outlives
        // the ring (the ring is dropped first).
        unsafe { self.ring.timeout(ts, ud(K_TICK, 0, 0)) }?;
        Ok(())
    }

    fn arm_eventfd(&mut self) -> Result<()> {
        let buf = self.eventfd_buf.as_mut_ptr();
        // SAFETY: `eventfd_buf` is boxed and owned by the loop, which
        // outlives the ring; only this one read uses it at a time.
        unsafe {
            self.ring
                .read_eventfd(self.shared.eventfd, buf, ud(K_EVENTFD, 0, 0))
        }?;
        Ok(())
    }

    fn conn_mut(&mut self, slot: usize, gen: u32) -> Option<&mut Conn> {
        match self.conns.get_mut(slot) {
            Some(Some(c)) if c.gen == gen => Some(c),
            _ => None,
        }
    }

    fn dispatch(&mut self, c: Completion) -> Result<()> {
        let (kind, slot, gen) = ud_parts(c.user_data);
        match kind {
            K_ACCEPT => {
                if c.result >= 0 {
                    self.on_accept(c.result);
                }
                if !c.more {
                    self.ring
                        .accept_multi(self.listener.as_raw_fd(), ud(K_ACCEPT, 0, 0))?;
                }
            }
            K_EVENTFD => self.arm_eventfd()?,
            K_TICK => {
                self.on_tick();
                self.arm_tick()?;
            }
            K_RECV => {
                let Some(conn) = self.conn_mut(slot, gen) else {
                    // Cannot happen while in-flight counts hold (the slot
                    // outlives its receives), but a buffer is never lost.
                    if let Some(bid) = c.buffer {
                        self.ring.recycle_recv_buffer(bid);
                    }
                    return Ok(());
                };
                // A multishot receive stays armed (and in flight) while its
                // completions say `more`.
                if !c.more {
                    conn.inflight -= 1;
                }
                match c.buffer {
                    Some(bid) if !conn.closing && c.result > 0 => {
                        self.on_recv(slot, c.result as usize, Some(bid), !c.more);
                    }
                    _ if conn.closing => {
                        if let Some(bid) = c.buffer {
                            self.ring.recycle_recv_buffer(bid);
                        }
                        self.maybe_free(slot);
                    }
                    // Every buffer was taken: they are back by now (each is
                    // recycled once its completion is handled), so re-arm.
                    None if c.result == -libc::ENOBUFS && !c.more => {
                        self.shared
                            .stats
                            .recv_buffer_shortages
                            .fetch_add(1, Ordering::Relaxed);
                        self.arm_recv(slot);
                    }
                    None if c.result > 0 => {
                        self.on_recv(slot, c.result as usize, None, true);
                    }
                    _ => {
                        if let Some(bid) = c.buffer {
                            self.ring.recycle_recv_buffer(bid);
                        }
                        self.close(slot);
                    }
                }
            }
            K_SEND => {
                let Some(conn) = self.conn_mut(slot, gen) else {
                    return Ok(());
                };
                conn.inflight -= 1;
                conn.sending = false;
                if conn.closing {
                    self.maybe_free(slot);
                } else if c.result < 0 {
                    self.close(slot);
                } else {
                    conn.send_off += c.result as usize;
                    self.shared
                        .stats
                        .bytes_out
                        .fetch_add(c.result as u64, Ordering::Relaxed);
                    let conn = self.conns[slot].as_mut().expect("live slot");
                    if conn.send_off >= conn.send_inflight.len() {
                        conn.send_inflight.clear();
                        conn.send_off = 0;
                    }
                    self.queue_flush(slot);
                }
            }
            K_CONNECT => {
                let Some(conn) = self.conn_mut(slot, gen) else {
                    return Ok(());
                };
                conn.inflight -= 1;
                if conn.closing {
                    self.maybe_free(slot);
                } else if c.result < 0 {
                    if let Some(a) = conn.peer_addr {
                        self.addr_book.failed(&a);
                    }
                    self.close(slot);
                } else {
                    conn.state = PeerState::Handshaking;
                    self.start_handshake(slot);
                }
            }
            K_CONNECT_TIMEOUT => {
                if let Some(conn) = self.conn_mut(slot, gen) {
                    conn.inflight -= 1;
                    if conn.closing {
                        self.maybe_free(slot);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn new_conn(
        &mut self,
        fd: RawFd,
        remote: SocketAddr,
        outbound: bool,
        state: PeerState,
    ) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let gen = self.rng.next_u64() as u32;
        self.conns[slot] = Some(Box::new(Conn {
            gen,
            fd,
            remote,
            outbound,
            state,
            closing: false,
            inflight: 0,
            // Allocated by `arm_recv` when there is no receive ring.
            recv_buf: Box::default(),
            // Raised to `frame_payload_bytes_max` once the peer is
            // authenticated (`on_recv`): before that a connection can make
            // this node buffer no more than a handshake message.
            decoder: FrameDecoder::new(HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX),
            partial_since_ms: 0,
            send_queue: Vec::new(),
            send_inflight: Vec::new(),
            send_off: 0,
            sending: false,
            flush_queued: false,
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
            sockaddr: sys::zeroed_sockaddr(),
            sockaddr_len: 0,
            connect_ts: timespec_ms(self.cfg.connect_timeout_ms),
        }));
        slot
    }

    fn count_conns(&self, outbound: bool) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.outbound == outbound && !c.closing)
            .count()
    }

    fn on_accept(&mut self, fd: RawFd) {
        let Some(remote) = sys::peer_name(fd) else {
            sys::close(fd);
            return;
        };
        let now = self.now_ms();
        // The inbound peer limit applies once a peer is authenticated (a
        // validator must get in however many strangers hold the slots);
        // until then the handshake limits bound what connections cost.
        let (handshaking, same_ip) = self
            .conns
            .iter()
            .flatten()
            .filter(|c| !c.closing && c.state == PeerState::Handshaking)
            .fold((0, 0), |(all, ip), c| {
                (all + 1, ip + usize::from(c.remote.ip() == remote.ip()))
            });
        let ip_banned = self.bans.is_banned(&BanKey::Ip(remote.ip()), now);
        if handshaking >= self.cfg.handshakes_max
            || same_ip >= self.cfg.handshakes_per_ip_max
            || (ip_banned && self.reserved.is_empty())
        {
            self.shared
                .stats
                .accepts_refused
                .fetch_add(1, Ordering::Relaxed);
            sys::close(fd);
            return;
        }
        sys::set_nodelay(fd);
        let slot = self.new_conn(fd, remote, false, PeerState::Handshaking);
        self.conns[slot].as_mut().expect("just created").restricted = ip_banned;
        self.start_handshake(slot);
    }

    fn dial(&mut self, addr: SocketAddr) {
        let now = self.now_ms();
        if addr == self.local_addr || self.bans.is_banned(&BanKey::Addr(addr), now) {
            return;
        }
        let Ok(fd) = sys::tcp_socket_for(&addr) else {
            return;
        };
        sys::set_nodelay(fd);
        self.addr_book.attempted(&addr, now);
        let slot = self.new_conn(fd, addr, true, PeerState::Connecting);
        let conn = self.conns[slot].as_mut().expect("just created");
        conn.sockaddr_len = sys::write_sockaddr(&addr, &mut conn.sockaddr);
        let gen = conn.gen;
        let sa: *const libc::sockaddr = (&conn.sockaddr as *const libc::sockaddr_storage).cast();
        let ts: *const Timespec = &conn.connect_ts;
        let len = conn.sockaddr_len;
        conn.inflight += 2;
        // SAFETY: `sockaddr` and `connect_ts` live in the boxed connection,
        // which is freed only when `inflight` (counting both completions)
        // is back to zero.
        let r = unsafe {
            self.ring.connect_with_timeout(
                fd,
                sa,
                len,
                ts,
                ud(K_CONNECT, slot, gen),
                ud(K_CONNECT_TIMEOUT, slot, gen),
            )
        };
        if r.is_err() {
            let conn = self.conns[slot].as_mut().expect("just created");
            conn.inflight -= 2;
            self.close(slot);
        }
    }

    fn start_handshake(&mut self, slot: usize) {
        let now = self.now_ms();
        let challenge = random_bytes().unwrap_or_else(|_| {
            let mut b = [0u8; 32];
            for c in b.chunks_mut(8) {
                c.copy_from_slice(&self.rng.next_u64().to_le_bytes());
            }
            b
        });
        let conn = self.conns[slot].as_mut().expect("live slot");
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
        self.arm_recv(slot);
    }

    fn arm_recv(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        let (fd, gen) = (conn.fd, conn.gen);
        conn.inflight += 1;
        if self.ring.has_recv_buffers() {
            if self.ring.recv_multi(fd, ud(K_RECV, slot, gen)).is_err() {
                conn.inflight -= 1;
                self.close(slot);
            }
            return;
        }
        if conn.recv_buf.is_empty() {
            conn.recv_buf = vec![0u8; RECV_BUF_BYTES].into_boxed_slice();
        }
        let buf = conn.recv_buf.as_mut_ptr();
        let len = conn.recv_buf.len() as u32;
        // SAFETY: `recv_buf` is a boxed slice owned by the connection, not
        // touched until this completion is reaped, and the connection is not
        // freed while `inflight > 0`.
        if unsafe { self.ring.recv(fd, buf, len, ud(K_RECV, slot, gen)) }.is_err() {
            conn.inflight -= 1;
            self.close(slot);
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.closing || conn.sending {
            return;
        }
        if conn.send_off >= conn.send_inflight.len() {
            if conn.send_queue.is_empty() {
                return;
            }
            conn.send_inflight.clear();
            std::mem::swap(&mut conn.send_queue, &mut conn.send_inflight);
            conn.send_off = 0;
        }
        let rest = &conn.send_inflight[conn.send_off..];
        let (ptr, len) = (rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32);
        let (fd, gen) = (conn.fd, conn.gen);
        conn.sending = true;
        conn.inflight += 1;
        // SAFETY: `send_inflight` is neither written nor reallocated while
        // `sending` is set; the connection lives while `inflight > 0`.
        if unsafe { self.ring.send(fd, ptr, len, ud(K_SEND, slot, gen)) }.is_err() {
            conn.inflight -= 1;
            conn.sending = false;
            self.close(slot);
        }
    }

    /// Queues a message; returns false when the connection was dropped
    /// because its queue overflowed (a peer that does not read).
    fn send_msg(&mut self, slot: usize, msg: &Message<'_>, request_id: u64) -> bool {
        let cap = self.cfg.send_queue_bytes_max;
        let Some(conn) = self.conns[slot].as_mut() else {
            return false;
        };
        if conn.closing {
            return false;
        }
        let before = conn.send_queue.len();
        msg.encode_frame(request_id, &mut conn.send_queue);
        let queued = conn.send_queue.len() + (conn.send_inflight.len() - conn.send_off);
        if queued > cap {
            conn.send_queue.truncate(before);
            self.misbehave(slot, Misbehaviour::NotReading);
            return false;
        }
        self.shared.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        self.queue_flush(slot);
        true
    }

    /// Notes that `slot` has bytes to send; [`EventLoop::flush_queued`]
    /// sends them at the end of the loop iteration, together with whatever
    /// else is queued for the same peer by then.
    fn queue_flush(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].as_mut() {
            if !conn.flush_queued {
                conn.flush_queued = true;
                self.to_flush.push(slot);
            }
        }
    }

    /// Starts a send on every connection queued by [`EventLoop::queue_flush`]
    /// (one send each, of all its queued frames), once per loop iteration.
    fn flush_queued(&mut self) {
        let mut slots = std::mem::take(&mut self.to_flush);
        for &slot in &slots {
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.flush_queued = false;
            }
            self.flush(slot);
        }
        slots.clear();
        self.to_flush = slots;
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        conn.state = PeerState::Closing;
        fail_pending(&self.shared, conn, RequestFailure::PeerGone);
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
        sys::shutdown(conn.fd);
        self.maybe_free(slot);
    }

    fn maybe_free(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_ref() else {
            return;
        };
        if conn.closing && conn.inflight == 0 {
            // No operation uses the fd or buffers any more.
            sys::close(conn.fd);
            self.conns[slot] = None;
            self.free.push(slot);
        }
    }

    fn misbehave(&mut self, slot: usize, m: Misbehaviour) {
        let now = self.now_ms();
        let Some(conn) = self.conns[slot].as_mut() else {
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
            self.close(slot);
        }
    }

    /// Handles `n` received bytes: in provided buffer `bid` (recycled
    /// here), or else in the connection's own buffer. `rearm`: submit the
    /// next receive (the last one ended).
    fn on_recv(&mut self, slot: usize, n: usize, bid: Option<u16>, rearm: bool) {
        self.shared
            .stats
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        let now = self.now_ms();
        let conn = self.conns[slot].as_mut().expect("live slot");
        // Hold the connection while its frames are handled: a misbehaving
        // frame closes it, and it must not be freed under this function.
        conn.inflight += 1;
        let own_buf = std::mem::take(&mut conn.recv_buf);
        let buf: &[u8] = match bid {
            // SAFETY: `bid` and `n` come from the completion being handled,
            // and the buffer is recycled only below, after the last use of
            // `buf`.
            Some(bid) => unsafe { self.ring.recv_buffer(bid, n) },
            None => &own_buf[..n],
        };
        let mut dec = std::mem::replace(&mut conn.decoder, FrameDecoder::new(0));
        let mut input: &[u8] = buf;
        loop {
            match dec.next(&mut input) {
                Ok(Some(f)) => {
                    self.shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                    let header = f.header;
                    // A payload that does not point into the receive buffer
                    // was reassembled by the decoder (a frame split across
                    // receives, as every 64 KiB one is). An opaque payload
                    // is then moved into its event instead of copied.
                    let reassembled =
                        !f.payload.is_empty() && !buf.as_ptr_range().contains(&f.payload.as_ptr());
                    // A request the responder will see is lent to it from
                    // the reassembly buffer rather than moved out, so the
                    // decoder keeps that buffer for the next large frame
                    // (a request it declines is then copied into its event).
                    let lent = self.responder.is_some()
                        && header.msg_type == MsgType::Request as u8
                        && header.request_id != 0;
                    let open = if !is_opaque(header.msg_type) {
                        self.on_frame(slot, header, f.payload)
                    } else if reassembled && !lent {
                        self.on_reassembled_opaque(slot, header, dec.take_payload())
                    } else {
                        self.on_borrowed_opaque(slot, header, f.payload)
                    };
                    if !open {
                        break;
                    }
                    // The frame may have completed the handshake: from the
                    // next frame on, the peer may send full-size ones.
                    if dec.payload_bytes_max() < self.cfg.frame_payload_bytes_max
                        && self.conns[slot]
                            .as_ref()
                            .is_some_and(|c| c.state == PeerState::Ready)
                    {
                        dec.set_payload_bytes_max(self.cfg.frame_payload_bytes_max);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let m = match e {
                        Error::BadMagic { .. } => Misbehaviour::BadMagic,
                        Error::FrameTooLarge { .. } => Misbehaviour::Oversize,
                        Error::BadChecksum { .. } => Misbehaviour::BadChecksum,
                        _ => Misbehaviour::Undecodable,
                    };
                    self.misbehave(slot, m);
                    break;
                }
            }
        }
        let conn = self.conns[slot]
            .as_mut()
            .expect("connection outlives its receive");
        if dec.is_idle() {
            conn.partial_since_ms = 0;
        } else if conn.partial_since_ms == 0 {
            conn.partial_since_ms = now.max(1);
        }
        conn.recv_buf = own_buf;
        conn.decoder = dec;
        conn.inflight -= 1;
        if let Some(bid) = bid {
            self.ring.recycle_recv_buffer(bid);
        }
        if conn.closing {
            self.maybe_free(slot);
        } else if rearm {
            self.arm_recv(slot);
        }
    }

    /// Handles one frame; returns false when the connection is closing.
    fn on_frame(&mut self, slot: usize, h: Header, payload: &[u8]) -> bool {
        let msg = match Message::decode(h.msg_type, payload) {
            Ok(m) => m,
            Err(_) => {
                self.misbehave(slot, Misbehaviour::Undecodable);
                return false;
            }
        };
        let now = self.now_ms();
        let conn = self.conns[slot].as_mut().expect("live slot");
        if conn.closing {
            return false;
        }
        if conn.state == PeerState::Handshaking {
            return self.on_handshake_msg(slot, msg);
        }
        match msg {
            Message::Hello(_) | Message::Auth(_) => {
                self.misbehave(slot, Misbehaviour::ProtocolViolation);
                return false;
            }
            Message::Ping(n) => {
                self.send_msg(slot, &Message::Pong(n), 0);
            }
            Message::Pong(n) => {
                if conn.awaiting_pong && n == conn.ping_nonce {
                    conn.awaiting_pong = false;
                }
            }
            Message::GetAddrs(max) => {
                let n = (max as usize).min(ADDRS_ANSWER_MAX);
                let sample = self.addr_book.sample(n, &mut self.rng);
                let mut buf = Vec::with_capacity(sample.len() * 19);
                for a in &sample {
                    write_addr(&mut buf, a);
                }
                self.send_msg(
                    slot,
                    &Message::Addrs(Addrs::from_encoded(sample.len(), &buf)),
                    0,
                );
            }
            Message::Addrs(addrs) => {
                for a in addrs.iter() {
                    self.addr_book.add(a);
                }
            }
            Message::Announce(ids) => {
                let mut want = Vec::new();
                let tag = conn_tag(slot, conn.gen);
                let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
                for id in ids.iter() {
                    gossip.mark_known(id);
                    if self.seen.contains(id) {
                        continue;
                    }
                    if let Some((at, _)) = self.requested.peek(id) {
                        if now < at + PULL_RETRY_MS {
                            continue;
                        }
                    }
                    self.requested.put(*id, (now, tag));
                    want.extend_from_slice(id);
                }
                if !want.is_empty() {
                    self.send_msg(slot, &Message::PullRequest(Ids::from_bytes(&want)), 0);
                }
            }
            Message::Push(items) | Message::PullResponse(items) => {
                if matches!(msg, Message::PullResponse(_)) {
                    // A pull response may carry only ids pulled from this
                    // very connection: anything else is a push that
                    // dodges the push limits.
                    // (An id whose request record was already pushed out
                    // of the bounded `requested` table is let through with
                    // the others; a response with none pulled is not.)
                    let tag = conn_tag(slot, conn.gen);
                    let requested = &self.requested;
                    let solicited = items
                        .iter()
                        .any(|(id, _)| requested.peek(id).is_some_and(|(_, t)| *t == tag));
                    if !solicited {
                        self.misbehave(slot, Misbehaviour::UnsolicitedResponse);
                        return !self.conns[slot].as_ref().is_none_or(|c| c.closing);
                    }
                    for (id, _) in items.iter() {
                        self.requested.remove(id);
                    }
                }
                let conn = self.conns[slot].as_mut().expect("live slot");
                // Pull responses count against the same per-peer item and
                // byte budgets as pushes: solicited or not, a peer cannot
                // make this node take more than those.
                let limited = true;
                let from = conn.peer.expect("ready").node_key;
                let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
                let store = &mut self.store;
                let pending = &mut self.pending_push;
                let shared = &self.shared;
                let relay = self.cfg.relay_received;
                let out = on_items(&mut self.seen, gossip, items, limited, now, |id, item| {
                    if relay {
                        store.put(*id, item.to_vec());
                        if pending.len() < PENDING_PUSH_MAX {
                            pending.push(*id);
                        }
                    }
                    push_event(
                        shared,
                        Event::Item {
                            id: *id,
                            item: item.to_vec(),
                            from,
                        },
                    );
                });
                let st = &self.shared.stats;
                st.items_new
                    .fetch_add(u64::from(out.new), Ordering::Relaxed);
                st.items_duplicate
                    .fetch_add(u64::from(out.duplicate), Ordering::Relaxed);
                st.items_rate_limited
                    .fetch_add(u64::from(out.rate_limited), Ordering::Relaxed);
                if out.mismatched > 0 {
                    self.misbehave(slot, Misbehaviour::ItemIdMismatch);
                    return !self.conns[slot].as_ref().is_none_or(|c| c.closing);
                }
                if out.rate_limited > 0 {
                    self.misbehave(slot, Misbehaviour::Flooding);
                    return !self.conns[slot].as_ref().is_none_or(|c| c.closing);
                }
            }
            Message::PullRequest(ids) => {
                let limit = self.cfg.frame_payload_bytes_max as usize;
                let half_queue = self.cfg.send_queue_bytes_max / 2;
                let queued = conn.send_queue.len() + (conn.send_inflight.len() - conn.send_off);
                let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
                let mut buf = Vec::new();
                let mut count = 0;
                for id in ids.iter() {
                    if let Some(item) = self.store.peek(id) {
                        // Answer only what fits in one frame and keeps the
                        // queue under half its cap; the peer asks again.
                        if 2 + buf.len() + 36 + item.len() > limit
                            || queued + buf.len() > half_queue
                        {
                            break;
                        }
                        gossip.mark_known(id);
                        write_item(&mut buf, id, item);
                        count += 1;
                    }
                }
                if count > 0 {
                    self.send_msg(
                        slot,
                        &Message::PullResponse(Items::from_encoded(count, &buf)),
                        0,
                    );
                }
            }
            Message::Quiet => conn.quiet = true,
            Message::Request(p) => self.on_opaque(slot, h, false, Opaque::Borrowed(p)),
            Message::Response(p) => self.on_opaque(slot, h, true, Opaque::Borrowed(p)),
        }
        !self.conns[slot].as_ref().is_none_or(|c| c.closing)
    }

    /// Handles a request or response frame whose payload the decoder
    /// reassembled and handed over; returns false when the connection is
    /// closing. Anything but a ready connection takes the general path.
    fn on_reassembled_opaque(&mut self, slot: usize, h: Header, payload: Vec<u8>) -> bool {
        let ready = self.conns[slot]
            .as_ref()
            .is_some_and(|c| !c.closing && c.state == PeerState::Ready);
        if !ready {
            return self.on_frame(slot, h, &payload);
        }
        let response = h.msg_type == MsgType::Response as u8;
        self.on_opaque(slot, h, response, Opaque::Owned(payload));
        !self.conns[slot].as_ref().is_none_or(|c| c.closing)
    }

    /// Handles a request or response frame whose payload lies in the
    /// receive buffer; returns false when the connection is closing. The
    /// path every small request and response takes: straight to
    /// [`EventLoop::on_opaque`] for a ready connection, skipping the
    /// general decode and dispatch of [`EventLoop::on_frame`] (whose large
    /// stack frame showed in the 128-byte `net/loopback` profile).
    fn on_borrowed_opaque(&mut self, slot: usize, h: Header, payload: &[u8]) -> bool {
        let ready = self.conns[slot]
            .as_ref()
            .is_some_and(|c| !c.closing && c.state == PeerState::Ready);
        if !ready {
            return self.on_frame(slot, h, payload);
        }
        let response = h.msg_type == MsgType::Response as u8;
        self.on_opaque(slot, h, response, Opaque::Borrowed(payload));
        !self.conns[slot].as_ref().is_none_or(|c| c.closing)
    }

    /// A request (or one-way message, request id 0) or a response from a
    /// ready peer, turned into its event.
    fn on_opaque(&mut self, slot: usize, h: Header, response: bool, payload: Opaque<'_>) {
        let conn = self.conns[slot].as_mut().expect("live slot");
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

    fn refuse(&mut self, slot: usize, r: HandshakeRefusal) {
        self.shared
            .stats
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
        match r {
            HandshakeRefusal::BadSignature | HandshakeRefusal::BadKey => {
                self.misbehave(slot, Misbehaviour::BadSignature)
            }
            HandshakeRefusal::UnexpectedMessage(_) => {
                self.misbehave(slot, Misbehaviour::ProtocolViolation)
            }
            HandshakeRefusal::Timeout => self.misbehave(slot, Misbehaviour::SlowHandshake),
            HandshakeRefusal::SelfConnection => {
                let conn = self.conns[slot].as_ref().expect("live");
                if let Some(a) = conn.peer_addr {
                    // Never dial our own address again.
                    self.addr_book.failed(&a);
                    self.bans.ban(BanKey::Addr(a), self.now_ms(), u64::MAX / 4);
                }
                self.close(slot)
            }
            _ => self.close(slot),
        }
    }

    fn on_handshake_msg(&mut self, slot: usize, msg: Message<'_>) -> bool {
        let now = self.now_ms();
        let conn = self.conns[slot].as_mut().expect("live slot");
        let hs = conn
            .hs
            .as_mut()
            .expect("handshaking connections have a handshake");
        match msg {
            Message::Hello(hello) => {
                // From a banned IP only a reserved peer may get in (once it
                // proves its key): any other claim is refused now, not
                // after the handshake's timeout.
                let restricted_stranger =
                    conn.restricted && !self.reserved.contains(&hello.node_key);
                if restricted_stranger || self.bans.is_banned(&BanKey::Node(hello.node_key), now) {
                    self.refuse(slot, HandshakeRefusal::Banned);
                    return false;
                }
                match hs.on_hello(&self.identity, hello) {
                    Ok(sig) => self.send_msg(slot, &Message::Auth(sig), 0),
                    Err(r) => {
                        self.refuse(slot, r);
                        false
                    }
                }
            }
            Message::Auth(sig) => match hs.on_auth(&sig) {
                Ok(info) => self.on_authenticated(slot, info),
                Err(r) => {
                    self.refuse(slot, r);
                    false
                }
            },
            _ => {
                self.refuse(slot, HandshakeRefusal::UnexpectedMessage("application"));
                false
            }
        }
    }

    fn on_authenticated(&mut self, slot: usize, info: PeerInfo) -> bool {
        let now = self.now_ms();
        let me = self.identity.public();
        if !self.admit(slot, &info, now) {
            self.shared
                .stats
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            self.close(slot);
            return false;
        }
        if let Some(&other) = self.by_key.get(&info.node_key) {
            // Two connections to one node (both dialed at once). Both sides
            // keep the connection whose initiator has the lower key, so they
            // agree without talking.
            let initiator_key = |outbound: bool| if outbound { me } else { info.node_key };
            let new_out = self.conns[slot].as_ref().expect("live").outbound;
            let old_out = self.conns[other].as_ref().expect("live").outbound;
            if initiator_key(new_out) < initiator_key(old_out) {
                self.by_key.remove(&info.node_key);
                // Silent swap: the peer stays up, so no PeerDown.
                let old = self.conns[other].as_mut().expect("live");
                // Requests that went out on the old connection cannot be
                // answered on the new one; report them before the old
                // connection forgets whose they were.
                fail_pending(&self.shared, old, RequestFailure::PeerGone);
                old.peer = None;
                self.close(other);
            } else {
                self.shared
                    .stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                self.close(slot);
                return false;
            }
            self.promote(slot, info, now, false);
            return true;
        }
        self.promote(slot, info, now, true);
        true
    }

    /// Whether peer `info`, just authenticated on `slot`, may stay: not
    /// banned (by its proven key); from a banned IP only as a reserved
    /// peer; inbound and not reserved only within `inbound_peers_max`,
    /// evicting the worst-scored such peer if it misbehaved.
    fn admit(&mut self, slot: usize, info: &PeerInfo, now: u64) -> bool {
        if self.bans.is_banned(&BanKey::Node(info.node_key), now) {
            return false;
        }
        let reserved = self.reserved.contains(&info.node_key);
        let conn = self.conns[slot].as_ref().expect("live");
        if reserved || conn.outbound || self.by_key.contains_key(&info.node_key) {
            // Reserved peers always; outbound ones were chosen by this
            // node (within `outbound_peers_max`); a second connection to
            // a known peer replaces, not adds (`on_authenticated`).
            return reserved || !conn.restricted;
        }
        if conn.restricted {
            return false;
        }
        let mut inbound = 0;
        let mut worst: Option<(i32, usize)> = None;
        for &s in self.by_key.values() {
            let Some(c) = self.conns[s].as_ref() else {
                continue;
            };
            let key = c.peer.map(|p| p.node_key);
            if c.outbound || c.closing || key.is_some_and(|k| self.reserved.contains(&k)) {
                continue;
            }
            inbound += 1;
            if worst.is_none_or(|(score, _)| c.score.0 < score) {
                worst = Some((c.score.0, s));
            }
        }
        if inbound < self.cfg.inbound_peers_max {
            return true;
        }
        match worst {
            Some((score, victim)) if score < 0 => {
                self.shared
                    .stats
                    .peers_evicted
                    .fetch_add(1, Ordering::Relaxed);
                self.close(victim);
                true
            }
            _ => false,
        }
    }

    fn promote(&mut self, slot: usize, info: PeerInfo, now: u64, announce: bool) {
        let limits = PushLimits {
            items_per_s: self.cfg.push_items_per_s,
            bytes_per_s: self.cfg.push_bytes_per_s,
        };
        let conn = self.conns[slot].as_mut().expect("live");
        conn.state = PeerState::Ready;
        conn.peer = Some(info);
        conn.hs = None;
        conn.gossip = Some(PeerGossip::new(self.cfg.sent_ids_per_peer_max, limits, now));
        conn.ping_sent_ms = now;
        if !conn.outbound && info.listen_port != 0 {
            conn.peer_addr = Some(SocketAddr::new(conn.remote.ip(), info.listen_port));
        }
        let remote = conn.remote;
        if let Some(a) = conn.peer_addr {
            self.addr_book.succeeded(a, now);
        }
        self.by_key.insert(info.node_key, slot);
        self.peers_dirty = true;
        if announce {
            push_event(
                &self.shared,
                Event::PeerUp {
                    node_key: info.node_key,
                    addr: remote,
                },
            );
        }
        self.send_msg(slot, &Message::GetAddrs(ADDRS_ANSWER_MAX as u16), 0);
        if self.cfg.gossip_quiet {
            self.send_msg(slot, &Message::Quiet, 0);
        }
    }

    fn publish_peers(&mut self) {
        self.peers_dirty = false;
        let list: Vec<PeerSummary> = self
            .by_key
            .values()
            .filter_map(|&s| self.conns[s].as_ref())
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

    fn ready_slots(&self) -> Vec<usize> {
        self.by_key.values().copied().collect()
    }

    fn on_tick(&mut self) {
        self.refresh_now();
        let now = self.now_ms();
        let mut bad: Vec<(usize, Misbehaviour)> = Vec::new();
        let mut pings: Vec<(usize, u64)> = Vec::new();
        for (slot, c) in self.conns.iter_mut().enumerate() {
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
                if now >= self.last_recover_ms + 1000 && c.score.0 < 0 {
                    c.score.recover();
                    self.peers_dirty = true;
                }
            }
        }
        if now >= self.last_recover_ms + 1000 {
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
        if now >= self.last_dial_ms + 100 {
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

    fn maintain_outbound(&mut self, now: u64) {
        let mut outbound = self.count_conns(true);
        let mut tries = 0;
        while outbound < self.cfg.outbound_peers_max && tries < 4 {
            tries += 1;
            let busy: HashSet<SocketAddr> = self
                .conns
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

    fn flush_gossip(&mut self) {
        if self.pending_push.is_empty() {
            return;
        }
        let ready = self.ready_slots();
        if ready.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.pending_push);
        // Quiet peers get nothing, and take no place in the fanout.
        let mut order: Vec<usize> = ready
            .iter()
            .copied()
            .filter(|&s| self.conns[s].as_ref().is_some_and(|c| !c.quiet))
            .collect();
        self.rng.sample_in_place(&mut order, self.cfg.gossip_fanout);
        let fanout = self.cfg.gossip_fanout.min(order.len());
        let limit = self.cfg.frame_payload_bytes_max as usize;
        let half_queue = self.cfg.send_queue_bytes_max / 2;
        let ids_max = crate::limits::IDS_PER_MESSAGE_MAX as usize;
        let items_max = crate::limits::ITEMS_PER_MESSAGE_MAX as usize;
        for (rank, &slot) in order.iter().enumerate() {
            // Push only to the sampled peers whose queue is not backing up;
            // everyone else gets the ids and pulls what it misses.
            let Some(queued) = self.queued_bytes(slot) else {
                continue;
            };
            let push = rank < fanout && queued < half_queue;
            let mut items = Vec::new();
            let mut items_count = 0usize;
            let mut announces: Vec<Vec<u8>> = vec![Vec::new()];
            {
                let Some(g) = self.conns[slot].as_mut().and_then(|c| c.gossip.as_mut()) else {
                    continue;
                };
                for id in &ids {
                    if g.knows(id) {
                        continue;
                    }
                    g.mark_known(id);
                    if push && items_count < items_max {
                        if let Some(item) = self.store.peek(id) {
                            if 2 + items.len() + 36 + item.len() <= limit {
                                write_item(&mut items, id, item);
                                items_count += 1;
                                continue;
                            }
                        }
                    }
                    let last = announces.last_mut().expect("never empty");
                    if last.len() / 32 >= ids_max {
                        announces.push(Vec::new());
                    }
                    announces
                        .last_mut()
                        .expect("never empty")
                        .extend_from_slice(id);
                }
            }
            if items_count > 0 {
                self.send_msg(
                    slot,
                    &Message::Push(Items::from_encoded(items_count, &items)),
                    0,
                );
            }
            for a in announces.iter().filter(|a| !a.is_empty()) {
                if !self.send_msg(slot, &Message::Announce(Ids::from_bytes(a)), 0) {
                    break;
                }
            }
        }
    }

    /// Sends a request and arms its deadline, or reports at once why it
    /// cannot be sent.
    fn request(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        let Some(&slot) = self.by_key.get(&to) else {
            push_request_failed(&self.shared, to, request_id, RequestFailure::NotConnected);
            return;
        };
        // `now_ms` truncates to whole milliseconds, so without the extra
        // millisecond a request could be reported timed out up to 1 ms
        // before `request_timeout_ms` had passed (the likely cause of one
        // failure of the `waited >= timeout` check in
        // `unanswered_request_times_out_and_a_late_response_is_unsolicited`).
        // One more covers the cached clock, which may be read up to 64
        // commands (well under 1 ms) before this one was pushed.
        let at_ms = self.now_ms() + self.cfg.request_timeout_ms + 2;
        let conn = self.conns[slot].as_mut().expect("ready peers are live");
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
            slot,
            gen,
            request_id,
        });
        // If the send overflows the peer's queue, the connection is closed
        // and `close` reports this request as `PeerGone`, so no event is
        // pushed here.
        self.send_msg(slot, &Message::Request(payload), request_id);
    }

    /// Reports the requests whose deadline has passed and that are still
    /// pending; a response arriving later is unsolicited.
    fn expire_requests(&mut self, now: u64) {
        while let Some(&d) = self.deadlines.front() {
            if d.at_ms > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(conn) = self.conn_mut(d.slot, d.gen) else {
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
        let conns = &self.conns;
        self.deadlines.retain(|d| match conns.get(d.slot) {
            Some(Some(c)) if c.gen == d.gen => c.pending_requests.contains(&d.request_id),
            _ => false,
        });
        self.deadlines_compact_at = (2 * self.deadlines.len()).max(DEADLINES_COMPACT_MIN);
    }

    /// Bytes queued or in flight to a live connection.
    fn queued_bytes(&self, slot: usize) -> Option<usize> {
        let c = self.conns[slot].as_ref()?;
        Some(c.send_queue.len() + (c.send_inflight.len() - c.send_off))
    }

    /// [`Command::Broadcast`] of `item`, whose id (blake3 of it) the
    /// caller computed.
    pub(crate) fn broadcast_now(&mut self, id: ItemId, item: Vec<u8>) {
        if self.seen.insert(&id) {
            self.queue_push(id, item);
        }
    }

    /// [`Command::Relay`]: as [`EventLoop::broadcast_now`], but also when
    /// the id was seen (it arrived from a peer and the application has
    /// validated it). Peers known to have it are skipped when pushing.
    pub(crate) fn relay_now(&mut self, id: ItemId, item: Vec<u8>) {
        self.seen.insert(&id);
        self.queue_push(id, item);
    }

    /// Keeps `item` for pulls and queues it for the next push.
    fn queue_push(&mut self, id: ItemId, item: Vec<u8>) {
        self.store.put(id, item);
        if self.pending_push.len() < PENDING_PUSH_MAX {
            self.pending_push.push(id);
        }
    }

    /// [`Command::Request`] without building the command: the payload is
    /// borrowed and framed straight into the peer's send queue.
    pub(crate) fn request_now(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        self.refresh_now();
        self.request(to, request_id, payload);
    }

    /// [`Command::Respond`] with a borrowed payload; see
    /// [`EventLoop::request_now`].
    pub(crate) fn respond_now(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        if let Some(&s) = self.by_key.get(&to) {
            self.send_msg(s, &Message::Response(payload), request_id);
        }
    }

    /// [`Command::Send`] with a borrowed payload; see
    /// [`EventLoop::request_now`].
    pub(crate) fn send_now(&mut self, to: [u8; 32], payload: &[u8]) {
        if let Some(&s) = self.by_key.get(&to) {
            self.send_msg(s, &Message::Request(payload), 0);
        }
    }

    fn drain_commands(&mut self) {
        // A command pushed after the pops below is found by the check in
        // `wait_completions` before the loop blocks, or wakes it.
        // Bounded per wake-up so the loop keeps serving sockets.
        for i in 0..crate::control::COMMANDS_MAX {
            // Request deadlines are taken from the cached clock: keep it
            // fresh to well within the 1 ms of slack `request` adds.
            if i % COMMANDS_PER_CLOCK_READ == 0 {
                self.refresh_now();
            }
            let Some(cmd) = self.shared.commands.pop() else {
                break;
            };
            self.run_command(cmd);
        }
    }

    fn run_command(&mut self, cmd: Command) {
        match cmd {
            Command::Broadcast { id, item } => self.broadcast_now(id, item),
            Command::Relay { id, item } => self.relay_now(id, item),
            Command::RelayMany(items) => {
                for (id, item) in items {
                    self.relay_now(id, item);
                }
            }
            Command::Send { to, payload } => self.send_now(to, &payload),
            Command::Request {
                to,
                request_id,
                payload,
            } => {
                self.request(to, request_id, &payload);
            }
            Command::Respond {
                to,
                request_id,
                payload,
            } => self.respond_now(to, request_id, &payload),
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

/// Hashes request ids (our own counter's values, so no attacker picks
/// the keys inserted; a response's id is only looked up) with one
/// multiplication instead of SipHash, which was 4 % of the I/O thread's
/// samples in the 128-byte `net/loopback` profile (with the node-key map).
/// The odd multiplier spreads sequential ids over the high bits, which the
/// std table uses for its control bytes.
#[derive(Clone, Copy, Default)]
struct RequestIdState;

#[derive(Default)]
struct RequestIdHasher(u64);

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
enum Opaque<'b> {
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

/// True for the message types whose payload is opaque to this crate and
/// goes into an event whole: requests (and one-way messages) and responses.
fn is_opaque(msg_type: u8) -> bool {
    msg_type == MsgType::Request as u8 || msg_type == MsgType::Response as u8
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
fn fail_pending(shared: &Shared, conn: &mut Conn, reason: RequestFailure) {
    let Some(info) = conn.peer else {
        // Only ready connections (which have a peer) send requests.
        debug_assert!(conn.pending_requests.is_empty());
        return;
    };
    for request_id in conn.pending_requests.drain() {
        push_request_failed(shared, info.node_key, request_id, reason);
    }
}

/// Queues an event; waiters are woken once per loop iteration, in `run`.
fn push_event(shared: &Shared, ev: Event) {
    if shared.events.push(ev).is_err() {
        shared.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.event_wait.pushed();
    }
}
