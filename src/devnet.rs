//! `strata devnet`: a local network of real `strata node` processes on
//! loopback ports, driven by the bench, with a report. Node `i` listens on
//! `127.0.0.1:base_port + i` (P2P) and `127.0.0.1:api_base_port + i` (API);
//! their data, keys, genesis and logs live in one directory, removed at the
//! end unless `--keep`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_consensus::genesis::{devnet_validator_key, Genesis};

use crate::bench::{self, Plan};
use crate::client::Client;

/// Settings of one devnet run.
#[derive(Clone, Debug)]
pub struct DevnetArgs {
    /// Nodes.
    pub nodes: usize,
    /// Transactions the bench sends.
    pub txs: usize,
    /// Senders.
    pub senders: usize,
    /// Funded accounts in the genesis (built-in, then synthetic).
    pub accounts: u64,
    /// How the bench draws senders and recipients.
    pub distribution: crate::bench::Distribution,
    /// Seed of the bench's draw.
    pub seed: u64,
    /// Token transfers through the example contract instead of native
    /// ones.
    pub token: bool,
    /// Rate limit, tx/s.
    pub rate: Option<u64>,
    /// Stop waiting for finality after this many seconds.
    pub duration_s: u64,
    /// First P2P port.
    pub base_port: u16,
    /// First API port.
    pub api_base_port: u16,
    /// Keep the directory.
    pub keep: bool,
    /// Directory (default: a fresh one under the system temp dir).
    pub dir: Option<PathBuf>,
    /// Extra TOML appended to every node's config (knobs).
    pub node_config: Option<PathBuf>,
}

/// Most nodes one devnet starts (each is a process with its own ports;
/// past this a laptop runs out of cores long before ports).
pub const DEVNET_NODES_MAX: usize = 64;

/// Child processes, terminated on drop (also on error paths).
struct Nodes(Vec<Child>);

