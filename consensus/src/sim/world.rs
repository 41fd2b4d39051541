//! One simulated run: the nodes, a virtual clock in nanoseconds (engines see
//! milliseconds), the seeded network, each honest node's message queue and
//! peer limits, and the event queue that drives them. [`super::run`] builds
//! a [`World`] and runs it to the end.
//!
//! A message reaching an honest node is first checked against the
//! sender's budget, then waits behind the messages before it: the node's
//! driver handles one message at a time ([`PeerLimits::message_cost_ns`]
//! each, plus `block_delay_ms` for a pulled block), so a flood competes
//! with poll answers for the driver as it does on a real node. Engine ticks
//! do not wait (the node's timers fire between messages).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;

use super::adversary::{self, Byzantine};
use super::chain::SimChain;
use super::diagnosis::{Evidence, Stuck};
use super::scoring::{PeerLimits, Penalty, Scoreboard};
use super::{PollCounts, SimConfig, SimReport, Weights};
use crate::block::BlockId;
use crate::engine::{
    run_jobs_inline, serve_block, Chain, Engine, EngineConfig, Message, NodeId, Output,
};
use crate::genesis::{
    devnet_account_key, devnet_account_public_keys, devnet_validator_key, Genesis, Validator,
    DEVNET_BALANCE,
};
use crate::rng::Rng;
use crate::sampler::{ProofOfWork, Sampling, SamplingWeight, Stake, Uniform};
use crate::tx::{TxBody, TxKind};

/// Tick period of every engine, ms.
pub const TICK_MS: u64 = 10;
/// How often a trace lists every node's preference, ms.
const TRACE_PREFERENCES_MS: u64 = 1000;
/// Nanoseconds per millisecond: the simulator's clock runs in ns so that
/// per-message costs of a few µs add up; engines see whole ms.
pub const NS_PER_MS: u64 = 1_000_000;

fn ms(ns: u64) -> u64 {
    ns / NS_PER_MS
}

enum Event {
    /// A message reaches `to`'s network layer.
    Deliver {
        to: usize,
        from: usize,
        msg: Message,
        /// When it was sent (a late answerer times its answer from it).
        sent_ns: u64,
        /// Incarnations of sender and receiver when sent: a connection
        /// does not survive a crash, nor do the messages in flight on it.
        epochs: (u32, u32),
        /// A copy made by the network (`duplicate_per_mille`): never
        /// scored, since TCP does not duplicate.
        copy: bool,
    },
    /// A queued message reaches `to`'s engine.
    Process {
        to: usize,
        from: usize,
        msg: Message,
        epochs: (u32, u32),
        copy: bool,
    },
    /// A flooder's burst of `count` junk messages reaches `to`.
    Flood {
        to: usize,
        from: usize,
        count: u64,
        epochs: (u32, u32),
    },
    Tick {
        slot: usize,
    },
    Crash {
        slot: usize,
        until_ms: u64,
    },
    Restart {
        slot: usize,
    },
}

/// An event and when it happens; ties in time go in scheduling order.
struct Queued {
    at_ns: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at_ns, self.seq) == (o.at_ns, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at_ns, self.seq).cmp(&(o.at_ns, o.seq))
    }
}

/// One engine instance: a validator's, or one of a Byzantine twin pair's.
struct Slot {
    id: NodeId,
    /// Index of its key among the validators.
    validator: usize,
    byzantine: bool,
    engine: Engine,
    chain: SimChain,
    down_until_ms: Option<u64>,
    /// Incarnation, bumped at every crash.
    epoch: u32,
    /// The two blocks a double proposer offers at its current height.
    equivocation: Option<(u64, [BlockId; 2])>,
    /// The current engine's poll counters already charged to finalized
    /// heights.
    polls_charged: PollCounts,
    /// Polls of engines lost to crashes since this node's last
    /// finalization, to charge to the next one.
    polls_carried: PollCounts,
    /// The preference it last revealed (height, block): what the node
    /// records on disk and resumes after a restart.
    revealed: Option<(u64, BlockId)>,
}

/// The state of one run.
pub(super) struct World<'a> {
    config: &'a SimConfig,
    limits: PeerLimits,
    kind: Byzantine,
    rng: Rng,
    genesis: Genesis,
    validators: Vec<Validator>,
    weight: Box<dyn SamplingWeight>,
    engine_config: EngineConfig,
    supply: u64,
    slots: Vec<Slot>,
    /// Per validator: the slot of its twin, if it has one.
    twin: Vec<Option<usize>>,
    /// Validator index by key.
    index: HashMap<NodeId, usize>,
    /// Slots of the honest validators (one each).
    honest: Vec<usize>,
    byzantine_validator: Vec<bool>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now_ns: u64,
    /// Per slot: until when its driver is busy with messages already
    /// received.
    busy_until_ns: Vec<u64>,
    board: Scoreboard,
    /// (start ms, end ms, side of each validator).
    partition: Option<(u64, u64, Vec<bool>)>,
    finalized: HashMap<u64, BlockId>,
    nonces: Vec<u64>,
    submitted_for_height: u64,
    report: SimReport,
    evidence: Evidence,
    trace: String,
}

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

