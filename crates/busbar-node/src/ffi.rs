//! The only `unsafe` of the binding: the few Node-API calls napi's safe
//! API does not cover, and borrowing descriptors JavaScript names by number.

use crate::error::Failure;
use napi::bindgen_prelude::ArrayBuffer;
use napi::Env;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// An `ArrayBuffer` whose bytes are `len` bytes at `data` (no copy),
/// keeping `owner` alive until the garbage collector frees the buffer.
///
/// Fails with `EXTERNAL_BUFFERS_NOT_ALLOWED` where the runtime copies
/// external memory instead (Electron with V8's memory cage): writes into
/// such a copy would never reach the shared memory.
///
/// The caller promises that `data..data + len` stays mapped, readable and
/// writable, for as long as the returned buffer is attached: `owner` keeps
/// the mapping, and whoever unmaps it early must detach the buffer first
/// (see `region::Region::close`).
pub fn external_arraybuffer<'env, T: 'static>(
    env: &'env Env,
    data: *mut u8,
    len: usize,
    owner: T,
) -> Result<ArrayBuffer<'env>, Failure> {
    // SAFETY: `data` points at `len` mapped bytes that stay valid while the
    // buffer is attached (the caller's promise above: `owner` holds the
    // mapping, and the only early unmapping detaches the buffer first);
    // `data` is non-null (a mapping) and `len` > 0 (the caller makes an
    // ordinary empty buffer for an empty region). The finalizer only drops
    // `owner`, which is 'static and touches no JavaScript state.
    let buffer =
        unsafe { ArrayBuffer::from_external(env, data, len, owner, |_env, owner| drop(owner)) }
            .map_err(|e| Failure::new("REGION", format!("cannot make an ArrayBuffer: {e}")))?;
    if buffer.as_ptr() != data.cast_const() {
        return Err(Failure::new(
            "EXTERNAL_BUFFERS_NOT_ALLOWED",
            "this runtime does not allow ArrayBuffers over outside memory (Electron's V8 memory cage): use region.read() and region.write()",
        ));
    }
    Ok(buffer)
}

/// References (`true`) or unreferences a thread-safe function: while
/// referenced, it keeps the event loop of its thread alive.
pub fn tsfn_keep_alive(
    env: &Env,
    tsfn: napi::sys::napi_threadsafe_function,
    keep: bool,
) -> Result<(), Failure> {
    // SAFETY: called on the JavaScript thread that owns `env` (only from
    // methods napi calls there), with a thread-safe function created on
    // that thread and not yet released (its owner, `endpoint::Events`, is
    // alive while we hold a reference to it).
    let status = unsafe {
        if keep {
            napi::sys::napi_ref_threadsafe_function(env.raw(), tsfn)
        } else {
            napi::sys::napi_unref_threadsafe_function(env.raw(), tsfn)
        }
    };
    if status == napi::sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Failure::new(
            "IO",
            format!("napi_(un)ref_threadsafe_function failed with status {status}"),
        ))
    }
}

/// A duplicate (close-on-exec) of descriptor `fd`, which JavaScript owns
/// and keeps: `BAD_FD` when it is not open.
pub fn dup_fd(fd: i64) -> Result<OwnedFd, Failure> {
    let raw = RawFd::try_from(fd)
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| Failure::invalid(format!("{fd} is not a file descriptor")))?;
    // SAFETY: the borrow lives only for the `fcntl(F_DUPFD_CLOEXEC)` below,
    // on this thread, while JavaScript (its owner) cannot run and so cannot
    // close it; if `raw` is not open the call fails with EBADF, which is
    // reported, and nothing else is done with it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    borrowed
        .try_clone_to_owned()
        .map_err(|e| Failure::new("BAD_FD", format!("descriptor {raw}: {e}")))
}

/// libuv's functions, resolved from the `node` binary (or Electron's) when
/// the addon loads, like the `napi_*` ones. Only what [`Poll`] needs.
mod uv {
    use std::os::raw::{c_char, c_int, c_void};

