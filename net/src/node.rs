//! The public API: [`Node::start`] spawns the I/O thread and returns a
//! [`Handle`] that other threads use through bounded queues and an eventfd.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::control::{Command, Shared};
pub use crate::control::{Event, PeerSummary, RequestFailure, Responder, Stats, COMMANDS_MAX};
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::handshake::Identity;
use crate::message::ItemId;
use crate::sys;

/// Entry point.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Validates `config`, sets up io_uring and the listener, and starts the
    /// I/O thread. Fails with [`Error::IoUringUnavailable`] (saying how to
    /// fix it) when the kernel refuses io_uring: there is no fallback backend,
    /// by decision — a node silently running on a slower path would hide a
    /// misconfigured host.
    pub fn start(config: Config, identity: Identity) -> Result<Handle> {
        Node::start_inner(config, identity, None)
    }

    /// As [`Node::start`], with a [`Responder`] that answers requests on
    /// the I/O thread: an answered request costs no event, no thread hop
    /// and no allocation, and its answer goes out in the same loop
    /// iteration as the other answers to the same receive. Requests it
    /// declines arrive as [`Event::Request`] as usual.
    pub fn start_with_responder(
        config: Config,
        identity: Identity,
        responder: impl Responder,
    ) -> Result<Handle> {
        Node::start_inner(config, identity, Some(Box::new(responder)))
    }

    /// As [`Node::start`], but with no I/O thread: the event loop runs on
    /// the thread that calls [`DrivenNode::poll_events`], as a tokio client
    /// runs its socket I/O inside `block_on`. Commands that thread queues
    /// through [`DrivenNode::handle`] are sent in the same system call that
    /// waits for the answers, and events come back without a thread
    /// hand-over or a futex wake: for a consumer that spends its time
    /// waiting on the network (a client, a bench, a consensus driver that
    /// polls between network turns) this removes two context switches per
    /// exchange. The node is then used from the thread that started it:
    /// [`DrivenNode`] is not `Send`, and its handle is borrowed from it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata_net::{handshake::Identity, Config, Node};
    ///
    /// let server = Node::start(Config::default(), Identity::generate().unwrap()).unwrap();
    /// let cfg = Config { seeds: vec![server.local_addr()], ..Config::default() };
    /// let mut client = Node::start_driven(cfg, Identity::generate().unwrap()).unwrap();
    /// let mut events = Vec::new();
    /// // Turn the client's loop until the handshake with the server is done.
    /// while client.handle().peers().is_empty() {
    ///     client.poll_events(&mut events, 64, Duration::from_millis(10)).unwrap();
    /// }
    /// assert_eq!(client.handle().peers()[0].node_key, server.node_key());
    /// ```
    pub fn start_driven(config: Config, identity: Identity) -> Result<DrivenNode> {
        Node::start_driven_inner(config, identity, None)
    }

    /// [`Node::start_driven`] with a [`Responder`] (see
    /// [`Node::start_with_responder`]), called on the polling thread.
    pub fn start_driven_with_responder(
        config: Config,
        identity: Identity,
        responder: impl Responder,
    ) -> Result<DrivenNode> {
        Node::start_driven_inner(config, identity, Some(Box::new(responder)))
    }

    fn start_driven_inner(
        config: Config,
        identity: Identity,
        responder: Option<Box<dyn Responder>>,
    ) -> Result<DrivenNode> {
        let (mut lp, handle) = Node::prepare(config, identity, responder)?;
        lp.arm()?;
        Ok(DrivenNode {
            lp,
            cqes: EventLoop::completions_buffer(),
            handle,
            _one_thread: std::marker::PhantomData,
        })
    }

    fn start_inner(
        config: Config,
        identity: Identity,
        responder: Option<Box<dyn Responder>>,
    ) -> Result<Handle> {
        let (mut lp, mut handle) = Node::prepare(config, identity, responder)?;
        let closer = CloseEventsOnDrop(handle.shared.clone());
        let thread = std::thread::Builder::new()
            .name("strata-net-io".into())
            .spawn(move || {
                // Dropped when the thread ends, by return, error or panic.
                let _closer = closer;
                lp.run()
            })
            .map_err(Error::Io)?;
        handle.thread = Some(thread);
        Ok(handle)
    }

    /// Validates `config`, sets up the eventfd, the queues, the ring and
    /// the listener: everything but the thread that runs the loop.
    fn prepare(
        config: Config,
        identity: Identity,
        responder: Option<Box<dyn Responder>>,
    ) -> Result<(EventLoop, Handle)> {
        config.validate()?;
        let efd = sys::eventfd().map_err(Error::Io)?;
        let shared = Arc::new(Shared::new(config.events_max, efd));
        let node_key = identity.public();
        let lp = EventLoop::new(config, identity, shared.clone(), responder)?;
        let local_addr = lp.local_addr();
        let handle = Handle {
            shared,
            thread: None,
            local_addr,
            node_key,
        };
        Ok((lp, handle))
    }
}

