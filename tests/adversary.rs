//! The adversary suite (issue 17): each test starts a devnet of real
//! `strata node` processes on 127.0.0.1, measures honest finality (one
//! transfer at a time, submitted and polled until final), then runs one
//! attack from a scripted rogue peer or validator while measuring again,
//! and asserts that honest finality kept going within a bound, that no
//! honest peer was cut off, that the attacker was scored or dropped, and
//! that memory stayed bounded. Each prints one `ADVERSARY` line with the
//! figures (baseline and during-attack p50/p99, the attacker's cost, the
//! node's CPU time):
//! `cargo test --release --test adversary -- --nocapture --test-threads 1`.
//!
//! The bounds on finality during an attack, whatever the baseline: a
//! median of at most [`P50_BOUND_MS`], and a p99 (with 20 probes, the
//! slowest) of at most [`P99_BOUND_MS`] plus the slowest fsync of the
//! nodes' disk meanwhile. On an idle 2-core machine a transfer is final in
//! tens of milliseconds; the attacks these tests replay moved the median to
//! 800 ms (unfundable transfers), every probe to seconds (GetBlock floods:
//! 2.5–11 s, a 40 s backlog) or stopped finality (duplicate "no vote"
//! answers), and each fails one bound or the other.
//!
//! Why the p99 bound is what it is: on a loaded machine three honest
//! validators of four sometimes each propose at one height (blocks reach
//! each other late), and with the fourth validator absent, as in several
//! attacks here (banned, or never started), no block can win a poll: each
//! node's polls see one vote per block and a missing one. Only the
//! engine's stall breaker ends that, and for safety it waits eight poll
//! timeouts without a successful poll when polls fail on missing answers
//! (3.2 s at the node's defaults; docs/consensus.md, "Adversaries",
//! problem 3). The bound is that wait plus the polls to finality and room
//! for a loaded machine. A block is final only once its commit is synced,
//! so a disk stalled by another process's writes (a parallel build stalled
//! fsync for up to half a second here) delays finality by as much; a
//! [`DiskProbe`] measures the disk beside each test and the bound grows by
//! its slowest fsync.
//!
//! The tests take turns (one devnet at a time): they measure latency, and
//! two devnets sharing two cores would measure each other.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rogue::{cpu_ms, percentile_ms, rss_bytes, DiskProbe, Probe, Rogue};
use common::{transfer, Devnet, DevnetOpts};
use strata_consensus::engine::Message as EngineMessage;
use strata_consensus::genesis::devnet_validator_key;
use strata_consensus::tx::{signing_key_from_seed, Transaction, TxBody, TxKind};
use strata_consensus::wire::Payload;
use strata_net::handshake::PROTOCOL_VERSION;
use strata_net::message::{write_item, Hello, Items, Message};
use strata_net::Event;

/// Most a median of honest finality may be during an attack (see the
/// module docs).
const P50_BOUND_MS: u64 = 300;
/// Most a p99 of honest finality may be during an attack: the stall
/// breaker's wait when polls fail on missing answers (8 poll timeouts of
/// 400 ms) plus 800 ms for the polls to finality on a loaded machine (see
/// the module docs).
const P99_BOUND_MS: u64 = 4_000;
/// Probes per measurement, at least.
const PROBES: usize = 20;
/// Time a measurement lasts, at least (so the attack's cost to the node
/// is measured over a few seconds, not a burst).
const MEASURE_MIN: Duration = Duration::from_secs(3);
/// How long one probe may take before it counts as this long.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// Resident memory an honest node may reach in these tests.
const RSS_BOUND_BYTES: u64 = 1 << 30;

