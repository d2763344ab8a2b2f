#!/usr/bin/env bash
# A batch of 1,000 transactions sent by the SQS adapter (100 SendMessageBatch calls, eight at a
# time) to the test kit's SQS stand-in answering each call after 20, 100 and 200 ms (a near, a
# far and a slow SQS), against one call of 10 in the same run. The API answers a batch within
# ENQUEUE_TIMEOUT (5 s) whatever this takes; this shows how much of a batch fits in it. A debug
# build: the time is the round trips, not the CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --quiet -p infra --test aws_contract -- --ignored --nocapture \
  measure_a_batch_of_1000_against_a_queue_with_latency 2>/dev/null | grep '^RESULT'
