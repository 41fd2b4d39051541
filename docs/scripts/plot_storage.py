#!/usr/bin/env python3
"""Draws docs/storage-vs-rivals.png: the storage engine's speed against
RocksDB and fjall per workload, as ratios (rival time ÷ Strata's; above
1 Strata is faster).

It reads the ratios from the headline table of docs/benchmarks.md (the
rows `storage/...`, ratio column "RocksDB×, fjall×"), so the plot always
shows what the table says; rerun the benchmark to change them:

    cargo bench -p strata-benches --features compare --bench storage
    # update the table's storage rows, then
    python3 docs/scripts/plot_storage.py

Needs matplotlib.
"""
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROW = re.compile(r"^\| `storage/(\w+)`[^|]*\|[^|]*\|[^|]*\| ([\d.]+)×, ([\d.]+)× \|")


def main():
    rows = []
    for line in open("docs/benchmarks.md"):
        m = ROW.match(line)
        if m:
            rows.append((m.group(1), float(m.group(2)), float(m.group(3))))
    assert rows, "no storage rows found in the headline table"
    names = [r[0] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [r[1] for r in rows], w, label="vs RocksDB")
    ax.bar([x + w / 2 for x in xs], [r[2] for r in rows], w, label="vs fjall")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel("rival time ÷ Strata time (> 1: Strata faster)")
    ax.set_title("strata-storage against RocksDB and fjall, 1 M keys, no compression")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig("docs/storage-vs-rivals.png", dpi=100)
    for r in rows:
        print(f"{r[0]}: {r[1]}x RocksDB, {r[2]}x fjall")


if __name__ == "__main__":
    main()
