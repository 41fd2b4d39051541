//! `strata` — the Strata node binary: run a node, a local devnet, the
//! transaction bench, the simulator; submit transactions and query state.

mod api;
mod bench;
mod budget;
mod client;
mod config;
mod dev;
mod devnet;
mod fd_limit;
mod genesis_cmd;
mod inspect;
mod intake;
mod join;
mod metrics;
mod node;
mod prune;
mod sim_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Strata: a blockchain full node built around its own LSM storage engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a full node. With no flags: devnet validator 0 on
    /// 127.0.0.1:9000, API on 127.0.0.1:8080, data in ./strata-data.
    /// With --dev: a one-validator chain that finalizes alone, with funded
    /// accounts whose key files it writes (data in ./strata-dev).
    ///
    /// Examples:
    ///   strata node --dev
    ///   strata node
    ///   strata node --config node.toml --data-dir /var/lib/strata
    ///   strata node --print-config > node.toml
    Node(NodeArgs),
    /// Start a local network of node processes on loopback, drive load with
    /// the bench, print a report (tx/s, finality latency, roots) and exit.
    ///
    /// Examples:
    ///   strata devnet
    ///   strata devnet --nodes 4 --txs 50000 --keep
    Devnet(DevnetCli),
    /// Create, sign and send transactions to running nodes over the P2P
    /// protocol; wait for finality; report tx/s and latency percentiles.
    ///
    /// Example:
    ///   strata bench --target 127.0.0.1:9000 --api 127.0.0.1:8080 --txs 20000
    Bench(BenchCli),
    /// Run the deterministic consensus simulator over many seeds, or replay
    /// one seed with its event trace.
    ///
    /// Examples:
    ///   strata sim --seeds 1000 --nodes 10 --byzantine 2
    ///   strata sim --seed 35 --nodes 10 --byzantine 2 --trace
    Sim(sim_cmd::SimArgs),
    /// What a stopped node's data directory holds: files on disk, and the
    /// bytes of state, trie pages, blocks and indexes per finalized
    /// transaction.
    ///
    /// Example:
    ///   strata inspect --data-dir ./strata-data
    Inspect {
        /// The node's data directory.
        #[arg(long, default_value = "strata-data")]
        data_dir: PathBuf,
        /// Also compact the whole store (offline) and report the table
        /// bytes before and after: how much of the disk was versions and
        /// deletes compaction had not reached yet.
        #[arg(long)]
        compact: bool,
    },
    /// Generate a node or account key: prints the public key and writes the
    /// 32-byte secret seed, hex, to FILE (mode 0600, refusing to
    /// overwrite). With --show FILE, prints the public key of a key file.
    ///
    /// Examples:
    ///   strata keygen --out alice.key
    ///   strata keygen --show alice.key
    Keygen {
        /// Where to write the secret key.
        #[arg(long, default_value = "strata.key")]
        out: PathBuf,
        /// Print the public key of this key file instead.
        #[arg(long, conflicts_with = "out")]
        show: Option<PathBuf>,
    },
    /// A new network: one key per validator (random, mode 0600) and a
    /// genesis naming them at their addresses, with funded accounts.
    /// Nothing is overwritten. Step by step: docs/running-a-network.md.
    ///
    /// Example:
    ///   strata genesis --validators 10.0.0.1:9000,10.0.0.2:9000,10.0.0.3:9000 --fund <PUBKEY>=1000000 --out-dir mynet
    Genesis {
        /// Validator P2P addresses, HOST:PORT, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        validators: Vec<String>,
        /// Stake of each validator.
        #[arg(long, default_value_t = 100)]
        stake: u64,
        /// A funded account, PUBKEY=AMOUNT (repeat the flag).
        #[arg(long)]
        fund: Vec<String>,
        /// Also fund each validator key with this balance.
        #[arg(long, default_value_t = 0)]
        fund_validators: u64,
        /// Chain id (default: random, so no two networks mix).
        #[arg(long)]
        chain_id: Option<u64>,
        /// Where genesis.toml and validator-N.key are written.
        #[arg(long, default_value = "strata-network")]
        out_dir: PathBuf,
    },
    /// Sign a transaction with a key file and submit it through the API.
    ///
    /// Examples:
    ///   strata tx --key alice.key --to <PUBKEY> --amount 10
    ///   strata tx --key alice.key --put color --value blue
    ///   strata tx --key alice.key --delete color
    Tx(TxCli),
    /// Query a node's API. Key queries verify the merkle proof locally.
    ///
    /// Examples:
    ///   strata query status
    ///   strata query account <PUBKEY>
    ///   strata query key <OWNER_PUBKEY> color
    ///   strata query block 12
    ///   strata query tx <TXID>
    Query {
        /// API address (before or after the subcommand).
        #[arg(long, global = true, default_value = "127.0.0.1:8080")]
        api: String,
        /// Indented JSON.
        #[arg(long, global = true)]
        pretty: bool,
        /// What to ask.
        #[command(subcommand)]
        what: QueryWhat,
    },
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// TOML config file (see --print-config for every field and default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// P2P listen address.
    #[arg(long)]
    listen: Option<String>,
    /// HTTP API address.
    #[arg(long)]
    api: Option<String>,
    /// Extra peers to dial, comma separated.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Genesis TOML (default: the built-in 4-validator devnet).
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Node key file (hex seed as `strata keygen` writes).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Use devnet validator N's public seed as the key (when no --key).
    #[arg(long)]
    devnet_index: Option<usize>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// A dev chain: this node is the only validator and finalizes alone;
    /// funded accounts' key files are written to DATA_DIR/dev-keys and
    /// printed (default data dir ./strata-dev).
    #[arg(long, conflicts_with_all = ["genesis", "key", "devnet_index"])]
    dev: bool,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// `tracing` directives (`strata=debug,strata_net=info`). Default
    /// `info`, or `RUST_LOG` when set.
    #[arg(long)]
    log_level: Option<String>,
    /// Log lines as `text` (default) or `json` (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, clap::Args)]
