//! A deterministic simulator: many engines, one thread, a virtual clock, a
//! seeded network that delays, drops, duplicates and reorders messages,
//! partitions that come and go, crashes with restarts from the committed
//! chain, and Byzantine nodes. After every step it checks **agreement** (no
//! two honest nodes finalize different blocks at one height) and
//! **validity** (every committed block executes against its parent and total
//! supply is conserved); at the end, **liveness** (after the last fault heals,
//! every honest node reaches the target height within a bound).
//!
//! Everything random is drawn from one seed, so any failure replays exactly
//! with [`run`] and the same [`SimConfig`].
//!
//! Polls sample validators by any of the node's weight functions
//! ([`Sampling`]): under stake and proof-of-work sampling the simulated
//! genesis gives skewed stakes or identities with different proven work
//! ([`weights`]), and the Byzantine nodes hold a chosen share of the
//! *weight*. Each run also counts the polls every honest node spent per
//! height it finalized ([`SimReport::polls_per_finality`]).

pub mod weights;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;

use thiserror::Error;

use crate::block::BlockId;
use crate::engine::{
    serve_block, Chain, Engine, EngineConfig, EngineStats, Message, NodeId, Output,
};
use crate::genesis::{
    devnet_account_key, devnet_account_public_keys, devnet_validator_key, Genesis, DEVNET_BALANCE,
};
use crate::mem_chain::MemChain;
use crate::rng::Rng;
use crate::sampler::{ProofOfWork, Sampling, SamplingWeight, Stake, Uniform};
use crate::snowball::Params;
use crate::state::{burned_key, read_account};
use crate::tx::{TxBody, TxKind};

pub use weights::{Weights, WeightsError};

/// How a Byzantine node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Never answers.
    Silent,
    /// Answers every query with a random block id (possibly unknown).
    RandomVoter,
    /// Answers each querier with a different preference, flipping between
    /// its own candidates and random ids.
    Equivocator,
    /// Runs a real engine but proposes two different valid blocks at every
    /// height and tells each querier, at random, that it prefers one or the
    /// other — the equivocating proposer.
    EquivocatingProposer,
}

/// Simulation settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Nodes (validators), honest and Byzantine.
    pub nodes: usize,
    /// How many of them are Byzantine, and how.
    pub byzantine: usize,
    /// Behaviour of the Byzantine nodes.
    pub byzantine_kind: Byzantine,
    /// How polls weigh validators (and so how the simulated genesis
    /// distributes stake or work). Default uniform.
    pub sampling: Sampling,
    /// Under stake or proof-of-work sampling: the share of the total weight
    /// the Byzantine nodes hold, per mille. `None` = their share of the
    /// count. Ignored under uniform sampling.
    pub byzantine_weight_per_mille: Option<u64>,
    /// Heights every honest node must finalize.
    pub target_height: u64,
    /// One-way latency range, in ms.
    pub latency_ms: (u64, u64),
    /// Time range, in ms, a node is busy after receiving a pulled block
    /// (checking signatures and executing, as a real node's driver does
    /// inline): messages to it wait until it is done, while polls between
    /// idle nodes stay fast. (0, 0) = never busy.
    pub block_delay_ms: (u64, u64),
    /// Poll timeout; `None` = three times the largest latency.
    pub poll_timeout_ms: Option<u64>,
    /// Drop probability, per mille.
    pub drop_per_mille: u64,
    /// Duplication probability, per mille.
    pub duplicate_per_mille: u64,
    /// Whether to schedule partitions and crashes in the first part of the
    /// run (they all heal by `faults_until_ms`).
    pub faults: bool,
    /// Time by which every fault has healed.
    pub faults_until_ms: u64,
    /// Virtual time allowed after healing for every honest node to reach the
    /// target height (the liveness bound).
    pub liveness_bound_ms: u64,
    /// Snowball parameters (capped for the network size by the engine).
    pub params: Params,
    /// Transactions submitted per height to random honest nodes.
    pub txs_per_height: usize,
    /// Record an event trace (for replays).
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 7,
            byzantine: 0,
            byzantine_kind: Byzantine::RandomVoter,
            sampling: Sampling::Uniform,
            byzantine_weight_per_mille: None,
            target_height: 5,
            latency_ms: (5, 60),
            block_delay_ms: (0, 0),
            poll_timeout_ms: None,
            drop_per_mille: 20,
            duplicate_per_mille: 20,
            faults: true,
            faults_until_ms: 3_000,
            liveness_bound_ms: 120_000,
            params: Params {
                k: 5,
                alpha_preference: 4,
                alpha_confidence: 4,
                beta: 8,
            },
            txs_per_height: 8,
            trace: false,
        }
    }
}

