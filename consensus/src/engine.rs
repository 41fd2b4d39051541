//! The consensus engine of one node: a sans-IO state machine.
//!
//! Inputs are messages from peers ([`Engine::on_message`]), timer ticks
//! ([`Engine::on_tick`]) and transactions from clients or gossip
//! ([`Engine::submit`]); each returns what to do as [`Output`]s — messages to
//! send, peers to penalise, heights committed. Time is a `now_ms` argument
//! from a monotonic clock, used for every deadline (polls, pulls, proposal
//! delays, mempool expiry); the wall clock is read by the caller and passed
//! to [`Engine::on_tick`] only to stamp proposed blocks, so a step of the
//! system clock neither stalls nor fires any timer. Randomness comes from
//! a seeded generator. The same engine therefore runs in the node (driven
//! by its owner thread, which feeds it network events, verified
//! transactions and ticks) and in the deterministic simulator.
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
//! Adversaries (docs/consensus.md, "What a peer may cost"): an answer
//! counts once per poll slot, whatever it says (a second answer, even "no
//! vote", is penalised and ignored); only a validator's query reveals this
//! node's preference; a peer that serves a block whose transactions do not
//! match its id is blamed without the block being rejected (it may be
//! valid: it is pulled again from another voter); a fault of the node's own
//! store ([`LocalFault`], or an [`ExecError`] that
//! [`ExecError::is_local_fault`]) halts the engine and is never blamed on
//! the peer that sent the block.
//!
//! Work that reads or writes the store is the caller's, as jobs: the
//! engine asks for a block's execution ([`Output::Execute`], answered with
//! [`Engine::on_executed`]) once the block passed every cheap check, and
//! for the durable commit of a finalized block ([`Output::Commit`],
//! answered with [`Engine::on_committed`]). The node runs executions on a
//! worker thread; [`run_jobs_inline`] runs both at once on the caller's
//! thread (the simulator, tests, tools). Between a `Commit` and its
//! answer the engine is between heights: messages, checked blocks and
//! unreachable peers are kept (up to [`DEFERRED_INPUTS_MAX`]) and handled
//! in order once the commit is done, so a query for the next height is
//! answered late rather than with "no vote"; ticks do nothing.
//! Signatures of a pulled block are checked here unless the caller
//! checked them already ([`Engine::on_checked_block`]; the node does so
//! on its workers), and finalized blocks are served by the caller
//! ([`Output::ServeBlock`], [`serve_block`]) so a disk read for a peer
//! never runs on the engine's thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::block::{Block, BlockHeader, BlockId};
use crate::genesis::Validator;
use crate::mempool::{Mempool, MempoolConfig};
use crate::rng::Rng;
use crate::rtt::PeerRtts;
use crate::sampler::{Sampler, SamplingWeight};
use crate::snowball::{Params, PollOutcome, Snowball};
use crate::state::{Account, BlockEnv, ExecError, StateDiff};
use crate::tx::{PublicKey, Transaction, TxId, TxKind};
use crate::verify::{Verdict, VerifiedIds, Verifier};

/// A node's identity: its public key.
pub type NodeId = PublicKey;

/// Engine settings; each documents its default.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Snowball parameters before small-network capping. Default k=20,
    /// alpha=15, beta=20.
    pub params: Params,
    /// Polls open at once. Default 4. Not derived from round trips, and
    /// not to be raised for speed: where a poll draws every peer (k ≥ the
    /// other validators, as in any small network), polls open together
    /// count the same answers, so β successes are only about
    /// β / `polls_in_flight` independent looks at the network. In the
    /// simulator's 4-validator slow-block model, 6 open broke agreement
    /// in 2 seeds of 100 and 10 open in 5 (docs/consensus.md, "Polls in
    /// flight and agreement").
    pub polls_in_flight: usize,
    /// Least time after which a poll closes with the answers it has; also
    /// the wait for a peer not measured yet. Default 400. The wait for a
    /// measured peer is two round trips and four deviations
    /// ([`PeerRtts::timeout_ms`]), when longer.
    pub poll_timeout_ms: u64,
    /// Most time a poll waits for a slow peer, however long its round
    /// trips. Default 2,000: a validator that answers ever later can make
    /// the polls it is drawn in (whose outcome hangs on its answer) wait
    /// this long, and no longer.
    pub poll_timeout_max_ms: u64,
    /// Validators a node sends its own proposal to as soon as it is
    /// executed, so that they need not learn of it from a vote and pull
    /// it (a query's round trip and a pull's). Default 16, drawn at
    /// random when there are more; the rest pull it from voters as
    /// before. 0 turns pushes off.
    pub proposal_push_peers: usize,
    /// Wait at a new height before the best-ranked proposer proposes.
    /// Default 50.
    pub propose_delay_ms: u64,
    /// Further wait per rank below the best: rank `r` proposes after
    /// `propose_delay_ms + propose_backoff_ms × r` if it has no preference
    /// by then. It should exceed the time a proposal takes to reach and be
    /// validated by the others, or lower-ranked nodes propose blocks that
    /// lose (each built, executed, pulled and validated for nothing).
    /// Default 50 (the delay). The engine uses the median measured round
    /// trip instead when that is longer (a push takes ½ RTT, and heights
    /// start up to ½ RTT apart at different validators).
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
            poll_timeout_max_ms: 2_000,
            proposal_push_peers: 16,
            propose_delay_ms: 50,
            propose_backoff_ms: 50,
            block_txs_max: 4096,
            mempool: MempoolConfig::default(),
            key_cache_entries: crate::verify::KEY_CACHE_ENTRIES,
        }
    }
}

/// A failure of this node's own chain store (a read or write of its disk
/// failed, or a record is corrupt): never a peer's fault. The engine halts
/// on one rather than blame or ban anyone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("local chain store failure: {0}")]
pub struct LocalFault(pub String);

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
    /// An account in the finalized state (the default account when absent).
    ///
    /// # Errors
    /// When the store cannot be read or the record is corrupt.
    fn account(&self, account: &PublicKey) -> Result<Account, LocalFault>;
    /// Executes `txs` against the finalized state (the job of an
    /// [`Output::Execute`]; the engine never calls it).
    ///
    /// # Errors
    /// When a transaction does not apply, or (an error that
    /// [`ExecError::is_local_fault`]) the state cannot be read.
    fn execute(&self, env: BlockEnv, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError>;
    /// Durably commits `block` (which must extend the last finalized block)
    /// with its transactions and state diff (the job of an
    /// [`Output::Commit`]; the engine never calls it).
    ///
    /// # Errors
    /// A storage failure.
    fn commit(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), LocalFault>;
    /// A finalized block and its transactions (`None` above the height).
    ///
    /// # Errors
    /// When the store cannot be read or the record is corrupt.
    fn finalized(&self, height: u64) -> Result<Option<StoredBlock>, LocalFault>;
    /// A finalized block without its transactions. Answering a query about
    /// a finalized height needs only the block's id, and decoding a full
    /// block's transactions (hashing each for its id) on the engine's
    /// thread for that cost a lagging peer's every poll a whole block of
    /// hashing; stores that can read the block alone override this.
    ///
    /// # Errors
    /// As [`Chain::finalized`].
    fn finalized_block(&self, height: u64) -> Result<Option<Block>, LocalFault> {
        Ok(self.finalized(height)?.map(|(b, _)| b))
    }
    /// The id of the finalized block at `height`: all a query about a
    /// finalized height needs. Peers one height behind poll about the
    /// block just finalized many times a second; stores that remember
    /// recent ids override this to skip decoding the block (whose id
    /// hashes all its transaction ids).
    ///
    /// # Errors
    /// As [`Chain::finalized`].
    fn finalized_id(&self, height: u64) -> Result<Option<BlockId>, LocalFault> {
        Ok(self.finalized_block(height)?.map(|b| *b.id()))
    }
}

/// A finalized block with its transactions.
pub type StoredBlock = (Block, Vec<Arc<Transaction>>);

/// The answer to a peer's [`Message::GetBlock`] for finalized block `id`
/// at `height`: the block with its transactions, or `None` when this chain
/// has no such block there. What a caller runs for [`Output::ServeBlock`];
/// the id is compared before the transactions are read.
///
/// # Errors
/// A failure of the local store.
pub fn serve_block(
    chain: &impl Chain,
    height: u64,
    id: &BlockId,
) -> Result<Option<Message>, LocalFault> {
    if height == 0 || height > chain.height() || chain.finalized_id(height)? != Some(*id) {
        return Ok(None);
    }
    Ok(chain
        .finalized(height)?
        .filter(|(b, _)| b.id() == id)
        .map(|(block, txs)| Message::BlockData {
            block: Box::new(block),
            txs,
        }))
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

/// One line for traces and logs: ids as their first 3 bytes in hex (as
/// the simulator's preference lines show them), never whole byte arrays.
impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |id: &BlockId| hex::encode(&id[..3]);
        match self {
            Message::Query { poll_id, height } => write!(f, "query #{poll_id} h{height}"),
            Message::Vote {
                poll_id,
                height,
                block,
            } => match block {
                Some(b) => write!(f, "vote #{poll_id} h{height} {}", short(b)),
                None => write!(f, "vote #{poll_id} h{height} none"),
            },
            Message::GetBlock { id, height } => write!(f, "get-block {} h{height}", short(id)),
            Message::BlockData { block, txs } => write!(
                f,
                "block {} h{} ({} txs)",
                short(block.id()),
                block.header().height,
                txs.len()
            ),
        }
    }
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
    /// Answered the same poll twice (honest nodes answer a query once).
    DuplicateVote,
    /// Served a block whose transactions are not the ones its id names.
    /// The block itself may be valid: it is pulled again elsewhere.
    WrongBlockData,
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
    /// Serve peer `to` the finalized block `id` at `height` (a
    /// [`Message::BlockData`], see [`serve_block`]), if this chain has it.
    /// Left to the caller so that the read, which may go to disk, runs off
    /// the engine's thread and within the caller's budget for that peer.
    ServeBlock {
        /// The peer that asked.
        to: NodeId,
        /// Height it named.
        height: u64,
        /// Block it asked for.
        id: BlockId,
    },
    /// This node revealed `block` as its preference at `height` (answered
    /// a validator's query with it) for the first time. Record it where
    /// a restart finds it and hand it to [`Engine::resume_revealed`]: a
    /// validator that forgets what it voted can carry others away from a
    /// block some node already finalized on that vote. An unsynced write
    /// is enough against a process crash.
    Revealed {
        /// The height.
        height: u64,
        /// The block revealed.
        block: BlockId,
    },
    /// The engine stopped (its store failed); it ignores all input from now.
    Halted {
        /// Why.
        reason: String,
    },
    /// Execute `txs` (a block at the height being decided, checked in
    /// every other way) against the finalized state, and hand the result
    /// to [`Engine::on_executed`] with `id`. May run on another thread;
    /// a result that comes back after the height moved on is ignored.
    Execute {
        /// The block.
        id: BlockId,
        /// Its height and time, which contracts read.
        env: BlockEnv,
        /// Its transactions, in order.
        txs: Vec<Arc<Transaction>>,
    },
    /// Durably commit finalized `block` with its transactions and state
    /// diff ([`Chain::commit`]), then call [`Engine::on_committed`]. Until
    /// then the engine is between heights (see the module docs).
    Commit {
        /// The finalized block.
        block: Box<Block>,
        /// Its transactions.
        txs: Vec<Arc<Transaction>>,
        /// What executing them changed.
        diff: StateDiff,
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
    /// The node could not read the sender's account: its own store failed
    /// (the engine has halted).
    #[error("node failure: {0}")]
    Local(LocalFault),
}

/// Failed polls in a row, in units of `beta`, after which the engine
/// forgets preference strength (see `Snowball::forget_strength`).
const STALL_POLLS_PER_BETA: usize = 4;

