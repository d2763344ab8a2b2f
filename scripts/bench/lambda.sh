#!/usr/bin/env bash
# The processor Lambda's cold-start init time and CPU time per 1000 messages, measured on the
# binary Lambda runs (cargo lambda's bootstrap), against the AWS emulator (moto), under the
# Lambda Runtime API stub of the test kit. Init time: process start to its first request for an
# event. CPU time: the process's user + system time (from /proc) over 100 invocations of 10
# messages (1 in 10 raises an alert), each stored in DynamoDB and, for alerts, published on SNS.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c "import moto.server, flask" 2>/dev/null || python3 -m pip install --quiet 'moto[server]'
command -v cargo-lambda >/dev/null || python3 -m pip install --quiet cargo-lambda
cargo lambda build --release --bin processor
for run in 1 2 3; do
  PROCESSOR_BINARY="$PWD/target/lambda/processor/bootstrap" \
    cargo test --quiet -p processor --test binary -- --ignored --nocapture \
    measure_cold_start_and_cpu_per_1000_messages 2>/dev/null | grep '^RESULT'
done
