//! Joining by state sync (`[sync] mode = "state"`, or `auto` when the
//! chain is far ahead): before the node proper starts, a node with an
//! empty store fetches the state of a recent snapshot from the genesis
//! validators and adopts it, then starts at that height and follows the
//! chain from there like any node that was down for a while.
//!
//! **`auto`** (the default) first tries a TCP connect to each validator;
//! if none accepts (a network starting up) the node replays at once.
//! Otherwise it asks the reachable ones for their heads (until all have
//! answered, `heads_wait_ms` at most) and syncs state only if validators
//! making up more than 2/3 of the genesis's serve a snapshot at
//! `auto_min_height` or above: a node close to the genesis replays,
//! keeping the history. An
//! interrupted state sync (a resume record or state entries in the store)
//! is finished whatever the mode.
//!
//! Steps, each bounded:
//! 1. A short-lived network node (the node's own key, an ephemeral port,
//!    outbound only) dials the validators and asks each for the snapshot
//!    heads it serves, for up to `[sync] heads_wait_ms`.
//! 2. The head more than 2/3 of the validators report — height, block id,
//!    state root and entry count alike ([`sync::choose_head`]) — is the
//!    one fetched; **why a quorum of validators**: the root must come from
//!    the chain, and a minority of liars cannot make one up. Validators
//!    count one each (not by stake): a joining node only needs a root
//!    that honest validators vouch for, and the genesis's fault bound is
//!    in validators.
//! 3. [`sync::StateSync`] spreads chunk requests over the validators that
//!    reported that head; every chunk is checked by its range proof
//!    before it is written (a liar is banned and its range asked of
//!    another), and verified chunks go into the store as sorted runs by
//!    bulk ingest (no WAL, no memtable), a run per sub-range each time
//!    [`INGEST_RUN_BYTES`] have gathered.
//!    After each run is written, the position of every sub-range is
//!    persisted ([`SyncProgress`], synced): a node killed at any point
//!    resumes from there on its next start, if a quorum still serves that
//!    snapshot; otherwise it deletes the entries it fetched
//!    ([`DbChain::discard_synced_state`]) and fetches the newer one.
//! 4. [`DbChain::adopt_synced_state`] builds the trie over the ingested
//!    state, checks its root, and writes the chain's records in one bulk
//!    ingest: after a crash before it, the store holds every state entry
//!    but no chain, and the next start finds every sub-range done and
//!    goes straight to this step.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_consensus::db_chain::DbChain;
use strata_consensus::genesis::Genesis;
use strata_consensus::sync::{
    self, Outcome, RangeCursor, RefuseReason, SnapshotHead, StateSync, StateSyncConfig,
    SyncProgress, SyncRequest, SyncResponse, VerifiedChunk, PROGRESS_KEY,
};
use strata_net::peer::Misbehaviour;
use strata_net::Event;
use strata_storage::Db;
use tracing::{info, warn};

use crate::config::{NodeConfig, SyncMode};

/// Verified entries gathered per sub-range before they are written as
/// one sorted run: fewer, larger tables than one per chunk. 8 MiB, two
/// chunks: 16 sub-ranges then hold at most about 128 MiB of entries
/// waiting.
pub const INGEST_RUN_BYTES: usize = 8 << 20;

/// How long the whole join may take before the node gives up with a
/// message (a joining node that cannot finish is better restarted than
/// left hanging).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Verified chunks of one sub-range not written yet, and their entry
/// bytes. Kept as the chunks themselves (no copy into per-record
/// allocations): 16 sub-ranges' pending runs are the joiner's largest
/// buffers.
type PendingRun = (Vec<VerifiedChunk>, usize);

/// How often a joining node asks the validators for their heads again
/// while they do not agree on one.
pub const HEADS_ASK_EVERY: Duration = Duration::from_secs(1);

/// How long a joining node still waits for the other validators' heads
/// once a quorum agrees on one.
pub const HEADS_GRACE: Duration = Duration::from_millis(500);

/// Test hook: with this variable set, the process exits (code 9) once
/// every entry is written and before adoption — the one crash point a
/// test cannot reliably hit by timing a kill (adopting a test chain's
/// state takes milliseconds).
pub const EXIT_BEFORE_ADOPT_ENV: &str = "STRATA_TEST_EXIT_BEFORE_ADOPT";

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Whether `db` holds no chain yet (no `m` record): what state sync fills.
///
/// # Errors
/// Storage failures.
pub fn store_is_empty(db: &Db) -> Result<bool, String> {
    db.get(b"m")
        .map(|m| m.is_none())
        .map_err(|e| format!("cannot read the store: {e}"))
}

