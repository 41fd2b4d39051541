//! A running full node: storage, the finalized chain, the consensus engine,
//! the P2P layer and the HTTP API, wired together.
//!
//! Threads:
//! - `strata-net-io`: the io_uring loop (`strata-net`), talking to the rest
//!   through bounded queues and an eventfd;
//! - `strata-driver`: the one owner of the consensus [`Engine`] and the
//!   chain. It drains network events (the net layer's bounded queue) and
//!   one bounded input queue holding worker results and API questions
//!   ([`Input`]), feeds them to the engine, runs its timers every `tick_ms` and turns its
//!   outputs into sends. Nothing else touches the engine or the chain: the
//!   API reads the published [`View`] and the `Db` through a
//!   [`ChainReader`], and asks the driver (through a bounded queue, with a
//!   reply channel) only what only the engine knows;
//! - `strata-verify-*` workers (`intake`, niced): decode and check
//!   signatures of transactions from gossip, framed clients and the API,
//!   and read finalized blocks that peers ask for;
//! - `strata-blocks` (`intake`): checks pulled blocks (signatures, then
//!   execution through the committed state) on a queue of its own, so a
//!   flood of transactions never delays a block;
//! - the API's tokio runtime (`api`).
//!
//! What a peer may cost the node (docs/protocol.md, "What a peer
//! may cost"): every consensus message from a peer takes a token of its
//! message budget before it is decoded; a block pull or a query about an
//! old height also takes a request token; served blocks come out of a
//! per-peer and a node-wide byte budget ([`crate::budget`]). Block data is
//! taken only from a peer it was pulled from, checked by the block's id
//! (its header's hash) before anything else is decoded, and its signatures
//! are checked on the workers. A failure of this node's own store halts it
//! with a message; it is never blamed on a peer.
//!
//! Time: every deadline runs on a monotonic clock ([`Shared::mono_ms`]);
//! the wall clock only stamps proposed blocks and the metrics' commit time.
//!
//! Decisions and known limits (named, not hidden):
//! - When idle the driver blocks in one wait, `Handle::next_event_timeout`,
//!   until a network event, an input or its next tick: whoever pushes an
//!   input (a worker's result, an API question) interrupts that wait
//!   (`Handle::interrupt_wait`). It never polls.
//! - Execution and commit are the engine's jobs ([`Output::Execute`],
//!   [`Output::Commit`]). A block is executed on the block checker thread
//!   (`strata-blocks`, through a [`strata_consensus::db_chain::CommittedState`]
//!   sharing the chain's state cache) once it passed every cheap check,
//!   or on the driver when that queue is full; the durable commit (one
//!   synced write batch) runs on the driver, the chain's owner: the next
//!   height's blocks name the root it produces, so nothing of that height
//!   could overlap it. Pipelining execution and the trie update with the
//!   previous block's write is the next step (docs/benchmarks.md).
//! - Transactions from clients, the bench and peers are verified, admitted
//!   and only then gossiped: a forged one stops at the first node, and its
//!   sender is banned.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use strata_consensus::block::BlockId;
use strata_consensus::db_chain::{ChainReader, DbChain};
use strata_consensus::engine::{
    BlockExpectation, Chain, Engine, EngineConfig, EngineStats, Message, Output, SubmitError,
};
use strata_consensus::genesis::{devnet_validator_key, Genesis};
use strata_consensus::mempool::MempoolConfig;
use strata_consensus::sampler::{ProofOfWork, SamplingWeight, Stake, Uniform};
use strata_consensus::snowball::Params;
use strata_consensus::sync::{RefuseReason, ServedSnapshot, SyncResponse};
use strata_consensus::tx::{Transaction, TxId};
use strata_consensus::verify::{Verdict, VerifiedIds, VERIFIED_IDS_DEFAULT};
use strata_consensus::wire::{
    block_data_header, block_data_id, payload_kind, Payload, PayloadKind,
};
use strata_net::peer::Misbehaviour;
use strata_net::{Event, Handle};
use strata_storage::{Db, Options};
use tracing::{debug, error, info, warn};

use crate::budget::{BudgetConfig, Budgets, Refused, RECENT_HEIGHTS};
use crate::config::{NodeConfig, Sampling};
use crate::intake::{self, Done, Job, Origin};
use crate::metrics::Metrics;

/// The answer to a client batch the node had no room to look at: zero
/// transactions admitted, then a byte 1, "busy: send it again later" (a
/// normal answer is the admitted count alone, 4 bytes; docs/protocol.md).
pub const BUSY_ANSWER: [u8; 5] = [0, 0, 0, 0, 1];

/// Network events handled per driver turn, so worker results and timers
/// get their turn.
const EVENTS_PER_TURN_MAX: usize = 1024;
/// Batches waiting for the verification workers from framed clients and
/// API submissions (gossip has its own queue).
const VERIFY_JOBS_MAX: usize = 256;
/// Gossip batches waiting for the workers, in a queue of their own that
/// the workers take last (see `hand_out_jobs`).
const GOSSIP_JOBS_MAX: usize = 128;
/// Pulled blocks waiting for their signature check. The engine has at
/// most 256 pulls in flight; a block beyond this is dropped and pulled
/// again from another voter.
const BLOCK_JOBS_MAX: usize = 64;
/// Finalized blocks waiting to be read for peers; beyond, a request goes
/// unanswered (the peer asks another node).
const SERVE_JOBS_MAX: usize = 64;
/// API questions waiting for the driver.
const ASKS_MAX: usize = 1024;

/// Wall-clock milliseconds since the Unix epoch: block timestamps and the
/// metrics' last commit time, never a deadline.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Environment variable that skews the wall clock a node stamps its
/// blocks with, in signed milliseconds: fault injection for tests of a
/// validator whose clock is wrong (`tests/wan.rs`), since the machine's
/// clock is shared by every process on it. Nothing else reads it.
pub const CLOCK_SKEW_ENV: &str = "STRATA_CLOCK_SKEW_MS";

