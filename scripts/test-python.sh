#!/usr/bin/env bash
# The Python binding's tests (called by scripts/test.sh): a virtualenv
# under target/ (ignored by git), the package built from the workspace by
# `pip install ./bindings/python` (maturin, release), pytest against Rust
# peers (busbar-peer and the `busbar` command, built here), and
# `mypy --strict` on the typed example; the C binding's echo example for
# the Python <-> C test. Needs Python 3.11+ with venv/pip, and gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-venv
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
cargo build --locked -p busbar-tests --bin busbar-peer -p busbar-cli --bin busbar
# Apart: with --bin selected, cargo would build no library of busbar-ffi.
cargo build --locked -p busbar-ffi
# The C binding's echo example, for the Python <-> C test (built against
# the library installed into a prefix, as test-c.sh does, without pkg-config).
cprefix=target/python-c-prefix
scripts/install-c.sh --from target/debug "$cprefix" >/dev/null
gcc -std=c11 -Wall -Wextra -Werror -I"$cprefix/include" bindings/c/examples/echo.c \
    -L"$cprefix/lib" -lbusbar -Wl,-rpath,"$PWD/$cprefix/lib" -o target/debug/busbar-c-echo
"$venv/bin/pip" install --quiet --disable-pip-version-check pytest numpy mypy
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
export BUSBAR_BIN_DIR="$PWD/target/debug"
# From the repository root, and with -P: the source folder
# bindings/python/busbar (which lacks the built extension) must not shadow
# the installed package, in pytest or in the Python children the tests start.
"$venv"/bin/python -P -m pytest -q bindings/python/tests
"$venv/bin/mypy" --strict bindings/python/examples
