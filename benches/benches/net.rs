//! Network hot paths.
//!
//! - `net/recv_path/strata`: one small push frame (one 128-byte item) from
//!   bytes to routed item: incremental decode + crc32 check + message decode
//!   and rate-limit check + per-peer known-id LRU + node-wide seen cache +
//!   the item's id checked against its blake3 hash (new items only) + route
//!   callback. Every item is new (65536 distinct frames cycled through a seen
//!   cache of 32768 ids, so each lookup misses and each insert evicts), which
//!   is the slower of the two paths; `net/recv_path_duplicate/strata` is the
//!   path of an item already seen. Allocations per message are counted with a
//!   counting global allocator and printed before the timings.
//! - `queue/spsc` and `queue/mpsc/{1,2,4}`: moving 100 000 u64 messages from
//!   producer threads to one consumer through a bounded queue of 1024:
//!   `crossbeam` (crossbeam-queue ArrayQueue), `mutex_vecdeque` (Mutex +
//!   VecDeque with a length cap) and `std_mpsc` (std sync_channel). Full and
//!   empty queues yield the thread (this machine has 2 cores).
//! - `net/loopback/{strata,strata_inline,tokio}/{128B,64KiB}`: a client
//!   sends requests of the given payload to a server on 127.0.0.1, which
//!   answers each with an 8-byte ack; 64 requests are kept in flight. Both
//!   strata functions run two strata-net nodes (an io_uring thread each)
//!   with the client on the bench thread: it sends each window of requests
//!   in one `Handle::batch` (one wake of its I/O thread) and takes
//!   responses with `Handle::next_events`, which sleeps until the I/O
//!   thread pushes some (polling was measured slower on 2 cores, whether
//!   yield-spinning, which starves the I/O threads, or sleeping 50 µs per
//!   empty poll). `strata`: the server's requests go to a responder thread
//!   as events, answered in one batch per `next_events` call — the path the
//!   node's own request handling takes. `strata_inline`: the server answers
//!   on its I/O thread with a `strata_net::Responder`, as the tokio server
//!   answers inside its I/O task. `tokio`: the same frame layout (header,
//!   crc32 checked on receipt, length limit before allocation) written for
//!   the bench with a 2-worker tokio runtime, buffered reads and writes,
//!   and flushes when no more input is buffered. Both connections are set
//!   up once, outside the measurement; throughput is in messages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use strata_net::frame::{FrameDecoder, HEADER_BYTES, MAGIC};
use strata_net::gossip::{on_items, PeerGossip, PushLimits, SeenCache};
use strata_net::message::{write_item, Items, Message};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAMES: usize = 65_536;
const SEEN_IDS: usize = 32_768;

fn frames() -> Vec<Vec<u8>> {
    strata_benches::uniform_keys(FRAMES, 77)
        .iter()
        .map(|key| {
            // 128 distinct bytes per item, under their blake3 id (the
            // receiver checks it).
            let item: Vec<u8> = key.iter().copied().cycle().take(128).collect();
            let id = blake3::hash(&item);
            let mut items = Vec::new();
            write_item(&mut items, id.as_bytes(), &item);
            let mut w = Vec::new();
            Message::Push(Items::from_encoded(1, &items)).encode_frame(0, &mut w);
            w
        })
        .collect()
}

struct RecvPath {
    dec: FrameDecoder,
    seen: SeenCache,
    peer: PeerGossip,
    routed_bytes: u64,
    now_ms: u64,
}

impl RecvPath {
    fn new() -> Self {
        RecvPath {
            dec: FrameDecoder::new(4 << 20),
            seen: SeenCache::new(SEEN_IDS),
            peer: PeerGossip::new(
                4096,
                PushLimits {
                    items_per_s: u64::MAX / 4,
                    bytes_per_s: u64::MAX / 4,
                },
                0,
            ),
            routed_bytes: 0,
            now_ms: 0,
        }
    }

    #[inline]
    fn on_bytes(&mut self, bytes: &[u8]) {
        let mut input = bytes;
        while let Ok(Some(f)) = self.dec.next(&mut input) {
            if let Ok(Message::Push(items)) = Message::decode(f.header.msg_type, f.payload) {
                let routed = &mut self.routed_bytes;
                on_items(
                    &mut self.seen,
                    &mut self.peer,
                    items,
                    true,
                    self.now_ms,
                    |id, item| {
                        *routed += item.len() as u64 + u64::from(id[0]);
                    },
                );
            }
        }
    }
}

