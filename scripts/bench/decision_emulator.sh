#!/usr/bin/env bash
# POST to decision on the emulator: the API on moto (SQS, DynamoDB) with a processor polling the
# queue, 100 POSTs with `Prefer: wait=10` against 100 plain POSTs to the same server in the same
# run, three runs. A debug build, as the test command makes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
for run in 1 2 3; do
  cargo test --quiet -p api --test aws_e2e -- --ignored --nocapture \
    measure_post_to_decision_on_the_emulator 2>/dev/null | grep '^RESULT'
done
