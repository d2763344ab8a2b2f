#!/usr/bin/env bash
# POST throughput: the real API (validate + durable enqueue, processor running in-process)
# against a bare axum handler that answers 202 without enqueuing, in the same wrk setup:
# 64 keep-alive connections, 2 threads, load generator on the same machine.
# Usage: scripts/bench/throughput.sh [DURATION_SECONDS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/common.sh
duration="${1:-15}"

need_wrk
scripts/bench/build.sh

run_wrk() {
  wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/post.lua "$1" | tee -a "$work/wrk.log" | grep '^RESULT'
}

echo "== bare axum handler (202, no enqueue)"
target/release/examples/bare_accept 127.0.0.1:0 >"$work/bare.out" & pids+=($!)
bare=$(wait_for_port "$work/bare.out")
bare_result=$(run_wrk "$bare"); echo "$bare_result"
kill "${pids[-1]}"

echo "== api only: validate + durable enqueue (EMBEDDED_PROCESSOR=false)"
RUST_LOG=warn EMBEDDED_PROCESSOR=false target/release/api --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --data-dir "$work/api-only" >"$work/api-only.out" 2>&1 & pids+=($!)
api_only=$(wait_for_port "$work/api-only.out")
api_only_result=$(run_wrk "$api_only"); echo "$api_only_result"
kill "${pids[-1]}"

echo "== api: validate + durable enqueue, processor in-process"
RUST_LOG=warn target/release/api --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --data-dir "$work/data" >"$work/api.out" 2>"$work/api.err" & pids+=($!)
api=$(wait_for_port "$work/api.out")
api_result=$(run_wrk "$api"); echo "$api_result"

rps() { sed -n 's/.*requests_per_sec=\([0-9]*\).*/\1/p' <<<"$1"; }
# /health says only ready or not; the depth is a gauge the processor refreshes every few seconds.
depth=$(curl -s "$(metrics_url "$work/api.out")" | sed -n 's/^queue_depth \([0-9.]*\).*/\1/p' | cut -d. -f1)
processed=$(( $(rps "$api_result") * duration - depth ))
echo "== api only / bare = $(( 100 * $(rps "$api_only_result") / $(rps "$bare_result") ))%"
echo "== api with processor / bare = $(( 100 * $(rps "$api_result") / $(rps "$bare_result") ))%"
echo "== processed during that run: about $(( processed / duration ))/s (queue depth at the end: $depth)"
