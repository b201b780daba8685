#!/usr/bin/env bash
# Runs every busbar test: unit, property, doc and cross-process tests, and
# the Python binding's (scripts/test-python.sh).
# Needs a Rust toolchain and Python 3.11+ (venv, pip); cargo and pip fetch
# the crates and packages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --exclude busbar-bench --locked
bash scripts/test-python.sh