/// Poll timeouts without a successful poll after which the stall breaker
/// may move a preference whatever made the polls fail (see `close_poll`).
const STALL_POLL_TIMEOUTS: u64 = 8;
/// How many times as many split polls (or as long a stall) the stall
/// breaker needs before it moves a preference off a block that won a
/// successful poll at this node.
const STALL_CONFIDENT_FACTOR: usize = 4;

/// Closed polls whose late answers are still measured as round trips: a
/// few rounds of β polls.
const CLOSED_POLLS_KEPT: usize = 64;

/// Block pulls in flight at once, over all voters; past it, votes for
/// unknown blocks still count but pull nothing until pulls expire.
const PULLS_MAX: usize = 256;
/// Block pulls in flight to one voter.
const PULLS_PER_PEER_MAX: usize = 4;
/// Distinct voters remembered as asked for one block (the oldest is
/// forgotten past it).
const PULL_ASKS_MAX: usize = 8;
/// The longest wait, in poll timeouts, before a voter that was asked for a
/// block and did not deliver it is asked again. The wait doubles with each
/// ask of that voter: 1, 2, then this. A slow honest server (the block's
/// proposer, often its only holder, on a starved machine) is asked again
/// as soon as its first ask expires; a voter that names a block but
/// withholds it soon waits while other voters are asked first.
const PULL_REASK_TIMEOUTS: u64 = 4;

/// Inputs kept while a commit is out, at most: past it, the newest are
/// dropped (and counted in [`EngineStats::inputs_dropped`]). A commit takes
/// milliseconds; the node's own queues bound what can arrive meanwhile far
/// below this.
pub const DEFERRED_INPUTS_MAX: usize = 65_536;

/// An input that arrived while a commit was out.
enum Deferred {
    Message(NodeId, Message),
    CheckedBlock(NodeId, Block, Vec<Arc<Transaction>>, bool),
    Unreachable(NodeId),
}

/// A block whose execution job is out.
struct Executing {
    block: Block,
    txs: Vec<Arc<Transaction>>,
    /// The voter it was pulled from; `None` for this node's own proposal.
    from: Option<NodeId>,
}

/// The finalized block whose commit job is out.
struct Committing {
    height: u64,
    id: BlockId,
    /// When the block was found final: the next height's clock (its
    /// proposal delay) starts here, not when the commit is done, so the
    /// commit's time counts toward the delay.
    decided_ms: u64,
    tx_ids: Vec<TxId>,
    /// Accounts the block changed, as its diff writes them (for the
    /// mempool, once the commit is done).
    touched: Vec<(PublicKey, Account)>,
}

/// A candidate block at the current height.
struct Candidate {
    block: Block,
    txs: Vec<Arc<Transaction>>,
    diff: StateDiff,
}

/// One block pulled at the current height.
struct Pull {
    /// Distinct voters asked for it, each with when it was last asked and
    /// how many times; the latest ask last. At most [`PULL_ASKS_MAX`]: the
    /// oldest is forgotten first, so asks never run out for the height.
    asked: Vec<(NodeId, u64, u32)>,
    /// When the latest ask expires (monotonic ms).
    deadline_ms: u64,
    /// The block arrived (from one of `asked`); copies from the others are
    /// late, not unsolicited.
    received: bool,
}

impl Pull {
    fn in_flight_to(&self, peer: &NodeId, now_ms: u64) -> bool {
        !self.received && self.deadline_ms > now_ms && self.asked.last().map(|a| &a.0) == Some(peer)
    }

    fn was_asked(&self, peer: &NodeId) -> bool {
        self.asked.iter().any(|(p, ..)| p == peer)
    }
}

/// What block data from a peer is to this engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockExpectation {
    /// Pulled from that peer and not yet received: take it.
    Wanted,
    /// Pulled from that peer, but already received from another voter it
    /// was pulled from: a late answer, to ignore without blame.
    Late,
    /// Never asked of that peer at this height (or already rejected):
    /// unsolicited.
    Unsolicited,
}

struct Poll {
    height: u64,
    /// Validators asked, distinct.
    asked: Vec<NodeId>,
    /// How many of the poll's `k` votes each one's answer counts for (its
    /// units of weight drawn, see `Sampler::sample`).
    weight_votes: Vec<usize>,
    votes: Vec<Option<BlockId>>,
    /// Which slots have answered: each counts once, whatever it said ("no
    /// vote" included), so a peer cannot close a poll early by answering
    /// again.
    answered: Vec<bool>,
    /// Slots that answered (the node's own slot is never counted here).
    answered_count: usize,
    /// Where the node drew itself, if it did: that slot gets the node's
    /// preference when the poll closes, without any message.
    own_slot: Option<usize>,
    /// When the queries went out: an answer's round trip is measured from
    /// here.
    opened_ms: u64,
    deadline_ms: u64,
}

/// Where the height being decided stands ([`Engine::height_report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeightReport {
    /// The height being decided.
    pub height: u64,
    /// Valid blocks held for it.
    pub candidates: usize,
    /// This node's preference.
    pub preference: Option<BlockId>,
    /// Successful polls in a row (finality at `beta`).
    pub run: usize,
    /// Failed polls in a row.
    pub failures: usize,
    /// Failed polls that failed on disagreement since the last success.
    pub split_polls: usize,
    /// Polls open.
    pub polls_open: usize,
    /// Block pulls not answered yet.
    pub pulls_out: usize,
    /// A vote resumed from before a restart is still answered.
    pub sticky: bool,
    /// The preference was revealed to a validator.
    pub revealed: bool,
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
    /// Inputs dropped because more than [`DEFERRED_INPUTS_MAX`] arrived
    /// while a commit was out.
    pub inputs_dropped: u64,
    /// Proposals taken as their proposers pushed them (not pulled).
    pub pushes_taken: u64,
    /// The median round trip to the peers measured, in ms (a gauge; 0
    /// before any answer). See [`PeerRtts::typical_ms`].
    pub rtt_median_ms: u64,
}

