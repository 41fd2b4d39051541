//! Contracts on a devnet of real processes: `strata tx deploy` and `strata
//! tx call` through the CLI, every node agreeing on the receipts and the
//! contract's state, and a module every node would refuse turned away by
//! the API with the reason.

mod common;

use std::time::{Duration, Instant};

use common::Devnet;
use strata_consensus::contract::contract_id;
use strata_consensus::genesis::devnet_account_key;

/// Waits until `id` is final on node `i`; its answer.
fn final_on(net: &Devnet, i: usize, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = net.get(i, &format!("/v1/txs/{id}"));
        if code == 200 && v["status"] == "finalized" {
            return v;
        }
        assert!(Instant::now() < deadline, "{id} not final on node {i}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id the CLI printed ("finalized ID at height H" or "submitted ID").
fn tx_id(out: &str) -> String {
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_contract_is_deployed_called_and_agreed_on_by_every_node() {
    let net = Devnet::start(4);
    net.wait_ready(Duration::from_secs(30));
    let api = format!("{}:{}", net.host(0), net.api[0]);
    let key = devnet_account_key(7);
    let key_file = net.path().join("account7.key");
    std::fs::write(&key_file, hex::encode(key.to_bytes())).unwrap();
    let key_file = key_file.to_str().unwrap();
    let counter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/contracts/counter.wat"
    );

    let (ok, out) = common::strata(&[
        "tx", "--api", &api, "--key", key_file, "--wait", "deploy", counter,
    ]);
    let contract = hex::encode(contract_id(&key.verifying_key().to_bytes(), 0));
    assert!(ok && out.contains("\"status\":\"success\""), "{out}");
    assert!(
        out.contains(&contract),
        "the result names the contract: {out}"
    );

    let mut calls = Vec::new();
    for _ in 0..3 {
        let (ok, out) = common::strata(&[
            "tx", "--api", &api, "--key", key_file, "--wait", "call", &contract, "bump",
        ]);
        assert!(ok && out.contains("\"status\":\"success\""), "{out}");
        calls.push(tx_id(&out));
    }
    // The third bump returned 3, on every node; every node holds 3 under
    // the contract's key "n", proven against its state root.
    let three = hex::encode(3u64.to_le_bytes());
    for i in 0..4 {
        let v = final_on(&net, i, &calls[2]);
        assert_eq!(v["result"]["return"], three.as_str(), "node {i}: {v}");
        assert_eq!(
            v["result"]["events"][0]["data"],
            three.as_str(),
            "node {i}: {v}"
        );
        assert_eq!(
            v["result"]["events"][0]["contract"],
            contract.as_str(),
            "node {i}: {v}"
        );
        let (code, s) = net.get(i, &format!("/v1/state/{contract}/{}", hex::encode("n")));
        assert_eq!(code, 200, "{s}");
        assert_eq!(s["value"], three.as_str(), "node {i}: {s}");
    }
    let (ok, out) = common::strata(&["query", "key", &contract, "n", "--api", &api]);
    assert!(ok && out.contains("proof verified"), "{out}");

    // A call that traps is final, charged and recorded as failed.
    let (ok, out) = common::strata(&[
        "tx", "--api", &api, "--key", key_file, "--wait", "call", &contract, "nope",
    ]);
    assert!(ok && out.contains("\"status\":\"no_such_entry\""), "{out}");

    // A module without memory: every node would refuse it, so the API
    // does, saying why.
    let bad = net.path().join("bad.wat");
    std::fs::write(&bad, r#"(module (func (export "f")))"#).unwrap();
    let (ok, out) = common::strata(&[
        "tx",
        "--api",
        &api,
        "--key",
        key_file,
        "deploy",
        bad.to_str().unwrap(),
    ]);
    assert!(
        !ok && out.contains("module refused") && out.contains("memory"),
        "{out}"
    );

    // The bench's token load: the token deployed and 64 senders funded
    // through the API, then 2,000 transfers through it, all final (the
    // bench checks a sample of receipts succeeded).
    let targets: Vec<String> = (0..4).map(|i| net.p2p_addr(i).to_string()).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--target", &targets.join(","), "--api", &api])
        .arg("--genesis")
        .arg(net.path().join("genesis.toml"))
        .args([
            "--txs",
            "2000",
            "--senders",
            "64",
            "--token",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("token transfers through a contract") && text.contains("finalized 2000"),
        "{text}"
    );
}
