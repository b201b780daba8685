#!/usr/bin/env bash
# The Python binding's tests (called by scripts/test.sh): a virtualenv
# under target/ (ignored by git), the package built from the workspace by
# `pip install ./bindings/python` (maturin, release), pytest against Rust
# peers (busbar-peer and the `busbar` command, built here), and
# `mypy --strict` on the typed example. Needs Python 3.11+ with venv/pip.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-venv
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
cargo build --locked -p busbar-tests --bin busbar-peer -p busbar-cli --bin busbar
"$venv/bin/pip" install --quiet --disable-pip-version-check pytest numpy mypy
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
export BUSBAR_BIN_DIR="$PWD/target/debug"
(cd bindings/python && ../../"$venv"/bin/python -m pytest -q tests)
"$venv/bin/mypy" --strict bindings/python/examples
