#!/usr/bin/env python3
"""Regenerates docs/scale.png and prints the state-at-scale table of
docs/benchmarks.md: a single node's finalized tx/s and its cost per
finalized transaction against the number of accounts in the state.

For each size it writes a synthetic genesis (`strata devnet --nodes 1
--accounts N` with a token load, kept), starts `strata node` on it, runs a
warm-up `strata bench` and then REPEAT measured ones (uniform senders and
recipients over all accounts), and reads the node's CPU time
(/proc/PID/stat), bytes written (/proc/PID/io) and block-cache misses
(/metrics) around each measured run. Medians are reported.

    cargo build --release && python3 docs/scripts/plot_scale.py

Environment: STRATA (binary, default ./target/release/strata), SIZES
(comma separated, default 4096,1000000,10000000), TXS (per measured run,
default 60000), REPEAT (default 3). Needs matplotlib. The 10 M size needs
~3 GiB of RAM while its genesis is written and ~1.6 GB of disk.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STRATA = os.environ.get("STRATA", "./target/release/strata")
SIZES = [int(s) for s in os.environ.get("SIZES", "4096,1000000,10000000").split(",")]
TXS = int(os.environ.get("TXS", "60000"))
REPEAT = int(os.environ.get("REPEAT", "3"))
P2P, API = 39100, 38180
TICK = os.sysconf("SC_CLK_TCK")

FINALIZED = re.compile(r"finalized (\d+) \((\d+) tx/s\)")
P50 = re.compile(r"p50 (\d+) ms")


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def io_write(pid):
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{API}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def bench(genesis, seed):
    out = subprocess.run(
        [STRATA, "bench", "--target", f"127.0.0.1:{P2P}", "--api", f"127.0.0.1:{API}",
         "--txs", str(TXS), "--genesis", genesis, "--seed", str(seed)],
        capture_output=True, text=True, check=True,
    ).stdout
    fin = FINALIZED.search(out)
    return int(fin.group(1)), int(fin.group(2)), int(P50.search(out).group(1))


def measure(accounts):
    d = tempfile.mkdtemp(prefix=f"strata-scale-{accounts}-")
    try:
        started = time.time()
        subprocess.run(
            [STRATA, "devnet", "--nodes", "1", "--accounts", str(accounts), "--txs", "1000",
             "--keep", "--dir", d, "--base-port", str(P2P + 100), "--api-base-port", str(API + 100)],
            capture_output=True, check=True,
        )
        setup_s = time.time() - started
        genesis = os.path.join(d, "genesis.toml")
        node = subprocess.Popen(
            [STRATA, "node", "--data-dir", os.path.join(d, "node-0"), "--listen", f"127.0.0.1:{P2P}",
             "--api", f"127.0.0.1:{API}", "--genesis", genesis, "--key", os.path.join(d, "node-0.key")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "scale-node.log"), "w"),
        )
        for _ in range(600):
            try:
                metric("strata_height")
                break
            except OSError:
                time.sleep(0.1)
        bench(genesis, 100)  # warm-up
        runs = []
        for r in range(REPEAT):
            cpu0, w0 = cpu_s(node.pid), io_write(node.pid)
            miss0 = metric("strata_storage_block_cache_misses_total")
            fin, tps, p50 = bench(genesis, 200 + r)
            runs.append({
                "tps": tps,
                "p50": p50,
                "cpu_us": (cpu_s(node.pid) - cpu0) * 1e6 / fin,
                "write_kb": (io_write(node.pid) - w0) / 1024 / fin,
                "misses": (metric("strata_storage_block_cache_misses_total") - miss0) / fin,
            })
        node.terminate()
        node.wait(timeout=30)
        row = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        row["accounts"] = accounts
        row["setup_s"] = setup_s
        return row
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    rows = []
    for n in SIZES:
        row = measure(n)
        rows.append(row)
        print(f"{n} accounts: {row}", file=sys.stderr)
    base = rows[0]["tps"]
    print("| accounts | finalized tx/s | vs smallest | p50 ms | node CPU µs/tx | KiB written/tx | block reads/tx |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['accounts']:,} | {r['tps']:,.0f} | {r['tps'] / base:.2f}× | {r['p50']:.0f} | "
              f"{r['cpu_us']:.0f} | {r['write_kb']:.1f} | {r['misses']:.1f} |")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["accounts"] for r in rows]
    a.plot(xs, [r["tps"] for r in rows], "o-")
    a.set_xscale("log")
    a.set_xlabel("accounts in the state")
    a.set_ylabel("finalized tx/s (1 node)")
    a.set_ylim(bottom=0)
    a.grid(True, alpha=0.3)
    b.plot(xs, [r["cpu_us"] for r in rows], "o-", label="node CPU µs / tx")
    b.plot(xs, [r["write_kb"] for r in rows], "s-", label="KiB written / tx")
    b.plot(xs, [r["misses"] for r in rows], "^-", label="block reads / tx")
    b.set_xscale("log")
    b.set_xlabel("accounts in the state")
    b.set_ylim(bottom=0)
    b.legend()
    b.grid(True, alpha=0.3)
    fig.suptitle("Strata single node, uniform transfers over all accounts")
    fig.tight_layout()
    fig.savefig("docs/scale.png", dpi=100)


if __name__ == "__main__":
    main()
