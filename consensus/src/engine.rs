//! The consensus engine of one node: a sans-IO state machine.
//!
//! Inputs are messages from peers ([`Engine::on_message`]), timer ticks
//! ([`Engine::on_tick`]) and transactions from clients or gossip
//! ([`Engine::submit`]); each returns what to do as [`Output`]s — messages to
//! send, peers to penalise, heights committed. Time is a `now_ms` argument;
//! randomness comes from a seeded [`Rng`]. The same engine therefore runs in
//! the node (driven by the io_uring loop) and in the deterministic simulator.
//!
//! Per height:
//! 1. Proposals are leaderless but staggered: at each height every validator
//!    has a rank (validators sorted by `blake3(height ‖ parent ‖ key)`), and
//!    a node with pending transactions and no preference proposes after
//!    `propose_delay_ms + propose_backoff_ms × rank`. Until some block wins a poll, and
//!    only until the node has told any peer its preference, a node prefers
//!    the valid block with the best-ranked proposer it has seen; once it
//!    has voted, only polls move its preference (switching after a vote
//!    broke agreement on a real devnet).
//!    Without the stagger every node would propose at once and prefer its
//!    own block, and with votes split many ways no block could ever reach
//!    `alpha_preference`: Snowball would never leave that state.
//! 2. It keeps up to `polls_in_flight` polls open: each draws `k` votes by
//!    weight ([`Sampler::sample`]: units of weight, the node itself
//!    included, an answer counting once per unit drawn) and asks the peers
//!    drawn for their preferred block at the height; the node's own vote
//!    is its preference. A peer that already finalized the height answers
//!    with the finalized block, so a node that fell behind catches up
//!    through the very same quorums — it accepts a height only after `beta`
//!    consecutive polls in which `alpha_confidence` votes named the same
//!    block.
//! 3. A vote for a block it does not have makes it pull the block (and its
//!    transactions) from the voter. It votes only for blocks it has fully
//!    validated: right height and parent, right state root, every signature
//!    valid, every transaction applying to the finalized parent state.
//! 4. Answers missing at `poll_timeout_ms` count as no vote.
//! 5. When Snowball finalizes a block, the engine commits it through the
//!    [`Chain`] and moves to the next height.
//!
//! Known simplifications (named, not hidden): signature checks and block
//! execution run inline on the caller's thread rather than as worker jobs,
//! and commit is synchronous.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::block::{Block, BlockId};
use crate::genesis::Validator;
use crate::mempool::{Mempool, MempoolConfig};
use crate::rng::Rng;
use crate::sampler::{Sampler, SamplingWeight};
use crate::snowball::{Params, PollOutcome, Snowball};
use crate::state::{Account, ExecError, StateDiff};
use crate::tx::{PublicKey, Transaction, TxId};
use crate::verify::{Verdict, VerifiedIds, Verifier};

/// A node's identity: its public key.
pub type NodeId = PublicKey;

/// Engine settings; each documents its default.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Snowball parameters before small-network capping. Default k=20,
    /// alpha=15, beta=20.
    pub params: Params,
    /// Polls open at once. Default 4.
    pub polls_in_flight: usize,
    /// Time after which a poll closes with the answers it has. Default 400.
    pub poll_timeout_ms: u64,
    /// Wait at a new height before the best-ranked proposer proposes.
    /// Default 50.
    pub propose_delay_ms: u64,
    /// Further wait per rank below the best: rank `r` proposes after
    /// `propose_delay_ms + propose_backoff_ms × r` if it has no preference
    /// by then. It should exceed the time a proposal takes to reach and be
    /// validated by the others, or lower-ranked nodes propose blocks that
    /// lose (each built, executed, pulled and validated for nothing).
    /// Default 50 (the delay).
    pub propose_backoff_ms: u64,
    /// Most transactions in a proposal. Default 4,096.
    pub block_txs_max: usize,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Sender keys the signature verifier keeps decompressed. Default 16,384.
    pub key_cache_entries: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            params: Params::default(),
            polls_in_flight: 4,
            poll_timeout_ms: 400,
            propose_delay_ms: 50,
            propose_backoff_ms: 50,
            block_txs_max: 4096,
            mempool: MempoolConfig::default(),
            key_cache_entries: crate::verify::KEY_CACHE_ENTRIES,
        }
    }
}