    /// `uv_poll_cb`.
    pub type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
    /// `uv_close_cb`.
    pub type CloseCb = unsafe extern "C" fn(handle: *mut c_void);

    /// `UV_POLL` in `uv_handle_type` (stable across libuv 1.x; checked at
    /// run time with `uv_handle_type_name`).
    pub const POLL: c_int = 8;
    /// `UV_READABLE` in `uv_poll_event`.
    pub const READABLE: c_int = 1;

    extern "C" {
        pub fn uv_handle_size(kind: c_int) -> usize;
        pub fn uv_handle_type_name(kind: c_int) -> *const c_char;
        pub fn uv_handle_set_data(handle: *mut c_void, data: *mut c_void);
        pub fn uv_handle_get_data(handle: *const c_void) -> *mut c_void;
        pub fn uv_poll_init(
            event_loop: *mut napi::sys::uv_loop_s,
            handle: *mut c_void,
            fd: c_int,
        ) -> c_int;
        pub fn uv_poll_start(handle: *mut c_void, events: c_int, cb: PollCb) -> c_int;
        pub fn uv_poll_stop(handle: *mut c_void) -> c_int;
        pub fn uv_is_active(handle: *const c_void) -> c_int;
        pub fn uv_ref(handle: *mut c_void);
        pub fn uv_unref(handle: *mut c_void);
        pub fn uv_close(handle: *mut c_void, cb: Option<CloseCb>);
        pub fn uv_strerror(err: c_int) -> *const c_char;
    }
}

/// What a poll handle's `data` points at.
struct PollData {
    env: napi::sys::napi_env,
    /// The JavaScript function called when the descriptor is readable (a
    /// strong reference, deleted when the handle closes).
    func: napi::sys::napi_ref,
    /// The async context the calls are made in (for async hooks and
    /// `AsyncLocalStorage`), destroyed when the handle closes.
    context: napi::sys::napi_async_context,
    /// The handle's memory, in 8-byte words (freed by the close callback).
    words: usize,
}

/// The state the owner and the environment's cleanup hook share.
struct PollShared {
    handle: *mut std::os::raw::c_void,
    /// The handle was handed to `uv_close` (by the owner or the hook).
    closed: std::cell::Cell<bool>,
}

/// A libuv poll handle (`uv_poll_t`) on the event loop of the JavaScript
/// thread that made it, watching one descriptor for input and calling a
/// JavaScript function (as `napi_make_callback` does: microtasks run
/// after it) while it is readable: the way an endpoint waits for messages
/// without a thread of its own (one wake-up per message: libuv's).
///
/// Lives on that JavaScript thread only (it is neither `Send` nor `Sync`).
/// Whoever made it keeps the descriptor open until it is dropped: dropping
/// stops watching and closes the handle (its memory is freed by libuv's
/// close callback). When the environment goes away first (a worker
/// thread's end), a cleanup hook closes the handle, so that the loop can
/// close; dropping it afterwards does nothing.
pub struct Poll {
    env: napi::sys::napi_env,
    shared: std::rc::Rc<PollShared>,
    /// The cleanup hook's argument (`Rc::into_raw` of `shared`), owned by
    /// the hook until it runs or is removed.
    hook_arg: *const PollShared,
}

fn uv_error(what: &str, err: std::os::raw::c_int) -> Failure {
    // SAFETY: uv_strerror returns a pointer to a static, NUL-terminated
    // string for any error code (an "unknown" one for codes it does not know).
    let text = unsafe { std::ffi::CStr::from_ptr(uv::uv_strerror(err)) };
    Failure::new("IO", format!("{what}: {}", text.to_string_lossy()))
}

