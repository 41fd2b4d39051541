#!/usr/bin/env python3
"""Regenerates docs/consensus.png and prints the tables of docs/consensus.md.

Runs `strata sim` for every point, so plot and tables are reproducible:

    cargo build --release && python3 docs/scripts/plot_consensus.py

Sweeps (every run's exact command is printed beside its row):
  * beta x network size, k=5 alpha=4, no faults besides drops/duplicates;
  * k (alpha = 0.8 k) x network size 10/20/50, beta=8, no faults;
  * Byzantine weight 0/10/20 % x Byzantine kind x sampling weight
    (uniform, stake, proof_of_work), 10 validators, with the fault schedule.

Needs matplotlib (pip install matplotlib). Takes about ten minutes on one
core.
"""
import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The binary; STRATA=/path/to/strata overrides (e.g. a CARGO_TARGET_DIR build).
STRATA = os.environ.get("STRATA", "./target/release/strata")

SUMMARY = re.compile(
    r"(\d+) seeds, (\d+) passed, (\d+) failed;.*mean virtual time per height (\d+) ms\n"
    r"sampling \w+, Byzantine weight ([\d.]+)-([\d.]+) %; in force k (\d+) alpha (\d+); "
    r"mean polls per finality ([\d.]+) opened, ([\d.]+) closed, ([\d.]+) successful"
)


def sim(*args):
    """Runs `strata sim` and returns its summary as a dict."""
    cmd = [STRATA, "sim", *args]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    m = SUMMARY.search(out)
    if not m:
        sys.exit(f"unexpected sim output for {args}: {out[-400:]}")
    fails = re.findall(r"^FAIL seed (\d+): (\w+)", out, re.M)
    agreement = sum(1 for _, kind in fails if kind in ("agreement", "validity"))
    if agreement:
        # A safety violation is a bug to fix, never a data point.
        sys.exit(f"SAFETY VIOLATION for {args}:\n{out[-2000:]}")
    g = m.groups()
    return {
        "cmd": "strata sim " + " ".join(args),
        "seeds": int(g[0]),
        "failed": int(g[2]),
        "liveness_failed": sum(1 for _, kind in fails if kind == "liveness"),
        "ms": int(g[3]),
        "share": (float(g[4]), float(g[5])),
        "k": int(g[6]),
        "alpha": int(g[7]),
        "opened": float(g[8]),
        "closed": float(g[9]),
        "successful": float(g[10]),
    }


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |")


def beta_sweep():
    print("\n### beta x validators (k=5, alpha=4, no faults)\n")
    row("validators", "beta", "ms per height", "polls per finality (opened / closed / successful)", "command")
    print("|---|---|---|---|---|")
    res = {}
    for n in [5, 10, 20]:
        for b in [4, 8, 16]:
            r = sim("--seeds", "20", "--nodes", str(n), "--beta", str(b), "--no-faults", "--heights", "4")
            res[(n, b)] = r
            row(n, b, r["ms"], f"{r['opened']:.1f} / {r['closed']:.1f} / {r['successful']:.1f}", f"`{r['cmd']}`")
    return res


def k_sweep():
    print("\n### k x validators (alpha = 0.8 k, beta=8, no faults)\n")
    row("validators", "k / alpha asked", "k / alpha in force", "ms per height", "polls per finality (opened / closed / successful)", "command")
    print("|---|---|---|---|---|---|")
    res = {}
    for n in [10, 20, 50]:
        for k, a in [(5, 4), (10, 8), (20, 16)]:
            r = sim("--seeds", "10", "--nodes", str(n), "--k", str(k), "--alpha", str(a), "--beta", "8", "--no-faults", "--heights", "3")
            res[(n, k)] = r
            row(n, f"{k} / {a}", f"{r['k']} / {r['alpha']}", r["ms"], f"{r['opened']:.1f} / {r['closed']:.1f} / {r['successful']:.1f}", f"`{r['cmd']}`")
    return res


KINDS = ["silent", "random", "equivocate", "equivocating-proposer"]
SAMPLINGS = ["uniform", "stake", "proof_of_work"]


