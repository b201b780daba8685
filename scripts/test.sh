#!/usr/bin/env bash
# Runs every busbar test: unit, property, doc and cross-process tests, the
# Python binding's (scripts/test-python.sh) and the C and C++ bindings'
# (scripts/test-c.sh).
# Needs a Rust toolchain, gcc/g++ and Python 3.11+ (venv, pip); cargo and pip
# fetch the crates and packages, and scripts/test-c.sh installs pkg-config
# and cmake from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --exclude busbar-bench --locked
bash scripts/test-python.sh
bash scripts/test-c.sh