unsafe extern "C" fn poll_ready(
    handle: *mut std::os::raw::c_void,
    _status: std::os::raw::c_int,
    _events: std::os::raw::c_int,
) {
    use napi::sys;
    // SAFETY: libuv calls this on the loop's thread (the JavaScript thread
    // of `env`, outside any JavaScript) with the handle we started; it is
    // not closed (a closed handle's callbacks are not called), so its data
    // is the PollData set in `Poll::new`, whose reference and context live
    // until the handle closes. The handle scope opened here is closed
    // before returning; values made in it are not kept. An error status
    // (the descriptor failed) is reported the same way: the function reads,
    // and meets the error there. The function may stop or close the handle
    // (both allowed inside its callback; the data stays until the close
    // callback, which runs later).
    unsafe {
        let data = &*uv::uv_handle_get_data(handle).cast::<PollData>();
        let env = data.env;
        let mut scope = std::ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let mut func = std::ptr::null_mut();
        let mut recv = std::ptr::null_mut();
        if sys::napi_get_reference_value(env, data.func, &mut func) == sys::Status::napi_ok
            && !func.is_null()
            && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
        {
            let mut result = std::ptr::null_mut();
            let status = sys::napi_make_callback(
                env,
                data.context,
                recv,
                func,
                0,
                std::ptr::null(),
                &mut result,
            );
            if status == sys::Status::napi_pending_exception {
                // Thrown by the function: Node's 'uncaughtException', as
                // for any callback the event loop makes. The handle stops:
                // called again at once (the descriptor stays readable), the
                // function would throw for ever.
                uv::uv_poll_stop(handle);
                let mut error = std::ptr::null_mut();
                if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(env, error);
                }
            }
        }
        sys::napi_close_handle_scope(env, scope);
    }
}

unsafe extern "C" fn poll_closed(handle: *mut std::os::raw::c_void) {
    // SAFETY: libuv calls this once, after the handle is closed for good;
    // its data and memory were leaked from the boxes made in `Poll::new`
    // and nobody else frees them.
    unsafe {
        let data = Box::from_raw(uv::uv_handle_get_data(handle).cast::<PollData>());
        let words = data.words;
        drop(data);
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            handle.cast::<u64>(),
            words,
        )));
    }
}

/// Closes the handle (once).
///
/// # Safety
/// On the loop's thread, with a handle made by `Poll::new`.
unsafe fn close_poll(shared: &PollShared) {
    if !shared.closed.replace(true) {
        // SAFETY: (the caller's promise) the handle is open; stopping an
        // inactive handle is a no-op. The reference and the context are
        // let go now, while the environment surely lives (the close
        // callback may run after a worker's environment is gone), and
        // nothing calls the function after `uv_close`. `uv_close` takes the
        // handle and frees it through `poll_closed`.
        unsafe {
            uv::uv_poll_stop(shared.handle);
            let data = &*uv::uv_handle_get_data(shared.handle).cast::<PollData>();
            napi::sys::napi_delete_reference(data.env, data.func);
            napi::sys::napi_async_destroy(data.env, data.context);
            uv::uv_close(shared.handle, Some(poll_closed));
        }
    }
}

unsafe extern "C" fn poll_env_cleanup(arg: *mut std::os::raw::c_void) {
    // SAFETY: `arg` is the `Rc::into_raw` made for this hook in
    // `Poll::new`; the hook runs once, on the environment's thread, and
    // `Poll::drop` removes it (taking the Rc back) only when it has not run.
    unsafe {
        let shared = std::rc::Rc::from_raw(arg.cast_const().cast::<PollShared>());
        close_poll(&shared);
    }
}

