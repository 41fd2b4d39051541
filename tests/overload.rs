//! Overload, with real processes: a node pushed far past what it can
//! finalize sheds the excess with clear answers, keeps finalizing, and its
//! memory stays bounded.
//!
//! The node runs with a small mempool (3,000) and small, slow blocks (500
//! per ~100 ms), so
//! "far past" is cheap to reach on a CI machine: its two client paths are
//! flooded at once —
//! - the HTTP API with 12,000 valid transfers, as fast as it answers: the
//!   mempool refuses what does not fit, naming why;
//! - the framed P2P request path (the bench's) with 600 batches of 256
//!   validly signed transactions (each costs the node a batch of 256
//!   signature checks, whatever the mempool then makes of them): once its
//!   verification queue is full the node answers "busy" at once instead of
//!   queueing or blocking its consensus loop. (Forged batches no longer
//!   load it: the first one gets the client banned; see
//!   tests/adversary.rs.)
//!
//! Meanwhile blocks keep being finalized. The memory bound of the node's
//! *default* limits (mempool 512 MiB) is not filled here: that would take
//! a million signed transactions, beyond a CI test's budget.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_consensus::tx::Transaction;
use strata_consensus::wire::Payload;
use strata_net::handshake::Identity;
use strata_net::Event;

/// The node's answer to a batch it had no room for (src/node.rs).
const BUSY_ANSWER: [u8; 5] = [0, 0, 0, 0, 1];

/// At most 500 transactions per ~100 ms: about 5,000 tx/s, an eighth of
/// what the API flood offers.
const CONFIG: &str = "\
[consensus]
block_txs_max = 500
propose_delay_ms = 100

[mempool]
txs_max = 3000
";

/// Peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// A transaction whose signature is another one's: decodes, fails to
/// verify.
fn forged(net: &Devnet, from: usize, nonce: u64) -> Transaction {
    let good = transfer(&net.genesis, from, from + 1, nonce);
    let other = transfer(&net.genesis, from, from + 1, nonce + 1);
    let mut bytes = good.encoded().to_vec();
    let n = bytes.len();
    bytes[n - 64..].copy_from_slice(other.signature());
    Transaction::decode(&bytes).unwrap()
}

