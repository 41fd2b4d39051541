//! The node's counters, shared by the driver, the workers and the API
//! (which renders them at `/metrics` and in `/v1/status`).

use std::sync::atomic::AtomicU64;

/// Counters for `/metrics` and `/v1/status`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Transactions in finalized blocks since start.
    pub txs_finalized: AtomicU64,
    /// Transactions received from clients, the bench and gossip.
    pub txs_received: AtomicU64,
    /// Of those, admitted to the mempool.
    pub txs_admitted: AtomicU64,
    /// Blocks finalized since start.
    pub blocks_finalized: AtomicU64,
    /// Payloads from peers that did not decode.
    pub payloads_undecodable: AtomicU64,
    /// Transactions from peers that did not verify (the peer is banned).
    pub txs_invalid_from_peers: AtomicU64,
    /// Peers penalised by the engine.
    pub peers_penalized: AtomicU64,
    /// Gossiped transactions dropped because gossip's share of the
    /// verification queue was full (overload shedding).
    pub txs_shed: AtomicU64,
    /// The lowest height whose history is kept (1: nothing pruned).
    pub history_floor: AtomicU64,
    /// Heights whose history the pruning thread deleted since start.
    pub history_heights_pruned: AtomicU64,
    /// Transaction index entries it deleted since start.
    pub history_txs_pruned: AtomicU64,
    /// Times pruning stopped on a storage failure.
    pub history_prune_failures: AtomicU64,
    /// Transactions refused before their signature was checked: the
    /// sender's committed balance does not cover them.
    pub txs_unfunded: AtomicU64,
    /// Client batches answered [`crate::node::BUSY_ANSWER`] because the verification
    /// queue was full (overload shedding).
    pub requests_busy: AtomicU64,
    /// API submissions answered 503 because the verification queue was
    /// full.
    pub api_busy: AtomicU64,
    /// Peer messages dropped: the peer's message budget was spent.
    pub messages_over_budget: AtomicU64,
    /// Block pulls and old-height queries dropped: the peer's request
    /// budget was spent.
    pub requests_over_budget: AtomicU64,
    /// Block pulls and old-height queries dropped unblamed: all peers
    /// together spent the node's request budget.
    pub requests_over_node_budget: AtomicU64,
    /// Blocks not served: a byte budget was spent (or the serving queue
    /// was full).
    pub blocks_not_served: AtomicU64,
    /// Block data from peers it was not pulled from.
    pub blocks_unsolicited: AtomicU64,
    /// Failures of this node's own store outside consensus (serving a
    /// block to a peer); never blamed on the peer.
    pub local_faults: AtomicU64,
    /// Wall-clock ms of the last commit.
    pub last_commit_ms: AtomicU64,
}
