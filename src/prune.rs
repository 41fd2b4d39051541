//! The node's pruning thread (`strata-prune`): deletes the history of
//! heights that fell out of `[history] blocks_retained`, one height per
//! step ([`strata_consensus::history::prune_next`]), at a lowered
//! priority, while the driver commits new blocks. Each step is one small
//! unsynced write, so a commit never waits on more than one of them.
//!
//! A storage failure stops pruning (logged, counted in
//! `strata_history_prune_failures_total`) and leaves the node running: a
//! node that keeps more history than it was asked to is still correct.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_consensus::history;
use tracing::{error, info};

use crate::node::Shared;

/// How often the thread looks for newly prunable heights when it has
/// caught up.
pub const PRUNE_POLL_MS: u64 = 200;

/// Niceness added to the pruning thread: it is background work.
pub const PRUNE_NICE: i32 = 10;

/// Starts the pruning thread keeping the last `retained` heights; it ends
/// when `shared.stop` is set.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(shared: Arc<Shared>, retained: u64) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("strata-prune".into())
        .spawn(move || run(&shared, retained))
}

fn run(shared: &Shared, retained: u64) {
    crate::intake::lower_priority(PRUNE_NICE);
    let m = &shared.metrics;
    let mut reported_floor = 0;
    while !shared.stop.load(Ordering::Acquire) {
        let target = history::target_floor(shared.view().height, retained);
        match history::prune_next(&shared.db, target) {
            Ok(Some(p)) => {
                m.history_heights_pruned.fetch_add(1, Ordering::Relaxed);
                m.history_txs_pruned.fetch_add(p.txs, Ordering::Relaxed);
                m.history_floor.store(p.height + 1, Ordering::Relaxed);
            }
            Ok(None) => {
                let floor = m.history_floor.load(Ordering::Relaxed);
                if floor != reported_floor && floor > 1 {
                    info!(floor, retained, "history pruned below height {floor}");
                    reported_floor = floor;
                }
                std::thread::sleep(Duration::from_millis(PRUNE_POLL_MS));
            }
            Err(e) => {
                m.history_prune_failures.fetch_add(1, Ordering::Relaxed);
                error!("pruning stopped: {e}; the node goes on keeping all history from here");
                return;
            }
        }
    }
}