/// Fills the empty store `db` with the state of a snapshot the genesis
/// validators serve, as the module docs say.
///
/// # Errors
/// No quorum on a snapshot, no peer able to serve it, a storage failure,
/// or the join timing out; each as a message for the operator.
pub fn state_sync(
    db: &Arc<Db>,
    genesis: &Genesis,
    config: &NodeConfig,
    seed: [u8; 32],
) -> Result<(), String> {
    let started = Instant::now();
    let me = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let validators: Vec<([u8; 32], SocketAddr)> = genesis
        .validator_set()
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|v| v.public_key != me)
        .filter_map(|v| v.address.parse().ok().map(|a| (v.public_key, a)))
        .collect();
    // `auto` decides between state sync and replay; an interrupted state
    // sync is finished whatever the mode.
    let auto =
        config.sync.mode == SyncMode::Auto && load_progress(db)?.is_none() && !holds_state(db)?;
    let validators = if auto {
        let reachable = reachable(&validators);
        if reachable.is_empty() {
            info!("no validator is reachable yet: replaying the chain from the genesis");
            return Ok(());
        }
        reachable
    } else {
        validators
    };
    if validators.is_empty() {
        return Err(
            "state sync needs other validators to fetch from; the genesis lists none".into(),
        );
    }
    let listen: SocketAddr = config
        .listen
        .parse()
        .map_err(|e| format!("listen address {}: {e}", config.listen))?;
    let net_config = strata_net::Config {
        listen_addr: SocketAddr::new(listen.ip(), 0),
        seeds: validators.iter().map(|(_, a)| *a).collect(),
        chain_id: genesis.net_chain_id(),
        inbound_peers_max: 0,
        outbound_peers_max: validators.len(),
        gossip_quiet: true,
        frame_payload_bytes_max: (sync::limits::CHUNK_RESPONSE_BYTES_MAX as u32)
            .max(config.net.frame_payload_bytes_max),
        ..strata_net::Config::default()
    };
    let net = strata_net::Node::start(net_config, strata_net::handshake::Identity::from_seed(seed))
        .map_err(|e| format!("cannot start the network for state sync: {e}"))?;
    let auto_min_height = auto.then_some(config.sync.auto_min_height);
    let result = run(
        db,
        genesis,
        config,
        &net,
        &validators,
        auto_min_height,
        started,
    );
    let _ = net.shutdown();
    result
}

/// A snapshot head to fetch and the validators that serve it.
type Chosen = (SnapshotHead, Vec<[u8; 32]>);

/// How long [`choose`] waits.
#[derive(Clone, Copy, Debug)]
enum Patience {
    /// `mode = "state"`: until a quorum reports a head, for `wait_ms` at
    /// most, then fail.
    UntilQuorum { wait_ms: u64 },
    /// `mode = "auto"`: until every reachable validator answered (for
    /// `wait_ms` at most); a head a quorum serves at `min_height` or
    /// above, or none (replay).
    Probe { min_height: u64, wait_ms: u64 },
}

/// How long `auto` waits for one validator's TCP connect.
const AUTO_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// The validators that accept a TCP connection now (each tried for at
/// most [`AUTO_CONNECT_TIMEOUT`]): on a network starting up, none, and
/// the node replays without waiting.
fn reachable(validators: &[([u8; 32], SocketAddr)]) -> Vec<([u8; 32], SocketAddr)> {
    validators
        .iter()
        .filter(|(_, addr)| {
            std::net::TcpStream::connect_timeout(addr, AUTO_CONNECT_TIMEOUT).is_ok()
        })
        .copied()
        .collect()
}