/// A node whose event loop runs on the caller's thread, inside
/// [`DrivenNode::poll_events`]; made by [`Node::start_driven`]. Nothing
/// happens on the network between calls (no accepts, no pings answered,
/// no timeouts fired), so it suits a thread that polls often. Dropping it
/// closes every connection.
pub struct DrivenNode {
    // Dropped first: the ring must go before the handle's shared state
    // (which owns the eventfd the ring reads).
    lp: EventLoop,
    cqes: Vec<crate::ring::Completion>,
    handle: Handle,
    /// Not `Send`: the ring accepts submissions only from the thread that
    /// created the node (io_uring's single-issuer mode).
    _one_thread: std::marker::PhantomData<*const ()>,
}

impl std::fmt::Debug for DrivenNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrivenNode")
            .field("local_addr", &self.handle.local_addr)
            .finish_non_exhaustive()
    }
}

impl DrivenNode {
    /// The handle through which commands are queued (sent by the next
    /// [`DrivenNode::poll_events`]) and peers and stats are read.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs the event loop on this thread until at least one event is
    /// queued or `timeout` has passed, then takes the queued events, up to
    /// `max`, appending them to `out`; returns how many. Commands queued
    /// before the call are sent in its first wait. A zero `timeout` runs
    /// one turn of the loop without blocking. Errors are the loop's fatal
    /// ones (a ring operation failed).
    pub fn poll_events(
        &mut self,
        out: &mut Vec<Event>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        // `None`: a timeout too large for a deadline waits without one.
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            let n = self.take_events(out, max);
            if n > 0 || max == 0 {
                return Ok(n);
            }
            let wait = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            self.lp.take_commands();
            self.lp.turn(&mut self.cqes, wait)?;
            if wait == Some(Duration::ZERO) {
                return Ok(self.take_events(out, max));
            }
        }
    }

    /// As [`Handle::request`], run at once on this thread with a borrowed
    /// payload: framed straight into the peer's send queue (no command, no
    /// copy), sent by the next [`DrivenNode::poll_events`]. Infallible: the
    /// node runs as long as this value exists; a request that cannot go
    /// out ends in [`Event::RequestFailed`] as usual.
    pub fn request(&mut self, to: [u8; 32], payload: &[u8]) -> u64 {
        let request_id = self
            .handle
            .shared
            .next_request_id
            .fetch_add(1, Ordering::Relaxed);
        self.lp.request_now(to, request_id, payload);
        request_id
    }

    /// As [`Handle::respond`], at once, with a borrowed payload; see
    /// [`DrivenNode::request`].
    pub fn respond(&mut self, to: [u8; 32], request_id: u64, payload: &[u8]) {
        self.lp.respond_now(to, request_id, payload);
    }

    /// As [`Handle::send`], at once, with a borrowed payload; see
    /// [`DrivenNode::request`].
    pub fn send(&mut self, to: [u8; 32], payload: &[u8]) {
        self.lp.send_now(to, payload);
    }

    /// As [`Handle::broadcast`], at once.
    pub fn broadcast(&mut self, item: Vec<u8>) -> ItemId {
        let id = *blake3::hash(&item).as_bytes();
        self.lp.broadcast_now(id, item);
        id
    }

    fn take_events(&self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(e) = self.handle.shared.pop_event() else {
                break;
            };
            out.push(e);
            n += 1;
        }
        n
    }

    /// Closes every connection and stops the node.
    pub fn shutdown(self) {}
}

impl Drop for DrivenNode {
    fn drop(&mut self) {
        self.handle.shared.stop.store(true, Ordering::Release);
        self.lp.shutdown_all();
        self.handle.shared.event_wait.close();
    }
}

/// Wakes every [`Handle::next_event_timeout`] caller when the I/O thread
/// ends, however it ends, so none sleeps out its timeout waiting for events
/// that can no longer come.
struct CloseEventsOnDrop(Arc<Shared>);