/// Why a [`SimConfig`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SimError {
    /// No honest node would be left.
    #[error("{byzantine} Byzantine nodes among {nodes} leave no honest node")]
    NoHonestNode {
        /// Nodes.
        nodes: usize,
        /// Byzantine nodes.
        byzantine: usize,
    },
    /// The weights cannot be assigned.
    #[error("validator weights: {0}")]
    Weights(#[from] WeightsError),
}

impl SimConfig {
    /// The validator weights of this run (which also checks the
    /// configuration).
    ///
    /// # Errors
    /// A [`SimError`] saying what does not fit.
    pub fn weights(&self) -> Result<Weights, SimError> {
        if self.byzantine >= self.nodes {
            return Err(SimError::NoHonestNode {
                nodes: self.nodes,
                byzantine: self.byzantine,
            });
        }
        let share = self
            .byzantine_weight_per_mille
            .unwrap_or((self.byzantine as u64 * weights::PER_MILLE).div_ceil(self.nodes as u64));
        Ok(weights::assign(
            self.sampling,
            self.nodes,
            self.byzantine,
            share,
            self.seed,
        )?)
    }
}

/// Poll counters of one engine, or summed over finalized heights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollCounts {
    /// Polls opened (queries sent to a sample).
    pub opened: u64,
    /// Polls closed at their height (the ones Snowball counted).
    pub closed: u64,
    /// Closed polls that were successful.
    pub successful: u64,
}

impl PollCounts {
    fn of(stats: EngineStats) -> PollCounts {
        PollCounts {
            opened: stats.polls_opened,
            closed: stats.polls,
            successful: stats.polls_successful,
        }
    }

    fn plus(self, o: PollCounts) -> PollCounts {
        PollCounts {
            opened: self.opened + o.opened,
            closed: self.closed + o.closed,
            successful: self.successful + o.successful,
        }
    }