/// One test at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A devnet of four validators, the first `running` as processes.
fn devnet(running: usize) -> Devnet {
    let net = Devnet::start_opts(DevnetOpts {
        validators: 4,
        running,
        config: None,
        fd_limit: None,
        genesis: None,
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    net
}

/// Finality figures around one attack, printed as one line.
struct Figures {
    name: &'static str,
    baseline: Vec<Duration>,
    during: Vec<Duration>,
    /// The node's CPU time per second of wall time, before and during.
    cpu_before_ms_per_s: u64,
    cpu_during_ms_per_s: u64,
    attacker: String,
    /// The slowest probe during the attack: start, end (time of day),
    /// duration, transaction.
    slowest: Option<(String, String, Duration, String)>,
    /// The slowest fsync of the disk the nodes write to, during the attack.
    disk_stall: Duration,
}

impl Figures {
    fn print(&self) {
        eprintln!(
            "ADVERSARY {:<34} baseline p50/p99 {:>4}/{:>4} ms | during p50/p99 {:>4}/{:>4} ms | \
             node 0 CPU {:>3} -> {:>3} ms/s | slowest fsync {} ms | attacker: {}",
            self.name,
            percentile_ms(&self.baseline, 50.0),
            percentile_ms(&self.baseline, 99.0),
            percentile_ms(&self.during, 50.0),
            percentile_ms(&self.during, 99.0),
            self.cpu_before_ms_per_s,
            self.cpu_during_ms_per_s,
            self.disk_stall.as_millis(),
            self.attacker,
        );
    }

    fn assert_bounded(&self, net: &Devnet) {
        let p99 = percentile_ms(&self.during, 99.0);
        // A block is final once its commit is synced: a disk stall delays
        // finality by as much, attack or not (see `DiskProbe`).
        let bound = P99_BOUND_MS + self.disk_stall.as_millis() as u64;
        let mut slowest = self.during.clone();
        slowest.sort_unstable_by(|a, b| b.cmp(a));
        slowest.truncate(5);
        let p50 = percentile_ms(&self.during, 50.0);
        assert!(
            p50 <= P50_BOUND_MS,
            "{}: honest finality p50 {p50} ms during the attack (bound {P50_BOUND_MS} ms)\n{}",
            self.name,
            net.logs()
        );
        if p99 > bound {
            let during_slowest = match &self.slowest {
                Some((from, to, took, tx)) => format!(
                    "slowest probe {tx}: {took:?} from {from} to {to}; the nodes' logs then:\n{}",
                    net.logs_between(from, to)
                ),
                None => String::new(),
            };
            panic!(
                "{}: honest finality p99 {p99} ms during the attack (bound {P99_BOUND_MS} ms \
                 + the slowest fsync meanwhile, {} ms; baseline p99 {} ms; {} samples, slowest \
                 {slowest:?})\n{during_slowest}\n{}",
                self.name,
                self.disk_stall.as_millis(),
                percentile_ms(&self.baseline, 99.0),
                self.during.len(),
                net.logs()
            );
        }
    }
}

/// Measures node `node`'s finality and CPU with no attack, then while
/// `attack` runs on another thread (it must stop when the flag is set);
/// returns the figures and what the attack returned.
fn measure<T: Send + 'static>(
    name: &'static str,
    net: &Devnet,
    node: usize,
    probe: &mut Probe,
    attack: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static,
) -> (Figures, T) {
    let pid = net.pid(node);
    let (t0, c0) = (Instant::now(), cpu_ms(pid));
    let baseline = probe_for(probe, net, node);
    let cpu_before = (cpu_ms(pid) - c0) * 1000 / t0.elapsed().as_millis().max(1) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let attacker = std::thread::spawn(move || attack(s));
    // Let the attack get going before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let (t1, c1) = (Instant::now(), cpu_ms(pid));
    probe.take_slowest();
    let disk = DiskProbe::start(net.dir.path());
    let during = probe_for(probe, net, node);
    let disk_stall = disk.stop();
    let slowest = probe.take_slowest();
    let cpu_during = (cpu_ms(pid) - c1) * 1000 / t1.elapsed().as_millis().max(1) as u64;
    stop.store(true, Ordering::Release);
    let out = attacker.join().expect("the attacker thread");
    (
        Figures {
            name,
            baseline,
            during,
            cpu_before_ms_per_s: cpu_before,
            cpu_during_ms_per_s: cpu_during,
            attacker: String::new(),
            slowest,
            disk_stall,
        },
        out,
    )
}

/// At least [`PROBES`] probes over at least [`MEASURE_MIN`].
fn probe_for(probe: &mut Probe, net: &Devnet, node: usize) -> Vec<Duration> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < PROBES || start.elapsed() < MEASURE_MIN {
        out.extend(probe.run(net, node, 1, PROBE_LIMIT));
    }
    out
}

