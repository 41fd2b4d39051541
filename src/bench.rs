//! `strata bench`: creates and signs transfers from the devnet accounts
//! (all signed before the clock starts), sends them in batches over the
//! framed P2P protocol as requests (each answered with the number the node
//! admitted), then watches the API for the blocks that finalize them.
//!
//! Latency of a transaction = the moment the bench saw the block holding
//! it (polling `/v1/status` every `POLL_MS`) minus the moment its batch was
//! sent; the polling adds up to `POLL_MS` to each figure.
//!
//! The bench's own P2P node is a `strata_net::DrivenNode`: its event loop
//! runs on the bench thread, batches are framed straight from the
//! pre-encoded payloads (no copy per send), and waiting for answers is a
//! wait in the kernel rather than a sleep-and-poll loop. On a machine the
//! bench shares with the nodes it measures, its CPU is theirs to lose.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use strata_consensus::genesis::{devnet_account_key, devnet_account_public_keys, Genesis};
use strata_consensus::tx::{Transaction, TxBody, TxId, TxKind};
use strata_consensus::wire::Payload;
use strata_net::{DrivenNode, Event};

use crate::client::Client;
use crate::node::BUSY_ANSWER;

/// Status polling interval while waiting for finality.
const POLL_MS: u64 = 20;
/// How long the sender waits for any batch to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight per target before the sender waits.
const REQUESTS_IN_FLIGHT_MAX: usize = 16;
/// Most events taken per turn of the bench's network loop.
const EVENTS_PER_POLL_MAX: usize = 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// P2P addresses to send to (round robin).
    pub targets: Vec<SocketAddr>,
    /// API base URL of the node whose blocks are watched.
    pub api: String,
    /// Transactions.
    pub txs: usize,
    /// Distinct senders (devnet accounts `0..senders`).
    pub senders: usize,
    /// Submission rate in tx/s; `None` = as fast as the nodes take them.
    pub rate: Option<u64>,
    /// Transactions per request.
    pub batch: usize,
    /// Give up waiting for finality after this long.
    pub finality_timeout: Duration,
    /// Draw a progress bar.
    pub progress: bool,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Transactions sent.
    pub submitted: usize,
    /// Of those, admitted by the nodes.
    pub accepted: usize,
    /// Of those, seen in finalized blocks.
    pub finalized: usize,
    /// Time to send everything.
    pub submit_secs: f64,
    /// Time from the first send to the last finalization seen.
    pub total_secs: f64,
    /// Per-transaction finality latency, ms, sorted.
    pub latencies_ms: Vec<u64>,
    /// Finalized blocks seen that held bench transactions.
    pub blocks: usize,
    /// Height when the bench started and ended.
    pub heights: (u64, u64),
}

impl Report {
    /// The `p`-th percentile latency (0..=100), ms.
    pub fn latency_percentile(&self, p: f64) -> Option<u64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let i = ((p / 100.0) * (self.latencies_ms.len() - 1) as f64).round() as usize;
        self.latencies_ms.get(i).copied()
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let pct = |p| {
            self.latency_percentile(p)
                .map_or("-".to_string(), |v| format!("{v} ms"))
        };
        format!(
            "submitted {} ({:.0} tx/s), accepted {} ({:.0} tx/s), finalized {} ({:.0} tx/s) in {} blocks (heights {}..{})\n\
             finality latency p50 {} p95 {} p99 {}",
            self.submitted,
            self.submitted as f64 / self.submit_secs.max(1e-9),
            self.accepted,
            self.accepted as f64 / self.submit_secs.max(1e-9),
            self.finalized,
            self.finalized as f64 / self.total_secs.max(1e-9),
            self.blocks,
            self.heights.0,
            self.heights.1,
            pct(50.0),
            pct(95.0),
            pct(99.0),
        )
    }
}