fn recv_path(c: &mut Criterion) {
    let frames = frames();
    // Allocation count over 100 000 messages after warm-up.
    let mut rp = RecvPath::new();
    for f in &frames {
        rp.on_bytes(f);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 0..100_000 {
        rp.on_bytes(&frames[i % FRAMES]);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    println!(
        "net/recv_path: {allocs} allocations over 100000 messages ({:.3} per message)",
        allocs as f64 / 1e5
    );

    let mut g = c.benchmark_group("net/recv_path");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("strata", |b| {
        b.iter(|| {
            rp.on_bytes(black_box(&frames[i]));
            i = (i + 1) % FRAMES;
        })
    });
    g.finish();

    let mut g = c.benchmark_group("net/recv_path_duplicate");
    g.throughput(Throughput::Elements(1));
    let mut dup = RecvPath::new();
    dup.on_bytes(&frames[0]);
    g.bench_function("strata", |b| b.iter(|| dup.on_bytes(black_box(&frames[0]))));
    g.finish();
    black_box(rp.routed_bytes + dup.routed_bytes);
}

const MESSAGES: u64 = 100_000;
const QUEUE_CAP: usize = 1024;

trait Queue: Send + Sync + 'static {
    fn push(&self, v: u64) -> bool;
    fn pop(&self) -> Option<u64>;
}

impl Queue for ArrayQueue<u64> {
    fn push(&self, v: u64) -> bool {
        ArrayQueue::push(self, v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        ArrayQueue::pop(self)
    }
}

struct MutexQueue(Mutex<VecDeque<u64>>);
impl Queue for MutexQueue {
    fn push(&self, v: u64) -> bool {
        let mut q = self.0.lock().unwrap();
        if q.len() >= QUEUE_CAP {
            return false;
        }
        q.push_back(v);
        true
    }
    fn pop(&self) -> Option<u64> {
        self.0.lock().unwrap().pop_front()
    }
}

fn run_queue<Q: Queue>(q: Arc<Q>, producers: u64) -> Duration {
    let per = MESSAGES / producers;
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    while !q.push(p * per + i) {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut got = 0;
    let mut sum = 0u64;
    while got < per * producers {
        match q.pop() {
            Some(v) => {
                sum = sum.wrapping_add(v);
                got += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    black_box(sum);
    start.elapsed()
}

fn run_std(producers: u64) -> Duration {
    let per = MESSAGES / producers;
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(QUEUE_CAP);
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    tx.send(p * per + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut sum = 0u64;
    for v in rx.iter() {
        sum = sum.wrapping_add(v);
    }
    for h in handles {
        h.join().unwrap();
    }
    black_box(sum);
    start.elapsed()
}

fn queues(c: &mut Criterion) {
    for (group, producers) in [
        ("queue/spsc", 1u64),
        ("queue/mpsc/1", 1),
        ("queue/mpsc/2", 2),
        ("queue/mpsc/4", 4),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(MESSAGES));
        g.sample_size(10);
        g.bench_function("crossbeam", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| run_queue(Arc::new(ArrayQueue::new(QUEUE_CAP)), producers))
                    .sum()
            })
        });
        g.bench_function("mutex_vecdeque", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        run_queue(
                            Arc::new(MutexQueue(Mutex::new(VecDeque::with_capacity(QUEUE_CAP)))),
                            producers,
                        )
                    })
                    .sum()
            })
        });
        g.bench_function("std_mpsc", |b| {
            b.iter_custom(|n| (0..n).map(|_| run_std(producers)).sum())
        });
        g.finish();
    }
}

/// Requests kept in flight by both `net/loopback` clients.
const LOOPBACK_WINDOW: u64 = 64;
/// The response payload of both `net/loopback` servers: an 8-byte ack.
const LOOPBACK_ACK: [u8; 8] = [0xAC; 8];
/// Payload limit the tokio server enforces, as the strata default does.
const LOOPBACK_PAYLOAD_BYTES_MAX: u32 = 4 << 20;
/// How long the strata client waits for a response before the bench fails.
const LOOPBACK_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the strata responder sleeps at most before checking its stop
/// flag.
const LOOPBACK_RESPONDER_WAIT: Duration = Duration::from_millis(20);
/// Most events the strata client and responder take per wait.
const LOOPBACK_EVENTS_MAX: usize = 1024;
const MSG_REQUEST: u8 = 0x20;
const MSG_RESPONSE: u8 = 0x21;

