//! A devnet of real `strata node` processes on loopback for the
//! integration tests: free ports picked by the OS, a temp directory with
//! genesis, keys, data and logs, and an HTTP client.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_consensus::genesis::{devnet_account_key, devnet_validator_key, Genesis};
use strata_consensus::tx::{Transaction, TxBody, TxKind};

/// Lowest port handed to test nodes.
const TEST_PORT_MIN: u16 = 20_000;

/// Where this process looks for free ports next (a per-process start, so
/// concurrent test processes mostly look in different places).
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The first port of the kernel's ephemeral range (32,768 by default).
fn ephemeral_port_min() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` consecutive ports that were free a moment ago (each bound, then
/// released), returned as the first. They come from below the kernel's
/// ephemeral range: ports the kernel hands out (binding port 0) can be
/// taken by any process's next outgoing connection between this check and
/// the node's bind, which failed a devnet test under load ("address in
/// use"). Below the range only explicit binds compete.
pub fn free_port_run(n: usize) -> u16 {
    use std::sync::atomic::Ordering;
    let max = ephemeral_port_min().max(TEST_PORT_MIN + 2_000);
    let span = u32::from(max - TEST_PORT_MIN);
    let _ = NEXT_PORT.compare_exchange(
        0,
        std::process::id().wrapping_mul(2_654_435_761) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT_PORT.fetch_add(n as u32, Ordering::Relaxed) % span;
        if offset as usize + n > span as usize {
            continue;
        }
        let base = TEST_PORT_MIN + offset as u16;
        let held: Vec<TcpListener> = (0..n as u16)
            .map_while(|k| TcpListener::bind(("127.0.0.1", base + k)).ok())
            .collect();
        if held.len() == n {
            return base;
        }
    }
    panic!("no {n} consecutive free ports in {TEST_PORT_MIN}..{max}");
}

/// `n` ports that were free a moment ago (see [`free_port_run`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    let base = free_port_run(n);
    (base..base + n as u16).collect()
}

pub mod rogue;

/// Node `i`'s address: host `i` of `lab`, or loopback without one.
fn host_in(lab: Option<&strata_netlab::Lab>, i: usize) -> std::net::IpAddr {
    match lab {
        Some(lab) => lab.addr(i).into(),
        None => std::net::Ipv4Addr::LOCALHOST.into(),
    }
}

pub struct Devnet {
    pub dir: tempfile::TempDir,
    pub genesis: Genesis,
    pub p2p: Vec<u16>,
    pub api: Vec<u16>,
    pub children: Vec<Option<Child>>,
    /// A node config file every node starts with (`--config`), if any.
    pub config: Option<PathBuf>,
    /// Open-file limit (soft and hard) the node processes start under, if
    /// set.
    pub fd_limit: Option<u64>,
    /// The hosts the nodes run on, one network namespace each, when the
    /// devnet runs in a lab (node `i` on host `i`); `None`: loopback.
    pub lab: Option<strata_netlab::Lab>,
    /// Extra environment of node `i`'s process, from its next
    /// [`Devnet::spawn`] on.
    pub envs: Vec<Vec<(String, String)>>,
    agent: ureq::Agent,
}

/// How to start a [`Devnet`].
#[derive(Default)]
pub struct DevnetOpts<'a> {
    /// Validators in the genesis.
    pub validators: usize,
    /// How many of them run as processes (the first `running`); the rest
    /// are left to the test (a scripted Byzantine validator, say).
    pub running: usize,
    /// A TOML node config for every node.
    pub config: Option<&'a str>,
    /// An open-file limit (soft and hard) for the node processes.
    pub fd_limit: Option<u64>,
    /// The genesis (default: the built-in devnet of `validators`); its
    /// validator addresses are replaced by the test's ports.
    pub genesis: Option<Genesis>,
    /// Run node `i` on host `i` of this lab instead of on loopback (the
    /// lab has at least `running` hosts).
    pub lab: Option<strata_netlab::Lab>,
}

impl Devnet {
    /// Writes genesis and keys for `n` validators and starts them all.
    pub fn start(n: usize) -> Devnet {
        Self::start_with_config(n, None)
    }

    /// [`Devnet::start`] with every node on the TOML config `config`.
    pub fn start_with_config(n: usize, config: Option<&str>) -> Devnet {
        Self::start_opts(DevnetOpts {
            validators: n,
            running: n,
            config,
            fd_limit: None,
            genesis: None,
            lab: None,
        })
    }

    /// A devnet as `opts` says.
    pub fn start_opts(opts: DevnetOpts<'_>) -> Devnet {
        let n = opts.validators;
        let config = opts.config;
        let ports = free_ports(2 * n);
        let (p2p, api) = (ports[..n].to_vec(), ports[n..].to_vec());
        let dir = tempfile::tempdir().unwrap();
        let mut genesis = opts.genesis.unwrap_or_else(|| Genesis::devnet(n));
        assert_eq!(
            genesis.validators.len(),
            n,
            "the genesis has `validators` validators"
        );
        for (i, (v, port)) in genesis.validators.iter_mut().zip(&p2p).enumerate() {
            v.address = format!("{}:{port}", host_in(opts.lab.as_ref(), i));
        }
        std::fs::write(dir.path().join("genesis.toml"), genesis.to_toml()).unwrap();
        for i in 0..n {
            let seed = devnet_validator_key(i).to_bytes();
            std::fs::write(dir.path().join(format!("node-{i}.key")), hex::encode(seed)).unwrap();
        }
        let mut net = Devnet {
            dir,
            genesis,
            p2p,
            api,
            children: (0..n).map(|_| None).collect(),
            config: None,
            fd_limit: opts.fd_limit,
            lab: opts.lab,
            envs: (0..n).map(|_| Vec::new()).collect(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        };
        if let Some(text) = config {
            let path = net.dir.path().join("node.toml");
            std::fs::write(&path, text).unwrap();
            net.config = Some(path);
        }
        for i in 0..opts.running {
            net.spawn(i);
        }
        net
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts node `i` on its data directory; its log is appended.
    pub fn spawn(&mut self, i: usize) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(format!("node-{i}.log")))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_strata");
        let mut cmd = match &self.lab {
            Some(lab) => lab.command(i, bin),
            None => Command::new(bin),
        };
        cmd.arg("node");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        if let Some(limit) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: `setrlimit` is async-signal-safe and only reads the
            // struct; it runs in the child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("--data-dir")
            .arg(d.join(format!("node-{i}")))
            .arg("--listen")
            .arg(format!("{}:{}", self.host(i), self.p2p[i]))
            .arg("--api")
            .arg(format!("{}:{}", self.host(i), self.api[i]))
            .arg("--genesis")
            .arg(d.join("genesis.toml"))
            .arg("--key")
            .arg(d.join(format!("node-{i}.key")))
            .env("RUST_LOG", "info")
            .envs(self.envs[i].iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn strata node");
        self.children[i] = Some(child);
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends a signal to node `i`.
    pub fn signal(&self, i: usize, sig: i32) {
        let c = self.children[i].as_ref().expect("node running");
        // SAFETY: plain syscall on our child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, sig);
        }
    }

    /// SIGTERM and wait; returns the exit status success.
    pub fn stop(&mut self, i: usize) -> bool {
        let Some(mut c) = self.children[i].take() else {
            return true;
        };
        // SAFETY: plain syscall on our child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.success();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                c.wait().unwrap();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address node `i` listens on: its lab host's, or loopback.
    pub fn host(&self, i: usize) -> std::net::IpAddr {
        host_in(self.lab.as_ref(), i)
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{}{path}", self.host(i), self.api[i])
    }

    /// GET, as (status, JSON).
    pub fn get(&self, i: usize, path: &str) -> (u16, Value) {
        match self.agent.get(&self.url(i, path)).call() {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// GET a successful binary answer's body.
    pub fn get_bytes(&self, i: usize, path: &str) -> Vec<u8> {
        let r = self
            .agent
            .get(&self.url(i, path))
            .call()
            .expect("a 2xx answer");
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut out).expect("a readable body");
        out
    }

    /// Node `i`'s Prometheus text (`GET /metrics`).
    pub fn metrics_text(&self, i: usize) -> String {
        String::from_utf8(self.get_bytes(i, "/metrics")).expect("UTF-8 metrics")
    }

    /// One metric of node `i` (0 when absent).
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        self.metrics_text(i)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// POST a body with a content type, as (status, JSON).
    pub fn post(&self, i: usize, path: &str, ctype: &str, body: &[u8]) -> (u16, Value) {
        match self
            .agent
            .post(&self.url(i, path))
            .set("Content-Type", ctype)
            .send_bytes(body)
        {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        let (code, v) = self.get(i, "/v1/status");
        (code == 200).then(|| v["height"].as_u64()).flatten()
    }

    /// Waits until every running node's API answers with n-1 peers.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.children.len() {
            if self.children[i].is_none() {
                continue;
            }
            loop {
                let (code, v) = self.get(i, "/v1/status");
                if code == 200 && v["peers"].as_u64().unwrap_or(0) + 1 >= self.running() as u64 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} not ready:\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn running(&self) -> usize {
        self.children.iter().filter(|c| c.is_some()).count()
    }

    /// Node keys (hex) node `i` has a connection with.
    pub fn peer_keys(&self, i: usize) -> Vec<String> {
        let (_, v) = self.get(i, "/v1/peers");
        v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["node_key"].as_str().map(String::from))
            .collect()
    }

    /// Gives stopped node `i` a new, free P2P port for its next
    /// [`Devnet::spawn`]: the other nodes still know only the old address
    /// (the genesis'), so they cannot dial it and any connection with it
    /// is one it dials, inbound to them.
    pub fn move_p2p_port(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is running");
        self.p2p[i] = free_ports(1)[0];
    }

    /// The P2P address of node `i`.
    pub fn p2p_addr(&self, i: usize) -> std::net::SocketAddr {
        (self.host(i), self.p2p[i]).into()
    }

    /// The pid of running node `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().expect("node running").id()
    }

    /// Waits until node `i` reaches `height`.
    pub fn wait_height(&self, i: usize, height: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.height(i).unwrap_or(0) < height {
            assert!(
                Instant::now() < deadline,
                "node {i} stuck below height {height} at {:?}:\n{}",
                self.height(i),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Block ids of heights 1..=h on node i.
    pub fn block_ids(&self, i: usize, h: u64) -> Vec<String> {
        (1..=h)
            .map(|height| {
                let (code, b) = self.get(i, &format!("/v1/blocks/{height}"));
                assert_eq!(code, 200, "block {height} on node {i}: {b}");
                b["id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// Every node's log lines stamped between `from` and `to` (UTC time of
    /// day, `HH:MM:SS.mmm`; see `rogue::time_of_day`), at most 80 a node.
    pub fn logs_between(&self, from: &str, to: &str) -> String {
        let mut out = String::new();
        for i in 0..self.children.len() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log")))
                .unwrap_or_default();
            out.push_str(&format!("--- node {i} from {from} to {to} ---\n"));
            let within = text.lines().filter(|l| {
                // "2026-12-06T06:30:38.567867Z  INFO ...": the time of day
                // is bytes 11..23.
                l.get(11..23).is_some_and(|t| t >= from && t <= to)
            });
            for l in within.take(80) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.children.len() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let warnings: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            out.push_str(&format!("--- node {i}: last warnings ---\n"));
            for l in &warnings[warnings.len().saturating_sub(20)..] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(&format!("--- node {i}: last lines ---\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A signed transfer of 1 (fee 1) from devnet account `from` to `to`.
pub fn transfer(genesis: &Genesis, from: usize, to: usize, nonce: u64) -> Transaction {
    let key = devnet_account_key(from);
    TxBody {
        chain_id: genesis.chain_id,
        sender: key.verifying_key().to_bytes(),
        nonce,
        fee: 1,
        kind: TxKind::Transfer {
            to: devnet_account_key(to).verifying_key().to_bytes(),
            amount: 1,
        },
    }
    .sign(&key)
    .unwrap()
}

/// POSTs transactions as JSON hex; returns the ids accepted.
pub fn submit(net: &Devnet, node: usize, txs: &[Transaction]) -> Vec<String> {
    let body = serde_json::json!({
        "txs": txs.iter().map(|t| hex::encode(t.encoded())).collect::<Vec<_>>()
    });
    let (code, v) = net.post(
        node,
        "/v1/txs",
        "application/json",
        body.to_string().as_bytes(),
    );
    if code != 200 {
        eprintln!(
            "POST /v1/txs to node {node}: HTTP {code}: {v}\n{}",
            net.logs()
        );
        return Vec::new();
    }
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

/// Runs the `strata` binary: (exit success, stdout + stderr).
pub fn strata(args: &[&str]) -> (bool, String) {
    strata_in(Path::new("."), args)
}

/// Runs the `strata` binary in `cwd`: (exit success, stdout + stderr).
pub fn strata_in(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