/// Signs `plan.txs` transfers from `senders` devnet accounts starting at
/// their current nonces, on all cores.
fn sign_all(plan: &Plan, chain_id: u64, nonces: &[u64]) -> Vec<Transaction> {
    let accounts = devnet_account_public_keys();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = plan.txs.div_ceil(threads);
    let mut out = Vec::with_capacity(plan.txs);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let keys: Vec<_> = (0..plan.senders).map(devnet_account_key).collect();
                    (t * per..((t + 1) * per).min(plan.txs))
                        .map(|i| {
                            let s = i % plan.senders;
                            let body = TxBody {
                                chain_id,
                                sender: accounts[s],
                                nonce: nonces[s] + (i / plan.senders) as u64,
                                fee: 1,
                                kind: TxKind::Transfer {
                                    to: accounts[(s + 1) % accounts.len()],
                                    amount: 1,
                                },
                            };
                            body.sign(&keys[s]).expect("the key is the sender's")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("signing threads do not panic"));
        }
    });
    // Interleave senders so each batch spreads over many of them, in nonce
    // order per sender.
    out.sort_by_key(|t| t.nonce());
    out
}

fn wait_peers(
    net: &mut DrivenNode,
    want: usize,
    timeout: Duration,
) -> Result<Vec<[u8; 32]>, String> {
    let deadline = Instant::now() + timeout;
    let mut keys = Vec::new();
    let mut events = Vec::new();
    while keys.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "connected to {} of {want} targets within {timeout:?}",
                keys.len()
            ));
        }
        events.clear();
        net.poll_events(&mut events, EVENTS_PER_POLL_MAX, left)
            .map_err(|e| format!("bench network loop: {e}"))?;
        for e in events.drain(..) {
            if let Event::PeerUp { node_key, .. } = e {
                keys.push(node_key);
            }
        }
    }
    Ok(keys)
}