/// The skew [`CLOCK_SKEW_ENV`] asks for; 0 when unset or not a number.
fn clock_skew_ms() -> i64 {
    let skew = std::env::var(CLOCK_SKEW_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if skew != 0 {
        warn!(
            skew_ms = skew,
            "block timestamps skewed by {CLOCK_SKEW_ENV}"
        );
    }
    skew
}

/// What the driver publishes for the API after each turn: read with one
/// short lock, never the engine's.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Last finalized height.
    pub height: u64,
    /// Its block id.
    pub block_id: BlockId,
    /// State root after it.
    pub state_root: [u8; 32],
    /// Pending transactions.
    pub mempool_txs: usize,
    /// Pending bytes.
    pub mempool_bytes: usize,
    /// Engine counters.
    pub engine: EngineStats,
}

/// Questions the API asks the driver (what only the engine knows), each
/// with a reply channel.
pub enum Ask {
    /// Is transaction `id` in the mempool?
    Pending {
        /// The transaction.
        id: TxId,
        /// The answer.
        /// The answer: what it waits for, `None` when not pending.
        reply: tokio::sync::oneshot::Sender<Option<strata_consensus::mempool::Waiting>>,
    },
}

/// What the driver is fed besides network events, through one bounded
/// queue: worker results and API questions.
enum Input {
    /// A worker finished a job.
    Done(Done),
    /// The API asks what only the engine knows.
    Ask(Ask),
}

/// The verification queue was full: try again later (HTTP 503).
#[derive(Debug)]
pub struct Busy;

/// The result of one submitted transaction: its id when admitted, else why
/// not.
pub use crate::intake::SubmitResult;

/// What the driver, the workers, the API and shutdown share.
pub struct Shared {
    /// The P2P handle.
    pub net: Handle,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Set on SIGINT/SIGTERM or a halt: the driver, workers and API stop.
    pub stop: Arc<AtomicBool>,
    /// Why the engine halted, if it did.
    pub halted: Mutex<Option<String>>,
    /// The genesis.
    pub genesis: Genesis,
    /// The database (for stats).
    pub db: Arc<Db>,
    /// Lock-free reads of finalized blocks, indexes, state and proofs.
    pub chain: ChainReader,
    /// The state snapshots this node serves to joining nodes, oldest
    /// first ([`crate::config::SyncSection`]).
    pub snapshots: Arc<Mutex<Vec<ServedSnapshot>>>,
    /// Take a snapshot after committing a height that is a multiple of
    /// this; keep `.1` of them. `(0, _)`: serve none.
    pub snapshot_schedule: (u64, usize),
    /// Start time: the origin of [`Shared::mono_ms`].
    pub started: Instant,
    /// Transactions found valid, shared by every verifier of this node
    /// (workers and the engine's block validation), so a transaction seen
    /// twice is checked once.
    pub verified: Arc<VerifiedIds>,
    view: Mutex<View>,
    jobs: Sender<Job>,
    gossip_jobs: Sender<Job>,
    block_jobs: Sender<Job>,
    serve_jobs: Sender<Job>,
    /// The driver's input queue (see [`Input`]). Its capacity holds every
    /// job that can be out at once plus [`ASKS_MAX`] questions, so a
    /// worker handing a result back never waits; questions are counted in
    /// `asks_out` and refused past [`ASKS_MAX`], so they never take a
    /// worker's room.
    inputs: Sender<Input>,
    asks_out: AtomicUsize,
}