/// One node's consensus engine. See the [module docs](self).
pub struct Engine {
    me: NodeId,
    /// Every validator, this node included (for proposer ranks).
    validator_keys: Vec<PublicKey>,
    /// The same keys, for membership checks of queriers.
    validator_set: HashSet<PublicKey>,
    config: EngineConfig,
    params: Params,
    sampler: Sampler,
    rng: Rng,
    verifier: Verifier,
    mempool: Mempool,
    /// Height being decided (`chain.height() + 1`).
    height: u64,
    height_started_ms: u64,
    /// Failed polls since the last successful one at this height that
    /// failed on disagreement: even had every missing answer gone to the
    /// leading block, it would not have reached alpha (see `close_poll`).
    split_polls: usize,
    /// When a poll last succeeded at this height (or the height started).
    last_success_ms: u64,
    snowball: Snowball,
    /// True once this node has told a peer its preference at this height.
    /// From then on only polls may move the preference: replacing it by a
    /// better-ranked proposal after voting for it would let a peer count
    /// this node's vote for a block it then abandons without any poll
    /// evidence — the devnet caught exactly that splitting finality (one
    /// node finalized the block three others had voted for and dropped).
    revealed: bool,
    /// The block last reported in [`Output::Revealed`] at this height.
    revealed_block: Option<BlockId>,
    /// A preference revealed before a restart that is not this engine's
    /// preference yet (see [`Engine::resume_revealed`]).
    sticky: Option<BlockId>,
    candidates: HashMap<BlockId, Candidate>,
    /// Blocks at this height whose execution job is out.
    executing: HashMap<BlockId, Executing>,
    /// The finalized block whose commit job is out, if any.
    committing: Option<Committing>,
    /// Inputs that arrived while `committing`, oldest first.
    deferred: std::collections::VecDeque<Deferred>,
    /// Blocks found invalid at this height (never preferred, never pulled
    /// again).
    rejected: HashMap<BlockId, ()>,
    /// Block pulls at this height: a pull whose answer is late expires and
    /// the block is pulled again from the next voter; every voter asked
    /// may still answer (late is not unsolicited).
    pulls: HashMap<BlockId, Pull>,
    /// The pulls of the previous height (see [`Engine::block_expectation`]).
    previous_pulls: HashMap<BlockId, Pull>,
    polls: BTreeMap<u64, Poll>,
    next_poll_id: u64,
    /// The finalized parent's timestamp: a block at this height is stamped
    /// no earlier (see `validate`).
    parent_timestamp_ms: u64,
    /// Round trips to peers, from this node's polls.
    rtts: PeerRtts,
    /// Recently closed polls with peers that had not answered: (poll id,
    /// when opened, those peers), at most [`CLOSED_POLLS_KEPT`], so a late
    /// answer is still a round-trip sample.
    closed_polls: std::collections::VecDeque<(u64, u64, Vec<NodeId>)>,
    /// Proposers whose pushed proposal was taken at this height: one each
    /// (a second, even a different block, is ignored unread).
    pushes: HashSet<NodeId>,
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
            validator_set: validators.iter().map(|v| v.public_key).collect(),
            params,
            sampler,
            rng: Rng::new(seed),
            verifier: Verifier::with_key_cache(config.key_cache_entries),
            mempool: Mempool::new(config.mempool.clone()),
            height: chain.height() + 1,
            height_started_ms: now_ms,
            split_polls: 0,
            last_success_ms: now_ms,
            snowball: Snowball::new(params),
            revealed: false,
            revealed_block: None,
            sticky: None,
            candidates: HashMap::new(),
            executing: HashMap::new(),
            committing: None,
            deferred: std::collections::VecDeque::new(),
            rejected: HashMap::new(),
            pulls: HashMap::new(),
            previous_pulls: HashMap::new(),
            polls: BTreeMap::new(),
            next_poll_id: 1,
            parent_timestamp_ms: chain
                .finalized_block(chain.height())
                .ok()
                .flatten()
                .map_or(0, |b| b.header().timestamp_ms),
            rtts: PeerRtts::default(),
            closed_polls: std::collections::VecDeque::new(),
            pushes: HashSet::new(),
            stats: EngineStats::default(),
            halted: None,
            config,
        }
    }

    /// Resumes the preference this node revealed at `height` before it
    /// restarted (what it recorded from [`Output::Revealed`]); ignored
    /// unless `height` is the one being decided. Until that block is
    /// validated again the node answers queries with it, proposes nothing
    /// of its own, and when the block is back, prefers it whatever the
    /// proposer ranks say. If no peer ever names it again (it is not
    /// pulled back), the stall breaker lets it go. Without this, a
    /// restarted validator voted for whatever it saw first, and with
    /// enough weight carried the undecided away from a block a node had
    /// finalized with its earlier vote (the simulator broke agreement
    /// that way, with no Byzantine node).
    pub fn resume_revealed(&mut self, height: u64, block: BlockId) {
        if height != self.height {
            return;
        }
        self.revealed = true;
        self.revealed_block = Some(block);
        if self.candidates.contains_key(&block) {
            self.snowball.prefer(block);
        } else {
            self.sticky = Some(block);
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
        EngineStats {
            rtt_median_ms: self.rtts.typical_ms().unwrap_or(0),
            ..self.stats
        }
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Current preference at the height being decided.
    pub fn preference(&self) -> Option<BlockId> {
        self.snowball.preference()
    }

    /// Where the height being decided stands, for an operator's log when
    /// it takes long.
    pub fn height_report(&self) -> HeightReport {
        HeightReport {
            height: self.height,
            candidates: self.candidates.len(),
            preference: self.snowball.preference(),
            run: self.snowball.run(),
            failures: self.snowball.failures(),
            split_polls: self.split_polls,
            polls_open: self.polls.len(),
            pulls_out: self.pulls.values().filter(|p| !p.received).count(),
            sticky: self.sticky.is_some(),
            revealed: self.revealed,
        }
    }

    /// Why the engine halted, once it has (a failure of the local store);
    /// it then ignores all input. The caller stops the node.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Halts on a failure of the local store: it can no longer follow the
    /// chain safely, and no peer is to blame.
    fn halt(&mut self, what: &str, fault: &dyn std::fmt::Display, out: &mut Vec<Output>) {
        if self.halted.is_none() {
            let reason = format!("{what}: {fault}");
            self.halted = Some(reason.clone());
            out.push(Output::Halted { reason });
        }
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
                let account = chain.account(tx.sender()).map_err(|e| {
                    // Reported through `halted()`: no output goes back from
                    // here, and the caller checks after every call.
                    self.halt("reading an account for admission", &e, &mut Vec::new());
                    SubmitError::Local(e)
                })?;
                self.mempool
                    .insert(tx, account, now_ms)
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
    /// `now_ms` is the monotonic clock every deadline runs on; `wall_ms`
    /// (ms since the Unix epoch) only stamps a block proposed now.
    pub fn on_tick(&mut self, chain: &mut impl Chain, now_ms: u64, wall_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() || self.committing.is_some() {
            return out;
        }
        self.mempool.expire(now_ms);
        // A node that is not a validator follows the chain and never
        // proposes (its rank is `usize::MAX`: the turn arithmetic below
        // overflowed on it, panicking in debug builds and in release
        // wrapping to an early turn, so a follower proposed blocks).
        let my_rank = self.proposer_rank(&self.me, &chain.last_block_id());
        let is_validator = my_rank != usize::MAX;
        let proposing = self.executing.values().any(|e| e.from.is_none());
        // The turn (a median of round trips, a scan of the pulls) is
        // worked out only when nothing else stops a proposal.
        if is_validator
            && self.snowball.preference().is_none()
            && self.sticky.is_none()
            && !proposing
            && self.mempool.has_ready()
            && now_ms >= self.proposal_turn_ms(my_rank, now_ms)
        {
            self.propose(chain, wall_ms, &mut out);
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
        if self.committing.is_some() {
            return out; // a late poll finalized the height
        }
        if self.pulls.len() >= PULLS_MAX / 2 {
            // Keep received ones (late copies stay blameless) and live asks.
            self.pulls
                .retain(|_, p| p.received || p.deadline_ms > now_ms);
        }
        while self.polls.len() < self.config.polls_in_flight && !self.sampler.is_empty() {
            self.open_poll(now_ms, &mut out);
        }
        if self.sampler.is_empty() {
            // A single-validator chain decides alone: its own proposal is final.
            if let Some(id) = self.snowball.preference() {
                self.finalize(id, now_ms, &mut out);
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
        if self.committing.is_some() {
            self.defer(Deferred::Message(from, msg));
            return out;
        }
        match msg {
            Message::Query { poll_id, height } => {
                let block = if height == self.height {
                    // A preference revealed before a restart is answered
                    // until it is back (see `Engine::resume_revealed`).
                    let preference = self.sticky.or(self.snowball.preference());
                    // Only a validator's query reveals the preference: a
                    // vote counts only in a validator's poll, and letting
                    // anyone pin this node's preference by asking would let
                    // any peer block the best-ranked proposal.
                    if self.validator_set.contains(&from) {
                        if let Some(block) = preference {
                            if self.revealed_block != Some(block) {
                                // The node records what it revealed, so a
                                // restart does not forget its vote.
                                self.revealed_block = Some(block);
                                out.push(Output::Revealed {
                                    height: self.height,
                                    block,
                                });
                            }
                            self.revealed = true;
                        }
                    }
                    preference
                } else if height >= 1 && height <= chain.height() {
                    match chain.finalized_id(height) {
                        Ok(id) => id,
                        Err(e) => {
                            self.halt("reading a finalized block id", &e, &mut out);
                            return out;
                        }
                    }
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
                } else if height >= 1 && height <= chain.height() {
                    out.push(Output::ServeBlock {
                        to: from,
                        height,
                        id,
                    });
                }
                // Anything else is a block this node does not have (a
                // losing candidate it never saw, or a future height):
                // no answer, and the puller asks another voter.
            }
            Message::BlockData { block, txs } => {
                self.on_block_data(from, *block, txs, None, chain, now_ms, &mut out)
            }
        }
        out
    }

    /// Peer `peer` cannot be reached (the caller has no connection to it):
    /// its unanswered slots in every open poll count as "no vote" now,
    /// rather than after the poll timeout, and polls whose outcome that
    /// settles close. A crashed or unreachable validator then costs polls
    /// nothing; one that is connected but silent still costs the timeout
    /// of the polls it is drawn in, unless the others settle them.
    pub fn peer_unreachable(
        &mut self,
        peer: &NodeId,
        chain: &mut impl Chain,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        if self.committing.is_some() {
            self.defer(Deferred::Unreachable(*peer));
            return out;
        }
        let mut settled = Vec::new();
        for (poll_id, poll) in self.polls.iter_mut() {
            for slot in 0..poll.asked.len() {
                if poll.asked[slot] == *peer && Some(slot) != poll.own_slot && !poll.answered[slot]
                {
                    poll.answered[slot] = true;
                    poll.answered_count += 1;
                    settled.push(*poll_id);
                }
            }
        }
        for poll_id in settled {
            let complete = self.polls.get(&poll_id).is_some_and(|p| {
                p.answered_count + usize::from(p.own_slot.is_some()) == p.asked.len()
            });
            if complete || self.decided(poll_id) {
                self.close_poll(poll_id, chain, now_ms, &mut out);
            }
        }
        out
    }

    /// Whether block data with `header` from `from` is wanted: a block
    /// pulled from that peer, or a validator's own proposal at the height
    /// being decided, pushed by it (the first it pushes at the height). A
    /// caller that checks signatures elsewhere asks this first, with the
    /// header alone ([`crate::wire::block_data_header`]), so an unwanted
    /// block costs it no decoding (see [`Engine::on_checked_block`]).
    pub fn block_expectation(&self, from: &NodeId, header: &BlockHeader) -> BlockExpectation {
        let id = &header.id();
        let pull = self.pulls.get(id);
        if let Some(p) = pull.filter(|p| p.was_asked(from)) {
            return if p.received {
                BlockExpectation::Late
            } else {
                BlockExpectation::Wanted
            };
        }
        if header.proposer == *from && from != &self.me && self.validator_set.contains(from) {
            let held = self.candidates.contains_key(id)
                || self.executing.contains_key(id)
                || self.rejected.contains_key(id)
                || pull.is_some_and(|p| p.received);
            return if header.height == self.height && !held && !self.pushes.contains(from) {
                BlockExpectation::Wanted
            } else {
                // Another height (the push crossed a finality, this
                // node's or the proposer's), a block held already, or a
                // second push at the height (a restarted proposer
                // proposes again): ignored unread, and without blame, as
                // honest proposers do all of these.
                BlockExpectation::Late
            };
        }
        // Pulled at the previous height: the answer crossed this node's
        // finality (honest, and common under load).
        if self
            .previous_pulls
            .get(id)
            .is_some_and(|p| p.was_asked(from))
        {
            return BlockExpectation::Late;
        }
        BlockExpectation::Unsolicited
    }

    /// [`Message::BlockData`] from `from` whose transactions' signatures
    /// the caller has already checked: `signatures_valid` says whether
    /// every one verified. The node checks them on its worker threads,
    /// after [`Engine::expects_block`], so a peer's block costs the
    /// engine's thread no signature work.
    pub fn on_checked_block(
        &mut self,
        from: NodeId,
        block: Block,
        txs: Vec<Arc<Transaction>>,
        signatures_valid: bool,
        chain: &mut impl Chain,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_none() && self.committing.is_some() {
            self.defer(Deferred::CheckedBlock(from, block, txs, signatures_valid));
        } else if self.halted.is_none() {
            self.on_block_data(
                from,
                block,
                txs,
                Some(signatures_valid),
                chain,
                now_ms,
                &mut out,
            );
        }
        out
    }

    /// When a validator of rank `my_rank` may propose at this height:
    /// after `propose_delay_ms` and a back-off per rank.
    fn proposal_turn_ms(&self, my_rank: usize, now_ms: u64) -> u64 {
        // At least a round trip per rank: the best-ranked block needs ½
        // RTT to be pushed here, and heights start up to ½ RTT apart at
        // different validators.
        let backoff_ms = self
            .config
            .propose_backoff_ms
            .max(self.rtts.typical_ms().unwrap_or(0));
        let my_turn_ms = self
            .height_started_ms
            .saturating_add(self.config.propose_delay_ms)
            .saturating_add(backoff_ms.saturating_mul(my_rank as u64));
        // A block some voter prefers is on its way here (pulled, not yet
        // received or still being checked): proposing now would only add
        // a competing block, built and validated everywhere for nothing.
        // Wait for it, but at most one more backoff, so voters naming
        // blocks they never serve cannot stop this node from proposing.
        let block_coming = self
            .pulls
            .values()
            .any(|p| !p.received && p.deadline_ms > now_ms);
        if block_coming {
            my_turn_ms.saturating_add(backoff_ms)
        } else {
            my_turn_ms
        }
    }

    /// Builds a proposal and asks for its execution: it becomes a
    /// candidate (and this node's preference, if it has none) in
    /// [`Engine::on_executed`].
    fn propose(&mut self, chain: &impl Chain, wall_ms: u64, out: &mut Vec<Output>) {
        let Some((block, txs)) = self.build_block(chain, wall_ms) else {
            return;
        };
        let id = *block.id();
        out.push(Output::Execute {
            id,
            env: BlockEnv::of(&block),
            txs: txs.clone(),
        });
        self.executing.insert(
            id,
            Executing {
                block,
                txs,
                from: None,
            },
        );
    }

    /// Sends this node's executed proposal to up to
    /// `proposal_push_peers` other validators, drawn at random: they take
    /// it as soon as it arrives (see [`Engine::block_expectation`])
    /// instead of after a query's round trip and a pull's. The caller
    /// sends it within its byte budgets, like a served block.
    fn push_proposal(&mut self, block: &Block, txs: &[Arc<Transaction>], out: &mut Vec<Output>) {
        let mut others: Vec<NodeId> = self
            .validator_keys
            .iter()
            .filter(|k| **k != self.me)
            .copied()
            .collect();
        let n = self.config.proposal_push_peers.min(others.len());
        // A partial Fisher–Yates shuffle: the first `n` are a uniform draw.
        for i in 0..n {
            let j = i + self.rng.below((others.len() - i) as u64) as usize;
            others.swap(i, j);
        }
        for to in others.into_iter().take(n) {
            out.push(Output::Send {
                to,
                msg: Message::BlockData {
                    block: Box::new(block.clone()),
                    txs: txs.to_vec(),
                },
            });
        }
    }

    /// Keeps an input that arrived while a commit is out.
    fn defer(&mut self, input: Deferred) {
        if self.deferred.len() >= DEFERRED_INPUTS_MAX {
            self.stats.inputs_dropped += 1;
        } else {
            self.deferred.push_back(input);
        }
    }

    /// A proposal from the mempool at the current height, stamped
    /// `wall_ms`, not executed yet: `None` when nothing can be proposed.
    fn build_block(
        &self,
        chain: &impl Chain,
        wall_ms: u64,
    ) -> Option<(Block, Vec<Arc<Transaction>>)> {
        let ids = self.mempool.build_block(self.config.block_txs_max);
        if ids.is_empty() {
            return None;
        }
        let txs: Vec<Arc<Transaction>> = ids
            .iter()
            .filter_map(|id| self.mempool.get(id).cloned())
            .collect();
        // Never earlier than the parent: a clock behind the others' still
        // makes valid blocks (the chain's time then stands still for them).
        let block = Block::new(
            self.height,
            chain.last_block_id(),
            chain.state_root(),
            self.me,
            wall_ms.max(self.parent_timestamp_ms),
            ids,
        )
        .ok()?;
        Some((block, txs))
    }

    /// [`Engine::build_block`], executed at once on this thread (for the
    /// simulation hook below only).
    ///
    /// # Errors
    /// An execution error that is a local fault.
    fn build_candidate(
        &self,
        chain: &impl Chain,
        wall_ms: u64,
    ) -> Result<Option<Candidate>, ExecError> {
        let Some((block, txs)) = self.build_block(chain, wall_ms) else {
            return Ok(None);
        };
        // The mempool chose only affordable, contiguous transactions from
        // its exact view of the finalized accounts, so an invalid
        // transaction here is a bug, not a peer's doing; a local fault
        // halts.
        match chain.execute(BlockEnv::of(&block), &txs) {
            Ok(diff) => Ok(Some(Candidate { block, txs, diff })),
            Err(e) if e.is_local_fault() => Err(e),
            Err(e) => {
                debug_assert!(
                    false,
                    "the mempool chose a block that does not execute: {e}"
                );
                Ok(None)
            }
        }
    }

    /// **Simulation hook for Byzantine proposers**: builds two different
    /// valid blocks at the current height (same transactions, timestamps one
    /// millisecond apart), holds both as candidates so it can serve pulls of
    /// either, and prefers the first. An honest node never calls this.
    pub fn propose_twice_for_simulation(
        &mut self,
        chain: &impl Chain,
        wall_ms: u64,
    ) -> Option<[BlockId; 2]> {
        let a = self.build_candidate(chain, wall_ms).ok()??;
        let b = self.build_candidate(chain, wall_ms + 1).ok()??;
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
        if self.sticky == Some(id) {
            // The block this node voted for before a restart is back.
            self.sticky = None;
            self.snowball.prefer(id);
            return;
        }
        let Some(current) = self.snowball.preference() else {
            self.snowball.offer(id);
            return;
        };
        if current == id || !self.snowball.is_fresh() || self.revealed {
            return;
        }
        let parent = chain.last_block_id();
        if self.order_key(&id, &parent) < self.order_key(&current, &parent) {
            self.snowball.replace_fresh_preference(id);
        }
    }

    /// The order every node applies to candidate blocks when nothing else
    /// decides: the proposer's rank, then the block id. The id matters for
    /// two blocks of one proposer (a double proposer, or one key run twice):
    /// ranked by proposer alone they tie, and nodes that each kept the one
    /// they had stayed split for good.
    fn order_key(&self, block: &BlockId, parent: &BlockId) -> (usize, BlockId) {
        let rank = self.candidates.get(block).map_or(usize::MAX, |c| {
            self.proposer_rank(&c.block.header().proposer, parent)
        });
        (rank, *block)
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
        let wait_ms = self.poll_deadline_wait_ms(&asked, &weight_votes);
        self.polls.insert(
            poll_id,
            Poll {
                height: self.height,
                asked,
                weight_votes,
                votes: vec![None; n],
                answered: vec![false; n],
                answered_count: 0,
                own_slot,
                opened_ms: now_ms,
                deadline_ms: now_ms + wait_ms,
            },
        );
    }

    /// How long a poll of `asked` (drawing `weight_votes` each) stays
    /// open: until the answers of the fastest peers (by their waits,
    /// [`Engine::poll_wait_ms`]) that together, with this node's own vote,
    /// could make it successful (`alpha_confidence`) are due. Slower peers
    /// count if they answer by then. Waiting for every peer drawn would
    /// let one that answers ever later, or a far-away minority, set the
    /// pace of every poll it is drawn in; a poll that needs a slow peer's
    /// vote waits for it, up to `poll_timeout_max_ms`.
    fn poll_deadline_wait_ms(&self, asked: &[NodeId], weight_votes: &[usize]) -> u64 {
        let mut waits: Vec<(u64, usize)> = asked
            .iter()
            .zip(weight_votes)
            .map(|(p, w)| {
                let wait = if *p == self.me {
                    0
                } else {
                    self.poll_wait_ms(p)
                };
                (wait, *w)
            })
            .collect();
        waits.sort_unstable();
        let mut votes = 0;
        for (wait, w) in &waits {
            votes += w;
            if votes >= self.params.alpha_confidence {
                return (*wait).max(self.config.poll_timeout_ms);
            }
        }
        waits
            .last()
            .map_or(self.config.poll_timeout_ms, |(wait, _)| *wait)
            .max(self.config.poll_timeout_ms)
    }

    /// How long a poll or a pull waits for `peer`'s answer (see
    /// [`PeerRtts::timeout_ms`]).
    fn poll_wait_ms(&self, peer: &NodeId) -> u64 {
        self.rtts.timeout_ms(
            peer,
            self.config.poll_timeout_ms,
            self.config.poll_timeout_max_ms,
        )
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
            // A late answer to a closed poll: not misbehaviour, and a
            // round trip to measure (once per peer asked), or a peer whose
            // round trip grew past the wait would never be measured again.
            if let Some(c) = self.closed_polls.iter_mut().find(|c| c.0 == poll_id) {
                if let Some(i) = c.2.iter().position(|p| *p == from) {
                    c.2.swap_remove(i);
                    self.rtts.sample(&from, now_ms.saturating_sub(c.1));
                }
            }
            return;
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
        if poll.answered[slot] {
            // Honest nodes answer a query once. Counting a second answer
            // (even "no vote") would let one sampled peer fill the
            // poll's other slots and close it early: one validator
            // answering every query three times halted finality.
            out.push(Output::Penalize {
                peer: from,
                reason: Misbehaviour::DuplicateVote,
            });
            return;
        }
        poll.answered[slot] = true;
        poll.answered_count += 1;
        let rtt_ms = now_ms.saturating_sub(poll.opened_ms);
        if let Some(id) = block {
            if self.rejected.contains_key(&id) {
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::InvalidBlock,
                });
            } else {
                poll.votes[slot] = Some(id);
            }
        }
        let complete =
            poll.answered_count + usize::from(poll.own_slot.is_some()) == poll.asked.len();
        self.rtts.sample(&from, rtt_ms);
        let complete = complete || self.decided(poll_id);
        if let Some(id) = block.filter(|id| !self.rejected.contains_key(id)) {
            self.maybe_pull(from, id, height, now_ms, out);
        }
        if complete {
            self.close_poll(poll_id, chain, now_ms, out);
        }
    }

    /// True when poll `poll_id`'s outcome can no longer change, so it may
    /// close before every peer drawn has answered: votes for a block this
    /// node holds already reach `alpha_confidence` (alpha is more than half
    /// of `k`, so no other block can beat it), or no block can reach
    /// `alpha_preference` even if every missing answer named it (votes for
    /// blocks still being pulled counted as if they arrived). Without this
    /// a poll that drew a silent or slow validator waited for its whole
    /// timeout, and one such validator among four stretched finality from
    /// milliseconds to seconds.
    fn decided(&self, poll_id: u64) -> bool {
        let Some(poll) = self.polls.get(&poll_id) else {
            return false;
        };
        let own = self.snowball.preference();
        // (block, weight of votes for it, held here); a poll is at most
        // `k` slots, so a small vec.
        let mut tally: Vec<(BlockId, usize, bool)> = Vec::with_capacity(4);
        let mut unanswered = 0;
        for (slot, n) in poll.weight_votes.iter().enumerate() {
            let vote = if Some(slot) == poll.own_slot {
                own
            } else if poll.answered[slot] {
                poll.votes[slot]
            } else {
                unanswered += n;
                continue;
            };
            let Some(id) = vote else { continue };
            match tally.iter_mut().find(|(b, _, _)| *b == id) {
                Some((_, w, _)) => *w += n,
                None => tally.push((id, *n, self.candidates.contains_key(&id))),
            }
        }
        let success = tally
            .iter()
            .any(|(_, w, held)| *held && *w >= self.params.alpha_confidence);
        let best = tally.iter().map(|(_, w, _)| *w).max().unwrap_or(0);
        success || best + unanswered < self.params.alpha_preference
    }

    /// Pulls block `id` from voter `from` unless it is held, being pulled
    /// (from anyone, not yet expired), or the pull limits are reached: a
    /// voter gets at most `PULLS_PER_PEER_MAX` pulls in flight, so one
    /// voting for ever-new unknown ids (a random or withholding voter)
    /// cannot grow the pull table.
    fn maybe_pull(
        &mut self,
        from: NodeId,
        id: BlockId,
        height: u64,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if self.candidates.contains_key(&id) || self.executing.contains_key(&id) {
            return;
        }
        let timeout_ms = self.poll_wait_ms(&from);
        if let Some(p) = self.pulls.get(&id) {
            if p.received || p.deadline_ms > now_ms {
                return;
            }
            // A voter asked before (and that did not deliver) is asked
            // again after a wait that doubles with its asks: a voter that
            // names a block but withholds it must not take every ask while
            // another voter that holds the block waits to be asked, but a
            // slow honest server is asked again at once.
            let backing_off = p.asked.iter().any(|(peer, at, times)| {
                let waits = (1u64 << times.saturating_sub(1).min(8)).min(PULL_REASK_TIMEOUTS);
                *peer == from && now_ms < at + waits * timeout_ms
            });
            if backing_off {
                return;
            }
        } else if self.pulls.len() >= PULLS_MAX {
            return;
        }
        let in_flight = self
            .pulls
            .values()
            .filter(|p| p.in_flight_to(&from, now_ms))
            .count();
        if in_flight >= PULLS_PER_PEER_MAX {
            return;
        }
        let deadline_ms = now_ms + timeout_ms;
        let pull = self.pulls.entry(id).or_insert_with(|| Pull {
            asked: Vec::new(),
            deadline_ms,
            received: false,
        });
        let times = pull
            .asked
            .iter()
            .find(|(peer, ..)| *peer == from)
            .map_or(0, |a| a.2);
        pull.asked.retain(|(peer, ..)| *peer != from);
        if pull.asked.len() >= PULL_ASKS_MAX {
            pull.asked.remove(0);
        }
        pull.asked.push((from, now_ms, times.saturating_add(1)));
        pull.deadline_ms = deadline_ms;
        out.push(Output::Send {
            to: from,
            msg: Message::GetBlock { id, height },
        });
    }

    /// Remembers closed poll `poll_id`'s peers that had not answered (see
    /// `closed_polls`).
    fn keep_closed(&mut self, poll_id: u64, poll: &Poll) {
        let unanswered: Vec<NodeId> = poll
            .asked
            .iter()
            .enumerate()
            .filter(|(slot, _)| !poll.answered[*slot] && Some(*slot) != poll.own_slot)
            .map(|(_, p)| *p)
            .collect();
        if unanswered.is_empty() {
            return;
        }
        if self.closed_polls.len() >= CLOSED_POLLS_KEPT {
            self.closed_polls.pop_front();
        }
        self.closed_polls
            .push_back((poll_id, poll.opened_ms, unanswered));
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
        self.keep_closed(poll_id, &poll);
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
                // Did the poll fail on disagreement? Missing answers (a
                // crashed or unreachable validator, a timeout, a block not
                // held yet) are not evidence of a split: had they all gone
                // to the leading block and it still fell short of alpha,
                // they are.
                let missing = votes.iter().filter(|v| v.is_none()).count();
                let mut leading = 0;
                for v in votes.iter().flatten() {
                    leading = leading.max(votes.iter().filter(|w| w.as_ref() == Some(v)).count());
                }
                if leading + missing < self.params.alpha_preference {
                    self.split_polls += 1;
                }
                let own = self.snowball.preference();
                let confident = own.is_some_and(|b| self.snowball.was_confident(&b));
                let factor = if confident { STALL_CONFIDENT_FACTOR } else { 1 };
                let split = self.split_polls >= STALL_POLLS_PER_BETA * self.params.beta * factor;
                // Polls can also keep failing on missing answers for good
                // (a validator gone for good is always drawn in a small
                // network): then only time lets the breaker fire.
                let stalled_ms = now_ms.saturating_sub(self.last_success_ms);
                let stalled =
                    stalled_ms >= STALL_POLL_TIMEOUTS * self.config.poll_timeout_ms * factor as u64;
                if self.snowball.failures() >= STALL_POLLS_PER_BETA * self.params.beta
                    && (split || stalled)
                {
                    // A long run of failed polls, split ones among them:
                    // honest nodes may be split on strengthened
                    // preferences. Make the choice fresh again and fall
                    // back to the order every node applies the same way
                    // (`order_key`). This is the one place a revealed
                    // preference may move without a successful poll, and
                    // it is fenced, because a move here can carry nodes
                    // away from a block others already finalized (the
                    // simulator found exactly that when a heavy validator
                    // crashed and every poll drawing it failed at once):
                    // never in the first polls of a height (where a switch
                    // split finality on a devnet); soon only after polls
                    // that failed on disagreement, whereas polls failing on
                    // missing answers (a crashed validator's, at once)
                    // count only after eight poll timeouts without a
                    // success; and off a block that won a successful poll
                    // here only after several times as many, or as long.
                    // Without that last escape, three honest groups each
                    // confident in their own block (a rebalancer's work)
                    // would wait forever.
                    self.split_polls = 0;
                    self.snowball.forget_strength();
                    self.revealed = false;
                    self.sticky = None;
                    let parent = chain.last_block_id();
                    let mut ids: Vec<BlockId> = self.candidates.keys().copied().collect();
                    ids.sort_by_key(|id| self.order_key(id, &parent));
                    for id in ids {
                        self.consider(id, chain);
                    }
                }
            }
            PollOutcome::Successful { .. } => {
                self.stats.polls_successful += 1;
                self.split_polls = 0;
                self.last_success_ms = now_ms;
                // A quorum for this node's preference: the vote resumed
                // from before a restart (if it still differs) yields, as
                // any preference yields to poll evidence.
                if self.sticky.is_some() && self.sticky != self.snowball.preference() {
                    self.sticky = None;
                }
            }
            PollOutcome::Final(id) => {
                self.stats.polls_successful += 1;
                self.finalize(id, now_ms, out);
            }
        }
    }

    /// Takes block data from `from`: only a block pulled from it. With
    /// `signatures` the caller's verdict on the transactions' signatures;
    /// `None`: the engine checks them itself.
    #[allow(clippy::too_many_arguments)]
    fn on_block_data(
        &mut self,
        from: NodeId,
        block: Block,
        txs: Vec<Arc<Transaction>>,
        signatures: Option<bool>,
        chain: &impl Chain,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let _ = now_ms;
        let id = *block.id();
        match self.block_expectation(&from, block.header()) {
            BlockExpectation::Wanted => {}
            BlockExpectation::Late => return,
            BlockExpectation::Unsolicited => {
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::UnsolicitedBlock,
                });
                return;
            }
        }
        if self.candidates.contains_key(&id)
            || self.executing.contains_key(&id)
            || block.height() != self.height
        {
            return; // already have it, or the height moved on meanwhile
        }
        if block.header().proposer == from {
            // One push per proposer and height (see `block_expectation`);
            // its block served on a pull counts as its push.
            if self.pushes.insert(from) && !self.pulls.contains_key(&id) {
                self.stats.pushes_taken += 1;
            }
        }
        let result = self.validate(&block, &txs, signatures, chain);
        if let Some(p) = self.pulls.get_mut(&id) {
            match &result {
                // The server lied about the transactions: ask the next
                // voter at once, and take nothing more from this one.
                Err(Refusal::WrongData) => {
                    p.asked.retain(|(peer, ..)| *peer != from);
                    p.deadline_ms = 0;
                }
                _ => p.received = true,
            }
        }
        match result {
            Ok(()) => {
                out.push(Output::Execute {
                    id,
                    env: BlockEnv::of(&block),
                    txs: txs.clone(),
                });
                self.executing.insert(
                    id,
                    Executing {
                        block,
                        txs,
                        from: Some(from),
                    },
                );
            }
            Err(Refusal::WrongData) => out.push(Output::Penalize {
                peer: from,
                reason: Misbehaviour::WrongBlockData,
            }),
            Err(Refusal::Invalid) => {
                self.stats.invalid_blocks += 1;
                self.rejected.insert(id, ());
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::InvalidBlock,
                });
            }
        }
    }

    /// Every check of a pulled block but its execution: header against
    /// the finalized parent, transactions against the ids, signatures.
    fn validate(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        signatures: Option<bool>,
        chain: &impl Chain,
    ) -> Result<(), Refusal> {
        let h = block.header();
        // The id commits to the header: a wrong header is the block's own
        // fault, whoever served it.
        // Timestamps never go back along the chain, so a block's time is
        // at least every earlier block's (what a program reading it may
        // rely on). Nothing bounds them ahead: no check against this
        // node's clock, which would make validity depend on whose clock
        // is right (docs/consensus.md, "Clocks").
        if h.height != self.height
            || h.parent != chain.last_block_id()
            || h.state_root != chain.state_root()
            || h.timestamp_ms < self.parent_timestamp_ms
            || block.tx_ids().is_empty()
        {
            return Err(Refusal::Invalid);
        }
        // The header commits to the transaction ids, and each id to its
        // transaction's bytes: transactions that are not the ones named
        // are the server's doing, not the block's.
        if txs.len() != block.tx_ids().len()
            || txs.iter().zip(block.tx_ids()).any(|(t, id)| t.id() != id)
        {
            return Err(Refusal::WrongData);
        }
        let signatures_valid = match signatures {
            Some(valid) => valid,
            None => {
                // Transactions already in the mempool passed the same
                // check on admission (the id hashes the whole encoding,
                // signature included): only the others are verified.
                // Under load most of a pulled block was gossiped here
                // first, so this halves the signature work.
                let unseen: Vec<Arc<Transaction>> = txs
                    .iter()
                    .filter(|t| !self.mempool.contains(t.id()))
                    .cloned()
                    .collect();
                self.verifier
                    .verify(&unseen, chain.chain_id())
                    .iter()
                    .all(|v| *v == Verdict::Valid)
            }
        };
        if !signatures_valid {
            return Err(Refusal::Invalid);
        }
        Ok(())
    }

    /// The result of an [`Output::Execute`] job for block `id`: a valid
    /// block becomes a candidate (this node's own proposal, its
    /// preference if it has none); an invalid one is rejected and the
    /// voter it came from penalised; a failure to read the store halts.
    /// Ignored when the height moved on since the job was asked for.
    pub fn on_executed(
        &mut self,
        id: BlockId,
        result: Result<StateDiff, ExecError>,
        chain: &impl Chain,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        let Some(e) = self.executing.remove(&id) else {
            return out;
        };
        match (result, e.from) {
            (Ok(diff), from) => {
                if from.is_none() {
                    self.stats.proposed += 1;
                    self.push_proposal(&e.block, &e.txs, &mut out);
                }
                let candidate = Candidate {
                    block: e.block,
                    txs: e.txs,
                    diff,
                };
                self.candidates.insert(id, candidate);
                self.consider(id, chain);
                if self.sampler.is_empty() {
                    // A single-validator chain decides alone: its own
                    // proposal is final as soon as it is executed.
                    if let Some(id) = self.snowball.preference() {
                        self.finalize(id, now_ms, &mut out);
                    }
                }
            }
            (Err(err), None) if err.is_local_fault() => {
                self.halt("executing this node's own proposal", &err, &mut out)
            }
            (Err(err), Some(_)) if err.is_local_fault() => {
                self.halt("validating a pulled block", &err, &mut out)
            }
            // The mempool chose only affordable, contiguous transactions
            // from its exact view of the finalized accounts: an own block
            // that does not execute is a bug, not a peer's doing.
            (Err(err), None) => {
                debug_assert!(
                    false,
                    "the mempool chose a block that does not execute: {err}"
                );
            }
            (Err(_), Some(from)) => {
                self.stats.invalid_blocks += 1;
                self.rejected.insert(id, ());
                out.push(Output::Penalize {
                    peer: from,
                    reason: Misbehaviour::InvalidBlock,
                });
            }
        }
        out
    }

    /// The result of the [`Output::Commit`] job: the next height starts
    /// (its first polls open at once) and the inputs kept meanwhile are
    /// handled, in order. A failed commit halts the engine: it can no
    /// longer follow the chain safely; the caller stops the node.
    pub fn on_committed(
        &mut self,
        result: Result<(), LocalFault>,
        chain: &mut impl Chain,
        now_ms: u64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted.is_some() {
            return out;
        }
        let Some(c) = self.committing.take() else {
            debug_assert!(false, "on_committed without a commit out");
            return out;
        };
        if let Err(e) = result {
            self.halt(
                &format!("commit of height {} failed", c.height),
                &e,
                &mut out,
            );
            return out;
        }
        debug_assert_eq!(chain.height(), c.height, "the commit moved the chain");
        let ntx = c.tx_ids.len();
        self.mempool.remove_committed(&c.tx_ids, c.touched);
        out.push(Output::Committed {
            height: c.height,
            id: c.id,
            txs: ntx,
        });
        self.height = chain.height() + 1;
        self.height_started_ms = c.decided_ms;
        self.split_polls = 0;
        self.last_success_ms = c.decided_ms;
        self.revealed = false;
        self.revealed_block = None;
        self.sticky = None;
        while let Some(input) = self.deferred.pop_front() {
            out.extend(match input {
                Deferred::Message(from, msg) => self.on_message(from, msg, chain, now_ms),
                Deferred::CheckedBlock(from, block, txs, valid) => {
                    self.on_checked_block(from, block, txs, valid, chain, now_ms)
                }
                Deferred::Unreachable(peer) => self.peer_unreachable(&peer, chain, now_ms),
            });
            if self.committing.is_some() || self.halted.is_some() {
                return out; // the rest waits for that commit
            }
        }
        while self.polls.len() < self.config.polls_in_flight && !self.sampler.is_empty() {
            self.open_poll(now_ms, &mut out);
        }
        out
    }

    /// Block `id` is final: asks for its commit ([`Output::Commit`]) and
    /// drops everything else of its height. The next height starts in
    /// [`Engine::on_committed`].
    fn finalize(&mut self, id: BlockId, now_ms: u64, out: &mut Vec<Output>) {
        let Some(c) = self.candidates.remove(&id) else {
            return;
        };
        let height = c.block.height();
        self.parent_timestamp_ms = c.block.header().timestamp_ms;
        // Every account the block changed (senders, and recipients of
        // transfers), as the block's own diff writes it: the mempool keeps
        // its view of pending senders' accounts exact from these, with no
        // read of the store. Collected before the commit consumes the diff.
        let mut touched: Vec<(PublicKey, Account)> = Vec::with_capacity(c.txs.len());
        for tx in &c.txs {
            let mut note = |pk: &PublicKey| {
                if let Some(a) = c.diff.account(pk) {
                    touched.push((*pk, a));
                }
            };
            note(tx.sender());
            if let TxKind::Transfer { to, .. } = &tx.body().kind {
                note(to);
            }
        }
        // Contracts paid by calls, and whom contracts paid.
        for pk in &c.diff.touched {
            if let Some(a) = c.diff.account(pk) {
                touched.push((*pk, a));
            }
        }
        self.committing = Some(Committing {
            height,
            id,
            decided_ms: now_ms,
            tx_ids: c.block.tx_ids().to_vec(),
            touched,
        });
        out.push(Output::Commit {
            block: Box::new(c.block),
            txs: c.txs,
            diff: c.diff,
        });
        self.snowball = Snowball::new(self.params);
        self.candidates.clear();
        self.executing.clear();
        self.rejected.clear();
        self.pushes.clear();
        // A pull of the height just finalized may still be answered: kept
        // one height, so the answer is late rather than unsolicited.
        self.previous_pulls = std::mem::take(&mut self.pulls);
        // Their answers still measure round trips.
        for (poll_id, poll) in std::mem::take(&mut self.polls) {
            self.keep_closed(poll_id, &poll);
        }
    }
}

