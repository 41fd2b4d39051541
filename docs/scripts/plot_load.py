#!/usr/bin/env python3
"""Regenerates docs/devnet-load.png and prints the load table of
docs/benchmarks.md: a devnet's finalized tx/s and finality latency
(p50/p95/p99) against the offered load.

Each point is one `strata devnet` run with `--rate R` (R from RATES) and
enough transactions for ~DURATION seconds of load; the last point runs
unthrottled (the devnet's maximum). The exact command of every point is
printed beside its row.

    cargo build --release && python3 docs/scripts/plot_load.py

Environment: STRATA (binary, default ./target/release/strata), NODES
(default 4), RATES (comma separated tx/s, default 2000,4000,8000,12000,16000),
DURATION (seconds of load per point, default 8). Needs matplotlib.
"""
import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STRATA = os.environ.get("STRATA", "./target/release/strata")
NODES = int(os.environ.get("NODES", "4"))
RATES = [int(r) for r in os.environ.get("RATES", "2000,4000,8000,12000,16000").split(",")]
DURATION = int(os.environ.get("DURATION", "8"))

FINALIZED = re.compile(r"finalized (\d+) \((\d+) tx/s\)")
LATENCY = re.compile(r"p50 (\d+) ms p95 (\d+) ms p99 (\d+) ms")


def run(rate):
    txs = rate * DURATION if rate else 40_000
    cmd = [STRATA, "devnet", "--nodes", str(NODES), "--txs", str(txs), "--senders", "2048"]
    if rate:
        cmd += ["--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    fin, lat = FINALIZED.search(out), LATENCY.search(out)
    return {
        "offered": rate,
        "tps": int(fin.group(2)),
        "p50": int(lat.group(1)),
        "p95": int(lat.group(2)),
        "p99": int(lat.group(3)),
        "cmd": " ".join(["strata"] + cmd[1:]),
    }


def main():
    rows = [run(r) for r in RATES] + [run(None)]
    print("| offered tx/s | finalized tx/s | p50 ms | p95 ms | p99 ms | command |")
    print("|---:|---:|---:|---:|---:|---|")
    for r in rows:
        offered = f"{r['offered']:,}" if r["offered"] else "unthrottled"
        print(f"| {offered} | {r['tps']:,} | {r['p50']} | {r['p95']} | {r['p99']} | `{r['cmd']}` |")
        print(r, file=sys.stderr)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["tps"] for r in rows]
    a.plot([r["offered"] or r["tps"] for r in rows], xs, "o-")
    a.set_xlabel("offered tx/s (last point: unthrottled)")
    a.set_ylabel("finalized tx/s")
    a.grid(True, alpha=0.3)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        b.plot(xs, [r[key] for r in rows], style, label=key)
    b.set_xlabel("finalized tx/s")
    b.set_ylabel("finality latency, ms")
    b.set_yscale("log")
    b.legend()
    b.grid(True, alpha=0.3)
    fig.suptitle(f"Strata devnet, {NODES} nodes on one 2-core machine")
    fig.tight_layout()
    fig.savefig("docs/devnet-load.png", dpi=100)


if __name__ == "__main__":
    main()
