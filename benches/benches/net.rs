//! Network hot paths.
//!
//! - `net/recv_path/strata`: one small push frame (one 128-byte item) from
//!   bytes to routed item: incremental decode + crc32 check + message decode
//!   and rate-limit check + per-peer known-id LRU + node-wide seen cache + route
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

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use strata_net::frame::FrameDecoder;
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
        .map(|id| {
            let mut items = Vec::new();
            write_item(&mut items, id, &[0xAB; 128]);
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

criterion_group!(benches, recv_path, queues);
criterion_main!(benches);