/// Runs the jobs among `outputs` ([`Output::Execute`], [`Output::Commit`])
/// at once on the caller's thread against `chain`, feeding their results
/// back to `engine`, and returns every other output in order, a job's
/// answer's outputs where the job was. For callers without worker threads:
/// the simulator, tests, tools.
pub fn run_jobs_inline(
    engine: &mut Engine,
    chain: &mut impl Chain,
    outputs: Vec<Output>,
    now_ms: u64,
) -> Vec<Output> {
    let mut done = Vec::with_capacity(outputs.len());
    let mut todo: std::collections::VecDeque<Output> = outputs.into();
    while let Some(output) = todo.pop_front() {
        let answer = match output {
            Output::Execute { id, env, txs } => {
                let result = chain.execute(env, &txs);
                engine.on_executed(id, result, chain, now_ms)
            }
            Output::Commit { block, txs, diff } => {
                let result = chain.commit(&block, &txs, diff);
                engine.on_committed(result, chain, now_ms)
            }
            other => {
                done.push(other);
                continue;
            }
        };
        for o in answer.into_iter().rev() {
            todo.push_front(o);
        }
    }
    done
}

/// Why a pulled block was not taken.
enum Refusal {
    /// The block is invalid: its header, a signature or its execution.
    Invalid,
    /// The peer served transactions other than those the block names.
    WrongData,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{devnet_account_key, Genesis};
    use crate::mem_chain::MemChain;
    use crate::sampler::Uniform;
    use crate::tx::{TxBody, TxKind};

