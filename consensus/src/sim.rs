//! A deterministic simulator: many engines, one thread, a virtual clock, a
//! seeded network that delays, drops and reorders messages, partitions that
//! come and go, crashes with restarts from the committed chain, and
//! Byzantine nodes of every kind the literature names ([`Byzantine`]:
//! silent, random and equivocating voters, double proposers, duplicate and
//! late answers, twins, withholding, the rebalancing attacker, floods).
//! After every step it checks **agreement** (no two honest nodes finalize
//! different blocks at one height), **validity** (every committed block
//! executes against its parent and total supply is conserved) and that **no
//! honest node bans another**; at the end, **liveness** (after the last
//! fault heals and the adversary stops, if it does, every honest node
//! reaches the target height within a bound).
//!
//! Honest nodes do with penalties what a real node does ([`scoring`]): a
//! score per peer, bans at -100 that cut the connection both ways for ten
//! minutes, a message budget per peer checked before the engine sees a
//! message, and a driver that handles one message at a time, so that
//! duplicate answers and floods have their real consequences.
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
//!
//! What it does not model: TCP's ordering within a connection (messages
//! between two nodes may overtake each other), connection loss as a whole
//! (a dropped message is dropped alone), gossip of transactions (every
//! honest node gets each one directly), and the cost of sending.

pub mod adversary;
mod chain;
pub mod diagnosis;
pub mod scoring;
pub mod weights;
mod world;

use thiserror::Error;

pub use self::chain::ChainStore;

use crate::engine::EngineStats;
use crate::sampler::Sampling;
use crate::snowball::Params;

pub use adversary::Byzantine;
pub use diagnosis::Stall;
pub use scoring::{PeerLimits, Penalties};
pub use weights::{Weights, WeightsError};
pub use world::{NS_PER_MS, TICK_MS};