/// Asserts that the probes' p50 and p99 are within [`P50_BOUND_MS`] and
/// [`P99_BOUND_MS`], printing the
/// slowest probe's window of every node's log when it is not.
fn assert_probes_bounded(name: &str, net: &Devnet, probe: &mut Probe, lat: &[Duration]) {
    let p99 = percentile_ms(lat, 99.0);
    assert!(
        percentile_ms(lat, 50.0) <= P50_BOUND_MS,
        "{name}: p50 {} ms > {P50_BOUND_MS} ms\n{}",
        percentile_ms(lat, 50.0),
        net.logs()
    );
    if p99 > P99_BOUND_MS {
        let window = probe
            .take_slowest()
            .map(|(from, to, took, tx)| {
                format!(
                    "slowest probe {tx}: {took:?} from {from} to {to}:\n{}",
                    net.logs_between(&from, &to)
                )
            })
            .unwrap_or_default();
        panic!(
            "{name}: p99 {p99} ms > {P99_BOUND_MS} ms\n{window}\n{}",
            net.logs()
        );
    }
}

/// Every running node (of the first `running`) has every other among its
/// peers, by key: no honest peer was banned or cut off.
fn assert_honest_mesh(net: &Devnet, running: usize) {
    let keys: Vec<String> = (0..running)
        .map(|i| hex::encode(devnet_validator_key(i).verifying_key().to_bytes()))
        .collect();
    for i in 0..running {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let peers = net.peer_keys(i);
            let missing: Vec<&String> = keys
                .iter()
                .enumerate()
                .filter(|(j, k)| *j != i && !peers.contains(k))
                .map(|(_, k)| k)
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} lost honest peers {missing:?}\n{}",
                net.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// A key nobody else uses: a stranger's.
fn fresh_seed(tag: u64) -> [u8; 32] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut seed = [0x77; 32];
    seed[..8].copy_from_slice(&tag.to_le_bytes());
    seed[8..16].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    seed
}

/// Finding 1: a Byzantine validator (validator 3, whose seed is public)
/// answers every query three times with "no vote". Before the fix that
/// closed honest polls early as if everyone had answered: finality halted
/// for as long as it kept doing so, and it was never scored. Now each
/// repeat is penalised and ignored; it is banned within a few queries.
#[test]
fn a_validator_answering_every_query_thrice_with_no_vote() {
    let _turn = serial();
    let net = devnet(3);
    let chain = net.genesis.net_chain_id();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| net.p2p_addr(i)).collect();
    let seed = devnet_validator_key(3).to_bytes();
    let mut probe = Probe::new(0);
    let (mut f, (answered, dropped)) = measure(
        "duplicate no-votes (validator)",
        &net,
        0,
        &mut probe,
        move |stop| {
            let mut rogues: Vec<Rogue> = addrs
                .iter()
                .filter_map(|a| Rogue::connect(*a, seed, chain))
                .collect();
            assert!(!rogues.is_empty(), "the rogue validator could not connect");
            let (mut answered, mut dropped) = (0u64, 0usize);
            while !stop.load(Ordering::Acquire) {
                let mut i = 0;
                while i < rogues.len() {
                    if rogues[i].poll(Duration::from_millis(1)).is_err() {
                        rogues.remove(i);
                        dropped += 1;
                        continue;
                    }
                    for m in rogues[i].take_engine() {
                        if let EngineMessage::Query { poll_id, height } = m {
                            for _ in 0..3 {
                                let vote = EngineMessage::Vote {
                                    poll_id,
                                    height,
                                    block: None,
                                };
                                let _ = rogues[i].send_engine(vote);
                            }
                            answered += 1;
                        }
                    }
                    i += 1;
                }
                if rogues.is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            (answered, dropped)
        },
    );
    f.attacker = format!("{answered} queries answered x3, {dropped} of 3 connections dropped");
    f.print();
    f.assert_bounded(&net);
    assert!(answered > 0, "the rogue validator was never queried");
    assert!(dropped >= 1, "no node dropped the rogue validator");
    assert!(net.metric(0, "strata_peers_penalized_total") >= 1.0);
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 3);
}

