//! The HTTP API and the `strata tx` / `strata query` commands against a
//! real single-validator node process: every endpoint, bad input on each
//! (a 4xx with a JSON error, the node keeps serving), proofs verified.

mod common;

use std::time::{Duration, Instant};

use common::{submit, transfer, Devnet};
use strata_consensus::genesis::{devnet_account_key, devnet_account_public_keys};
use strata_consensus::state::user_key;
use strata_consensus::tx::{TxBody, TxKind};
use strata_consensus::wire::Payload;
use strata_storage::merkle;

fn wait_finalized(net: &Devnet, id: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = net.get(0, &format!("/v1/txs/{id}"));
        assert_eq!(code, 200);
        if v["status"] == "finalized" {
            return v["height"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "{id} not finalized: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_bad(code: u16, v: &serde_json::Value, status: u16) {
    assert_eq!(code, status, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

#[test]
fn every_endpoint_with_good_and_bad_input() {
    let net = Devnet::start(1);
    net.wait_ready(Duration::from_secs(60));
    let g = &net.genesis;

    // Status.
    let (code, s) = net.get(0, "/v1/status");
    assert_eq!(code, 200);
    assert_eq!(s["chain_id"].as_u64(), Some(g.chain_id));
    assert_eq!(s["height"].as_u64(), Some(0));

    // POST /v1/txs in the three body formats.
    let ids = submit(&net, 0, &[transfer(g, 0, 1, 0)]);
    assert_eq!(ids.len(), 1);
    let hex_body = hex::encode(transfer(g, 0, 1, 1).encoded());
    let (code, v) = net.post(0, "/v1/txs", "text/plain", hex_body.as_bytes());
    assert_eq!((code, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    let bin = Payload::Txs(vec![transfer(g, 0, 1, 2)]).encode();
    let (code, v) = net.post(0, "/v1/txs", "application/octet-stream", &bin);
    assert_eq!((code, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    let last = v["results"][0]["id"].as_str().unwrap().to_string();

    // Bad bodies.
    let (c, v) = net.post(0, "/v1/txs", "application/json", b"{not json");
    assert_bad(c, &v, 400);
    let (c, v) = net.post(0, "/v1/txs", "application/json", br#"{"txs":["zz"]}"#);
    assert_bad(c, &v, 400);
    let truncated = &hex_body[..hex_body.len() - 2];
    let (c, v) = net.post(0, "/v1/txs", "text/plain", truncated.as_bytes());
    assert_bad(c, &v, 400);
    let (c, v) = net.post(
        0,
        "/v1/txs",
        "application/octet-stream",
        &bin[..bin.len() - 1],
    );
    assert_bad(c, &v, 400);
    let (c, v) = net.post(0, "/v1/txs", "text/plain", &[0xff, 0xfe]);
    assert_bad(c, &v, 400);
    // Well-formed but refused: another chain, a stale nonce, a duplicate.
    let key = devnet_account_key(5);
    let other_chain = TxBody {
        chain_id: g.chain_id + 1,
        sender: key.verifying_key().to_bytes(),
        nonce: 0,
        fee: 1,
        kind: TxKind::Delete { key: b"x".to_vec() },
    }
    .sign(&key)
    .unwrap();
    let body = serde_json::json!({ "txs": [hex::encode(other_chain.encoded()), hex_body] });
    let (c, v) = net.post(
        0,
        "/v1/txs",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!((c, v["accepted"].as_u64()), (200, Some(0)), "{v}");
    assert!(v["results"][0]["error"].as_str().is_some(), "{v}");
    assert!(v["results"][1]["error"].as_str().is_some(), "{v}");

    // Transfers from an empty account are refused for balance before any
    // signature check (a forged one too), each at its position in a batch
    // with a fundable one (refused later, by the mempool, as a duplicate).
    let empty = strata_consensus::tx::signing_key_from_seed(&[0x77; 32]);
    let unfunded = TxBody {
        chain_id: g.chain_id,
        sender: empty.verifying_key().to_bytes(),
        nonce: 0,
        fee: 1,
        kind: TxKind::Delete { key: b"x".to_vec() },
    }
    .sign(&empty)
    .unwrap();
    let mut forged = unfunded.encoded().to_vec();
    *forged.last_mut().unwrap() ^= 1;
    let body = serde_json::json!({ "txs": [
        hex::encode(unfunded.encoded()),
        hex_body,
        hex::encode(&forged),
    ] });
    let (c, v) = net.post(
        0,
        "/v1/txs",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!((c, v["accepted"].as_u64()), (200, Some(0)), "{v}");
    for i in [0, 2] {
        let e = v["results"][i]["error"].as_str().unwrap_or_default();
        assert!(e.starts_with("insufficient balance: 0"), "{i}: {v}");
    }
    let e = v["results"][1]["error"].as_str().unwrap_or_default();
    assert!(!e.is_empty() && !e.starts_with("insufficient"), "{v}");
    assert!(net.metric(0, "strata_txs_unfunded_total") >= 2.0);

    // Transaction status: pending or finalized, unknown, bad id.
    let h = wait_finalized(&net, &last);
    assert!(h >= 1);
    wait_finalized(&net, &ids[0]);
    let (c, v) = net.get(0, &format!("/v1/txs/{}", "ab".repeat(32)));
    assert_eq!((c, v["status"].as_str()), (200, Some("unknown")));
    let (c, v) = net.get(0, "/v1/txs/1234");
    assert_bad(c, &v, 400);

    // Accounts.
    let pk0 = hex::encode(devnet_account_public_keys()[0]);
    let (c, v) = net.get(0, &format!("/v1/accounts/{pk0}"));
    assert_eq!((c, v["nonce"].as_u64()), (200, Some(3)), "{v}");
    let (c, v) = net.get(0, "/v1/accounts/nothex");
    assert_bad(c, &v, 400);

    // Blocks by height and id; missing; garbage.
    let (c, b) = net.get(0, &format!("/v1/blocks/{h}"));
    assert_eq!(c, 200);
    let (c, b2) = net.get(0, &format!("/v1/blocks/{}", b["id"].as_str().unwrap()));
    assert_eq!((c, &b2), (200, &b));
    let (c, v) = net.get(0, "/v1/blocks/999999");
    assert_bad(c, &v, 404);
    let (c, v) = net.get(0, &format!("/v1/blocks/{}", "cd".repeat(32)));
    assert_bad(c, &v, 404);
    let (c, v) = net.get(0, "/v1/blocks/-1");
    assert_bad(c, &v, 400);
    // The same block's ids as raw bytes, 32 per id, in block order.
    let raw = net.get_bytes(0, &format!("/v1/blocks/{h}/ids"));
    let hexes: Vec<String> = raw.chunks(32).map(hex::encode).collect();
    let json_ids: Vec<String> = b["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert!(!json_ids.is_empty() && raw.len() == 32 * json_ids.len());
    assert_eq!(hexes, json_ids);
    let (c, v) = net.get(0, "/v1/blocks/999999/ids");
    assert_bad(c, &v, 404);
    let (c, v) = net.get(0, "/v1/blocks/zz/ids");
    assert_bad(c, &v, 400);

    // `strata tx` puts a user key; the state endpoint proves it, and
    // proves the absence of another; `strata query key` verifies locally.
    let key_file = net.path().join("user.key");
    std::fs::write(&key_file, hex::encode(devnet_account_key(7).to_bytes())).unwrap();
    let api = format!("127.0.0.1:{}", net.api[0]);
    let (ok, out) = common::strata(&[
        "tx",
        "--api",
        &api,
        "--key",
        key_file.to_str().unwrap(),
        "--put",
        "color",
        "--value",
        "blue",
    ]);
    assert!(ok, "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    wait_finalized(&net, &id);
    let owner = devnet_account_public_keys()[7];
    let (c, v) = net.get(
        0,
        &format!("/v1/state/{}/{}", hex::encode(owner), hex::encode("color")),
    );
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["value"].as_str(), Some(hex::encode("blue").as_str()));
    let root: [u8; 32] = hex::decode(v["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let proof = merkle::Proof::decode(&hex::decode(v["proof"].as_str().unwrap()).unwrap()).unwrap();
    let vh = merkle::value_hash(b"blue");
    assert!(merkle::verify_path(
        &root,
        &user_key(&owner, b"color"),
        Some(&vh),
        &proof
    ));
    let (c, v) = net.get(
        0,
        &format!("/v1/state/{}/{}", hex::encode(owner), hex::encode("nope")),
    );
    assert_eq!((c, &v["value"]), (200, &serde_json::Value::Null));
    let proof = merkle::Proof::decode(&hex::decode(v["proof"].as_str().unwrap()).unwrap()).unwrap();
    assert!(merkle::verify_path(
        &root,
        &user_key(&owner, b"nope"),
        None,
        &proof
    ));
    let (c, v) = net.get(
        0,
        &format!(
            "/v1/state/{}/{}",
            hex::encode(owner),
            "ab".repeat(strata_consensus::tx::CONTRACT_KEY_BYTES_MAX + 1)
        ),
    );
    assert_bad(c, &v, 400);
    let (c, v) = net.get(0, "/v1/state/xyz");
    assert_bad(c, &v, 400);
    let (ok, out) = common::strata(&["query", "--api", &api, "key", &hex::encode(owner), "color"]);
    assert!(ok && out.contains("proof verified locally"), "{out}");
    let (ok, out) = common::strata(&["query", "--api", &api, "key", &hex::encode(owner)]);
    assert!(ok && out.contains("proof verified locally"), "{out}");
    let (ok, out) = common::strata(&["query", "--api", &api, "tx", &id]);
    assert!(ok && out.contains("finalized"), "{out}");

    // Metrics.
    let text = net.metrics_text(0);
    assert!(text.contains("# TYPE strata_height gauge"), "{text}");
    assert!(text.contains("strata_build_info{version=\""), "{text}");
    // Every series the Grafana dashboard in docs/ draws exists.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .unwrap();
    for name in dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("strata_"))
    {
        assert!(
            text.contains(&format!("\n{name} ")),
            "the dashboard draws {name}, which /metrics does not have"
        );
    }
    assert!(text.contains("strata_txs_finalized_total 4"), "{text}");
    assert!(
        text.contains("# TYPE strata_storage_write_amplification gauge"),
        "{text}"
    );
    for series in ["level_bytes", "level_entries", "level_deletions"] {
        assert!(
            text.contains(&format!("strata_storage_{series}{{level=\"6\"}} ")),
            "{text}"
        );
    }

    // Still serving after all the garbage.
    assert_eq!(net.get(0, "/v1/status").0, 200);
}

/// A node with `[history] archive = false` keeps its last
/// `blocks_retained` blocks: a block below the window answers 410 "pruned
/// below height H", a transaction finalized there says from which height
/// the node keeps them, blocks inside the window are served, and the
/// floor survives a kill -9 and restart.
#[test]
fn a_pruning_node_answers_pruned_below_height_and_keeps_its_window() {
    const RETAINED: u64 = 64;
    let config = format!("[history]\narchive = false\nblocks_retained = {RETAINED}\n");
    let mut net = Devnet::start_with_config(1, Some(&config));
    net.wait_ready(Duration::from_secs(60));
    let g = net.genesis.clone();
    // One transfer per block, until well past the window.
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    for nonce in 0.. {
        let height = net.height(0).unwrap();
        if height > 2 * RETAINED {
            break;
        }
        assert!(Instant::now() < deadline, "only {height} blocks");
        let ids = submit(&net, 0, &[transfer(&g, 0, 1, nonce)]);
        assert_eq!(ids.len(), 1);
        first.get_or_insert_with(|| ids[0].clone());
        wait_finalized(&net, &ids[0]);
    }
    let first = first.unwrap();
    let height = net.height(0).unwrap();
    // The pruning thread looks every 200 ms.
    let want = height + 1 - RETAINED;
    let deadline = Instant::now() + Duration::from_secs(30);
    while net.metric(0, "strata_history_floor") < want as f64 {
        assert!(Instant::now() < deadline, "floor stuck below {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let floor = net.metric(0, "strata_history_floor") as u64;
    let (code, v) = net.get(0, "/v1/blocks/1");
    assert_eq!(code, 410, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("pruned below height"), "{e}");
    assert_eq!(net.get(0, &format!("/v1/blocks/{height}")).0, 200);
    assert_eq!(net.get(0, &format!("/v1/blocks/{floor}")).0, 200);
    let (code, v) = net.get(0, &format!("/v1/txs/{first}"));
    assert_eq!(code, 200);
    assert_eq!(v["status"], "unknown", "{v}");
    assert!(v["history_from"].as_u64().unwrap() > 1, "{v}");

    net.kill9(0);
    net.spawn(0);
    net.wait_ready(Duration::from_secs(60));
    assert!(net.metric(0, "strata_history_floor") as u64 >= floor);
    assert_eq!(net.get(0, "/v1/blocks/1").0, 410);
    assert_eq!(net.get(0, &format!("/v1/blocks/{height}")).0, 200);
}