#[test]
fn overload_is_shed_with_clear_answers_while_blocks_keep_finalizing() {
    let net = Devnet::start_with_config(1, Some(CONFIG));
    net.wait_ready(Duration::from_secs(30));
    let height_before = net.height(0).unwrap();

    // The framed path: a client peer with 600 batches of valid
    // signatures (nonces 100.. of 256 senders: beyond the nonce gap the
    // mempool holds, so none is admitted and every one is checked).
    let batches: Vec<Vec<u8>> = (0..600u64)
        .map(|b| {
            let txs: Vec<Transaction> = (0..256)
                .map(|i| transfer(&net.genesis, 1000 + i, 1, 100 + b))
                .collect();
            Payload::Txs(txs).encode()
        })
        .collect();
    let config = strata_net::Config {
        seeds: vec![format!("127.0.0.1:{}", net.p2p[0]).parse().unwrap()],
        chain_id: net.genesis.net_chain_id(),
        gossip_quiet: true,
        // Room to queue the whole flood (600 × 38 KB) at once: the
        // client's default would drop the node as "not reading".
        send_queue_bytes_max: 64 << 20,
        ..strata_net::Config::default()
    };
    let client = strata_net::Node::start(config, Identity::generate().unwrap()).unwrap();
    let node_key = loop {
        match client.next_event_timeout(Duration::from_secs(20)) {
            Some(Event::PeerUp { node_key, .. }) => break node_key,
            Some(_) => {}
            None => panic!("the client never connected to the node"),
        }
    };
    let flood = std::thread::spawn(move || {
        let sent = batches.len();
        for batch in batches {
            client.request(node_key, batch).unwrap();
        }
        let (mut busy, mut looked_at, mut failed) = (0, 0, 0);
        let deadline = Instant::now() + Duration::from_secs(120);
        while busy + looked_at + failed < sent && Instant::now() < deadline {
            match client.next_event_timeout(Duration::from_secs(1)) {
                Some(Event::Response { payload, .. }) if payload == BUSY_ANSWER => busy += 1,
                Some(Event::Response { payload, .. }) => {
                    assert_eq!(
                        payload,
                        0u32.to_le_bytes(),
                        "a transaction far past its sender's nonce was admitted"
                    );
                    looked_at += 1;
                }
                Some(Event::RequestFailed { reason, .. }) => {
                    if failed == 0 {
                        eprintln!("first failed request: {reason:?}");
                    }
                    failed += 1
                }
                _ => {}
            }
        }
        (busy, looked_at, failed)
    });

    // The API path at the same time: 12,000 valid transfers from 400
    // senders, nonce by nonce, in one request. The node admits a
    // request's transactions in one step, so 12,000 cannot fit a
    // 3,000-transaction pool however fast blocks drain it. (Sent as six
    // requests of 2,000, the pool's fill depended on that speed: on a
    // loaded machine each request waited behind the framed flood's
    // verification jobs, blocks drained the pool between requests, and
    // once nothing was refused.)
    let txs: Vec<Transaction> = (0..30u64)
        .flat_map(|nonce| (0..400).map(move |s| (s, nonce)))
        .map(|(s, nonce)| transfer(&net.genesis, s, s + 1, nonce))
        .collect();
    let (mut accepted, mut refusals) = (0, Vec::new());
    let body = Payload::Txs(txs).encode();
    let (code, v) = net.post(0, "/v1/txs", "application/octet-stream", &body);
    assert_eq!(code, 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        match r["error"].as_str() {
            None => accepted += 1,
            Some(e) => refusals.push(e.to_string()),
        }
    }
    assert!(
        !refusals.is_empty(),
        "12,000 transactions into a 3,000-transaction mempool were all accepted"
    );
    // Every refusal names its reason: the pool is full, or (after an
    // earlier nonce of the sender was refused) the nonce is out of reach.
    for e in &refusals {
        assert!(
            e.contains("mempool full") || e.contains("nonce") || e.contains("pending"),
            "unclear refusal: {e}"
        );
    }
    assert!(
        refusals.iter().any(|e| e.contains("mempool full")),
        "no refusal said the mempool was full: {:?}",
        &refusals[..refusals.len().min(5)]
    );

    let (busy, looked_at, failed) = flood.join().unwrap();
    assert_eq!(failed, 0, "requests failed instead of being answered");
    assert_eq!(
        busy + looked_at,
        600,
        "not every flooded batch was answered"
    );
    assert!(
        busy > 0,
        "the verification queue never filled: no busy answer"
    );

    // Blocks kept coming: the admitted transactions are finalized.
    let finalized = || net.metric(0, "strata_txs_finalized_total") as usize;
    let want = 2000.min(accepted);
    let deadline = Instant::now() + Duration::from_secs(60);
    while finalized() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = finalized() >= want;
    assert!(
        ok,
        "finalized {} of {accepted} accepted (wanted at least {want})",
        finalized()
    );
    assert!(
        net.height(0).unwrap() > height_before + 3,
        "few blocks during the overload"
    );

    let pid = net.children[0].as_ref().unwrap().id();
    let rss = peak_rss_bytes(pid);
    assert!(rss < 2 << 30, "peak resident memory {rss} bytes");
    eprintln!(
        "overload: API accepted {accepted}, refused {}; framed batches busy {busy}, \
         looked at {looked_at}; finalized {}; peak RSS {} MiB",
        refusals.len(),
        finalized(),
        rss >> 20
    );
}

/// A peer that gossips forged transactions is banned by the node it
/// reached, and the forgeries go no further: nodes pass on only what they
/// verified (`relay_received` off), so the second node never sees one.
///
/// Regression (issue 17, finding 15): this failed once under load with
/// node 1 having received 2 transactions. The rogue was a full
/// `strata_net` node: its 20 broadcasts could straddle two gossip flushes;
/// node 0 banned it after the first push, and the rogue's network loop,
/// having learned node 1's address from node 0, dialed node 1 and pushed
/// it the rest. The rogue is now a scripted peer that sends its forgeries
/// in one push to node 0 and dials nothing else.
#[test]
fn a_peer_gossiping_forged_transactions_is_banned_and_they_go_no_further() {
    use common::rogue::Rogue;
    use strata_net::message::{write_item, Items, Message};

    let net = Devnet::start(2);
    net.wait_ready(Duration::from_secs(30));
    let addr = format!("127.0.0.1:{}", net.p2p[0]).parse().unwrap();
    let mut rogue =
        Rogue::connect(addr, [0x66; 32], net.genesis.net_chain_id()).expect("rogue connects");
    let mut buf = Vec::new();
    for i in 0..20 {
        let tx = forged(&net, i, 0);
        write_item(&mut buf, tx.id(), tx.encoded());
    }
    rogue
        .send(&Message::Push(Items::from_encoded(20, &buf)), 0)
        .unwrap();
    assert!(
        rogue.closed_within(Duration::from_secs(20)),
        "node 0 did not drop the rogue peer"
    );
    assert!(
        net.metric(0, "strata_txs_invalid_from_peers_total") >= 1.0,
        "node 0 did not count the forgery"
    );
    assert!(
        net.metric(0, "strata_net_bans_total") >= 1.0,
        "node 0 did not ban the rogue peer"
    );
    // Well past many gossip flushes: node 1 saw nothing to check.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(net.metric(1, "strata_txs_received_total"), 0.0);
    assert_eq!(net.metric(1, "strata_signatures_checked_total"), 0.0);
    // The honest network still works: a valid transfer finalizes on both.
    let ids = submit(&net, 0, &[transfer(&net.genesis, 3, 4, 0)]);
    for node in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, v) = net.get(node, &format!("/v1/txs/{}", ids[0]));
            if code == 200 && v["status"] == "finalized" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not finalized on node {node}: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The memory bound with the *default* limits: 1,100,000 transactions
