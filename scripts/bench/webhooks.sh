#!/usr/bin/env bash
# Webhook deliveries per second: 500 alerting transactions (5 batches of 100) through the API
# on the embedded store, each alert delivered signed to a local receiver; the baseline is the
# same receiver taking 500 POSTs from a plain client, eight at a time, in the same run. A debug
# build, as the test command makes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
for run in 1 2 3; do
  cargo test --quiet -p api --test webhooks -- --ignored --nocapture \
    measure_the_delivery_rate 2>/dev/null | grep '^RESULT'
done
