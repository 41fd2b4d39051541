//! `strata bench`: creates and signs transfers between accounts of the
//! devnet account space (all signed before the clock starts), sends them
//! in batches over the
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
//!
//! **Load.** The account space is the genesis's built-in devnet accounts
//! followed by its synthetic ones ([`Genesis::account_key`]). The bench
//! draws `senders` distinct sending accounts and every recipient from the
//! whole space, by the [`Distribution`]: uniform (every account equally
//! likely: on a large state, reads miss the caches, the honest worst
//! case) or Zipfian (YCSB's generator, θ = 0.99 by default: a few hot
//! accounts take most of the traffic). Senders take turns, so each sends
//! `txs / senders` transactions (the mempool holds at most 1,024 pending
//! per sender). The draw is seeded: a run is repeatable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use strata_consensus::contract::contract_id;
use strata_consensus::genesis::Genesis;
use strata_consensus::tx::{PublicKey, Transaction, TxBody, TxId, TxKind};
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

/// The example token contract `--token` sends transfers through.
pub const TOKEN_WAT: &str = include_str!("../examples/contracts/token.wat");
/// Gas each token transfer is given (one uses about 68,000).
const TOKEN_CALL_GAS: u64 = 100_000;
/// Tokens each sender is given before a `--token` run.
const TOKEN_SHARE: u64 = 1 << 32;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// P2P addresses to send to (round robin).
    pub targets: Vec<SocketAddr>,
    /// API base URL of the node whose blocks are watched.
    pub api: String,
    /// Transactions.
    pub txs: usize,
    /// Distinct sending accounts, drawn from the account space.
    pub senders: usize,
    /// Accounts `0..accounts` of the genesis's account space are drawn
    /// from (`None`: all of them).
    pub accounts: Option<u64>,
    /// How senders and recipients are drawn.
    pub distribution: Distribution,
    /// Every transaction pays a new account instead of a drawn one (see
    /// [`new_account`]): `txs` transfers create `txs` accounts, as on a
    /// chain whose state grew by use rather than by its genesis.
    pub new_recipients: bool,
    /// Seed of the draw.
    pub seed: u64,
    /// Token transfers through the example token contract
    /// ([`TOKEN_WAT`]) instead of native transfers.
    pub token: bool,
    /// Submission rate in tx/s; `None` = as fast as the nodes take them.
    pub rate: Option<u64>,
    /// Transactions per request.
    pub batch: usize,
    /// Give up waiting for finality after this long.
    pub finality_timeout: Duration,
    /// Draw a progress bar.
    pub progress: bool,
}

/// How the bench draws accounts from the account space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Every account equally likely.
    Uniform,
    /// Zipfian with skew `theta` in (0, 1) (YCSB uses 0.99).
    Zipf {
        /// Skew: larger is hotter.
        theta: f64,
    },
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distribution::Uniform => write!(f, "uniform"),
            Distribution::Zipf { theta } => write!(f, "zipfian θ={theta}"),
        }
    }
}

/// splitmix64: a small seeded generator, enough to draw accounts.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is below 2^-40 for the
    /// spaces drawn from here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Draws account indexes `0..n` by a [`Distribution`]. The Zipfian draw
/// is YCSB's (Gray et al., "Quickly generating billion-record synthetic
/// databases", 1994): index 0 is the hottest; the account key hashes
/// indexes over the state, so hot accounts are not neighbours on disk.
struct Draw {
    n: u64,
    zipf: Option<Zipf>,
}

struct Zipf {
    theta: f64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
}

impl Draw {
    fn new(n: u64, distribution: Distribution) -> Draw {
        assert!(n > 0, "an account space is never empty");
        let zipf = match distribution {
            Distribution::Uniform => None,
            Distribution::Zipf { theta } => {
                // ζ(n, θ) = Σ 1/i^θ: one pass, ~40 ms for 10 M accounts.
                let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
                let zeta_n = zeta(n);
                let zeta_2 = zeta(2.min(n));
                Some(Zipf {
                    theta,
                    zeta_n,
                    alpha: 1.0 / (1.0 - theta),
                    eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
                })
            }
        };
        Draw { n, zipf }
    }

