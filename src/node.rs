//! A running full node: storage, the finalized chain, the consensus engine,
//! the P2P layer and the HTTP API, wired together.
//!
//! Threads:
//! - `strata-net-io`: the io_uring loop (`strata-net`), talking to the rest
//!   through bounded queues and an eventfd;
//! - `strata-driver`: drains network events, feeds them to the consensus
//!   [`Engine`], runs its timers every `tick_ms`, and turns its outputs
//!   into sends. The engine and the chain live in one mutex ([`Core`]); the
//!   driver holds it per batch of events, the API briefly per request;
//! - the API's tokio runtime (two worker threads).
//!
//! Decisions and known limits (named, not hidden):
//! - When idle the driver blocks in `Handle::next_event_timeout` until a
//!   network event or its next tick (at most 200 µs while verification
//!   jobs are out, so verified batches are not left waiting a tick).
//! - Gossiped and client transactions are decoded and their signatures
//!   checked on `verify_threads` worker threads (`strata-verify-*`, see
//!   `intake`) fed through a bounded queue; the driver admits what they
//!   return. API submissions are verified on the API's blocking workers.
//!   Block validation (signatures of pulled transactions not already in
//!   the mempool) and execution still run on the driver; commit is one
//!   synced write batch.
//! - Transactions from clients and the bench are verified, admitted and
//!   then gossiped (push to `gossip_fanout` peers, ids to the rest);
//!   gossip forwards items before this node validates them, and invalid
//!   ones are then dropped by every validator's verifier.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::TrySendError;
use strata_consensus::db_chain::DbChain;
use strata_consensus::engine::{Chain, Engine, EngineConfig, Output, SubmitError};
use strata_consensus::genesis::{devnet_validator_key, Genesis};
use strata_consensus::mempool::MempoolConfig;
use strata_consensus::sampler::{ProofOfWork, SamplingWeight, Stake, Uniform};
use strata_consensus::snowball::Params;
use strata_consensus::tx::{Transaction, TxId};
use strata_consensus::verify::{Verdict, VerifiedIds, Verifier, VERIFIED_IDS_DEFAULT};
use strata_consensus::wire::Payload;
use strata_net::peer::Misbehaviour;
use strata_net::{Event, Handle};

use crate::intake::{self, Done, Job, Origin};
use strata_storage::{Db, Options};
use tracing::{debug, error, info, warn};

use crate::config::{NodeConfig, Sampling};

/// The answer to a client batch the node had no room to look at: zero
/// transactions admitted, then a byte 1, "busy: send it again later" (a
/// normal answer is the admitted count alone, 4 bytes; docs/protocol.md).
pub const BUSY_ANSWER: [u8; 5] = [0, 0, 0, 0, 1];

/// Network events handled per lock of the core, so API requests get a turn.
const EVENTS_PER_TURN_MAX: usize = 1024;
/// Batches waiting for the verification workers.
const VERIFY_JOBS_MAX: usize = 256;
/// Longest driver sleep while verification jobs are out: how late a
/// verified client batch may be admitted and answered.
const VERIFIED_POLL: Duration = Duration::from_micros(200);

/// Wall-clock milliseconds (block timestamps and mempool TTLs use it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The engine and the finalized chain.
pub struct Core {
    /// The consensus engine (with the mempool).
    pub engine: Engine,
    /// The finalized chain in storage.
    pub chain: DbChain,
}

/// Counters for `/metrics` and `/v1/status`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Transactions in finalized blocks since start.
    pub txs_finalized: AtomicU64,
    /// Transactions received from clients, the bench and gossip.
    pub txs_received: AtomicU64,
    /// Of those, admitted to the mempool.
    pub txs_admitted: AtomicU64,
    /// Blocks finalized since start.
    pub blocks_finalized: AtomicU64,
    /// Payloads from peers that did not decode.
    pub payloads_undecodable: AtomicU64,
    /// Transactions from peers that did not verify (the peer is banned).
    pub txs_invalid_from_peers: AtomicU64,
    /// Peers penalised by the engine.
    pub peers_penalized: AtomicU64,
    /// Gossiped transactions dropped because the verification queue was
    /// full (overload shedding).
    pub txs_shed: AtomicU64,
    /// Client batches answered [`BUSY_ANSWER`] because the verification
    /// queue was full (overload shedding).
    pub requests_busy: AtomicU64,
    /// Wall-clock ms of the last commit.
    pub last_commit_ms: AtomicU64,
}