/// The finalized chain the engine builds on. The node implements it over
/// `strata-storage`; the simulator over maps.
pub trait Chain {
    /// Chain id transactions must carry.
    fn chain_id(&self) -> u64;
    /// Height of the last finalized block (0 = genesis).
    fn height(&self) -> u64;
    /// Id of the last finalized block.
    fn last_block_id(&self) -> BlockId;
    /// State root after the last finalized block.
    fn state_root(&self) -> [u8; 32];
    /// An account in the finalized state.
    fn account(&self, account: &PublicKey) -> Account;
    /// Executes `txs` against the finalized state.
    ///
    /// # Errors
    /// When a transaction does not apply.
    fn execute(&self, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError>;
    /// Durably commits `block` (which must extend the last finalized block)
    /// with its transactions and state diff.
    ///
    /// # Errors
    /// A storage failure, as text.
    fn commit(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), String>;
    /// A finalized block and its transactions.
    fn finalized(&self, height: u64) -> Option<(Block, Vec<Arc<Transaction>>)>;
    /// A finalized block without its transactions. Answering a query about
    /// a finalized height needs only the block's id, and decoding a full
    /// block's transactions (hashing each for its id) on the engine's
    /// thread for that cost a lagging peer's every poll a whole block of
    /// hashing; stores that can read the block alone override this.
    fn finalized_block(&self, height: u64) -> Option<Block> {
        self.finalized(height).map(|(b, _)| b)
    }
    /// The id of the finalized block at `height`: all a query about a
    /// finalized height needs. Peers one height behind poll about the
    /// block just finalized many times a second; stores that remember
    /// recent ids override this to skip decoding the block (whose id
    /// hashes all its transaction ids).
    fn finalized_id(&self, height: u64) -> Option<BlockId> {
        self.finalized_block(height).map(|b| *b.id())
    }
}

/// Messages between engines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// "Which block do you prefer at `height`?"
    Query {
        /// Poll this answer belongs to.
        poll_id: u64,
        /// Height asked about.
        height: u64,
    },
    /// The answer: a validated preferred (or finalized) block, or none.
    Vote {
        /// Poll answered.
        poll_id: u64,
        /// Height.
        height: u64,
        /// The block, if any.
        block: Option<BlockId>,
    },
    /// Pull of a block by id (and its height, so finalized blocks are found
    /// directly however far back they are).
    GetBlock {
        /// Wanted block.
        id: BlockId,
        /// Its height, as the voter claimed.
        height: u64,
    },
    /// A block with all its transactions, in answer to `GetBlock`.
    BlockData {
        /// The block (boxed: it is the one large message).
        block: Box<Block>,
        /// Its transactions, in the block's id order. Shared: a node
        /// serves its candidate's transactions without copying them, and
        /// a validated block keeps the decoded ones.
        txs: Vec<Arc<Transaction>>,
    },
}

/// Why a peer was penalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Voted for a block that failed validation.
    InvalidBlock,
    /// Sent a block nobody asked for, or one that does not match its id.
    UnsolicitedBlock,
    /// Answered a poll it was not asked, or for the wrong height.
    UnsolicitedVote,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to `to`.
    Send {
        /// Destination.
        to: NodeId,
        /// Message.
        msg: Message,
    },
    /// Score `peer` down.
    Penalize {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: Misbehaviour,
    },
    /// The engine stopped (a commit failed); it ignores all input from now.
    Halted {
        /// Why.
        reason: String,
    },
    /// A block was finalized and committed.
    Committed {
        /// Height.
        height: u64,
        /// Block id.
        id: BlockId,
        /// Transactions in it.
        txs: usize,
    },
}

/// Why a submitted transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Its signature or chain id did not verify.
    #[error("invalid: {0:?}")]
    Invalid(Verdict),
    /// The mempool refused it.
    #[error("rejected by the mempool: {0}")]
    Rejected(crate::mempool::Reject),
}

/// Failed polls in a row, in units of `beta`, after which the engine
/// forgets preference strength (see `Snowball::forget_strength`).
const STALL_POLLS_PER_BETA: usize = 4;

/// A candidate block at the current height.
struct Candidate {
    block: Block,
    txs: Vec<Arc<Transaction>>,
    diff: StateDiff,
}

