//! The native side of the `busbar` npm package (`bindings/node`).
//!
//! JavaScript never calls this module directly: `bindings/node/index.js`
//! wraps it into the public API (`join`, `Endpoint`, `Region`, `LabelOp`,
//! `BusbarError`) and `index.d.ts` types it. What lives here:
//!
//! - [`endpoint`]: `NativeEndpoint`, one joined endpoint. `send` tries to
//!   hand the message over at once, on the JavaScript thread, and only a
//!   send that would wait goes to the endpoint's sending thread; other
//!   outcomes come back through one thread-safe function. Receiving needs
//!   no thread ([`recv`]): batches are taken on the JavaScript thread,
//!   copied into a slab JavaScript gives (`takeInto`), and a libuv poll
//!   handle on the receiver's descriptor calls back into JavaScript when a
//!   message may be there.
//! - [`region`]: `Region`, a shared memory region whose `ArrayBuffer` is
//!   the mapping itself.
//! - [`labelop`]: `LabelOp`, label expressions parsed and printed by busbar.
//! - [`error`]: every Rust error as a `.code` from one table.
//! - [`ffi`]: the only module with `unsafe` (the libuv poll handle, and
//!   `sendSame` and `takeInto`, the two functions called per message or
//!   batch, defined with Node-API itself: `ffi::raw`).
//!
//! Node-API 8 (see the crate's Cargo.toml for who supports it).

#![deny(missing_docs)]

mod endpoint;
mod error;
#[allow(unsafe_code)] // The one module allowed `unsafe`: the boundary with Node-API.
mod ffi;
mod labelop;
mod message;
mod recv;
mod region;

pub use endpoint::{join, NativeEndpoint};
pub use labelop::LabelOp;
pub use message::{Event, JsMessage, ReplyToken};
pub use region::Region;

/// Adds the functions napi's macros do not define (`ffi::raw`) to the
/// module's exports.
#[napi_derive::napi(module_exports)]
pub fn init(env: napi::Env, exports: napi::bindgen_prelude::Object) -> napi::Result<()> {
    use napi::JsValue;
    ffi::raw::define(env.raw(), exports.raw()).map_err(|f| napi::Error::from_reason(f.message))
}

/// Runs `f`, turning a panic into an error with code `PANIC` instead of
/// letting it unwind through a thread nobody joins (worker threads report
/// errors to JavaScript; a panic there must not leave a promise pending).
pub(crate) fn no_panic<T>(
    f: impl FnOnce() -> Result<T, error::Failure>,
) -> Result<T, error::Failure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(error::Failure::new(
                "PANIC",
                format!("busbar panicked: {why}"),
            ))
        }
    }
}
