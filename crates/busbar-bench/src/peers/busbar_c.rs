//! busbar through its C API: the `busbar (C)` column. The same endpoints as
//! the `busbar` column (default options, receivers spin 50 µs then sleep),
//! but every call goes through libbusbar's C functions, made from C
//! (`busbar_c.c`): `busbar_send_bytes` (the bytes copied once into the
//! message, as the Rust column's `BytesMessage::new` does) and
//! `busbar_recv` + `busbar_message_data` + `busbar_message_free` (the
//! payload decoded into an owned buffer, as the Rust column's `recv`).
//! What this column shows against the `busbar` one is what the binding
//! costs: its checks, its catch of panics, its handles.
//!
//! The one module of the bench with `unsafe`: calls into C.

use super::{wait_until, End};
use crate::proc::{Args, Ctl};
use crate::Res;
use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;

// The C library itself: linked for its C ABI symbols, which busbar_c.c calls.
use busbar_ffi as _;

#[repr(C)]
struct CSender {
    _opaque: [u8; 0],
}

#[repr(C)]
struct CReceiver {
    _opaque: [u8; 0],
}

type OnBytes = unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize);

extern "C" {
    fn bench_c_join(
        bus: *const c_char,
        me: *const c_char,
        token: *const c_char,
        tx: *mut *mut CSender,
        rx: *mut *mut CReceiver,
    ) -> c_int;
    fn bench_c_send(
        tx: *mut CSender,
        to: *const c_char,
        multicast: c_int,
        data: *const u8,
        len: usize,
    ) -> c_int;
    fn bench_c_recv(rx: *mut CReceiver, timeout_ms: i64, on: OnBytes, ctx: *mut c_void) -> c_int;
    fn bench_c_count(tx: *mut CSender, label: *const c_char) -> usize;
    fn bench_c_leave(tx: *mut CSender, rx: *mut CReceiver);
}

struct BusbarC {
    tx: *mut CSender,
    rx: *mut CReceiver,
    to: CString,
    multicast: bool,
    wait_for: Option<(&'static str, usize)>,
    wait_at_go: bool,
}

pub fn open(role: &str, args: &Args, _ctl: &Ctl) -> Res<Box<dyn End>> {
    let bus = CString::new(args.str("bus")?)?;
    let receivers = args.num("receivers")? as usize;
    let multicast = args.num("multicast")? == 1;
    let (me, peer, wait_for) = match role {
        "sink" => ("sink", "source", None),
        "source" => ("source", "sink", Some(("sink", receivers))),
        "pong" => ("pong", "ping", Some(("ping", 1))),
        "ping" => ("ping", "pong", Some(("pong", 1))),
        _ => return Err(format!("busbar (C) has no role {role}").into()),
    };
    let me = CString::new(me)?;
    let token = CString::new(super::busbar::TOKEN)?;
    let mut tx = std::ptr::null_mut();
    let mut rx = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings that outlive the call, and two
    // writable out-pointers.
    let st = unsafe { bench_c_join(bus.as_ptr(), me.as_ptr(), token.as_ptr(), &mut tx, &mut rx) };
    if st != 0 {
        return Err(format!("busbar_join failed with status {st}").into());
    }
    let end = BusbarC {
        tx,
        rx,
        to: CString::new(peer)?,
        multicast,
        wait_for,
        wait_at_go: role == "pong",
    };
    if !end.wait_at_go {
        end.wait_directory()?;
    }
    Ok(Box::new(end))
}

impl BusbarC {
    fn wait_directory(&self) -> Res<()> {
        if let Some((label, n)) = self.wait_for {
            let label_c = CString::new(label)?;
            wait_until(
                &format!("{n} '{label}' in the directory"),
                Duration::from_secs(10),
                // SAFETY: a live sender from bench_c_join, a NUL-terminated label.
                || unsafe { bench_c_count(self.tx, label_c.as_ptr()) } >= n,
            )?;
        }
        Ok(())
    }
}

/// Hands the bytes of a received message to the harness's closure.
unsafe extern "C" fn on_bytes(ctx: *mut c_void, data: *const u8, len: usize) {
    // SAFETY: `ctx` is the `&mut &mut dyn FnMut` that `recv` passed, alive
    // for the call; `data` points to `len` bytes of the message, alive until
    // this returns.
    unsafe {
        let f = &mut *ctx.cast::<&mut dyn FnMut(&[u8])>();
        f(std::slice::from_raw_parts(data, len));
    }
}

impl End for BusbarC {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        // SAFETY: a live sender, a NUL-terminated label, `data.len()` readable bytes.
        let st = unsafe {
            bench_c_send(
                self.tx,
                self.to.as_ptr(),
                c_int::from(self.multicast),
                data.as_ptr(),
                data.len(),
            )
        };
        if st != 0 {
            return Err(format!("busbar_send_bytes failed with status {st}").into());
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let mut f: &mut dyn FnMut(&[u8]) = f;
        let ctx = (&mut f as *mut &mut dyn FnMut(&[u8])).cast::<c_void>();
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: a live receiver, and a callback that gets back the `ctx`
        // made just above, which outlives the call.
        match unsafe { bench_c_recv(self.rx, ms, on_bytes, ctx) } {
            1 => Ok(true),
            0 => Ok(false),
            st => Err(format!("busbar_recv failed with status {st}").into()),
        }
    }

    fn on_go(&mut self) -> Res<()> {
        if self.wait_at_go {
            self.wait_directory()?;
        }
        Ok(())
    }
}

impl Drop for BusbarC {
    fn drop(&mut self) {
        // SAFETY: the handles from bench_c_join, freed once, unused after.
        unsafe { bench_c_leave(self.tx, self.rx) }
    }
}
