//! Transaction intake off the driver thread: `strata-verify-*` workers
//! decode client batches and gossip items and check their signatures, and
//! hand back only the valid transactions for the driver to admit.
//!
//! Why decoding happens here and not on the driver: decoding a transaction
//! hashes its whole encoding (its id), which under load is as much blake3
//! work per transaction as the trie update of its block. The driver is the
//! one thread that runs consensus, execution and commit, so every
//! microsecond per transaction it sheds is throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use strata_consensus::engine::Message;
use strata_consensus::tx::Transaction;
use strata_consensus::verify::{Verdict, Verifier, BATCH_TXS_MAX};
use strata_consensus::wire::Payload;
use strata_net::peer::Misbehaviour;
use tracing::warn;

use crate::node::Shared;

/// Work for the verification workers.
pub(crate) enum Job {
    /// A client request (the bench), still encoded: usually a batch of
    /// transactions, answered with the count admitted.
    Request {
        from: [u8; 32],
        request_id: u64,
        payload: Vec<u8>,
    },
    /// Transactions from peers: gossip items still encoded and
    /// transactions that arrived already decoded in a message, each with
    /// the peer it came from, to penalise if it does not decode or verify.
    Gossip {
        items: Vec<([u8; 32], Vec<u8>)>,
        txs: Vec<([u8; 32], Transaction)>,
    },
}

/// Where a batch of transactions came from.
pub(crate) enum Origin {
    /// Gossip items from peers: relayed once admitted (the net layer does
    /// not pass them on as they arrive).
    Gossip,
    /// A client request (the bench): answer with the count admitted and
    /// gossip what was admitted.
    Request { from: [u8; 32], request_id: u64 },
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
    /// A job that left nothing to do (it did not decode; the peer was
    /// penalised). Returned all the same so the driver's count of jobs in
    /// flight stays exact.
    Nothing,
}

/// Counts an invalid transaction from a peer and penalises the peer.
fn invalid_from_peer(shared: &Shared, from: [u8; 32], verdict: Verdict) {
    let m = &shared.metrics.txs_invalid_from_peers;
    blame(
        shared,
        m,
        from,
        Misbehaviour::InvalidItem,
        format_args!("invalid gossiped transaction: {verdict:?}"),
    );
}

/// Counts an undecodable payload and penalises its sender.
pub(crate) fn undecodable(shared: &Shared, from: [u8; 32], what: &str, e: &dyn std::fmt::Display) {
    let m = &shared.metrics.payloads_undecodable;
    blame(
        shared,
        m,
        from,
        Misbehaviour::Undecodable,
        format_args!("undecodable {what}: {e}"),
    );
}

/// Counts one offence in `counter`, logs it and penalises the peer.
fn blame(
    shared: &Shared,
    counter: &AtomicU64,
    from: [u8; 32],
    reason: Misbehaviour,
    what: std::fmt::Arguments<'_>,
) {
    counter.fetch_add(1, Ordering::Relaxed);
    warn!(peer = %hex::encode(&from[..4]), "{what}");
    let _ = shared.net.penalize(from, reason);
}

/// A job decoded: its transactions and where they came from, or what to
/// hand back at once.
enum Decoded {
    /// The transactions, their origin and, for gossip, each one's sender.
    Txs(Vec<Transaction>, Origin, Vec<[u8; 32]>),
    Done(Done),
}

/// Decodes one job (hashing each transaction for its id).
fn decode(shared: &Shared, job: Job) -> Decoded {
    match job {
        Job::Request {
            from,
            request_id,
            payload,
        } => match Payload::decode(&payload) {
            Ok(Payload::Txs(txs)) => {
                Decoded::Txs(txs, Origin::Request { from, request_id }, Vec::new())
            }
            Ok(Payload::Engine(msg)) => Decoded::Done(Done::Engine { from, msg }),
            Err(e) => {
                undecodable(shared, from, "request", &e);
                Decoded::Done(Done::Nothing)
            }
        },
        Job::Gossip { items, txs } => {
            let (mut senders, mut decoded): (Vec<[u8; 32]>, Vec<Transaction>) =
                txs.into_iter().unzip();
            senders.reserve(items.len());
            decoded.reserve(items.len());
            for (from, item) in items {
                match Transaction::decode(&item) {
                    Ok(tx) => {
                        senders.push(from);
                        decoded.push(tx);
                    }
                    Err(e) => undecodable(shared, from, "gossiped transaction", &e),
                }
            }
            Decoded::Txs(decoded, Origin::Gossip, senders)
        }
    }
}