def byzantine_sweep():
    print("\n### Byzantine weight x kind x sampling (10 validators, k=5, alpha=4, beta=8, faults)\n")
    row("sampling", "Byzantine weight", "kind", "seeds", "missed liveness bound", "ms per height (live seeds)", "polls per finality (opened / closed / successful)", "command")
    print("|---|---|---|---|---|---|---|---|")
    res = {}
    for s in SAMPLINGS:
        for pct, count in [(0, 0), (10, 1), (20, 2)]:
            for kind in KINDS if pct else ["random"]:
                args = ["--seeds", "20", "--nodes", "10", "--byzantine", str(count), "--byzantine-kind", kind, "--sampling", s, "--heights", "4"]
                if pct and s != "uniform":
                    args += ["--byzantine-weight-percent", str(pct)]
                r = sim(*args)
                res[(s, pct, kind)] = r
                lo, hi = r["share"]
                share = f"{lo:.0f} %" if lo == hi else f"{lo:.1f}-{hi:.1f} %"
                row(s, share, kind if pct else "—", r["seeds"], r["liveness_failed"], r["ms"],
                    f"{r['opened']:.1f} / {r['closed']:.1f} / {r['successful']:.1f}", f"`{r['cmd']}`")
    return res


def main():
    betas = beta_sweep()
    ks = k_sweep()
    byz = byzantine_sweep()

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.6))
    (a, b, c), (d, e, f) = axes
    for n in [5, 10, 20]:
        xs = [4, 8, 16]
        a.plot(xs, [betas[(n, x)]["ms"] for x in xs], marker="o", label=f"{n} validators")
        b.plot(xs, [betas[(n, x)]["closed"] for x in xs], marker="o", label=f"{n}: closed")
        b.plot(xs, [betas[(n, x)]["successful"] for x in xs], marker="x", linestyle="--", label=f"{n}: successful")
    a.set(xlabel="beta", ylabel="virtual ms per finalized height", title="Time to finality vs beta (k=5 alpha=4, no faults)")
    b.set(xlabel="beta", ylabel="polls per finality (per node, per height)", title="Polls to finality vs beta")
    for n in [10, 20, 50]:
        xs = [5, 10, 20]
        c.plot(xs, [ks[(n, x)]["ms"] for x in xs], marker="o", label=f"{n} validators")
        d.plot(xs, [ks[(n, x)]["closed"] for x in xs], marker="o", label=f"{n}: closed")
        d.plot(xs, [ks[(n, x)]["successful"] for x in xs], marker="x", linestyle="--", label=f"{n}: successful")
    c.set(xlabel="k asked (alpha = 0.8 k; capped at validators - 1)", ylabel="virtual ms per finalized height", title="Time to finality vs k (beta=8, no faults)")
    d.set(xlabel="k asked", ylabel="polls per finality", title="Polls to finality vs k")
    pcts = [0, 10, 20]
    for s, marker in zip(SAMPLINGS, ["o", "s", "^"]):
        for kind, style in [("silent", "-"), ("equivocating-proposer", ":")]:
            ys = [byz[(s, p, kind if p else "random")]["ms"] for p in pcts]
            e.plot(pcts, ys, marker=marker, linestyle=style, label=f"{s}, {kind}")
        fails = [sum(byz[(s, p, k)]["liveness_failed"] for k in (KINDS if p else ["random"])) for p in pcts]
        seeds = [sum(byz[(s, p, k)]["seeds"] for k in (KINDS if p else ["random"])) for p in pcts]
        f.plot(pcts, [100.0 * x / y for x, y in zip(fails, seeds)], marker=marker, label=s)
    e.set(xlabel="Byzantine weight (%)", ylabel="virtual ms per height (live seeds)", yscale="log", title="With faults, 10 validators")
    f.set(xlabel="Byzantine weight (%)", ylabel="% of seeds missing the 120 s liveness bound", title="Liveness misses; 0 agreement violations in every run")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig("docs/consensus.png", dpi=100)
    print("\nwrote docs/consensus.png")


if __name__ == "__main__":
    main()