impl Poll {
    /// Watches `fd` on `env`'s event loop; `func` (a JavaScript function)
    /// is called with no arguments, on this thread, whenever `fd` is
    /// readable while [`start`](Poll::start)ed. Made stopped.
    ///
    /// The caller keeps `fd` open for as long as the `Poll` lives.
    pub fn new<'env>(
        env: &Env,
        fd: BorrowedFd<'_>,
        func: &impl napi::JsValue<'env>,
    ) -> Result<Poll, Failure> {
        use std::os::fd::AsRawFd;
        let mut event_loop = std::ptr::null_mut();
        // SAFETY: `env` is the live environment of this thread; the loop
        // pointer is written on success.
        let status = unsafe { napi::sys::napi_get_uv_event_loop(env.raw(), &mut event_loop) };
        if status != napi::sys::Status::napi_ok || event_loop.is_null() {
            return Err(Failure::new("IO", "no libuv loop for this environment"));
        }
        // SAFETY: both take a handle type and return a size or a static
        // string (a NUL-terminated "unknown" one for types they do not know).
        let (size, name) = unsafe {
            (
                uv::uv_handle_size(uv::POLL),
                std::ffi::CStr::from_ptr(uv::uv_handle_type_name(uv::POLL)),
            )
        };
        if name.to_bytes() != b"poll" || size == 0 {
            return Err(Failure::new(
                "IO",
                format!("this runtime's libuv has no poll handle where expected ({name:?})"),
            ));
        }
        let (func, context) = js_callback(env, func)?;
        let words = size.div_ceil(8);
        let handle = Box::into_raw(vec![0u64; words].into_boxed_slice())
            .cast::<u64>()
            .cast::<std::os::raw::c_void>();
        let data = Box::into_raw(Box::new(PollData {
            env: env.raw(),
            func,
            context,
            words,
        }));
        // SAFETY: `handle` is `size` zeroed bytes, 8-aligned (libuv's
        // handles hold pointers and ints only), that nobody else uses;
        // `event_loop` is this thread's loop; `fd` is open (the caller
        // keeps it so). On failure libuv has not taken the handle and we
        // free both boxes ourselves.
        let err = unsafe { uv::uv_poll_init(event_loop, handle, fd.as_raw_fd()) };
        if err != 0 {
            // SAFETY: both were leaked just above and libuv did not keep
            // them; the reference and context were made above for them.
            unsafe {
                napi::sys::napi_delete_reference(env.raw(), func);
                napi::sys::napi_async_destroy(env.raw(), context);
                drop(Box::from_raw(data));
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    handle.cast::<u64>(),
                    words,
                )));
            }
            return Err(uv_error("uv_poll_init", err));
        }
        // SAFETY: the handle is initialised; its data is ours to set.
        unsafe { uv::uv_handle_set_data(handle, data.cast()) };
        let shared = std::rc::Rc::new(PollShared {
            handle,
            closed: std::cell::Cell::new(false),
        });
        let hook_arg = std::rc::Rc::into_raw(std::rc::Rc::clone(&shared));
        // SAFETY: a hook and argument that stay valid until the hook runs
        // or `Poll::drop` removes it.
        let status = unsafe {
            napi::sys::napi_add_env_cleanup_hook(
                env.raw(),
                Some(poll_env_cleanup),
                hook_arg.cast_mut().cast(),
            )
        };
        if status != napi::sys::Status::napi_ok {
            // The hook is not registered: take its Rc back and close.
            // SAFETY: made by `into_raw` above and not handed to anyone;
            // the handle was made above, on this thread.
            unsafe {
                drop(std::rc::Rc::from_raw(hook_arg));
                close_poll(&shared);
            }
            return Err(Failure::new("IO", "cannot add an environment cleanup hook"));
        }
        let poll = Poll {
            env: env.raw(),
            shared,
            hook_arg,
        };
        Ok(poll)
    }

    /// Calls the function whenever the descriptor is readable, until
    /// [`stop`](Poll::stop). While started, the handle keeps the event loop
    /// (the process, the worker) alive.
    pub fn start(&self) -> Result<(), Failure> {
        if self.shared.closed.get() {
            return Err(Failure::closed());
        }
        // SAFETY: the handle is open (checked above), asked on its loop's
        // thread (a `Poll` never leaves it).
        if unsafe { uv::uv_is_active(self.shared.handle) } != 0 {
            // Started already: starting again would take the descriptor
            // out of the kernel's watch and put it back (a system call).
            return Ok(());
        }
        // SAFETY: the handle is open (checked above) and started on its
        // own loop's thread (a `Poll` never leaves it).
        let err = unsafe { uv::uv_poll_start(self.shared.handle, uv::READABLE, poll_ready) };
        if err != 0 {
            return Err(uv_error("uv_poll_start", err));
        }
        Ok(())
    }

    /// Whether the handle, while started, keeps the event loop (the
    /// process, the worker) alive: `true` by default.
    pub fn keep_alive(&self, keep: bool) {
        if !self.shared.closed.get() {
            // SAFETY: an open handle, on its loop's thread; referencing a
            // referenced handle (or unreferencing an unreferenced one) is a
            // no-op.
            unsafe {
                if keep {
                    uv::uv_ref(self.shared.handle);
                } else {
                    uv::uv_unref(self.shared.handle);
                }
            }
        }
    }

    /// Stops watching (the function is not called until the next `start`).
    pub fn stop(&self) {
        if !self.shared.closed.get() {
            // SAFETY: an open handle, on its loop's thread.
            unsafe { uv::uv_poll_stop(self.shared.handle) };
        }
    }
}