/// Transactions a worker gathers from queued jobs before verifying: one
/// signature batch. Batch verification costs about a fifth less per
/// signature at 256 than at 64-128 and less again at 512
/// (docs/benchmarks.md), and gossip jobs (one per driver turn) and client
/// batches (256 from the bench) are smaller.
const GATHER_TXS: usize = BATCH_TXS_MAX;

/// Takes `first` and, while they hold fewer than [`GATHER_TXS`]
/// transactions, the jobs already queued behind it; verifies all their
/// transactions together and hands back one result per job, in order.
fn run(
    shared: &Shared,
    verifier: &mut Verifier,
    first: Job,
    queue: &Receiver<Job>,
    done: &Sender<Done>,
) -> Result<(), ()> {
    let mut batches: Vec<(usize, Origin, Vec<[u8; 32]>)> = Vec::new();
    let mut all: Vec<Transaction> = Vec::new();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match decode(shared, job) {
            Decoded::Txs(txs, origin, senders) => {
                batches.push((txs.len(), origin, senders));
                all.extend(txs);
            }
            Decoded::Done(d) => done.send(d).map_err(|_| ())?,
        }
        if all.len() < GATHER_TXS {
            next = queue.try_recv().ok();
        }
    }
    let verdicts = verifier.verify(&all, shared.genesis.chain_id);
    let mut txs = all.into_iter();
    let mut verdicts = verdicts.into_iter();
    for (received, origin, senders) in batches {
        let mut valid = Vec::with_capacity(received);
        let mut blamed: Vec<[u8; 32]> = Vec::new();
        for (k, (tx, verdict)) in txs
            .by_ref()
            .take(received)
            .zip(verdicts.by_ref())
            .enumerate()
        {
            if verdict == Verdict::Valid {
                valid.push(tx);
            } else if let Some(from) = senders.get(k) {
                // A peer relays only what it verified (`relay_received` is
                // off on every node): an invalid transaction from one is
                // forged or from a broken node either way.
                if !blamed.contains(from) {
                    blamed.push(*from);
                    invalid_from_peer(shared, *from, verdict);
                }
            }
        }
        done.send(Done::Verified {
            txs: valid,
            origin,
            received,
        })
        .map_err(|_| ())?;
    }
    Ok(())
}

/// How many verification workers to start, at what priority, sharing a
/// job queue of what length.
pub(crate) struct Workers {
    pub threads: usize,
    /// Niceness added to the node's own (`consensus.verify_nice`).
    pub nice: i32,
    pub jobs_max: usize,
}

/// Lowers the calling thread's priority by `nice` (Linux priorities are
/// per thread). A refusal is logged, not fatal: the worker still runs.
fn lower_priority(nice: i32) {
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
            "cannot lower the verification threads' priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Starts the workers. They stop when the returned job sender is dropped.
pub(crate) fn start(
    shared: &Arc<Shared>,
    w: Workers,
) -> (Sender<Job>, Receiver<Done>, Vec<JoinHandle<()>>) {
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(w.jobs_max);
    // Unbounded: a worker must never wait to hand a result back (it would
    // hold a job slot meanwhile). What sits here is bounded all the same:
    // one result per job, at most `jobs_max` jobs in the queue, and the
    // driver drains it every turn.
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
    let workers = (0..w.threads.max(1))
        .map(|i| {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            let shared = Arc::clone(shared);
            let nice = w.nice;
            std::thread::Builder::new()
                .name(format!("strata-verify-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    let mut verifier = Verifier::new().sharing(Arc::clone(&shared.verified));
                    for job in jobs.iter() {
                        if run(&shared, &mut verifier, job, &jobs, &done).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning a verification thread")
        })
        .collect();
    (job_tx, done_rx, workers)
}

#[cfg(test)]
mod tests {
    use super::lower_priority;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The niceness is added to the thread's own, capped at 19, and only
    /// the calling thread changes.
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
