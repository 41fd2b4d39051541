#!/usr/bin/env python3
"""Draws docs/soak.png from the series docs/scripts/soak.sh writes:
finality latency, disk used against finalized height, resident memory and
L0 tables over the soak.

    python3 docs/scripts/plot_soak.py soak-series.tsv

Rows marked in NOISY (comma-separated t_s values, environment) are drawn
hollow: chunks during which other work ran on the machine. Needs
matplotlib.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["t_s"].isdigit()]
    noisy = {int(t) for t in os.environ.get("NOISY", "").split(",") if t}
    t = [int(r["t_s"]) / 60 for r in rows]
    quiet = [int(r["t_s"]) not in noisy for r in rows]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    a = ax[0][0]
    for key, style in (("p50", "o"), ("p99", "^")):
        ys = [int(r[key]) for r in rows]
        a.plot([x for x, q in zip(t, quiet) if q], [y for y, q in zip(ys, quiet) if q], style, label=key)
        a.plot([x for x, q in zip(t, quiet) if not q], [y for y, q in zip(ys, quiet) if not q],
               style, mfc="none", color="grey")
    a.set_yscale("log")
    a.set_xlabel("minutes")
    a.set_ylabel("finality latency, ms (hollow: other work ran)")
    a.legend()
    a.grid(True, alpha=0.3)
    b = ax[0][1]
    b.plot([int(r["height"]) for r in rows], [int(r["disk_mb"]) for r in rows], "o-")
    b.set_xlabel("finalized height")
    b.set_ylabel("data dir, MB")
    b.grid(True, alpha=0.3)
    c = ax[1][0]
    c.plot(t, [int(r["rss_anon_mb"]) for r in rows], "o-", label="anonymous")
    c.plot(t, [int(r["rss_file_mb"]) for r in rows], "s-", label="file-backed (mapped tables)")
    c.set_xlabel("minutes")
    c.set_ylabel("node resident memory, MB")
    c.legend()
    c.grid(True, alpha=0.3)
    d = ax[1][1]
    d.plot(t, [float(r["l0"]) for r in rows], "o-", label="L0 tables")
    d.plot(t, [float(r["stalls"]) for r in rows], "s-", label="write stalls (total)")
    d.set_xlabel("minutes")
    d.legend()
    d.grid(True, alpha=0.3)
    fig.suptitle("Strata single node, 1 M accounts, steady load")
    fig.tight_layout()
    fig.savefig("docs/soak.png", dpi=100)


if __name__ == "__main__":
    main()