/// Two strata-net nodes on 127.0.0.1: `client` and a server whose events are
/// answered by a responder thread.
struct StrataPair {
    client: strata_net::Handle,
    server_key: [u8; 32],
    stop: Arc<AtomicBool>,
    /// The responder thread (event path), which owns the server handle.
    responder: Option<std::thread::JoinHandle<()>>,
    /// The server, when it answers on its I/O thread (no responder thread).
    _inline_server: Option<strata_net::Handle>,
}

impl StrataPair {
    /// `inline`: the server answers with a `strata_net::Responder` on its
    /// I/O thread, as the tokio server answers in its I/O task; else a
    /// responder thread takes `Event::Request`s and answers them.
    fn start(inline: bool) -> StrataPair {
        let identity = || strata_net::handshake::Identity::generate().expect("key");
        let base = strata_net::Config::default();
        let server = if inline {
            let ack = |_: &[u8; 32], _: &[u8], answer: &mut Vec<u8>| {
                answer.extend_from_slice(&LOOPBACK_ACK);
                true
            };
            strata_net::Node::start_with_responder(base.clone(), identity(), ack)
        } else {
            strata_net::Node::start(base.clone(), identity())
        }
        .expect("server starts");
        let client_cfg = strata_net::Config {
            seeds: vec![server.local_addr()],
            ..base
        };
        let client = strata_net::Node::start(client_cfg, identity()).expect("client starts");
        let t = Instant::now();
        while client.peers().len() != 1 || server.peers().len() != 1 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nodes did not connect"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let server_key = server.node_key();
        let stop = Arc::new(AtomicBool::new(false));
        if inline {
            return StrataPair {
                client,
                server_key,
                stop,
                responder: None,
                _inline_server: Some(server),
            };
        }
        let stop2 = stop.clone();
        let responder = std::thread::spawn(move || {
            let mut events = Vec::with_capacity(LOOPBACK_EVENTS_MAX);
            while !stop2.load(Ordering::Relaxed) {
                events.clear();
                server.next_events(&mut events, LOOPBACK_EVENTS_MAX, LOOPBACK_RESPONDER_WAIT);
                // Every request taken is answered in one batch: one wake of
                // the I/O thread, which sends all the answers in one send.
                let mut batch = server.batch();
                for e in events.drain(..) {
                    if let strata_net::Event::Request {
                        from, request_id, ..
                    } = e
                    {
                        // Retry while the command queue is full
                        // (backpressure); the batch woke the loop.
                        while batch
                            .respond(from, request_id, LOOPBACK_ACK.to_vec())
                            .is_err()
                        {
                            std::thread::yield_now();
                        }
                    }
                }
                batch.commit();
            }
            server.shutdown().expect("server stops");
        });
        StrataPair {
            client,
            server_key,
            stop,
            responder: Some(responder),
            _inline_server: None,
        }
    }

    fn exchange(&mut self, n: u64, payload: &[u8]) -> Duration {
        strata_exchange(
            &mut StrataThreadClient(&self.client),
            self.server_key,
            n,
            payload,
        )
    }
}

/// The client side of a strata pair: queues requests through a handle and
/// takes events, whether its loop runs on an I/O thread or on the caller's.
trait StrataClient {
    /// Queues a window of requests for `server_key`, stopping early when
    /// the command queue is full; returns how many it queued.
    fn request_window(&mut self, server_key: [u8; 32], payload: &[u8], count: u64) -> u64;
    /// Waits for events as `Handle::next_events` does; returns how many.
    fn next_events(&mut self, out: &mut Vec<strata_net::Event>) -> usize;
}

/// A client node with its own I/O thread.
struct StrataThreadClient<'h>(&'h strata_net::Handle);

impl StrataClient for StrataThreadClient<'_> {
    fn request_window(&mut self, server_key: [u8; 32], payload: &[u8], count: u64) -> u64 {
        // One batch: one wake of the I/O thread, one send, as the tokio
        // client flushes once per refill.
        let mut batch = self.0.batch();
        for queued in 0..count {
            if batch.request(server_key, payload.to_vec()).is_err() {
                return queued;
            }
        }
        count
    }
    fn next_events(&mut self, out: &mut Vec<strata_net::Event>) -> usize {
        self.0
            .next_events(out, LOOPBACK_EVENTS_MAX, LOOPBACK_RESPONSE_TIMEOUT)
    }
}

