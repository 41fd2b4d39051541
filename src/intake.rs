//! Work off the driver thread: `strata-verify-*` workers decode client
//! batches, API submissions and gossip and check their signatures, check
//! the signatures of pulled blocks, and read finalized blocks peers asked
//! for, handing results back to the driver.
//!
//! Why this happens here and not on the driver: decoding a transaction
//! hashes its whole encoding (its id), which under load is as much blake3
//! work per transaction as the trie update of its block, and a signature
//! check costs far more. The driver is the one thread that runs consensus,
//! so every microsecond per transaction it sheds is throughput — and
//! nothing a peer sends should make it wait.
//!
//! Three bounded queues feed them: pulled blocks (consensus waits on them)
//! go to one block checker at the node's own priority; transactions
//! (gossip, framed clients, the API) and blocks to serve to peers (their
//! budgets were charged by the driver) to the verification workers, which
//! run at a lower priority than the driver and the network loop
//! (`consensus.verify_nice`).
//!
//! Who is blamed for what: a peer whose gossiped transaction does not
//! verify is banned (nodes relay only what they verified, so it is forged
//! or broken); so is a framed client that sends one (a signing client never
//! does), and the rest of that client's batch is not checked: a batch of
//! forgeries costs the node one chunk of checks ([`BATCH_TXS_MAX`]), not
//! one check per transaction. API clients get a verdict per transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use strata_consensus::block::{Block, BlockId};
use strata_consensus::db_chain::{ChainReader, CommittedState};
use strata_consensus::engine::Message;
use strata_consensus::mempool::{spend_of, Reject};
use strata_consensus::state::BlockEnv;
use strata_consensus::state::{ExecError, StateDiff};
use strata_consensus::sync::{self, ServedSnapshot, SyncRequest};
use strata_consensus::tx::{PublicKey, Transaction, TxId};
use strata_consensus::verify::{Verdict, VerifiedIds, Verifier, BATCH_TXS_MAX};
use strata_consensus::wire::Payload;
use strata_net::peer::Misbehaviour;
use tracing::{error, warn};

use crate::metrics::Metrics;

/// The result of one submitted transaction: its id when admitted, else why
/// not.
pub type SubmitResult = Result<TxId, String>;

/// What the workers need from the node, and nothing more: they read the
/// committed chain, count, penalise peers, share the verified-id memory
/// and watch the stop flag. (The node builds it; this module does not
/// know the node's wider state.)
pub(crate) struct Context {
    /// Finalized blocks to serve.
    pub(crate) chain: ChainReader,
    /// Committed accounts for the balance pre-check (through the chain's
    /// state cache), and blocks to execute.
    pub(crate) state: CommittedState,
    /// The chain id transactions must carry.
    pub(crate) chain_id: u64,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Transactions found valid, shared by every verifier of the node.
    pub(crate) verified: Arc<VerifiedIds>,
    /// Scores a peer down (through the network handle).
    pub(crate) penalize: Box<dyn Fn([u8; 32], Misbehaviour) + Send + Sync>,
    /// The state snapshots served to joining nodes, oldest first.
    pub(crate) snapshots: Arc<Mutex<Vec<ServedSnapshot>>>,
}

