//! The node's TOML configuration. Every field is optional; the defaults
//! (shown by `strata node --print-config`) run devnet validator 0 on
//! 127.0.0.1:9000 with its API on 127.0.0.1:8080. Command-line flags
//! override the file.
//!
//! The latency/throughput knobs are `consensus.block_txs_max`,
//! `consensus.propose_delay_ms`, `consensus.polls_in_flight`,
//! `net.gossip_fanout`, `net.gossip_flush_interval_ms` and the push limits
//! (`net.push_items_per_s`, `net.push_bytes_per_s`); README.md shows a
//! latency-leaning and a throughput-leaning setting.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its database. Default `strata-data`.
    pub data_dir: PathBuf,
    /// P2P listen address. Default `127.0.0.1:9000`.
    pub listen: String,
    /// HTTP API address. Default `127.0.0.1:8080`.
    pub api: String,
    /// Extra peers to dial, `host:port`. The genesis validators' addresses
    /// are always known: a validator keeps a connection with every other
    /// validator; a full node dials among them within
    /// `outbound_peers_max`. Default none.
    pub peers: Vec<String>,
    /// Genesis TOML file; empty means the built-in 4-validator devnet.
    pub genesis: Option<PathBuf>,
    /// Node key file (hex secret seed, as `strata keygen` writes); empty
    /// means devnet validator `devnet_index`.
    pub key: Option<PathBuf>,
    /// Devnet validator whose public seed is the node key when `key` is
    /// not set. Default 0.
    pub devnet_index: usize,
    /// Consensus knobs.
    pub consensus: ConsensusConfig,
    /// Mempool limits.
    pub mempool: MempoolSection,
    /// Network knobs.
    pub net: NetSection,
    /// Storage knobs.
    pub storage: StorageSection,
    /// How much finalized history to keep.
    pub history: HistorySection,
    /// Joining by state sync, and serving snapshots to nodes that do.
    pub sync: SyncSection,
    /// HTTP API limits.
    pub http: HttpSection,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("strata-data"),
            listen: "127.0.0.1:9000".into(),
            api: "127.0.0.1:8080".into(),
            peers: Vec::new(),
            genesis: None,
            key: None,
            devnet_index: 0,
            consensus: ConsensusConfig::default(),
            mempool: MempoolSection::default(),
            net: NetSection::default(),
            storage: StorageSection::default(),
            history: HistorySection::default(),
            sync: SyncSection::default(),
            http: HttpSection::default(),
        }
    }
}

/// How validators are weighted when sampling a poll: `uniform`, `stake`,
/// or `proof_of_work` (every node mines each validator key's best nonce
/// over `pow_tries` nonces at start, so all nodes derive the same weights).
pub use strata_consensus::sampler::Sampling;

/// `[consensus]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// Most transactions per block. Default 4096.
    pub block_txs_max: usize,
    /// Wait at a new height before the best-ranked validator proposes.
    /// Default 20 ms.
    pub propose_delay_ms: u64,
    /// Further wait per rank for the others (rank `r` proposes after
    /// `propose_delay_ms + propose_backoff_ms × r` if no block reached it
    /// by then). Default 120 ms: under load a 4,096-transaction proposal
    /// takes tens of milliseconds to be pulled and validated, and with
    /// 20 ms a saturated 4-node devnet proposed 1.6–2.2 blocks per height,
    /// all but one built and validated for nothing; with 120 ms, 1.0–1.15
    /// and about 5 % more finalized tx/s, with unchanged latency at 4,000
    /// tx/s (docs/benchmarks.md). Costs up to `propose_backoff_ms` per rank
    /// at a height whose better-ranked proposers are down. The median
    /// measured round trip to the validators replaces it when longer.
    pub propose_backoff_ms: u64,
    /// Polls open at once. Default 4. Raising it shortens a height on a
    /// WAN but weakens agreement in small networks: polls open together
    /// count the same answers (docs/consensus.md, "Polls in flight and
    /// agreement").
    pub polls_in_flight: usize,
    /// The least a poll waits for its answers, and the wait for a peer not
    /// measured yet. Default 400 ms. A measured peer is waited for two
    /// round trips and four deviations when that is longer.
    pub poll_timeout_ms: u64,
    /// The most a poll waits for a slow peer it needs. Default 2,000 ms.
    pub poll_timeout_max_ms: u64,
    /// Validators a node sends its own proposal to when it is built,
    /// instead of letting them pull it after a vote. Default 16; 0: off.
    pub proposal_push_peers: usize,
    /// How often the engine's timers run. Default 2 ms.
    pub tick_ms: u64,
    /// Threads verifying signatures of incoming transactions. Default 2.
    pub verify_threads: usize,
    /// Niceness those threads add to the node's own (0 to 19; Linux
    /// thread priorities). Default 10: the consensus driver and the
    /// network loop then run as soon as they have work, so heights do not
    /// wait behind a backlog of gossip to verify; verification takes the
    /// CPU they leave. On a 4-node devnet sharing 2 cores this raised
    /// finalized tx/s by about a tenth and halved finality latency (see
    /// docs/benchmarks.md). Set 0 when other busy processes share the
    /// machine and must not take the node's verification time.
    pub verify_nice: i32,
    /// Sampling weight. Default uniform.
    pub sampling: Sampling,
    /// Nonces tried per key for `sampling = "proof_of_work"`. Default 65536.
    pub pow_tries: u64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            block_txs_max: 4096,
            propose_delay_ms: 20,
            propose_backoff_ms: 120,
            polls_in_flight: 4,
            poll_timeout_ms: 400,
            poll_timeout_max_ms: 2_000,
            proposal_push_peers: 16,
            tick_ms: 2,
            verify_threads: 2,
            verify_nice: 10,
            sampling: Sampling::Uniform,
            pow_tries: 1 << 16,
        }
    }
}

