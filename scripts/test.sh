#!/usr/bin/env bash
# The whole test suite: installs what tests need, then format, lint and every test.
# Runs as root (tests mount overlayfs, create namespaces and cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/start-dockerd.sh
export CARGO_TERM_COLOR=never
# One-shot builds: incremental caches only cost disk and time here.
export CARGO_INCREMENTAL=0
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/gabang-test.log