struct DevnetCli {
    /// Node processes.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Transactions to send.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Distinct sending accounts.
    #[arg(long, default_value_t = 1024)]
    senders: usize,
    /// Funded accounts in the genesis: the 4,096 built-in ones, and past
    /// that synthetic accounts from a public seed (written by bulk ingest
    /// at first start; about 5 s per million accounts and node).
    #[arg(long, default_value_t = 4096)]
    accounts: u64,
    #[command(flatten)]
    load: LoadArgs,
    /// Submission rate limit, tx/s (default: as fast as accepted).
    #[arg(long)]
    rate: Option<u64>,
    /// Most seconds to wait for finality after sending.
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// First P2P port (node i uses base + i).
    #[arg(long, default_value_t = 19_000)]
    base_port: u16,
    /// First API port (node i uses base + i).
    #[arg(long, default_value_t = 18_080)]
    api_base_port: u16,
    /// Keep the data directory and logs.
    #[arg(long)]
    keep: bool,
    /// Use this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Node config TOML applied to every node (latency/throughput knobs).
    #[arg(long)]
    node_config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct BenchCli {
    /// P2P address(es) of the node(s) to send to, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9000")]
    target: Vec<std::net::SocketAddr>,
    /// API of the node whose blocks are watched for finality.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: String,
    /// Transactions.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Distinct sending accounts.
    #[arg(long, default_value_t = 1024)]
    senders: usize,
    /// Draw senders and recipients from accounts 0..N of the account
    /// space (default: all the genesis funds).
    #[arg(long)]
    accounts: Option<u64>,
    #[command(flatten)]
    load: LoadArgs,
    /// Submission rate limit, tx/s.
    #[arg(long)]
    rate: Option<u64>,
    /// Transactions per request.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Genesis of the target network (default: the built-in devnet).
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Every transfer pays a new account (hashed from --seed and its
    /// index) instead of a drawn one: grows the state by one account per
    /// transaction.
    #[arg(long)]
    new_recipients: bool,
    /// Most seconds to wait for finality.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// How the bench draws senders and recipients.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// `uniform` (every account equally likely) or `zipf` (hot accounts).
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "zipf"])]
    distribution: String,
    /// Skew of the Zipfian draw, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Seed of the draw (a run is repeatable).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send token transfers through the example token contract
    /// (examples/contracts/token.wat) instead of native transfers; the
    /// token is deployed and every sender funded with it first.
    #[arg(long)]
    token: bool,
}

impl LoadArgs {
    fn distribution(&self) -> Result<bench::Distribution, String> {
        match self.distribution.as_str() {
            "zipf" if self.zipf_theta > 0.0 && self.zipf_theta < 1.0 => {
                Ok(bench::Distribution::Zipf {
                    theta: self.zipf_theta,
                })
            }
            "zipf" => Err(format!(
                "--zipf-theta {} is outside (0, 1)",
                self.zipf_theta
            )),
            _ => Ok(bench::Distribution::Uniform),
        }
    }
}

