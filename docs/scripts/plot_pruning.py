#!/usr/bin/env python3
"""Draws docs/pruning.png: disk used by a pruning node over time, one line
per soak series (docs/scripts/soak.sh output), with the live data
measured by `strata inspect --compact` as a horizontal line.

    python3 docs/scripts/plot_pruning.py LIVE_MB label=series.tsv ...

Needs matplotlib.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    live_mb = float(sys.argv[1])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        rows = [r for r in csv.DictReader(open(path), delimiter="\t") if r["t_s"].isdigit()]
        t = [int(r["t_s"]) / 60 for r in rows]
        ax[0].plot(t, [int(r["disk_mb"]) for r in rows], "o-", ms=3, label=label)
        ax[1].plot(t, [int(r["p99"]) for r in rows], "o", ms=3, label=label)
    ax[0].axhline(live_mb, color="grey", ls="--", label=f"live data, compacted ({live_mb:.0f} MB)")
    ax[0].set_xlabel("minutes")
    ax[0].set_ylabel("data directory, MB")
    ax[0].set_ylim(bottom=0)
    ax[0].legend(fontsize=8)
    ax[0].grid(True, alpha=0.3)
    ax[1].set_xlabel("minutes")
    ax[1].set_ylabel("finality p99 per 30 s chunk, ms")
    ax[1].set_ylim(bottom=0)
    ax[1].legend(fontsize=8)
    ax[1].grid(True, alpha=0.3)
    fig.suptitle("Pruning node, 1 M accounts, 4,000 tx/s, last 2,000 blocks kept")
    fig.tight_layout()
    fig.savefig("docs/pruning.png", dpi=100)


if __name__ == "__main__":
    main()