/// Runs `plan` against a network of chain `genesis`.
///
/// # Errors
/// When the targets cannot be reached or the API fails.
pub fn run(plan: &Plan, genesis: &Genesis) -> Result<Report, String> {
    if plan.senders == 0 || plan.senders > devnet_account_public_keys().len() {
        return Err(format!(
            "--senders must be 1..={}",
            devnet_account_public_keys().len()
        ));
    }
    let api = Client::new(&plan.api);
    let accounts = devnet_account_public_keys();
    let mut nonces = Vec::with_capacity(plan.senders);
    for pk in &accounts[..plan.senders] {
        let a = api.get(&format!("/v1/accounts/{}", hex::encode(pk)))?;
        nonces.push(a["nonce"].as_u64().unwrap_or(0));
    }
    eprintln!(
        "signing {} transactions from {} senders...",
        plan.txs, plan.senders
    );
    let txs = sign_all(plan, genesis.chain_id, &nonces);

    let config = strata_net::Config {
        seeds: plan.targets.clone(),
        chain_id: genesis.net_chain_id(),
        push_items_per_s: u64::MAX / 2,
        push_bytes_per_s: u64::MAX / 2,
        // The bench only submits: without this every node would push it
        // back every transaction (its own and everyone's), costing the
        // nodes' network loops and the bench's own CPU on the same cores.
        gossip_quiet: true,
        ..strata_net::Config::default()
    };
    let identity = strata_net::handshake::Identity::generate().map_err(|e| e.to_string())?;
    let mut net = strata_net::Node::start_driven(config, identity).map_err(|e| e.to_string())?;
    let peers = wait_peers(&mut net, plan.targets.len(), Duration::from_secs(15))?;
    // Encoded before the clock starts, like the signing: the bench
    // measures the node, and encoding on the fly would take CPU from it on
    // a shared machine.
    let batch = plan.batch.max(1);
    let mut link = Link {
        net,
        payloads: txs
            .chunks(batch)
            .map(|chunk| Payload::Txs(chunk.to_vec()).encode())
            .collect(),
        in_flight: HashMap::new(),
        busy: Vec::new(),
        retry_at: Instant::now(),
        accepted: 0,
        events: Vec::with_capacity(EVENTS_PER_POLL_MAX),
    };
    let start_height = api.get("/v1/status")?["height"].as_u64().unwrap_or(0);
    let bar = if plan.progress {
        let b = ProgressBar::new(plan.txs as u64);
        b.set_style(
            ProgressStyle::with_template("{msg:9} [{bar:40}] {pos}/{len} {per_sec}")
                .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("sending");
    let mut report = Report {
        submitted: txs.len(),
        heights: (start_height, start_height),
        ..Report::default()
    };
    let started = Instant::now();
    let mut watch = Watch {
        api: &api,
        seen_height: start_height,
        last_final: started,
        next_poll: started,
    };
    let mut sent_at: HashMap<TxId, Instant> = HashMap::with_capacity(txs.len());
    let mut sent = 0usize;
    for (i, chunk) in txs.chunks(batch).enumerate() {
        if let Some(rate) = plan.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            // Wait by turning the network loop, not by sleeping: a driven
            // node does nothing between polls, and a batch still being
            // sent would wait with it.
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                link.turn(wait)?;
            }
        }
        let stalled_at = Instant::now();
        while link.pending() >= REQUESTS_IN_FLIGHT_MAX * peers.len() {
            // Window full: wait for an answer (or the next status poll).
            link.turn(watch.until_poll().min(BUSY_RETRY))?;
            watch.poll(&mut sent_at, &mut report)?;
            // Requests that fail (peer gone, timed out) leave the window as
            // `RequestFailed`; this bounds a window that stops moving.
            if stalled_at.elapsed() > ANSWER_TIMEOUT {
                return Err(format!(
                    "no answer to {} batches for {ANSWER_TIMEOUT:?}: are the targets alive?",
                    link.in_flight.len()
                ));
            }
        }
        let now = Instant::now();
        for t in chunk {
            sent_at.insert(*t.id(), now);
        }
        let to = peers[i % peers.len()];
        // Framed from the borrowed payload; sent by the next poll. The
        // window above bounds what is queued for a peer.
        link.send(Sent { batch: i, to });
        sent += chunk.len();
        bar.set_position(sent as u64);
        // One turn without waiting: sends the batch, takes answers so far.
        link.turn(Duration::ZERO)?;
        watch.poll(&mut sent_at, &mut report)?;
    }
    let answers_deadline = Instant::now() + ANSWER_TIMEOUT;
    while link.pending() > 0 && Instant::now() < answers_deadline {
        link.turn(watch.until_poll().min(BUSY_RETRY))?;
        watch.poll(&mut sent_at, &mut report)?;
    }
    report.submit_secs = started.elapsed().as_secs_f64();
    report.accepted = link.accepted;

    bar.set_message("finality");
    bar.set_length(report.accepted as u64);
    bar.set_position(report.finalized as u64);
    let deadline = Instant::now() + plan.finality_timeout;
    while report.finalized < report.accepted && Instant::now() < deadline {
        watch.poll(&mut sent_at, &mut report)?;
        bar.set_position(report.finalized as u64);
        // Keep the network loop turning until the next status poll (pings
        // answered).
        link.turn(watch.until_poll())?;
        report.accepted = link.accepted;
    }
    bar.finish_and_clear();
    report.heights.1 = watch.seen_height;
    report.total_secs = watch.last_final.duration_since(started).as_secs_f64();
    report.latencies_ms.sort_unstable();
    link.net.shutdown();
    Ok(report)
}

/// Follows finalized blocks through the API while the bench runs, so a
/// transaction's latency ends when its block is first seen, not when the
/// sending is over.
struct Watch<'a> {
    api: &'a Client,
    seen_height: u64,
    last_final: Instant,
    next_poll: Instant,
}

