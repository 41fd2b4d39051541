//! Joining by state sync, with real processes: a node with an empty data
//! directory and `[sync] mode = "state"` joins a running 3-validator
//! devnet, fetches the state of the validators' latest snapshot in
//! range-proven chunks, and follows the chain from there: it finalizes
//! the same blocks with the same state root as the validators, and holds
//! no block below its snapshot (it did not replay).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, submit, transfer, Devnet, DevnetOpts};
use strata_consensus::genesis::{devnet_account_key, devnet_validator_key};
use strata_consensus::sync::{SyncResponse, TAG_CHUNK_REQUEST, TAG_HEADS_REQUEST};
use strata_net::Event;

/// Validators serve a snapshot every 8 heights.
const VALIDATOR_CONFIG: &str = "[sync]\nsnapshot_every = 8\n";

struct Joiner {
    child: Child,
    api: String,
}

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a non-validator node on `net`'s genesis with data directory
/// `dir` in `net`'s (reused if there), `sync` as the body of its `[sync]`
/// section, and its log in `log`. Its key is derived from `dir`.
fn start_joiner(net: &Devnet, dir: &str, sync: &str, log: &str) -> Joiner {
    start_joiner_env(net, dir, sync, log, &[])
}

/// [`start_joiner`] with extra environment variables.
fn start_joiner_env(
    net: &Devnet,
    dir: &str,
    sync: &str,
    log: &str,
    env: &[(&str, &str)],
) -> Joiner {
    let d = net.path();
    let config = d.join(format!("{dir}.toml"));
    let key = d.join(format!("{dir}.key"));
    std::fs::write(&config, format!("[sync]\nheads_wait_ms = 5000\n{sync}")).unwrap();
    std::fs::write(&key, hex::encode(blake3::hash(dir.as_bytes()).as_bytes())).unwrap();
    let ports = free_ports(2);
    let api = format!("127.0.0.1:{}", ports[1]);
    let log = std::fs::File::create(d.join(log)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("node")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(d.join(dir))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", ports[0]))
        .arg("--api")
        .arg(&api)
        .arg("--genesis")
        .arg(d.join("genesis.toml"))
        .arg("--key")
        .arg(&key)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn the joining node");
    Joiner { child, api }
}

/// Waits until `joiner` is at node 0's height with node 0's state root.
fn wait_caught_up(net: &Devnet, joiner: &Joiner, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (j, v) = (
            get(&format!("http://{}/v1/status", joiner.api)).1,
            net.get(0, "/v1/status").1,
        );
        if j["height"] == v["height"] && j["state_root"] == v["state_root"] {
            return;
        }
        assert!(Instant::now() < deadline, "joiner {j} vs node 0 {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(url: &str) -> (u16, serde_json::Value) {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => (r.status(), r.into_json().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or_default()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Also: with the default `mode = "auto"`, a node syncs state only from a
/// snapshot `auto_min_height` or more past the genesis, and replays
/// otherwise (keeping every block).
#[test]
fn a_node_joins_a_running_devnet_by_state_sync() {
    let net = Devnet::start_opts(DevnetOpts {
        validators: 3,
        running: 3,
        config: Some(VALIDATOR_CONFIG),
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let nonce = join_and_follow(&net, 0);

    // Far enough behind (the snapshots are at 16 and above): state.
    let auto = start_joiner(&net, "auto", "auto_min_height = 16\n", "auto.log");
    synced_and_following(&net, 0, &auto, "auto.log", 16, nonce);
    // Not far enough behind by the default 10,000 blocks: replay.
    let replayer = start_joiner(&net, "replayer", "", "replayer.log");
    wait_caught_up(&net, &replayer, Duration::from_secs(90));
    let (code, v) = get(&format!("http://{}/v1/blocks/1", replayer.api));
    assert_eq!(code, 200, "the replayer keeps every block: {v}");
    let log = std::fs::read_to_string(net.path().join("replayer.log")).unwrap();
    assert!(
        log.contains("no snapshot far enough ahead is served"),
        "{log}"
    );
}

/// A node replaying hundreds of heights polls every one of them, β polls
/// each, and the validators count a query about a height more than 64
/// below their tip against the querier's request budget (100 a second).
/// Over it, the queries are dropped, not blamed: before, a replaying node
/// was scored as flooding and banned by every validator at once, and its
/// replay stopped (seen on a chain of 1,000 heights).
#[test]
fn a_node_replaying_hundreds_of_heights_is_not_banned() {
    let net = Devnet::start_opts(DevnetOpts {
        validators: 3,
        running: 3,
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let mut nonce = 0;
    load_until(&net, 0, 150, &mut nonce);
    let replayer = start_joiner(&net, "replayer", "mode = \"replay\"\n", "replayer.log");
    wait_caught_up(&net, &replayer, Duration::from_secs(120));
    for node in 0..3 {
        assert_eq!(
            net.metric(node, "strata_net_bans_total"),
            0.0,
            "validator {node} banned a peer"
        );
    }
}

/// Validator 3 of 4 lies: it answers sync requests by asking an honest
/// validator and changing one byte of the first value of every chunk.
/// Its heads are the honest ones (it relays them), so it is among the
/// peers the joiner fetches from; its first chunk fails the range proof,
/// it is banned, its range is fetched from another validator, and the
/// join completes with the honest state.
#[test]
fn a_validator_serving_changed_chunks_is_banned_and_the_join_completes() {
    let net = Devnet::start_opts(DevnetOpts {
        validators: 4,
        running: 3,
        config: Some(VALIDATOR_CONFIG),
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let config = strata_net::Config {
        listen_addr: net.p2p_addr(3),
        seeds: (0..3).map(|i| net.p2p_addr(i)).collect(),
        chain_id: net.genesis.net_chain_id(),
        gossip_quiet: true,
        ..strata_net::Config::default()
    };
    let identity = strata_net::handshake::Identity::from_seed(devnet_validator_key(3).to_bytes());
    let liar = strata_net::Node::start(config, identity).expect("the liar's network");
    let honest = devnet_validator_key(0).verifying_key().to_bytes();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_liar = std::sync::Arc::clone(&stop);
    let lied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let lied_count = std::sync::Arc::clone(&lied);
    let liar_thread = std::thread::spawn(move || {
        // Our request id to the honest node -> (asker, its request id).
        let mut relayed = std::collections::HashMap::new();
        while !stop_liar.load(std::sync::atomic::Ordering::Acquire) {
            let Some(event) = liar.next_event_timeout(Duration::from_millis(50)) else {
                continue;
            };
            match event {
                Event::Request {
                    from,
                    request_id,
                    payload,
                } if matches!(payload.first(), Some(&t) if t == TAG_HEADS_REQUEST || t == TAG_CHUNK_REQUEST) => {
                    if let Ok(ours) = liar.request(honest, payload) {
                        relayed.insert(ours, (from, request_id));
                    }
                }
                Event::Response {
                    request_id,
                    payload,
                    ..
                } => {
                    let Some((asker, their_id)) = relayed.remove(&request_id) else {
                        continue;
                    };
                    let answer = match SyncResponse::decode(&payload) {
                        Ok(SyncResponse::Chunk(mut chunk)) if !chunk.entries.is_empty() => {
                            chunk.entries[0].1[0] ^= 1;
                            lied_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            SyncResponse::Chunk(chunk).encode()
                        }
                        _ => payload,
                    };
                    let _ = liar.respond(asker, their_id, answer);
                }
                _ => {}
            }
        }
    });
    join_and_follow(&net, 0);
    stop.store(true, std::sync::atomic::Ordering::Release);
    liar_thread.join().unwrap();
    let log = std::fs::read_to_string(net.path().join("joiner.log")).unwrap_or_default();
    assert!(
        lied.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the liar was never asked for a chunk:\n{log}"
    );
    assert!(log.contains("bad chunk, banned"), "{log}");
}

/// Submits transfers through validator `node` until it is at `height`
/// or above; `nonce` is the next nonce of the senders used (0..16).
fn load_until(net: &Devnet, node: usize, height: u64, nonce: &mut u64) {
    let g = &net.genesis;
    let deadline = Instant::now() + Duration::from_secs(90);
    while net.height(node).unwrap_or(0) < height {
        assert!(
            Instant::now() < deadline,
            "the devnet did not reach height {height}"
        );
        let txs: Vec<_> = (0..16).map(|s| transfer(g, s, s + 1, *nonce)).collect();
        if submit(net, node, &txs).len() == txs.len() {
            *nonce += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads `net` (validators `node`.. running) past height 20, starts a
/// joiner syncing state, and checks it ends at the validators' height,
/// block and root without replaying; returns the senders' next nonce.
fn join_and_follow(net: &Devnet, node: usize) -> u64 {
    let mut nonce = 0u64;
    load_until(net, node, 20, &mut nonce);
    let joiner = start_joiner(net, "joiner", "mode = \"state\"\n", "joiner.log");
    synced_and_following(net, node, &joiner, "joiner.log", 16, nonce);
    nonce + 1
}

/// Waits until `joiner` (logging to `log`) synced a snapshot at
/// `min_height` or above, then checks it kept nothing below it and follows
/// the chain: a transfer submitted to it (senders at `nonce`) is
/// finalized, and at rest it has validator `node`'s height, block and
/// state root.
fn synced_and_following(
    net: &Devnet,
    node: usize,
    joiner: &Joiner,
    log: &str,
    min_height: u64,
    nonce: u64,
) {
    let g = net.genesis.clone();
    let log_text = || std::fs::read_to_string(net.path().join(log)).unwrap_or_default();
    let status = |api: &str| get(&format!("http://{api}/v1/status")).1;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = status(&joiner.api);
        if s["height"].as_u64().unwrap_or(0) >= min_height {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the joiner did not sync: {s}\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It did not replay: nothing below its snapshot is kept.
    let (code, v) = get(&format!("http://{}/v1/blocks/1", joiner.api));
    assert_eq!(code, 410, "{v}");
    // The load (`load_until`) counts a nonce once admitted, not once
    // final. The joiner admits a sender's transaction only within 64
    // nonces of what its finalized state says, and it never saw the load
    // pending on the validators: wait until its state has every load
    // transaction (on a loaded machine the chain lagged the submissions by
    // 170 nonces, and the joiner refused a nonce gap).
    let account = |s: usize| {
        let pk = hex::encode(devnet_account_key(s).verifying_key().to_bytes());
        get(&format!("http://{}/v1/accounts/{pk}", joiner.api)).1
    };
    loop {
        let behind: Vec<_> = (0..4)
            .map(account)
            .filter(|a| a["nonce"].as_u64() != Some(nonce))
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load is not final on the joiner (senders at nonce {nonce}): {behind:?}\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let txs: Vec<_> = (0..4).map(|s| transfer(&g, s, s + 1, nonce)).collect();
    let body = serde_json::json!({
        "txs": txs.iter().map(|t| hex::encode(t.encoded())).collect::<Vec<_>>()
    });
    let r = ureq::post(&format!("http://{}/v1/txs", joiner.api))
        .set("content-type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("submit to the joiner: {e}\n{}", log_text()));
    assert_eq!(r.status(), 200);
    // Each transaction's admission, for the failure message below: a
    // 200 answer can still refuse some (busy, nonce).
    let admitted = r.into_string().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (j, v) = (status(&joiner.api), net.get(node, "/v1/status").1);
        let same = j["height"] == v["height"]
            && j["block_id"] == v["block_id"]
            && j["state_root"] == v["state_root"];
        let included = txs.iter().all(|t| {
            net.get(node, &format!("/v1/txs/{}", hex::encode(t.id()))).1["status"] == "finalized"
        });
        if same && included {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "joiner {j} vs node {node} {v}\nadmission: {admitted}\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = log_text();
    assert!(text.contains("state sync: done"), "{text}");
    for line in text.lines().filter(|l| l.contains("state sync")) {
        eprintln!("joiner: {line}");
    }
}

/// Lines of `log` in `net`'s directory that contain `needle`.
fn count_lines(net: &Devnet, log: &str, needle: &str) -> usize {
    std::fs::read_to_string(net.path().join(log))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until `joiner` logged `written` sub-ranges written to `log`,
/// then, after a random 0–300 ms (so the kill lands at any point of the
/// fetch: chunks in flight, runs half gathered, a write under way), kills
/// it with SIGKILL; panics if the sync finished first (the kill would
/// test nothing).
fn kill_mid_fetch(net: &Devnet, mut joiner: Joiner, log: &str, written: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_lines(net, log, "a sub-range is written") < written {
        assert!(
            Instant::now() < deadline,
            "no sub-range written:\n{}",
            std::fs::read_to_string(net.path().join(log)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let jitter_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 300;
    eprintln!("killing the joiner {jitter_ms} ms after sub-range {written} was written");
    std::thread::sleep(Duration::from_millis(u64::from(jitter_ms)));
    joiner.child.kill().unwrap();
    joiner.child.wait().unwrap();
    let text = std::fs::read_to_string(net.path().join(log)).unwrap_or_default();
    assert!(
        !text.contains("state sync: done"),
        "the sync finished before the kill; slow it down:\n{text}"
    );
}

/// A joining node killed with SIGKILL in the middle of its fetch resumes
/// on restart from the sub-ranges it had written (it does not fetch them
/// again), even started with `mode = "replay"` (a half-synced store is
/// never replayed over); killed again and restarted only after the
/// validators dropped that snapshot, it deletes what it fetched and syncs
/// the newer one; stopped between its last write and adoption, it adopts
/// on the next start without asking anyone (the validators moved on
/// again meanwhile). It ends with the validators' state. The validators
/// serve slowly (16 KiB/s to each peer, 2 KiB chunks) so that a fetch
/// takes seconds.
#[test]
fn a_join_killed_at_any_point_resumes_or_starts_over() {
    let net = Devnet::start_opts(DevnetOpts {
        validators: 3,
        running: 3,
        config: Some(
            "[sync]\nsnapshot_every = 8\nserve_bytes_per_s = 16384\nserve_bytes_per_s_total = 65536\n",
        ),
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let mut nonce = 0u64;
    load_until(&net, 0, 20, &mut nonce);
    let slow = |mode: &str| format!("mode = \"{mode}\"\nchunk_bytes = 2048\n");
    let text = |log: &str| std::fs::read_to_string(net.path().join(log)).unwrap_or_default();
    let ranges_done = |log: &str| -> usize {
        let text = text(log);
        let resumed = text
            .lines()
            .find(|l| l.contains("resuming where an earlier run stopped"))
            .unwrap_or_else(|| panic!("{log}: no resume:\n{text}"))
            .to_string();
        resumed
            .split("ranges_done=")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no ranges_done in {resumed}"))
    };

    // 1. Killed once the first sub-range is written.
    let joiner = start_joiner(&net, "joiner", &slow("state"), "joiner-1.log");
    kill_mid_fetch(&net, joiner, "joiner-1.log", 1);
    let written_1 = count_lines(&net, "joiner-1.log", "a sub-range is written");

    // 2. Restarted at once, in replay mode: it resumes with at least those
    // sub-ranges done, and writes only the others.
    let joiner = start_joiner(&net, "joiner", &slow("replay"), "joiner-2.log");
    kill_mid_fetch(&net, joiner, "joiner-2.log", 1);
    let done = ranges_done("joiner-2.log");
    assert!(done >= written_1, "{done} < {written_1}");

    // 3. The validators move on past two more snapshots (8 heights apart,
    // 2 kept): the one fetched is gone, and the run starts over.
    let h = net.height(0).unwrap();
    load_until(&net, 0, h + 17, &mut nonce);
    let joiner = start_joiner(&net, "joiner", &slow("state"), "joiner-3.log");
    kill_mid_fetch(&net, joiner, "joiner-3.log", 1);
    let log3 = text("joiner-3.log");
    assert!(
        log3.contains("is no longer served; deleted its entries"),
        "{log3}"
    );
    assert!(!log3.contains("resuming where"), "{log3}");

    // 4. Resumed, it writes every entry and stops before adopting.
    let mut joiner = start_joiner_env(
        &net,
        "joiner",
        &slow("state"),
        "joiner-4.log",
        &[("STRATA_TEST_EXIT_BEFORE_ADOPT", "1")],
    );
    let status = joiner.child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "{}", text("joiner-4.log"));
    ranges_done("joiner-4.log");

    // 5. The validators move on again; the next start adopts what it has
    // without a quorum for that snapshot, then catches up by blocks.
    let h = net.height(0).unwrap();
    load_until(&net, 0, h + 17, &mut nonce);
    let joiner = start_joiner(&net, "joiner", "mode = \"auto\"\n", "joiner-5.log");
    synced_and_following(&net, 0, &joiner, "joiner-5.log", h + 1, nonce);
    let log5 = text("joiner-5.log");
    assert!(
        log5.contains("every entry was written by an earlier run; adopting"),
        "{log5}"
    );
}
