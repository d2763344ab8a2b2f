#!/usr/bin/env bash
# POST-to-decision latency on the embedded store: 300 POSTs one after another with
# `Prefer: wait=5`, each answered 200 with its stored record, against 300 plain POSTs (202)
# to the same server in the same run. Three runs. A debug build, as the test command makes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
for run in 1 2 3; do
  cargo test --quiet -p api --test prefer_wait -- --ignored --nocapture \
    measure_post_to_decision_latency 2>/dev/null | grep '^RESULT'
done