/// What the driver, the API and shutdown share.
pub struct Shared {
    core: Mutex<Core>,
    /// The P2P handle.
    pub net: Handle,
    /// Counters.
    pub metrics: Metrics,
    /// Set on SIGINT/SIGTERM or a halt: the driver and the API stop.
    pub stop: AtomicBool,
    /// Why the engine halted, if it did.
    pub halted: Mutex<Option<String>>,
    /// The genesis.
    pub genesis: Genesis,
    /// The database (for stats).
    pub db: Arc<Db>,
    /// Start time.
    pub started: Instant,
    /// Transactions found valid, shared by every verifier of this node
    /// (workers, API, the engine's block validation), so a transaction
    /// seen twice is checked once.
    pub verified: Arc<VerifiedIds>,
}

impl Shared {
    /// Locks the core; a poisoned lock (a panic elsewhere) still yields it,
    /// since every mutation of the core is a complete engine step.
    pub fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies and admits `txs` from a client; admitted ones are gossiped.
    /// Signatures are checked on the calling thread (an API worker), so the
    /// core is locked only for the mempool insertions.
    pub fn submit(&self, txs: Vec<Transaction>) -> Vec<Result<TxId, SubmitError>> {
        let received = txs.len();
        // A verifier for this call alone: its key cache needs no more room
        // than the call's senders (the default would be 16,384 slots).
        let verdicts = Verifier::with_key_cache(txs.len())
            .sharing(Arc::clone(&self.verified))
            .verify(&txs, self.genesis.chain_id);
        let valid: Vec<Transaction> = txs
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Verdict::Valid)
            .map(|(t, _)| t)
            .collect();
        let mut admitted = {
            let mut core = self.core();
            let Core { engine, chain } = &mut *core;
            admit_verified(self, engine, chain, valid, received).into_iter()
        };
        verdicts
            .into_iter()
            .map(|v| match v {
                Verdict::Valid => admitted.next().expect("one result per valid tx"),
                v => Err(SubmitError::Invalid(v)),
            })
            .collect()
    }
}

/// Admits verified transactions to the mempool, passes the admitted ones
/// on to peers (whatever their origin: the net layer relays nothing by
/// itself, `relay_received` is off) and counts them. `received` is the
/// count before verification, for the metrics.
fn admit_verified(
    shared: &Shared,
    engine: &mut Engine,
    chain: &mut DbChain,
    txs: Vec<Transaction>,
    received: usize,
) -> Vec<Result<TxId, SubmitError>> {
    let encoded: Vec<Vec<u8>> = txs.iter().map(|t| t.encoded().to_vec()).collect();
    let results = engine.submit_verified(txs, chain, now_ms());
    for (bytes, r) in encoded.into_iter().zip(&results) {
        if let Ok(id) = r {
            // The id is the blake3 of the encoding: what peers check.
            if let Err(e) = shared.net.relay(*id, bytes) {
                debug!("gossip of a transaction failed: {e}");
            }
        }
    }
    let m = &shared.metrics;
    m.txs_received.fetch_add(received as u64, Ordering::Relaxed);
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    m.txs_admitted.fetch_add(admitted as u64, Ordering::Relaxed);
    results
}

/// A started node.
pub struct Node {
    /// Shared state (the API's view).
    pub shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
}