    /// The engine's inputs with their jobs run at once ([`run_jobs_inline`]).
    trait Inline {
        fn tick(&mut self, chain: &mut impl Chain, now: u64, wall: u64) -> Vec<Output>;
        fn message(
            &mut self,
            from: NodeId,
            msg: Message,
            chain: &mut impl Chain,
            now: u64,
        ) -> Vec<Output>;
    }

    impl Inline for Engine {
        fn tick(&mut self, chain: &mut impl Chain, now: u64, wall: u64) -> Vec<Output> {
            let out = self.on_tick(chain, now, wall);
            run_jobs_inline(self, chain, out, now)
        }
        fn message(
            &mut self,
            from: NodeId,
            msg: Message,
            chain: &mut impl Chain,
            now: u64,
        ) -> Vec<Output> {
            let out = self.on_message(from, msg, chain, now);
            run_jobs_inline(self, chain, out, now)
        }
    }

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
        e.tick(chain, 10_000, 10_000);
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
        let out = me.message(from, vote, chain, 10_001);
        let get = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg, .. } if matches!(msg, Message::GetBlock { .. }) => Some(msg),
                _ => None,
            })
            .expect("a pull of the unknown block");
        let data = proposer.message(me.me, get, chain, 10_001);
        let Some(Output::Send { msg, .. }) = data.into_iter().next() else {
            panic!("the proposer serves its block");
        };
        me.message(from, msg, chain, 10_002);
    }

    fn run(reveal: bool) -> (Option<BlockId>, BlockId, BlockId) {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let (mut second, second_id) = proposal(&n, n.by_rank[1], &mut chain);
        let mut me = engine(&n, n.by_rank[3], &chain);
        let polls = me.tick(&mut chain, 10_000, 10_000);
        learn(&mut me, &mut second, second_id, &mut chain, &polls);
        assert_eq!(me.preference(), Some(second_id));
        if reveal {
            let asker = n.validators[n.by_rank[2]].public_key;
            let q = Message::Query {
                poll_id: 99,
                height: 1,
            };
            let out = me.message(asker, q, &mut chain, 10_003);
            assert!(matches!(
                &out[..],
                [
                    Output::Revealed { height: 1, block: r },
                    Output::Send { msg: Message::Vote { block: Some(b), .. }, .. },
                ] if *b == second_id && *r == second_id
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
        let polls = e.tick(&mut chain, 10_000, 10_000);
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
        let out = e.message(peer, vote, &mut chain, 10_050);
        assert!(
            out.contains(&Output::Committed {
                height: 1,
                id,
                txs: 1
            }),
            "{out:?}"
        );
    }

    /// The first open poll of `polls` (outputs of a tick) that asked at
    /// least two peers, with those peers.
    fn poll_with_two_peers(polls: &[Output]) -> (u64, Vec<NodeId>) {
        queries_of(polls)
            .into_iter()
            .find(|(_, peers)| peers.len() >= 2)
            .expect("a poll asking two peers")
    }

    /// Regression (issue 17, finding 1): a "no vote" answer never filled
    /// its slot, so one sampled validator answering a query three times
    /// closed the poll early as if every peer had answered; doing so to
    /// every query halted finality, and it was never scored.
    #[test]
    fn a_second_answer_counts_nothing_and_is_penalised() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = engine(&n, 0, &chain);
        let polls = e.tick(&mut chain, 10_000, 10_000);
        let (poll_id, peers) = poll_with_two_peers(&polls);
        let vote = Message::Vote {
            poll_id,
            height: 1,
            block: None,
        };
        let first = e.message(peers[0], vote.clone(), &mut chain, 10_001);
        assert!(first.is_empty(), "{first:?}");
        for _ in 0..3 {
            let out = e.message(peers[0], vote.clone(), &mut chain, 10_002);
            assert_eq!(
                out,
                vec![Output::Penalize {
                    peer: peers[0],
                    reason: Misbehaviour::DuplicateVote
                }]
            );
        }
        assert_eq!(e.stats().polls, 0, "the poll closed on repeated answers");
    }

    /// Regression (issue 17, finding 9): any peer's query marked the
    /// preference as revealed, pinning it against a better-ranked proposal.
    #[test]
    fn a_query_from_a_non_validator_reveals_nothing() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let (mut second, second_id) = proposal(&n, n.by_rank[1], &mut chain);
        let mut me = engine(&n, n.by_rank[3], &chain);
        let polls = me.tick(&mut chain, 10_000, 10_000);
        learn(&mut me, &mut second, second_id, &mut chain, &polls);
        let stranger = crate::tx::signing_key_from_seed(&[0xee; 32])
            .verifying_key()
            .to_bytes();
        let q = Message::Query {
            poll_id: 5,
            height: 1,
        };
        let out = me.message(stranger, q, &mut chain, 10_003);
        assert!(matches!(
            &out[..],
            [Output::Send { msg: Message::Vote { block: Some(b), .. }, .. }] if *b == second_id
        ));
        learn(&mut me, &mut best, best_id, &mut chain, &polls);
        assert_eq!(
            me.preference(),
            Some(best_id),
            "a stranger pinned the preference"
        );
    }

    /// A voter that serves a valid block's header with other transactions
    /// is blamed, but the block is not rejected: the next voter's copy is
    /// taken (a Byzantine voter could otherwise make honest nodes reject
    /// every good block it pulled first).
    #[test]
    fn wrong_transactions_blame_the_server_not_the_block() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let mut me = engine(&n, n.by_rank[3], &chain);
        let polls = me.tick(&mut chain, 10_000, 10_000);
        let (poll_id, peers) = poll_with_two_peers(&polls);
        let liar = peers[0];
        let out = me.message(
            liar,
            Message::Vote {
                poll_id,
                height: 1,
                block: Some(best_id),
            },
            &mut chain,
            10_001,
        );
        assert!(out.iter().any(
            |o| matches!(o, Output::Send { to, msg: Message::GetBlock { .. } } if *to == liar)
        ));
        let Some(Output::Send {
            msg: Message::BlockData { block, .. },
            ..
        }) = best
            .message(
                me.me,
                Message::GetBlock {
                    id: best_id,
                    height: 1,
                },
                &mut chain,
                10_001,
            )
            .into_iter()
            .next()
        else {
            panic!("the proposer serves its block");
        };
        let key = devnet_account_key(1);
        let other = TxBody {
            chain_id: n.genesis.chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Delete { key: b"x".to_vec() },
        }
        .sign(&key)
        .unwrap();
        let out = me.message(
            liar,
            Message::BlockData {
                block: block.clone(),
                txs: vec![Arc::new(other)],
            },
            &mut chain,
            10_002,
        );
        assert_eq!(
            out,
            vec![Output::Penalize {
                peer: liar,
                reason: Misbehaviour::WrongBlockData
            }]
        );
        assert_eq!(me.stats().invalid_blocks, 0);
        // The proposer's vote pulls it again, and it is taken.
        learn(&mut me, &mut best, best_id, &mut chain, &polls);
        assert_eq!(me.preference(), Some(best_id));
    }

    /// A chain whose state reads fail, as a broken disk would.
    struct BrokenChain(MemChain);

    impl Chain for BrokenChain {
        fn chain_id(&self) -> u64 {
            self.0.chain_id()
        }
        fn height(&self) -> u64 {
            self.0.height()
        }
        fn last_block_id(&self) -> BlockId {
            self.0.last_block_id()
        }
        fn state_root(&self) -> [u8; 32] {
            self.0.state_root()
        }
        fn account(&self, _: &PublicKey) -> Result<Account, LocalFault> {
            Err(LocalFault("EIO".into()))
        }
        fn execute(&self, _: BlockEnv, _: &[Arc<Transaction>]) -> Result<StateDiff, ExecError> {
            Err(ExecError::Read("EIO".into()))
        }
        fn commit(
            &mut self,
            block: &Block,
            txs: &[Arc<Transaction>],
            diff: StateDiff,
        ) -> Result<(), LocalFault> {
            self.0.commit(block, txs, diff)
        }
        fn finalized(&self, height: u64) -> Result<Option<StoredBlock>, LocalFault> {
            self.0.finalized(height)
        }
    }

    /// Regression (issue 17, finding 13): a failed read of the local store
    /// while executing a pulled block made it "invalid" and banned the
    /// honest peer that served it. Now the engine halts and blames no one.
    #[test]
    fn a_local_read_failure_halts_and_blames_no_one() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let mut me = engine(&n, n.by_rank[3], &chain);
        let mut broken = BrokenChain(chain.clone());
        let polls = me.tick(&mut broken, 10_000, 10_000);
        let from = best.me;
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
            block: Some(best_id),
        };
        let get = me
            .message(from, vote, &mut broken, 10_001)
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg, .. } if matches!(msg, Message::GetBlock { .. }) => Some(msg),
                _ => None,
            })
            .expect("a pull");
        let data = best.message(me.me, get, &mut chain, 10_001);
        let Some(Output::Send { msg, .. }) = data.into_iter().next() else {
            panic!("served");
        };
        let out = me.message(from, msg, &mut broken, 10_002);
        assert!(
            matches!(&out[..], [Output::Halted { reason }] if reason.contains("EIO")),
            "{out:?}"
        );
        assert!(me.halted().is_some());
        // Admission reads the account: the failure is the node's, typed.
        assert!(matches!(
            me.submit_verified(vec![shared_tx(&n)], &broken, 10_003)[..],
            [Err(SubmitError::Local(_))]
        ));
    }

    /// A finalized block is served by the caller (`Output::ServeBlock`),
    /// never read on the engine's thread, and `serve_block` answers only
    /// for the id finalized at that height.
    #[test]
    fn finalized_blocks_are_served_by_the_caller() {
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
        assert_eq!(e.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let polls = e.tick(&mut chain, 10_000, 10_000);
        let id = e.preference().expect("proposed");
        let (poll_id, peer) = polls
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    msg: Message::Query { poll_id, .. },
                } => Some((*poll_id, *to)),
                _ => None,
            })
            .find(|(p, _)| {
                polls
                    .iter()
                    .filter(|o| matches!(o, Output::Send { msg: Message::Query { poll_id, .. }, .. } if poll_id == p))
                    .count()
                    == 1
            })
            .expect("a poll that drew the node itself");
        let vote = Message::Vote {
            poll_id,
            height: 1,
            block: Some(id),
        };
        e.message(peer, vote, &mut chain, 10_050);
        assert_eq!(chain.height(), 1);
        let get = Message::GetBlock { id, height: 1 };
        let out = e.message(peer, get, &mut chain, 10_060);
        assert_eq!(
            out,
            vec![Output::ServeBlock {
                to: peer,
                height: 1,
                id
            }]
        );
        assert!(matches!(
            serve_block(&chain, 1, &id),
            Ok(Some(Message::BlockData { .. }))
        ));
        assert_eq!(serve_block(&chain, 1, &[9; 32]), Ok(None));
        assert_eq!(serve_block(&chain, 2, &id), Ok(None));
    }

    /// A poll whose outcome is settled closes without waiting for the
    /// peers still silent: with k = 3, alpha = 2, two votes for the held
    /// block decide it. Before, one silent validator among four made most
    /// polls wait for their whole timeout (Byzantine "late" or "silent"
    /// voters stretched finality to seconds).
    #[test]
    fn a_decided_poll_closes_without_waiting_for_the_silent() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = engine(&n, n.by_rank[0], &chain);
        assert_eq!(e.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let polls = e.tick(&mut chain, 10_000, 10_000);
        let id = e.preference().expect("proposed");
        assert_eq!(e.params().k, 3);
        let mut queries: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for o in &polls {
            if let Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } = o
            {
                queries.entry(*poll_id).or_default().push(*to);
            }
        }
        let (poll_id, peers) = queries
            .into_iter()
            .find(|(_, p)| p.len() == 3)
            .expect("a poll of three peers");
        let before = e.stats().polls;
        for peer in &peers[..2] {
            let vote = Message::Vote {
                poll_id,
                height: 1,
                block: Some(id),
            };
            e.message(*peer, vote, &mut chain, 10_002);
        }
        assert_eq!(e.stats().polls, before + 1, "the poll waited for the third");
        assert_eq!(e.stats().polls_successful, 1);
        // Two "no vote" answers in a new poll of three: alpha (2) is out
        // of reach, so it closes too, unsuccessful.
        let polls = e.tick(&mut chain, 10_003, 10_003);
        let mut queries: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for o in &polls {
            if let Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } = o
            {
                queries.entry(*poll_id).or_default().push(*to);
            }
        }
        let (poll_id, peers) = queries
            .into_iter()
            .find(|(_, p)| p.len() == 3)
            .expect("a new poll of three peers");
        let before = e.stats().polls;
        for peer in &peers[..2] {
            let vote = Message::Vote {
                poll_id,
                height: 1,
                block: None,
            };
            e.message(*peer, vote, &mut chain, 10_004);
        }
        assert_eq!(e.stats().polls, before + 1);
    }

    /// Regression (issue 17, finding 14): poll and pull deadlines,
    /// proposal delays and mempool expiry followed the wall clock, so a
    /// step of the system clock stalled or fired every timer. Deadlines
    /// follow `now_ms` (monotonic) now; the wall clock only stamps blocks.
    #[test]
    fn a_wall_clock_step_moves_no_deadline() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = engine(&n, 0, &chain);
        assert_eq!(e.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let wall = 1_700_000_000_000;
        let polls = e.tick(&mut chain, 10_000, wall);
        assert!(polls.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: Message::Query { .. },
                ..
            }
        )));
        let id = e.preference().expect("proposed");
        assert_eq!(
            e.candidates[&id].block.header().timestamp_ms,
            wall,
            "the block is stamped with the wall clock"
        );
        // The wall clock jumps an hour ahead, then a day back: no poll
        // times out and the pending transaction does not expire.
        e.tick(&mut chain, 10_001, wall + 3_600_000);
        e.tick(&mut chain, 10_002, wall - 86_400_000);
        assert_eq!(e.stats().polls, 0, "a wall-clock step closed polls");
        assert_eq!(e.mempool().len(), 1);
        // The monotonic clock passing the poll timeout does close them.
        e.tick(&mut chain, 10_000 + 401, wall);
        assert!(e.stats().polls > 0);
    }

    /// The polls of `out` (outputs of a tick), each with the peers asked.
    fn queries_of(out: &[Output]) -> BTreeMap<u64, Vec<NodeId>> {
        let mut queries: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for o in out {
            if let Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } = o
            {
                queries.entry(*poll_id).or_default().push(*to);
            }
        }
        queries
    }

    /// A proposer sends its executed block to the other validators; each
    /// takes it unasked, once, from its proposer only: no query's round
    /// trip and no pull before it can vote for it.
    #[test]
    fn a_proposal_is_pushed_and_taken_without_a_pull() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut p = engine(&n, n.by_rank[0], &chain);
        assert_eq!(p.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let out = p.tick(&mut chain, 10_000, 10_000);
        let id = p.preference().expect("proposed");
        let pushes: Vec<(NodeId, Message)> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    msg: msg @ Message::BlockData { .. },
                } => Some((to, msg)),
                _ => None,
            })
            .collect();
        let mut to: Vec<NodeId> = pushes.iter().map(|(t, _)| *t).collect();
        to.sort_unstable();
        let mut others: Vec<NodeId> = n
            .validators
            .iter()
            .map(|v| v.public_key)
            .filter(|k| *k != p.me)
            .collect();
        others.sort_unstable();
        assert_eq!(to, others, "pushed to every other validator");

        let mut r = engine(&n, n.by_rank[1], &chain);
        let msg = pushes.iter().find(|(t, _)| *t == r.me).unwrap().1.clone();
        let Message::BlockData { block, .. } = &msg else {
            unreachable!()
        };
        let header = block.header().clone();
        assert_eq!(
            r.block_expectation(&p.me, &header),
            BlockExpectation::Wanted
        );
        let out = r.message(p.me, msg.clone(), &mut chain, 10_001);
        assert!(
            !out.iter().any(|o| matches!(
                o,
                Output::Penalize { .. }
                    | Output::Send {
                        msg: Message::GetBlock { .. },
                        ..
                    }
            )),
            "{out:?}"
        );
        assert_eq!(r.preference(), Some(id), "taken as it arrived");

        // The same push again: ignored unread, without blame.
        assert_eq!(r.block_expectation(&p.me, &header), BlockExpectation::Late);
        assert!(r.message(p.me, msg.clone(), &mut chain, 10_002).is_empty());
        // Another validator relaying it unasked: unsolicited.
        let relay = n.validators[n.by_rank[2]].public_key;
        assert_eq!(
            r.block_expectation(&relay, &header),
            BlockExpectation::Unsolicited
        );
        let out = r.message(relay, msg, &mut chain, 10_003);
        assert!(
            matches!(
                out[..],
                [Output::Penalize {
                    reason: Misbehaviour::UnsolicitedBlock,
                    ..
                }]
            ),
            "{out:?}"
        );
        // A proposer's push for another height crossed a finality: ignored
        // without blame. One who is not a validator: unsolicited.
        let parent = chain.last_block_id();
        let root = chain.state_root();
        let later = Block::new(2, parent, root, p.me, 0, vec![[1; 32]]).unwrap();
        let q = engine(&n, n.by_rank[2], &chain);
        assert_eq!(
            q.block_expectation(&p.me, later.header()),
            BlockExpectation::Late
        );
        let outsider = [9u8; 32];
        let theirs = Block::new(1, parent, root, outsider, 0, vec![[1; 32]]).unwrap();
        assert_eq!(
            q.block_expectation(&outsider, theirs.header()),
            BlockExpectation::Unsolicited
        );
    }

    /// A poll waits two round trips and four deviations of the peers it
    /// needs (past the configured floor), and no longer for a slow peer
    /// whose vote it can do without; the count of polls open stays
    /// `polls_in_flight` whatever the round trips.
    #[test]
    fn a_poll_waits_for_the_round_trips_of_the_peers_it_needs() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let vote = |poll_id| Message::Vote {
            poll_id,
            height: 1,
            block: None,
        };
        // Every peer answers 300 ms after it is asked.
        let mut e = engine(&n, 0, &chain);
        let polls = e.tick(&mut chain, 1_000, 1_000);
        for (poll_id, peers) in queries_of(&polls) {
            for peer in peers {
                e.message(peer, vote(poll_id), &mut chain, 1_300);
            }
        }
        let before = e.stats().polls;
        let polls = e.tick(&mut chain, 1_300, 1_300);
        assert_eq!(queries_of(&polls).len(), 4, "polls_in_flight, not more");
        assert_eq!(e.stats().rtt_median_ms, 300);
        e.tick(&mut chain, 1_300 + 599, 1_300 + 599);
        assert_eq!(e.stats().polls, before, "no poll gave up before 600 ms");
        e.tick(&mut chain, 1_300 + 2_000, 1_300 + 2_000);
        assert_eq!(e.stats().polls, before + 4, "the 2,000 ms cap");

        // One peer 1.5 s away, the others 10 ms: a poll of three needs
        // two votes (alpha), so it waits for the two near ones only.
        let mut e = engine(&n, 0, &chain);
        assert_eq!(e.params().alpha_confidence, 2);
        let far = n.validators[1].public_key;
        let polls = e.tick(&mut chain, 1_000, 1_000);
        for (poll_id, peers) in queries_of(&polls) {
            for peer in peers {
                let at = if peer == far { 2_500 } else { 1_010 };
                e.message(peer, vote(poll_id), &mut chain, at);
            }
        }
        let polls = e.tick(&mut chain, 3_000, 3_000);
        assert!(
            queries_of(&polls)
                .values()
                .any(|peers| peers.contains(&far)),
            "a poll drawing the far peer"
        );
        // Nobody answers: every poll gives up at the 400 ms floor (the
        // near peers' wait), none waits the far peer's 2,000 ms cap.
        let before = e.stats().polls;
        e.tick(&mut chain, 3_399, 3_399);
        assert_eq!(e.stats().polls, before);
        e.tick(&mut chain, 3_400, 3_400);
        assert_eq!(e.stats().polls, before + 4);
    }

    /// A lower-ranked proposer waits at least a measured round trip per
    /// rank: the best-ranked block takes ½ RTT to be pushed to it.
    #[test]
    fn the_proposer_backoff_grows_to_the_round_trip() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let proposes_at = |rtt: Option<u64>, chain: &mut MemChain| -> u64 {
            let mut e = engine(&n, n.by_rank[1], chain);
            let polls = e.tick(chain, 0, 0);
            if let Some(rtt) = rtt {
                for (poll_id, peers) in queries_of(&polls) {
                    for peer in peers {
                        let vote = Message::Vote {
                            poll_id,
                            height: 1,
                            block: None,
                        };
                        e.message(peer, vote, chain, rtt);
                    }
                }
            }
            let from = rtt.unwrap_or(0).max(1);
            assert_eq!(e.submit(vec![shared_tx(&n)], chain, from), 1);
            (from..2_000)
                .find(|now| {
                    e.tick(chain, *now, *now);
                    e.preference().is_some()
                })
                .expect("it proposes")
        };
        // Delay 50 + backoff 50 for rank 1.
        assert_eq!(proposes_at(None, &mut chain), 100);
        assert_eq!(proposes_at(Some(10), &mut chain), 100);
        // Delay 50 + a 300 ms round trip.
        assert_eq!(proposes_at(Some(300), &mut chain), 350);
    }

    /// Block time never goes back: a proposer whose clock is behind its
    /// parent's stamps the parent's time, and a block stamped before its
    /// parent is invalid, its proposer blamed.
    #[test]
    fn a_block_is_never_stamped_before_its_parent() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut slow = engine(&n, n.by_rank[0], &chain);
        slow.parent_timestamp_ms = 5_000;
        assert_eq!(slow.submit(vec![shared_tx(&n)], &chain, 0), 1);
        slow.tick(&mut chain, 10_000, 1_000);
        let id = slow.preference().expect("proposed");
        assert_eq!(slow.candidates[&id].block.header().timestamp_ms, 5_000);

        // A proposer that ignores the rule: its block, stamped 4,999.
        let mut rogue = engine(&n, n.by_rank[0], &chain);
        assert_eq!(rogue.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let out = rogue.tick(&mut chain, 10_000, 4_999);
        let mut r = engine(&n, n.by_rank[1], &chain);
        r.parent_timestamp_ms = 5_000;
        let push = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send {
                    to,
                    msg: msg @ Message::BlockData { .. },
                } if to == r.me => Some(msg),
                _ => None,
            })
            .expect("pushed");
        let out = r.message(rogue.me, push, &mut chain, 10_001);
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Penalize {
                    reason: Misbehaviour::InvalidBlock,
                    ..
                }
            )),
            "{out:?}"
        );
        assert_eq!(r.preference(), None);
    }

    fn pulls_to(out: &[Output]) -> Vec<NodeId> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    msg: Message::GetBlock { .. },
                } => Some(*to),
                _ => None,
            })
            .collect()
    }

    /// Regression (simulator seed 1027): a voter that names a block but
    /// never serves it was asked again every time its vote came first after
    /// a pull expired, and eight such asks ended the pulls of that block
    /// for the height, though other voters held it. Now a voter's re-asks
    /// back off (asked again at once after its first ask expires, as a slow
    /// honest server should be; then after two poll timeouts), another
    /// voter is asked meanwhile, and asks never run out.
    #[test]
    fn a_withholding_voter_does_not_use_up_the_pulls_of_a_block() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = engine(&n, 0, &chain);
        let unknown = [7u8; 32];
        let first = e.tick(&mut chain, 10_000, 10_000);
        let (poll, peers) = poll_with_two_peers(&first);
        let (withholder, holder) = (peers[0], peers[1]);
        let vote = |poll_id| Message::Vote {
            poll_id,
            height: 1,
            block: Some(unknown),
        };
        let out = e.message(withholder, vote(poll), &mut chain, 10_001);
        assert_eq!(pulls_to(&out), vec![withholder]);
        let timeout = EngineConfig::default().poll_timeout_ms;
        let poll_of = |queries: &BTreeMap<u64, Vec<NodeId>>, peer: NodeId| {
            queries
                .iter()
                .find(|(_, p)| p.contains(&peer))
                .map(|(id, _)| *id)
                .expect("a new poll asks the peer")
        };
        // The pull expires unanswered; the next polls open. A first ask
        // that expired is repeated at once (a slow server).
        let t2 = 10_001 + timeout + 50;
        let second = queries_of(&e.tick(&mut chain, t2, t2));
        let out = e.message(
            withholder,
            vote(poll_of(&second, withholder)),
            &mut chain,
            t2 + 1,
        );
        assert_eq!(pulls_to(&out), vec![withholder], "asked again at once");
        // It expires again: now the withholder waits, the other voter is
        // asked.
        let t3 = t2 + 1 + timeout + 50;
        let third = queries_of(&e.tick(&mut chain, t3, t3));
        let out = e.message(
            withholder,
            vote(poll_of(&third, withholder)),
            &mut chain,
            t3 + 1,
        );
        assert!(
            pulls_to(&out).is_empty(),
            "the withholder was asked a third time at once: {out:?}"
        );
        let out = e.message(holder, vote(poll_of(&third, holder)), &mut chain, t3 + 2);
        assert_eq!(pulls_to(&out), vec![holder], "another voter is asked");
    }

    /// A validator that restarts resumes the preference it revealed before
    /// (`Engine::resume_revealed`): it answers queries with it before it
    /// has the block again, proposes nothing of its own meanwhile, and
    /// when the block is back prefers it over a better-ranked proposal.
    /// Without this a restarted validator voted for whatever it saw first,
    /// and the simulator broke agreement that way (seed 7960).
    #[test]
    fn a_restarted_validator_resumes_the_vote_it_revealed() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let (mut best, best_id) = proposal(&n, n.by_rank[0], &mut chain);
        let (mut second, second_id) = proposal(&n, n.by_rank[1], &mut chain);
        let asker = n.validators[n.by_rank[2]].public_key;
        let query = Message::Query {
            poll_id: 9,
            height: 1,
        };
        // Control: with the same transaction and time, the node proposes.
        let mut control = engine(&n, n.by_rank[3], &chain);
        assert_eq!(control.submit(vec![shared_tx(&n)], &chain, 0), 1);
        control.tick(&mut chain, 60_000, 60_000);
        assert!(control.preference().is_some(), "the control proposes");

        let mut me = engine(&n, n.by_rank[3], &chain);
        assert_eq!(me.submit(vec![shared_tx(&n)], &chain, 0), 1);
        me.resume_revealed(1, second_id);
        let out = me.message(asker, query.clone(), &mut chain, 9_000);
        assert!(
            matches!(&out[..], [Output::Send { msg: Message::Vote { block: Some(b), .. }, .. }] if *b == second_id),
            "answers its earlier vote: {out:?}"
        );
        let polls = me.tick(&mut chain, 10_000, 10_000);
        assert_eq!(me.preference(), None, "proposed while its vote is out");
        learn(&mut me, &mut best, best_id, &mut chain, &polls);
        learn(&mut me, &mut second, second_id, &mut chain, &polls);
        assert_eq!(me.preference(), Some(second_id), "the earlier vote is back");
    }

    /// A node whose key is not a validator's follows the chain: it takes
    /// transactions and polls, and never proposes, however long it waits
    /// (its turn arithmetic overflowed: a panic in debug builds, an early
    /// turn and a stray proposal in release).
    #[test]
    fn a_follower_never_proposes() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let follower = crate::tx::signing_key_from_seed(&[0x5a; 32])
            .verifying_key()
            .to_bytes();
        let mut me = Engine::new(
            follower,
            &n.validators,
            &Uniform,
            EngineConfig::default(),
            &chain,
            7,
            0,
        );
        assert_eq!(me.submit(vec![shared_tx(&n)], &chain, 0), 1);
        for now in [0, 1_000, 60_000, u64::MAX / 2] {
            me.tick(&mut chain, now, now);
            assert_eq!(me.preference(), None, "a follower proposed at {now} ms");
        }
    }

    /// A block pulled at a height the node has since finalized may still
    /// arrive: that is late, not unsolicited (under load it happened on
    /// every devnet run and scored honest validators down).
    #[test]
    fn a_block_arriving_after_its_height_was_finalized_is_not_blamed() {
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
        assert_eq!(e.submit(vec![shared_tx(&n)], &chain, 0), 1);
        let polls = e.tick(&mut chain, 10_000, 10_000);
        let mine = e.preference().expect("proposed");
        let mut by_poll: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for o in &polls {
            if let Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } = o
            {
                by_poll.entry(*poll_id).or_default().push(*to);
            }
        }
        // A poll of two peers: one votes for another validator's block,
        // which this node pulls from it...
        let (poll_a, peers_a) = by_poll
            .iter()
            .find(|(_, p)| p.len() == 2)
            .map(|(id, p)| (*id, p.clone()))
            .expect("a poll of two peers");
        let voter = peers_a[0];
        let vi = n
            .validators
            .iter()
            .position(|v| v.public_key == voter)
            .unwrap();
        let mut other_chain = MemChain::new(&n.genesis);
        let (mut other, other_id) = proposal(&n, vi, &mut other_chain);
        let out = e.message(
            voter,
            Message::Vote {
                poll_id: poll_a,
                height: 1,
                block: Some(other_id),
            },
            &mut chain,
            10_001,
        );
        let get = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg, .. } if matches!(msg, Message::GetBlock { .. }) => Some(msg),
                _ => None,
            })
            .expect("a pull");
        // ...then the node's own block is finalized through a poll that
        // drew the node itself...
        let (poll_b, peer_b) = by_poll
            .iter()
            .find(|(_, p)| p.len() == 1)
            .map(|(id, p)| (*id, p[0]))
            .expect("a poll that drew the node itself");
        e.message(
            peer_b,
            Message::Vote {
                poll_id: poll_b,
                height: 1,
                block: Some(mine),
            },
            &mut chain,
            10_002,
        );
        assert_eq!(e.height(), 2, "height 1 finalized");
        // ...and the pulled block arrives late.
        let Some(Output::Send { msg: data, .. }) = other
            .message(me, get, &mut other_chain, 10_003)
            .into_iter()
            .next()
        else {
            panic!("served");
        };
        let out = e.message(voter, data, &mut chain, 10_004);
        assert!(out.is_empty(), "a late block was blamed: {out:?}");
    }

    /// A one-validator engine (it decides alone) with one transaction
    /// admitted, at its proposal time.
    fn alone(n: &Net, chain: &MemChain) -> Engine {
        let me = n.validators[0].public_key;
        let mut e = Engine::new(
            me,
            &n.validators[..1],
            &Uniform,
            EngineConfig::default(),
            chain,
            7,
            0,
        );
        assert_eq!(e.submit(vec![shared_tx(n)], chain, 0), 1);
        e
    }

    #[test]
    fn execution_and_commit_are_jobs_and_inputs_wait_for_the_commit() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = alone(&n, &chain);
        // The proposal is asked to be executed; nothing is preferred yet,
        // and no second proposal is made while the job is out.
        let out = e.on_tick(&mut chain, 10_000, 10_000);
        let [Output::Execute { id, env, txs }] = &out[..] else {
            panic!("one execution job, got {out:?}");
        };
        assert_eq!(e.preference(), None);
        assert!(e.on_tick(&mut chain, 10_001, 10_001).is_empty());
        // Alone, its own proposal is final once executed: the commit is
        // asked for at once.
        let out = e.on_executed(*id, chain.execute(*env, txs), &chain, 10_001);
        let [Output::Commit { block, txs, diff }] = &out[..] else {
            panic!("one commit job, got {out:?}");
        };
        assert_eq!(block.id(), id);
        // Between heights: ticks do nothing, a query waits.
        let asker = n.validators[1].public_key;
        let query = Message::Query {
            poll_id: 5,
            height: 2,
        };
        assert!(e.on_tick(&mut chain, 10_003, 10_003).is_empty());
        assert!(e.on_message(asker, query, &mut chain, 10_003).is_empty());
        assert_eq!(e.height(), 1);
        chain.commit(block, txs, diff.clone()).unwrap();
        let out = e.on_committed(Ok(()), &mut chain, 10_004);
        assert_eq!(e.height(), 2);
        assert!(matches!(
            out[0],
            Output::Committed {
                height: 1,
                txs: 1,
                ..
            }
        ));
        assert!(
            out.contains(&Output::Send {
                to: asker,
                msg: Message::Vote {
                    poll_id: 5,
                    height: 2,
                    block: None
                }
            }),
            "the query kept during the commit is answered after it: {out:?}"
        );
        assert!(
            e.mempool().is_empty(),
            "the committed transaction left the pool"
        );
    }

    #[test]
    fn a_late_execution_result_is_ignored_and_a_failed_commit_halts() {
        let n = net();
        let mut chain = MemChain::new(&n.genesis);
        let mut e = alone(&n, &chain);
        let out = e.on_tick(&mut chain, 10_000, 10_000);
        let [Output::Execute { id, env, txs }] = &out[..] else {
            panic!("one execution job, got {out:?}");
        };
        let (id, result) = (*id, chain.execute(*env, txs));
        let out = e.on_executed(id, result.clone(), &chain, 10_001);
        assert!(matches!(out[..], [Output::Commit { .. }]));
        // A second answer for the same block (or one for a height left
        // behind) changes nothing.
        assert!(e.on_executed(id, result, &chain, 10_001).is_empty());
        assert_eq!(e.stats().proposed, 1);
        let out = e.on_committed(Err(LocalFault("disk full".into())), &mut chain, 10_002);
        assert!(
            matches!(&out[..], [Output::Halted { reason }] if reason.contains("disk full")),
            "{out:?}"
        );
        assert!(e.halted().is_some());
    }
}
