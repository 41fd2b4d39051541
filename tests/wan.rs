//! A devnet of hosts, not of loopback ports: every node in its own
//! network namespace, joined by links with real delay, loss and cuts
//! (`strata-netlab`'s user-space router). Each test skips with a message
//! where namespaces are refused (not root, a container that forbids
//! them); as root on Linux, including CI, they run.
//!
//! Bounds used below, for the default config (`polls_in_flight = 4`,
//! `poll_timeout_ms = 400`, `propose_delay_ms = 20`) and genesis
//! (β = 20 consecutive successful polls):
//! - **A height on an idle network** needs the block at the voters (a
//!   push, ½ RTT; a pull, 1½ RTT) and β polls, 4 at a time, each at least
//!   one RTT: about 5 RTT of polls, 7 RTT in all, plus the proposal
//!   delay and the engine's ticks. The tests allow twice that: a
//!   transaction's finality p50 ≤ 14 RTT + 200 ms.
//! - **After a heal**, TCP resends what the cut dropped at its next
//!   retransmission timeout; the timeout doubles with each loss, so the
//!   first resend after a cut of `T` comes within about `T` of the heal.
//!   Then the cut-off side pulls the blocks it missed. The tests allow
//!   `T` + 10 s.
//! - **A stalled validator** (SIGSTOP bursts) is one silent peer of
//!   three for the others: two answers of three still make a poll. A
//!   **starved** one (a cgroup quota of 2 % of a CPU) answers, but late:
//!   the same two of three make the polls.

mod common;

use std::time::{Duration, Instant};

use common::{submit, transfer, Devnet, DevnetOpts};
use strata_netlab::{CpuLimit, Lab, LabError, Link};

