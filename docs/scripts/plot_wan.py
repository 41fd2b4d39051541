#!/usr/bin/env python3
"""Draws docs/wan.png: finality p50 and finalized tx/s against round-trip
time, from the markdown tables that `finality_table` in tests/wan.rs
prints, one series per (table, validators, loss).

    cargo test --release --test wan -- --ignored --nocapture finality_table > default.txt
    WAN_CONFIG=docs/config/wan.toml cargo test ... finality_table > wan.txt
    python3 docs/scripts/plot_wan.py default=default.txt wan.toml=wan.txt

Needs matplotlib.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        nodes, rtt, loss, lat, tps = cells
        p50 = float(lat.split(" ms")[0])
        yield int(nodes), int(rtt.split()[0]), float(loss.split()[0]), p50, float(tps)


def main():
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        series = {}
        for nodes, rtt, loss, p50, tps in rows(path):
            series.setdefault((nodes, loss), []).append((rtt, p50, tps))
        for (nodes, loss), pts in sorted(series.items()):
            pts.sort()
            name = f"{label}, {nodes} validators, {loss:g} % loss"
            style = "o-" if loss == 0 else "s--"
            ax[0].plot([p[0] for p in pts], [p[1] / 1000 for p in pts], style, ms=4, label=name)
            ax[1].plot([p[0] for p in pts], [p[2] for p in pts], style, ms=4, label=name)
    rtts = [50, 100, 200]
    ax[0].plot(rtts, [4 * r / 1000 for r in rtts], ":", color="grey", label="4 RTT")
    ax[0].set_xlabel("round-trip time, ms")
    ax[0].set_ylabel("finality p50, s (log)")
    ax[0].set_yscale("log")
    ax[1].set_xlabel("round-trip time, ms")
    ax[1].set_ylabel("finalized tx/s (2,000 offered)")
    ax[0].legend(fontsize=6)
    ax[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig("docs/wan.png", dpi=110)


if __name__ == "__main__":
    main()
