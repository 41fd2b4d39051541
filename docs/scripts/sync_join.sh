#!/usr/bin/env bash
# Joins a running 3-validator devnet of ACCOUNTS accounts twice — by state
# sync and by replay — and prints, for each, the time until the joiner is
# at the validators' height, and its peak RSS; for state sync also the
# fetch time and the MiB ingested (from its log).
#
#   ACCOUNTS=1000000 TXS=40000 docs/scripts/sync_join.sh
#
# NEW_ACCOUNTS=N instead grows the state by use: the genesis funds only
# the 4,096 built-in accounts, and N transfers (in runs of CHUNK) each pay
# a new account, so replay has N transactions to execute, as on a chain
# whose accounts came from transfers:
#
#   NEW_ACCOUNTS=10000000 DIR=/tmp/strata-sync-join-grown docs/scripts/sync_join.sh
#
# Needs a release build (cargo build --release). Loopback only.
set -euo pipefail
NEW_ACCOUNTS=${NEW_ACCOUNTS:-}
CHUNK=${CHUNK:-1000000}
if [ -n "$NEW_ACCOUNTS" ]; then ACCOUNTS=4096; else ACCOUNTS=${ACCOUNTS:-1000000}; fi
TXS=${TXS:-40000}
DIR=${DIR:-/tmp/strata-sync-join}
BIN=${BIN:-$(pwd)/target/release/strata}
P2P=${P2P:-27000}
API=${API:-28000}

if [ -z "${REUSE:-}" ]; then  # REUSE=1: the validators of an earlier run in DIR
  rm -rf "$DIR"; mkdir -p "$DIR"
  printf '[sync]\nsnapshot_every = 5\n' > "$DIR/validator.toml"
  echo "devnet: 3 validators, $ACCOUNTS accounts, $TXS transfers of history"
  "$BIN" devnet --nodes 3 --accounts "$ACCOUNTS" --txs "$TXS" --dir "$DIR" --keep \
    --base-port "$P2P" --api-base-port "$API" --node-config "$DIR/validator.toml" > "$DIR/devnet.txt"
fi
rm -rf "$DIR"/join-*
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
height() { curl -s "http://127.0.0.1:$1/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["height"])' 2>/dev/null || echo 0; }
validators() { # config
  for i in 0 1 2; do
    "$BIN" node --data-dir "$DIR/node-$i" --listen "127.0.0.1:$((P2P + i))" --api "127.0.0.1:$((API + i))" \
      --genesis "$DIR/genesis.toml" --key "$DIR/node-$i.key" --config "$1" \
      >> "$DIR/v$i.log" 2>&1 &
    pids+=($!)
  done
  until [ "$(height "$API")" -gt 0 ]; do sleep 0.5; done
}
if [ -n "$NEW_ACCOUNTS" ] && [ -z "${REUSE:-}" ]; then
  # Grow the state by transfers, without served snapshots (each would
  # count the whole state while the load runs).
  printf '[sync]\nsnapshot_every = 0\n' > "$DIR/grow.toml"
  validators "$DIR/grow.toml"
  start=$(date +%s)
  for ((k = 0; k * CHUNK < NEW_ACCOUNTS; k++)); do
    "$BIN" bench --target "127.0.0.1:$P2P" --api "127.0.0.1:$API" --txs "$CHUNK" --new-recipients \
      --genesis "$DIR/genesis.toml" --seed $((1000 + k)) --timeout 1200 > "$DIR/grow-$k.txt"
    echo "grown by $(((k + 1) * CHUNK)) accounts in $(($(date +%s) - start)) s: $(tail -1 "$DIR/grow-$k.txt")"
  done
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  pids=()
fi
validators "$DIR/validator.toml"
# A little load after the restart, until the validators commit past a
# snapshot height (snapshots are taken at commits, every 5 heights).
h0=$(height "$API")
seed=1
until [ "$(height "$API")" -ge $(( (h0 / 5 + 1) * 5 )) ]; do
  "$BIN" bench --target "127.0.0.1:$P2P" --api "127.0.0.1:$API" --txs 4000 --accounts "$ACCOUNTS" \
    --genesis "$DIR/genesis.toml" --seed $seed > "$DIR/bench.txt"
  seed=$((seed + 1))
done
sleep 2  # the snapshot is published once its entries are counted
target=$(height "$API")
echo "validators at height $target"

join() { # mode port-offset
  local mode=$1 off=$2
  printf '[sync]\nmode = "%s"\nheads_wait_ms = 120000\n' "$mode" > "$DIR/join-$mode.toml"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/join-$mode.key"
  local start=$(date +%s.%N)
  "$BIN" node --data-dir "$DIR/join-$mode" --listen "127.0.0.1:$((P2P + off))" --api "127.0.0.1:$((API + off))" \
    --genesis "$DIR/genesis.toml" --key "$DIR/join-$mode.key" --config "$DIR/join-$mode.toml" \
    > "$DIR/join-$mode.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  until [ "$(height $((API + off)))" -ge "$target" ]; do
    kill -0 "$pid" || { echo "joiner ($mode) exited:"; tail -20 "$DIR/join-$mode.log"; exit 1; }
    sleep 0.2
  done
  local end=$(date +%s.%N)
  local rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  printf '%-6s at height %s in %.1f s, peak RSS %d MiB\n' "$mode" "$target" "$(echo "$end - $start" | bc)" $((rss / 1024))
  grep -o 'state sync: done.*' "$DIR/join-$mode.log" || true
  kill "$pid"
}
join state 10
join replay 11