    fn minus(self, o: PollCounts) -> PollCounts {
        PollCounts {
            opened: self.opened - o.opened,
            closed: self.closed - o.closed,
            successful: self.successful - o.successful,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Virtual time at the end, ms.
    pub end_ms: u64,
    /// Lowest finalized height over honest nodes at the end.
    pub min_height: u64,
    /// Polls closed, over all honest nodes.
    pub polls: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Virtual time at which each height was first finalized by every honest
    /// node (index 0 = height 1).
    pub height_done_ms: Vec<u64>,
    /// Heights finalized, summed over honest nodes (a node finalizing
    /// heights 1..=4 counts 4).
    pub finalizations: u64,
    /// Polls honest nodes spent on the heights they finalized, summed: each
    /// finalization is charged the polls its node opened, closed and
    /// succeeded since its previous one (including those of an engine
    /// lost to a crash meanwhile).
    pub finality_polls: PollCounts,
    /// Polls of every honest engine of the run, those lost to crashes
    /// included: `finality_polls` plus the polls spent on heights not
    /// finalized when the run ended.
    pub polls_all: PollCounts,
    /// Share of the sampling weight the Byzantine nodes held, per mille.
    pub byzantine_weight_per_mille: u64,
    /// The violated property, if any.
    pub violation: Option<String>,
    /// The event trace, when asked for.
    pub trace: String,
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        msg: Message,
    },
    Tick {
        node: usize,
    },
    Crash {
        node: usize,
        until_ms: u64,
    },
    Restart {
        node: usize,
    },
}

struct SimNode {
    id: NodeId,
    engine: Engine,
    chain: MemChain,
    byzantine: bool,
    down_until_ms: Option<u64>,
    /// The two blocks an equivocating proposer offers at its current height.
    equivocation: Option<(u64, [BlockId; 2])>,
    /// The current engine's poll counters already charged to finalized
    /// heights.
    polls_charged: PollCounts,
    /// Polls of engines lost to crashes since this node's last
    /// finalization, to charge to the next one.
    polls_carried: PollCounts,
}

impl SimReport {
    /// Mean polls (opened, closed, successful) per height an honest node
    /// finalized; `None` before any finalization.
    pub fn polls_per_finality(&self) -> Option<(f64, f64, f64)> {
        if self.finalizations == 0 {
            return None;
        }
        let n = self.finalizations as f64;
        let p = self.finality_polls;
        Some((
            p.opened as f64 / n,
            p.closed as f64 / n,
            p.successful as f64 / n,
        ))
    }
}

/// Tick period of every engine, ms.
const TICK_MS: u64 = 10;

/// The simulated genesis and the sampling weight function for `weights`:
/// skewed stakes written into the genesis under stake sampling, or a nonce
/// mined per validator key to exactly the work its weight asks under proof
/// of work.
fn weighted_genesis(config: &SimConfig, weights: &Weights) -> (Genesis, Box<dyn SamplingWeight>) {
    let mut genesis = Genesis::devnet(config.nodes);
    let weight: Box<dyn SamplingWeight> = match config.sampling {
        Sampling::Uniform => Box::new(Uniform),
        Sampling::Stake => {
            for (v, w) in genesis.validators.iter_mut().zip(&weights.weights) {
                v.stake = *w;
            }
            Box::new(Stake)
        }
        Sampling::ProofOfWork => Box::new(ProofOfWork {
            nonces: weights
                .weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let key = devnet_validator_key(i).verifying_key().to_bytes();
                    let bits = w.trailing_zeros();
                    // 2^(bits + 1) tries are expected; 2^(bits + 24) make a
                    // miss vanishingly unlikely (and a miss is a panic naming it).
                    let nonce = ProofOfWork::mine_exact(&key, bits, 1 << (bits + 24))
                        .unwrap_or_else(|| {
                            panic!("no nonce with {bits} bits of work for node {i}")
                        });
                    (key, nonce)
                })
                .collect(),
        }),
    };
    (genesis, weight)
}

