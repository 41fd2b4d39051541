//! The I/O thread: one io_uring ring driving every socket, timer and wake-up
//! of a node, around the sans-IO peer [`Protocol`].
//!
//! This module does the system calls and owns what the kernel uses: the
//! ring, the listener, each connection's socket, sockaddr, receive buffer
//! and in-flight send buffer, the tick timer and the eventfd. Everything a
//! peer says and how this node answers is the protocol's: the loop hands
//! it received bytes, accepted and connected sockets, send completions,
//! ticks and commands, and carries out what it asks — frames to send
//! (taken from its per-connection queues), connections to close and
//! addresses to dial.
//!
//! Completions are drained into a reused vector and dispatched one by one in
//! a flat loop (no recursion). Frames queued for a peer during one loop
//! iteration go out in one send, started at the iteration's end. Commands
//! from other threads arrive through a bounded queue and an eventfd.
//!
//! A connection's slot is the protocol's [`ConnId`]: the protocol hands it
//! out (on accept, or with a dial) and takes it back only when this loop
//! [`Protocol::release`]s it, once no operation of the ring uses the
//! connection's socket or buffers.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Instant;

use io_uring::types::Timespec;

use crate::config::Config;
use crate::control::{Responder, Shared};
use crate::error::Result;
use crate::handshake::{random_bytes, Identity};
use crate::limits::{
    COMMANDS_PER_CLOCK_READ, COMPLETIONS_PER_WAIT, RECV_BUFFER_BYTES, RECV_BUF_BYTES, RING_ENTRIES,
};
use crate::message::ItemId;
use crate::protocol::{ConnId, Protocol};
use crate::ring::{timespec_ms, Completion, Ring};
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

fn ud_parts(u: u64) -> (u64, usize, u32) {
    (u >> 56, ((u >> 32) & 0xFF_FFFF) as usize, u as u32)
}

/// What the kernel uses of one connection. Boxed, so that the addresses
/// handed to the ring (sockaddr, timeout, buffers) stay put.
struct Conn {
    gen: u32,
    fd: RawFd,
    closing: bool,
    /// Ring operations on this connection not yet completed; it is freed
    /// only at zero.
    inflight: u32,
    recv_buf: Box<[u8]>,
    /// The bytes of the send in flight (taken from the protocol's queue).
    send_inflight: Vec<u8>,
    send_off: usize,
    sending: bool,
    sockaddr: libc::sockaddr_storage,
    sockaddr_len: libc::socklen_t,
    connect_ts: Timespec,
}

impl Conn {
    fn id(&self, slot: usize) -> ConnId {
        ConnId {
            slot,
            gen: self.gen,
        }
    }
}