/// `[mempool]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    /// Most transactions. Default 1,000,000.
    pub txs_max: usize,
    /// Most bytes. Default 512 MiB.
    pub bytes_max: usize,
    /// Most transactions per sender. Default 1024.
    pub per_sender_max: usize,
    /// How far a nonce may run past the sender's next missing one.
    /// Default 64.
    pub nonce_gap_max: u64,
    /// Pending transactions expire after this long. Default 600,000 ms.
    pub ttl_ms: u64,
}

impl Default for MempoolSection {
    fn default() -> Self {
        let d = strata_consensus::mempool::MempoolConfig::default();
        MempoolSection {
            txs_max: d.txs_max,
            bytes_max: d.bytes_max,
            per_sender_max: d.per_sender_max,
            nonce_gap_max: d.nonce_gap_max,
            ttl_ms: d.ttl_ms,
        }
    }
}

/// `[net]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    /// Peers each new transaction is pushed to (the rest get its id and
    /// pull it). Default 4.
    pub gossip_fanout: usize,
    /// How often pushed transactions are flushed in a batch. Default 10 ms.
    pub gossip_flush_interval_ms: u64,
    /// Pushed items accepted per peer per second. Default 50,000.
    pub push_items_per_s: u64,
    /// Pushed bytes accepted per peer per second. Default 32 MiB.
    pub push_bytes_per_s: u64,
    /// Gossip items accepted per second from all peers that are not
    /// validators, together; beyond it they are dropped unhashed and
    /// nobody is blamed. Default 50,000 (one peer's `push_items_per_s`):
    /// anyone can make keys, so per-peer limits alone do not bound what
    /// strangers cost; validators' gossip is not held to it.
    pub stranger_items_per_s_total: u64,
    /// Inbound connections accepted per second from one IP address (burst
    /// 32); beyond it they are closed at accept. Default 20: a peer
    /// banned by its key could otherwise come back at once with a new one,
    /// and each handshake costs a signature and a check.
    pub accepts_per_s_per_ip: u64,
    /// Largest frame payload. Default 4 MiB.
    pub frame_payload_bytes_max: u32,
    /// Inbound peers that are not validators (validators always get in).
    /// When full, a newcomer replaces the worst-scored one if it
    /// misbehaved, else is refused. Default 32.
    pub inbound_peers_max: usize,
    /// Outbound connection limit. Default 8.
    pub outbound_peers_max: usize,
    /// Connections in their handshake at once. Default 128.
    pub handshakes_max: usize,
}