/// (1,100 funded senders, 1,000 nonces each, fee 1) against a node that
/// proposes only every 20 s fill the default mempool (1,000,000) and the
/// rest are refused as "mempool full"; transactions paying more still get
/// in and are finalized first; the node's peak resident memory stays under
/// 2 GiB. A few minutes on 2 cores (signing dominates):
/// `cargo test --release --test overload -- --ignored`.
#[test]
#[ignore = "soak: fills the default 1,000,000-transaction mempool (minutes)"]
fn default_limits_hold_a_full_mempool_under_2_gib() {
    use strata_consensus::genesis::devnet_account_key;
    use strata_consensus::tx::{TxBody, TxKind};
    use strata_consensus::wire::TX_BATCH_MAX;

    const SLOW_BLOCKS: &str = "[consensus]\npropose_delay_ms = 20000\nblock_txs_max = 1000\n";
    let net = Devnet::start_with_config(1, Some(SLOW_BLOCKS));
    net.wait_ready(Duration::from_secs(30));
    let (senders, per_sender) = (1_100usize, 1_000u64);
    let chain_id = net.genesis.chain_id;
    let sign = |from: usize, nonce: u64, fee: u64| {
        let key = devnet_account_key(from);
        TxBody {
            chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce,
            fee,
            kind: TxKind::Transfer {
                to: [7; 32],
                amount: 1,
            },
        }
        .sign(&key)
        .unwrap()
    };
    let stuck: Vec<Transaction> = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2usize)
            .map(|half| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for nonce in 0..per_sender {
                        for s in (half * senders / 2)..((half + 1) * senders / 2) {
                            out.push(sign(100 + s, nonce, 1));
                        }
                    }
                    out
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let (mut accepted, mut full) = (0usize, 0usize);
    for chunk in stuck.chunks(TX_BATCH_MAX) {
        let body = Payload::Txs(chunk.to_vec()).encode();
        let v = loop {
            let (code, v) = net.post(0, "/v1/txs", "application/octet-stream", &body);
            if code == 429 || code == 503 {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            assert_eq!(code, 200, "{v}");
            break v;
        };
        accepted += v["accepted"].as_u64().unwrap() as usize;
        full += v["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("mempool full"))
            })
            .count();
    }
    assert!(accepted >= 1_000_000, "the default mempool holds 1,000,000");
    assert!(full > 0, "nothing was refused as \"mempool full\"");
    assert!(net.metric(0, "strata_mempool_txs") <= 1_000_000.0);

    // Paying more still gets in (replacing the cheapest) and is finalized
    // in the next block, which takes the best-paid first.
    let paying: Vec<Transaction> = (0..100).map(|from| sign(100 + from, 0, 2)).collect();
    let ids = submit(&net, 0, &paying);
    assert_eq!(ids.len(), 100, "better-paid transactions were refused");
    let deadline = Instant::now() + Duration::from_secs(90);
    let finalized = |id: &String| {
        let (_, v) = net.get(0, &format!("/v1/txs/{id}"));
        v["status"] == "finalized"
    };
    while !ids.iter().all(finalized) {
        assert!(
            Instant::now() < deadline,
            "paying transactions not finalized"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let rss = peak_rss_bytes(net.children[0].as_ref().unwrap().id());
    eprintln!("full default mempool: peak RSS {} MiB", rss >> 20);
    assert!(rss < 2 << 30, "peak resident memory {rss} bytes");
}