    fn next(&self, rng: &mut Rng) -> u64 {
        let Some(z) = &self.zipf else {
            return rng.below(self.n);
        };
        let u = rng.unit();
        let uz = u * z.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(z.theta) {
            return 1.min(self.n - 1);
        }
        let i = (self.n as f64 * (z.eta * u - z.eta + 1.0).powf(z.alpha)) as u64;
        i.min(self.n - 1)
    }
}

/// The accounts a run uses: the distinct senders with their keys and
/// current nonces, and the recipient of every transaction.
struct Load {
    senders: Vec<(u64, PublicKey)>,
    recipients: Vec<PublicKey>,
}

/// Draws the senders and recipients of `plan` from `genesis`'s account
/// space.
fn draw_load(plan: &Plan, genesis: &Genesis) -> Result<Load, String> {
    let space = genesis.devnet_account_space();
    let n = plan.accounts.unwrap_or(space);
    if n == 0 || n > space {
        return Err(format!(
            "--accounts must be 1..={space} (the genesis's account space)"
        ));
    }
    if plan.senders == 0 || plan.senders as u64 > n {
        return Err(format!(
            "--senders must be 1..={n} (the accounts drawn from)"
        ));
    }
    let draw = Draw::new(n, plan.distribution);
    let mut rng = Rng(plan.seed);
    // Distinct senders: a skewed draw repeats hot accounts, so it is
    // redrawn; bounded, since a space smaller than the draw needs would
    // loop (then the rest come from a uniform draw).
    let mut chosen = std::collections::HashSet::with_capacity(plan.senders);
    let mut order = Vec::with_capacity(plan.senders);
    let mut attempts = 0usize;
    while order.len() < plan.senders {
        attempts += 1;
        let i = if attempts < 64 * plan.senders {
            draw.next(&mut rng)
        } else {
            rng.below(n)
        };
        if chosen.insert(i) {
            order.push(i);
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let senders = order
        .iter()
        .map(|&i| (i, genesis.account_public_keys(i..i + 1, 1)[0]))
        .collect();
    if plan.new_recipients {
        return Ok(Load {
            senders,
            recipients: (0..plan.txs as u64)
                .map(|i| new_account(plan.seed, i))
                .collect(),
        });
    }
    let recipients_index: Vec<u64> = (0..plan.txs).map(|_| draw.next(&mut rng)).collect();
    // Recipients' public keys: one key walk per distinct index is ~10 µs
    // of a base-point multiplication; spread over every core.
    let per = recipients_index.len().div_ceil(threads).max(1);
    let mut recipients = Vec::with_capacity(plan.txs);
    std::thread::scope(|scope| {
        let parts: Vec<_> = recipients_index
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&i| genesis.account_public_keys(i..i + 1, 1)[0])
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for p in parts {
            recipients.extend(p.join().expect("key derivation does not panic"));
        }
    });
    Ok(Load {
        senders,
        recipients,
    })
}

/// The `index`-th new account of a run seeded `seed`: a 32-byte key
/// hashed from both, outside the genesis's account space (no seed
/// derives it) and distinct across seeds and indexes. A transfer may pay
/// any 32 bytes; nobody holds the secret key of these, which a bench
/// that only pays them does not need.
pub fn new_account(seed: u64, index: u64) -> PublicKey {
    let mut h = blake3::Hasher::new();
    h.update(b"strata-bench/new-account");
    h.update(&seed.to_le_bytes());
    h.update(&index.to_le_bytes());
    *h.finalize().as_bytes()
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
    /// The accounts drawn from and how ("10000000 accounts, uniform").
    pub load: String,
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

    /// Why the run fell short, if it did: nothing accepted (with the likely
    /// causes), or accepted transactions not seen final before the timeout.
    /// `strata bench` exits non-zero with it.
    pub fn shortfall(&self) -> Option<String> {
        if self.submitted > 0 && self.accepted == 0 {
            return Some(format!(
                "the node admitted none of the {} transactions: check that --genesis is the \
                 genesis the node runs (the bench signs for its chain id and funded accounts) \
                 and the node's log",
                self.submitted
            ));
        }
        (self.finalized < self.accepted).then(|| {
            format!(
                "{} of {} accepted transactions were not seen final before --timeout",
                self.accepted - self.finalized,
                self.accepted
            )
        })
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let pct = |p| {
            self.latency_percentile(p)
                .map_or("-".to_string(), |v| format!("{v} ms"))
        };
        format!(
            "load: {}\n\
             submitted {} ({:.0} tx/s), accepted {} ({:.0} tx/s), finalized {} ({:.0} tx/s) in {} blocks (heights {}..{})\n\
             finality latency p50 {} p95 {} p99 {}",
            self.load,
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

/// Signs `plan.txs` transfers, sender `i % senders` and recipient `i` of
/// `load`, starting at the senders' current nonces, on all cores.
/// A token transfer of 1 to `to`, through contract `token`.
fn token_transfer(token: [u8; 32], to: &PublicKey, amount: u64) -> TxKind {
    let mut input = to.to_vec();
    input.extend_from_slice(&amount.to_le_bytes());
    TxKind::Call {
        contract: token,
        value: 0,
        gas_limit: TOKEN_CALL_GAS,
        gas_price: 1,
        entry: "transfer".into(),
        input,
    }
}

/// Deploys the token from the first sender, mints the supply to it and
/// gives every other sender [`TOKEN_SHARE`], through the API, waiting
/// until all of it is final; the first sender's nonce moves past these.
/// The token's id.
fn setup_token(
    api: &Client,
    genesis: &Genesis,
    load: &Load,
    nonces: &mut [u64],
) -> Result<[u8; 32], String> {
    let (index, owner) = load.senders[0];
    let key = genesis
        .account_key(index)
        .ok_or("a drawn account is in the space")?;
    let code = wat::parse_str(TOKEN_WAT).map_err(|e| format!("token.wat: {e}"))?;
    let token = contract_id(&owner, nonces[0]);
    let supply = TOKEN_SHARE * load.senders.len() as u64;
    let mut kinds = vec![
        TxKind::Deploy {
            code,
            gas_limit: 5_000_000,
            gas_price: 1,
        },
        TxKind::Call {
            contract: token,
            value: 0,
            gas_limit: TOKEN_CALL_GAS,
            gas_price: 1,
            entry: "init".into(),
            input: supply.to_le_bytes().to_vec(),
        },
    ];
    for (_, pk) in &load.senders[1..] {
        kinds.push(token_transfer(token, pk, TOKEN_SHARE));
    }
    let mut last = String::new();
    for (chunk_at, chunk) in kinds.chunks(512).enumerate() {
        let txs: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let tx = TxBody {
                    chain_id: genesis.chain_id,
                    sender: owner,
                    nonce: nonces[0] + (chunk_at * 512 + i) as u64,
                    fee: 1,
                    kind: kind.clone(),
                }
                .sign(&key)
                .expect("the key is the sender's");
                last = hex::encode(tx.id());
                hex::encode(tx.encoded())
            })
            .collect();
        let answer = api.post_json("/v1/txs", &serde_json::json!({ "txs": txs }))?;
        if answer["accepted"].as_u64() != Some(txs.len() as u64) {
            return Err(format!("token set-up refused: {answer}"));
        }
        // Wait for each chunk: the mempool holds a sender's transactions
        // only so far ahead of its account nonce.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = api.get(&format!("/v1/txs/{last}"))?;
            if s["status"] == "finalized" {
                if s["result"]["status"] != "success" {
                    return Err(format!("token set-up failed: {s}"));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("token set-up not final within 120 s: {s}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nonces[0] += kinds.len() as u64;
    Ok(token)
}

fn sign_all(
    plan: &Plan,
    genesis: &Genesis,
    load: &Load,
    nonces: &[u64],
    token: Option<[u8; 32]>,
) -> Result<Vec<Transaction>, String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = plan.txs.div_ceil(threads);
    let senders = load.senders.len();
    let keys: Vec<_> = load
        .senders
        .iter()
        .map(|&(i, _)| {
            genesis
                .account_key(i)
                .ok_or("a drawn account is in the space")
        })
        .collect::<Result<_, _>>()?;
    let keys = &keys;
    let mut out = Vec::with_capacity(plan.txs);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * per..((t + 1) * per).min(plan.txs))
                        .map(|i| {
                            let s = i % senders;
                            let body = TxBody {
                                chain_id: genesis.chain_id,
                                sender: load.senders[s].1,
                                nonce: nonces[s] + (i / senders) as u64,
                                fee: 1,
                                kind: match token {
                                    Some(t) => token_transfer(t, &load.recipients[i], 1),
                                    None => TxKind::Transfer {
                                        to: load.recipients[i],
                                        amount: 1,
                                    },
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
    Ok(out)
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
    let api = Client::new(&plan.api);
    let load = draw_load(plan, genesis)?;
    let accounts = plan.accounts.unwrap_or(genesis.devnet_account_space());
    let mut nonces = Vec::with_capacity(load.senders.len());
    for (_, pk) in &load.senders {
        let a = api.get(&format!("/v1/accounts/{}", hex::encode(pk)))?;
        nonces.push(a["nonce"].as_u64().unwrap_or(0));
    }
    let to = if plan.new_recipients {
        format!("{} new accounts", plan.txs)
    } else {
        format!(
            "recipients over {accounts} accounts ({})",
            plan.distribution
        )
    };
    eprintln!(
        "signing {} transactions from {} senders to {to}...",
        plan.txs, plan.senders
    );
    let token = if plan.token {
        eprintln!(
            "deploying the token and funding {} senders with it...",
            plan.senders
        );
        Some(setup_token(&api, genesis, &load, &mut nonces)?)
    } else {
        None
    };
    let txs = sign_all(plan, genesis, &load, &nonces, token)?;

    let config = strata_net::Config {
        seeds: plan.targets.clone(),
        chain_id: genesis.net_chain_id(),
        push_items_per_s: u64::MAX / 2,
        push_bytes_per_s: u64::MAX / 2,
        // The bench only submits: without this every node would push it
        // back every transaction (its own and everyone's), costing the
        // nodes' network loops and the bench's own CPU on the same cores.
        gossip_quiet: true,
        // It sends to every target, so it dials every one of them.
        outbound_peers_max: plan.targets.len().max(1),
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
    let bar = progress_bar(plan.progress, plan.txs, "sending");
    let mut report = Report {
        submitted: txs.len(),
        heights: (start_height, start_height),
        load: format!(
            "{accounts} accounts, {} senders, {}{}",
            plan.senders,
            plan.distribution,
            if plan.new_recipients {
                ", each paying a new account"
            } else {
                ""
            }
        ) + if plan.token {
            ", token transfers through a contract"
        } else {
            ""
        },
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
            // sent would wait with it. Finality is watched meanwhile:
            // watched once per batch, every latency was rounded up to a
            // multiple of `batch / rate` (512 ms at 500 tx/s).
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                link.turn(wait.min(watch.until_poll()))?;
                watch.poll(&mut sent_at, &mut report)?;
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

    // A bar of its own: the sending bar ended full, and finality starts
    // below it (one bar set back from 5000/5000 to 3072/5000 read as a
    // loss).
    bar.finish_and_clear();
    let bar = progress_bar(plan.progress, report.accepted, "finality");
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
    if token.is_some() {
        // Final is not successful: a call that failed is final too. A
        // sample of the transfers must have succeeded.
        for tx in txs.iter().step_by((txs.len() / 16).max(1)) {
            let s = api.get(&format!("/v1/txs/{}", hex::encode(tx.id())))?;
            if s["status"] == "finalized" && s["result"]["status"] != "success" {
                return Err(format!("a token transfer failed: {s}"));
            }
        }
    }
    report.heights.1 = watch.seen_height;
    report.total_secs = watch.last_final.duration_since(started).as_secs_f64();
    report.latencies_ms.sort_unstable();
    link.net.shutdown();
    Ok(report)
}

/// A progress bar of `len` transactions (hidden unless `shown`), its rate
/// in whole transactions per second.
fn progress_bar(shown: bool, len: usize, what: &'static str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:9} [{bar:40}] {pos}/{len} {rate}")
            .expect("valid template")
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} tx/s", state.per_sec());
                },
            ),
    );
    bar.set_message(what);
    bar
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

#[cfg(test)]
mod tests {

    #[test]
    fn a_run_that_falls_short_says_why() {
        let mut r = Report {
            submitted: 100,
            ..Report::default()
        };
        assert!(r.shortfall().unwrap().contains("admitted none of the 100"));
        r.accepted = 100;
        r.finalized = 97;
        assert!(r.shortfall().unwrap().starts_with("3 of 100 accepted"));
        r.finalized = 100;
        assert_eq!(r.shortfall(), None);
    }

    use super::*;

    #[test]
    fn zipf_draw_is_skewed_like_ycsb_and_uniform_is_not() {
        let n = 1_000_000;
        let draws = 200_000;
        let mut rng = Rng(7);
        let zipf = Draw::new(n, Distribution::Zipf { theta: 0.99 });
        let mut hits = std::collections::HashMap::new();
        for _ in 0..draws {
            let i = zipf.next(&mut rng);
            assert!(i < n);
            *hits.entry(i).or_insert(0u64) += 1;
        }
        // P(index 0) = 1 / ζ(n, θ) ≈ 0.069 for n = 10^6, θ = 0.99.
        let p0 = hits[&0] as f64 / draws as f64;
        let expected = 1.0 / zipf.zipf.as_ref().unwrap().zeta_n;
        assert!((p0 - expected).abs() < 0.01, "p0 {p0}, expected {expected}");
        // Hot: the 100 hottest indexes take a large share; far fewer
        // distinct indexes than draws.
        let top: u64 = (0..100).filter_map(|i| hits.get(&i)).sum();
        assert!(top as f64 / draws as f64 > 0.3, "top-100 share {top}");
        assert!(hits.len() < draws / 2);

        let uniform = Draw::new(n, Distribution::Uniform);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..draws {
            seen.insert(uniform.next(&mut rng));
        }
        // 200 k uniform draws over 1 M: ~181 k distinct.
        assert!(seen.len() > 170_000, "{} distinct", seen.len());
    }

    #[test]
    fn new_recipients_are_new_accounts_one_per_transaction() {
        let genesis = Genesis::devnet(1);
        let plan = Plan {
            targets: Vec::new(),
            api: String::new(),
            txs: 5_000,
            senders: 16,
            accounts: None,
            distribution: Distribution::Uniform,
            new_recipients: true,
            seed: 3,
            token: false,
            rate: None,
            batch: 256,
            finality_timeout: Duration::from_secs(1),
            progress: false,
        };
        let load = draw_load(&plan, &genesis).unwrap();
        let space: std::collections::HashSet<_> = genesis
            .account_public_keys(0..genesis.devnet_account_space(), 2)
            .into_iter()
            .collect();
        let mut seen = std::collections::HashSet::new();
        for r in &load.recipients {
            assert!(!space.contains(r), "a genesis account drawn as new");
            assert!(seen.insert(*r), "a new account drawn twice");
        }
        assert_eq!(seen.len(), plan.txs);
        // Another seed pays other accounts: runs add up.
        let other = draw_load(&Plan { seed: 4, ..plan }, &genesis).unwrap();
        assert!(other.recipients.iter().all(|r| !seen.contains(r)));
    }
}