/// Work for the workers.
pub(crate) enum Job {
    /// A client request (the bench), still encoded: usually a batch of
    /// transactions, answered with the count admitted.
    Request {
        from: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
    /// Transactions from peers, still encoded: gossip items, and batches
    /// sent as messages, each with the peer it came from, to blame if it
    /// does not decode or verify.
    Gossip {
        items: Vec<([u8; 32], Vec<u8>)>,
        batches: Vec<([u8; 32], Vec<u8>)>,
    },
    /// Transactions submitted through the API (decoded there), with the
    /// channel the verdicts go back on.
    Api {
        txs: Vec<Transaction>,
        reply: tokio::sync::oneshot::Sender<Vec<SubmitResult>>,
    },
    /// A block pulled from `from` (the driver checked it was wanted),
    /// still encoded: decode it and check its transactions' signatures.
    Block { from: [u8; 32], payload: Vec<u8> },
    /// Execute block `id`'s transactions against the committed state
    /// (the engine's [`strata_consensus::engine::Output::Execute`]).
    Execute {
        id: BlockId,
        env: BlockEnv,
        txs: Vec<Arc<Transaction>>,
    },
    /// Read finalized block `id` at `height` for peer `to`.
    Serve {
        to: [u8; 32],
        height: u64,
        id: BlockId,
    },
    /// Answer a state-sync request (`strata_consensus::sync`, still
    /// encoded) from the snapshots this node serves.
    Sync {
        to: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
}

/// Where a batch of transactions came from.
pub(crate) enum Origin {
    /// Gossip from peers: relayed once admitted (the net layer does not
    /// pass them on as they arrive).
    Gossip,
    /// A client request (the bench): answer with the count admitted and
    /// gossip what was admitted.
    Request { from: [u8; 32], request_id: u64 },
    /// An API submission: the verdict of each transaction checked, in
    /// input order; the transactions refused before any check (input
    /// position and reason, ascending); and where the merged answer goes.
    Api {
        verdicts: Vec<Verdict>,
        refused: Vec<(usize, String)>,
        reply: tokio::sync::oneshot::Sender<Vec<SubmitResult>>,
    },
}

/// What the workers hand back to the driver.
pub(crate) enum Done {
    /// The valid transactions of a job.
    Verified {
        txs: Vec<Transaction>,
        origin: Origin,
        /// Transactions decoded from the job, before verification.
        received: usize,
    },
    /// A request that carried a consensus message rather than
    /// transactions: the engine handles it on the driver.
    Engine { from: [u8; 32], msg: Message },
    /// A pulled block, decoded, with the verdict on its signatures.
    Block {
        from: [u8; 32],
        block: Box<Block>,
        txs: Vec<Arc<Transaction>>,
        signatures_valid: bool,
    },
    /// The result of a [`Job::Execute`], for `Engine::on_executed`.
    Executed {
        id: BlockId,
        result: Result<StateDiff, ExecError>,
    },
    /// A pulled block that did not decode (its sender was penalised): the
    /// driver stops counting it as being checked, so another voter's copy
    /// is taken.
    BlockUnusable { payload: Vec<u8> },
    /// A finalized block read for a peer, encoded: the driver charges its
    /// byte budgets and sends it.
    Served { to: [u8; 32], payload: Vec<u8> },
    /// A state-sync answer for request `request_id` of `to`.
    SyncAnswer {
        to: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
    /// A job that left nothing to do (it did not decode, the peer was
    /// penalised; or the block to serve was not there). Returned all the
    /// same so the driver's count of jobs in flight stays exact.
    Nothing,
}

/// Counts an invalid transaction from a peer and penalises the peer.
fn invalid_from_peer(cx: &Context, from: [u8; 32], verdict: Verdict) {
    let m = &cx.metrics.txs_invalid_from_peers;
    blame(
        cx,
        m,
        from,
        Misbehaviour::InvalidItem,
        format_args!("invalid transaction from a peer: {verdict:?}"),
    );
}

/// Counts an undecodable payload and penalises its sender.
pub(crate) fn undecodable(cx: &Context, from: [u8; 32], what: &str, e: &dyn std::fmt::Display) {
    let m = &cx.metrics.payloads_undecodable;
    blame(
        cx,
        m,
        from,
        Misbehaviour::Undecodable,
        format_args!("undecodable {what}: {e}"),
    );
}

/// Offences logged per second, node-wide; the rest are only counted
/// (each in its metric) and the next line logged says how many were
/// left out. A flood of junk from peers (each one banned, and back with a
/// new key) would otherwise make the node write a log line per item.
pub(crate) const WARNINGS_PER_S: u64 = 10;

/// The node-wide budget of offence warnings ([`WARNINGS_PER_S`]).
static WARNINGS: WarnLimiter = WarnLimiter::new(WARNINGS_PER_S);

/// At most `per_s` log lines in each one-second window.
pub(crate) struct WarnLimiter {
    per_s: u64,
    /// The current window (seconds since `origin`) in the high 32 bits,
    /// lines logged in it in the low 32.
    state: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    pub(crate) const fn new(per_s: u64) -> Self {
        WarnLimiter {
            per_s,
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one logged)` when a line may
    /// be logged now, else `None` (and it is counted as left out).
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(log_clock_s())
    }

    fn allow_at(&self, now_s: u64) -> Option<u64> {
        let window = now_s & 0xffff_ffff;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (w, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if w == window {
                if n >= self.per_s {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                cur + 1
            } else {
                (window << 32) | 1
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Seconds on a monotonic clock, for [`WarnLimiter`].
fn log_clock_s() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// Counts one offence in `counter`, logs it (within [`WARNINGS_PER_S`])
/// and penalises the peer.
fn blame(
    cx: &Context,
    counter: &AtomicU64,
    from: [u8; 32],
    reason: Misbehaviour,
    what: std::fmt::Arguments<'_>,
) {
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = WARNINGS.allow() {
        warn!(peer = %hex::encode(&from[..4]), suppressed, "{what}");
    }
    (cx.penalize)(from, reason);
}

/// A job's transactions, before verification.
struct Batch {
    txs: Vec<Transaction>,
    origin: Origin,
    /// For gossip, each transaction's sender; for a framed client, its
    /// one sender (`senders[0]`); empty for the API.
    senders: Vec<[u8; 32]>,
}

/// Decodes one transaction job (hashing each transaction for its id), or
/// answers it at once.
fn decode(cx: &Context, job: Job) -> Result<Batch, Done> {
    match job {
        Job::Request {
            from,
            request_id,
            payload,
        } => match Payload::decode(&payload) {
            Ok(Payload::Txs(txs)) => Ok(Batch {
                txs,
                origin: Origin::Request { from, request_id },
                senders: vec![from],
            }),
            Ok(Payload::Engine(msg)) => Err(Done::Engine { from, msg }),
            Err(e) => {
                undecodable(cx, from, "request", &e);
                Err(Done::Nothing)
            }
        },
        Job::Gossip { items, batches } => {
            let mut senders = Vec::with_capacity(items.len());
            let mut decoded = Vec::with_capacity(items.len());
            for (from, item) in items {
                match Transaction::decode(&item) {
                    Ok(tx) => {
                        senders.push(from);
                        decoded.push(tx);
                    }
                    Err(e) => undecodable(cx, from, "gossiped transaction", &e),
                }
            }
            for (from, payload) in batches {
                match Payload::decode(&payload) {
                    Ok(Payload::Txs(txs)) => {
                        senders.extend(std::iter::repeat_n(from, txs.len()));
                        decoded.extend(txs);
                    }
                    Ok(_) => undecodable(cx, from, "transaction batch", &"not transactions"),
                    Err(e) => undecodable(cx, from, "transaction batch", &e),
                }
            }
            Ok(Batch {
                txs: decoded,
                origin: Origin::Gossip,
                senders,
            })
        }
        Job::Api { txs, reply } => Ok(Batch {
            txs,
            origin: Origin::Api {
                verdicts: Vec::new(),
                refused: Vec::new(),
                reply,
            },
            senders: Vec::new(),
        }),
        Job::Block { .. } | Job::Execute { .. } | Job::Serve { .. } | Job::Sync { .. } => {
            unreachable!("not a transaction job")
        }
    }
}

/// Transactions a worker gathers from queued jobs before verifying: one
/// signature batch. Batch verification costs about a fifth less per
/// signature at 256 than at 64-128 and less again at 512
/// (docs/benchmarks.md), and gossip jobs (one per driver turn) and client
/// batches (256 from the bench) are smaller.
const GATHER_TXS: usize = BATCH_TXS_MAX;

/// How long a worker waits on its queues before it looks at the stop flag.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Verifies `first` and, while they hold fewer than [`GATHER_TXS`]
/// transactions, the transaction jobs already queued behind it, in one
/// signature batch; hands back one result per job, in order. A framed
/// client's batch larger than that is checked on its own, chunk by chunk,
/// stopping at the first forgery ([`verify_client_batch`]).
fn run_transactions(
    cx: &Context,
    verifier: &mut Verifier,
    first: Job,
    queue: &Receiver<Job>,
    done: &DoneSink,
) -> Result<(), ()> {
    let mut batches: Vec<Batch> = Vec::new();
    let mut gathered = 0;
    let mut next = Some(first);
    while let Some(job) = next.take() {
        if matches!(
            job,
            Job::Block { .. } | Job::Execute { .. } | Job::Serve { .. } | Job::Sync { .. }
        ) {
            run_other(cx, verifier, job, done)?;
        } else {
            match decode(cx, job).map(|b| drop_unfundable(cx, b)) {
                Ok(b) if b.txs.len() > GATHER_TXS && matches!(b.origin, Origin::Request { .. }) => {
                    verify_client_batch(cx, verifier, b, done)?;
                }
                Ok(b) => {
                    gathered += b.txs.len();
                    batches.push(b);
                }
                Err(d) => done(d)?,
            }
        }
        if gathered < GATHER_TXS {
            next = queue.try_recv().ok();
        }
    }
    let all: Vec<&Transaction> = batches.iter().flat_map(|b| b.txs.iter()).collect();
    let verdicts = verifier.verify(&all, cx.chain_id);
    drop(all);
    let mut verdicts = verdicts.into_iter();
    for b in batches {
        let mine: Vec<Verdict> = verdicts.by_ref().take(b.txs.len()).collect();
        done(settle(cx, b, mine))?;
    }
    Ok(())
}

/// Drops from `b`, before any signature is checked, every transaction
/// whose sender's committed balance does not cover it alone (amount and
/// fee): the mempool would refuse it anyway ("insufficient balance"), and
/// a state read costs a fraction of a signature check, so a flood of
/// transfers from empty accounts costs the node reads, not checks (in the
/// adversary suite it queued honest submissions behind thousands of
/// checks). Nobody is blamed: the signature was never looked at, and a
/// peer one height behind or ahead may see another balance. API
/// submissions get the reason per transaction. When the store cannot be
/// read, nothing is dropped here (admission decides, as before).
fn drop_unfundable(cx: &Context, mut b: Batch) -> Batch {
    let mut senders: Vec<PublicKey> = b.txs.iter().map(|tx| tx.body().sender).collect();
    senders.sort_unstable();
    senders.dedup();
    let balances: HashMap<PublicKey, u64> = match cx.state.accounts(&senders) {
        Ok(accounts) => senders
            .into_iter()
            .zip(accounts)
            .map(|(pk, a)| (pk, a.balance))
            .collect(),
        Err(e) => {
            warn!("reading balances before verification: {e}");
            return b;
        }
    };
    let unfunded = |tx: &Transaction| {
        let balance = balances.get(&tx.body().sender).copied().unwrap_or(0);
        let needed = spend_of(tx);
        (needed > balance).then_some((balance, needed))
    };
    // The common case, every sender funded, keeps the batch as it is.
    if b.txs.iter().all(|tx| unfunded(tx).is_none()) {
        return b;
    }
    // Gossip names each transaction's sender; a framed client is one.
    let per_tx_senders = matches!(b.origin, Origin::Gossip);
    let mut kept = Vec::with_capacity(b.txs.len());
    let mut kept_senders = Vec::new();
    let mut refused = Vec::new();
    for (i, tx) in std::mem::take(&mut b.txs).into_iter().enumerate() {
        match unfunded(&tx) {
            Some((balance, needed)) => refused.push((
                i,
                Reject::InsufficientBalance {
                    balance,
                    needed: u128::from(needed),
                }
                .to_string(),
            )),
            None => {
                if per_tx_senders {
                    kept_senders.push(b.senders[i]);
                }
                kept.push(tx);
            }
        }
    }
    cx.metrics
        .txs_unfunded
        .fetch_add(refused.len() as u64, Ordering::Relaxed);
    b.txs = kept;
    if per_tx_senders {
        b.senders = kept_senders;
    }
    if let Origin::Api { refused: r, .. } = &mut b.origin {
        *r = refused;
    }
    b
}

/// The result of a verified batch: its valid transactions, after blaming
/// every peer that sent an invalid one.
fn settle(cx: &Context, b: Batch, verdicts: Vec<Verdict>) -> Done {
    let received = b.txs.len();
    let mut blamed: Vec<[u8; 32]> = Vec::new();
    let client = matches!(b.origin, Origin::Request { .. });
    let mut valid = Vec::with_capacity(received);
    for (k, (tx, verdict)) in b.txs.into_iter().zip(&verdicts).enumerate() {
        if *verdict == Verdict::Valid {
            valid.push(tx);
            continue;
        }
        // A peer relays only what it verified (`relay_received` is off on
        // every node) and a signing client only sends what it signed: an
        // invalid transaction from either is forged or from a broken
        // node either way.
        let from = if client {
            b.senders.first()
        } else {
            b.senders.get(k)
        };
        if let Some(from) = from {
            if !blamed.contains(from) {
                blamed.push(*from);
                invalid_from_peer(cx, *from, *verdict);
            }
        }
    }
    let origin = match b.origin {
        // A client caught forging gets nothing admitted.
        Origin::Request { .. } if !blamed.is_empty() => {
            valid.clear();
            b.origin
        }
        Origin::Api { reply, refused, .. } => Origin::Api {
            verdicts,
            refused,
            reply,
        },
        o => o,
    };
    Done::Verified {
        txs: valid,
        origin,
        received,
    }
}

/// Verifies a framed client's large batch chunk by chunk and stops at the
/// first chunk holding a forgery: the client is banned and nothing of its
/// batch admitted, having cost at most one chunk of single checks.
fn verify_client_batch(
    cx: &Context,
    verifier: &mut Verifier,
    b: Batch,
    done: &DoneSink,
) -> Result<(), ()> {
    let mut verdicts = Vec::with_capacity(b.txs.len());
    for chunk in b.txs.chunks(GATHER_TXS) {
        let v = verifier.verify(chunk, cx.chain_id);
        let forged = v.iter().any(|v| *v != Verdict::Valid);
        verdicts.extend(v);
        if forged {
            // The rest is never checked: marked invalid unread.
            verdicts.resize(b.txs.len(), Verdict::BadSignature);
            break;
        }
    }
    done(settle(cx, b, verdicts))
}

/// A pulled block's check, or a block read for a peer.
fn run_other(cx: &Context, verifier: &mut Verifier, job: Job, done: &DoneSink) -> Result<(), ()> {
    let d = match job {
        Job::Block { from, payload } => match Payload::decode(&payload) {
            Ok(Payload::Engine(Message::BlockData { block, txs })) => {
                let signatures_valid = verifier
                    .verify(&txs, cx.chain_id)
                    .iter()
                    .all(|v| *v == Verdict::Valid);
                Done::Block {
                    from,
                    block,
                    txs,
                    signatures_valid,
                }
            }
            Ok(_) => {
                undecodable(cx, from, "block data", &"not block data");
                Done::BlockUnusable { payload }
            }
            Err(e) => {
                undecodable(cx, from, "block data", &e);
                Done::BlockUnusable { payload }
            }
        },
        Job::Execute { id, env, txs } => Done::Executed {
            id,
            result: cx.state.execute(env, &txs),
        },
        Job::Serve { to, height, id } => match cx.chain.serve(height, &id) {
            Ok(Some((block, txs))) => Done::Served {
                to,
                payload: Payload::Engine(Message::BlockData {
                    block: Box::new(block),
                    txs,
                })
                .encode(),
            },
            Ok(None) => Done::Nothing,
            Err(e) => {
                // This node's own store failed: never the asking peer's
                // fault. It gets no answer and asks another node.
                cx.metrics.local_faults.fetch_add(1, Ordering::Relaxed);
                error!(height, "reading a finalized block for a peer failed: {e}");
                Done::Nothing
            }
        },
        Job::Sync {
            to,
            request_id,
            payload,
        } => match SyncRequest::decode(&payload) {
            Err(e) => {
                undecodable(cx, to, "state-sync request", &e);
                Done::Nothing
            }
            Ok(request) => {
                let snapshots = cx.snapshots.lock().unwrap_or_else(|p| p.into_inner());
                match sync::respond(&snapshots, &request) {
                    Ok(answer) => Done::SyncAnswer {
                        to,
                        request_id,
                        payload: answer.encode(),
                    },
                    Err(e) => {
                        // Our own snapshot failed to read: not the peer's
                        // fault; it asks another node.
                        cx.metrics.local_faults.fetch_add(1, Ordering::Relaxed);
                        error!("serving a state-sync request failed: {e}");
                        Done::Nothing
                    }
                }
            }
        },
        // Callers hand transaction jobs to `run_transactions`.
        _ => unreachable!("run_other takes block, execute and serve jobs only"),
    };
    done(d)
}

/// How many workers to start, at what priority.
pub(crate) struct Workers {
    pub threads: usize,
    /// Niceness added to the node's own (`consensus.verify_nice`).
    pub nice: i32,
}

/// Where the workers hand results back: the driver's input queue (the
/// node wraps each [`Done`] as one of its inputs). It must never make a
/// worker wait for long: the queue behind it has room for every job that
/// can be out at once. An error means the driver is gone.
pub(crate) type DoneSink = Box<dyn Fn(Done) -> Result<(), ()> + Send + Sync>;

/// The queues the workers take jobs from, and where results go.
pub(crate) struct Queues {
    /// Client batches and API submissions: taken before gossip.
    pub jobs: Receiver<Job>,
    /// Transactions gossiped by peers: taken when no client job, API
    /// submission or block to serve waits, so a gossip flood (anyone can
    /// send one) never queues a user's submission behind it.
    pub gossip: Receiver<Job>,
    pub blocks: Receiver<Job>,
    pub serve: Receiver<Job>,
    pub done: DoneSink,
}

/// Lowers the calling thread's priority by `nice` (Linux priorities are
/// per thread). A refusal is logged, not fatal: the thread still runs.
pub(crate) fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: `gettid` has no preconditions; `getpriority` and
    // `setpriority` only read their integer arguments and touch the
    // calling thread's scheduling attributes.
    let refused = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).clamp(-20, 19)) != 0
    };
    if refused {
        warn!(
            "cannot lower the priority of thread {:?}: {}",
            std::thread::current().name().unwrap_or("?"),
            std::io::Error::last_os_error()
        );
    }
}

/// The next job for a verification worker: a client batch, an API
/// submission or a block or snapshot chunk to serve if one waits, else
/// gossip; `None` when the node is stopping.
fn next_job(cx: &Context, q: &Queues) -> Option<Job> {
    loop {
        if cx.stop.load(Ordering::Acquire) {
            return None;
        }
        // Clients' and peers' requests first, gossip last (see `Queues`).
        if let Ok(job) = q.jobs.try_recv().or_else(|_| q.serve.try_recv()) {
            return Some(job);
        }
        let got = crossbeam_channel::select! {
            recv(q.jobs) -> j => j,
            recv(q.serve) -> j => j,
            recv(q.gossip) -> j => j,
            default(IDLE_CHECK) => Err(crossbeam_channel::RecvError),
        };
        if let Ok(job) = got {
            return Some(job);
        }
    }
}

/// Starts the workers: `w.threads` verification workers at the lower
/// priority (transactions, blocks to serve), and one block checker at the
/// node's own priority (`strata-blocks`). A pulled block is on the path to
/// finality: checked by a niced worker it waited behind gossip batches
/// and, on a busy machine, behind every other process (a 4-node devnet
/// sharing its cores with one busy process finalized about a quarter
/// fewer transactions a second that way). Its thread is idle but for
/// the blocks this node pulled, at most a few per height. They all stop
/// when the node's stop flag is set.
///
/// # Errors
/// When a thread cannot be spawned.
pub(crate) fn start(
    cx: &Arc<Context>,
    w: Workers,
    queues: Queues,
) -> Result<Vec<JoinHandle<()>>, String> {
    let queues = Arc::new(queues);
    let mut threads: Vec<JoinHandle<()>> = (0..w.threads.max(1))
        .map(|i| {
            let cx = Arc::clone(cx);
            let q = Arc::clone(&queues);
            let nice = w.nice;
            std::thread::Builder::new()
                .name(format!("strata-verify-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    let mut verifier = Verifier::new().sharing(Arc::clone(&cx.verified));
                    while let Some(job) = next_job(&cx, &q) {
                        let r = match job {
                            Job::Block { .. }
                            | Job::Execute { .. }
                            | Job::Serve { .. }
                            | Job::Sync { .. } => run_other(&cx, &mut verifier, job, &q.done),
                            // Gossip is gathered with gossip, client jobs
                            // with client jobs.
                            job @ Job::Gossip { .. } => {
                                run_transactions(&cx, &mut verifier, job, &q.gossip, &q.done)
                            }
                            job => run_transactions(&cx, &mut verifier, job, &q.jobs, &q.done),
                        };
                        if r.is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("cannot start a verification thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let cx = Arc::clone(cx);
    let q = Arc::clone(&queues);
    let blocks = std::thread::Builder::new()
        .name("strata-blocks".into())
        .spawn(move || {
            let mut verifier = Verifier::new().sharing(Arc::clone(&cx.verified));
            while !cx.stop.load(Ordering::Acquire) {
                match q.blocks.recv_timeout(IDLE_CHECK) {
                    Ok(job) => {
                        if run_other(&cx, &mut verifier, job, &q.done).is_err() {
                            break;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
            }
        })
        .map_err(|e| format!("cannot start the block checker thread: {e}"))?;
    threads.push(blocks);
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::{lower_priority, WarnLimiter};

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The niceness is added to the thread's own, capped at 19, and only
    /// the calling thread changes.
    #[test]
    fn offence_warnings_are_limited_per_second_and_say_how_many_were_left_out() {
        let l = WarnLimiter::new(3);
        assert_eq!(l.allow_at(5), Some(0));
        assert_eq!(l.allow_at(5), Some(0));
        assert_eq!(l.allow_at(5), Some(0));
        assert_eq!(l.allow_at(5), None);
        assert_eq!(l.allow_at(5), None);
        assert_eq!(
            l.allow_at(6),
            Some(2),
            "the next window reports the two left out"
        );
        assert_eq!(l.allow_at(6), Some(0));
    }

    #[test]
    fn lower_priority_adds_to_the_calling_threads_niceness() {
        let before = nice_of_this_thread();
        let (inside, capped) = std::thread::spawn(move || {
            lower_priority(3);
            let inside = nice_of_this_thread();
            lower_priority(40);
            (inside, nice_of_this_thread())
        })
        .join()
        .unwrap();
        assert_eq!(inside, (before + 3).min(19));
        assert_eq!(capped, 19);
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the caller's thread is unchanged"
        );
    }
}