/// Runs one simulation.
///
/// # Panics
/// When `config` does not validate ([`SimConfig::weights`] says why).
pub fn run(config: &SimConfig) -> SimReport {
    let weights = config
        .weights()
        .unwrap_or_else(|e| panic!("invalid simulation config: {e}"));
    let mut rng = Rng::new(config.seed);
    let (genesis, weight) = weighted_genesis(config, &weights);
    let validators = genesis.validator_set().expect("simulated genesis is valid");
    let supply = genesis.total_supply().expect("devnet supply fits");
    let engine_config = EngineConfig {
        params: config.params,
        poll_timeout_ms: config.poll_timeout_ms.unwrap_or(config.latency_ms.1 * 3),
        propose_delay_ms: 20,
        propose_backoff_ms: 20,
        block_txs_max: 64,
        // Simulated nodes see a few hundred transactions: small tables keep
        // hundreds of seeds fast.
        mempool: crate::mempool::MempoolConfig {
            txs_max: 4096,
            ..Default::default()
        },
        key_cache_entries: 256,
        ..EngineConfig::default()
    };
    let mut nodes: Vec<SimNode> = (0..config.nodes)
        .map(|i| {
            let id = devnet_validator_key(i).verifying_key().to_bytes();
            let chain = MemChain::new(&genesis);
            let engine = Engine::new(
                id,
                &validators,
                weight.as_ref(),
                engine_config.clone(),
                &chain,
                config.seed ^ (i as u64 + 1),
                0,
            );
            // The last `byzantine` nodes are the Byzantine ones.
            SimNode {
                id,
                engine,
                chain,
                byzantine: i >= config.nodes - config.byzantine,
                down_until_ms: None,
                equivocation: None,
                polls_charged: PollCounts::default(),
                polls_carried: PollCounts::default(),
            }
        })
        .collect();
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let honest: Vec<usize> = (0..config.nodes).filter(|i| !nodes[*i].byzantine).collect();

    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut events: HashMap<usize, Event> = HashMap::new();
    // Per node: until when it is busy validating a pulled block.
    let mut busy_until = vec![0u64; config.nodes];
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                    events: &mut HashMap<usize, Event>,
                    at: u64,
                    e: Event| {
        seq += 1;
        let slot = seq as usize;
        events.insert(slot, e);
        queue.push(Reverse((at, seq, slot)));
    };
    for i in 0..config.nodes {
        push(
            &mut queue,
            &mut events,
            rng.below(TICK_MS),
            Event::Tick { node: i },
        );
    }

    // Faults: a partition window and crashes of honest nodes, all healed by
    // `faults_until_ms`.
    let mut partition: Option<(u64, u64, Vec<bool>)> = None;
    if config.faults {
        let start = rng.below(config.faults_until_ms / 2);
        let end = start + rng.below(config.faults_until_ms / 2) + 1;
        let side: Vec<bool> = (0..config.nodes).map(|_| rng.chance(1, 2)).collect();
        partition = Some((start, end.min(config.faults_until_ms), side));
        for _ in 0..=(config.nodes / 4) {
            let node = honest[rng.below(honest.len() as u64) as usize];
            let at = rng.below(config.faults_until_ms / 2);
            let until =
                (at + 200 + rng.below(config.faults_until_ms / 2)).min(config.faults_until_ms);
            push(
                &mut queue,
                &mut events,
                at,
                Event::Crash {
                    node,
                    until_ms: until,
                },
            );
        }
    }

    let mut report = SimReport {
        byzantine_weight_per_mille: weights.byzantine_per_mille,
        ..SimReport::default()
    };
    let mut finalized: HashMap<u64, BlockId> = HashMap::new();
    let mut nonces = vec![0u64; 64];
    let mut submitted_for_height = 0u64;
    let deadline = config.faults_until_ms + config.liveness_bound_ms;
    let mut trace = String::new();
    if config.trace {
        let _ = writeln!(
            trace,
            "weights ({:?}): {:?}, Byzantine share {} per mille",
            config.sampling, weights.weights, weights.byzantine_per_mille
        );
    }

    while let Some(Reverse((now, _, slot))) = queue.pop() {
        if now > deadline {
            break;
        }
        report.end_ms = now;
        let event = events.remove(&slot).expect("queued events are stored");
        let mut outputs: Vec<(usize, Vec<Output>)> = Vec::new();
        match event {
            Event::Tick { node } => {
                push(&mut queue, &mut events, now + TICK_MS, Event::Tick { node });
                let n = &mut nodes[node];
                let runs_engine =
                    !n.byzantine || config.byzantine_kind == Byzantine::EquivocatingProposer;
                if n.down_until_ms.is_some() || !runs_engine {
                    continue;
                }
                if n.byzantine {
                    let height = n.engine.height();
                    if n.equivocation.is_none_or(|(h, _)| h != height) {
                        if let Some(ids) = n.engine.propose_twice_for_simulation(&n.chain, now) {
                            n.equivocation = Some((height, ids));
                        }
                    }
                }
                outputs.push((node, n.engine.on_tick(&mut n.chain, now, now)));
            }
            Event::Crash { node, until_ms } => {
                if config.trace {
                    let _ = writeln!(trace, "{now} crash {node} until {until_ms}");
                }
                nodes[node].down_until_ms = Some(until_ms);
                push(&mut queue, &mut events, until_ms, Event::Restart { node });
            }
            Event::Restart { node } => {
                if config.trace {
                    let _ = writeln!(trace, "{now} restart {node}");
                }
                // Memory is lost; the committed chain survives.
                let n = &mut nodes[node];
                n.down_until_ms = None;
                let old = PollCounts::of(n.engine.stats());
                if !n.byzantine {
                    report.polls_all = report.polls_all.plus(old);
                }
                n.polls_carried = n.polls_carried.plus(old.minus(n.polls_charged));
                n.polls_charged = PollCounts::default();
                n.engine = Engine::new(
                    n.id,
                    &validators,
                    weight.as_ref(),
                    engine_config.clone(),
                    &n.chain,
                    config.seed ^ now,
                    now,
                );
            }
            Event::Deliver { to, from, msg } => {
                report.delivered += 1;
                if config.trace {
                    let _ = writeln!(trace, "{now} {from}->{to} {msg:?}");
                }
                if nodes[to].down_until_ms.is_some() {
                    continue;
                }
                if busy_until[to] > now {
                    let at = busy_until[to];
                    push(
                        &mut queue,
                        &mut events,
                        at,
                        Event::Deliver { to, from, msg },
                    );
                    continue;
                }
                if matches!(msg, Message::BlockData { .. }) && config.block_delay_ms.1 > 0 {
                    let (lo, hi) = config.block_delay_ms;
                    busy_until[to] = now + lo + rng.below(hi.saturating_sub(lo) + 1);
                }
                if nodes[to].byzantine {
                    if let Some(reply) =
                        byzantine_reply(config.byzantine_kind, &msg, &mut rng, &nodes[to])
                    {
                        outputs.push((
                            to,
                            vec![Output::Send {
                                to: nodes[from].id,
                                msg: reply,
                            }],
                        ));
                    }
                    continue;
                }
                let from_id = nodes[from].id;
                let n = &mut nodes[to];
                outputs.push((to, n.engine.on_message(from_id, msg, &mut n.chain, now)));
            }
        }

        for (node, outs) in outputs {
            for o in outs {
                // The node serves finalized blocks off its engine's
                // thread; here, at once.
                let o = match o {
                    Output::ServeBlock { to, height, id } => {
                        match serve_block(&nodes[node].chain, height, &id) {
                            Ok(Some(msg)) => Output::Send { to, msg },
                            _ => continue,
                        }
                    }
                    o => o,
                };
                match o {
                    Output::Send { to, msg } => {
                        let Some(&dest) = index.get(&to) else {
                            continue;
                        };
                        if let Some((start, end, side)) = &partition {
                            if now >= *start && now < *end && side[node] != side[dest] {
                                continue;
                            }
                        }
                        if rng.chance(config.drop_per_mille, 1000) {
                            continue;
                        }
                        let copies = if rng.chance(config.duplicate_per_mille, 1000) {
                            2
                        } else {
                            1
                        };
                        for _ in 0..copies {
                            let delay = config.latency_ms.0
                                + rng.below(config.latency_ms.1 - config.latency_ms.0 + 1);
                            push(
                                &mut queue,
                                &mut events,
                                now + delay,
                                Event::Deliver {
                                    to: dest,
                                    from: node,
                                    msg: msg.clone(),
                                },
                            );
                        }
                    }
                    Output::Committed { .. } if nodes[node].byzantine => {}
                    Output::Committed { height, id, .. } => {
                        // Polls to finality: what this node spent since its
                        // previous finalization.
                        let n = &mut nodes[node];
                        let now_counts = PollCounts::of(n.engine.stats());
                        let spent = now_counts.minus(n.polls_charged).plus(n.polls_carried);
                        report.finality_polls = report.finality_polls.plus(spent);
                        report.finalizations += 1;
                        n.polls_charged = now_counts;
                        n.polls_carried = PollCounts::default();
                        if config.trace {
                            let _ = writeln!(
                                trace,
                                "{now} node {node} finalized {height} {}",
                                hex::encode(&id[..6])
                            );
                        }
                        // Agreement.
                        match finalized.get(&height) {
                            Some(prev) if *prev != id => {
                                report.violation = Some(format!(
                                    "agreement: height {height} finalized as {} and {}",
                                    hex::encode(prev),
                                    hex::encode(id)
                                ));
                            }
                            _ => {
                                finalized.insert(height, id);
                            }
                        }
                        // Validity: supply conserved.
                        let chain = &nodes[node].chain;
                        let balances: u64 = devnet_account_public_keys()
                            .iter()
                            .map(|key| read_account(chain.state(), key).map_or(0, |x| x.balance))
                            .sum();
                        let burned = chain.state().get(&burned_key()).map_or(0, |b| {
                            u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8]))
                        });
                        if balances + burned != supply {
                            report.violation = Some(format!(
                                "validity: supply {} != {supply} at height {height}",
                                balances + burned
                            ));
                        }
                    }
                    Output::Halted { reason } => {
                        report.violation = Some(format!("node {node} halted: {reason}"));
                    }
                    Output::Penalize { .. } | Output::ServeBlock { .. } => {}
                }
            }
        }
        if report.violation.is_some() {
            break;
        }

        // Feed transactions: a few per height, to random live honest nodes.
        let min_height = honest
            .iter()
            .map(|i| nodes[*i].chain.height())
            .min()
            .unwrap_or(0);
        while report.height_done_ms.len() < min_height as usize {
            report.height_done_ms.push(now);
        }
        if min_height >= config.target_height {
            break;
        }
        let top = honest
            .iter()
            .map(|i| nodes[*i].chain.height())
            .max()
            .unwrap_or(0);
        if submitted_for_height <= top {
            submitted_for_height = top + 1;
            for _ in 0..config.txs_per_height {
                let sender = rng.below(nonces.len() as u64) as usize;
                let key = devnet_account_key(sender);
                let tx = TxBody {
                    chain_id: genesis.chain_id,
                    sender: key.verifying_key().to_bytes(),
                    nonce: nonces[sender],
                    fee: 1 + rng.below(5),
                    kind: TxKind::Transfer {
                        to: devnet_account_key(rng.below(64) as usize)
                            .verifying_key()
                            .to_bytes(),
                        amount: rng.below(DEVNET_BALANCE / 1_000_000),
                    },
                }
                .sign(&key)
                .expect("devnet keys sign");
                nonces[sender] += 1;
                // Give it to every live honest node (and to equivocating
                // proposers, which need transactions to propose), as gossip
                // would.
                let receivers: Vec<usize> = (0..config.nodes)
                    .filter(|i| {
                        !nodes[*i].byzantine
                            || config.byzantine_kind == Byzantine::EquivocatingProposer
                    })
                    .collect();
                for &i in &receivers {
                    let n = &mut nodes[i];
                    if n.down_until_ms.is_none() {
                        n.engine.submit(vec![tx.clone()], &n.chain, now);
                    }
                }
            }
        }
    }

    report.min_height = honest
        .iter()
        .map(|i| nodes[*i].chain.height())
        .min()
        .unwrap_or(0);
    report.polls = honest.iter().map(|i| nodes[*i].engine.stats().polls).sum();
    // Every poll of an honest engine is charged to a finalization or still
    // pending on its node: the bookkeeping loses nothing across crashes.
    let mut pending = PollCounts::default();
    for &i in &honest {
        let n = &nodes[i];
        let now_counts = PollCounts::of(n.engine.stats());
        report.polls_all = report.polls_all.plus(now_counts);
        pending = pending
            .plus(now_counts.minus(n.polls_charged))
            .plus(n.polls_carried);
    }
    assert_eq!(
        report.finality_polls.plus(pending),
        report.polls_all,
        "poll accounting"
    );
    if report.violation.is_none() && report.min_height < config.target_height {
        report.violation = Some(format!(
            "liveness: honest nodes at heights {:?} after {} ms, target {}",
            honest
                .iter()
                .map(|i| nodes[*i].chain.height())
                .collect::<Vec<_>>(),
            report.end_ms,
            config.target_height
        ));
    }
    // Agreement across whole chains at the end (covers heights a node
    // committed while restarting).
    if report.violation.is_none() {
        let reference = nodes[honest[0]].chain.block_ids();
        for &i in &honest {
            let ids = nodes[i].chain.block_ids();
            let common = ids.len().min(reference.len());
            if ids[..common] != reference[..common] {
                report.violation = Some(format!(
                    "agreement: node {i}'s chain differs from node {}'s",
                    honest[0]
                ));
            }
        }
    }
    report.trace = trace;
    report
}

