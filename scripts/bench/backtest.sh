#!/usr/bin/env bash
# The replay rate of a backtest on the embedded store: a shop's 1,000,000 stored transactions
# replayed through the default rule and through the README's example rules, against reading
# the same transactions alone (the baseline), in the same run. A release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p infra --example backtest_bench -- "${1:-1000000}"
