#!/usr/bin/env python3
"""Regenerates docs/consensus.png: virtual time to finality per height from
`strata sim`, versus beta and network size (no faults), and versus Byzantine
weight (with faults). Runs the simulator itself, so the plot is reproducible:

    cargo build --release && python3 docs/scripts/plot_consensus.py

Needs matplotlib (pip install matplotlib).
"""
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STRATA = "./target/release/strata"


def mean_ms(*args):
    out = subprocess.run([STRATA, "sim", *args], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) failed;.*mean virtual time per height (\d+) ms", out)
    if not m:
        sys.exit(f"unexpected sim output for {args}: {out[-300:]}")
    if m.group(1) != "0":
        sys.exit(f"failing seeds for {args}: {out[-500:]}")
    return int(m.group(2))


def main():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    betas = [4, 8, 16]
    for n in [5, 10, 20]:
        ys = [mean_ms("--seeds", "20", "--nodes", str(n), "--beta", str(b), "--no-faults", "--heights", "4") for b in betas]
        left.plot(betas, ys, marker="o", label=f"{n} validators")
    left.set_xlabel("beta (consecutive successful polls)")
    left.set_ylabel("virtual ms per finalized height")
    left.set_title("Time to finality, k=5 alpha=4, no faults")
    left.legend()
    left.grid(alpha=0.3)

    fractions = [0, 10, 20]
    for kind in ["silent", "random", "equivocate", "equivocating-proposer"]:
        ys = [mean_ms("--seeds", "40", "--nodes", "10", "--byzantine", str(f // 10), "--byzantine-kind", kind, "--heights", "4") for f in fractions]
        right.plot(fractions, ys, marker="o", label=kind)
    right.set_xlabel("Byzantine validators (% of 10)")
    right.set_ylabel("virtual ms per finalized height")
    right.set_yscale("log")
    right.set_title("With faults; 0 disagreements in every run")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig("docs/consensus.png", dpi=110)
    print("wrote docs/consensus.png")


if __name__ == "__main__":
    main()
