//! The C ABI of busbar: what `libbusbar.so` and `libbusbar.a` export, declared
//! for C in `bindings/c/include/busbar.h` (generated from this crate by
//! cbindgen; `tests/header.rs` fails when the committed header drifts) and
//! wrapped for C++ in `bindings/cpp/include/busbar.hpp`.
//!
//! Every binding speaks [`busbar::BytesMessage`] (a format tag and bytes), so
//! C and C++ programs share a bus with Rust programs and the `busbar`
//! command. The model, the ownership rules and how to build against the
//! library are in `bindings/c/README.md`.
//!
//! - [`status`]: the status codes, `busbar_last_error`, and the guard every
//!   entry point runs in (errors become a status and a message; a panic
//!   becomes `BUSBAR_PANIC`, never an abort).
//! - [`ffi`]: the entry points and handle types. The only module with
//!   `unsafe`: every block says why it is sound.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// The C names (`busbar_sender`, `busbar_status`) are the ABI.
#![allow(non_camel_case_types)]

#[allow(unsafe_code)] // The FFI boundary is the one place allowed `unsafe`.
pub mod ffi;
pub mod status;
