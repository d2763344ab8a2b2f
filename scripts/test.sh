#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then checks
# formatting and lints and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "tools"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

# The AWS tests run against moto's server (started by the tests on a free loopback port);
# one test sends with boto3 as the original system did. The template is checked by cfn-lint.
if ! python3 -c "import moto.server, flask, boto3, cfnlint" 2>/dev/null; then
  python3 -m pip install --quiet 'moto[server]' boto3 cfn-lint
fi

step "cfn-lint template.yaml"
python3 -c "import sys; from cfnlint.runner import main; sys.exit(main())" template.yaml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked
