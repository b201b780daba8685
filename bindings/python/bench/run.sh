#!/usr/bin/env bash
# The Python benchmark: a virtualenv of its own under target/ with numpy,
# pyzmq, iceoryx2 (the peers, from PyPI) and this package built from the
# workspace, then bench.py; prints a markdown table. Not part of the tests.
# Arguments go to bench.py (--only busbar,pyzmq; --scale 0.1 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv=target/python-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy pyzmq iceoryx2
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
exec "$venv/bin/python" bindings/python/bench/bench.py "$@"
