#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then checks
# formatting and lints and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "tools"
# A CI run builds once from clean: incremental state would only take disk and time.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
df -h . | sed 's/^/disk: /'
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

# The AWS tests run against moto's server (started by the tests on a free loopback port);
# one test sends with boto3 as the original system did. The template is checked by cfn-lint,
# and rendered through the SAM transform (aws-sam-translator, which cfn-lint brings) by the
# permission test. PyYAML reads the template for the emulator's resources.
if ! python3 -c "import moto.server, flask, boto3, cfnlint, samtranslator, yaml" 2>/dev/null; then
  python3 -m pip install --quiet 'moto[server]' boto3 cfn-lint pyyaml
fi

# The console's browser test drives Debian's Chromium with playwright-core (pinned, with its
# checksum, in api/console/package-lock.json); Playwright's own browser downloads are not used.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x /usr/bin/chromium ]; then
  step "installing Chromium (Debian's package)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q chromium || { as_root apt-get update -q && as_root apt-get install -y -q chromium; }
fi
if [ ! -d api/console/node_modules/playwright-core ] || [ ! -d api/console/node_modules/uplot ]; then
  step "installing playwright-core and uplot for the console's tests"
  npm ci --prefix api/console --no-audit --no-fund
fi

# The SAM CLI pins its own botocore; it lives in a virtualenv of its own so that it cannot
# change the versions moto and boto3 run with.
sam_venv=target/tools/sam
if [ ! -x "$sam_venv/bin/sam" ]; then
  step "installing the SAM CLI into $sam_venv"
  python3 -m venv "$sam_venv"
  "$sam_venv/bin/python" -m pip install --quiet aws-sam-cli==1.170.0
fi

step "cfn-lint template.yaml"
python3 -c "import sys; from cfnlint.runner import main; sys.exit(main())" template.yaml

step "sam validate --lint"
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 "$sam_venv/bin/sam" validate --lint --template template.yaml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# The contract fuzzing run against the real binary that `cargo test` just built (schemathesis,
# in its own virtualenv): at least 1,000 generated requests, every check, no failure.
step "contract fuzzing (schemathesis)"
bash scripts/fuzz.sh target/debug/api