impl StrataClient for strata_net::DrivenNode {
    fn request_window(&mut self, server_key: [u8; 32], payload: &[u8], count: u64) -> u64 {
        // Framed at once from the borrowed payload; sent by the next poll.
        for _ in 0..count {
            self.request(server_key, payload);
        }
        count
    }
    fn next_events(&mut self, out: &mut Vec<strata_net::Event>) -> usize {
        self.poll_events(out, LOOPBACK_EVENTS_MAX, LOOPBACK_RESPONSE_TIMEOUT)
            .expect("client loop")
    }
}

/// `n` requests of `payload` to `server_key`, at most `LOOPBACK_WINDOW` in
/// flight.
fn strata_exchange(
    client: &mut impl StrataClient,
    server_key: [u8; 32],
    n: u64,
    payload: &[u8],
) -> Duration {
    let start = Instant::now();
    let (mut sent, mut done) = (0u64, 0u64);
    let mut events = Vec::with_capacity(LOOPBACK_EVENTS_MAX);
    while done < n {
        let room = LOOPBACK_WINDOW - (sent - done);
        sent += client.request_window(server_key, payload, room.min(n - sent));
        // One event, then every one already queued, before the window
        // is refilled (as the tokio client reads what is buffered).
        events.clear();
        if client.next_events(&mut events) == 0 {
            panic!("no response within {LOOPBACK_RESPONSE_TIMEOUT:?}");
        }
        for event in events.drain(..) {
            match event {
                strata_net::Event::Response { payload, .. } => {
                    assert_eq!(payload, LOOPBACK_ACK);
                    done += 1;
                }
                e @ strata_net::Event::RequestFailed { .. } => panic!("{e:?}"),
                _ => {}
            }
        }
    }
    start.elapsed()
}

/// A client whose event loop runs on the bench thread
/// (`Node::start_driven`), and a server answering on its I/O thread with a
/// responder: two threads, as the tokio pair's client (`block_on` on the
/// bench thread) and server task.
struct StrataDrivenPair {
    client: strata_net::DrivenNode,
    server_key: [u8; 32],
    _server: strata_net::Handle,
}

impl StrataDrivenPair {
    fn start() -> StrataDrivenPair {
        let identity = || strata_net::handshake::Identity::generate().expect("key");
        let base = strata_net::Config::default();
        let ack = |_: &[u8; 32], _: &[u8], answer: &mut Vec<u8>| {
            answer.extend_from_slice(&LOOPBACK_ACK);
            true
        };
        let server = strata_net::Node::start_with_responder(base.clone(), identity(), ack)
            .expect("server starts");
        let client_cfg = strata_net::Config {
            seeds: vec![server.local_addr()],
            ..base
        };
        let mut client =
            strata_net::Node::start_driven(client_cfg, identity()).expect("client starts");
        let t = Instant::now();
        let mut events = Vec::new();
        while client.handle().peers().len() != 1 || server.peers().len() != 1 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nodes did not connect"
            );
            client
                .poll_events(&mut events, LOOPBACK_EVENTS_MAX, Duration::from_millis(5))
                .expect("client loop");
        }
        StrataDrivenPair {
            client,
            server_key: server.node_key(),
            _server: server,
        }
    }

    fn exchange(&mut self, n: u64, payload: &[u8]) -> Duration {
        strata_exchange(&mut self.client, self.server_key, n, payload)
    }
}

impl Drop for StrataPair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.responder.take() {
            let _ = r.join();
        }
    }
}

/// The strata frame layout (docs/protocol.md), written again for the tokio
/// rival so it shares no code with strata-net: magic, type, request id,
/// payload length, crc32 of the payload.
fn tokio_frame_header(msg_type: u8, request_id: u64, payload: &[u8]) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4] = msg_type;
    h[5..13].copy_from_slice(&request_id.to_le_bytes());
    h[13..17].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[17..21].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Reads one frame into `payload` (reused), checking magic, length limit
/// (before resizing) and crc32; returns (type, request id).
async fn tokio_read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    payload: &mut Vec<u8>,
) -> std::io::Result<(u8, u64)> {
    use std::io::{Error, ErrorKind};
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER_BYTES];
    r.read_exact(&mut h).await?;
    let field = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
    if field(0) != MAGIC {
        return Err(Error::new(ErrorKind::InvalidData, "bad magic"));
    }
    let len = field(13);
    if len > LOOPBACK_PAYLOAD_BYTES_MAX {
        return Err(Error::new(ErrorKind::InvalidData, "frame too large"));
    }
    payload.resize(len as usize, 0);
    r.read_exact(payload).await?;
    if crc32fast::hash(payload) != field(17) {
        return Err(Error::new(ErrorKind::InvalidData, "bad checksum"));
    }
    let rid = u64::from_le_bytes(h[5..13].try_into().expect("8 bytes"));
    Ok((h[4], rid))
}

