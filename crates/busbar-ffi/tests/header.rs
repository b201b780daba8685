//! The committed C header is what cbindgen makes of this crate now.
//!
//! `BUSBAR_BLESS=1 cargo test -p busbar-ffi --test header` rewrites it after
//! a change to the API; without it, any difference fails the test.

use std::path::Path;

#[test]
fn committed_header_matches_the_crate() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml reads");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let committed_path = crate_dir.join("../../bindings/c/include/busbar.h");
    if std::env::var_os("BUSBAR_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "bindings/c/include/busbar.h is not what cbindgen makes of crates/busbar-ffi \
             (first difference at line {line}); run \
             `BUSBAR_BLESS=1 cargo test -p busbar-ffi --test header` and commit the header"
        );
    }
}
