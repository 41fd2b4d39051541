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