struct Poll {
    height: u64,
    /// Validators asked, distinct.
    asked: Vec<NodeId>,
    /// How many of the poll's `k` votes each one's answer counts for (its
    /// units of weight drawn, see `Sampler::sample`).
    weight_votes: Vec<usize>,
    votes: Vec<Option<BlockId>>,
    /// Peers that answered (the node's own slot is never counted here).
    answered: usize,
    /// Where the node drew itself, if it did: that slot gets the node's
    /// preference when the poll closes, without any message.
    own_slot: Option<usize>,
    deadline_ms: u64,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Polls opened (queries sent to a sample). A poll still open when its
    /// height is finalized is dropped, so `polls_opened >= polls`.
    pub polls_opened: u64,
    /// Polls closed (all answers in, or timed out) at the height they asked
    /// about; these are the polls Snowball counted.
    pub polls: u64,
    /// Polls that were successful.
    pub polls_successful: u64,
    /// Blocks proposed by this node.
    pub proposed: u64,
    /// Blocks that failed validation.
    pub invalid_blocks: u64,
}

/// One node's consensus engine. See the [module docs](self).
pub struct Engine {
    me: NodeId,
    /// Every validator, this node included (for proposer ranks).
    validator_keys: Vec<PublicKey>,
    config: EngineConfig,
    params: Params,
    sampler: Sampler,
    rng: Rng,
    verifier: Verifier,
    mempool: Mempool,
    /// Height being decided (`chain.height() + 1`).
    height: u64,
    height_started_ms: u64,
    snowball: Snowball,
    /// True once this node has told a peer its preference at this height.
    /// From then on only polls may move the preference: replacing it by a
    /// better-ranked proposal after voting for it would let a peer count
    /// this node's vote for a block it then abandons without any poll
    /// evidence — the devnet caught exactly that splitting finality (one
    /// node finalized the block three others had voted for and dropped).
    revealed: bool,
    candidates: HashMap<BlockId, Candidate>,
    /// Blocks found invalid at this height (never preferred, never pulled
    /// again).
    rejected: HashMap<BlockId, ()>,
    /// Pulls in flight: block id → (peer asked, deadline). A pull whose
    /// answer is lost expires and the block is pulled again from the next
    /// voter.
    pulls: HashMap<BlockId, (NodeId, u64)>,
    polls: BTreeMap<u64, Poll>,
    next_poll_id: u64,
    stats: EngineStats,
    /// Set when a commit failed; the engine then does nothing.
    halted: Option<String>,
}

impl Engine {
    /// An engine for node `me` over `validators`, sampling by `weight`,
    /// starting after the chain's last finalized block.
    pub fn new(
        me: NodeId,
        validators: &[Validator],
        weight: &dyn SamplingWeight,
        config: EngineConfig,
        chain: &impl Chain,
        seed: u64,
        now_ms: u64,
    ) -> Engine {
        let sampler = Sampler::new(validators, &me, weight);
        let params = config.params.capped_for(sampler.len());
        params.validate().expect("capped parameters stay valid");
        Engine {
            me,
            validator_keys: validators.iter().map(|v| v.public_key).collect(),
            params,
            sampler,
            rng: Rng::new(seed),
            verifier: Verifier::with_key_cache(config.key_cache_entries),
            mempool: Mempool::new(config.mempool.clone()),
            height: chain.height() + 1,
            height_started_ms: now_ms,
            snowball: Snowball::new(params),
            revealed: false,
            candidates: HashMap::new(),
            rejected: HashMap::new(),
            pulls: HashMap::new(),
            polls: BTreeMap::new(),
            next_poll_id: 1,
            stats: EngineStats::default(),
            halted: None,
            config,
        }
    }

    /// Shares the node's memory of transactions already found valid (see
    /// [`VerifiedIds`]) with the engine's own verifier, which checks the
    /// signatures of pulled blocks: a transaction the node's workers
    /// verified when it was gossiped is then not checked again, and one
    /// checked here is not checked again when its gossip arrives late.
    pub fn share_verified_ids(&mut self, known: Arc<VerifiedIds>) {
        self.verifier = std::mem::take(&mut self.verifier).sharing(known);
    }

