#!/usr/bin/env bash
# Installs the busbar C and C++ library into a prefix:
#
#   scripts/install-c.sh [--debug | --from DIR] PREFIX
#
#   PREFIX/lib/libbusbar.so.0.1.0, libbusbar.so.0, libbusbar.so   the shared library (soname libbusbar.so.0)
#   PREFIX/lib/libbusbar.a                                        the static library
#   PREFIX/include/busbar.h, busbar.hpp                           the C header, the C++ header
#   PREFIX/lib/pkgconfig/busbar.pc, busbar-static.pc              pkg-config
#   PREFIX/lib/cmake/busbar/busbarConfig*.cmake                   find_package(busbar CONFIG)
#
# Builds crates/busbar-ffi with `cargo build --release` first (--debug: the
# debug profile; --from DIR: take libbusbar_ffi.so and .a already built in DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
from=
while [[ $# -gt 1 ]]; do
    case "$1" in
        --debug) profile=debug; shift ;;
        --from) from="$2"; shift 2 ;;
        *) echo "install-c.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ $# -ne 1 ]]; then
    echo "usage: scripts/install-c.sh [--debug | --from DIR] PREFIX" >&2
    exit 2
fi
prefix="$1"
if [[ -z "$from" ]]; then
    flags=(--locked -p busbar-ffi)
    [[ "$profile" == release ]] && flags+=(--release)
    cargo build "${flags[@]}"
    from="${CARGO_TARGET_DIR:-target}/$profile"
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
major="${version%%.*}"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/busbar" "$prefix/include"
prefix="$(cd "$prefix" && pwd)"
install -m 0755 "$from/libbusbar_ffi.so" "$prefix/lib/libbusbar.so.$version"
ln -sf "libbusbar.so.$version" "$prefix/lib/libbusbar.so.$major"
ln -sf "libbusbar.so.$major" "$prefix/lib/libbusbar.so"
install -m 0644 "$from/libbusbar_ffi.a" "$prefix/lib/libbusbar.a"
install -m 0644 bindings/c/include/busbar.h bindings/cpp/include/busbar.hpp "$prefix/include/"
# What a program linked with the static library needs from the system
# (rustc --print native-static-libs, deduplicated).
system_libs="-lpthread -lm -lrt -ldl -lutil -lgcc_s"
cat > "$prefix/lib/pkgconfig/busbar.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: busbar
Description: Inter-process message bus for Linux (C and C++ API)
Version: $version
Libs: -L\${libdir} -lbusbar
Libs.private: $system_libs
Cflags: -I\${includedir}
PC
cat > "$prefix/lib/pkgconfig/busbar-static.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: busbar-static
Description: Inter-process message bus for Linux (C and C++ API), linked statically
Version: $version
Libs: \${libdir}/libbusbar.a $system_libs
Cflags: -I\${includedir}
PC
install -m 0644 bindings/cmake/busbarConfig.cmake "$prefix/lib/cmake/busbar/"
sed "s/@VERSION@/$version/" bindings/cmake/busbarConfigVersion.cmake \
    > "$prefix/lib/cmake/busbar/busbarConfigVersion.cmake"
echo "installed busbar $version (C, C++) into $prefix"