impl<'a> World<'a> {
    pub(super) fn new(config: &'a SimConfig, weights: &Weights) -> World<'a> {
        let mut rng = Rng::new(config.seed);
        let (genesis, weight) = weighted_genesis(config, weights);
        let validators = genesis.validator_set().expect("simulated genesis is valid");
        let supply = genesis.total_supply().expect("devnet supply fits");
        let engine_config = EngineConfig {
            params: config.params,
            poll_timeout_ms: config.poll_timeout_ms(),
            propose_delay_ms: 20,
            propose_backoff_ms: 20,
            block_txs_max: 64,
            // Simulated nodes see a few hundred transactions: small tables
            // keep hundreds of seeds fast.
            mempool: crate::mempool::MempoolConfig {
                txs_max: 4096,
                ..Default::default()
            },
            key_cache_entries: 256,
            ..EngineConfig::default()
        };
        let engine_config = EngineConfig {
            polls_in_flight: config
                .polls_in_flight
                .unwrap_or(engine_config.polls_in_flight),
            proposal_push_peers: config
                .proposal_push_peers
                .unwrap_or(engine_config.proposal_push_peers),
            ..engine_config
        };
        let kind = config.byzantine_kind;
        // The last `byzantine` validators are the Byzantine ones; twins get
        // a second slot each, after every validator's first.
        let byzantine_validator: Vec<bool> = (0..config.nodes)
            .map(|v| v >= config.nodes - config.byzantine)
            .collect();
        let mut slot_validators: Vec<usize> = (0..config.nodes).collect();
        let mut twin = vec![None; config.nodes];
        if kind == Byzantine::Twins {
            let first_byzantine = config.nodes - config.byzantine;
            for (v, second) in twin.iter_mut().enumerate().skip(first_byzantine) {
                *second = Some(slot_validators.len());
                slot_validators.push(v);
            }
        }
        let slots: Vec<Slot> = slot_validators
            .iter()
            .enumerate()
            .map(|(s, &v)| {
                let id = devnet_validator_key(v).verifying_key().to_bytes();
                let chain = SimChain::new(config.chain, &genesis);
                let engine = Engine::new(
                    id,
                    &validators,
                    weight.as_ref(),
                    engine_config.clone(),
                    &chain,
                    config.seed ^ (s as u64 + 1),
                    0,
                );
                Slot {
                    id,
                    validator: v,
                    byzantine: byzantine_validator[v],
                    engine,
                    chain,
                    down_until_ms: None,
                    epoch: 0,
                    equivocation: None,
                    polls_charged: PollCounts::default(),
                    polls_carried: PollCounts::default(),
                    revealed: None,
                }
            })
            .collect();
        let index = (0..config.nodes).map(|v| (slots[v].id, v)).collect();
        let honest = (0..config.nodes)
            .filter(|v| !byzantine_validator[*v])
            .collect();
        let mut trace = String::new();
        if config.trace {
            let _ = writeln!(
                trace,
                "weights ({:?}): {:?}, Byzantine share {} per mille, Byzantine kind {:?}",
                config.sampling, weights.weights, weights.byzantine_per_mille, kind
            );
        }
        let n_slots = slots.len();
        let mut world = World {
            config,
            limits: config.peer_limits,
            kind,
            genesis,
            validators,
            weight,
            engine_config,
            supply,
            slots,
            twin,
            index,
            honest,
            byzantine_validator,
            queue: BinaryHeap::new(),
            seq: 0,
            now_ns: 0,
            busy_until_ns: vec![0; n_slots],
            board: Scoreboard::new(config.peer_limits, config.nodes, 0),
            partition: None,
            finalized: HashMap::new(),
            nonces: vec![0; 64],
            submitted_for_height: 0,
            report: SimReport {
                byzantine_weight_per_mille: weights.byzantine_per_mille,
                ..SimReport::default()
            },
            evidence: Evidence::default(),
            trace,
            rng: Rng::new(0),
        };
        for s in 0..n_slots {
            let at = rng.below(TICK_MS) * NS_PER_MS;
            world.push(at, Event::Tick { slot: s });
        }
        // Faults: a partition window and crashes of honest nodes, all
        // healed by `faults_until_ms`.
        if config.faults {
            let until = config.faults_until_ms;
            let start = rng.below(until / 2);
            let end = start + rng.below(until / 2) + 1;
            let side: Vec<bool> = (0..config.nodes).map(|_| rng.chance(1, 2)).collect();
            world.partition = Some((start, end.min(until), side));
            for _ in 0..=(config.nodes / 4) {
                let slot = world.honest[rng.below(world.honest.len() as u64) as usize];
                let at = rng.below(until / 2);
                let until_ms = (at + 200 + rng.below(until / 2)).min(until);
                world.push(at * NS_PER_MS, Event::Crash { slot, until_ms });
            }
        }
        world.rng = rng;
        world
    }

    fn push(&mut self, at_ns: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at_ns,
            seq: self.seq,
            event,
        }));
    }

    fn now_ms(&self) -> u64 {
        ms(self.now_ns)
    }

    /// Whether the Byzantine nodes still act (they fall silent at
    /// `byzantine_until_ms`).
    fn adversary_active(&self) -> bool {
        self.config
            .byzantine_until_ms
            .is_none_or(|t| self.now_ms() < t)
    }

    /// Runs to the end and returns the report.
    pub(super) fn run(mut self) -> SimReport {
        let deadline_ns =
            self.config.heal_ms() * NS_PER_MS + self.config.liveness_bound_ms * NS_PER_MS;
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at_ns > deadline_ns {
                break;
            }
            self.now_ns = q.at_ns;
            self.report.end_ms = ms(q.at_ns);
            self.step(q.event);
            if self.report.violation.is_some() {
                break;
            }
            if self.feed_and_check() {
                break;
            }
        }
        self.finish()
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Tick { slot } => self.tick(slot),
            Event::Crash { slot, until_ms } => {
                if self.config.trace {
                    let _ = writeln!(
                        self.trace,
                        "{} crash {slot} until {until_ms}",
                        self.now_ms()
                    );
                }
                // A crash while down extends the outage; only the last
                // restart planned brings the node back.
                let s = &mut self.slots[slot];
                let until_ms = s.down_until_ms.map_or(until_ms, |u| u.max(until_ms));
                s.down_until_ms = Some(until_ms);
                s.epoch += 1;
                let id = s.id;
                self.push(until_ms * NS_PER_MS, Event::Restart { slot });
                // Its connections close: every peer sees it go down.
                for i in 0..self.honest.len() {
                    let h = self.honest[i];
                    if h != slot {
                        self.peer_down(h, &id);
                    }
                }
            }
            Event::Restart { slot } => self.restart(slot),
            Event::Deliver {
                to,
                from,
                msg,
                sent_ns,
                epochs,
                copy,
            } => self.deliver(to, from, msg, sent_ns, epochs, copy),
            Event::Process {
                to,
                from,
                msg,
                epochs,
                copy,
            } => {
                if self.connected(to, from, epochs) {
                    self.process(to, from, msg, copy);
                }
            }
            Event::Flood {
                to,
                from,
                count,
                epochs,
            } => {
                if self.connected(to, from, epochs) {
                    self.flood(to, from, count);
                }
            }
        }
    }

    /// True when a message sent from `from` to `to` in `epochs` may still
    /// arrive: both are up in the same incarnations, and neither bans the
    /// other.
    fn connected(&self, to: usize, from: usize, epochs: (u32, u32)) -> bool {
        let (t, f) = (&self.slots[to], &self.slots[from]);
        t.down_until_ms.is_none()
            && (f.epoch, t.epoch) == epochs
            && !self.board.cut(t.validator, f.validator, self.now_ms())
    }

    fn tick(&mut self, slot: usize) {
        self.push(self.now_ns + TICK_MS * NS_PER_MS, Event::Tick { slot });
        let now = self.now_ms();
        if self.config.trace && slot == 0 && now % TRACE_PREFERENCES_MS < TICK_MS {
            self.trace_preferences();
        }
        let s = &self.slots[slot];
        if s.down_until_ms.is_some() {
            return;
        }
        if !s.byzantine {
            let s = &mut self.slots[slot];
            let out = s.engine.on_tick(&mut s.chain, now, now);
            return self.honest_outputs(slot, out, true);
        }
        if !self.adversary_active() {
            return;
        }
        if self.kind == Byzantine::Flooder {
            return self.flood_tick(slot);
        }
        if !self.kind.runs_engine() {
            return;
        }
        let proposes_twice = self.kind.proposes_twice();
        let s = &mut self.slots[slot];
        if proposes_twice {
            let height = s.engine.height();
            if s.equivocation.is_none_or(|(h, _)| h != height) {
                if let Some(ids) = s.engine.propose_twice_for_simulation(&s.chain, now) {
                    s.equivocation = Some((height, ids));
                    for id in ids {
                        self.evidence.proposer.insert(id, s.validator);
                    }
                    if self.config.trace {
                        let _ = writeln!(
                            self.trace,
                            "{now} node {slot} proposes twice at {height}: {} and {}",
                            hex::encode(&ids[0][..3]),
                            hex::encode(&ids[1][..3])
                        );
                    }
                }
            }
        }
        let out = s.engine.on_tick(&mut s.chain, now, now);
        self.byzantine_outputs(slot, out);
    }

    /// One trace line: every slot's height and preference.
    fn trace_preferences(&mut self) {
        let _ = write!(self.trace, "{} preferences:", self.now_ms());
        for (i, s) in self.slots.iter().enumerate() {
            let pref = s.engine.preference().map(|p| hex::encode(&p[..3]));
            let who = if s.byzantine { "byzantine " } else { "" };
            let _ = write!(
                self.trace,
                " [{who}{i} at {} {}]",
                s.engine.height(),
                pref.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(self.trace);
    }

    fn restart(&mut self, slot: usize) {
        let now = self.now_ms();
        if self.slots[slot].down_until_ms != Some(now) {
            return; // an earlier restart, overtaken by a later crash
        }
        if self.config.trace {
            let _ = writeln!(self.trace, "{now} restart {slot}");
        }
        // Memory is lost; the committed chain survives. A new incarnation:
        // nothing sent to or by the old one arrives any more.
        let s = &mut self.slots[slot];
        s.down_until_ms = None;
        s.epoch += 1;
        let old = PollCounts::of(s.engine.stats());
        if !s.byzantine {
            self.report.polls_all = self.report.polls_all.plus(old);
        }
        s.polls_carried = s.polls_carried.plus(old.minus(s.polls_charged));
        s.polls_charged = PollCounts::default();
        s.chain.reopen(&self.genesis);
        s.engine = Engine::new(
            s.id,
            &self.validators,
            self.weight.as_ref(),
            self.engine_config.clone(),
            &s.chain,
            self.config.seed ^ now,
            now,
        );
        // The preference it revealed survives on disk, as on a node (read
        // back from the store when the node runs one).
        let revealed = s.chain.recorded_revealed().unwrap_or(s.revealed);
        if let Some((height, block)) = revealed {
            s.engine.resume_revealed(height, block);
        }
        let validator = s.validator;
        self.busy_until_ns[slot] = self.now_ns;
        self.board.restarted(validator, now);
    }

    /// Sends `msg` from `from` to the node with key `to` through the
    /// network (partition, bans, drops, latency); `arrive_ms` lets an
    /// adversary choose when its message arrives (never before the
    /// network's least latency).
    fn send(&mut self, from: usize, to: &NodeId, msg: Message, arrive_ms: Option<u64>) {
        let Some(&v) = self.index.get(to) else {
            return;
        };
        let dest = match self.twin[v] {
            Some(other) if self.rng.chance(1, 2) => other,
            _ => v,
        };
        let now = self.now_ms();
        let vf = self.slots[from].validator;
        if vf == v {
            return;
        }
        match &msg {
            Message::BlockData { block, .. } => {
                if let Some(&p) = self.index.get(&block.header().proposer) {
                    self.evidence.proposer.insert(*block.id(), p);
                }
            }
            Message::GetBlock { id, .. } if !self.slots[from].byzantine => {
                let key = (from, self.slots[from].epoch, *id);
                self.evidence.pulls.entry(key).or_default().push(v);
            }
            _ => {}
        }
        let lost =
            if self.partition.as_ref().is_some_and(|(start, end, side)| {
                now >= *start && now < *end && side[vf] != side[v]
            }) {
                Some("partition")
            } else if self.board.cut(v, vf, now) {
                Some("ban")
            } else if self.rng.chance(self.config.drop_per_mille, 1000) {
                Some("drop")
            } else {
                None
            };
        if let Some(why) = lost {
            if self.config.trace {
                let _ = writeln!(self.trace, "{now} {from}->{dest} lost ({why}) {msg}");
            }
            return;
        }
        let c = self.config;
        let copies = if self.rng.chance(c.duplicate_per_mille, 1000) {
            2
        } else {
            1
        };
        let epochs = (self.slots[from].epoch, self.slots[dest].epoch);
        let (lo, hi) = c.latency_ms;
        let mut latencies = [0; 2];
        for l in latencies.iter_mut().take(copies) {
            *l = lo + self.rng.below(hi - lo + 1);
        }
        // The copy is whichever arrives second: the driver handles
        // arrivals in order, so the first is the one scored.
        latencies[..copies].sort_unstable();
        for (copy, latency) in latencies.into_iter().take(copies).enumerate() {
            let at = match arrive_ms {
                Some(t) => t.max(now + lo),
                None => now + latency,
            };
            self.push(
                at * NS_PER_MS,
                Event::Deliver {
                    to: dest,
                    from,
                    msg: msg.clone(),
                    sent_ns: self.now_ns,
                    epochs,
                    copy: copy > 0,
                },
            );
        }
    }

    fn deliver(
        &mut self,
        to: usize,
        from: usize,
        msg: Message,
        sent_ns: u64,
        epochs: (u32, u32),
        copy: bool,
    ) {
        self.report.delivered += 1;
        if self.config.trace {
            let _ = writeln!(self.trace, "{} {from}->{to} {msg}", self.now_ms());
        }
        if !self.connected(to, from, epochs) {
            return;
        }
        if self.slots[to].byzantine {
            if self.adversary_active() {
                self.byzantine_message(to, from, msg, sent_ns);
            }
            return;
        }
        // The honest node's driver: the sender's budget first, then the
        // queue behind what it is already handling.
        let (vt, vf) = (self.slots[to].validator, self.slots[from].validator);
        let start = self.now_ns.max(self.busy_until_ns[to]);
        if !copy && !self.board.take_token(vt, vf, ms(start)) {
            self.busy_until_ns[to] = start + self.limits.dropped_message_cost_ns;
            self.report.messages_over_budget += 1;
            self.penalize(to, vf, Penalty::Flooding, ms(start));
            return;
        }
        let mut cost = self.limits.message_cost_ns;
        if matches!(msg, Message::BlockData { .. }) && self.config.block_delay_ms.1 > 0 {
            let (lo, hi) = self.config.block_delay_ms;
            cost += (lo + self.rng.below(hi.saturating_sub(lo) + 1)) * NS_PER_MS;
        }
        self.busy_until_ns[to] = start + cost;
        let waited_us = (start - self.now_ns) / 1000;
        self.report.queue_wait_max_us = self.report.queue_wait_max_us.max(waited_us);
        if start == self.now_ns {
            self.process(to, from, msg, copy);
        } else {
            self.push(
                start,
                Event::Process {
                    to,
                    from,
                    msg,
                    epochs,
                    copy,
                },
            );
        }
    }

    /// An honest node's engine takes a message off its queue.
    fn process(&mut self, to: usize, from: usize, msg: Message, copy: bool) {
        let now = self.now_ms();
        let from_id = self.slots[from].id;
        if let Message::BlockData { block, .. } = &msg {
            let key = (to, self.slots[to].epoch, *block.id());
            self.evidence.received.insert(key, ());
        }
        let s = &mut self.slots[to];
        let out = s.engine.on_message(from_id, msg, &mut s.chain, now);
        self.honest_outputs(to, out, !copy);
    }

    /// A burst of junk from flooder `from` reaches honest node `to`: each
    /// message takes a budget token and the driver's time like any other
    /// (or is dropped, scored as flooding), and the engine handles it.
    fn flood(&mut self, to: usize, from: usize, count: u64) {
        let (vt, vf) = (self.slots[to].validator, self.slots[from].validator);
        let from_id = self.slots[from].id;
        let now = self.now_ms();
        for _ in 0..count {
            let start = self.now_ns.max(self.busy_until_ns[to]);
            if self.board.cut(vt, vf, ms(start)) {
                return; // the connection is closed: the rest never arrives
            }
            if !self.board.take_token(vt, vf, ms(start)) {
                self.busy_until_ns[to] = start + self.limits.dropped_message_cost_ns;
                self.report.messages_over_budget += 1;
                self.penalize(to, vf, Penalty::Flooding, ms(start));
                continue;
            }
            self.busy_until_ns[to] = start + self.limits.message_cost_ns;
            let s = &mut self.slots[to];
            let msg = adversary::junk(&mut self.rng, s.engine.height());
            let out = s.engine.on_message(from_id, msg, &mut s.chain, now);
            for o in out {
                match o {
                    // Answers to the flooder: it never reads them.
                    Output::Send { to: peer, .. } if peer == from_id => {}
                    o => self.honest_outputs(to, vec![o], true),
                }
            }
        }
    }

    /// A flooder's tick: a burst to every honest node still connected.
    fn flood_tick(&mut self, slot: usize) {
        let per_tick = self.config.flood_messages_per_s * TICK_MS / 1000;
        if per_tick == 0 {
            return;
        }
        let now = self.now_ms();
        let vf = self.slots[slot].validator;
        for i in 0..self.honest.len() {
            let to = self.honest[i];
            if self.board.cut(to, vf, now) {
                continue;
            }
            if let Some((start, end, side)) = &self.partition {
                if now >= *start && now < *end && side[vf] != side[to] {
                    continue;
                }
            }
            let (lo, hi) = self.config.latency_ms;
            let at = now + lo + self.rng.below(hi - lo + 1);
            let epochs = (self.slots[slot].epoch, self.slots[to].epoch);
            self.report.flood_messages += per_tick;
            self.push(
                at * NS_PER_MS,
                Event::Flood {
                    to,
                    from: slot,
                    count: per_tick,
                    epochs,
                },
            );
        }
    }

    /// Scores `penalty` against validator `sender` at honest slot `slot`.
    fn penalize(&mut self, slot: usize, sender: usize, penalty: Penalty, at_ms: u64) {
        let receiver = self.slots[slot].validator;
        let sender_honest = !self.byzantine_validator[sender];
        if sender_honest {
            self.report.penalties_of_honest.count(penalty);
        } else {
            self.report.penalties_of_byzantine.count(penalty);
        }
        let Some(ban) = self.board.penalize(receiver, sender, penalty, at_ms) else {
            return;
        };
        self.report.bans += 1;
        // The connection closes: both ends see the other go down.
        let (receiver_id, sender_id) = (self.slots[receiver].id, self.slots[sender].id);
        self.peer_down(slot, &sender_id);
        if !self.byzantine_validator[sender] {
            self.peer_down(sender, &receiver_id);
        }
        if self.config.trace {
            let _ = writeln!(
                self.trace,
                "{at_ms} node {receiver} bans node {sender} ({:?})",
                ban.last
            );
        }
        if sender_honest {
            self.report.honest_bans += 1;
            self.report.violation = Some(format!(
                "ban: honest node {receiver} banned honest node {sender} at {at_ms} ms (last penalty {:?}; honest penalties so far {:?})",
                ban.last, self.report.penalties_of_honest
            ));
        }
    }

    /// What an honest engine said. `scored` is false for what it said
    /// about a network copy: the copy reaches the engine, which must
    /// shrug it off, but its answers and penalties are the network's
    /// doing (TCP never makes one) and leave the node neither as messages
    /// nor as scores.
    fn honest_outputs(&mut self, slot: usize, outs: Vec<Output>, scored: bool) {
        let now = self.now_ms();
        // Execution and commit run at once, as jobs of this node's driver.
        let outs = {
            let s = &mut self.slots[slot];
            run_jobs_inline(&mut s.engine, &mut s.chain, outs, now)
        };
        let mut unreachable: Vec<NodeId> = Vec::new();
        for o in outs {
            if !scored
                && matches!(
                    o,
                    Output::Send { .. } | Output::ServeBlock { .. } | Output::Penalize { .. }
                )
            {
                continue;
            }
            match o {
                // The node answers a query to a peer it has no connection
                // to (crashed, or cut by a ban) with "no vote" at once.
                Output::Send {
                    to,
                    msg: Message::Query { .. },
                } if self.limits.report_unreachable && !self.reachable(slot, &to) => {
                    if !unreachable.contains(&to) {
                        unreachable.push(to);
                    }
                }
                Output::Send { to, msg } => self.send(slot, &to, msg, None),
                // The node serves finalized blocks off its engine's thread;
                // here, at once.
                Output::ServeBlock { to, height, id } => {
                    if let Ok(Some(msg)) = serve_block(&self.slots[slot].chain, height, &id) {
                        self.send(slot, &to, msg, None);
                    }
                }
                Output::Penalize { peer, reason } => {
                    if let Some(&sender) = self.index.get(&peer) {
                        self.penalize(slot, sender, Penalty::Engine(reason), now);
                    }
                }
                Output::Committed { height, id, .. } => self.committed(slot, height, id),
                Output::Revealed { height, block } => {
                    self.slots[slot].chain.record_revealed(height, &block);
                    self.slots[slot].revealed = Some((height, block));
                }
                Output::Halted { reason } => {
                    self.report.violation = Some(format!("node {slot} halted: {reason}"));
                }
                Output::Execute { .. } | Output::Commit { .. } => {
                    unreachable!("run_jobs_inline ran every job")
                }
            }
        }
        for peer in unreachable {
            self.peer_down(slot, &peer);
        }
    }

    /// Whether honest `slot` has a connection to the node with key `to`:
    /// it is up, and neither bans the other. (A partition does not close
    /// connections: they time out only after missed pongs, which the
    /// simulator does not model.)
    fn reachable(&self, slot: usize, to: &NodeId) -> bool {
        let Some(&v) = self.index.get(to) else {
            return false;
        };
        self.slots[v].down_until_ms.is_none()
            && !self.board.cut(self.slots[slot].validator, v, self.now_ms())
    }

    /// Honest `slot` lost its connection to the node with key `peer` (or
    /// found it has none): as the node does, it tells its engine, whose
    /// polls count that peer's missing answers as "no vote" at once.
    fn peer_down(&mut self, slot: usize, peer: &NodeId) {
        let now = self.now_ms();
        let s = &mut self.slots[slot];
        if !self.limits.report_unreachable || s.byzantine || s.down_until_ms.is_some() {
            return;
        }
        let out = s.engine.peer_unreachable(peer, &mut s.chain, now);
        self.honest_outputs(slot, out, true);
    }

    fn committed(&mut self, slot: usize, height: u64, id: BlockId) {
        // Polls to finality: what this node spent since its previous
        // finalization.
        let s = &mut self.slots[slot];
        let now_counts = PollCounts::of(s.engine.stats());
        let spent = now_counts.minus(s.polls_charged).plus(s.polls_carried);
        self.report.finality_polls = self.report.finality_polls.plus(spent);
        self.report.finalizations += 1;
        s.polls_charged = now_counts;
        s.polls_carried = PollCounts::default();
        if self.config.trace {
            let _ = writeln!(
                self.trace,
                "{} node {slot} finalized {height} {}",
                self.now_ms(),
                hex::encode(&id[..6])
            );
        }
        // Agreement.
        match self.finalized.get(&height) {
            Some(prev) if *prev != id => {
                self.report.violation = Some(format!(
                    "agreement: height {height} finalized as {} and {}",
                    hex::encode(prev),
                    hex::encode(id)
                ));
            }
            _ => {
                self.finalized.insert(height, id);
            }
        }
        // Validity: supply conserved.
        let chain = &self.slots[slot].chain;
        let balances: u64 = devnet_account_public_keys()
            .iter()
            .map(|key| chain.balance(key))
            .sum();
        let burned = chain.burned();
        if balances + burned != self.supply {
            self.report.violation = Some(format!(
                "validity: supply {} != {} at height {height}",
                balances + burned,
                self.supply
            ));
        }
    }

    fn byzantine_outputs(&mut self, slot: usize, outs: Vec<Output>) {
        let outs = {
            let now = self.now_ms();
            let s = &mut self.slots[slot];
            run_jobs_inline(&mut s.engine, &mut s.chain, outs, now)
        };
        for o in outs {
            match o {
                Output::Send { to, msg } => self.send(slot, &to, msg, None),
                Output::ServeBlock { to, height, id } if self.kind != Byzantine::Withholding => {
                    if let Ok(Some(msg)) = serve_block(&self.slots[slot].chain, height, &id) {
                        self.send(slot, &to, msg, None);
                    }
                }
                // Its commits, penalties and halts are nobody's concern.
                _ => {}
            }
        }
    }

    /// What Byzantine slot `slot` does with a message from `from`.
    fn byzantine_message(&mut self, slot: usize, from: usize, msg: Message, sent_ns: u64) {
        let from_id = self.slots[from].id;
        let kind = self.kind;
        let vote = |poll_id, height, block| Message::Vote {
            poll_id,
            height,
            block,
        };
        match msg {
            Message::Query { poll_id, height } => match kind {
                Byzantine::Silent | Byzantine::Flooder => {}
                Byzantine::RandomVoter => {
                    let block = Some(adversary::random_id(&mut self.rng));
                    self.send(slot, &from_id, vote(poll_id, height, block), None);
                }
                Byzantine::Equivocator => {
                    let block = match self.slots[slot].engine.preference() {
                        Some(p) if self.rng.chance(1, 2) => Some(p),
                        _ => Some(adversary::random_id(&mut self.rng)),
                    };
                    self.send(slot, &from_id, vote(poll_id, height, block), None);
                }
                Byzantine::EquivocatingProposer | Byzantine::Rebalancer
                    if self.slots[slot]
                        .equivocation
                        .is_some_and(|(h, _)| h == height) =>
                {
                    let own = self.slots[slot].equivocation.map(|(_, ids)| ids);
                    let block = if kind == Byzantine::Rebalancer {
                        let honest = self.honest_preferences(height);
                        adversary::rebalance(&mut self.rng, &honest, own)
                    } else {
                        own.map(|ids| ids[self.rng.below(2) as usize])
                    };
                    self.send(slot, &from_id, vote(poll_id, height, block), None);
                }
                Byzantine::DuplicateAnswers => {
                    let real = self.engine_answer(slot, from_id, poll_id, height);
                    for block in adversary::duplicate_answers(&mut self.rng, real) {
                        self.send(slot, &from_id, vote(poll_id, height, block), None);
                    }
                }
                Byzantine::LateAnswers => {
                    let real = self.engine_answer(slot, from_id, poll_id, height);
                    let at = adversary::late_arrival_ms(
                        &mut self.rng,
                        ms(sent_ns),
                        self.engine_config.poll_timeout_ms,
                    );
                    self.send(slot, &from_id, vote(poll_id, height, real), Some(at));
                }
                _ => self.byzantine_engine(slot, from_id, Message::Query { poll_id, height }),
            },
            Message::GetBlock { .. } if kind == Byzantine::Withholding => {}
            msg => {
                if kind.runs_engine() {
                    self.byzantine_engine(slot, from_id, msg);
                }
            }
        }
    }

    /// Hands `msg` to Byzantine slot `slot`'s engine and sends what it says.
    fn byzantine_engine(&mut self, slot: usize, from: NodeId, msg: Message) {
        let now = self.now_ms();
        let s = &mut self.slots[slot];
        let out = s.engine.on_message(from, msg, &mut s.chain, now);
        self.byzantine_outputs(slot, out);
    }

    /// What slot `slot`'s engine would answer to a query (the engine sees
    /// the query, so it counts as revealing its preference), without
    /// sending it.
    fn engine_answer(
        &mut self,
        slot: usize,
        from: NodeId,
        poll_id: u64,
        height: u64,
    ) -> Option<BlockId> {
        let now = self.now_ms();
        let s = &mut self.slots[slot];
        let out = s
            .engine
            .on_message(from, Message::Query { poll_id, height }, &mut s.chain, now);
        out.into_iter().find_map(|o| match o {
            Output::Send {
                msg: Message::Vote { block, .. },
                ..
            } => block,
            _ => None,
        })
    }

    /// The preference of every live honest node deciding `height`.
    fn honest_preferences(&self, height: u64) -> Vec<BlockId> {
        self.honest
            .iter()
            .map(|s| &self.slots[*s])
            .filter(|s| s.down_until_ms.is_none() && s.engine.height() == height)
            .filter_map(|s| s.engine.preference())
            .collect()
    }

    /// After every step: records heights every honest node finalized, feeds
    /// transactions for the next height, and says whether the run is done.
    fn feed_and_check(&mut self) -> bool {
        let heights = self.honest.iter().map(|s| self.slots[*s].chain.height());
        let (min, top) = heights.fold((u64::MAX, 0), |(lo, hi), h| (lo.min(h), hi.max(h)));
        while self.report.height_done_ms.len() < min as usize {
            self.report.height_done_ms.push(self.now_ms());
        }
        if min >= self.config.target_height {
            return true;
        }
        if self.submitted_for_height <= top {
            self.submitted_for_height = top + 1;
            for _ in 0..self.config.txs_per_height {
                self.submit_one();
            }
        }
        false
    }

    /// One transfer from a random devnet account, given to every live
    /// honest node (as gossip would) and to the Byzantine engines (which
    /// need transactions to propose).
    fn submit_one(&mut self) {
        let now = self.now_ms();
        let rng = &mut self.rng;
        let sender = rng.below(self.nonces.len() as u64) as usize;
        let key = devnet_account_key(sender);
        let tx = TxBody {
            chain_id: self.genesis.chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce: self.nonces[sender],
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
        self.nonces[sender] += 1;
        let engines = self.kind.runs_engine();
        for s in &mut self.slots {
            if s.down_until_ms.is_none() && (!s.byzantine || engines) {
                s.engine.submit(vec![tx.clone()], &s.chain, now);
            }
        }
    }

    fn finish(mut self) -> SimReport {
        let honest: Vec<u64> = self
            .honest
            .iter()
            .map(|s| self.slots[*s].chain.height())
            .collect();
        let report = &mut self.report;
        report.min_height = honest.iter().copied().min().unwrap_or(0);
        report.polls = self
            .honest
            .iter()
            .map(|s| self.slots[*s].engine.stats().polls)
            .sum();
        // Every poll of an honest engine is charged to a finalization or
        // still pending on its node: the bookkeeping loses nothing across
        // crashes.
        let mut pending = PollCounts::default();
        for &s in &self.honest {
            let n = &self.slots[s];
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
        if report.violation.is_none() && report.min_height < self.config.target_height {
            let stuck: Vec<Stuck> = self
                .honest
                .iter()
                .map(|s| &self.slots[*s])
                .zip(0..)
                .filter(|(s, _)| s.chain.height() == report.min_height)
                .map(|(s, i)| Stuck {
                    slot: self.honest[i],
                    epoch: s.epoch,
                    deciding: s.engine.height(),
                    preference: s.engine.preference(),
                })
                .collect();
            let stall = self.evidence.diagnose(&stuck, &self.finalized);
            report.violation = Some(format!(
                "liveness: honest nodes at heights {honest:?} after {} ms, target {} ({stall:?})",
                report.end_ms, self.config.target_height
            ));
            report.stall = Some(stall);
        }
        // Agreement across whole chains at the end (covers heights a node
        // committed while restarting).
        if report.violation.is_none() {
            let first = self.honest[0];
            let reference = self.slots[first].chain.block_ids();
            for &s in &self.honest {
                let ids = self.slots[s].chain.block_ids();
                let common = ids.len().min(reference.len());
                if ids[..common] != reference[..common] {
                    report.violation = Some(format!(
                        "agreement: node {s}'s chain differs from node {first}'s"
                    ));
                }
            }
        }
        report.trace = self.trace;
        self.report
    }
}