/// Findings 2, 9 and 10: a stranger floods node 0 with block pulls for
/// unknown ids (2,000 a second), pulls of a real finalized block, queries
/// about old heights and the current one, and pull responses nobody asked
/// for, reconnecting with a fresh key each time it is dropped. Before,
/// 2,000 unknown-id pulls a second moved finality from ~25 ms to 2.5–11 s
/// (each read and decoded a block under the consensus lock) and 100
/// known-id pulls grew resident memory by ~100 MB. Now every pull and
/// old-height query takes a request token, blocks are served off the
/// consensus thread within byte budgets, and a peer over budget is scored
/// down to a ban.
#[test]
fn a_stranger_flooding_block_pulls_and_queries() {
    let _turn = serial();
    let net = devnet(4);
    // A finalized block to ask for.
    let mut probe = Probe::new(0);
    probe.run(&net, 0, 2, PROBE_LIMIT);
    let known = net.get(0, "/v1/blocks/1").1["id"]
        .as_str()
        .map(|h| <[u8; 32]>::try_from(hex::decode(h).unwrap()).unwrap())
        .expect("block 1");
    let chain = net.genesis.net_chain_id();
    let addr = net.p2p_addr(0);
    let rss_before = rss_bytes(net.pid(0));
    let (mut f, (sent, connections)) = measure(
        "block pull / query flood (stranger)",
        &net,
        0,
        &mut probe,
        move |stop| {
            let (mut sent, mut connections) = (0u64, 0u64);
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let Some(mut r) = Rogue::connect(addr, fresh_seed(connections), chain) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                connections += 1;
                let started = Instant::now();
                let mut sent_here = 0u32;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&n.to_le_bytes());
                    let msg = match n % 8 {
                        0 => EngineMessage::GetBlock {
                            id: known,
                            height: 1,
                        },
                        1 => EngineMessage::Query {
                            poll_id: n,
                            height: 1,
                        },
                        2 => EngineMessage::Query {
                            poll_id: n,
                            height: 1_000_000,
                        },
                        _ => EngineMessage::GetBlock {
                            id,
                            height: 1 + n % 3,
                        },
                    };
                    if r.send_engine(msg).is_err() {
                        break;
                    }
                    if n % 64 == 0 {
                        let mut buf = Vec::new();
                        let item = n.to_le_bytes();
                        write_item(&mut buf, blake3::hash(&item).as_bytes(), &item);
                        let _ = r.send(&Message::PullResponse(Items::from_encoded(1, &buf)), 0);
                    }
                    sent += 1;
                    sent_here += 1;
                    if r.poll(Duration::from_micros(1)).is_err() {
                        break;
                    }
                    while r.take().is_some() {}
                    // 2,000 requests a second.
                    let due = started + Duration::from_micros(500) * sent_here;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait.min(Duration::from_millis(2)));
                    }
                }
            }
            (sent, connections)
        },
    );
    f.attacker = format!(
        "{sent} requests over {connections} connections (each dropped, reconnected with a new key)"
    );
    f.print();
    f.assert_bounded(&net);
    assert!(connections >= 2, "the flooder was never dropped");
    assert!(net.metric(0, "strata_requests_over_budget_total") >= 1.0);
    let grown = rss_bytes(net.pid(0)).saturating_sub(rss_before);
    assert!(grown < 200 << 20, "node 0 grew by {} MiB", grown >> 20);
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

