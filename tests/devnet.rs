//! A 4-node devnet of real processes on 127.0.0.1 under load: a node
//! killed with SIGKILL and restarted on its data dir catches up, a node
//! paused with SIGSTOP (a partition) catches up after SIGCONT, a node whose
//! data is wiped syncs from genesis; every node finalizes the same blocks
//! with the same state roots, every accepted transaction is finalized
//! exactly once, total supply is conserved, and SIGTERM exits cleanly.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{submit, transfer, Devnet};
use strata_consensus::genesis::{devnet_account_public_keys, DEVNET_BALANCE};
use strata_consensus::state::burned_key;

const SENDERS: usize = 48;

/// One round: the next transaction of every sender, to `node`.
fn round(net: &Devnet, node: usize, nonces: &mut [u64], accepted: &mut Vec<String>) {
    let txs: Vec<_> = (0..SENDERS)
        .map(|s| transfer(&net.genesis, s, s + 1, nonces[s]))
        .collect();
    let ids = submit(net, node, &txs);
    let ok: HashSet<&String> = ids.iter().collect();
    for (s, t) in txs.iter().enumerate() {
        // A sender's nonce moves on only when its transaction was taken,
        // so a refusal never leaves a gap that blocks later ones.
        if ok.contains(&hex::encode(t.id())) {
            nonces[s] += 1;
        }
    }
    accepted.extend(ids);
}

fn load(net: &Devnet, nodes: &[usize], rounds: usize, nonces: &mut [u64], acc: &mut Vec<String>) {
    for r in 0..rounds {
        round(net, nodes[r % nodes.len()], nonces, acc);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn max_height(net: &Devnet) -> u64 {
    (0..4).filter_map(|i| net.height(i)).max().unwrap_or(0)
}

#[test]
fn devnet_agrees_under_load_kill9_pause_and_resync() {
    let mut net = Devnet::start(4);
    net.wait_ready(Duration::from_secs(60));
    let mut nonces = vec![0u64; SENDERS];
    let mut accepted = Vec::new();

    load(&net, &[0, 1, 2, 3], 8, &mut nonces, &mut accepted);
    net.wait_height(0, 1, Duration::from_secs(30));

    // kill -9 under load, keep loading the others, restart on its data.
    net.kill9(3);
    load(&net, &[0, 1, 2], 8, &mut nonces, &mut accepted);
    let before = net.height(0).unwrap();
    net.spawn(3);
    net.wait_height(3, before, Duration::from_secs(60));
    load(&net, &[0, 1, 2, 3], 6, &mut nonces, &mut accepted);

    // A partition: SIGSTOP for a while under load, then SIGCONT.
    net.signal(2, libc::SIGSTOP);
    load(&net, &[0, 1, 3], 8, &mut nonces, &mut accepted);
    net.signal(2, libc::SIGCONT);
    net.wait_height(2, net.height(0).unwrap(), Duration::from_secs(60));

    // A node that lost its data joins from genesis.
    net.kill9(1);
    std::fs::remove_dir_all(net.data_dir(1)).unwrap();
    net.spawn(1);
    load(&net, &[0, 2, 3], 6, &mut nonces, &mut accepted);
    net.wait_height(1, net.height(0).unwrap(), Duration::from_secs(90));

    // Everything accepted gets finalized, exactly once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (h, finalized) = loop {
        let h = max_height(&net);
        for i in 0..4 {
            net.wait_height(i, h, Duration::from_secs(60));
        }
        let mut count: HashMap<String, usize> = HashMap::new();
        for height in 1..=h {
            let (_, b) = net.get(0, &format!("/v1/blocks/{height}"));
            for id in b["txs"].as_array().unwrap() {
                *count.entry(id.as_str().unwrap().to_string()).or_default() += 1;
            }
        }
        if accepted.iter().all(|id| count.contains_key(id)) || Instant::now() > deadline {
            break (h, count);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let missing = accepted
        .iter()
        .filter(|id| !finalized.contains_key(*id))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} accepted txs never finalized:\n{}",
        accepted.len(),
        net.logs()
    );
    assert!(
        finalized.values().all(|c| *c == 1),
        "a transaction finalized twice"
    );
    assert_eq!(
        finalized.len(),
        accepted.len(),
        "finalized txs nobody submitted"
    );

    // Same blocks and roots everywhere.
    let ids0 = net.block_ids(0, h);
    for i in 1..4 {
        assert_eq!(net.block_ids(i, h), ids0, "node {i} diverged");
    }
    let roots: Vec<_> = (0..4)
        .map(|i| net.get(i, "/v1/status").1["state_root"].clone())
        .collect();
    assert!(
        roots.iter().all(|r| *r == roots[0]),
        "roots differ: {roots:?}"
    );

    // Supply: the touched accounts plus the burned fees add up to what the
    // touched accounts held at genesis (transfers stay among them).
    let keys = devnet_account_public_keys();
    let mut total = 0u64;
    for pk in &keys[..=SENDERS] {
        let (_, a) = net.get(0, &format!("/v1/accounts/{}", hex::encode(pk)));
        total += a["balance"].as_u64().unwrap();
    }
    let (_, burned) = net.get(0, &format!("/v1/state/{}", hex::encode(burned_key())));
    let burned = u64::from_le_bytes(
        hex::decode(burned["value"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert_eq!(
        burned,
        accepted.len() as u64,
        "one fee burned per transaction"
    );
    assert_eq!(total + burned, (SENDERS as u64 + 1) * DEVNET_BALANCE);
    eprintln!(
        "{} transactions accepted and finalized in {h} blocks; supply conserved",
        accepted.len()
    );

    for i in 0..4 {
        assert!(
            net.stop(i),
            "node {i} did not exit cleanly on SIGTERM:\n{}",
            net.logs()
        );
    }
}
