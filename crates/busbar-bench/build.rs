//! Compiles the `busbar (C)` peer's C side (src/peers/busbar_c.c) against
//! bindings/c/include/busbar.h; its symbols come from the busbar-ffi crate.

fn main() {
    println!("cargo:rerun-if-changed=src/peers/busbar_c.c");
    println!("cargo:rerun-if-changed=../../bindings/c/include/busbar.h");
    cc::Build::new()
        .file("src/peers/busbar_c.c")
        .include("../../bindings/c/include")
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("busbar_bench_c");
}
