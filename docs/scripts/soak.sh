#!/bin/bash
# A single-node soak at a steady load: one node on a synthetic genesis of
# ACCOUNTS accounts, driven by `strata bench` at RATE tx/s in 30 s chunks
# (uniform senders and recipients) for DURATION seconds. After every chunk
# it appends one row to OUT: finalized tx/s, finality p50/p95/p99, disk
# used by the data dir, the node's anonymous and file-backed resident
# memory, write stalls, L0 tables, compactions, height and CPU seconds.
# docs/scripts/plot_soak.py draws it.
#
#   cargo build --release && docs/scripts/soak.sh
#
# Environment: STRATA (binary, default ./target/release/strata), ACCOUNTS
# (default 1000000), RATE (default 8000), DURATION (default 3600), DIR
# (default a fresh temp dir, removed at the end), OUT (default
# soak-series.tsv), NODE_CONFIG (a node TOML, e.g. one with
# `[history] archive = false` for a pruning soak; default none). Ports 39300/38380 (node), 39400/38480 (genesis setup).
set -euo pipefail
S=${STRATA:-./target/release/strata}
ACCOUNTS=${ACCOUNTS:-1000000}; RATE=${RATE:-8000}; DURATION=${DURATION:-3600}
OUT=${OUT:-soak-series.tsv}
D=${DIR:-$(mktemp -d -t strata-soak-XXXXXX)}
P2P=39300; API=38380
"$S" devnet --nodes 1 --accounts "$ACCOUNTS" --txs 1000 --keep --dir "$D" \
    --base-port 39400 --api-base-port 38480 >/dev/null 2>&1
"$S" node --data-dir "$D/node-0" --listen 127.0.0.1:$P2P --api 127.0.0.1:$API \
    --genesis "$D/genesis.toml" --key "$D/node-0.key" ${NODE_CONFIG:+--config "$NODE_CONFIG"} \
    >/dev/null 2>"$D/soak-node.log" &
NODE=$!
trap 'kill $NODE 2>/dev/null; wait $NODE 2>/dev/null; [ -n "${DIR:-}" ] || rm -rf "$D"' EXIT
until curl -sf http://127.0.0.1:$API/metrics >/dev/null; do sleep 0.2; done
m() { curl -sf http://127.0.0.1:$API/metrics | awk -v n="$1" '$1==n {print $2}'; }
echo -e "t_s\tfinalized\ttps\tp50\tp95\tp99\tdisk_mb\trss_anon_mb\trss_file_mb\tstalls\tl0\tcompactions\theight\tcpu_s\thistory_floor" > "$OUT"
start=$(date +%s); seed=1
while [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
  out=$("$S" bench --target 127.0.0.1:$P2P --api 127.0.0.1:$API --genesis "$D/genesis.toml" \
      --senders 4096 --rate "$RATE" --txs $((RATE * 30)) --seed $seed 2>&1 || true)
  seed=$((seed + 1))
  fin=$(echo "$out" | grep -oP 'finalized \K\d+ \(\d+' | tr -d '(' || echo "0 0")
  lat=$(echo "$out" | grep -oP 'p50 \d+ ms.*' | head -1 || true)
  p50=$(echo "$lat" | grep -oP 'p50 \K\d+' || echo 0)
  p95=$(echo "$lat" | grep -oP 'p95 \K\d+' || echo 0)
  p99=$(echo "$lat" | grep -oP 'p99 \K\d+' || echo 0)
  disk=$(du -sm "$D/node-0" | cut -f1)
  anon=$(( $(awk '/RssAnon/{print $2}' /proc/$NODE/status) / 1024 ))
  file=$(( $(awk '/RssFile/{print $2}' /proc/$NODE/status) / 1024 ))
  cpu=$(awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' /proc/$NODE/stat)
  echo -e "$(( $(date +%s) - start ))\t${fin% *}\t${fin#* }\t$p50\t$p95\t$p99\t$disk\t$anon\t$file\t$(m strata_storage_write_stalls_total)\t$(m strata_storage_l0_tables)\t$(m strata_storage_compactions_total)\t$(m strata_height)\t$cpu\t$(m strata_history_floor)" >> "$OUT"
done