impl Nodes {
    fn stop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: plain syscall on a child's pid; errors (already
            // exited) are harmless.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts node `i` of a devnet laid out in `dir`.
///
/// # Errors
/// When the binary cannot be spawned.
pub fn spawn_node(dir: &Path, i: usize, args: &DevnetArgs) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(dir.join(format!("node-{i}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--data-dir")
        .arg(dir.join(format!("node-{i}")))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", usize::from(args.base_port) + i))
        .arg("--api")
        .arg(format!("127.0.0.1:{}", usize::from(args.api_base_port) + i))
        .arg("--genesis")
        .arg(dir.join("genesis.toml"))
        .arg("--key")
        .arg(dir.join(format!("node-{i}.key")));
    if let Some(c) = &args.node_config {
        cmd.arg("--config").arg(c);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start node {i}: {e}"))
}

/// Writes the genesis and the node keys into `dir`.
///
/// # Errors
/// File system failures.
pub fn prepare_dir(
    dir: &Path,
    nodes: usize,
    base_port: u16,
    accounts: u64,
) -> Result<Genesis, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let genesis = Genesis::devnet_with_accounts(nodes, base_port, accounts);
    std::fs::write(dir.join("genesis.toml"), genesis.to_toml()).map_err(|e| e.to_string())?;
    for i in 0..nodes {
        let seed = devnet_validator_key(i).to_bytes();
        let path = dir.join(format!("node-{i}.key"));
        if path.exists() {
            // A kept directory reused with --dir: the same public seed.
            continue;
        }
        crate::client::write_secret_file(&path, &(hex::encode(seed) + "\n"))?;
    }
    Ok(genesis)
}

/// How long the nodes may take to be ready: a minute, plus each node's
/// first start writing the genesis — ~8 µs of CPU per synthetic account
/// (key derivation, trie, ingest), the nodes sharing this machine's cores —
/// with a factor of 3 for a loaded machine.
fn ready_timeout(genesis: &Genesis, nodes: usize) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let genesis_us = genesis.account_count() * 8 * nodes as u64 / cores;
    Duration::from_secs(60) + Duration::from_micros(3 * genesis_us)
}

/// Waits until every API answers and sees `nodes - 1` peers; a node
/// process that exits meanwhile fails the wait at once with the end of
/// its log (a port in use, a bad config), instead of at the timeout.
///
/// # Errors
/// On timeout, naming the node, or when a node exited.
fn wait_ready(
    nodes: &mut Nodes,
    dir: &Path,
    apis: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for (i, api) in apis.iter().enumerate() {
        let c = Client::new(api);
        loop {
            for (j, child) in nodes.0.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.join(format!("node-{j}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(3).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return Err(format!(
                        "node {j} exited ({status}) before the devnet was ready:\n{}",
                        tail.join("\n")
                    ));
                }
            }
            if let Ok(s) = c.get("/v1/status") {
                if s["peers"].as_u64().unwrap_or(0) + 1 >= apis.len() as u64 {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("node {i} ({api}) not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Compares every node's chain: the same block id at every height up to
/// the lowest node's height, and the same state root once all heights are
/// equal. Returns (common height, roots equal).
///
/// # Errors
/// API failures.
pub fn compare_chains(apis: &[String], settle: Duration) -> Result<(u64, bool), String> {
    let clients: Vec<Client> = apis.iter().map(|a| Client::new(a)).collect();
    let deadline = Instant::now() + settle;
    let statuses = loop {
        let s: Vec<_> = clients
            .iter()
            .map(|c| c.get("/v1/status"))
            .collect::<Result<_, _>>()?;
        let h: Vec<u64> = s
            .iter()
            .map(|s| s["height"].as_u64().unwrap_or(0))
            .collect();
        if h.iter().all(|x| *x == h[0]) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let heights: Vec<u64> = statuses
        .iter()
        .map(|s| s["height"].as_u64().unwrap_or(0))
        .collect();
    let common = heights.iter().copied().min().unwrap_or(0);
    let mut same = true;
    for h in 1..=common {
        let ids: Vec<Value> = clients
            .iter()
            .map(|c| c.get(&format!("/v1/blocks/{h}")).map(|b| b["id"].clone()))
            .collect::<Result<_, _>>()?;
        if !ids.iter().all(|id| *id == ids[0]) {
            eprintln!("devnet: block ids differ at height {h}: {ids:?}");
            same = false;
        }
    }
    if heights.iter().all(|x| *x == common)
        && !statuses
            .iter()
            .all(|s| s["state_root"] == statuses[0]["state_root"])
    {
        eprintln!("devnet: state roots differ at height {common}");
        same = false;
    }
    Ok((common, same))
}

/// One node's work line of the report, from its `/metrics`.
fn node_work(i: usize, c: &Client, finalized: usize) -> String {
    let metrics = c.metrics().unwrap_or_default();
    let m = |name: &str| metrics.get(name).copied();
    let per_tx = |name: &str| {
        m(name).map_or("?".into(), |v| {
            format!("{:.2}", v / finalized.max(1) as f64)
        })
    };
    let batch = match (m("signatures_checked_total"), m("signature_batches_total")) {
        (Some(s), Some(b)) if b > 0.0 => format!("{:.0}", s / b),
        _ => "?".into(),
    };
    let count = |name: &str| m(name).map_or("?".into(), |v| format!("{v:.0}"));
    format!(
        "node {i}: per finalized tx {} signatures checked, {} received; mean signature batch {batch}; \
         blocks proposed {}, invalid {}; gossip shed {}, client batches busy {}",
        per_tx("signatures_checked_total"),
        per_tx("txs_received_total"),
        count("blocks_proposed_total"),
        count("blocks_invalid_total"),
        count("txs_shed_total"),
        count("requests_busy_total"),
    )
}

/// Runs the devnet and prints the report. Returns whether it passed.
///
/// # Errors
/// Start-up failures.
pub fn run(args: &DevnetArgs) -> Result<bool, String> {
    // Everything that can be checked before a directory is made or a
    // process started fails here, at once.
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.nodes > DEVNET_NODES_MAX {
        return Err(format!(
            "--nodes {} is more than {DEVNET_NODES_MAX}",
            args.nodes
        ));
    }
    if let Some(path) = &args.node_config {
        crate::config::NodeConfig::load(path)?;
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("strata-devnet-{}", std::process::id())),
    };
    let genesis = prepare_dir(&dir, args.nodes, args.base_port, args.accounts)?;
    let result = run_in(&dir, &genesis, args);
    if args.keep {
        eprintln!("devnet data kept in {}", dir.display());
    } else if matches!(result, Ok(true)) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("devnet failed; logs kept in {}", dir.display());
    }
    result
}

fn run_in(dir: &Path, genesis: &Genesis, args: &DevnetArgs) -> Result<bool, String> {
    eprintln!("starting {} nodes in {}", args.nodes, dir.display());
    let mut nodes = Nodes(Vec::new());
    for i in 0..args.nodes {
        nodes.0.push(spawn_node(dir, i, args)?);
    }
    let apis: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", usize::from(args.api_base_port) + i))
        .collect();
    wait_ready(&mut nodes, dir, &apis, ready_timeout(genesis, args.nodes))?;
    eprintln!("all nodes connected; driving load");
    let plan = Plan {
        targets: (0..args.nodes)
            .map(|i| {
                format!("127.0.0.1:{}", usize::from(args.base_port) + i)
                    .parse()
                    .expect("a valid address")
            })
            .collect(),
        api: apis[0].clone(),
        txs: args.txs,
        senders: args.senders,
        accounts: None,
        distribution: args.distribution,
        new_recipients: false,
        seed: args.seed,
        token: args.token,
        rate: args.rate,
        batch: 256,
        finality_timeout: Duration::from_secs(args.duration_s),
        progress: true,
    };
    let report = bench::run(&plan, genesis)?;
    let (common, same) = compare_chains(&apis, Duration::from_secs(10))?;
    // Work per finalized transaction on each node: a node that checks a
    // signature twice, rejects what it received or validates blocks that
    // lose shows here.
    let work: Vec<String> = apis
        .iter()
        .enumerate()
        .map(|(i, a)| node_work(i, &Client::new(a), report.finalized))
        .collect();
    nodes.stop();
    println!("devnet: {} nodes, {} transactions", args.nodes, args.txs);
    println!("{}", report.summary());
    println!(
        "chains: {} finalized blocks on every node; block ids and state roots {}",
        common,
        if same { "EQUAL on all nodes" } else { "DIFFER" }
    );
    for line in work {
        println!("{line}");
    }
    let ok = same && report.finalized == report.accepted && report.accepted > 0;
    if !ok {
        println!("devnet: FAILED");
    }
    Ok(ok)
}