pub(crate) struct EventLoop {
    // The ring is declared first so it is dropped first: the kernel stops
    // using buffers before the connections that own them are freed.
    ring: Ring,
    proto: Protocol,
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    recv_buffer_ring: bool,
    recv_buffers: u16,
    connect_timeout_ms: u64,
    start: Instant,
    /// See [`EventLoop::now_ms`].
    now_cached_ms: u64,
    /// Indexed by [`ConnId::slot`].
    conns: Vec<Option<Box<Conn>>>,
    /// Reused lists of what the protocol asks for (see `flush_queued`,
    /// `apply_closes`, `apply_dials`).
    to_flush: Vec<ConnId>,
    to_close: Vec<ConnId>,
    to_dial: Vec<(ConnId, SocketAddr)>,
    tick_ts: Box<Timespec>,
    eventfd_buf: Box<[u8; 8]>,
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
        Ok(EventLoop {
            ring,
            shared: shared.clone(),
            listener,
            local_addr,
            recv_buffer_ring: cfg.recv_buffer_ring,
            recv_buffers: cfg.recv_buffers,
            connect_timeout_ms: cfg.connect_timeout_ms,
            start: Instant::now(),
            now_cached_ms: 0,
            conns: Vec::new(),
            to_flush: Vec::new(),
            to_close: Vec::new(),
            to_dial: Vec::new(),
            tick_ts: Box::new(timespec_ms(cfg.tick_ms)),
            eventfd_buf: Box::new([0; 8]),
            proto: Protocol::new(cfg, identity, shared, responder, local_addr, seed),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Milliseconds since the loop started, as of the last
    /// [`EventLoop::refresh_now`]: the clock is read once per loop
    /// iteration (and every `COMMANDS_PER_CLOCK_READ` commands), not once
    /// per frame, where it was 6 % of the I/O thread's samples in the
    /// 128-byte `net/loopback` profile. Everything timed by the protocol
    /// (ticks, timeouts, rate limits) is in milliseconds and tolerates a
    /// reading some microseconds old.
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
        if self.recv_buffer_ring {
            // A kernel without provided-buffer rings gets per-connection
            // buffers instead (see `Config::recv_buffer_ring`).
            let _ = self
                .ring
                .register_recv_buffers(self.recv_buffers, RECV_BUFFER_BYTES);
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
        self.proto.publish_peers_if_changed();
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
                self.refresh_now();
                self.proto.on_tick(self.now_ms());
                self.apply_closes();
                self.apply_dials();
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
                    let n = c.result as usize;
                    conn.send_off += n;
                    if conn.send_off >= conn.send_inflight.len() {
                        conn.send_inflight.clear();
                        conn.send_off = 0;
                    }
                    self.shared
                        .stats
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let id = ConnId { slot, gen };
                    self.proto.on_sent(id, n);
                }
            }
            K_CONNECT => {
                let Some(conn) = self.conn_mut(slot, gen) else {
                    return Ok(());
                };
                conn.inflight -= 1;
                let id = ConnId { slot, gen };
                if conn.closing {
                    self.maybe_free(slot);
                } else if c.result < 0 {
                    self.proto.on_connect_failed(id);
                    self.apply_closes();
                } else {
                    self.proto.on_connected(id, self.now_ms());
                    self.arm_recv(slot);
                    self.apply_closes();
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

    /// Puts the connection of protocol id `id` (socket `fd`) in its slot.
    fn new_conn(&mut self, id: ConnId, fd: RawFd) -> &mut Conn {
        if self.conns.len() <= id.slot {
            self.conns.resize_with(id.slot + 1, || None);
        }
        debug_assert!(self.conns[id.slot].is_none(), "slot released by the loop");
        self.conns[id.slot].insert(Box::new(Conn {
            gen: id.gen,
            fd,
            closing: false,
            inflight: 0,
            // Allocated by `arm_recv` when there is no receive ring.
            recv_buf: Box::default(),
            send_inflight: Vec::new(),
            send_off: 0,
            sending: false,
            sockaddr: sys::zeroed_sockaddr(),
            sockaddr_len: 0,
            connect_ts: timespec_ms(self.connect_timeout_ms),
        }))
    }

    fn on_accept(&mut self, fd: RawFd) {
        let Some(remote) = sys::peer_name(fd) else {
            sys::close(fd);
            return;
        };
        let Some(id) = self.proto.on_accepted(remote, self.now_ms()) else {
            sys::close(fd);
            return;
        };
        sys::set_nodelay(fd);
        self.new_conn(id, fd);
        self.arm_recv(id.slot);
    }

    /// Opens the connections the protocol decided to dial.
    fn apply_dials(&mut self) {
        if !self.proto.has_dials() {
            return;
        }
        let mut dials = std::mem::take(&mut self.to_dial);
        self.proto.take_dials(&mut dials);
        for &(id, addr) in &dials {
            self.dial(id, addr);
        }
        dials.clear();
        self.to_dial = dials;
    }

    fn dial(&mut self, id: ConnId, addr: SocketAddr) {
        let Ok(fd) = sys::tcp_socket_for(&addr) else {
            self.proto.on_dial_failed(id);
            return;
        };
        sys::set_nodelay(fd);
        self.proto.on_dial_started(id);
        let slot = id.slot;
        let conn = self.new_conn(id, fd);
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
            let id = conn.id(slot);
            if !self.proto.take_output(id, &mut conn.send_inflight) {
                return;
            }
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

    /// Starts a send on every connection the protocol queued frames for
    /// (one send each, of all its queued frames), once per loop iteration.
    fn flush_queued(&mut self) {
        let mut ids = std::mem::take(&mut self.to_flush);
        self.proto.take_sendable(&mut ids);
        for id in &ids {
            if self.conn_mut(id.slot, id.gen).is_some() {
                self.flush(id.slot);
            }
        }
        ids.clear();
        self.to_flush = ids;
    }

    /// Closes connection `slot` for a reason of the loop's (a failed
    /// operation, the peer hung up, shutdown) or the protocol's.
    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        let (id, fd) = (conn.id(slot), conn.fd);
        // The protocol's side: pending requests fail, the peer goes down.
        self.proto.close(id);
        sys::shutdown(fd);
        self.maybe_free(slot);
    }

    /// Closes the connections the protocol closed.
    fn apply_closes(&mut self) {
        if !self.proto.has_closes() {
            return;
        }
        let mut ids = std::mem::take(&mut self.to_close);
        self.proto.take_closes(&mut ids);
        for id in &ids {
            if self.conn_mut(id.slot, id.gen).is_some() {
                self.close(id.slot);
            }
        }
        ids.clear();
        self.to_close = ids;
    }

    fn maybe_free(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_ref() else {
            return;
        };
        if conn.closing && conn.inflight == 0 {
            // No operation uses the fd or buffers any more.
            sys::close(conn.fd);
            self.proto.release(conn.id(slot));
            self.conns[slot] = None;
        }
    }

    /// Hands `n` received bytes to the protocol: in provided buffer `bid`
    /// (recycled here), or else in the connection's own buffer. `rearm`:
    /// submit the next receive (the last one ended).
    fn on_recv(&mut self, slot: usize, n: usize, bid: Option<u16>, rearm: bool) {
        self.shared
            .stats
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        let now = self.now_ms();
        let conn = self.conns[slot].as_mut().expect("live slot");
        let id = conn.id(slot);
        // Hold the connection while the protocol handles its bytes: a
        // misbehaving frame closes it, and it must not be freed (nor its
        // buffer reused) before they are handled.
        conn.inflight += 1;
        let own_buf = std::mem::take(&mut conn.recv_buf);
        let buf: &[u8] = match bid {
            // SAFETY: `bid` and `n` come from the completion being handled,
            // and the buffer is recycled only below, after the last use of
            // `buf`.
            Some(bid) => unsafe { self.ring.recv_buffer(bid, n) },
            None => &own_buf[..n],
        };
        self.proto.on_bytes(id, buf, now);
        if let Some(bid) = bid {
            self.ring.recycle_recv_buffer(bid);
        }
        // Still held: a connection closed here is freed below, not in
        // `close`.
        self.apply_closes();
        let conn = self.conns[slot]
            .as_mut()
            .expect("connection outlives its receive");
        conn.recv_buf = own_buf;
        conn.inflight -= 1;
        if conn.closing {
            self.maybe_free(slot);
        } else if rearm {
            self.arm_recv(slot);
        }
    }

    /// [`crate::Handle::broadcast`] of `item`, at once: gossiped unless its
    /// id (blake3 of it, computed by the caller) was seen.
    pub(crate) fn broadcast_now(&mut self, id: ItemId, item: Vec<u8>) {
        self.proto.broadcast(id, item);
    }

    /// [`crate::Handle::request`] without building the command: the payload
    /// is borrowed and framed straight into the peer's send queue.
    pub(crate) fn request_now(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        self.refresh_now();
        self.proto.request(to, request_id, payload, self.now_ms());
        self.apply_closes();
    }

    /// [`crate::Handle::respond`] with a borrowed payload; see
    /// [`EventLoop::request_now`].
    pub(crate) fn respond_now(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        self.proto.respond(to, request_id, payload);
        self.apply_closes();
    }

    /// [`crate::Handle::send`] with a borrowed payload; see
    /// [`EventLoop::request_now`].
    pub(crate) fn send_now(&mut self, to: [u8; 32], payload: &[u8]) {
        self.proto.send(to, payload);
        self.apply_closes();
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
            self.proto.on_command(cmd, self.now_ms());
        }
        self.apply_closes();
        self.apply_dials();
    }
}