/// A strong reference to the function `func` and an async context for
/// calls to it.
fn js_callback<'env>(
    env: &Env,
    func: &impl napi::JsValue<'env>,
) -> Result<(napi::sys::napi_ref, napi::sys::napi_async_context), Failure> {
    use napi::sys;
    let failed = |what: &str| Failure::new("IO", format!("{what} failed"));
    let mut reference = std::ptr::null_mut();
    let mut resource = std::ptr::null_mut();
    let mut name = std::ptr::null_mut();
    let mut context = std::ptr::null_mut();
    const NAME: &str = "busbar.recv";
    // SAFETY: on `env`'s thread, with a value of that environment; each
    // call writes its out-pointer on success. The reference is deleted
    // when the handle closes (or below, when the context cannot be made).
    unsafe {
        if sys::napi_create_reference(env.raw(), func.raw(), 1, &mut reference)
            != sys::Status::napi_ok
        {
            return Err(failed("napi_create_reference"));
        }
        if sys::napi_create_object(env.raw(), &mut resource) != sys::Status::napi_ok
            || sys::napi_create_string_utf8(
                env.raw(),
                NAME.as_ptr().cast(),
                NAME.len() as isize,
                &mut name,
            ) != sys::Status::napi_ok
            || sys::napi_async_init(env.raw(), resource, name, &mut context) != sys::Status::napi_ok
        {
            sys::napi_delete_reference(env.raw(), reference);
            return Err(failed("napi_async_init"));
        }
    }
    Ok((reference, context))
}

impl Drop for Poll {
    fn drop(&mut self) {
        if self.shared.closed.get() {
            // The cleanup hook ran (and took its Rc back): nothing is left.
            return;
        }
        // SAFETY: the hook has not run (it would have closed the handle),
        // so it is registered with this argument; once removed it never
        // runs, and its Rc is ours to drop. Then the handle is closed, on
        // its loop's thread (a `Poll` never leaves it).
        unsafe {
            napi::sys::napi_remove_env_cleanup_hook(
                self.env,
                Some(poll_env_cleanup),
                self.hook_arg.cast_mut().cast(),
            );
            drop(std::rc::Rc::from_raw(self.hook_arg));
            close_poll(&self.shared);
        }
    }
}

/// Functions defined with Node-API itself instead of napi's macros: the
/// ones called once per message, where napi's generated wrapper (its
/// argument conversions, and the process-wide lock and map of borrows it
/// registers a `&[u8]` argument in) costs more than the work itself.
pub mod raw {
    use crate::error::Failure;
    use napi::sys;
    use std::ffi::CString;
    use std::ptr;