impl Drop for CloseEventsOnDrop {
    fn drop(&mut self) {
        self.0.event_wait.close();
    }
}

/// Handle to a running node. Dropping it stops the node.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
    local_addr: SocketAddr,
    node_key: [u8; 32],
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Handle {
    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    /// This node's key.
    pub fn node_key(&self) -> [u8; 32] {
        self.node_key
    }

    fn command(&self, c: Command) -> Result<()> {
        self.push_command(c)?;
        self.wake_loop();
        Ok(())
    }

    /// Pushes a command without waking the loop; [`Handle::wake_loop`]
    /// must follow for the loop to see it promptly.
    fn push_command(&self, c: Command) -> Result<()> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        self.shared.commands.push(c).map_err(|_| Error::QueueFull {
            queue: "command",
            capacity: COMMANDS_MAX,
        })
    }

    /// Makes sure the loop drains the commands pushed so far.
    fn wake_loop(&self) {
        self.shared.wake_if_asleep();
    }

    /// Starts a batch of commands that wakes the I/O thread once, when the
    /// batch is dropped (or [`CommandBatch::commit`]ted), instead of once
    /// per burst of single commands: the loop then finds the whole batch in
    /// one drain and sends every frame it produces for a peer in one send.
    /// Use it to answer every request taken by [`Handle::next_events`] at
    /// once, or to send a window of requests.
    pub fn batch(&self) -> CommandBatch<'_> {
        CommandBatch {
            handle: self,
            pushed: false,
        }
    }

    /// Gossips an item; returns its id (blake3 of the bytes).
    pub fn broadcast(&self, item: Vec<u8>) -> Result<ItemId> {
        let id = *blake3::hash(&item).as_bytes();
        self.command(Command::Broadcast { id, item })?;
        Ok(id)
    }

    /// Gossips an item that may have arrived from a peer (and so be in the
    /// seen cache already), for nodes running with
    /// [`Config::relay_received`] off that pass items on once validated.
    /// `id` must be the blake3 hash of `item`, which the caller usually
    /// has at hand (a transaction id): peers check it and ban on a
    /// mismatch. The item is not pushed back to peers known to have it.
    pub fn relay(&self, id: ItemId, item: Vec<u8>) -> Result<()> {
        debug_assert_eq!(blake3::hash(&item).as_bytes(), &id, "relay id");
        self.command(Command::Relay { id, item })
    }
    /// [`Handle::relay`] for many items at once: one command and one wake
    /// of the I/O thread for the whole batch (a node relays the
    /// transactions of each verified batch together).
    pub fn relay_many(&self, items: Vec<(ItemId, Vec<u8>)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        debug_assert!(items
            .iter()
            .all(|(id, item)| blake3::hash(item).as_bytes() == id));
        self.command(Command::RelayMany(items))
    }
    /// Sends a one-way message to a peer.
    pub fn send(&self, to: [u8; 32], payload: Vec<u8>) -> Result<()> {
        self.command(Command::Send { to, payload })
    }
    /// Sends a request; the answer arrives as [`Event::Response`] with the
    /// returned request id, or, when there will be none (no connection,
    /// too many pending, timeout, disconnect), as [`Event::RequestFailed`]
    /// with that id. An error here means the command was not queued at all.
    pub fn request(&self, to: [u8; 32], payload: Vec<u8>) -> Result<u64> {
        let request_id = self.shared.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.command(Command::Request {
            to,
            request_id,
            payload,
        })?;
        Ok(request_id)
    }
    /// Answers a request.
    pub fn respond(&self, to: [u8; 32], request_id: u64, payload: Vec<u8>) -> Result<()> {
        self.command(Command::Respond {
            to,
            request_id,
            payload,
        })
    }
    /// Dials an address.
    pub fn dial(&self, addr: SocketAddr) -> Result<()> {
        self.command(Command::Dial(addr))
    }
    /// Scores a ready peer down for misbehaviour found above the frame
    /// layer (an undecodable or invalid payload), with the same penalties,
    /// disconnects and bans as the loop's own checks.
    pub fn penalize(&self, peer: [u8; 32], reason: crate::peer::Misbehaviour) -> Result<()> {
        self.command(Command::Penalize { peer, reason })
    }
    /// Next event, if any (the stream is a bounded queue).
    pub fn try_next_event(&self) -> Option<Event> {
        self.shared.pop_event()
    }
    /// Makes a wait in [`Handle::next_event_timeout`] (this one's or
    /// another clone's) return `None` at once, or the next such wait if
    /// none is blocked now. For a consumer that also takes work from other
    /// queues: their producers call this after pushing, so one blocking
    /// wait covers every source (the node's driver waits this way for
    /// network events and for its workers' results).
    pub fn interrupt_wait(&self) {
        self.shared.event_wait.interrupt();
    }

    /// Next event, waiting up to `timeout` for one: returns at once when an
    /// event is queued, else sleeps until the I/O thread pushes one (or the
    /// timeout passes, the wait is interrupted
    /// ([`Handle::interrupt_wait`]), or the I/O thread has ended: then
    /// `None`).
    ///
    /// Sleeping costs the I/O thread nothing while nobody waits; with a
    /// waiter it costs one futex wake per loop iteration that pushed events,
    /// not one per event. Several threads may wait at once; each event goes
    /// to one of them. A `timeout` too large to represent as a deadline
    /// waits without one. The protocol and why it loses no wake-up are in
    /// the private `event_wait` module.
    pub fn next_event_timeout(&self, timeout: Duration) -> Option<Event> {
        self.shared
            .event_wait
            .wait(timeout, || self.shared.pop_event())
    }
    /// Waits like [`Handle::next_event_timeout`] for one event, then takes
    /// every event already queued, up to `max` in all, appending them to
    /// `out`; returns how many it appended (0 on timeout or once the I/O
    /// thread has ended, or when `max` is 0). A consumer that handles
    /// events in batches pays one wait per batch instead of one queue check
    /// per event, and can answer them with one [`Handle::batch`].
    pub fn next_events(&self, out: &mut Vec<Event>, max: usize, timeout: Duration) -> usize {
        if max == 0 {
            return 0;
        }
        let Some(first) = self.next_event_timeout(timeout) else {
            return 0;
        };
        out.push(first);
        let mut n = 1;
        while n < max {
            let Some(e) = self.shared.pop_event() else {
                break;
            };
            out.push(e);
            n += 1;
        }
        n
    }
    /// Ready peers.
    pub fn peers(&self) -> Vec<PeerSummary> {
        self.shared
            .peers
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
    /// Stops the node and waits for its thread.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }
    fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(Error::Stopped)),
            None => Ok(()),
        }
    }
}

