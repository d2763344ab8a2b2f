#!/usr/bin/env bash
# One build for every benchmark script: the same packages each time, so that cargo's feature
# unification gives the same artefacts and a second script does not rebuild them.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p api -p client -p processor --bins --example bare_accept