    /// Defines the raw functions on `exports` (the module's exports object).
    pub fn define(env: sys::napi_env, exports: sys::napi_value) -> Result<(), Failure> {
        let functions: [(&str, sys::napi_callback); 2] =
            [("sendSame", Some(send_same)), ("takeInto", Some(take_into))];
        for (name, cb) in functions {
            let mut f = ptr::null_mut();
            // SAFETY: called while the module loads, on the JavaScript
            // thread of `env`, with `exports` its exports object; `name`
            // is valid for `name.len()` bytes and `cb` a callback of the
            // type Node-API expects.
            let status = unsafe {
                sys::napi_create_function(
                    env,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    cb,
                    ptr::null_mut(),
                    &mut f,
                )
            };
            check(status, "napi_create_function")?;
            let key = CString::new(name).map_err(|_| Failure::invalid("a NUL in a name"))?;
            // SAFETY: as above; `f` was just made, `key` is NUL-terminated.
            let status = unsafe { sys::napi_set_named_property(env, exports, key.as_ptr(), f) };
            check(status, "napi_set_named_property")?;
        }
        Ok(())
    }

    fn check(status: sys::napi_status, what: &str) -> Result<(), Failure> {
        if status == sys::Status::napi_ok {
            Ok(())
        } else {
            Err(Failure::new(
                "NAPI",
                format!("{what} failed with status {status}"),
            ))
        }
    }

    /// Throws `f` as an `Error` whose `.code` is its code (index.js makes
    /// it a `BusbarError`, as it does with napi's errors); returns what a
    /// callback that threw returns.
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, inside a callback.
    unsafe fn throw(env: sys::napi_env, f: Failure) -> sys::napi_value {
        let code = CString::new(f.code).unwrap_or_default();
        let message = CString::new(f.message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller's promise; both strings are NUL-terminated.
        // (Should throwing fail, an exception is pending already.)
        unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
        ptr::null_mut()
    }

    /// The first `N` arguments of the call `info` describes (`undefined`
    /// for those not given).
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, inside the callback `info` was
    /// given to, with that `info`; the values are used only within it.
    unsafe fn args<const N: usize>(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> Result<[sys::napi_value; N], Failure> {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        // SAFETY: the caller's promise; `argv` has room for `argc` values
        // (Node-API writes at most `argc` of them, and fills those beyond
        // the arguments given with `undefined`); `this` and the data
        // pointer are not asked for.
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        check(status, "napi_get_cb_info")?;
        Ok(argv)
    }

    /// A `u32` argument.
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, `value` one of its values.
    unsafe fn u32_arg(
        env: sys::napi_env,
        value: sys::napi_value,
        what: &str,
    ) -> Result<u32, Failure> {
        let mut n = 0u32;
        // SAFETY: the caller's promise; `n` is a valid place for the result.
        let status = unsafe { sys::napi_get_value_uint32(env, value, &mut n) };
        if status == sys::Status::napi_ok {
            Ok(n)
        } else {
            Err(Failure::invalid(format!("{what} must be a number")))
        }
    }

    /// The bytes of a `Uint8Array` (a `Buffer`, or any view of an ArrayBuffer) argument, borrowed for the
    /// callback: no JavaScript runs meanwhile, so nobody can detach or
    /// resize its buffer.
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, inside a callback, `value` one of
    /// its arguments; the slice must not outlive the callback.
    unsafe fn bytes_arg<'a>(
        env: sys::napi_env,
        value: sys::napi_value,
    ) -> Result<&'a [u8], Failure> {
        // SAFETY: the caller's promise; the slice is only read.
        unsafe { bytes_arg_mut(env, value) }.map(|b| &*b)
    }