impl Watch<'_> {
    /// Time left until the next status poll is due.
    fn until_poll(&self) -> Duration {
        self.next_poll.saturating_duration_since(Instant::now())
    }

    /// Reads new finalized blocks, at most every `POLL_MS`.
    fn poll(
        &mut self,
        sent_at: &mut HashMap<TxId, Instant>,
        report: &mut Report,
    ) -> Result<(), String> {
        if Instant::now() < self.next_poll {
            return Ok(());
        }
        self.next_poll = Instant::now() + Duration::from_millis(POLL_MS);
        let h = self.api.get("/v1/status")?["height"]
            .as_u64()
            .unwrap_or(self.seen_height);
        while self.seen_height < h {
            self.seen_height += 1;
            // Raw ids, not the block's JSON: at full load the bench reads
            // a block every few milliseconds, on the nodes' cores.
            let ids = self
                .api
                .get_bytes(&format!("/v1/blocks/{}/ids", self.seen_height))?;
            let now = Instant::now();
            let mut ours = 0;
            for id in ids.chunks_exact(32) {
                let tx_id: TxId = id.try_into().expect("chunks of 32 bytes");
                if let Some(t) = sent_at.remove(&tx_id) {
                    report
                        .latencies_ms
                        .push(now.duration_since(t).as_millis() as u64);
                    ours += 1;
                }
            }
            if ours > 0 {
                report.blocks += 1;
                report.finalized += ours;
                self.last_final = now;
            }
        }
        Ok(())
    }
}

/// The bench's P2P node with the encoded batches, its window of batches
/// awaiting an answer and the count of transactions the answers admitted.
struct Link {
    net: DrivenNode,
    /// Every batch, encoded before the clock starts.
    payloads: Vec<Vec<u8>>,
    /// Request id → the batch it carries.
    in_flight: HashMap<u64, Sent>,
    /// Batches a node answered busy, to send again once `retry_at` passed.
    busy: Vec<Sent>,
    retry_at: Instant,
    accepted: usize,
    /// Reused by every turn.
    events: Vec<Event>,
}

/// One batch on its way: its index in `Link::payloads` and the node it
/// went to.
#[derive(Clone, Copy)]
struct Sent {
    batch: usize,
    to: [u8; 32],
}

/// Wait before sending a batch again after a busy answer.
const BUSY_RETRY: Duration = Duration::from_millis(20);

impl Link {
    /// Frames batch `sent.batch` for `sent.to` (from the borrowed
    /// payload, no copy); sent by the next turn.
    fn send(&mut self, sent: Sent) {
        let id = self.net.request(sent.to, &self.payloads[sent.batch]);
        self.in_flight.insert(id, sent);
    }

    /// Batches sent and not yet admitted or refused for good.
    fn pending(&self) -> usize {
        self.in_flight.len() + self.busy.len()
    }

    /// Turns the network loop once, waiting up to `wait` for events,
    /// counts the admitted transactions of the answers it finds, and sends
    /// again the batches answered busy once their wait is over.
    fn turn(&mut self, wait: Duration) -> Result<(), String> {
        if !self.busy.is_empty() && Instant::now() >= self.retry_at {
            for sent in std::mem::take(&mut self.busy) {
                self.send(sent);
            }
        }
        self.events.clear();
        self.net
            .poll_events(&mut self.events, EVENTS_PER_POLL_MAX, wait)
            .map_err(|e| format!("bench network loop: {e}"))?;
        for e in self.events.drain(..) {
            match e {
                Event::Response {
                    request_id,
                    payload,
                    ..
                } => {
                    let Some(sent) = self.in_flight.remove(&request_id) else {
                        continue;
                    };
                    if payload.as_slice() == BUSY_ANSWER {
                        self.busy.push(sent);
                        self.retry_at = Instant::now() + BUSY_RETRY;
                    } else if let Ok(b) = <[u8; 4]>::try_from(payload.as_slice()) {
                        self.accepted += u32::from_le_bytes(b) as usize;
                    }
                }
                // Its transactions were not admitted: none counted.
                Event::RequestFailed { request_id, .. } => {
                    self.in_flight.remove(&request_id);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