fn run(
    db: &Arc<Db>,
    genesis: &Genesis,
    config: &NodeConfig,
    net: &strata_net::Handle,
    validators: &[([u8; 32], SocketAddr)],
    auto_min_height: Option<u64>,
    started: Instant,
) -> Result<(), String> {
    let mono = || started.elapsed().as_millis() as u64;
    let total = genesis.validator_set().map_err(|e| e.to_string())?.len() as u64;
    let saved = load_progress(db)?;
    if let Some(p) = saved
        .as_ref()
        .filter(|p| p.cursors.iter().all(|c| *c == RangeCursor::Done))
    {
        // Every entry is in the store, each verified against the head's
        // root when it arrived: only the adoption was left (a crash during
        // or just before it). No network needed; the adoption checks the
        // root again.
        info!(
            height = p.head.height,
            entries = p.entries,
            "state sync: every entry was written by an earlier run; adopting"
        );
        return adopt(db, genesis, &p.head, p.entries, 0, 0, started);
    }
    let patience = match auto_min_height {
        Some(min_height) => Patience::Probe {
            min_height,
            wait_ms: config.sync.heads_wait_ms,
        },
        None => Patience::UntilQuorum {
            wait_ms: config.sync.heads_wait_ms,
        },
    };
    let Some((head, peers)) = choose(
        net,
        validators,
        total,
        patience,
        saved.as_ref().map(|p| p.head),
    )?
    else {
        info!(
            auto_min_height,
            "no snapshot far enough ahead is served: replaying the chain from the genesis"
        );
        return Ok(());
    };
    info!(
        height = head.height,
        entries = head.entries,
        peers = peers.len(),
        root = %hex::encode(head.state_root),
        "state sync: fetching the snapshot"
    );
    let sync_config = StateSyncConfig::new().chunk_bytes_max(config.sync.chunk_bytes);
    // Resume the saved run if it fetched this head; a record whose
    // cursors do not fit its sub-ranges (damage the engine's checksums did
    // not catch, or another version's layout) is not trusted: start over
    // as if the snapshot had changed.
    let resumed = match &saved {
        Some(p) if p.head == head => {
            let sync = StateSync::resume(
                head,
                sync_config.clone().ranges(p.cursors.len()),
                &p.cursors,
                p.entries,
            )
            .ok()
            .filter(|_| p.entries <= p.head.entries);
            if sync.is_none() {
                warn!("state sync: the resume record does not fit its snapshot; starting over");
            }
            sync.map(|sync| (sync, p))
        }
        _ => None,
    };
    let mut sync = match resumed {
        Some((sync, p)) => {
            let done = p
                .cursors
                .iter()
                .filter(|c| **c == RangeCursor::Done)
                .count();
            info!(
                ranges_done = done,
                ranges = p.cursors.len(),
                entries = p.entries,
                "state sync: resuming where an earlier run stopped"
            );
            sync
        }
        None => {
            if saved.is_some() || holds_state(db)? {
                let deleted = DbChain::discard_synced_state(db)
                    .map_err(|e| format!("state sync: deleting an earlier run's state: {e}"))?;
                info!(
                    deleted,
                    earlier_height = saved.map(|p| p.head.height),
                    "state sync: the snapshot an earlier run fetched is no longer served; \
                     deleted its entries"
                );
            }
            StateSync::new(head, sync_config).map_err(|e| format!("state sync: {e}"))?
        }
    };
    // What is in the store: the cursors as of the last run written (the
    // sync's own run ahead by the verified entries not yet written).
    let mut written = SyncProgress {
        head,
        cursors: sync.cursors().collect(),
        entries: sync.progress().entries,
    };
    save_progress(db, &written)?;
    for p in &peers {
        sync.add_peer(*p).map_err(|e| format!("state sync: {e}"))?;
    }
    let mut tickets: HashMap<u64, u64> = HashMap::new();
    let mut runs: HashMap<usize, PendingRun> = HashMap::new();
    let mut events = Vec::new();
    let mut last_report = Instant::now();
    let (mut ingested_bytes, mut runs_written) = (0u64, 0u64);
    // Time inside bulk ingest and the table bytes it wrote: the write
    // path's own rate, apart from fetching and verifying.
    let mut ingest = IngestTime::default();
    while !sync.is_done() {
        if started.elapsed() > JOIN_TIMEOUT {
            return Err(format!(
                "state sync did not finish within {} s",
                JOIN_TIMEOUT.as_secs()
            ));
        }
        while let Some(out) = sync.poll_request(mono()) {
            let request_id = net
                .request(out.peer, out.payload())
                .map_err(|e| format!("state sync: the network stopped: {e}"))?;
            tickets.insert(request_id, out.ticket);
        }
        events.clear();
        net.next_events(&mut events, 256, Duration::from_millis(20));
        for event in events.drain(..) {
            match event {
                Event::Response {
                    request_id,
                    payload,
                    ..
                } => {
                    let Some(ticket) = tickets.remove(&request_id) else {
                        continue;
                    };
                    match sync.on_response_bytes(ticket, &payload, mono()) {
                        Outcome::Ingest { range, chunk } => {
                            let (run, bytes) = runs.entry(range).or_default();
                            let done = chunk.done;
                            *bytes += chunk.bytes as usize;
                            run.push(chunk);
                            if *bytes >= INGEST_RUN_BYTES || done {
                                let run = std::mem::take(run);
                                ingested_bytes += std::mem::take(bytes) as u64;
                                let entries: usize = run.iter().map(|c| c.entries.len()).sum();
                                written.entries += entries as u64;
                                if entries > 0 {
                                    let at = Instant::now();
                                    let stats = db
                                        .ingest_sorted(run.iter().flat_map(|c| c.records()))
                                        .map_err(|e| format!("state sync: writing state: {e}"))?;
                                    ingest.add(at.elapsed(), stats.table_bytes);
                                    runs_written += 1;
                                }
                                // Every verified chunk of `range` is in
                                // the run just written, so the sync's
                                // cursor is what the store holds.
                                if let Some(cursor) = sync.cursors().nth(range) {
                                    written.cursors[range] = cursor;
                                }
                                save_progress(db, &written)?;
                                if done {
                                    info!(
                                        range,
                                        entries = written.entries,
                                        "state sync: a sub-range is written"
                                    );
                                }
                            }
                        }
                        Outcome::Blame { peer, error } => {
                            warn!(
                                peer = %hex::encode(&peer[..4]),
                                "state sync: a peer sent a bad chunk, banned: {error}"
                            );
                            let _ = net.penalize(peer, Misbehaviour::InvalidItem);
                        }
                        // "Busy" is a serving peer's back-pressure (its
                        // byte budget for this joiner is spent): normal.
                        Outcome::Refused {
                            reason: RefuseReason::Busy,
                            ..
                        } => {}
                        Outcome::Refused { peer, reason, .. } => {
                            info!(peer = %hex::encode(&peer[..4]), ?reason, "state sync: refused");
                        }
                        Outcome::Stale => {}
                    }
                }
                Event::RequestFailed { request_id, .. } => {
                    if let Some(ticket) = tickets.remove(&request_id) {
                        sync.on_failure(ticket);
                    }
                }
                _ => {}
            }
        }
        for failure in sync.on_tick(mono()) {
            tickets.retain(|_, t| *t != failure.ticket);
        }
        if !sync.is_done() && sync.progress().ranges_done < sync.progress().ranges {
            if let Some(err) = no_peers_left(&sync) {
                return Err(err);
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            let p = sync.progress();
            info!(
                entries = p.entries,
                of = sync.head().entries,
                ranges_done = p.ranges_done,
                ranges = p.ranges,
                mib = p.bytes >> 20,
                "state sync: progress"
            );
            last_report = Instant::now();
        }
    }
    // Every sub-range is done, and a run is written when its last chunk
    // arrives: nothing is left over.
    debug_assert!(runs.values().all(|(run, _)| run.is_empty()));
    let p = sync.finish().map_err(|e| format!("state sync: {e}"))?;
    let head = *sync.head();
    if std::env::var_os(EXIT_BEFORE_ADOPT_ENV).is_some() {
        warn!(
            "state sync: every entry is written; exiting before adoption ({EXIT_BEFORE_ADOPT_ENV})"
        );
        std::process::exit(9);
    }
    info!(
        ingest_s = format!("{:.1}", ingest.time.as_secs_f64()),
        table_mib = ingest.table_bytes >> 20,
        mib_per_s = format!("{:.0}", ingest.mib_per_s()),
        "state sync: bulk ingest"
    );
    adopt(
        db,
        genesis,
        &head,
        p.entries,
        ingested_bytes,
        runs_written,
        started,
    )
}

/// Time spent in bulk ingest and the table bytes written.
#[derive(Default)]
struct IngestTime {
    time: Duration,
    table_bytes: u64,
}

impl IngestTime {
    fn add(&mut self, time: Duration, table_bytes: u64) {
        self.time += time;
        self.table_bytes += table_bytes;
    }

    /// Table MiB written per second of ingest (0 before any).
    fn mib_per_s(&self) -> f64 {
        let s = self.time.as_secs_f64();
        if s == 0.0 {
            0.0
        } else {
            self.table_bytes as f64 / (1 << 20) as f64 / s
        }
    }
}

/// Adopts the fetched state of `head` ([`DbChain::adopt_synced_state`])
/// and logs the join's figures.
fn adopt(
    db: &Arc<Db>,
    genesis: &Genesis,
    head: &SnapshotHead,
    entries: u64,
    ingested_bytes: u64,
    runs_written: u64,
    started: Instant,
) -> Result<(), String> {
    let fetched_s = started.elapsed().as_secs_f64();
    DbChain::adopt_synced_state(db, genesis, head.height, &head.block_id, &head.state_root)
        .map_err(|e| {
            // The entries were each verified on arrival, so a mismatch is
            // a local fault; the next start fetches them again.
            let _ = DbChain::discard_synced_state(db);
            format!(
                "state sync: adopting the fetched state failed: {e}; its entries were deleted, \
                 and the next start fetches them again"
            )
        })?;
    info!(
        height = head.height,
        entries,
        mib = ingested_bytes >> 20,
        runs = runs_written,
        fetch_s = format!("{fetched_s:.1}"),
        total_s = format!("{:.1}", started.elapsed().as_secs_f64()),
        "state sync: done; following the chain from here"
    );
    Ok(())
}

/// Whether the store holds `key`.
fn db_holds(db: &Db, key: &[u8]) -> Result<bool, String> {
    db.get(key)
        .map(|v| v.is_some())
        .map_err(|e| format!("state sync: reading the store: {e}"))
}

/// Deletes the resume record of a sync whose adoption finished (a crash
/// between the chain records and the record's delete leaves it; it is
/// never read once the chain exists).
///
/// # Errors
/// Storage failures.
pub fn forget_finished_sync(db: &Db) -> Result<(), String> {
    if !store_is_empty(db)? && db_holds(db, PROGRESS_KEY)? {
        db.delete(PROGRESS_KEY)
            .map_err(|e| format!("cannot delete the state sync resume record: {e}"))?;
    }
    Ok(())
}

/// Whether a store with no chain holds what a state sync left (a resume
/// record or state entries): such a store is finished by state sync in
/// any `[sync] mode` — replaying would write the genesis over entries of
/// another height.
///
/// # Errors
/// Storage failures.
pub fn sync_interrupted(db: &Db) -> Result<bool, String> {
    Ok(store_is_empty(db)? && (db_holds(db, PROGRESS_KEY)? || holds_state(db)?))
}

/// The resume record an earlier run left, if any; an unreadable one is
/// logged and treated as a run that cannot resume (its entries are
/// deleted and the fetch starts again), never trusted.
fn load_progress(db: &Db) -> Result<Option<SyncProgress>, String> {
    let Some(bytes) = db
        .get(PROGRESS_KEY)
        .map_err(|e| format!("state sync: reading the resume record: {e}"))?
    else {
        return Ok(None);
    };
    match SyncProgress::decode(&bytes) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            warn!("state sync: the resume record is unreadable ({e}); starting over");
            DbChain::discard_synced_state(db)
                .map_err(|e| format!("state sync: deleting an earlier run's state: {e}"))?;
            Ok(None)
        }
    }
}