impl Default for NetSection {
    fn default() -> Self {
        NetSection {
            gossip_fanout: 4,
            gossip_flush_interval_ms: 10,
            push_items_per_s: 50_000,
            push_bytes_per_s: 32 << 20,
            stranger_items_per_s_total: 50_000,
            accepts_per_s_per_ip: 20,
            frame_payload_bytes_max: 4 << 20,
            inbound_peers_max: 32,
            outbound_peers_max: 8,
            handshakes_max: strata_net::limits::HANDSHAKES_MAX_DEFAULT,
        }
    }
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Memtable size before a flush to a sorted table. Default 64 MiB.
    pub memtable_bytes: usize,
    /// zstd level for table blocks; absent = no compression.
    pub zstd_level: Option<i32>,
    /// Decoded table blocks kept in memory. Default 512 MiB: state reads
    /// and trie pages of a large state hit it instead of checking,
    /// copying and caching a block per read (with the storage engine's
    /// 8 MiB default, a 1 M-account node missed 96 % of its block reads).
    pub block_cache_bytes: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            memtable_bytes: 64 << 20,
            zstd_level: None,
            block_cache_bytes: 512 << 20,
        }
    }
}

/// `[history]`: how much finalized history (block bodies, transaction
/// lists and the transaction index) the node keeps. State is not history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// Keep every block (default `true`). **Why archive by default:** a
    /// node behind by more than the retained window catches up by pulling
    /// the blocks it missed from its peers; in a network whose nodes all
    /// prune, such a node can only come back by state sync
    /// (`[sync] mode = "state"` on an empty data directory), which is new.
    /// Set `false` on nodes whose disk must stay bounded.
    pub archive: bool,
    /// Blocks kept when `archive` is false: the last `blocks_retained`
    /// heights (at least 64). Default 100,000, about an hour and a half
    /// of a chain finalizing 20 blocks a second. Older ones are deleted in
    /// the background (`strata-prune` thread); the API answers queries
    /// about them with "pruned below height H".
    pub blocks_retained: u64,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            archive: true,
            blocks_retained: 100_000,
        }
    }
}

impl HistorySection {
    /// The blocks to keep, `None` for all.
    ///
    /// # Errors
    /// A window below [`strata_consensus::history::BLOCKS_RETAINED_MIN`].
    pub fn retained(&self) -> Result<Option<u64>, String> {
        if self.archive {
            return Ok(None);
        }
        let min = strata_consensus::history::BLOCKS_RETAINED_MIN;
        if self.blocks_retained < min {
            return Err(format!(
                "history.blocks_retained = {} is below the least a node may keep ({min})",
                self.blocks_retained
            ));
        }
        Ok(Some(self.blocks_retained))
    }
}

/// How a node with an empty data directory gets the chain's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Execute every block from the genesis (pulled from peers).
    Replay,
    /// Fetch the state at a recent snapshot height from the validators,
    /// every chunk checked by a range proof against the root a weighted
    /// quorum of them reports, then follow the chain from there.
    State,
    /// `state` when the node is far behind — validators making up more
    /// than 2/3 of the genesis's serve a snapshot at height
    /// `auto_min_height` or above — else `replay`. Deciding costs a TCP
    /// connect to each validator (250 ms at most each) and, if any
    /// accepts, one heads query to those (until all answered,
    /// `heads_wait_ms` at most); a fresh network, where no validator is
    /// up or none serves snapshots, replays at once.
    Auto,
}

