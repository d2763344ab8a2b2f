#!/usr/bin/env bash
# The whole pipeline in one process (`api` with its in-process processor, as `cargo run
# --release` runs it), held at a fixed rate by `pipeline load`. Samples the queue depth every
# 5 s: the rate is sustained when the backlog does not grow. At the end, compares accepted
# with stored.
# Usage: scripts/bench/sustained.sh RATE [BATCH_SIZE] [DURATION_SECONDS]   (defaults 100, 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/common.sh
rate="${1:?usage: sustained.sh RATE [BATCH_SIZE] [DURATION_SECONDS]}"
batch="${2:-100}"
duration="${3:-60}"

scripts/bench/build.sh

RUST_LOG=warn target/release/api --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --data-dir "$work/data" >"$work/api.out" 2>"$work/api.err" & pids+=($!)
url=$(wait_for_port "$work/api.out")

metrics=$(metrics_url "$work/api.out")
depth() { curl -s "$metrics" | sed -n 's/^queue_depth \([0-9.e+]*\).*/\1/p' | head -1; }
stored() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from transactions").fetchone()[0])' "$work/data/store.db"; }

echo "== $rate transactions/s in batches of $batch for $duration s against $url"
target/release/pipeline --url "$url" load --rate "$rate" --batch-size "$batch" --duration "$duration" \
  --max-in-flight 64 --alert-share 0.01 >"$work/load.out" 2>/dev/null & load=$!
started=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  sleep 5
  echo "t=$(( $(date +%s) - started ))s queue_depth=$(depth) stored=$(stored)"
done
wait "$load" || true
cat "$work/load.out"
for _ in $(seq 1 600); do [ "$(depth)" = "0" ] && break; sleep 0.1; done
echo "== after the run: queue_depth=$(depth) stored=$(stored)"