/// What a Byzantine node answers.
fn byzantine_reply(kind: Byzantine, msg: &Message, rng: &mut Rng, me: &SimNode) -> Option<Message> {
    let Message::Query { poll_id, height } = msg else {
        return None;
    };
    let mut random_id = [0u8; 32];
    random_id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    let block = match kind {
        Byzantine::Silent => return None,
        Byzantine::RandomVoter => Some(random_id),
        Byzantine::Equivocator => {
            if rng.chance(1, 2) {
                me.engine.preference().or(Some(random_id))
            } else {
                Some(random_id)
            }
        }
        Byzantine::EquivocatingProposer => match me.equivocation {
            Some((h, ids)) if h == *height => Some(ids[rng.below(2) as usize]),
            _ => me.engine.preference(),
        },
    };
    Some(Message::Vote {
        poll_id: *poll_id,
        height: *height,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calm_network_finalizes() {
        let report = run(&SimConfig {
            faults: false,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            ..SimConfig::default()
        });
        assert_eq!(report.violation, None, "{}", report.trace);
        assert!(report.min_height >= 5);
    }

    #[test]
    fn polls_per_finality_are_counted() {
        let config = SimConfig {
            faults: false,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            target_height: 3,
            ..SimConfig::default()
        };
        let report = run(&config);
        assert_eq!(report.violation, None, "{}", report.trace);
        // Every honest node finalized every height (some may run ahead).
        assert!(report.finalizations >= 3 * config.nodes as u64);
        let p = report.finality_polls;
        assert!(p.opened >= p.closed && p.closed >= p.successful, "{p:?}");
        // Finality takes beta consecutive successful polls at that height.
        let beta = config.params.beta as u64;
        assert!(p.successful >= beta * report.finalizations, "{p:?}");
        let (opened, closed, successful) = report.polls_per_finality().expect("finalized");
        assert!(successful >= beta as f64 && closed >= successful && opened >= closed);
        // Every closed poll of an honest node is charged to some height
        // except those of the heights still open at the end.
        assert!(p.closed <= report.polls, "{p:?} vs {}", report.polls);
    }

    /// With crashes (an engine and its counters lost mid-height) and
    /// catch-up, every finalization still costs its node at least beta
    /// successful polls at that height, so the charged sums must show it.
    #[test]
    fn polls_per_finality_survive_crashes() {
        for seed in 1..4 {
            let config = SimConfig {
                seed,
                target_height: 3,
                ..SimConfig::default()
            };
            assert!(config.faults);
            let report = run(&config);
            assert_eq!(report.violation, None, "seed {seed}");
            let p = report.finality_polls;
            let beta = config.params.beta as u64;
            assert!(report.finalizations >= 3 * config.nodes as u64);
            assert!(
                p.successful >= beta * report.finalizations,
                "seed {seed}: {p:?}"
            );
            assert!(p.opened >= p.closed && p.closed >= p.successful, "{p:?}");
            assert!(p.closed <= report.polls_all.closed);
            // Crashed engines' polls count: more than the live engines hold.
            assert!(
                report.polls_all.closed > report.polls,
                "seed {seed}: {:?} vs {}",
                report.polls_all,
                report.polls
            );
        }
    }

    #[test]
    fn weighted_sampling_runs_with_byzantine_weight() {
        for sampling in [Sampling::Stake, Sampling::ProofOfWork] {
            let config = SimConfig {
                seed: 9,
                nodes: 8,
                byzantine: 1,
                byzantine_kind: Byzantine::Silent,
                sampling,
                byzantine_weight_per_mille: Some(200),
                target_height: 3,
                ..SimConfig::default()
            };
            let weights = config.weights().expect("fits");
            assert!(weights.weights.iter().any(|w| *w != weights.weights[0]));
            let report = run(&config);
            assert_eq!(report.violation, None, "{sampling:?}");
            assert_eq!(
                report.byzantine_weight_per_mille,
                weights.byzantine_per_mille
            );
            assert!(report.byzantine_weight_per_mille.abs_diff(200) <= 15);
        }
    }

    #[test]
    fn invalid_configs_are_typed_errors() {
        let config = SimConfig {
            nodes: 4,
            byzantine: 4,
            ..SimConfig::default()
        };
        assert_eq!(
            config.weights(),
            Err(SimError::NoHonestNode {
                nodes: 4,
                byzantine: 4
            })
        );
        let config = SimConfig {
            sampling: Sampling::Stake,
            byzantine: 0,
            byzantine_weight_per_mille: Some(100),
            ..SimConfig::default()
        };
        assert!(matches!(
            config.weights(),
            Err(SimError::Weights(WeightsError::ShareWithoutNodes { .. }))
        ));
    }

    #[test]
    fn same_seed_same_run() {
        let config = SimConfig {
            seed: 42,
            ..SimConfig::default()
        };
        let a = run(&config);
        let b = run(&config);
        assert_eq!(
            (a.end_ms, a.delivered, a.polls, a.min_height),
            (b.end_ms, b.delivered, b.polls, b.min_height)
        );
    }
}
