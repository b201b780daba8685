#!/usr/bin/env bash
# The C and C++ bindings' tests, across real processes (run by scripts/test.sh
# after the Rust tests, which build what this needs):
#
# - the header compiles alone as C11 with -Wall -Wextra -Werror -pedantic;
# - bindings/c/tests/test_c.c, built the same way plus AddressSanitizer and
#   UBSan, runs against the Rust peer (busbar-peer bytes) and C receivers;
# - the examples build and run.
#
# The library is installed into a temporary prefix with scripts/install-c.sh
# and everything is built against it through pkg-config, as a user would.
# Needs gcc and g++ (and pkg-config, installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's packages this needs, installed non-interactively when missing.
missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [[ ${#missing[@]} -gt 0 ]]; then
    if ! command -v apt-get >/dev/null; then
        echo "test-c.sh: ${missing[*]} missing and apt-get is not available: install ${missing[*]} and rerun" >&2
        exit 1
    fi
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo -n)
    echo "test-c.sh: installing ${missing[*]} with apt-get"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
           "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; then
        echo "test-c.sh: could not install ${missing[*]} with apt-get (not root, no sudo, or no network): install them and rerun" >&2
        exit 1
    fi
fi
for tool in gcc g++; do
    command -v "$tool" >/dev/null || { echo "test-c.sh: $tool is missing: install it (Debian: build-essential)" >&2; exit 1; }
done

cargo build --locked --workspace --exclude busbar-bench
target="${CARGO_TARGET_DIR:-target}/debug"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
scripts/install-c.sh --from "$target" "$tmp/prefix" >/dev/null
prefix="$tmp/prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
bus="busbar-c-test.$$"
strict_c=(-std=c11 -Wall -Wextra -Werror -pedantic)
sanitize=(-g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
read -r -a cflags <<<"$(pkg-config --cflags busbar)"
read -r -a libs <<<"$(pkg-config --libs busbar)"
rpath=(-Wl,-rpath,"$prefix/lib")

echo "== busbar.h alone, C11 -Wall -Wextra -Werror -pedantic"
echo '#include "busbar.h"' | gcc "${strict_c[@]}" "${cflags[@]}" -fsyntax-only -x c -

echo "== C tests (ASan + UBSan) against the Rust peer"
gcc "${strict_c[@]}" "${sanitize[@]}" "${cflags[@]}" bindings/c/tests/test_c.c \
    "${libs[@]}" -lpthread "${rpath[@]}" -o "$tmp/test_c"
"$tmp/test_c" "$target/busbar-peer" "$bus.c"