/// Finding 3: transfers from empty accounts. Before, they entered the
/// mempool, were relayed and lived for the whole TTL, and every tick
/// scanned every sender (200,000 of them moved finality p50 to 800 ms).
/// Now each is refused at admission with "insufficient balance".
#[test]
fn transfers_from_empty_accounts() {
    let _turn = serial();
    let net = devnet(4);
    let chain_id = net.genesis.chain_id;
    // 40,000 senders with no balance, signed on two threads.
    let junk: Vec<Transaction> = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2u64)
            .map(|half| {
                scope.spawn(move || {
                    (half * 20_000..(half + 1) * 20_000)
                        .map(|i| {
                            let mut seed = [0x31; 32];
                            seed[..8].copy_from_slice(&i.to_le_bytes());
                            let key = signing_key_from_seed(&seed);
                            TxBody {
                                chain_id,
                                sender: key.verifying_key().to_bytes(),
                                nonce: 0,
                                fee: 1_000_000,
                                kind: TxKind::Transfer {
                                    to: [9; 32],
                                    amount: 1,
                                },
                            }
                            .sign(&key)
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let bodies: Vec<Vec<u8>> = junk
        .chunks(8_000)
        .map(|c| Payload::Txs(c.to_vec()).encode())
        .collect();
    let urls: Vec<String> = (0..4).map(|i| net.url(i, "/v1/txs")).collect();
    let mut probe = Probe::new(0);
    let (mut f, (posted, refused_balance, other)) = measure(
        "transfers from empty accounts",
        &net,
        0,
        &mut probe,
        move |stop| {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build();
            let (mut posted, mut balance, mut other) = (0usize, 0usize, Vec::new());
            for (k, body) in bodies.iter().enumerate() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let r = agent
                    .post(&urls[k % urls.len()])
                    .set("Content-Type", "application/octet-stream")
                    .send_bytes(body);
                let Ok(r) = r else { continue };
                let v: serde_json::Value = r.into_json().unwrap_or_default();
                for res in v["results"].as_array().into_iter().flatten() {
                    posted += 1;
                    match res["error"].as_str() {
                        Some(e) if e.contains("insufficient balance") => balance += 1,
                        Some(e) => other.push(e.to_string()),
                        None => other.push("admitted".into()),
                    }
                }
            }
            (posted, balance, other)
        },
    );
    f.attacker = format!(
        "{posted} transfers from empty accounts posted, {refused_balance} refused for balance"
    );
    f.print();
    f.assert_bounded(&net);
    assert!(posted > 0);
    assert_eq!(
        refused_balance,
        posted,
        "other answers: {:?}",
        &other[..other.len().min(5)]
    );
    for i in 0..4 {
        assert!(
            net.metric(i, "strata_mempool_txs") < 100.0,
            "node {i} held junk"
        );
    }
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

/// Finding 4: a hello carrying a validator's public key and a zero
/// signature banned that key for 10 minutes (genesis keys are public), so
/// the validator could not reconnect. Now a ban needs a proven key: the
/// spoofer's IP is banned, and the validator (a reserved peer) reconnects.
#[test]
fn a_spoofed_hello_cannot_get_a_validator_banned() {
    let _turn = serial();
    let mut net = devnet(4);
    let victim = devnet_validator_key(1).verifying_key().to_bytes();
    let chain = net.genesis.net_chain_id();
    let addr = net.p2p_addr(0);
    for k in 0..10u8 {
        let mut s = TcpStream::connect(addr).unwrap();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            chain_id: chain,
            node_key: victim,
            challenge: [k; 32],
            listen_port: 0,
        };
        let mut w = Vec::new();
        Message::Hello(hello).encode_frame(0, &mut w);
        Message::Auth([0; 64]).encode_frame(0, &mut w);
        let _ = std::io::Write::write_all(&mut s, &w);
    }
    // Validator 1 restarts: it must be let back in by node 0.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        net.metric(0, "strata_net_bans_total") >= 1.0,
        "the spoofer was not banned"
    );
    net.kill9(1);
    std::thread::sleep(Duration::from_millis(300));
    net.spawn(1);
    net.wait_ready(Duration::from_secs(30));
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
    let mut probe = Probe::new(0);
    let lat = probe.run(&net, 1, 5, PROBE_LIMIT);
    eprintln!(
        "ADVERSARY spoofed hello: after 10 hellos claiming validator 1's key, validator 1 \
         restarted and reconnected to node 0; its transfers final in p50 {} ms",
        percentile_ms(&lat, 50.0)
    );
    assert_probes_bounded("spoofed hello", &net, &mut probe, &lat);
}

/// Finding 5: 1,100 idle HTTP connections under `ulimit -n 1024` made the
/// next WAL creation fail; consensus halted and the process exited. Now
/// the API stops accepting at its connection limit, closes connections
/// that send no request head within 5 s, and the descriptor plan keeps a
/// reserve for storage.
#[test]
fn idle_connections_cannot_exhaust_descriptors() {
    let _turn = serial();
    raise_own_fd_limit();
    let net = Devnet::start_opts(DevnetOpts {
        validators: 4,
        running: 4,
        config: None,
        fd_limit: Some(1024),
        genesis: None,
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let api: SocketAddr = format!("127.0.0.1:{}", net.api[0]).parse().unwrap();
    let p2p = net.p2p_addr(0);
    let mut probe = Probe::new(0);
    // Probe through node 1: node 0's API is what the attack clogs.
    let (mut f, held) = measure(
        "1,100 idle API + P2P connections",
        &net,
        1,
        &mut probe,
        move |stop| {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut most = 0;
            while !stop.load(Ordering::Acquire) {
                while held.len() < 1_100 {
                    let target = if held.len() % 2 == 0 { api } else { p2p };
                    match TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
                        Ok(s) => held.push(s),
                        Err(_) => break,
                    }
                }
                most = most.max(held.len());
                std::thread::sleep(Duration::from_millis(200));
                // Reopen what the node closed.
                held.retain(|s| {
                    let mut b = [0u8; 1];
                    s.set_nonblocking(true).ok();
                    !matches!(std::io::Read::read(&mut &*s, &mut b), Ok(0))
                });
            }
            most
        },
    );
    f.attacker = format!("up to {held} idle connections held open (half API, half P2P)");
    f.print();
    f.assert_bounded(&net);
    // Node 0 kept finalizing and serves again once the attack is over.
    let h = net.height(1).unwrap();
    net.wait_height(0, h, Duration::from_secs(30));
    let (code, v) = net.get(0, "/v1/status");
    assert_eq!(code, 200);
    assert!(v["halted"].is_null(), "{v}");
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Finding 6: 32 peers with fresh keys filled every inbound slot, and
/// genesis validators were then refused. Validators are reserved peers
/// now: a restarted validator gets back in however many strangers are
/// connected.
#[test]
fn strangers_holding_every_inbound_slot_do_not_lock_out_a_validator() {
    let _turn = serial();
    let mut net = devnet(4);
    let chain = net.genesis.net_chain_id();
    let strangers: Vec<strata_net::Handle> = (0..40)
        .map(|_| {
            let config = strata_net::Config {
                seeds: vec![net.p2p_addr(0)],
                chain_id: chain,
                outbound_peers_max: 1,
                inbound_peers_max: 0,
                gossip_quiet: true,
                ..strata_net::Config::default()
            };
            strata_net::Node::start(config, strata_net::handshake::Identity::generate().unwrap())
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while net.get(0, "/v1/status").1["peers"].as_u64().unwrap_or(0) < 3 + 32 {
        assert!(
            Instant::now() < deadline,
            "the strangers did not fill node 0"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Validator 1 comes back on a port node 0 does not know: node 0 cannot
    // dial it, so it gets back in only by dialing node 0, inbound, where
    // every slot is held by a stranger: the reserved slot is what lets it
    // in (asserted below: node 0 sees the connection as inbound).
    net.kill9(1);
    std::thread::sleep(Duration::from_millis(300));
    net.move_p2p_port(1);
    net.spawn(1);
    let victim = hex::encode(devnet_validator_key(1).verifying_key().to_bytes());
    let inbound_victim = |net: &common::Devnet| {
        let (_, v) = net.get(0, "/v1/peers");
        v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["node_key"].as_str() == Some(victim.as_str()) && p["outbound"] == false)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !inbound_victim(&net) {
        assert!(
            Instant::now() < deadline,
            "validator 1 not let back in:\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut probe = Probe::new(0);
    let lat = probe.run(&net, 1, 5, PROBE_LIMIT);
    assert_probes_bounded("inbound slots", &net, &mut probe, &lat);
    let peers = net.get(0, "/v1/status").1["peers"].as_u64().unwrap_or(0);
    eprintln!(
        "ADVERSARY inbound slots: 40 strangers dialed node 0, it holds {peers} peers \
         (32 strangers + 3 validators); validator 1 restarted and got back in"
    );
    assert!(peers <= 3 + 32, "node 0 took more strangers than its limit");
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
    drop(strangers);
}

/// Findings 7 and 8: a framed client sending batches of forged signatures
/// was answered "0 admitted" and never penalised (1.2 M forced checks in
/// 40 s from one connection). Now it is banned on its first forgery, and
/// a batch of forgeries costs one chunk of checks; and a peer that
/// misbehaves before authenticating cannot come back on a new port.
#[test]
fn a_client_sending_forgeries_is_banned_and_cannot_come_back() {
    let _turn = serial();
    let net = devnet(4);
    let chain = net.genesis.net_chain_id();
    let forged_batch = Payload::Txs((0..256).map(|i| forged(&net, i, 0)).collect()).encode();
    let checked_before = net.metric(0, "strata_signatures_checked_total");
    let config = strata_net::Config {
        seeds: vec![net.p2p_addr(0)],
        chain_id: chain,
        gossip_quiet: true,
        outbound_peers_max: 1,
        inbound_peers_max: 0,
        send_queue_bytes_max: 64 << 20,
        ..strata_net::Config::default()
    };
    let client =
        strata_net::Node::start(config, strata_net::handshake::Identity::generate().unwrap())
            .unwrap();
    let node_key = loop {
        match client.next_event_timeout(Duration::from_secs(20)) {
            Some(Event::PeerUp { node_key, .. }) => break node_key,
            Some(_) => {}
            None => panic!("the client never connected"),
        }
    };
    let sent = 100;
    for _ in 0..sent {
        let _ = client.request(node_key, forged_batch.clone());
    }
    let (mut answered, mut failed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered + failed < sent && Instant::now() < deadline {
        match client.next_event_timeout(Duration::from_secs(1)) {
            Some(Event::Response { payload, .. }) => {
                assert_eq!(&payload[..4], &0u32.to_le_bytes(), "a forgery was admitted");
                answered += 1;
            }
            Some(Event::RequestFailed { .. }) => failed += 1,
            _ => {}
        }
    }
    let checked = net.metric(0, "strata_signatures_checked_total") - checked_before;
    eprintln!(
        "ADVERSARY forged client batches: {sent} batches of 256 forgeries sent, {answered} answered, \
         {failed} failed after the ban; node 0 checked {checked} signatures (vs {} before the fix)",
        sent * 256
    );
    assert!(failed > 0, "the forging client was never dropped");
    assert!(
        checked < 4_096.0,
        "node 0 checked {checked} signatures of forgeries"
    );
    assert!(net.metric(0, "strata_txs_invalid_from_peers_total") >= 1.0);

    // Garbage before authenticating, then a fresh key from a new port.
    let mut s = TcpStream::connect(net.p2p_addr(2)).unwrap();
    let _ = std::io::Write::write_all(&mut s, &[0xEE; 64]);
    std::thread::sleep(Duration::from_millis(300));
    let back = Rogue::connect(net.p2p_addr(2), fresh_seed(99), chain)
        .map(|mut r| r.closed_within(Duration::from_secs(3)));
    assert!(
        back.is_none_or(|closed| closed),
        "a peer banned by IP came back on a new port"
    );
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

/// Finding 12: before the handshake, each connection could make the node
/// buffer a 4 MiB partial frame. Now a frame over 256 bytes before
/// authentication is refused from its header.
#[test]
fn partial_frames_before_the_handshake_cost_nothing() {
    let _turn = serial();
    let net = devnet(4);
    let rss_before = rss_bytes(net.pid(0));
    let addr = net.p2p_addr(0);
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&sent);
    let mut probe = Probe::new(0);
    let (mut f, ()) = measure(
        "4 MiB partial frames before handshake",
        &net,
        0,
        &mut probe,
        move |stop| {
            let mut held = Vec::new();
            while !stop.load(Ordering::Acquire) && held.len() < 100 {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    break;
                };
                let head = strata_net::frame::Header {
                    msg_type: 0x01,
                    request_id: 0,
                    payload_len: 4 << 20,
                    payload_crc: 0,
                }
                .encode();
                let _ = std::io::Write::write_all(&mut s, &head);
                let _ = std::io::Write::write_all(&mut s, &vec![0u8; 64 << 10]);
                s2.fetch_add(1, Ordering::Relaxed);
                held.push(s);
            }
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    );
    f.attacker = format!(
        "{} connections each claiming a 4 MiB frame",
        sent.load(Ordering::Relaxed)
    );
    f.print();
    f.assert_bounded(&net);
    let grown = rss_bytes(net.pid(0)).saturating_sub(rss_before);
    assert!(grown < 64 << 20, "node 0 grew by {} MiB", grown >> 20);
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

/// The gossip flood that competes with polls (the February 2024
/// Avalanche stall: gossip starved poll answers). Strangers push junk
/// gossip items (correct ids, bytes that are no transaction) as fast as
/// their sockets take them, each reconnecting with a fresh key when
/// dropped. The network layer queues items in a lane of their own, shed
/// when full, and hands votes and requests over first, so consensus
/// messages are never dropped or kept waiting behind the flood: asserted
/// by node 0 dropping no non-item event.
#[test]
fn strangers_flooding_gossip_items() {
    let _turn = serial();
    let net = devnet(4);
    let chain = net.genesis.net_chain_id();
    let addr = net.p2p_addr(0);
    let rss_before = rss_bytes(net.pid(0));
    let mut probe = Probe::new(0);
    let (mut f, totals) = measure(
        "gossip item flood (4 strangers)",
        &net,
        0,
        &mut probe,
        move |stop| {
            let flooders: Vec<_> = (0..4u64)
                .map(|t| {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        let (mut items, mut bytes, mut connections) = (0u64, 0u64, 0u64);
                        let mut n = t << 40;
                        while !stop.load(Ordering::Acquire) {
                            let Some(mut r) = Rogue::connect(addr, fresh_seed(1_000 + t), chain)
                            else {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            };
                            connections += 1;
                            while !stop.load(Ordering::Acquire) {
                                let mut buf = Vec::with_capacity(512 * 160);
                                for _ in 0..512 {
                                    n += 1;
                                    let mut item = [0xA5u8; 120];
                                    item[..8].copy_from_slice(&n.to_le_bytes());
                                    write_item(&mut buf, blake3::hash(&item).as_bytes(), &item);
                                }
                                let msg = Message::Push(Items::from_encoded(512, &buf));
                                if r.send(&msg, 0).is_err() || r.poll(Duration::ZERO).is_err() {
                                    break;
                                }
                                while r.take().is_some() {}
                                items += 512;
                            }
                            bytes += r.bytes_sent;
                        }
                        (items, bytes, connections)
                    })
                })
                .collect();
            flooders
                .into_iter()
                .map(|h| h.join().expect("a flooder thread"))
                .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
        },
    );
    let (items, bytes, connections) = totals;
    let shed = net.metric(0, "strata_net_items_shed_total");
    let limited = net.metric(0, "strata_net_items_rate_limited_total");
    f.attacker = format!(
        "{items} junk items ({} MiB) pushed over {connections} connections; node 0 rate-limited \
         {limited} and shed {shed}",
        bytes >> 20
    );
    f.print();
    f.assert_bounded(&net);
    assert!(connections >= 2, "no flooder was ever dropped");
    assert_eq!(
        net.metric(0, "strata_net_events_dropped_total"),
        0.0,
        "node 0 dropped votes or requests during the flood"
    );
    let grown = rss_bytes(net.pid(0)).saturating_sub(rss_before);
    assert!(grown < 200 << 20, "node 0 grew by {} MiB", grown >> 20);
    assert!(peak_rss(net.pid(0)) < RSS_BOUND_BYTES);
    assert_honest_mesh(&net, 4);
}

/// A transaction whose signature is another one's: decodes, fails to
/// verify.
fn forged(net: &Devnet, from: usize, nonce: u64) -> Transaction {
    let good = transfer(&net.genesis, from, from + 1, nonce);
    let other = transfer(&net.genesis, from, from + 1, nonce + 1);
    let mut bytes = good.encoded().to_vec();
    let n = bytes.len();
    bytes[n - 64..].copy_from_slice(other.signature());
    Transaction::decode(&bytes).unwrap()
}