impl Shared {
    /// Monotonic milliseconds since the node started: the clock of every
    /// deadline (a step of the system clock moves none of them).
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The driver's latest published view.
    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues API-submitted transactions for verification and admission,
    /// through the same bounded queue and niced workers as every other
    /// source; the results arrive on the returned channel, in input order.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<tokio::sync::oneshot::Receiver<Vec<SubmitResult>>, Busy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.jobs.try_send(Job::Api { txs, reply }) {
            Ok(()) => Ok(answer),
            Err(_) => {
                self.metrics.api_busy.fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    /// Asks the driver whether transaction `id` is pending.
    ///
    /// # Errors
    /// [`Busy`] when the question queue is full.
    pub fn ask_pending(
        &self,
        id: TxId,
    ) -> Result<tokio::sync::oneshot::Receiver<Option<strata_consensus::mempool::Waiting>>, Busy>
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.asks_out.fetch_add(1, Ordering::AcqRel) >= ASKS_MAX {
            self.asks_out.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        if self
            .inputs
            .try_send(Input::Ask(Ask::Pending { id, reply }))
            .is_err()
        {
            self.asks_out.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        self.net.interrupt_wait();
        Ok(answer)
    }
}

/// A started node.
pub struct Node {
    /// Shared state (the API's view).
    pub shared: Arc<Shared>,
    /// The API's limits, with the connection limit fitted to the
    /// open-file limit (`crate::fd_limit`).
    pub http: crate::config::HttpSection,
    driver: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
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
    /// Raises the open-file limit and fits the connection limits to it,
    /// opens storage and the chain, starts the network, the workers and
    /// the driver.
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
        let is_validator = validators.iter().any(|v| v.public_key == me);
        if !is_validator {
            warn!(
                "this node's key {} is not a genesis validator: it follows the chain but is never polled",
                hex::encode(me)
            );
        }

        let retained = config.history.retained()?;
        config.sync.check()?;
        let fds = crate::fd_limit::plan(crate::fd_limit::raise(), config, validators.len())?;
        info!(
            open_files_max = fds.limit,
            http_connections_max = fds.http_connections_max,
            handshakes_max = fds.handshakes_max,
            "descriptor budget"
        );

        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let options = Options::new()
            .memtable_bytes(config.storage.memtable_bytes)
            .zstd_level(config.storage.zstd_level)
            .block_cache_bytes(config.storage.block_cache_bytes);
        let db = Arc::new(
            Db::open(config.data_dir.join("db"), options)
                .map_err(|e| format!("cannot open the database: {e}"))?,
        );
        if (config.sync.mode != crate::config::SyncMode::Replay
            && crate::join::store_is_empty(&db)?)
            || crate::join::sync_interrupted(&db)?
        {
            crate::join::state_sync(&db, &genesis, config, seed)?;
        }
        crate::join::forget_finished_sync(&db)?;
        let opening = std::time::Instant::now();
        let chain = DbChain::open(Arc::clone(&db), &genesis)
            .map_err(|e| format!("cannot open the chain: {e}"))?;
        info!(
            height = chain.height(),
            accounts_in_genesis = genesis.account_count(),
            root = %hex::encode(chain.state_root()),
            open_ms = opening.elapsed().as_millis() as u64,
            "chain opened"
        );

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
            poll_timeout_max_ms: c.poll_timeout_max_ms,
            proposal_push_peers: c.proposal_push_peers,
            propose_delay_ms: c.propose_delay_ms,
            propose_backoff_ms: c.propose_backoff_ms,
            block_txs_max: c.block_txs_max,
            mempool: MempoolConfig {
                txs_max: config.mempool.txs_max,
                bytes_max: config.mempool.bytes_max,
                per_sender_max: config.mempool.per_sender_max,
                nonce_gap_max: config.mempool.nonce_gap_max,
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
        let started = Instant::now();
        let verified = Arc::new(VerifiedIds::new(VERIFIED_IDS_DEFAULT));
        let mut engine = Engine::new(
            me,
            &validators,
            weight.as_ref(),
            engine_config,
            &chain,
            rng_seed,
            0,
        );
        engine.share_verified_ids(Arc::clone(&verified));
        // The vote this node cast before a restart, if any, is its vote
        // again (see `Engine::resume_revealed`).
        if let Some((height, block)) = chain
            .revealed()
            .map_err(|e| format!("cannot read the revealed preference: {e}"))?
        {
            info!(height, block = %hex::encode(&block[..8]), "resuming the preference revealed before the restart");
            engine.resume_revealed(height, block);
        }
        info!(params = ?engine.params(), "consensus engine ready");

        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|e| format!("--listen {}: {e}", config.listen))?;
        let mut seeds: Vec<SocketAddr> = Vec::new();
        // A validator keeps a connection with every other validator (a
        // full mesh, whatever `outbound_peers_max`): polls sample among
        // the validators a node is connected with.
        let mut reserved_dials = Vec::new();
        for v in &validators {
            if v.public_key == me {
                continue;
            }
            match v.address.parse() {
                Ok(a) => {
                    seeds.push(a);
                    if is_validator {
                        reserved_dials.push((v.public_key, a));
                    }
                }
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
            handshakes_max: fds.handshakes_max,
            // Validators always get in: strangers holding every inbound
            // slot, or sharing a validator's IP address with a banned
            // peer, cannot cut consensus off.
            reserved_peers: validators
                .iter()
                .map(|v| v.public_key)
                .filter(|k| *k != me)
                .collect(),
            reserved_dials,
            gossip_fanout: n.gossip_fanout.max(1),
            gossip_flush_interval_ms: n.gossip_flush_interval_ms.max(1),
            push_items_per_s: n.push_items_per_s,
            push_bytes_per_s: n.push_bytes_per_s,
            stranger_items_per_s_total: n.stranger_items_per_s_total,
            accepts_per_s_per_ip: n.accepts_per_s_per_ip,
            send_queue_bytes_max: (n.frame_payload_bytes_max as usize * 4).max(32 << 20),
            // Transactions are passed on once verified and admitted
            // (`admit_verified`), not as they arrive: a forged one stops
            // here and its sender is banned (src/intake.rs).
            relay_received: false,
            ..strata_net::Config::default()
        };
        // A process killed a moment ago may still hold the address: the
        // kernel closes an io_uring's sockets in the background after the
        // process is gone. A restart retries for a little while.
        let bind_deadline = Instant::now() + P2P_BIND_RETRY;
        let net = loop {
            match strata_net::Node::start(
                net_config.clone(),
                strata_net::handshake::Identity::from_seed(seed),
            ) {
                Ok(net) => break net,
                Err(strata_net::Error::Io(io))
                    if io.kind() == std::io::ErrorKind::AddrInUse
                        && Instant::now() < bind_deadline =>
                {
                    warn!(%listen, "P2P address in use; retrying (a previous process may still be closing it)");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(strata_net::Error::Io(io)) if io.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(format!(
                        "cannot start the network: the P2P address {listen} is in use \
                         (set another with --listen or `listen` in the config)"
                    ));
                }
                Err(e) => return Err(format!("cannot start the network: {e}")),
            }
        };
        info!(addr = %net.local_addr(), key = %hex::encode(me), "p2p listening");

        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(VERIFY_JOBS_MAX);
        let (gossip_tx, gossip_rx) = crossbeam_channel::bounded::<Job>(GOSSIP_JOBS_MAX);
        let (block_tx, block_rx) = crossbeam_channel::bounded::<Job>(BLOCK_JOBS_MAX);
        let (serve_tx, serve_rx) = crossbeam_channel::bounded::<Job>(SERVE_JOBS_MAX);
        // Every job out at once (queued, or held by one of the verify
        // threads or the block checker) hands back one result.
        let jobs_out_max = VERIFY_JOBS_MAX
            + GOSSIP_JOBS_MAX
            + BLOCK_JOBS_MAX
            + SERVE_JOBS_MAX
            + c.verify_threads.max(1)
            + 1;
        let (input_tx, input_rx) = crossbeam_channel::bounded::<Input>(jobs_out_max + ASKS_MAX);
        let view = View {
            height: chain.height(),
            block_id: chain.last_block_id(),
            state_root: chain.state_root(),
            ..View::default()
        };
        let shared = Arc::new(Shared {
            net,
            metrics: Arc::new(Metrics::default()),
            stop: Arc::new(AtomicBool::new(false)),
            halted: Mutex::new(None),
            genesis,
            chain: chain.reader(),
            snapshots: Arc::new(Mutex::new(Vec::new())),
            snapshot_schedule: (config.sync.snapshot_every, config.sync.snapshots_kept),
            db,
            started,
            verified,
            view: Mutex::new(view),
            jobs: job_tx,
            gossip_jobs: gossip_tx,
            block_jobs: block_tx,
            serve_jobs: serve_tx,
            inputs: input_tx.clone(),
            asks_out: AtomicUsize::new(0),
        });
        let net_of = Arc::clone(&shared);
        let wake = Arc::clone(&shared);
        let context = Arc::new(intake::Context {
            chain: shared.chain.clone(),
            state: chain.committed_state(),
            chain_id: shared.genesis.chain_id,
            metrics: Arc::clone(&shared.metrics),
            stop: Arc::clone(&shared.stop),
            verified: Arc::clone(&shared.verified),
            snapshots: Arc::clone(&shared.snapshots),
            penalize: Box::new(move |peer, reason| {
                let _ = net_of.net.penalize(peer, reason);
            }),
        });
        let mut workers = intake::start(
            &context,
            intake::Workers {
                threads: c.verify_threads,
                nice: c.verify_nice,
            },
            intake::Queues {
                jobs: job_rx,
                gossip: gossip_rx,
                blocks: block_rx,
                serve: serve_rx,
                done: Box::new(move |d| {
                    input_tx.send(Input::Done(d)).map_err(|_| ())?;
                    wake.net.interrupt_wait();
                    Ok(())
                }),
            },
        )?;
        let floor = strata_consensus::history::floor(&shared.db)
            .map_err(|e| format!("cannot read the history floor: {e}"))?;
        shared.metrics.history_floor.store(floor, Ordering::Relaxed);
        if let Some(retained) = retained {
            info!(
                retained,
                floor, "pruning history: keeping the last {retained} blocks"
            );
            workers.push(
                crate::prune::spawn(Arc::clone(&shared), retained)
                    .map_err(|e| format!("cannot start the pruning thread: {e}"))?,
            );
        }
        let tick = Duration::from_millis(c.tick_ms.max(1));
        let s = Arc::clone(&shared);
        let intake = Arc::clone(&context);
        let budgets = Budgets::new(
            BudgetConfig {
                snapshot_bytes_per_s: config.sync.serve_bytes_per_s,
                snapshot_bytes_per_s_total: config.sync.serve_bytes_per_s_total,
                ..BudgetConfig::default()
            },
            0,
        );
        let validator_keys = validators.iter().map(|v| v.public_key).collect();
        let other_validators = validators
            .iter()
            .filter(|v| v.public_key != me)
            .map(|v| (v.public_key, v.address.clone()))
            .collect();
        let driver = std::thread::Builder::new()
            .name("strata-driver".into())
            .spawn(move || {
                Driver {
                    shared: s,
                    height_opened: (0, 0, 0),
                    intake,
                    engine,
                    chain,
                    budgets,
                    outputs: Vec::new(),
                    gossip: Gossip::default(),
                    requests: Vec::new(),
                    connected: Default::default(),
                    unreachable: Vec::new(),
                    in_check: Default::default(),
                    proposer_checks: Default::default(),
                    clock_skew_ms: clock_skew_ms(),
                    validators: validator_keys,
                    isolation: Isolation {
                        others: other_validators,
                        since_ms: None,
                        reported_ms: None,
                    },
                }
                .run(tick, &input_rx)
            })
            .map_err(|e| e.to_string())?;
        Ok(Node {
            shared,
            http: crate::config::HttpSection {
                connections_max: fds.http_connections_max,
                ..config.http.clone()
            },
            driver: Some(driver),
            workers,
        })
    }

    /// Stops the driver (finishing the step in flight, so a commit under
    /// way completes), the workers and the network, then closes the
    /// database.
    pub fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Err(e) = self.shared.db.close() {
            error!("closing the database: {e}");
        }
    }
}

/// Transactions from peers collected in one turn, for one verification job.
#[derive(Default)]
struct Gossip {
    /// Encoded gossip items and the peer each came from.
    items: Vec<([u8; 32], Vec<u8>)>,
    /// Encoded transaction batches sent as messages, with their sender.
    batches: Vec<([u8; 32], Vec<u8>)>,
}

/// The driver: sole owner of the engine and the chain (see the module
/// docs).
struct Driver {
    shared: Arc<Shared>,
    /// The height being decided, when it opened and when it was last
    /// reported slow (monotonic ms).
    height_opened: (u64, u64, u64),
    /// What the workers share, for blaming undecodable payloads the same
    /// way.
    intake: Arc<intake::Context>,
    engine: Engine,
    chain: DbChain,
    budgets: Budgets,
    outputs: Vec<Output>,
    gossip: Gossip,
    /// Framed client batches of this turn, for the verification queue.
    requests: Vec<Job>,
    /// Peers with a ready connection, refreshed every tick: a query to one
    /// that is not is answered "no vote" at once (`peer_unreachable`).
    connected: std::collections::HashSet<[u8; 32]>,
    /// Peers found unreachable while performing outputs.
    unreachable: Vec<[u8; 32]>,
    /// The genesis validators (their messages are not held to the
    /// strangers' shared budget).
    validators: std::collections::HashSet<[u8; 32]>,
    /// Pulled blocks with a signature check out: a second copy of one is
    /// not checked again (a voter cannot make the workers decode its
    /// block over and over by sending it repeatedly).
    in_check: std::collections::HashSet<BlockId>,
    /// (proposer, height) of blocks sent to be checked that came from
    /// their own proposer, at the heights not yet decided: one each.
    proposer_checks: std::collections::HashSet<([u8; 32], u64)>,
    /// Added to the wall clock that stamps this node's blocks: 0 unless
    /// [`CLOCK_SKEW_ENV`] says otherwise (see [`clock_skew_ms`]).
    clock_skew_ms: i64,
    /// Which other validators this node has no connection to, and since
    /// when: reported in the log ([`Driver::report_isolation`]).
    isolation: Isolation,
}

/// The other genesis validators (key, address) and how long some of them
/// have been out of reach.
struct Isolation {
    others: Vec<([u8; 32], String)>,
    /// Since when (monotonic ms) at least one has been unconnected.
    since_ms: Option<u64>,
    /// When that episode was last logged, if it was.
    reported_ms: Option<u64>,
}

/// Validators out of reach this long are named in the log (`validators
/// unreachable`), then again every [`ISOLATION_REPORT_EVERY_MS`] while it
/// lasts: a node that cannot reach a quorum makes no block and would
/// otherwise say nothing.
const ISOLATION_REPORT_AFTER_MS: u64 = 5_000;

/// See [`ISOLATION_REPORT_AFTER_MS`].
const ISOLATION_REPORT_EVERY_MS: u64 = 30_000;

/// How long a node retries binding its P2P address while it is in use.
const P2P_BIND_RETRY: Duration = Duration::from_secs(3);

/// A height open this long with transactions waiting is logged (`slow
/// height`), then again every as long.
const SLOW_HEIGHT_MS: u64 = 1_000;

/// A driver turn at least this long is logged (`slow driver turn`).
const SLOW_TURN: Duration = Duration::from_millis(250);

impl Driver {
    fn run(mut self, tick: Duration, inputs: &Receiver<Input>) {
        let mut next_tick = Instant::now();
        let mut events = Vec::with_capacity(EVENTS_PER_TURN_MAX);
        while !self.shared.stop.load(Ordering::Acquire) {
            while events.len() < EVENTS_PER_TURN_MAX {
                match self.shared.net.try_next_event() {
                    Some(e) => events.push(e),
                    None => break,
                }
            }
            let ready: Vec<Input> = inputs.try_iter().collect();
            let due = Instant::now() >= next_tick;
            if events.is_empty() && ready.is_empty() && !due {
                // Sleep until a network event, an input (whose sender
                // interrupts this wait: `Handle::interrupt_wait`) or the
                // next tick.
                let wait = next_tick.saturating_duration_since(Instant::now());
                match self.shared.net.next_event_timeout(wait) {
                    Some(e) => events.push(e),
                    None => continue,
                }
            }
            let turn_started = Instant::now();
            let (turn_events, turn_done) = (events.len(), ready.len());
            for event in events.drain(..) {
                self.on_event(event);
            }
            for input in ready {
                match input {
                    Input::Done(d) => self.on_done(d),
                    Input::Ask(Ask::Pending { id, reply }) => {
                        self.shared.asks_out.fetch_sub(1, Ordering::AcqRel);
                        let _ = reply.send(self.engine.mempool().waiting_for(&id));
                    }
                }
            }
            if due {
                self.connected = self
                    .shared
                    .net
                    .peers()
                    .into_iter()
                    .map(|p| p.node_key)
                    .collect();
                let now = self.shared.mono_ms();
                self.report_slow_height(now);
                self.report_isolation(now);
                let wall = wall_ms().saturating_add_signed(self.clock_skew_ms);
                let out = self.engine.on_tick(&mut self.chain, now, wall);
                self.outputs.extend(out);
                next_tick = Instant::now() + tick;
            }
            self.hand_out_jobs();
            // Performing outputs may find peers unreachable, whose polls
            // then settle and produce outputs of their own.
            while !self.outputs.is_empty() || !self.unreachable.is_empty() {
                for out in std::mem::take(&mut self.outputs) {
                    self.perform(out);
                }
                for peer in std::mem::take(&mut self.unreachable) {
                    let now = self.shared.mono_ms();
                    let out = self.engine.peer_unreachable(&peer, &mut self.chain, now);
                    self.outputs.extend(out);
                }
            }
            if let Some(reason) = self.engine.halted() {
                let reason = reason.to_string();
                self.perform(Output::Halted { reason });
            }
            self.publish();
            let turn = turn_started.elapsed();
            if turn >= SLOW_TURN {
                // Everything waits for the driver: say so, with what the
                // turn held (a durable commit waiting on a slow disk shows
                // up here).
                warn!(
                    turn_ms = turn.as_millis() as u64,
                    events = turn_events,
                    worker_results = turn_done,
                    height = self.chain.height(),
                    "slow driver turn"
                );
            }
        }
        info!("driver stopped");
    }

