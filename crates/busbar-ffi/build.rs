//! Gives the shared library the soname it is installed under
//! (`libbusbar.so.0`, see scripts/install-c.sh), so that programs linked
//! against the installed `libbusbar.so` record that name.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbusbar.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
