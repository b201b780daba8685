#!/usr/bin/env bash
# Runs every busbar test: unit, property, doc and cross-process tests.
# Needs only a Rust toolchain; cargo fetches the crates.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --exclude busbar-bench --locked