/// `[sync]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// How an empty data directory is filled. Default `auto`: state sync
    /// when the validators serve a snapshot `auto_min_height` blocks or
    /// more past the genesis, replay otherwise. Serving is opt-in
    /// (`snapshot_every`), so on a network that has not turned it on
    /// every node replays, as before. A node that syncs state keeps no
    /// history below its snapshot (it cannot serve older blocks to
    /// others).
    pub mode: SyncMode,
    /// With `mode = "auto"`: the snapshot height from which a node with
    /// an empty data directory syncs state rather than replaying. Default
    /// 10,000 blocks: below it replay is quick and keeps the history.
    pub auto_min_height: u64,
    /// Serve a snapshot of the state after every height that is a
    /// multiple of this; 0 (the default) serves none. **Why off by
    /// default:** a served snapshot pins every version it sees until it
    /// is dropped, and on a busy chain the trie rewrites megabytes of
    /// pages per block: one node with 1 M accounts at 4,000 tx/s held
    /// 3.2–4.2 GB on disk with snapshots every 1,000 heights (2 kept)
    /// against 0.5–0.9 GB without (docs/benchmarks.md, History, "Pruning
    /// soaks of 12 and 20 minutes").
    /// Turn it on for the validators that new nodes join from, with an
    /// interval long enough for a join to finish (a 10 M-account state
    /// took 33 s on one shared 2-core machine).
    pub snapshot_every: u64,
    /// Snapshots kept for serving. Default 2: a joining node that started
    /// on one still finds it while the next is taken. Each pins the
    /// versions it sees in the store until it is dropped (compaction keeps
    /// them), so more costs disk.
    pub snapshots_kept: usize,
    /// How long a joining node asks the validators for their snapshot
    /// heads (again every second) until more than 2/3 of them report the
    /// same one, in milliseconds. Default 60,000.
    pub heads_wait_ms: u64,
    /// Bytes of state entries a joining node asks for per chunk, at most
    /// 4,128,768 (`sync::limits::CHUNK_BYTES_MAX`, the default). Smaller
    /// chunks suit a slow link (a timed-out chunk is fetched again whole).
    pub chunk_bytes: u32,
    /// Bytes of snapshot chunks a serving node sends one peer per second.
    /// Default 64 MiB. A budget of its own, apart from blocks': a join
    /// moves the whole state, and sharing the 16 MiB/s of block serving
    /// would both slow it and starve peers catching up on blocks.
    pub serve_bytes_per_s: u64,
    /// Bytes of snapshot chunks a serving node sends all peers together
    /// per second. Default 128 MiB: two joining nodes at full speed.
    pub serve_bytes_per_s_total: u64,
}

impl SyncSection {
    /// Checks the values a node cannot run with.
    ///
    /// # Errors
    /// A chunk size out of range, or a zero serving budget while
    /// snapshots are served.
    pub fn check(&self) -> Result<(), String> {
        let max = strata_consensus::sync::limits::CHUNK_BYTES_MAX as u32;
        if !(1..=max).contains(&self.chunk_bytes) {
            return Err(format!(
                "sync.chunk_bytes = {} is outside 1..={max}",
                self.chunk_bytes
            ));
        }
        if self.snapshot_every > 0
            && (self.serve_bytes_per_s == 0 || self.serve_bytes_per_s_total == 0)
        {
            return Err("sync.serve_bytes_per_s and serve_bytes_per_s_total must be above 0 when snapshots are served".into());
        }
        Ok(())
    }
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            mode: SyncMode::Auto,
            auto_min_height: 10_000,
            snapshot_every: 0,
            snapshots_kept: 2,
            heads_wait_ms: 60_000,
            chunk_bytes: strata_consensus::sync::limits::CHUNK_BYTES_MAX as u32,
            serve_bytes_per_s: 64 << 20,
            serve_bytes_per_s_total: 128 << 20,
        }
    }
}

/// `[http]`: what API clients may cost the node (see `api.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Connections served at once; at the limit the server stops
    /// accepting. Lowered at start if the open-file limit cannot hold it
    /// beside the peers and the storage reserve. Default 256.
    pub connections_max: usize,
    /// Connections from one IP address at once. Default 64.
    pub connections_per_ip_max: usize,
    /// A connection that does not send a whole request head within this
    /// (an idle keep-alive connection included) is closed. Default 5,000 ms.
    pub header_timeout_ms: u64,
    /// A request not answered within this (a slow body included) gets a
    /// 408. Default 10,000 ms.
    pub request_timeout_ms: u64,
    /// Transactions one IP address may submit per second (429 beyond).
    /// Default 100,000: well above one honest client's rate, far below
    /// what the node can verify.
    pub txs_per_s_per_ip: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            connections_max: 256,
            connections_per_ip_max: 64,
            header_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            txs_per_s_per_ip: 100_000,
        }
    }
}

impl NodeConfig {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// Unreadable file or invalid TOML, with the path in the message.
    pub fn load(path: &std::path::Path) -> Result<NodeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_fields_are_refused() {
        let text = toml::to_string(&NodeConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<NodeConfig>(&text).unwrap(),
            NodeConfig::default()
        );
        let partial: NodeConfig = toml::from_str("[consensus]\nblock_txs_max = 7\n").unwrap();
        assert_eq!(partial.consensus.block_txs_max, 7);
        assert_eq!(partial.listen, "127.0.0.1:9000");
        assert!(toml::from_str::<NodeConfig>("listn = \"x\"").is_err());
    }
}