#[derive(Debug, clap::Args)]
struct TxCli {
    /// Deploy or call a contract instead of the flags below.
    #[command(subcommand)]
    contract: Option<ContractTx>,
    /// API address.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    api: String,
    /// Sender key file.
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// Transfer recipient (public key hex).
    #[arg(long)]
    to: Option<String>,
    /// Transfer amount.
    #[arg(long)]
    amount: Option<u64>,
    /// Put this user key (text) in the sender's namespace (with --value).
    #[arg(long, conflicts_with = "delete", requires = "value")]
    put: Option<String>,
    /// The value of --put (text).
    #[arg(long, requires = "put")]
    value: Option<String>,
    /// Delete this user key (text).
    #[arg(long)]
    delete: Option<String>,
    /// Wait until the transaction is final and print its height (and,
    /// for a deploy or call, its result).
    #[arg(long, global = true)]
    wait: bool,
    /// Fee (burned).
    #[arg(long, default_value_t = 1, global = true)]
    fee: u64,
    /// Nonce (default: the account's next).
    #[arg(long, global = true)]
    nonce: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum ContractTx {
    /// Deploy a contract: FILE is binary WebAssembly, or WebAssembly text
    /// (a name ending in .wat), compiled here. Its id is in the result
    /// (`--wait`) or from `strata query tx ID`.
    Deploy {
        /// The module.
        file: PathBuf,
        /// Most gas the deploy may use (about 100 per byte of code).
        #[arg(long, default_value_t = 5_000_000)]
        gas_limit: u64,
        /// Paid per unit of gas used, burned.
        #[arg(long, default_value_t = 1)]
        gas_price: u64,
    },
    /// Call ENTRY of CONTRACT with --input bytes (hex) and --value.
    Call {
        /// Contract id, hex.
        contract: String,
        /// Exported function to run.
        entry: String,
        /// Argument bytes, hex.
        #[arg(long, default_value = "")]
        input: String,
        /// Paid to the contract with the call (returned if it fails).
        #[arg(long, default_value_t = 0)]
        value: u64,
        /// Most gas the call may use.
        #[arg(long, default_value_t = 1_000_000)]
        gas_limit: u64,
        /// Paid per unit of gas used, burned.
        #[arg(long, default_value_t = 1)]
        gas_price: u64,
    },
}

#[derive(Debug, Subcommand)]
enum QueryWhat {
    /// Height, root, peers, mempool.
    Status,
    /// Balance and nonce of an account.
    Account {
        /// Public key, hex.
        pubkey: String,
    },
    /// A user key of OWNER (or, with one argument, an account's state
    /// record), with its merkle proof checked locally.
    Key {
        /// Owner public key (hex), or the account when KEY is omitted.
        owner: String,
        /// User key (text).
        key: Option<String>,
    },
    /// A finalized block by height or id.
    Block {
        /// Height or id (hex).
        block: String,
    },
    /// A transaction's status: pending, finalized at a height, or unknown.
    Tx {
        /// Transaction id, hex.
        id: String,
    },
}

/// Logs to stderr: `level` (else `RUST_LOG`, else `info`), as text or as
/// JSON lines.
///
/// # Errors
/// A filter that does not parse.
fn init_logs(level: Option<&str>, json: bool) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("--log-level {l}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    Ok(())
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim_cmd::run(&args),
        Command::Keygen {
            show: Some(path), ..
        } => match client::public_key_of(&path) {
            Ok(pk) => {
                println!("{pk}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Keygen { out, show: None } => keygen(&out),
        Command::Genesis {
            validators,
            stake,
            fund,
            fund_validators,
            chain_id,
            out_dir,
        } => match genesis_cmd::run(&genesis_cmd::GenesisPlan {
            validators: &validators,
            stake,
            fund: &fund,
            fund_validators,
            chain_id,
            out_dir: &out_dir,
        }) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Inspect { data_dir, compact } => match inspect::run(&data_dir, compact) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Node(args) => run_node(args),
        Command::Devnet(a) => {
            let distribution = match a.load.distribution() {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let args = devnet::DevnetArgs {
                nodes: a.nodes,
                txs: a.txs,
                senders: a.senders,
                accounts: a.accounts,
                distribution,
                seed: a.load.seed,
                token: a.load.token,
                rate: a.rate,
                duration_s: a.duration,
                base_port: a.base_port,
                api_base_port: a.api_base_port,
                keep: a.keep,
                dir: a.dir,
                node_config: a.node_config,
            };
            match devnet::run(&args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(e),
            }
        }
        Command::Bench(a) => {
            let genesis = match node::load_genesis(a.genesis.as_deref()) {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
            let distribution = match a.load.distribution() {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let plan = bench::Plan {
                targets: a.target,
                api: a.api,
                txs: a.txs,
                senders: a.senders,
                accounts: a.accounts,
                distribution,
                new_recipients: a.new_recipients,
                seed: a.load.seed,
                token: a.load.token,
                rate: a.rate,
                batch: a.batch,
                finality_timeout: Duration::from_secs(a.timeout),
                progress: true,
            };
            match bench::run(&plan, &genesis) {
                Ok(r) => {
                    println!("{}", r.summary());
                    match r.shortfall() {
                        None => ExitCode::SUCCESS,
                        Some(why) => fail(why),
                    }
                }
                Err(e) => fail(e),
            }
        }
        Command::Tx(t) => {
            let put = t.put.as_deref().zip(t.value.as_deref());
            let flags =
                t.to.is_some() || t.amount.is_some() || t.put.is_some() || t.delete.is_some();
            if t.contract.is_some() && flags {
                return fail("a deploy or call takes no --to, --amount, --put or --delete");
            }
            let kind = match &t.contract {
                Some(ContractTx::Deploy {
                    file,
                    gas_limit,
                    gas_price,
                }) => client::deploy_kind(file, *gas_limit, *gas_price),
                Some(ContractTx::Call {
                    contract,
                    entry,
                    input,
                    value,
                    gas_limit,
                    gas_price,
                }) => client::call_kind(contract, entry, input, *value, *gas_limit, *gas_price),
                None => client::tx_kind(t.to.as_deref(), t.amount, put, t.delete.as_deref()),
            };
            let kind = match kind {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            let Some(key) = &t.key else {
                return fail("--key FILE is needed to sign");
            };
            match client::submit_tx(&t.api, key, t.fee, t.nonce, kind, t.wait) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Query { api, pretty, what } => {
            let c = client::Client::new(&api);
            let show = |v: serde_json::Value| {
                if pretty {
                    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                } else {
                    v.to_string()
                }
            };
            let answer = match what {
                QueryWhat::Status => c.get("/v1/status").map(show),
                QueryWhat::Account { pubkey } => c.get(&format!("/v1/accounts/{pubkey}")).map(show),
                QueryWhat::Key { owner, key } => match key {
                    Some(k) => client::query_key(&api, Some(&owner), &k),
                    None => client::query_key(&api, None, &owner),
                },
                QueryWhat::Block { block } => c.get(&format!("/v1/blocks/{block}")).map(show),
                QueryWhat::Tx { id } => c.get(&format!("/v1/txs/{id}")).map(show),
            };
            match answer {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn run_node(args: NodeArgs) -> ExitCode {
    if let Err(e) = init_logs(args.log_level.as_deref(), args.log_format == "json") {
        return fail(e);
    }
    let mut cfg = match &args.config {
        Some(path) => match config::NodeConfig::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => config::NodeConfig::default(),
    };
    let data_dir_given = args.data_dir.is_some();
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(a) = args.api {
        cfg.api = a;
    }
    cfg.peers.extend(args.peers);
    if args.genesis.is_some() {
        cfg.genesis = args.genesis;
    }
    if args.key.is_some() {
        cfg.key = args.key;
    }
    if let Some(i) = args.devnet_index {
        cfg.devnet_index = i;
    }
    if args.dev {
        match dev::prepare(&mut cfg, data_dir_given) {
            Ok(banner) => print!("{banner}"),
            Err(e) => return fail(e),
        }
    }
    if args.print_config {
        match toml::to_string_pretty(&cfg) {
            Ok(t) => {
                print!("{t}");
                return ExitCode::SUCCESS;
            }
            Err(e) => return fail(e),
        }
    }
    let api_addr: std::net::SocketAddr = match cfg.api.parse() {
        Ok(a) => a,
        Err(e) => return fail(format!("--api {}: {e}", cfg.api)),
    };
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&term)) {
            return fail(format!("cannot install signal handlers: {e}"));
        }
    }
    let node = match node::Node::start(&cfg) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let api = match api::serve(Arc::clone(&node.shared), api_addr, node.http.clone()) {
        Ok(t) => t,
        Err(e) => {
            node.shutdown();
            return fail(e);
        }
    };
    while !term.load(Ordering::Acquire) && !node.shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let halted = node.shared.halted.lock().map(|h| h.clone()).unwrap_or(None);
    tracing::info!("shutting down");
    node.shutdown();
    let _ = api.join();
    tracing::info!("stopped");
    match halted {
        Some(reason) => fail(format!("consensus halted: {reason}")),
        None => ExitCode::SUCCESS,
    }
}

fn keygen(out: &std::path::Path) -> ExitCode {
    let key = match strata_consensus::tx::generate_signing_key() {
        Ok(k) => k,
        Err(e) => return fail(format!("the OS random source failed: {e}")),
    };
    if let Err(e) = client::write_secret_file(out, &(hex::encode(key.to_bytes()) + "\n")) {
        return fail(e);
    }
    println!(
        "public key: {}",
        hex::encode(key.verifying_key().to_bytes())
    );
    println!("secret key written to {} (mode 0600)", out.display());
    ExitCode::SUCCESS
}