    /// The bytes of a `Uint8Array` argument to write into, borrowed for the
    /// callback, as [`bytes_arg`].
    ///
    /// # Safety
    /// As [`bytes_arg`]; and no other slice of the same bytes is used
    /// while this one is.
    unsafe fn bytes_arg_mut<'a>(
        env: sys::napi_env,
        value: sys::napi_value,
    ) -> Result<&'a mut [u8], Failure> {
        let mut len = 0usize;
        let mut data = ptr::null_mut();
        // SAFETY: the caller's promise; the out-pointers are valid places.
        // (Node-API's buffer info takes any view of an ArrayBuffer, a
        // Uint8Array among them, and costs less than the typed array info,
        // which tries each kind of typed array in turn.)
        let status = unsafe { sys::napi_get_buffer_info(env, value, &mut data, &mut len) };
        if status != sys::Status::napi_ok {
            return Err(Failure::invalid("data must be a Uint8Array"));
        }
        if len == 0 || data.is_null() {
            return Ok(&mut []);
        }
        // SAFETY: Node-API says `data` points at the array's `len` bytes
        // (a Uint8Array: one byte per element), which stay where they are
        // while this callback runs (no JavaScript runs to detach them);
        // nothing else here reads or writes them meanwhile (the caller's
        // promise).
        Ok(unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) })
    }

    /// A number as JavaScript's, or the failure thrown.
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, inside a callback.
    unsafe fn uint32(env: sys::napi_env, n: u32) -> sys::napi_value {
        let mut out = ptr::null_mut();
        // SAFETY: the caller's promise; `out` is a valid place.
        let status = unsafe { sys::napi_create_uint32(env, n, &mut out) };
        if status == sys::Status::napi_ok {
            out
        } else {
            // SAFETY: the caller's promise.
            unsafe { throw(env, Failure::new("NAPI", "napi_create_uint32 failed")) }
        }
    }

    /// `takeInto(handle, slab, at, max)`: see [`crate::endpoint::take_into`].
    /// Answers 0 (nothing there), `meta_at * 128 + count`, or an array.
    unsafe extern "C" fn take_into(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> sys::napi_value {
        // SAFETY: Node-API calls this on the JavaScript thread of `env`
        // with `info` for this call.
        let argv = unsafe { args::<4>(env, info) };
        let js_env = napi::Env::from_raw(env);
        let result = crate::no_panic(|| {
            let argv = argv?;
            // SAFETY: on the JavaScript thread, inside this callback, with
            // its arguments; the slab is written only within it, and only
            // through this slice (Buffers made meanwhile are new memory).
            let (handle, slab, at, max) = unsafe {
                (
                    u32_arg(env, argv[0], "handle")?,
                    bytes_arg_mut(env, argv[1])?,
                    u32_arg(env, argv[2], "at")?,
                    u32_arg(env, argv[3], "max")?,
                )
            };
            match crate::endpoint::take_into(&js_env, handle, slab, at, max)? {
                crate::recv::Taken::Nothing => Ok(TakenValue::Number(0)),
                crate::recv::Taken::Plain { count, meta_at } => {
                    Ok(TakenValue::Number(meta_at * 128 + count))
                }
                crate::recv::Taken::WithValues(array) => {
                    use napi::JsValue;
                    Ok(TakenValue::Value(array.raw()))
                }
            }
        });
        match result {
            // SAFETY: on the JavaScript thread, inside this callback.
            Ok(TakenValue::Number(n)) => unsafe { uint32(env, n) },
            Ok(TakenValue::Value(v)) => v,
            // SAFETY: as above.
            Err(f) => unsafe { throw(env, f) },
        }
    }

    /// What `take_into` answers.
    enum TakenValue {
        Number(u32),
        Value(sys::napi_value),
    }

    /// `sendSame(handle, key, data, format)`: see [`crate::endpoint::send_same`].
    unsafe extern "C" fn send_same(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> sys::napi_value {
        // SAFETY: Node-API calls this on the JavaScript thread of `env`
        // with `info` for this call.
        let argv = unsafe { args::<4>(env, info) };
        let result = crate::no_panic(|| {
            let argv = argv?;
            // SAFETY: on the JavaScript thread, inside this callback, with
            // its arguments; the bytes are used only within it.
            let (handle, key, data, format) = unsafe {
                (
                    u32_arg(env, argv[0], "handle")?,
                    u32_arg(env, argv[1], "key")?,
                    bytes_arg(env, argv[2])?,
                    u32_arg(env, argv[3], "format")?,
                )
            };
            crate::endpoint::send_same(handle, key, data, format)
        });
        match result {
            // SAFETY: on the JavaScript thread, inside this callback.
            Ok(sent) => unsafe { uint32(env, sent) },
            // SAFETY: as above.
            Err(f) => unsafe { throw(env, f) },
        }
    }
}