    /// The height being decided.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The Snowball parameters in force (after capping).
    pub fn params(&self) -> Params {
        self.params
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Current preference at the height being decided.
    pub fn preference(&self) -> Option<BlockId> {
        self.snowball.preference()
    }

    /// Verifies and admits client or gossiped transactions; returns how many
    /// were admitted.
    pub fn submit(&mut self, txs: Vec<Transaction>, chain: &impl Chain, now_ms: u64) -> usize {
        self.submit_each(txs, chain, now_ms)
            .iter()
            .filter(|r| r.is_ok())
            .count()
    }

    /// Admits transactions whose signatures and chain id the caller has
    /// already checked with a [`Verifier`] (the node verifies on worker
    /// threads, off the thread that drives the engine). Mempool rules
    /// (nonces, fees, limits) still apply; verdicts in input order.
    pub fn submit_verified(
        &mut self,
        txs: Vec<Transaction>,
        chain: &impl Chain,
        now_ms: u64,
    ) -> Vec<Result<TxId, SubmitError>> {
        txs.into_iter()
            .map(|tx| {
                let id = *tx.id();
                let nonce = chain.account(tx.sender()).nonce;
                self.mempool
                    .insert(tx, nonce, now_ms)
                    .map(|_| id)
                    .map_err(SubmitError::Rejected)
            })
            .collect()
    }

    /// [`Engine::submit`] with a verdict per transaction, in input order:
    /// its id when admitted, else why not (for the node's API and bench).
    pub fn submit_each(
        &mut self,
        txs: Vec<Transaction>,
        chain: &impl Chain,
        now_ms: u64,
    ) -> Vec<Result<TxId, SubmitError>> {
        let verdicts = self.verifier.verify(&txs, chain.chain_id());
        let mut out = Vec::with_capacity(txs.len());
        for (tx, verdict) in txs.into_iter().zip(verdicts) {
            if verdict != Verdict::Valid {
                out.push(Err(SubmitError::Invalid(verdict)));
                continue;
            }
            out.extend(self.submit_verified(vec![tx], chain, now_ms));
        }
        out
    }

    /// Advances timers: proposes, closes late polls, opens new ones.
    pub fn on_tick(&mut self, chain: &mut impl Chain, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        self.mempool.expire(now_ms);
        let my_rank = self.proposer_rank(&self.me, &chain.last_block_id()) as u64;
        if self.snowball.preference().is_none()
            && now_ms
                >= self.height_started_ms
                    + self.config.propose_delay_ms
                    + self.config.propose_backoff_ms * my_rank
            && !self.mempool.is_empty()
        {
            self.propose(chain, now_ms);
        }
        let late: Vec<u64> = self
            .polls
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.close_poll(id, chain, now_ms, &mut out);
        }
        while self.polls.len() < self.config.polls_in_flight && !self.sampler.is_empty() {
            self.open_poll(now_ms, &mut out);
        }
        if self.sampler.is_empty() {
            // A single-validator chain decides alone: its own proposal is final.
            if let Some(id) = self.snowball.preference() {
                self.finalize(id, chain, now_ms, &mut out);
            }
        }
        out
    }

    /// Handles one message from `from`.
    pub fn on_message(
        &mut self,
        from: NodeId,
        msg: Message,
        chain: &mut impl Chain,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        match msg {
            Message::Query { poll_id, height } => {
                let block = if height == self.height {
                    let preference = self.snowball.preference();
                    self.revealed |= preference.is_some();
                    preference
                } else if height >= 1 && height <= chain.height() {
                    chain.finalized_id(height)
                } else {
                    None
                };
                out.push(Output::Send {
                    to: from,
                    msg: Message::Vote {
                        poll_id,
                        height,
                        block,
                    },
                });
            }
            Message::Vote {
                poll_id,
                height,
                block,
            } => self.on_vote(from, poll_id, height, block, chain, now_ms, &mut out),
            Message::GetBlock { id, height } => {
                if let Some(c) = self.candidates.get(&id) {
                    out.push(Output::Send {
                        to: from,
                        msg: Message::BlockData {
                            block: Box::new(c.block.clone()),
                            txs: c.txs.clone(),
                        },
                    });
                } else if let Some((block, txs)) = chain
                    .finalized(height)
                    .filter(|(b, _)| *b.id() == id && height <= chain.height())
                {
                    out.push(Output::Send {
                        to: from,
                        msg: Message::BlockData {
                            block: Box::new(block),
                            txs,
                        },
                    });
                }
            }
            Message::BlockData { block, txs } => {
                self.on_block_data(from, *block, txs, chain, &mut out)
            }
        }
        out
    }

    fn propose(&mut self, chain: &impl Chain, now_ms: u64) {
        let Some(candidate) = self.build_candidate(chain, now_ms) else {
            return;
        };
        let id = *candidate.block.id();
        self.candidates.insert(id, candidate);
        self.consider(id, chain);
        self.stats.proposed += 1;
    }