/// Answers every request frame on `stream` with an ack, flushing whenever
/// no further request is already buffered (so pipelined requests share
/// writes, as strata's send queue does).
async fn tokio_serve(stream: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut r = tokio::io::BufReader::with_capacity(64 << 10, r);
    let mut w = tokio::io::BufWriter::with_capacity(64 << 10, w);
    let mut payload = Vec::new();
    loop {
        let (msg_type, rid) = match tokio_read_frame(&mut r, &mut payload).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if msg_type == MSG_REQUEST {
            w.write_all(&tokio_frame_header(MSG_RESPONSE, rid, &LOOPBACK_ACK))
                .await?;
            w.write_all(&LOOPBACK_ACK).await?;
        }
        if r.buffer().is_empty() {
            w.flush().await?;
        }
    }
}

/// A plain tokio client and server (2 worker threads) speaking the same
/// framing over one TcpStream on 127.0.0.1.
struct TokioPair {
    rt: tokio::runtime::Runtime,
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::io::BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    next_rid: u64,
}

impl TokioPair {
    fn start() -> TokioPair {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .expect("runtime");
        let stream = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let (s, _) = listener.accept().await.expect("accept");
                tokio_serve(s).await.expect("server");
            });
            let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        });
        let (r, w) = stream.into_split();
        TokioPair {
            rt,
            r: tokio::io::BufReader::with_capacity(64 << 10, r),
            w: tokio::io::BufWriter::with_capacity(64 << 10, w),
            next_rid: 1,
        }
    }

    /// `n` requests of `payload`, at most `LOOPBACK_WINDOW` in flight.
    fn exchange(&mut self, n: u64, payload: &[u8]) -> Duration {
        use tokio::io::AsyncWriteExt;
        let TokioPair { rt, r, w, next_rid } = self;
        let start = Instant::now();
        rt.block_on(async {
            let (mut sent, mut done) = (0u64, 0u64);
            let mut got = Vec::new();
            while done < n {
                while sent < n && sent - done < LOOPBACK_WINDOW {
                    w.write_all(&tokio_frame_header(MSG_REQUEST, *next_rid, payload))
                        .await
                        .expect("write");
                    w.write_all(payload).await.expect("write");
                    *next_rid += 1;
                    sent += 1;
                }
                w.flush().await.expect("flush");
                // One response, then every one already buffered.
                loop {
                    let (t, _) = tokio_read_frame(r, &mut got).await.expect("response");
                    assert!(t == MSG_RESPONSE && got == LOOPBACK_ACK);
                    done += 1;
                    if done == n || r.buffer().len() < HEADER_BYTES + LOOPBACK_ACK.len() {
                        break;
                    }
                }
            }
        });
        start.elapsed()
    }
}

/// Message sizes of `net/loopback`, with the messages per iteration (so an
/// iteration of either size takes roughly as long).
const LOOPBACK_SIZES: [(&str, usize, u64); 2] = [("128B", 128, 20_000), ("64KiB", 64 << 10, 1_000)];

fn loopback(c: &mut Criterion) {
    let mut strata = StrataPair::start(false);
    let mut strata_inline = StrataPair::start(true);

    let mut tokio = TokioPair::start();
    let mut g = c.benchmark_group("net/loopback");
    g.sample_size(10);
    for (name, bytes, n) in LOOPBACK_SIZES {
        let payload = vec![0x5Au8; bytes];
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("strata", name), &payload, |b, p| {
            b.iter_custom(|iters| (0..iters).map(|_| strata.exchange(n, p)).sum())
        });
        g.bench_with_input(BenchmarkId::new("strata_inline", name), &payload, |b, p| {
            b.iter_custom(|iters| (0..iters).map(|_| strata_inline.exchange(n, p)).sum())
        });
        g.bench_with_input(BenchmarkId::new("strata_driven", name), &payload, |b, p| {
            // Started here, not with the others: a driven node's loop runs
            // only while it is polled, so it cannot answer the server's
            // pings while the other functions are measured.
            let mut strata_driven = StrataDrivenPair::start();
            b.iter_custom(|iters| (0..iters).map(|_| strata_driven.exchange(n, p)).sum())
        });
        g.bench_with_input(BenchmarkId::new("tokio", name), &payload, |b, p| {
            b.iter_custom(|iters| (0..iters).map(|_| tokio.exchange(n, p)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, recv_path, queues, loopback);
criterion_main!(benches);