    /// Logs, once a second, a height that has been open for a second or
    /// more with transactions waiting: what the engine holds for it (an
    /// operator's first question when finality stalls).
    /// Logs the validators this node has had no connection to for
    /// [`ISOLATION_REPORT_AFTER_MS`], with their addresses, rate-limited,
    /// and once when every one is back.
    fn report_isolation(&mut self, now_ms: u64) {
        let iso = &mut self.isolation;
        // Runs every tick: count first, format only when a report is due.
        let unconnected = |(key, _): &&([u8; 32], String)| !self.connected.contains(key);
        if !iso.others.iter().any(|v| unconnected(&v)) {
            if let Some(since) = iso.since_ms.take() {
                if iso.reported_ms.take().is_some() {
                    info!(
                        after_s = now_ms.saturating_sub(since) / 1000,
                        "every validator is connected again"
                    );
                }
            }
            return;
        }
        let since = *iso.since_ms.get_or_insert(now_ms);
        let due = match iso.reported_ms {
            None => now_ms.saturating_sub(since) >= ISOLATION_REPORT_AFTER_MS,
            Some(last) => now_ms.saturating_sub(last) >= ISOLATION_REPORT_EVERY_MS,
        };
        if !due {
            return;
        }
        iso.reported_ms = Some(now_ms);
        let missing: Vec<String> = iso
            .others
            .iter()
            .filter(unconnected)
            .map(|(key, addr)| format!("{addr} ({})", hex::encode(&key[..4])))
            .collect();
        warn!(
            unreachable = missing.len(),
            validators = iso.others.len() + 1,
            since_s = now_ms.saturating_sub(since) / 1000,
            height = self.engine.height(),
            "validators unreachable: {}; blocks are final only with enough of them \
             (are they running, and do their genesis addresses or --peers reach them?)",
            missing.join(", ")
        );
    }

