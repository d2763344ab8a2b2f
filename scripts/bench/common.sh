# Sourced by the benchmark scripts: a scratch directory, the processes to stop on exit, and
# the address a started server prints.

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

need_wrk() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
}

metrics_url() { # the api's second stdout line is "metrics on http://ADDR/metrics"
  sed -n 's/^metrics on //p' "$1" | head -1
}

wait_for_port() { # the first stdout line is "listening on http://ADDR"
  local out=$1
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$out" 2>/dev/null && { sed -n 's/^listening on //p' "$out" | head -1; return; }
    sleep 0.1
  done
  echo "server did not start" >&2; exit 1
}