    /// A proposal from the mempool at the current height, executed against
    /// the finalized state.
    fn build_candidate(&self, chain: &impl Chain, now_ms: u64) -> Option<Candidate> {
        let ids = self.mempool.build_block(self.config.block_txs_max, |pk| {
            let a = chain.account(pk);
            (a.balance, a.nonce)
        });
        if ids.is_empty() {
            return None;
        }
        let txs: Vec<Arc<Transaction>> = ids
            .iter()
            .filter_map(|id| self.mempool.get(id).cloned())
            .collect();
        let block = Block::new(
            self.height,
            chain.last_block_id(),
            chain.state_root(),
            self.me,
            now_ms,
            ids,
        )
        .ok()?;
        // The mempool chose only affordable, contiguous transactions, so a
        // failure here means the chain moved under us; try again next tick.
        let diff = chain.execute(&txs).ok()?;
        Some(Candidate { block, txs, diff })
    }

    /// **Simulation hook for Byzantine proposers**: builds two different
    /// valid blocks at the current height (same transactions, timestamps one
    /// millisecond apart), holds both as candidates so it can serve pulls of
    /// either, and prefers the first. An honest node never calls this.
    pub fn propose_twice_for_simulation(
        &mut self,
        chain: &impl Chain,
        now_ms: u64,
    ) -> Option<[BlockId; 2]> {
        let a = self.build_candidate(chain, now_ms)?;
        let b = self.build_candidate(chain, now_ms + 1)?;
        let ids = [*a.block.id(), *b.block.id()];
        self.candidates.insert(ids[0], a);
        self.candidates.insert(ids[1], b);
        self.snowball.offer(ids[0]);
        Some(ids)
    }

    /// The rank of `proposer` at the current height: its position among the
    /// validators sorted by `blake3(height ‖ parent ‖ key)` (unknown keys
    /// rank last).
    fn proposer_rank(&self, proposer: &PublicKey, parent: &BlockId) -> usize {
        let score = |key: &PublicKey| {
            let mut h = blake3::Hasher::new();
            h.update(&self.height.to_le_bytes());
            h.update(parent);
            h.update(key);
            *h.finalize().as_bytes()
        };
        if !self.validator_keys.contains(proposer) {
            return usize::MAX;
        }
        let mine = score(proposer);
        self.validator_keys
            .iter()
            .filter(|k| score(k) < mine)
            .count()
    }

    /// Takes a newly validated candidate into account: the first one becomes
    /// the preference; until a poll succeeds, a better-ranked proposer's
    /// block replaces it.
    fn consider(&mut self, id: BlockId, chain: &impl Chain) {
        let Some(current) = self.snowball.preference() else {
            self.snowball.offer(id);
            return;
        };
        if current == id || !self.snowball.is_fresh() || self.revealed {
            return;
        }
        let parent = chain.last_block_id();
        let rank_of = |engine: &Engine, block: &BlockId| {
            engine.candidates.get(block).map_or(usize::MAX, |c| {
                engine.proposer_rank(&c.block.header().proposer, &parent)
            })
        };
        if rank_of(self, &id) < rank_of(self, &current) {
            self.snowball.replace_fresh_preference(id);
        }
    }