/// Loads the genesis TOML at `path`, or the built-in devnet when `None`.
///
/// # Errors
/// Unreadable or invalid file, naming it.
pub fn load_genesis(path: Option<&Path>) -> Result<Genesis, String> {
    match path {
        None => Ok(Genesis::devnet(
            strata_consensus::genesis::DEVNET_VALIDATORS,
        )),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Genesis::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

impl Node {
    /// Opens storage and the chain, starts the network and the driver.
    ///
    /// # Errors
    /// Any start-up failure, as a message for the operator.
    pub fn start(config: &NodeConfig) -> Result<Node, String> {
        let genesis = load_genesis(config.genesis.as_deref())?;
        let seed = match &config.key {
            Some(path) => crate::client::read_seed(path)?,
            None => devnet_validator_key(config.devnet_index).to_bytes(),
        };
        let me = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let validators = genesis.validator_set().map_err(|e| e.to_string())?;
        if !validators.iter().any(|v| v.public_key == me) {
            warn!(
                "this node's key {} is not a genesis validator: it follows the chain but is never polled",
                hex::encode(me)
            );
        }

        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let options = Options::new()
            .memtable_bytes(config.storage.memtable_bytes)
            .zstd_level(config.storage.zstd_level);
        let db = Arc::new(
            Db::open(config.data_dir.join("db"), options)
                .map_err(|e| format!("cannot open the database: {e}"))?,
        );
        let chain = DbChain::open(Arc::clone(&db), &genesis)
            .map_err(|e| format!("cannot open the chain: {e}"))?;
        info!(height = chain.height(), "chain opened");

        let c = &config.consensus;
        let engine_config = EngineConfig {
            params: Params {
                k: genesis.consensus.k,
                alpha_preference: genesis.consensus.alpha_preference,
                alpha_confidence: genesis.consensus.alpha_confidence,
                beta: genesis.consensus.beta,
            },
            polls_in_flight: c.polls_in_flight,
            poll_timeout_ms: c.poll_timeout_ms,
            propose_delay_ms: c.propose_delay_ms,
            propose_backoff_ms: c.propose_backoff_ms,
            block_txs_max: c.block_txs_max,
            mempool: MempoolConfig {
                txs_max: config.mempool.txs_max,
                bytes_max: config.mempool.bytes_max,
                per_sender_max: config.mempool.per_sender_max,
                ttl_ms: config.mempool.ttl_ms,
                ..MempoolConfig::default()
            },
            ..EngineConfig::default()
        };
        engine_config
            .params
            .validate()
            .map_err(|e| format!("genesis consensus parameters: {e}"))?;
        let weight: Box<dyn SamplingWeight> = match c.sampling {
            Sampling::Uniform => Box::new(Uniform),
            Sampling::Stake => Box::new(Stake),
            Sampling::ProofOfWork => Box::new(ProofOfWork {
                nonces: validators
                    .iter()
                    .map(|v| {
                        (
                            v.public_key,
                            ProofOfWork::mine(&v.public_key, c.pow_tries).0,
                        )
                    })
                    .collect(),
            }),
        };
        let rng_seed = u64::from_le_bytes(
            strata_net::handshake::random_bytes().map_err(|e| e.to_string())?[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let verified = Arc::new(VerifiedIds::new(VERIFIED_IDS_DEFAULT));
        let mut engine = Engine::new(
            me,
            &validators,
            weight.as_ref(),
            engine_config,
            &chain,
            rng_seed,
            now_ms(),
        );
        engine.share_verified_ids(Arc::clone(&verified));
        info!(params = ?engine.params(), "consensus engine ready");

        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|e| format!("--listen {}: {e}", config.listen))?;
        let mut seeds: Vec<SocketAddr> = Vec::new();
        for v in &validators {
            if v.public_key == me {
                continue;
            }
            match v.address.parse() {
                Ok(a) => seeds.push(a),
                Err(e) => warn!("validator address {} ignored: {e}", v.address),
            }
        }
        for p in &config.peers {
            seeds.push(p.parse().map_err(|e| format!("peer {p}: {e}"))?);
        }
        let n = &config.net;
        let net_config = strata_net::Config {
            listen_addr: listen,
            seeds,
            chain_id: genesis.net_chain_id(),
            frame_payload_bytes_max: n.frame_payload_bytes_max,
            inbound_peers_max: n.inbound_peers_max,
            outbound_peers_max: n.outbound_peers_max,
            gossip_fanout: n.gossip_fanout.max(1),
            gossip_flush_interval_ms: n.gossip_flush_interval_ms.max(1),
            push_items_per_s: n.push_items_per_s,
            push_bytes_per_s: n.push_bytes_per_s,
            send_queue_bytes_max: (n.frame_payload_bytes_max as usize * 4).max(32 << 20),
            // Transactions are passed on once verified and admitted
            // (`admit_verified`), not as they arrive: a forged one stops
            // here and its sender is banned (src/intake.rs).
            relay_received: false,
            ..strata_net::Config::default()
        };
        let net =
            strata_net::Node::start(net_config, strata_net::handshake::Identity::from_seed(seed))
                .map_err(|e| format!("cannot start the network: {e}"))?;
        info!(addr = %net.local_addr(), key = %hex::encode(me), "p2p listening");

        let shared = Arc::new(Shared {
            core: Mutex::new(Core { engine, chain }),
            net,
            metrics: Metrics::default(),
            stop: AtomicBool::new(false),
            halted: Mutex::new(None),
            genesis,
            db,
            started: Instant::now(),
            verified,
        });
        let tick = Duration::from_millis(c.tick_ms.max(1));
        let verify = intake::Workers {
            threads: c.verify_threads,
            nice: c.verify_nice,
            jobs_max: VERIFY_JOBS_MAX,
        };
        let s = Arc::clone(&shared);
        let driver = std::thread::Builder::new()
            .name("strata-driver".into())
            .spawn(move || drive(&s, tick, verify))
            .map_err(|e| e.to_string())?;
        Ok(Node {
            shared,
            driver: Some(driver),
        })
    }

    /// Stops the driver (finishing the step in flight, so a commit under
    /// way completes), the network, then closes the database.
    pub fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
        if let Err(e) = self.shared.db.close() {
            error!("closing the database: {e}");
        }
    }
}

/// The driver loop (see the module docs).
fn drive(shared: &Arc<Shared>, tick: Duration, verify: intake::Workers) {
    let (jobs, done, workers) = intake::start(shared, verify);
    let mut next_tick = Instant::now();
    let mut events = Vec::with_capacity(EVENTS_PER_TURN_MAX);
    // Jobs handed to the workers and not yet handed back.
    let mut jobs_out = 0usize;
    while !shared.stop.load(Ordering::Acquire) {
        while events.len() < EVENTS_PER_TURN_MAX {
            match shared.net.try_next_event() {
                Some(e) => events.push(e),
                None => break,
            }
        }
        let ready: Vec<Done> = done.try_iter().collect();
        jobs_out -= ready.len();
        let due = Instant::now() >= next_tick;
        if events.is_empty() && ready.is_empty() && !due {
            // Sleep until a network event or the next tick. One wait
            // cannot watch both the network and the workers' queue, so
            // while jobs are out the sleep is cut short: a client's batch
            // is answered soon after it is verified, not a tick later.
            let mut wait = next_tick.saturating_duration_since(Instant::now());
            if jobs_out > 0 {
                wait = wait.min(VERIFIED_POLL);
            }
            match shared.net.next_event_timeout(wait) {
                Some(e) => events.push(e),
                None => continue,
            }
        }
        let mut outputs = Vec::new();
        let mut gossip = Gossip::default();
        let mut requests = Vec::new();
        {
            let mut core = shared.core();
            let Core { engine, chain } = &mut *core;
            for event in events.drain(..) {
                handle_event(
                    shared,
                    engine,
                    chain,
                    event,
                    &mut outputs,
                    &mut gossip,
                    &mut requests,
                );
            }
            for d in ready {
                match d {
                    Done::Verified {
                        txs,
                        origin,
                        received,
                    } => admit(shared, engine, chain, txs, origin, received),
                    Done::Engine { from, msg } => {
                        outputs.extend(engine.on_message(from, msg, chain, now_ms()));
                    }
                    Done::Nothing => {}
                }
            }
            if due {
                outputs.extend(engine.on_tick(chain, now_ms()));
                next_tick = Instant::now() + tick;
            }
        }
        // Under overload nothing waits: a client batch finding the queue
        // full is answered busy at once (the client resends later; the
        // bench does), and gossip is shed. Blocking here instead would
        // stall consensus behind the verification backlog of whoever sends
        // the most. Both counts are in /metrics.
        for job in requests {
            match jobs.try_send(job) {
                Ok(()) => jobs_out += 1,
                Err(TrySendError::Full(Job::Request {
                    from, request_id, ..
                })) => {
                    shared.metrics.requests_busy.fetch_add(1, Ordering::Relaxed);
                    let _ = shared.net.respond(from, request_id, BUSY_ANSWER.to_vec());
                }
                // Only requests are here; a disconnected queue means the
                // workers are gone (shutting down).
                Err(_) => {}
            }
        }
        if !gossip.items.is_empty() || !gossip.txs.is_empty() {
            let n = gossip.items.len() + gossip.txs.len();
            let job = Job::Gossip {
                items: gossip.items,
                txs: gossip.txs,
            };
            match jobs.try_send(job) {
                Ok(()) => jobs_out += 1,
                Err(_) => {
                    shared
                        .metrics
                        .txs_shed
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        for out in outputs {
            perform(shared, out);
        }
    }
    drop(jobs);
    for w in workers {
        let _ = w.join();
    }
    info!("driver stopped");
}

/// Transactions from peers collected in one turn, for one verification job.
#[derive(Default)]
struct Gossip {
    /// Encoded gossip items and the peer each came from.
    items: Vec<([u8; 32], Vec<u8>)>,
    /// Transactions that arrived decoded (in a message), with their sender.
    txs: Vec<([u8; 32], Transaction)>,
}

/// Admits verified transactions (gossiping the admitted ones) and, for a
/// client request, answers.
fn admit(
    shared: &Shared,
    engine: &mut Engine,
    chain: &mut DbChain,
    txs: Vec<Transaction>,
    origin: Origin,
    received: usize,
) {
    let results = admit_verified(shared, engine, chain, txs, received);
    if let Origin::Request { from, request_id } = origin {
        let admitted = results.iter().filter(|r| r.is_ok()).count() as u32;
        let _ = shared
            .net
            .respond(from, request_id, admitted.to_le_bytes().to_vec());
    }
}

fn handle_event(
    shared: &Shared,
    engine: &mut Engine,
    chain: &mut DbChain,
    event: Event,
    outputs: &mut Vec<Output>,
    gossip: &mut Gossip,
    requests: &mut Vec<Job>,
) {
    match event {
        Event::PeerUp { node_key, addr } => {
            info!(peer = %hex::encode(&node_key[..4]), %addr, "peer up");
        }
        Event::PeerDown { node_key } => {
            info!(peer = %hex::encode(&node_key[..4]), "peer down");
        }
        // Decoded (which hashes each transaction) by the workers.
        Event::Item { item, from, .. } => gossip.items.push((from, item)),
        Event::Message { from, payload } => match Payload::decode(&payload) {
            Ok(Payload::Engine(msg)) => {
                outputs.extend(engine.on_message(from, msg, chain, now_ms()));
            }
            Ok(Payload::Txs(txs)) => gossip.txs.extend(txs.into_iter().map(|tx| (from, tx))),
            Err(e) => intake::undecodable(shared, from, "message", &e),
        },
        // A client batch (the bench): decoded and verified by the
        // workers, then admitted, gossiped and answered in `admit`.
        Event::Request {
            from,
            request_id,
            payload,
        } => requests.push(Job::Request {
            from,
            request_id,
            payload,
        }),
        _ => {}
    }
}

fn perform(shared: &Shared, out: Output) {
    match out {
        Output::Send { to, msg } => {
            if let Err(e) = shared.net.send(to, Payload::Engine(msg).encode()) {
                debug!("send failed: {e}");
            }
        }
        Output::Penalize { peer, reason } => {
            shared
                .metrics
                .peers_penalized
                .fetch_add(1, Ordering::Relaxed);
            warn!(peer = %hex::encode(&peer[..4]), ?reason, "peer penalised");
            // A vote for an invalid block is proof of malice: the heaviest
            // penalty. Unsolicited votes and blocks can be honest but late:
            // a light one, so only repeated offenders are cut off.
            let m = match reason {
                strata_consensus::engine::Misbehaviour::InvalidBlock => {
                    Misbehaviour::ProtocolViolation
                }
                _ => Misbehaviour::UnsolicitedResponse,
            };
            let _ = shared.net.penalize(peer, m);
        }
        Output::Committed { height, id, txs } => {
            let m = &shared.metrics;
            m.txs_finalized.fetch_add(txs as u64, Ordering::Relaxed);
            m.blocks_finalized.fetch_add(1, Ordering::Relaxed);
            m.last_commit_ms.store(now_ms(), Ordering::Relaxed);
            info!(height, txs, id = %hex::encode(&id[..8]), "finalized");
        }
        Output::Halted { reason } => {
            error!("consensus halted: {reason}; stopping the node");
            *shared.halted.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            shared.stop.store(true, Ordering::Release);
        }
    }
}