/// Persists `progress` (synced: it must not lead the entries it covers,
/// which are durable on ingest, and a resumed run trusts it).
fn save_progress(db: &Db, progress: &SyncProgress) -> Result<(), String> {
    let mut batch = strata_storage::WriteBatch::new();
    batch.put(PROGRESS_KEY.to_vec(), progress.encode());
    db.write(batch, strata_storage::WriteOptions { sync: true })
        .map_err(|e| format!("state sync: saving the resume record: {e}"))
}

/// Whether the store holds state entries (left by a run from before the
/// resume record, or one whose record was unreadable).
fn holds_state(db: &Db) -> Result<bool, String> {
    Ok(db
        .scan_prefix([b's'])
        .map_err(|e| format!("state sync: reading the store: {e}"))?
        .next()
        .is_some())
}

/// The sync's error when no peer is left to ask.
fn no_peers_left(sync: &StateSync<[u8; 32]>) -> Option<String> {
    (sync.peer_count() == 0).then(|| {
        "state sync: every peer serving the snapshot was dropped (bad chunks, refusals or \
         timeouts); start again"
            .to_string()
    })
}

/// Asks every validator that connects for its snapshot heads, and asks
/// again every [`HEADS_ASK_EVERY`], until a quorum reports one head or
/// `wait_ms` passed; returns the head with the validators that reported
/// it. Asking again matters: validators publish a snapshot a little after
/// committing its height (its entries are counted first), so right after
/// a snapshot height they may not all serve it yet. `prefer` (the head
/// an interrupted run was fetching) wins over a newer head while a quorum
/// still serves it: the entries already written are kept.
fn choose(
    net: &strata_net::Handle,
    validators: &[([u8; 32], SocketAddr)],
    total: u64,
    patience: Patience,
    prefer: Option<SnapshotHead>,
) -> Result<Option<Chosen>, String> {
    let wait_ms = match patience {
        Patience::UntilQuorum { wait_ms } | Patience::Probe { wait_ms, .. } => wait_ms,
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms.max(1));
    let is_validator = |k: &[u8; 32]| validators.iter().any(|(v, _)| v == k);
    let mut asked: HashMap<u64, [u8; 32]> = HashMap::new();
    // The latest answer of each validator.
    let mut answers: HashMap<[u8; 32], Vec<SnapshotHead>> = HashMap::new();
    let mut connected: Vec<[u8; 32]> = Vec::new();
    let mut last_ask = Instant::now();
    let mut quorum_at: Option<Instant> = None;
    let mut events = Vec::new();
    let ask = |peer: [u8; 32], asked: &mut HashMap<u64, [u8; 32]>| {
        if let Ok(id) = net.request(peer, SyncRequest::Heads.encode()) {
            asked.insert(id, peer);
        }
    };
    loop {
        let weighed: Vec<([u8; 32], u64, Vec<SnapshotHead>)> = answers
            .iter()
            .map(|(p, heads)| (*p, 1, heads.clone()))
            .collect();
        // Every genesis validator counts in the total, this node too if it
        // is one (it vouches for nothing yet): over 2/3 of all of them.
        let preferred = prefer.and_then(|p| {
            let only_p: Vec<_> = weighed
                .iter()
                .map(|(k, w, heads)| (*k, *w, heads.iter().filter(|h| **h == p).copied().collect()))
                .collect();
            sync::choose_head(&only_p, total)
        });
        if let Some(head) = preferred.or_else(|| sync::choose_head(&weighed, total)) {
            // Once a quorum agrees, the validators still to answer get a
            // moment more: every one that serves the head shares the load
            // (and a liar among them is caught by its chunks, not here).
            let quorum_at = *quorum_at.get_or_insert_with(Instant::now);
            let all_answered = connected.iter().all(|k| answers.contains_key(k));
            if all_answered || quorum_at.elapsed() >= HEADS_GRACE {
                if let Patience::Probe { min_height, .. } = patience {
                    if head.height < min_height {
                        return Ok(None);
                    }
                }
                let peers = weighed
                    .iter()
                    .filter(|(_, _, heads)| heads.contains(&head))
                    .map(|(p, _, _)| *p)
                    .collect();
                return Ok(Some((head, peers)));
            }
        }
        if let Patience::Probe { .. } = patience {
            // Every validator that was reachable has answered, and no
            // snapshot is served by a quorum: the network does not serve
            // state (or not yet), so replay. Not on a timeout alone: a slow
            // handshake must not make a node replay a chain that pruned
            // its early blocks.
            if validators.iter().all(|(k, _)| answers.contains_key(k)) {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                warn!(
                    answered = answers.len(),
                    reachable = validators.len(),
                    "state sync: not every reachable validator answered within {wait_ms} ms \
                     and none serves a snapshot a quorum agrees on: replaying"
                );
                return Ok(None);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "state sync: no snapshot that more than 2/3 of the {total} validators serve \
                 ({} answered within {wait_ms} ms); validators serve snapshots only with \
                 [sync] snapshot_every set",
                answers.len()
            ));
        }
        if last_ask.elapsed() >= HEADS_ASK_EVERY {
            for peer in &connected {
                ask(*peer, &mut asked);
            }
            last_ask = Instant::now();
        }
        events.clear();
        net.next_events(&mut events, 64, Duration::from_millis(50));
        for event in events.drain(..) {
            match event {
                Event::PeerUp { node_key, .. } if is_validator(&node_key) => {
                    connected.push(node_key);
                    ask(node_key, &mut asked);
                }
                Event::PeerDown { node_key } => connected.retain(|k| *k != node_key),
                Event::Response {
                    request_id,
                    payload,
                    ..
                } => {
                    let Some(peer) = asked.remove(&request_id) else {
                        continue;
                    };
                    match SyncResponse::decode(&payload) {
                        Ok(SyncResponse::Heads(heads)) => {
                            answers.insert(peer, heads);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(peer = %hex::encode(&peer[..4]), "state sync: bad heads answer: {e}");
                            let _ = net.penalize(peer, Misbehaviour::InvalidItem);
                        }
                    }
                }
                Event::RequestFailed { request_id, .. } => {
                    asked.remove(&request_id);
                }
                _ => {}
            }
        }
    }
}