    fn open_poll(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let (asked, weight_votes): (Vec<NodeId>, Vec<usize>) = self
            .sampler
            .sample(self.params.k, &mut self.rng)
            .into_iter()
            .unzip();
        let poll_id = self.next_poll_id;
        self.next_poll_id += 1;
        self.stats.polls_opened += 1;
        let own_slot = asked.iter().position(|p| *p == self.me);
        for peer in asked.iter().filter(|p| **p != self.me) {
            out.push(Output::Send {
                to: *peer,
                msg: Message::Query {
                    poll_id,
                    height: self.height,
                },
            });
        }
        let n = asked.len();
        self.polls.insert(
            poll_id,
            Poll {
                height: self.height,
                asked,
                weight_votes,
                votes: vec![None; n],
                answered: 0,
                own_slot,
                deadline_ms: now_ms + self.config.poll_timeout_ms,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_vote(
        &mut self,
        from: NodeId,
        poll_id: u64,
        height: u64,
        block: Option<BlockId>,
        chain: &mut impl Chain,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(poll) = self.polls.get_mut(&poll_id) else {
            return; // late answer to a closed poll: not misbehaviour
        };
        let Some(slot) = poll
            .asked
            .iter()
            .position(|p| *p == from)
            .filter(|slot| Some(*slot) != poll.own_slot)
        else {
            out.push(Output::Penalize {
                peer: from,
                reason: Misbehaviour::UnsolicitedVote,
            });
            return;
        };
        if height != poll.height {
            out.push(Output::Penalize {
                peer: from,
                reason: Misbehaviour::UnsolicitedVote,
            });
            return;
        }
        if poll.votes[slot].is_some() {
            return; // duplicate answer
        }
        poll.answered += 1;
        if let Some(id) = block {
            if self.rejected.contains_key(&id) {
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::InvalidBlock,
                });
            } else {
                poll.votes[slot] = Some(id);
                let pulling = self
                    .pulls
                    .get(&id)
                    .is_some_and(|(_, deadline)| *deadline > now_ms);
                if !self.candidates.contains_key(&id) && !pulling {
                    self.pulls
                        .insert(id, (from, now_ms + self.config.poll_timeout_ms));
                    out.push(Output::Send {
                        to: from,
                        msg: Message::GetBlock { id, height },
                    });
                }
            }
        }
        if poll.answered + usize::from(poll.own_slot.is_some()) == poll.asked.len() {
            self.close_poll(poll_id, chain, now_ms, out);
        }
    }

    fn close_poll(
        &mut self,
        poll_id: u64,
        chain: &mut impl Chain,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(poll) = self.polls.remove(&poll_id) else {
            return;
        };
        if poll.height != self.height {
            return;
        }
        self.stats.polls += 1;
        // Only votes for blocks we hold (validated) can carry a quorum: a
        // node never prefers a block it could not check. The node's own
        // vote is its preference now, as a peer's answer is its preference
        // when asked. One entry per vote: an answer counts once per unit of
        // weight drawn (`Sampler::sample`).
        let own = self.snowball.preference();
        let votes: Vec<Option<BlockId>> = poll
            .votes
            .iter()
            .zip(&poll.weight_votes)
            .enumerate()
            .flat_map(|(slot, (vote, n))| {
                let vote = if Some(slot) == poll.own_slot {
                    own
                } else {
                    vote.filter(|id| self.candidates.contains_key(id))
                };
                std::iter::repeat_n(vote, *n)
            })
            .collect();
        match self.snowball.record_poll(&votes) {
            PollOutcome::Unsuccessful => {
                if self.snowball.failures() >= STALL_POLLS_PER_BETA * self.params.beta {
                    // A long run of failed polls: honest nodes may be split
                    // on strengthened preferences. Make the choice fresh
                    // again and fall back to the proposer-rank tie-break,
                    // which every node applies the same way. This is the
                    // one place a revealed preference may move without a
                    // successful poll: only after a long run of failed
                    // polls, never in the first polls of a height (where a
                    // switch split finality on a devnet).
                    self.snowball.forget_strength();
                    self.revealed = false;
                    let ids: Vec<BlockId> = self.candidates.keys().copied().collect();
                    for id in ids {
                        self.consider(id, chain);
                    }
                }
            }
            PollOutcome::Successful { .. } => self.stats.polls_successful += 1,
            PollOutcome::Final(id) => {
                self.stats.polls_successful += 1;
                self.finalize(id, chain, now_ms, out);
            }
        }
    }

    fn on_block_data(
        &mut self,
        from: NodeId,
        block: Block,
        txs: Vec<Arc<Transaction>>,
        chain: &impl Chain,
        out: &mut Vec<Output>,
    ) {
        let id = *block.id();
        if self.pulls.get(&id).map(|(peer, _)| peer) != Some(&from) {
            out.push(Output::Penalize {
                peer: from,
                reason: Misbehaviour::UnsolicitedBlock,
            });
            return;
        }
        self.pulls.remove(&id);
        if self.candidates.contains_key(&id) || block.height() != self.height {
            return; // already have it, or the height moved on meanwhile
        }
        match self.validate(&block, txs, chain) {
            Ok(candidate) => {
                self.candidates.insert(id, candidate);
                self.consider(id, chain);
            }
            Err(()) => {
                self.stats.invalid_blocks += 1;
                self.rejected.insert(id, ());
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::InvalidBlock,
                });
            }
        }
    }

    /// Full validation against the finalized parent state.
    fn validate(
        &mut self,
        block: &Block,
        txs: Vec<Arc<Transaction>>,
        chain: &impl Chain,
    ) -> Result<Candidate, ()> {
        let h = block.header();
        if h.height != self.height
            || h.parent != chain.last_block_id()
            || h.state_root != chain.state_root()
        {
            return Err(());
        }
        let ids: Vec<TxId> = txs.iter().map(|t| *t.id()).collect();
        if ids.as_slice() != block.tx_ids() || ids.is_empty() {
            return Err(());
        }
        // Transactions already in the mempool passed the same check on
        // admission (the id hashes the whole encoding, signature
        // included): only the others are verified. Under load most of a
        // pulled block was gossiped here first, so this halves the
        // signature work.
        let unseen: Vec<Arc<Transaction>> = txs
            .iter()
            .filter(|t| !self.mempool.contains(t.id()))
            .cloned()
            .collect();
        if self
            .verifier
            .verify(&unseen, chain.chain_id())
            .iter()
            .any(|v| *v != Verdict::Valid)
        {
            return Err(());
        }
        let diff = chain.execute(&txs).map_err(|_| ())?;
        Ok(Candidate {
            block: block.clone(),
            txs,
            diff,
        })
    }

    fn finalize(
        &mut self,
        id: BlockId,
        chain: &mut impl Chain,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.candidates.remove(&id) else {
            return;
        };
        let height = c.block.height();
        let ntx = c.txs.len();
        // The senders' next nonces are in the block's own diff: read there
        // rather than from the store after the commit, one lookup per
        // sender fewer on the engine's thread. Done before the commit
        // consumes the diff; if the commit fails the engine halts, and
        // the mempool no longer matters. (Every included sender's account
        // is in the diff; the fallback to the parent state could only
        // leave stale entries, which block building skips and TTL drops.)
        self.mempool.remove_committed(c.block.tx_ids(), |pk| {
            c.diff
                .account(pk)
                .map_or_else(|| chain.account(pk).nonce, |a| a.nonce)
        });
        if let Err(e) = chain.commit(&c.block, &c.txs, c.diff) {
            // A failed commit halts the engine: it can no longer follow the
            // chain safely. The driver must stop the node and reopen.
            self.halted = Some(format!("commit of height {height} failed: {e}"));
            out.push(Output::Halted {
                reason: self.halted.clone().unwrap_or_default(),
            });
            return;
        }
        out.push(Output::Committed {
            height,
            id,
            txs: ntx,
        });
        self.height = chain.height() + 1;
        self.height_started_ms = now_ms;
        self.snowball = Snowball::new(self.params);
        self.revealed = false;
        self.candidates.clear();
        self.rejected.clear();
        self.pulls.clear();
        self.polls.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{devnet_account_key, Genesis};
    use crate::mem_chain::MemChain;
    use crate::sampler::Uniform;
    use crate::tx::{TxBody, TxKind};

    struct Net {
        genesis: Genesis,
        validators: Vec<Validator>,
        /// Validator indices sorted by proposer rank at height 1.
        by_rank: Vec<usize>,
    }

    fn net() -> Net {
        let genesis = Genesis::devnet(4);
        let validators = genesis.validator_set().unwrap();
        let parent = MemChain::new(&genesis).last_block_id();
        let score = |key: &PublicKey| {
            let mut h = blake3::Hasher::new();
            h.update(&1u64.to_le_bytes());
            h.update(&parent);
            h.update(key);
            *h.finalize().as_bytes()
        };
        let mut by_rank: Vec<usize> = (0..validators.len()).collect();
        by_rank.sort_by_key(|i| score(&validators[*i].public_key));
        Net {
            genesis,
            validators,
            by_rank,
        }
    }

    fn engine(n: &Net, index: usize, chain: &MemChain) -> Engine {
        let me = n.validators[index].public_key;
        Engine::new(
            me,
            &n.validators,
            &Uniform,
            EngineConfig::default(),
            chain,
            7,
            0,
        )
    }

    /// The one transaction the proposals of these tests are made of.
    fn shared_tx(n: &Net) -> Transaction {
        let key = devnet_account_key(0);
        TxBody {
            chain_id: n.genesis.chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Delete { key: b"k".to_vec() },
        }
        .sign(&key)
        .unwrap()
    }

    /// A proposer's block at height 1 (from one shared transaction).
    fn proposal(n: &Net, index: usize, chain: &mut MemChain) -> (Engine, BlockId) {
        let mut e = engine(n, index, chain);
        let tx = shared_tx(n);
        assert_eq!(e.submit(vec![tx], chain, 0), 1);
        e.on_tick(chain, 10_000);
        let id = e.preference().expect("proposed");
        (e, id)
    }

    /// Makes `me` learn `block` from `proposer` through a vote in one of its
    /// open polls, a pull and the block data.
    fn learn(
        me: &mut Engine,
        proposer: &mut Engine,
        block: BlockId,
        chain: &mut MemChain,
        polls: &[Output],
    ) {
        let from = proposer.me;
        let poll_id = polls
            .iter()
            .find_map(|o| match o {
                Output::Send {
                    to,
                    msg: Message::Query { poll_id, .. },
                } if *to == from => Some(*poll_id),
                _ => None,
            })
            .expect("a query to the proposer");
        let vote = Message::Vote {
            poll_id,
            height: 1,
            block: Some(block),
        };
        let out = me.on_message(from, vote, chain, 10_001);
        let get = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg, .. } if matches!(msg, Message::GetBlock { .. }) => Some(msg),
                _ => None,
            })
            .expect("a pull of the unknown block");
        let data = proposer.on_message(me.me, get, chain, 10_001);
        let Some(Output::Send { msg, .. }) = data.into_iter().next() else {
            panic!("the proposer serves its block");
        };
        me.on_message(from, msg, chain, 10_002);
    }

    fn run(reveal: bool) -> (Option<BlockId>, BlockId, BlockId) {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let (mut second, second_id) = proposal(&n, n.by_rank[1], &mut chain);
        let mut me = engine(&n, n.by_rank[3], &chain);
        let polls = me.on_tick(&mut chain, 10_000);
        learn(&mut me, &mut second, second_id, &mut chain, &polls);
        assert_eq!(me.preference(), Some(second_id));
        if reveal {
            let asker = n.validators[n.by_rank[2]].public_key;
            let q = Message::Query {
                poll_id: 99,
                height: 1,
            };
            let out = me.on_message(asker, q, &mut chain, 10_003);
            assert!(matches!(
                &out[..],
                [Output::Send { msg: Message::Vote { block: Some(b), .. }, .. }] if *b == second_id
            ));
        }
        learn(&mut me, &mut best, best_id, &mut chain, &polls);
        (me.preference(), best_id, second_id)
    }

    #[test]
    fn a_better_ranked_proposal_replaces_an_unrevealed_preference() {
        let (pref, best, _) = run(false);
        assert_eq!(pref, Some(best));
    }

    #[test]
    fn a_revealed_preference_moves_only_through_polls() {
        let (pref, _, second) = run(true);
        assert_eq!(
            pref,
            Some(second),
            "switched after voting: finality can split"
        );
    }

    /// A node drawn in its own poll counts its preference as that vote,
    /// with no query, and the poll closes once the peers drawn answered:
    /// with k = 2 of 4 validators (so the node is in the draw) one peer's
    /// vote for the node's block is a quorum, and beta = 1 makes it final.
    /// Without the own vote the poll would wait for its timeout and fail.
    #[test]
    fn a_node_drawn_in_its_own_poll_votes_its_preference() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let config = EngineConfig {
            params: Params {
                k: 2,
                alpha_preference: 2,
                alpha_confidence: 2,
                beta: 1,
            },
            ..EngineConfig::default()
        };
        let me = n.validators[0].public_key;
        let mut e = Engine::new(me, &n.validators, &Uniform, config, &chain, 3, 0);
        let tx = shared_tx(&n);
        assert_eq!(e.submit(vec![tx], &chain, 0), 1);
        let polls = e.on_tick(&mut chain, 10_000);
        let id = e.preference().expect("proposed");
        let mut queries: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for o in &polls {
            if let Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } = o
            {
                assert_ne!(*to, me, "never queries itself");
                queries.entry(*poll_id).or_default().push(*to);
            }
        }
        let (poll_id, peer) = queries
            .iter()
            .find_map(|(poll, to)| (to.len() == 1).then(|| (*poll, to[0])))
            .expect("one of the polls drew the node itself");
        let vote = Message::Vote {
            poll_id,
            height: 1,
            block: Some(id),
        };
        let out = e.on_message(peer, vote, &mut chain, 10_050);
        assert!(
            out.contains(&Output::Committed {
                height: 1,
                id,
                txs: 1
            }),
            "{out:?}"
        );
    }
}
