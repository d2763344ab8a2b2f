#!/usr/bin/env bash
# Batch throughput, API alone: POST /transactions/batch with BATCH_SIZE transactions (default
# 100) per request, 64 keep-alive connections, against the same run's bare axum handler. Then
# checks that every accepted transaction is in the durable queue (accepted means durable).
# Usage: scripts/bench/batch.sh [DURATION_SECONDS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/common.sh
duration="${1:-15}"
export BATCH_SIZE="${BATCH_SIZE:-100}"

need_wrk
scripts/bench/build.sh

run_wrk() {
  wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/batch.lua "$1" | tee -a "$work/wrk.log" | grep '^RESULT'
}
field() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$2"; }

echo "== bare axum handler, batches of $BATCH_SIZE (202, no parsing, no enqueue)"
target/release/examples/bare_accept 127.0.0.1:0 >"$work/bare.out" & pids+=($!)
bare=$(run_wrk "$(wait_for_port "$work/bare.out")"); echo "$bare"
kill "${pids[-1]}"

echo "== api only, batches of $BATCH_SIZE: validate each + durable enqueue (EMBEDDED_PROCESSOR=false)"
RUST_LOG=warn EMBEDDED_PROCESSOR=false target/release/api --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --data-dir "$work/data" >"$work/api.out" 2>&1 & pids+=($!)
api=$(run_wrk "$(wait_for_port "$work/api.out")"); echo "$api"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

queued=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages").fetchone()[0])' "$work/data/queue.db")
accepted_requests=$(grep -o '[0-9]* requests in' "$work/wrk.log" | tail -1 | cut -d' ' -f1)
echo "== api / bare = $(( 100 * $(field transactions_per_sec "$api") / $(field transactions_per_sec "$bare") ))% (transactions/s)"
echo "== durable check: $queued messages in the queue for $(( accepted_requests * BATCH_SIZE )) transactions sent in $accepted_requests requests (non-2xx: $(field non_2xx "$api"))"