/// Simulation settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Nodes (validators), honest and Byzantine.
    pub nodes: usize,
    /// How many of them are Byzantine, and how.
    pub byzantine: usize,
    /// Behaviour of the Byzantine nodes. Default [`Byzantine::RandomVoter`].
    pub byzantine_kind: Byzantine,
    /// When the Byzantine nodes stop: from then on they send and answer
    /// nothing, as if they had crashed for good (bans of them stand).
    /// `None` (the default): they act for the whole run, and liveness must
    /// hold despite them; with a time, liveness is required within
    /// `liveness_bound_ms` after it.
    pub byzantine_until_ms: Option<u64>,
    /// Junk messages a [`Byzantine::Flooder`] sends each honest node per
    /// second, in one burst per tick. Default 60,000: three times the
    /// node's message budget, so the budget drops it and scores the
    /// flooder down until it is banned.
    pub flood_messages_per_s: u64,
    /// How polls weigh validators (and so how the simulated genesis
    /// distributes stake or work). Default uniform.
    pub sampling: Sampling,
    /// Under stake or proof-of-work sampling: the share of the total weight
    /// the Byzantine nodes hold, per mille. `None` = their share of the
    /// count. Ignored under uniform sampling.
    pub byzantine_weight_per_mille: Option<u64>,
    /// Heights every honest node must finalize. Default 5.
    pub target_height: u64,
    /// One-way latency range, in ms. Default 5–60.
    pub latency_ms: (u64, u64),
    /// Time range, in ms, a node's driver is busy with a pulled block
    /// (checking signatures and executing, as a real node's driver does
    /// inline), on top of [`PeerLimits::message_cost_ns`]: messages to it
    /// wait until it is done, while polls between idle nodes stay fast.
    /// Default (0, 0): never busy beyond the message cost.
    pub block_delay_ms: (u64, u64),
    /// Poll timeout; `None` (the default) = three times the largest
    /// latency.
    pub poll_timeout_ms: Option<u64>,
    /// Polls each engine keeps open; `None` (the default): the engine's
    /// default.
    pub polls_in_flight: Option<usize>,
    /// Validators a proposer pushes its block to; `None` (the default):
    /// the engine's default.
    pub proposal_push_peers: Option<usize>,
    /// Drop probability, per mille. Default 20.
    pub drop_per_mille: u64,
    /// Probability that the network delivers a message twice, per mille.
    /// Default 0: the node's transport is TCP, which never duplicates, and
    /// a second answer to a poll is misbehaviour the engine penalises (so
    /// scored copies would get honest nodes banned). A copy made here (the
    /// later of the two arrivals) still reaches the engine, which must
    /// shrug it off, but nothing the engine says about it — answers,
    /// penalties — leaves the node: no honest node sent it.
    pub duplicate_per_mille: u64,
    /// Whether to schedule partitions and crashes in the first part of the
    /// run (they all heal by `faults_until_ms`). Default true.
    pub faults: bool,
    /// Time by which every fault has healed. Default 3,000.
    pub faults_until_ms: u64,
    /// Virtual time allowed after healing (and after the adversary stops,
    /// if it does) for every honest node to reach the target height: the
    /// liveness bound. Default 120,000.
    pub liveness_bound_ms: u64,
    /// Snowball parameters (capped for the network size by the engine).
    /// Default k 5, alpha 4, beta 8.
    pub params: Params,
    /// Transactions submitted per height to random honest nodes. Default 8.
    pub txs_per_height: usize,
    /// What honest nodes do with penalties and message rates (the node's
    /// scores, bans, budget and per-message cost).
    pub peer_limits: PeerLimits,
    /// The chain store every node runs. Default: in memory.
    pub chain: ChainStore,
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
            byzantine_until_ms: None,
            flood_messages_per_s: 60_000,
            sampling: Sampling::Uniform,
            byzantine_weight_per_mille: None,
            target_height: 5,
            latency_ms: (5, 60),
            block_delay_ms: (0, 0),
            poll_timeout_ms: None,
            polls_in_flight: None,
            proposal_push_peers: None,
            drop_per_mille: 20,
            duplicate_per_mille: 0,
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
            peer_limits: PeerLimits::default(),
            chain: ChainStore::Memory,
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
    /// The latency range is empty.
    #[error("latency range {lo}..={hi} ms is empty")]
    Latency {
        /// Least latency.
        lo: u64,
        /// Largest latency.
        hi: u64,
    },
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
        let (lo, hi) = self.latency_ms;
        if lo > hi {
            return Err(SimError::Latency { lo, hi });
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

    /// The engines' poll timeout.
    pub fn poll_timeout_ms(&self) -> u64 {
        self.poll_timeout_ms.unwrap_or(self.latency_ms.1 * 3)
    }

    /// When the liveness bound starts: every fault healed and the
    /// adversary, if it stops, stopped.
    pub fn heal_ms(&self) -> u64 {
        self.faults_until_ms
            .max(self.byzantine_until_ms.unwrap_or(0))
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
    /// Messages the network delivered (flood bursts not included).
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
    /// Penalties honest nodes gave Byzantine nodes, by reason.
    pub penalties_of_byzantine: Penalties,
    /// Penalties honest nodes gave honest nodes, by reason (a few light
    /// ones can be the network's doing; a ban is a violation).
    pub penalties_of_honest: Penalties,
    /// Bans by honest nodes, of anyone.
    pub bans: u64,
    /// Bans of an honest node by an honest node: always a violation.
    pub honest_bans: u64,
    /// Messages honest nodes dropped as over their sender's budget.
    pub messages_over_budget: u64,
    /// Junk messages flooders sent (whether or not they arrived).
    pub flood_messages: u64,
    /// Longest time a message waited in an honest node's queue, µs.
    pub queue_wait_max_us: u64,
    /// The violated property, if any.
    pub violation: Option<String>,
    /// What the simulator could tell of why, when liveness failed.
    pub stall: Option<Stall>,
    /// The event trace, when asked for.
    pub trace: String,
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

    /// Time each height took until every honest node had finalized it,
    /// ms: the gaps between successive [`SimReport::height_done_ms`] (the
    /// first from the start of the run).
    pub fn ms_per_height(&self) -> Vec<u64> {
        let mut prev = 0;
        self.height_done_ms
            .iter()
            .map(|t| {
                let d = t - prev;
                prev = *t;
                d
            })
            .collect()
    }
}

/// Runs one simulation.
///
/// # Panics
/// When `config` does not validate ([`SimConfig::weights`] says why).
pub fn run(config: &SimConfig) -> SimReport {
    let weights = config
        .weights()
        .unwrap_or_else(|e| panic!("invalid simulation config: {e}"));
    world::World::new(config, &weights).run()
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