/// A lab of `n` hosts, or `None` (with the reason printed) where the
/// machine refuses namespaces.
fn lab(n: usize, seed: u64) -> Option<Lab> {
    match Lab::new(n, seed) {
        Ok(lab) => Some(lab),
        Err(LabError::Refused(why)) => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// `n` validators, node `i` on host `i` of `lab`.
fn devnet_in(lab: Lab, n: usize) -> Devnet {
    let net = Devnet::start_opts(DevnetOpts {
        validators: n,
        running: n,
        lab: Some(lab),
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    net
}

fn lab_of(net: &Devnet) -> &Lab {
    net.lab.as_ref().expect("a devnet in a lab")
}

/// Waits until `id` is final on node `node`; its height.
fn wait_final(net: &Devnet, node: usize, id: &str, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, v) = net.get(node, &format!("/v1/txs/{id}"));
        if code == 200 && v["status"] == "finalized" {
            return v["height"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{id} not final on node {node} within {timeout:?}: {v}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every node in `nodes` has the same block id at every height from 1 to
/// `height`.
fn assert_same_chain(net: &Devnet, nodes: &[usize], height: u64) {
    for h in 1..=height {
        let ids: Vec<_> = nodes.iter().map(|&i| net.block_ids(i, h)).collect();
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "height {h}: nodes {nodes:?} disagree: {ids:?}"
        );
    }
}

/// Every node of `net` reaches `height`, each within `timeout`, and they
/// all have the same blocks up to it.
fn assert_all_reach_the_same_chain(net: &Devnet, height: u64, timeout: Duration) {
    let nodes: Vec<usize> = (0..net.children.len()).collect();
    for &node in &nodes {
        net.wait_height(node, height, timeout);
    }
    assert_same_chain(net, &nodes, height);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_100ms_rtt_network_agrees_and_finalizes_within_its_rtt_bound() {
    let Some(lab) = lab(4, 1) else { return };
    lab.set_links(|_, _| Link::delay_ms(50).jitter_ms(5));
    let net = devnet_in(lab, 4);
    let rtt = Duration::from_millis(100);
    // One transaction at a time, each from a fresh account: the time from
    // its submission until node 0 reports it final.
    let mut latencies = Vec::new();
    let mut height = 0;
    for i in 0..9 {
        let t = Instant::now();
        let ids = submit(&net, 0, &[transfer(&net.genesis, i, i + 100, 0)]);
        assert_eq!(ids.len(), 1);
        height = wait_final(&net, 0, &ids[0], Duration::from_secs(30));
        latencies.push(t.elapsed());
    }
    let p50 = median(latencies.clone());
    eprintln!("finality at 100 ms RTT: p50 {p50:?}, all {latencies:?}");
    assert!(
        p50 <= 14 * rtt + Duration::from_millis(200),
        "p50 {p50:?} beyond 14 RTT + 200 ms"
    );
    assert_all_reach_the_same_chain(&net, height, Duration::from_secs(30));
}

#[test]
fn a_cut_off_minority_neither_stops_the_rest_nor_forks_and_catches_up() {
    let Some(lab) = lab(4, 2) else { return };
    lab.set_links(|_, _| Link::delay_ms(10));
    let net = devnet_in(lab, 4);
    let before = submit(&net, 0, &[transfer(&net.genesis, 0, 1, 0)]);
    let h0 = wait_final(&net, 0, &before[0], Duration::from_secs(30));
    net.wait_height(3, h0, Duration::from_secs(30));

    let cut = Duration::from_secs(4);
    let cut_at = Instant::now();
    lab_of(&net).partition(&[&[0, 1, 2], &[3]]);
    // The majority keeps finalizing: 3 of 4 answer every poll.
    let during: Vec<_> = (0..3)
        .map(|i| submit(&net, i, &[transfer(&net.genesis, 10 + i, 1, 0)])[0].clone())
        .collect();
    let mut h1 = 0;
    for (i, id) in during.iter().enumerate() {
        h1 = h1.max(wait_final(&net, i, id, Duration::from_secs(20)));
    }
    assert!(h1 > h0);
    std::thread::sleep(cut.saturating_sub(cut_at.elapsed()));
    assert!(
        net.height(3).unwrap() <= h0,
        "the cut-off node finalized alone"
    );
    lab_of(&net).heal();
    assert_all_reach_the_same_chain(&net, h1, cut + Duration::from_secs(10));
}

#[test]
fn a_split_in_halves_finalizes_nothing_then_resumes_after_the_heal() {
    let Some(lab) = lab(4, 3) else { return };
    lab.set_links(|_, _| Link::delay_ms(10));
    let net = devnet_in(lab, 4);
    let first = submit(&net, 0, &[transfer(&net.genesis, 0, 1, 0)]);
    let h0 = wait_final(&net, 0, &first[0], Duration::from_secs(30));
    for node in 1..4 {
        net.wait_height(node, h0, Duration::from_secs(30));
    }

    let cut = Duration::from_secs(4);
    lab_of(&net).partition(&[&[0, 1], &[2, 3]]);
    // Each half gets a transaction; neither half is a quorum.
    let a = submit(&net, 0, &[transfer(&net.genesis, 20, 1, 0)]);
    let b = submit(&net, 2, &[transfer(&net.genesis, 21, 1, 0)]);
    std::thread::sleep(cut);
    for node in 0..4 {
        assert_eq!(
            net.height(node),
            Some(h0),
            "node {node} finalized in a half of the network"
        );
    }
    lab_of(&net).heal();
    let ha = wait_final(&net, 0, &a[0], cut + Duration::from_secs(10));
    let hb = wait_final(&net, 2, &b[0], cut + Duration::from_secs(10));
    let top = ha.max(hb);
    assert_all_reach_the_same_chain(&net, top, Duration::from_secs(10));
}

#[test]
fn one_percent_loss_slows_but_does_not_stop_or_fork() {
    let Some(lab) = lab(4, 4) else { return };
    lab.set_links(|_, _| Link::delay_ms(25).loss_percent(1.0));
    let net = devnet_in(lab, 4);
    let txs: Vec<_> = (0..200)
        .map(|i| transfer(&net.genesis, i, i + 1, 0))
        .collect();
    let ids = submit(&net, 0, &txs);
    assert_eq!(ids.len(), txs.len());
    let mut top = 0;
    for id in &ids {
        top = top.max(wait_final(&net, 0, id, Duration::from_secs(60)));
    }
    assert_all_reach_the_same_chain(&net, top, Duration::from_secs(30));
    let lost: u64 = (0..4)
        .flat_map(|a| (0..4).map(move |b| (a, b)))
        .map(|(a, b)| lab_of(&net).stats(a, b).dropped_loss)
        .sum();
    assert!(lost > 0, "no packet was lost at 1 %");
}

/// A validator that keeps stalling (SIGSTOP for 300 ms, then 300 ms of
/// run, for 6 s: a CPU-starved host) at 50 ms RTT: the other three keep
/// finalizing, nobody forks, and the laggard is at the others' height
/// within 10 s of its last stall.
#[test]
fn a_lagging_validator_neither_stops_the_rest_nor_forks() {
    let Some(lab) = lab(4, 5) else { return };
    lab.set_links(|_, _| Link::delay_ms(25));
    let net = devnet_in(lab, 4);
    let stalls = std::thread::scope(|scope| {
        let lagging = scope.spawn(|| {
            for _ in 0..10 {
                net.signal(3, libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(300));
                net.signal(3, libc::SIGCONT);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let mut top = 0;
        for i in 0..6 {
            let ids = submit(&net, i % 3, &[transfer(&net.genesis, 30 + i, 1, 0)]);
            top = top.max(wait_final(&net, i % 3, &ids[0], Duration::from_secs(20)));
        }
        lagging.join().expect("the stalling thread does not panic");
        top
    });
    assert_all_reach_the_same_chain(&net, stalls, Duration::from_secs(10));
}

/// A validator held to 2 % of one CPU by a cgroup quota (a host far too
/// small: it lags steadily, not in SIGSTOP bursts) at 50 ms RTT while
/// batches of 200 transactions arrive: the other three keep finalizing,
/// the limit did bite (throttled periods), nobody forks, and once the
/// limit is lifted the laggard is at the others' height within 15 s.
/// Skips where no cgroup cpu controller is writable.
#[test]
fn a_cpu_starved_validator_neither_stops_the_rest_nor_forks() {
    let Some(lab) = lab(4, 7) else { return };
    lab.set_links(|_, _| Link::delay_ms(25));
    let net = devnet_in(lab, 4);
    let limit = match CpuLimit::new(net.pid(3), 2) {
        Ok(limit) => limit,
        Err(LabError::Refused(why)) => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut top = 0;
    for i in 0..6 {
        let txs: Vec<_> = (0..200)
            .map(|j| transfer(&net.genesis, 100 + i * 200 + j, 1, 0))
            .collect();
        let ids = submit(&net, i % 3, &txs);
        assert_eq!(ids.len(), 200);
        top = top.max(wait_final(
            &net,
            i % 3,
            ids.last().unwrap(),
            Duration::from_secs(20),
        ));
    }
    let throttled = limit.throttled_periods();
    let behind = top.saturating_sub(net.height(3).unwrap_or(0));
    assert!(throttled > 0, "the 2 % quota never bit");
    eprintln!("validator 3 throttled in {throttled} periods of 100 ms, {behind} heights behind");
    drop(limit);
    assert_all_reach_the_same_chain(&net, top, Duration::from_secs(15));
}

/// Validator 3's clock 5 s ahead and validator 2's 5 s behind (their
/// blocks' stamps; `STRATA_CLOCK_SKEW_MS`) at 20 ms RTT: transactions sent
/// to every node are final, every node has the same blocks, block time
/// never goes back along the chain, and what validator 3 proposed is
/// stamped ahead of the controller's clock. Block time is the proposer's
/// clock, kept from going back (docs/consensus.md, "Clocks").
#[test]
fn skewed_clocks_neither_fork_nor_turn_block_time_back() {
    let Some(lab) = lab(4, 6) else { return };
    lab.set_links(|_, _| Link::delay_ms(10));
    let mut net = Devnet::start_opts(DevnetOpts {
        validators: 4,
        running: 0,
        lab: Some(lab),
        ..DevnetOpts::default()
    });
    net.envs[2] = vec![("STRATA_CLOCK_SKEW_MS".into(), "-5000".into())];
    net.envs[3] = vec![("STRATA_CLOCK_SKEW_MS".into(), "5000".into())];
    for i in 0..4 {
        net.spawn(i);
    }
    net.wait_ready(Duration::from_secs(60));
    let wall_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // (height, wall clock when its transaction was sent)
    let mut finals = Vec::new();
    for i in 0..16 {
        let node = i % 4;
        let sent_ms = wall_ms();
        let ids = submit(&net, node, &[transfer(&net.genesis, i, i + 100, 0)]);
        assert_eq!(ids.len(), 1);
        let h = wait_final(&net, node, &ids[0], Duration::from_secs(30));
        finals.push((h, sent_ms));
    }
    let height = finals.iter().map(|f| f.0).max().unwrap();
    assert_all_reach_the_same_chain(&net, height, Duration::from_secs(30));
    let ahead = hex::encode(net.genesis.validator_set().unwrap()[3].public_key);
    let mut previous = 0;
    let mut ahead_blocks = 0;
    for h in 1..=height {
        let (code, b) = net.get(0, &format!("/v1/blocks/{h}"));
        assert_eq!(code, 200, "{b}");
        let stamp = b["timestamp_ms"].as_u64().unwrap();
        assert!(
            stamp >= previous,
            "height {h} stamped {stamp}, before its parent's {previous}"
        );
        previous = stamp;
        if b["proposer"] == ahead.as_str() {
            if let Some((_, sent_ms)) = finals.iter().find(|f| f.0 == h) {
                ahead_blocks += 1;
                assert!(
                    stamp >= sent_ms + 4_000,
                    "height {h} by the node 5 s ahead stamped {stamp}, its transaction sent at {sent_ms}"
                );
            }
        }
    }
    eprintln!("{ahead_blocks} blocks of {height} proposed by the node 5 s ahead");
}

/// One cell of the measurement: `strata bench` at `rate` tx/s for
/// `secs` seconds against `nodes` validators whose links all have `rtt`
/// round trips and `loss_percent` loss; the bench's summary.
fn measure(
    nodes: usize,
    rtt_ms: u64,
    loss_percent: f64,
    rate: u64,
    secs: u64,
    config: Option<&str>,
) -> String {
    let Some(lab) = lab(nodes, rtt_ms ^ nodes as u64) else {
        return String::new();
    };
    for setting in std::env::var("WAN_SYSCTL")
        .unwrap_or_default()
        .split_whitespace()
    {
        for host in 0..nodes {
            lab.sysctl(host, setting).expect("WAN_SYSCTL applies");
        }
    }
    lab.set_links(|_, _| {
        Link::delay_ms(rtt_ms / 2)
            .jitter_ms(rtt_ms / 40)
            .loss_percent(loss_percent)
    });
    let net = Devnet::start_opts(DevnetOpts {
        validators: nodes,
        running: nodes,
        lab: Some(lab),
        config,
        ..DevnetOpts::default()
    });
    net.wait_ready(Duration::from_secs(60));
    let targets: Vec<String> = (0..nodes).map(|i| net.p2p_addr(i).to_string()).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--target", &targets.join(","), "--api"])
        .arg(format!("{}:{}", net.host(0), net.api[0]))
        .arg("--genesis")
        .arg(net.path().join("genesis.toml"))
        .args([
            "--txs",
            &(rate * secs).to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--timeout", "120"])
        .output()
        .expect("run strata bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        eprintln!(
            "strata bench failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// The table of docs/consensus.md, "Over a WAN": finality and finalized
/// tx/s for 4 and 8 validators at 0, 50, 100 and 200 ms RTT, without and
/// with 1 % loss. About 20 minutes. Settings by environment:
/// `WAN_NODES` (default "4,8"), `WAN_RTTS_MS` ("0,50,100,200"),
/// `WAN_LOSS` ("0,1"), `WAN_RATE` (tx/s, 2000), `WAN_SECS` (20),
/// `WAN_CONFIG` (a node TOML file, e.g. docs/config/wan.toml),
/// `WAN_SYSCTL` (kernel settings for every host, space separated, e.g.
/// `net.ipv4.tcp_slow_start_after_idle=0`).
///
/// ```sh
/// cargo test --release --test wan -- --ignored --nocapture finality_table
/// ```
#[test]
#[ignore = "a measurement: about 20 minutes"]
fn finality_table() {
    let list = |var: &str, default: &str| -> Vec<f64> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().parse().expect("a number"))
            .collect()
    };
    let rate = list("WAN_RATE", "2000")[0] as u64;
    let secs = list("WAN_SECS", "20")[0] as u64;
    let config = std::env::var("WAN_CONFIG")
        .ok()
        .map(|p| std::fs::read_to_string(p).expect("WAN_CONFIG is readable"));
    println!(
        "| validators | RTT | loss | finality p50 / p95 / p99 | finalized tx/s (offered {rate}) |"
    );
    println!("|---:|---:|---:|---|---:|");
    let mut failed = Vec::new();
    for nodes in list("WAN_NODES", "4,8") {
        for rtt in list("WAN_RTTS_MS", "0,50,100,200") {
            for loss in list("WAN_LOSS", "0,1") {
                let summary = measure(
                    nodes as usize,
                    rtt as u64,
                    loss,
                    rate,
                    secs,
                    config.as_deref(),
                );
                let latency = summary
                    .lines()
                    .find_map(|l| l.strip_prefix("finality latency "))
                    .unwrap_or("(no summary)")
                    .replace(" p95 ", " / ")
                    .replace(" p99 ", " / ")
                    .replace("p50 ", "");
                let tps = summary
                    .split("finalized ")
                    .nth(1)
                    .and_then(|r| r.split(['(', ' ']).nth(2))
                    .unwrap_or("-");
                println!("| {nodes} | {rtt} ms | {loss} % | {latency} | {tps} |");
                if latency == "(no summary)" {
                    failed.push(format!("{nodes} validators, {rtt} ms, {loss} %"));
                }
            }
        }
    }
    // A cell skipped for want of namespaces has no summary either.
    if lab(1, 0).is_some() {
        assert!(failed.is_empty(), "cells without a summary: {failed:?}");
    }
}
