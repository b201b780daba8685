#!/usr/bin/env bash
# Runs every busbar test: unit, property, doc and cross-process tests, then
# the bindings': Python (scripts/test-python.sh: makes target/python-venv,
# pip-installs ./bindings/python with pytest, numpy and mypy, runs pytest on
# bindings/python/tests and mypy --strict on its example), C and C++
# (scripts/test-c.sh) and Node.js (scripts/test-node.sh: npm ci, node --test).
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