/// Commands queued together with one wake of the I/O thread; made by
/// [`Handle::batch`]. Each method queues one command and returns the same
/// result as its [`Handle`] namesake. The wake happens when the batch is
/// dropped or committed, and at once when a command does not fit the
/// queue (so the loop drains it while the caller retries).
#[derive(Debug)]
#[must_use = "commands are seen by the I/O thread promptly only once the batch is dropped"]
pub struct CommandBatch<'h> {
    handle: &'h Handle,
    /// True when a command was pushed since the last wake.
    pushed: bool,
}

impl CommandBatch<'_> {
    fn push(&mut self, c: Command) -> Result<()> {
        match self.handle.push_command(c) {
            Ok(()) => {
                self.pushed = true;
                Ok(())
            }
            Err(e) => {
                // A full queue needs the loop to drain it; a stopped node
                // wakes no one, but waking costs nothing then.
                self.wake();
                Err(e)
            }
        }
    }

    fn wake(&mut self) {
        if std::mem::take(&mut self.pushed) {
            self.handle.wake_loop();
        }
    }

    /// As [`Handle::send`].
    pub fn send(&mut self, to: [u8; 32], payload: Vec<u8>) -> Result<()> {
        self.push(Command::Send { to, payload })
    }
    /// As [`Handle::request`].
    pub fn request(&mut self, to: [u8; 32], payload: Vec<u8>) -> Result<u64> {
        let request_id = self
            .handle
            .shared
            .next_request_id
            .fetch_add(1, Ordering::Relaxed);
        self.push(Command::Request {
            to,
            request_id,
            payload,
        })?;
        Ok(request_id)
    }
    /// As [`Handle::respond`].
    pub fn respond(&mut self, to: [u8; 32], request_id: u64, payload: Vec<u8>) -> Result<()> {
        self.push(Command::Respond {
            to,
            request_id,
            payload,
        })
    }
    /// Wakes the I/O thread for the commands queued so far (as dropping
    /// the batch does).
    pub fn commit(mut self) {
        self.wake();
    }
}

impl Drop for CommandBatch<'_> {
    fn drop(&mut self) {
        self.wake();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
