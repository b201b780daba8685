#!/usr/bin/env bash
# The C and C++ bindings' tests, across real processes (run by scripts/test.sh
# after the Rust tests, which build what this needs):
#
# - the headers compile alone: busbar.h as C11 with -Wall -Wextra -Werror
#   -pedantic, busbar.hpp as C++17 and C++20 (g++, the same warnings);
# - bindings/c/tests/test_c.c, built that way plus AddressSanitizer and
#   UBSan (leak check on), runs against the Rust peer (busbar-peer bytes)
#   and C receivers;
# - bindings/cpp/tests/test_cpp.cpp, as C++17 and as C++20 under the same
#   sanitizers, runs against the `busbar` command (listen, send, request);
# - the examples build (shared and static library, through pkg-config) and
#   run: bindings/c/examples/echo.c, bindings/cpp/examples/pubsub.cpp;
# - a CMake project (bindings/c/tests/cmake-consumer) finds the installed
#   library with find_package(busbar CONFIG), builds the examples and runs them.
#
# The library is installed into a temporary prefix with scripts/install-c.sh
# and everything is built against it, as a user would. Needs gcc and g++;
# pkg-config and cmake are installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's packages this needs, installed non-interactively when missing.
missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cmake >/dev/null || missing+=(cmake)
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

# Not busbar-bridge: nothing here uses it, and this build's features differ
# from the test run's, so it would compile Zenoh once more.
cargo build --locked --workspace --exclude busbar-bench --exclude busbar-bridge
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

echo "== busbar.hpp alone, C++17 and C++20 -Wall -Wextra -Werror -pedantic"
for std in c++17 c++20; do
    echo '#include "busbar.hpp"' | g++ -std=$std -Wall -Wextra -Werror -pedantic "${cflags[@]}" -fsyntax-only -x c++ -
done

for std in c++17 c++20; do
    echo "== C++ tests ($std, ASan + UBSan) against the busbar command"
    g++ -std=$std -Wall -Wextra -Werror -pedantic "${sanitize[@]}" "${cflags[@]}" \
        bindings/cpp/tests/test_cpp.cpp "${libs[@]}" -pthread "${rpath[@]}" -o "$tmp/test_cpp_$std"
    "$tmp/test_cpp_$std" "$target/busbar" "$bus.cpp.$std"
done

# Runs `$1 BUS server` in the background and `$2 BUS client ...`; checks the answers.
run_echo() {
    local server="$1" client="$2" b="$3"
    "$server" "$b" server &
    local pid=$!
    local got
    got="$("$client" "$b" client hello busbar)"
    wait "$pid"
    if [[ "$got" != $'HELLO\nBUSBAR' ]]; then
        echo "test-c.sh: echo example answered: $got" >&2
        exit 1
    fi
}

# Runs `$1 BUS sub news` in the background and `$1 BUS pub news 3`; checks what the subscriber printed.
run_pubsub() {
    local exe="$1" b="$2"
    "$exe" "$b" sub news >"$tmp/sub.out" &
    local pid=$!
    "$exe" "$b" pub news 3
    wait "$pid"
    if [[ "$(cat "$tmp/sub.out")" != $'news 0\nnews 1\nnews 2' ]]; then
        echo "test-c.sh: pubsub example's subscriber printed: $(cat "$tmp/sub.out")" >&2
        exit 1
    fi
}

echo "== examples, through pkg-config (shared, and static with busbar-static)"
read -r -a static_libs <<<"$(pkg-config --libs busbar-static)"
gcc "${strict_c[@]}" "${cflags[@]}" bindings/c/examples/echo.c "${libs[@]}" "${rpath[@]}" -o "$tmp/echo"
gcc "${strict_c[@]}" "${cflags[@]}" bindings/c/examples/echo.c "${static_libs[@]}" -o "$tmp/echo_static"
if readelf -d "$tmp/echo_static" | grep -q libbusbar; then
    echo "test-c.sh: echo_static links libbusbar dynamically" >&2
    exit 1
fi
run_echo "$tmp/echo" "$tmp/echo_static" "$bus.echo"
g++ -std=c++17 -Wall -Wextra -Werror -pedantic "${cflags[@]}" bindings/cpp/examples/pubsub.cpp \
    "${libs[@]}" "${rpath[@]}" -o "$tmp/pubsub"
run_pubsub "$tmp/pubsub" "$bus.pubsub"
echo "examples ok"

echo "== a CMake project with find_package(busbar CONFIG)"
cmake -S bindings/c/tests/cmake-consumer -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_RPATH="$prefix/lib" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
run_echo "$tmp/cmake/echo_static" "$tmp/cmake/echo_shared" "$bus.cmake.echo"
run_pubsub "$tmp/cmake/pubsub" "$bus.cmake.pubsub"
echo "cmake consumer ok"
