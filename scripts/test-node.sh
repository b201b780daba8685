#!/usr/bin/env bash
# The Node.js binding's tests (bindings/node): builds the Rust programs the
# tests talk to (`busbar`, `busbar-peer`), installs the package (npm ci
# builds the native module with cargo, in release mode; typescript and
# @types/node are its only npm dependencies), then runs `npm test`
# (node --test: cross-process tests and the TypeScript check).
# Needs Node.js 18 or later and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p busbar-cli -p busbar-tests --bin busbar --bin busbar-peer
cd bindings/node
npm ci --no-audit --no-fund
npm test
