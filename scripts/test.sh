#!/usr/bin/env bash
# Runs every busbar test: unit, property, doc and cross-process tests, the
# Python binding's (scripts/test-python.sh) and the C and C++ bindings'
# (scripts/test-c.sh), and the Node.js binding's (scripts/test-node.sh).
# Needs a Rust toolchain, gcc/g++, Python 3.11+ (venv, pip) and Node.js 18+
# (npm); cargo, pip and npm fetch the crates and packages, and
# scripts/test-c.sh installs pkg-config and cmake from Debian's packages
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --exclude busbar-bench --locked
bash scripts/test-python.sh
bash scripts/test-c.sh
bash scripts/test-node.sh