    fn report_slow_height(&mut self, now_ms: u64) {
        let height = self.engine.height();
        if self.height_opened.0 != height {
            self.height_opened = (height, now_ms, now_ms);
            return;
        }
        let (_, opened, last_report) = self.height_opened;
        if now_ms.saturating_sub(opened) < SLOW_HEIGHT_MS
            || now_ms.saturating_sub(last_report) < SLOW_HEIGHT_MS
            || self.engine.mempool().is_empty()
        {
            return;
        }
        self.height_opened.2 = now_ms;
        let r = self.engine.height_report();
        warn!(
            height,
            open_ms = now_ms - opened,
            candidates = r.candidates,
            preference = %r.preference.map_or("none".into(), |b| hex::encode(&b[..4])),
            run = r.run,
            failures = r.failures,
            split_polls = r.split_polls,
            polls_open = r.polls_open,
            pulls_out = r.pulls_out,
            sticky = r.sticky,
            revealed = r.revealed,
            peers = self.connected.len(),
            "slow height"
        );
    }

    /// Publishes what the API reads.
    fn publish(&self) {
        let mempool = self.engine.mempool();
        let view = View {
            height: self.chain.height(),
            block_id: self.chain.last_block_id(),
            state_root: self.chain.state_root(),
            mempool_txs: mempool.len(),
            mempool_bytes: mempool.bytes(),
            engine: self.engine.stats(),
        };
        *self.shared.view.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Scores `peer` down in the network layer (which disconnects and bans
    /// repeat offenders).
    fn penalize(&self, peer: [u8; 32], m: Misbehaviour) {
        let _ = self.shared.net.penalize(peer, m);
    }

    fn on_event(&mut self, event: Event) {
        let now = self.shared.mono_ms();
        match event {
            Event::PeerUp { node_key, addr } => {
                self.connected.insert(node_key);
                info!(peer = %hex::encode(&node_key[..4]), %addr, "peer up");
            }
            Event::PeerDown { node_key } => {
                self.connected.remove(&node_key);
                self.unreachable.push(node_key);
                info!(peer = %hex::encode(&node_key[..4]), "peer down");
            }
            // Decoded (which hashes each transaction) by the workers.
            Event::Item { item, from, .. } => self.gossip.items.push((from, item)),
            Event::Message { from, payload } => self.on_message(from, payload, now),
            // A client batch (the bench): decoded and verified by the
            // workers, then admitted, gossiped and answered in `admit`.
            Event::Request {
                from,
                request_id,
                payload,
            } if strata_consensus::sync::is_sync_payload(&payload) => {
                self.on_sync_request(from, request_id, payload, now)
            }
            Event::Request {
                from,
                request_id,
                payload,
            } => self.requests.push(Job::Request {
                from,
                request_id,
                payload,
            }),
            _ => {}
        }
    }

    /// A state-sync request: one request token of the peer's and the
    /// node's budgets, then read on the serving thread; over a budget, or
    /// with that queue full, answered "busy" at once (a joining node asks
    /// another peer).
    fn on_sync_request(&mut self, from: [u8; 32], request_id: u64, payload: Vec<u8>, now: u64) {
        let busy = || SyncResponse::Refused(RefuseReason::Busy).encode();
        match self.budgets.request(&from, now) {
            Ok(()) => {}
            Err(refused) => {
                let m = &self.shared.metrics;
                if refused == Refused::Peer {
                    m.requests_over_budget.fetch_add(1, Ordering::Relaxed);
                } else {
                    m.requests_over_node_budget.fetch_add(1, Ordering::Relaxed);
                }
                let _ = self.shared.net.respond(from, request_id, busy());
                return;
            }
        }
        let job = Job::Sync {
            to: from,
            request_id,
            payload,
        };
        if self.shared.serve_jobs.try_send(job).is_err() {
            let _ = self.shared.net.respond(from, request_id, busy());
        }
    }

    /// After committing `height`: takes a storage snapshot if the schedule
    /// says so, and publishes it for serving once its entries are counted
    /// (off this thread: that reads the whole state once), dropping the
    /// oldest beyond the number kept. A snapshot pins what it sees in the
    /// store: compaction goes on, but keeps the versions it needs until
    /// it is dropped.
    fn take_snapshot(&self, height: u64) {
        let (every, kept) = self.shared.snapshot_schedule;
        if every == 0 || kept == 0 || height % every != 0 {
            return;
        }
        let snapshot = self.shared.db.snapshot();
        let served = Arc::clone(&self.shared.snapshots);
        let spawned = std::thread::Builder::new()
            .name("strata-snapshot".into())
            .spawn(move || match ServedSnapshot::new(snapshot) {
                Ok(s) => {
                    let mut all = served.lock().unwrap_or_else(|p| p.into_inner());
                    all.push(s);
                    let excess = all.len().saturating_sub(kept);
                    all.drain(..excess);
                    info!(height, "serving a state snapshot");
                }
                Err(e) => error!(height, "cannot serve a state snapshot: {e}"),
            });
        if let Err(e) = spawned {
            error!("cannot start the snapshot thread: {e}");
        }
    }

    /// One message from a peer, within its budgets: only small consensus
    /// messages are decoded here; transactions and blocks go to the
    /// workers.
    fn on_message(&mut self, from: [u8; 32], payload: Vec<u8>, now: u64) {
        let m = &self.shared.metrics;
        match self
            .budgets
            .message(&from, self.validators.contains(&from), now)
        {
            Ok(()) => {}
            Err(refused) => {
                m.messages_over_budget.fetch_add(1, Ordering::Relaxed);
                if refused == Refused::Peer {
                    self.penalize(from, Misbehaviour::Flooding);
                }
                return;
            }
        }
        match payload_kind(&payload) {
            Some(PayloadKind::BlockData) => {
                let Some(header) = block_data_header(&payload) else {
                    return intake::undecodable(&self.intake, from, "block data", &"bad header");
                };
                match self.engine.block_expectation(&from, &header) {
                    BlockExpectation::Wanted => {
                        let id = header.id();
                        // A block from its own proposer is checked once per
                        // proposer and height: the engine takes only its
                        // first push, and records it only once checked, so
                        // without this a validator could push block after
                        // block, each decoded and verified meanwhile.
                        let height = self.engine.height();
                        self.proposer_checks.retain(|(_, h)| *h >= height);
                        if header.proposer == from
                            && !self.proposer_checks.insert((from, header.height))
                        {
                            return;
                        }
                        if !self.in_check.insert(id) {
                            // A copy is being checked already.
                            return;
                        }
                        match self
                            .shared
                            .block_jobs
                            .try_send(Job::Block { from, payload })
                        {
                            Ok(()) => {}
                            // Pulled again from another voter when the
                            // pull expires.
                            Err(_) => {
                                self.in_check.remove(&id);
                                if header.proposer == from {
                                    self.proposer_checks.remove(&(from, header.height));
                                }
                                debug!("block check queue full: pulled block dropped")
                            }
                        }
                    }
                    BlockExpectation::Late => {}
                    BlockExpectation::Unsolicited => {
                        m.blocks_unsolicited.fetch_add(1, Ordering::Relaxed);
                        self.penalize(from, Misbehaviour::UnsolicitedResponse);
                    }
                }
            }
            Some(PayloadKind::Txs) => self.gossip.batches.push((from, payload)),
            Some(_) => match Payload::decode(&payload) {
                Ok(Payload::Engine(msg)) => {
                    let costly = match &msg {
                        Message::GetBlock { .. } => true,
                        Message::Query { height, .. } => {
                            height.saturating_add(RECENT_HEIGHTS) <= self.chain.height()
                        }
                        _ => false,
                    };
                    if costly {
                        match self.budgets.request(&from, now) {
                            Ok(()) => {}
                            Err(Refused::Peer) => {
                                m.requests_over_budget.fetch_add(1, Ordering::Relaxed);
                                // A query about an old height over budget is
                                // dropped without blame: a node catching up
                                // polls every height it replays, β polls
                                // each, and one replaying 4,096-transfer
                                // blocks asked about 150 a second of every
                                // validator, which banned it. A pull over
                                // budget is still blamed.
                                if matches!(msg, Message::Query { .. }) {
                                    return;
                                }
                                return self.penalize(from, Misbehaviour::Flooding);
                            }
                            // Peers together asked too much: dropped
                            // unanswered, nobody blamed (they ask again).
                            Err(Refused::Node) => {
                                m.requests_over_node_budget.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                    let out = self.engine.on_message(from, msg, &mut self.chain, now);
                    self.outputs.extend(out);
                }
                Ok(Payload::Txs(_)) => unreachable!("told apart by the tag"),
                Err(e) => intake::undecodable(&self.intake, from, "message", &e),
            },
            None => intake::undecodable(&self.intake, from, "message", &"unknown tag"),
        }
    }

    fn on_done(&mut self, d: Done) {
        let now = self.shared.mono_ms();
        match d {
            Done::Verified {
                txs,
                origin,
                received,
            } => self.admit(txs, origin, received),
            Done::Engine { from, msg } => {
                let out = self.engine.on_message(from, msg, &mut self.chain, now);
                self.outputs.extend(out);
            }
            Done::Block {
                from,
                block,
                txs,
                signatures_valid,
            } => {
                self.in_check.remove(block.id());
                let out = self.engine.on_checked_block(
                    from,
                    *block,
                    txs,
                    signatures_valid,
                    &mut self.chain,
                    now,
                );
                self.outputs.extend(out);
            }
            Done::Executed { id, result } => {
                let out = self.engine.on_executed(id, result, &self.chain, now);
                self.outputs.extend(out);
            }
            Done::Served { to, payload } => self.serve(to, payload, now),
            Done::SyncAnswer {
                to,
                request_id,
                payload,
            } => {
                let answer = match self.budgets.serve_snapshot(&to, payload.len(), now) {
                    Ok(()) => payload,
                    Err(_) => SyncResponse::Refused(RefuseReason::Busy).encode(),
                };
                let _ = self.shared.net.respond(to, request_id, answer);
            }
            Done::BlockUnusable { payload } => {
                if let Some(id) = block_data_id(&payload) {
                    self.in_check.remove(&id);
                }
            }
            Done::Nothing => {}
        }
    }

    /// Sends a block answer to `to` if the byte budgets allow.
    fn serve(&mut self, to: [u8; 32], payload: Vec<u8>, now: u64) {
        match self.budgets.serve(&to, payload.len(), now) {
            Ok(()) => {
                if let Err(e) = self.shared.net.send(to, payload) {
                    debug!("send failed: {e}");
                }
            }
            // Not served, and nobody blamed: the requester pulls the
            // block again when its pull expires. Over its own byte
            // budget is no sign of malice: a node catching up cannot know
            // how large the blocks it asks for are (the ban of a
            // replaying node seen on a chain of 4,096-transfer blocks
            // came from its queries, not from this, but the reasoning is
            // the same). Request floods are blamed by the request budget,
            // which every block request pays first.
            Err(_) => {
                self.shared
                    .metrics
                    .blocks_not_served
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands this turn's client batches and gossip to the workers. Under
    /// overload nothing waits: a client batch finding the queue full is
    /// answered busy at once (the client resends later; the bench does),
    /// and gossip is shed. Blocking here instead would stall consensus
    /// behind the verification backlog of whoever sends the most. Both
    /// counts are in /metrics.
    fn hand_out_jobs(&mut self) {
        for job in std::mem::take(&mut self.requests) {
            match self.shared.jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(Job::Request {
                    from, request_id, ..
                })) => {
                    self.shared
                        .metrics
                        .requests_busy
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = self
                        .shared
                        .net
                        .respond(from, request_id, BUSY_ANSWER.to_vec());
                }
                // Only requests are here; a disconnected queue means the
                // workers are gone (shutting down).
                Err(_) => {}
            }
        }
        let gossip = std::mem::take(&mut self.gossip);
        if !gossip.items.is_empty() || !gossip.batches.is_empty() {
            let n = gossip.items.len() + gossip.batches.len();
            let job = Job::Gossip {
                items: gossip.items,
                batches: gossip.batches,
            };
            // Gossip, which anyone can send and which is shed without
            // loss (peers that have a transaction gossip it again), has a
            // queue of its own, taken last by the workers: clients'
            // batches and API submissions neither find their queue full
            // of it nor wait behind it.
            match self.shared.gossip_jobs.try_send(job) {
                Ok(()) => {}
                Err(_) => {
                    self.shared
                        .metrics
                        .txs_shed
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Admits verified transactions to the mempool, passes the admitted ones
    /// on to peers (whatever their origin: the net layer relays nothing by
    /// itself, `relay_received` is off), counts them, and answers a client.
    fn admit(&mut self, txs: Vec<Transaction>, origin: Origin, received: usize) {
        let encoded: Vec<Vec<u8>> = txs.iter().map(|t| t.encoded().to_vec()).collect();
        let results = self
            .engine
            .submit_verified(txs, &self.chain, self.shared.mono_ms());
        // The id is the blake3 of the encoding: what peers check. One
        // command for the whole batch.
        let relays: Vec<([u8; 32], Vec<u8>)> = encoded
            .into_iter()
            .zip(&results)
            .filter_map(|(bytes, r)| r.as_ref().ok().map(|id| (*id, bytes)))
            .collect();
        if let Err(e) = self.shared.net.relay_many(relays) {
            debug!("gossip of transactions failed: {e}");
        }
        let m = &self.shared.metrics;
        m.txs_received.fetch_add(received as u64, Ordering::Relaxed);
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        m.txs_admitted.fetch_add(admitted as u64, Ordering::Relaxed);
        match origin {
            Origin::Gossip => {}
            Origin::Request { from, request_id } => {
                let _ = self.shared.net.respond(
                    from,
                    request_id,
                    (admitted as u32).to_le_bytes().to_vec(),
                );
            }
            Origin::Api {
                reply,
                verdicts,
                refused,
            } => {
                let mut admitted = results.into_iter();
                let mut checked = verdicts.into_iter().map(|v| match v {
                    Verdict::Valid => match admitted.next().expect("one result per valid tx") {
                        Ok(id) => Ok(id),
                        Err(e) => Err(submit_error_text(&e)),
                    },
                    v => Err(submit_error_text(&SubmitError::Invalid(v))),
                });
                // Merge back the transactions refused before any check,
                // at their input positions.
                let mut answer = Vec::with_capacity(checked.len() + refused.len());
                for (position, reason) in refused {
                    while answer.len() < position {
                        match checked.next() {
                            Some(a) => answer.push(a),
                            None => break,
                        }
                    }
                    answer.push(Err(reason));
                }
                answer.extend(checked);
                let _ = reply.send(answer);
            }
        }
    }

    fn perform(&mut self, out: Output) {
        let shared = &self.shared;
        match out {
            Output::Send { to, msg } => {
                if matches!(msg, Message::Query { .. }) && !self.connected.contains(&to) {
                    // No connection: it cannot answer. Counted as "no
                    // vote" now instead of at the poll's timeout.
                    if !self.unreachable.contains(&to) {
                        self.unreachable.push(to);
                    }
                    return;
                }
                let block_data = matches!(msg, Message::BlockData { .. });
                let payload = Payload::Engine(msg).encode();
                if block_data {
                    // A candidate block served from memory: the same byte
                    // budgets as a finalized one read from disk.
                    return self.serve(to, payload, shared.mono_ms());
                }
                if let Err(e) = shared.net.send(to, payload) {
                    debug!("send failed: {e}");
                }
            }
            Output::ServeBlock { to, height, id } => {
                match shared.serve_jobs.try_send(Job::Serve { to, height, id }) {
                    Ok(()) => {}
                    Err(_) => {
                        shared
                            .metrics
                            .blocks_not_served
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Output::Penalize { peer, reason } => {
                shared
                    .metrics
                    .peers_penalized
                    .fetch_add(1, Ordering::Relaxed);
                warn!(peer = %hex::encode(&peer[..4]), ?reason, "peer penalised");
                self.penalize(peer, net_misbehaviour(reason));
            }
            Output::Execute { id, env, txs } => {
                let job = Job::Execute { id, env, txs };
                match shared.block_jobs.try_send(job) {
                    Ok(()) => {}
                    // The block checker is behind: executed here rather
                    // than lost (the engine does not ask twice). Bounded:
                    // the engine executes each block of a height once.
                    Err(e) => {
                        let Job::Execute { id, env, txs } = e.into_inner() else {
                            unreachable!("the job just sent")
                        };
                        let result = self.chain.execute(env, &txs);
                        let now = shared.mono_ms();
                        let out = self.engine.on_executed(id, result, &self.chain, now);
                        self.outputs.extend(out);
                    }
                }
            }
            Output::Commit { block, txs, diff } => {
                // The durable commit runs here, on the chain's owner: it
                // is one synced batch, and nothing of the next height can
                // start before it anyway (its blocks name this root).
                let result = self.chain.commit(&block, &txs, diff);
                if result.is_ok() {
                    self.take_snapshot(block.height());
                }
                let out = self
                    .engine
                    .on_committed(result, &mut self.chain, shared.mono_ms());
                self.outputs.extend(out);
            }
            Output::Committed { height, id, txs } => {
                let m = &shared.metrics;
                m.txs_finalized.fetch_add(txs as u64, Ordering::Relaxed);
                m.blocks_finalized.fetch_add(1, Ordering::Relaxed);
                m.last_commit_ms.store(wall_ms(), Ordering::Relaxed);
                info!(height, txs, id = %hex::encode(&id[..8]), "finalized");
            }
            Output::Revealed { height, block } => {
                if let Err(e) = self.chain.record_revealed(height, &block) {
                    // This node's own store failed: halt, as for any
                    // local fault.
                    self.perform(Output::Halted {
                        reason: format!(
                            "recording the preference revealed at height {height}: {e}"
                        ),
                    })
                }
            }
            Output::Halted { reason } => {
                let mut halted = shared.halted.lock().unwrap_or_else(|p| p.into_inner());
                if halted.is_none() {
                    error!("consensus halted: {reason}; stopping the node");
                    *halted = Some(reason);
                }
                shared.stop.store(true, Ordering::Release);
            }
        }
    }
}

/// The network layer's penalty for what the engine found. A vote for an
/// invalid block, or a block whose transactions are not the ones its id
/// names, is proof of malice: the heaviest penalty. Unsolicited or
/// repeated answers can be honest but late: a light one, so only repeated
/// offenders are cut off.
fn net_misbehaviour(reason: strata_consensus::engine::Misbehaviour) -> Misbehaviour {
    use strata_consensus::engine::Misbehaviour as M;
    match reason {
        M::InvalidBlock | M::WrongBlockData => Misbehaviour::ProtocolViolation,
        M::UnsolicitedBlock | M::UnsolicitedVote | M::DuplicateVote => {
            Misbehaviour::UnsolicitedResponse
        }
    }
}

/// The message an API client gets for a refused transaction.
fn submit_error_text(e: &SubmitError) -> String {
    match e {
        SubmitError::Invalid(Verdict::BadSignature) => "invalid signature".into(),
        SubmitError::Invalid(Verdict::WrongChain) => {
            "invalid: the transaction names another chain id".into()
        }
        SubmitError::Invalid(Verdict::BadKey) => {
            "invalid: the sender is not a valid ed25519 public key".into()
        }
        SubmitError::Rejected(r) => r.to_string(),
        e => e.to_string(),
    }
}
