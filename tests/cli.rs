//! The `strata` commands as a user runs them: `devnet` end to end with its
//! report, `node --print-config`, and clear failures on bad configuration.

mod common;

#[test]
fn devnet_runs_load_and_reports_equal_roots() {
    // Ports must be consecutive from each base: one run of six.
    let base = common::free_port_run(6);
    let (p2p, api) = (base.to_string(), (base + 3).to_string());
    let (ok, out) = common::strata(&[
        "devnet",
        "--nodes",
        "3",
        "--txs",
        "3000",
        "--senders",
        "300",
        "--base-port",
        &p2p,
        "--api-base-port",
        &api,
        "--duration",
        "60",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("accepted 3000"), "{out}");
    assert!(out.contains("finalized 3000"), "{out}");
    assert!(out.contains("EQUAL on all nodes"), "{out}");
    assert!(out.contains("p99"), "{out}");
}

#[test]
fn print_config_round_trips_and_bad_config_fails_clearly() {
    let (ok, text) = common::strata(&["node", "--print-config", "--listen", "127.0.0.1:9100"]);
    assert!(ok, "{text}");
    assert!(text.contains("listen = \"127.0.0.1:9100\""), "{text}");
    assert!(text.contains("block_txs_max"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let (ok, again) =
        common::strata(&["node", "--print-config", "--config", good.to_str().unwrap()]);
    assert!(ok && again == text, "{again}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listn = 3\n").unwrap();
    let (ok, err) = common::strata(&["node", "--config", bad.to_str().unwrap()]);
    assert!(
        !ok && err.contains("bad.toml") && err.contains("listn"),
        "{err}"
    );
    let (ok, err) = common::strata(&[
        "node",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--listen",
        "nonsense",
    ]);
    assert!(!ok && err.contains("--listen nonsense"), "{err}");
    let (ok, err) = common::strata(&["node", "--genesis", "/nonexistent/genesis.toml"]);
    assert!(
        !ok && err.contains("cannot read /nonexistent/genesis.toml"),
        "{err}"
    );
}

/// A `strata node --dev` process on free ports in its own working
/// directory; killed on drop.
struct DevNode {
    child: std::process::Child,
    api: String,
    /// Public keys of the funded accounts the banner printed, in order.
    accounts: Vec<String>,
    /// Their key files, relative to `cwd`.
    key_files: Vec<String>,
}

impl DevNode {
    fn start(cwd: &std::path::Path, extra: &[&str]) -> DevNode {
        use std::io::BufRead;
        let ports = common::free_ports(2);
        let api = format!("127.0.0.1:{}", ports[1]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["node", "--dev", "--listen"])
            .arg(format!("127.0.0.1:{}", ports[0]))
            .args(["--api", &api])
            .args(extra)
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut accounts = Vec::new();
        let mut key_files = Vec::new();
        let mut banner = String::new();
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            banner += &line;
            banner.push('\n');
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [_, pk, path] = words[..] {
                if path.ends_with(".key") {
                    accounts.push(pk.to_string());
                    key_files.push(path.to_string());
                }
            }
            if line.starts_with("try:") {
                break;
            }
        }
        assert!(accounts.len() >= 2, "banner: {banner}");
        let node = DevNode {
            child,
            api,
            accounts,
            key_files,
        };
        wait_api(&node.api);
        node
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use common::strata_in;

/// Waits until the API at `api` answers `query status`.
fn wait_api(api: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !common::strata(&["query", "status", "--api", api]).0 {
        assert!(std::time::Instant::now() < deadline, "{api} not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

// The README's dev-chain block, run as written: its three lines (the
// `cargo run --release --` prefix replaced by the built binary, and
// `<ACCOUNT-1>` by the second public key the node printed); only free
// ports are added, as --listen/--api.
#[test]
fn readme_dev_chain_walkthrough() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("(readme_dev_chain_walkthrough)")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README has the dev-chain block");
    let lines: Vec<Vec<&str>> = block
        .lines()
        .map(|l| {
            let l = l.split('#').next().unwrap();
            l.trim()
                .strip_prefix("cargo run --release -- ")
                .expect("each line runs strata")
                .split_whitespace()
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 3, "{block}");
    assert_eq!(lines[0], ["node", "--dev"]);
    let cwd = tempfile::tempdir().unwrap();
    let node = DevNode::start(cwd.path(), &[]);
    let run = |words: &[&str]| {
        let mut args: Vec<&str> = words
            .iter()
            .map(|w| {
                if *w == "<ACCOUNT-1>" {
                    node.accounts[1].as_str()
                } else {
                    *w
                }
            })
            .collect();
        args.extend(["--api", node.api.as_str()]);
        strata_in(cwd.path(), &args)
    };
    let (ok, out) = run(&lines[1]);
    assert!(
        ok && out.contains("finalized") && out.contains("at height"),
        "{out}"
    );
    let (ok, out) = run(&lines[2]);
    assert!(ok, "{out}");
    let account: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let genesis_balance = strata_consensus::genesis::DEVNET_BALANCE;
    assert_eq!(
        account["balance"].as_u64(),
        Some(genesis_balance + 10),
        "{out}"
    );
}

// A dev chain's refusals and its data directory: an unfunded transfer is
// refused with its reason and a non-zero exit; key files are 0600;
// `keygen --show` prints a key file's public key; the data directory
// refuses another genesis naming both hashes, and the dev chain restarts
// on it with its blocks.
#[test]
fn dev_chain_refuses_what_cannot_execute_and_keeps_its_genesis() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let node = DevNode::start(cwd.path(), &[]);
    let mode = |p: &str| {
        std::fs::metadata(cwd.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&node.key_files[0]), 0o600);
    let (ok, out) = strata_in(cwd.path(), &["keygen", "--out", "poor.key"]);
    assert!(ok, "{out}");
    assert_eq!(mode("poor.key"), 0o600);
    let (ok, shown) = strata_in(cwd.path(), &["keygen", "--show", "poor.key"]);
    assert!(ok && out.contains(shown.trim()), "{out} / {shown}");
    let (ok, shown) = strata_in(cwd.path(), &["keygen", "--show", &node.key_files[1]]);
    assert!(ok && shown.trim() == node.accounts[1], "{shown}");

    let api = node.api.as_str();
    let to = node.accounts[1].as_str();
    let (ok, out) = strata_in(
        cwd.path(),
        &[
            "tx", "--api", api, "--key", "poor.key", "--to", to, "--amount", "5",
        ],
    );
    assert!(
        !ok && out.contains("refused: insufficient balance"),
        "{out}"
    );
    let (ok, out) = strata_in(
        cwd.path(),
        &["tx", "--api", api, "--key", "poor.key", "--put", "color"],
    );
    assert!(!ok && out.contains("--value"), "{out}");
    let (ok, out) = strata_in(cwd.path(), &["tx", "--api", api, "--key", "poor.key"]);
    assert!(!ok && out.contains("--put KEY --value VALUE"), "{out}");
    let (ok, out) = strata_in(
        cwd.path(),
        &[
            "tx",
            "--api",
            api,
            "--key",
            &node.key_files[0],
            "--to",
            to,
            "--amount",
            "1",
            "--wait",
        ],
    );
    assert!(ok && out.contains("finalized"), "{out}");
    // A nonce gap: admitted, and its status says what it waits for.
    let (ok, out) = strata_in(
        cwd.path(),
        &[
            "tx",
            "--api",
            api,
            "--key",
            &node.key_files[2],
            "--to",
            to,
            "--amount",
            "1",
            "--nonce",
            "3",
        ],
    );
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(ok && out.starts_with("submitted"), "{out}");
    let (ok, out) = common::strata(&["query", "tx", &id, "--api", api, "--pretty"]);
    assert!(out.contains("\n  \"status\""), "--pretty indents: {out}");
    assert!(
        ok && out.contains("pending") && out.contains("nonce 0"),
        "{out}"
    );
    drop(node);

    // The built-in devnet genesis on the dev chain's data directory.
    let (ok, out) = strata_in(
        cwd.path(),
        &[
            "node",
            "--data-dir",
            "strata-dev",
            "--listen",
            "127.0.0.1:1",
            "--api",
            "127.0.0.1:1",
        ],
    );
    assert!(
        !ok && out.contains("holds a chain with genesis") && out.contains("not the given genesis"),
        "{out}"
    );
    let node = DevNode::start(cwd.path(), &[]);
    let (ok, out) = common::strata(&["query", "status", "--api", &node.api]);
    let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(ok && status["height"].as_u64() >= Some(1), "{out}");
}

// Mistakes that can be seen before anything starts fail at once, with a
// message that names the fix, and leave no directory behind.
#[test]
fn devnet_refuses_bad_arguments_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let run = run_dir.to_str().unwrap();
    let started = std::time::Instant::now();
    let (ok, out) = common::strata(&["devnet", "--nodes", "0", "--dir", run]);
    assert!(!ok && out.contains("--nodes must be at least 1"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    let (ok, out) = common::strata(&["devnet", "--node-config", "nope.toml", "--dir", run]);
    assert!(!ok && out.contains("cannot read nope.toml"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(!run_dir.exists(), "a failed start left {run}");
}

/// Child processes killed on drop.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// docs/running-a-network.md on one machine: `strata genesis` makes three
// validator keys and a genesis, three nodes started with them find each
// other, and a transfer from a funded validator key becomes final.
#[test]
fn a_network_from_strata_genesis_finalizes_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("mynet");
    let ports = common::free_ports(6);
    let addrs: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let (ok, out) = common::strata(&[
        "genesis",
        "--validators",
        &addrs.join(","),
        "--fund-validators",
        "1000000",
        "--out-dir",
        net.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let pks: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("validator "))
        .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
        .collect();
    assert_eq!(pks.len(), 3, "{out}");
    let mut procs = Procs(Vec::new());
    for i in 0..3 {
        let log = std::fs::File::create(dir.path().join(format!("node-{i}.log"))).unwrap();
        procs.0.push(
            std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
                .arg("node")
                .arg("--genesis")
                .arg(net.join("genesis.toml"))
                .arg("--key")
                .arg(net.join(format!("validator-{i}.key")))
                .args(["--listen", &addrs[i]])
                .args(["--api", &format!("127.0.0.1:{}", ports[3 + i])])
                .arg("--data-dir")
                .arg(dir.path().join(format!("node-{i}")))
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let api = format!("127.0.0.1:{}", ports[3]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (ok, out) = common::strata(&["query", "status", "--api", &api]);
        let peers = serde_json::from_str::<serde_json::Value>(out.trim())
            .ok()
            .and_then(|v| v["peers"].as_u64());
        if ok && peers == Some(2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no network: {out}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let key0 = net.join("validator-0.key");
    let (ok, out) = common::strata(&[
        "tx",
        "--api",
        &api,
        "--key",
        key0.to_str().unwrap(),
        "--to",
        &pks[1],
        "--amount",
        "10",
        "--wait",
    ]);
    assert!(ok && out.contains("finalized"), "{out}");
}

// A node that cannot reach the other validators says so, naming their
// addresses, at the default log level (it used to wait in silence).
#[test]
fn a_node_without_its_validators_names_them_in_its_log() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Validators 1..3 of a 4-validator genesis on ports nobody listens on
    // (free a moment ago); this node is validator 0.
    let base = common::free_port_run(5);
    let genesis = strata_consensus::genesis::Genesis::devnet_on(4, base);
    let path = dir.path().join("genesis.toml");
    std::fs::write(&path, genesis.to_toml()).unwrap();
    let mut child = Procs(vec![std::process::Command::new(env!(
        "CARGO_BIN_EXE_strata"
    ))
    .arg("node")
    .arg("--genesis")
    .arg(&path)
    .args(["--listen", &format!("127.0.0.1:{base}")])
    .args(["--api", &format!("127.0.0.1:{}", base + 4)])
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap()]);
    let stderr = child.0[0].stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("validators unreachable"));
        let _ = tx.send(found);
    });
    // The report is due 5 s after start (ISOLATION_REPORT_AFTER_MS); a
    // minute means it never came.
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("the node names the validators it cannot reach");
    for i in 1..4 {
        assert!(line.contains(&format!("127.0.0.1:{}", base + i)), "{line}");
    }
    assert!(!line.contains(&format!("127.0.0.1:{} ", base)), "{line}");
}

// `--log-format json` writes one JSON object per line, and `--log-level`
// filters (warn: the info lines of a normal start are not written).
#[test]
fn node_logs_as_json_lines_at_the_level_asked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Fresh ports for the second start: a killed node's port can stay
    // held for a moment, and the retry would log a warning.
    let ports = common::free_ports(4);
    let start = |level: &str, ports: &[u16]| {
        let mut p = Procs(vec![std::process::Command::new(env!(
            "CARGO_BIN_EXE_strata"
        ))
        .args([
            "node",
            "--dev",
            "--log-format",
            "json",
            "--log-level",
            level,
        ])
        .args(["--listen", &format!("127.0.0.1:{}", ports[0])])
        .args(["--api", &format!("127.0.0.1:{}", ports[1])])
        .arg("--data-dir")
        .arg(dir.path().join("dev"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()]);
        let stderr = p.0[0].stderr.take().unwrap();
        (p, std::io::BufReader::new(stderr))
    };
    let (procs, mut lines) = start("info", &ports[..2]);
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let v: serde_json::Value = serde_json::from_str(first.trim()).expect("a JSON log line");
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(v["fields"]["message"].is_string(), "{first}");
    drop(procs);
    // At warn, a clean start and stop writes nothing.
    let (mut procs, mut lines) = start("warn", &ports[2..]);
    wait_api(&format!("127.0.0.1:{}", ports[3]));
    // SAFETY: a signal to our own child's pid.
    unsafe {
        libc::kill(procs.0[0].id() as libc::pid_t, libc::SIGTERM);
    }
    procs.0[0].wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(lines.get_mut(), &mut rest).unwrap();
    assert!(rest.is_empty(), "warn level wrote: {rest}");
}
