//! The entry points of the C ABI and the handles they hand out.
//!
//! Rules every function here follows (and the header repeats on each):
//!
//! - Handles are typed opaque structs, created by a `busbar_*_new`, `join`,
//!   `recv` or `clone` call and released by their own `busbar_*_free`,
//!   which accepts NULL. A `const` pointer returned by a getter is borrowed:
//!   its type says so (`busbar_region_view`, `busbar_borrowed`), and it has
//!   no `free`.
//! - Every pointer argument is checked: NULL gives `BUSBAR_INVALID_ARGUMENT`,
//!   never a crash. Pointers that are not NULL must be what the header says
//!   (a live handle of that type, a NUL-terminated string, `len` readable
//!   bytes): that much C cannot check.
//! - Every body runs in [`run`]/[`run_or`]: a Rust panic becomes
//!   `BUSBAR_PANIC`, never an abort of the host process.
//! - Out-parameters are written only on success.

use crate::status::*;
use busbar::{
    Access, Backpressure, BytesMessage, EndpointInfo, EndpointReceiver, EndpointSender, LabelOp,
    Loan, MemoryRegion, MemoryRegistry, Message, Namespace, Object, Options, RecvError, RecvWaker,
    ReplyHandle, Selector,
};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------

/// How to join a bus: which bus, as whom, with what token, and the rest of
/// busbar's `Options`. Made by `busbar_options_new`, freed by
/// `busbar_options_free`; not thread-safe (one thread at a time).
pub struct busbar_options {
    inner: Options,
}

/// The sending half of an endpoint. Thread-safe: any number of threads may
/// send through one sender at once. Freed by `busbar_sender_free` (the
/// endpoint leaves the bus once its sender and receiver are both freed).
pub struct busbar_sender {
    tx: EndpointSender<BytesMessage>,
}

/// The receiving half of an endpoint. One call at a time (a second thread's
/// call meanwhile gets `BUSBAR_BUSY`), except `busbar_receiver_close`, which
/// any thread may call at any time.
pub struct busbar_receiver {
    /// Touched only by the thread that holds `busy`.
    rx: UnsafeCell<Option<EndpointReceiver<BytesMessage>>>,
    busy: AtomicBool,
    closed: AtomicBool,
    waker: RecvWaker,
    /// The poll descriptor once `busbar_receiver_fd` asked for it (-1 until
    /// then: asking turns on the flags that make it readable, which costs
    /// the senders a system call per wake-up, so only a poll loop pays).
    fd: AtomicI32,
    id: u64,
}

// SAFETY: the only field that is not Sync, `rx`, is reached only through
// `Receiving`, which holds the `busy` flag: one thread at a time.
unsafe impl Sync for busbar_receiver {}

/// A message: its selector, format tag, bytes, file descriptors and memory
/// regions, and for a received one its source and whether it is a request.
/// Owned by the caller until `busbar_message_free` (or a successful send).
/// Not thread-safe.
pub struct busbar_message {
    /// The message as busbar received it (or as `busbar_message_new` made
    /// it): selector, payload, source and reply address kept as they are,
    /// so receiving one moves it once. Its own `objects` and
    /// `memory_regions` are always empty: they live in the two fields below.
    msg: Message<BytesMessage>,
    /// Its descriptors and regions, if it has any (most messages carry
    /// neither, and then this is one word to write and to drop).
    attached: Option<Box<Attached>>,
}

/// A message's descriptors and regions, in C's form: a taken one leaves
/// `None`, so indexes do not move.
#[derive(Default)]
struct Attached {
    objects: Vec<Option<Object>>,
    /// Boxed, so that the pointer `busbar_message_region` hands out stays
    /// where it is when `busbar_message_add_region` grows the vector.
    regions: Vec<Option<Box<busbar_region_view>>>,
}

impl busbar_message {
    /// A message holding `msg`, whose own `objects` and `memory_regions` are empty.
    fn plain(msg: Message<BytesMessage>) -> busbar_message {
        busbar_message {
            msg,
            attached: None,
        }
    }

    fn objects(&self) -> &[Option<Object>] {
        self.attached.as_deref().map_or(&[], |a| &a.objects)
    }

    fn objects_mut(&mut self) -> &mut [Option<Object>] {
        self.attached
            .as_deref_mut()
            .map_or(&mut [], |a| &mut a.objects)
    }

    fn regions(&self) -> &[Option<Box<busbar_region_view>>] {
        self.attached.as_deref().map_or(&[], |a| &a.regions)
    }

    fn regions_mut(&mut self) -> &mut [Option<Box<busbar_region_view>>] {
        self.attached
            .as_deref_mut()
            .map_or(&mut [], |a| &mut a.regions)
    }

    /// The attachments, made empty on first use.
    fn attached(&mut self) -> &mut Attached {
        self.attached.get_or_insert_with(Box::default)
    }
}

/// A shared-memory region (memfd) owned by the caller; freed (its count
/// dropped) by `busbar_region_free`.
pub struct busbar_region {
    region: MemoryRegion,
}

/// A region borrowed from a message: valid while the message is and the
/// region is not taken from it. Has no `free`.
pub struct busbar_region_view {
    region: MemoryRegion,
}

/// A pool of regions that reuses those nobody holds any more
/// (`MemoryRegistry`). Not thread-safe.
pub struct busbar_registry {
    registry: MemoryRegistry,
}

/// A label expression (`renderer & !gpu`), parsed or built.
pub struct busbar_label_op {
    op: LabelOp,
}

/// Where a message goes: unicast or multicast to a label expression, or one
/// endpoint by id; with a ttl, a backpressure policy, and whether a
/// multicast requires a receiver.
pub struct busbar_selector {
    selector: Selector,
}

/// Shared memory lent by a sender, to fill in place and send with
/// `busbar_send_loan` (zero-copy).
pub struct busbar_loan {
    loan: Loan,
}

/// A copy of the bus directory, from `busbar_endpoints`.
pub struct busbar_directory {
    list: Vec<EndpointInfo>,
    labels: Vec<CString>,
}

/// What it takes to answer a request after the message is gone (from
/// `busbar_borrowed_reply_handle` or `busbar_message_reply_handle`).
pub struct busbar_reply_handle {
    handle: ReplyHandle,
}

/// A message lent by `busbar_recv_with` to its callback, in place: valid only
/// during the callback. Its descriptors and regions not taken are closed
/// when the callback returns.
pub struct busbar_borrowed {
    data: *const u8,
    len: usize,
    format: u16,
    source: u64,
    objects: Vec<Option<Object>>,
    regions: Vec<Option<MemoryRegion>>,
    reply: Option<ReplyHandle>,
}

/// One endpoint of the directory, as `busbar_directory_get` fills it in.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_endpoint_info {
    /// The endpoint's id (for `busbar_selector_endpoint`).
    pub id: u64,
    /// Its process.
    pub pid: u32,
    /// Its process's user.
    pub uid: u32,
    /// 1 when it hosts the bus controller.
    pub is_controller: c_int,
    /// Bytes waiting in its queues, as it last reported.
    pub queued_bytes: u64,
    /// Messages dropped for it (backpressure `DROP_NEWEST`).
    pub dropped: u64,
    /// Messages it sent per second, as it last reported.
    pub sent_per_sec: u64,
    /// Messages it received per second, as it last reported.
    pub received_per_sec: u64,
    /// Its label, comma-separated; borrowed from the directory (valid until
    /// `busbar_directory_free`).
    pub label: *const c_char,
}

/// Size limits of an endpoint (`busbar_options_get_limits`,
/// `busbar_options_set_limits`); see busbar's `Limits`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_limits {
    /// The most endpoints the controller admits when this endpoint hosts it (1024).
    pub max_endpoints: u64,
    /// The largest payload sent or accepted, in bytes (64 MiB; at most 4 GiB).
    pub max_payload: u64,
    /// Bytes of payload that may wait for their ttl here (64 MiB).
    pub max_pending_bytes: u64,
    /// Descriptors that may wait for their ttl here (1024).
    pub max_pending_descriptors: u64,
    /// Bytes one link to a receiver holds before it counts as full (256 KiB).
    pub link_buffer: u64,
}

/// `busbar_options_set_access`: only this user (the default).
pub const BUSBAR_ACCESS_SAME_USER: c_int = 0;
/// `busbar_options_set_access`: this user plus the listed uids and gids.
pub const BUSBAR_ACCESS_ALLOW: c_int = 1;
/// `busbar_options_set_access`: any local process that knows the token.
pub const BUSBAR_ACCESS_ANYONE: c_int = 2;
/// `busbar_options_set_namespace`: abstract unix sockets (the default).
pub const BUSBAR_NAMESPACE_ABSTRACT: c_int = 0;
/// `busbar_options_set_namespace`: socket files in a 0700 directory.
pub const BUSBAR_NAMESPACE_FILESYSTEM: c_int = 1;
/// Backpressure: wait for room (the default).
pub const BUSBAR_BACKPRESSURE_BLOCK: c_int = 0;
/// Backpressure: drop the message for a full receiver and count it.
pub const BUSBAR_BACKPRESSURE_DROP_NEWEST: c_int = 1;
/// Backpressure: fail with `BUSBAR_FULL`.
pub const BUSBAR_BACKPRESSURE_FAIL_FAST: c_int = 2;

/// Called by `busbar_recv_with` with the message it lends and the caller's
/// `ctx`. It must not unwind (a C++ callback catches its exceptions) and must
/// not call into the same receiver.
pub type busbar_borrowed_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, m: *mut busbar_borrowed)>;

/// Called by a registry once a region allocated with
/// `busbar_registry_alloc_with_free` is free again, with the caller's `ctx`.
pub type busbar_free_fn = Option<unsafe extern "C" fn(ctx: *mut c_void)>;

// ---------------------------------------------------------------------------
// Argument checks (the unsafe reads of what C hands in)
// ---------------------------------------------------------------------------

/// `p` as a shared reference, or `INVALID_ARGUMENT` naming `what`.
///
/// # Safety
/// `p` is NULL or points to a live `T` that nobody mutates for `'a`.
unsafe fn get<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's contract: NULL (checked) or a live T.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// `p` as an exclusive reference, or `INVALID_ARGUMENT` naming `what`.
///
/// # Safety
/// `p` is NULL or points to a live `T` nobody else uses for `'a`.
unsafe fn get_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's contract: NULL (checked) or a live T used only here.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that lives for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// `len` bytes at `data` (NULL allowed when `len` is 0).
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes that live for `'a`.
unsafe fn bytes<'a>(data: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "{what}: length {len} is too large"
        )));
    }
    // SAFETY: not NULL, `len` readable bytes by the caller's contract, and
    // `len` fits a slice.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// Writes `value` to the out-parameter `out`.
///
/// # Safety
/// `out` is NULL or points to writable memory for a `T`.
unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL and writable by the caller's contract; `T` is a
    // pointer or a plain C value, so nothing is dropped by overwriting it.
    unsafe { out.write(value) };
    Ok(())
}

/// Checks that an out-parameter is not NULL before the work that fills it.
fn check_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    Ok(())
}

/// A new handle for C.
fn boxed<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a handle made by [`boxed`]; NULL is ignored. A panic while
/// dropping it is caught (recorded as the thread's last error).
///
/// # Safety
/// `p` is NULL or came from [`boxed`] and is not used again.
unsafe fn unbox<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: made by `Box::into_raw` and given back once, by contract.
        let b = unsafe { Box::from_raw(p) };
        run_quiet(|| drop(b));
    }
}

/// Takes the handle out of `*slot` (setting it to NULL).
///
/// # Safety
/// `slot` is NULL or points to NULL or to a handle from [`boxed`].
unsafe fn take_box<T>(slot: *mut *mut T, what: &str) -> Result<Box<T>, Failure> {
    // SAFETY: by contract, NULL or a readable pointer to a handle pointer.
    let p = unsafe { get_mut(slot, what)? };
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: a handle from `boxed`, given to us; the slot is cleared so
    // the caller cannot use it again.
    let b = unsafe { Box::from_raw(*p) };
    *p = std::ptr::null_mut();
    Ok(b)
}

/// A timeout in milliseconds: negative waits forever.
fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn backpressure(p: c_int) -> Result<Backpressure, Failure> {
    match p {
        BUSBAR_BACKPRESSURE_BLOCK => Ok(Backpressure::Block),
        BUSBAR_BACKPRESSURE_DROP_NEWEST => Ok(Backpressure::DropNewest),
        BUSBAR_BACKPRESSURE_FAIL_FAST => Ok(Backpressure::FailFast),
        other => Err(Failure::invalid(format!("no backpressure policy {other}"))),
    }
}

fn parse_op(expr: &str) -> Result<LabelOp, Failure> {
    expr.parse::<LabelOp>().map_err(|e| {
        Failure::new(
            BUSBAR_PARSE,
            format!("bad label expression: {e}\n{}", e.caret(expr)),
        )
    })
}

// ---------------------------------------------------------------------------
// Errors and version
// ---------------------------------------------------------------------------

/// The name of a status (`"TIMEOUT"` for `BUSBAR_TIMEOUT`), `"UNKNOWN"` for a
/// value that is none. A static string: never free it.
#[no_mangle]
pub extern "C" fn busbar_status_str(status: busbar_status) -> *const c_char {
    name(status).as_ptr()
}

/// The message of the last call on this thread that failed (`""` when none
/// has). Valid until the next failing call on this thread; never free it.
#[no_mangle]
pub extern "C" fn busbar_last_error() -> *const c_char {
    // The string lives in this thread's storage until it is replaced.
    with_last_error(|m| m.as_ptr())
}

/// The library's version, `"0.1.0"`. A static string.
#[no_mangle]
pub extern "C" fn busbar_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The protocol version this library speaks on the wire.
#[no_mangle]
pub extern "C" fn busbar_protocol_version() -> u16 {
    busbar::PROTOCOL_VERSION
}

// ---------------------------------------------------------------------------
// Options and join
// ---------------------------------------------------------------------------

/// Options for joining bus `bus` (1 to 64 bytes) with the comma-separated
/// label `labels` (`"renderer,gpu"`) and `token`; the rest at busbar's
/// defaults (may host the controller, same user, abstract namespace, block
/// on a full receiver, default limits). `*out` is the caller's to free with
/// `busbar_options_free`.
///
/// # Safety
/// Strings are NUL-terminated; `out` points to writable memory.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_new(
    bus: *const c_char,
    labels: *const c_char,
    token: *const c_char,
    out: *mut *mut busbar_options,
) -> busbar_status {
    run(|| {
        // SAFETY: the header's contract for the three strings.
        let (bus, labels, token) = unsafe {
            (
                text(bus, "bus")?,
                text(labels, "labels")?,
                text(token, "token")?,
            )
        };
        check_out(out, "out")?;
        let label: busbar::Label = labels.parse().unwrap_or_default();
        let o = boxed(busbar_options {
            inner: Options::new(bus, label, token),
        });
        // SAFETY: checked writable above.
        unsafe { put(out, o, "out") }
    })
}

/// Frees options (NULL is ignored).
///
/// # Safety
/// `o` is NULL or from `busbar_options_new`, and not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_free(o: *mut busbar_options) {
    // SAFETY: by contract.
    unsafe { unbox(o) }
}

/// Whether this endpoint may host the bus controller (non-zero, the
/// default) or never does (0: `busbar_join_with` then waits for one).
///
/// # Safety
/// `o` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_set_controller_affinity(
    o: *mut busbar_options,
    may_host: c_int,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get_mut(o, "options")? };
        o.inner.controller_affinity = may_host != 0;
        Ok(())
    })
}

/// Who may join the bus and link to this endpoint: `BUSBAR_ACCESS_SAME_USER`,
/// `BUSBAR_ACCESS_ANYONE`, or `BUSBAR_ACCESS_ALLOW` with `n_uids` uids and
/// `n_gids` gids (arrays may be NULL when their count is 0; they are copied).
///
/// # Safety
/// `o` is NULL or live options; the arrays hold their counts of values.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_set_access(
    o: *mut busbar_options,
    kind: c_int,
    uids: *const u32,
    n_uids: usize,
    gids: *const u32,
    n_gids: usize,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get_mut(o, "options")? };
        let list = |p: *const u32, n: usize, what: &str| -> Result<Vec<u32>, Failure> {
            if n == 0 {
                return Ok(Vec::new());
            }
            if p.is_null() {
                return Err(Failure::null(what));
            }
            // SAFETY: not NULL and `n` values long by contract.
            Ok(unsafe { std::slice::from_raw_parts(p, n) }.to_vec())
        };
        o.inner.access = match kind {
            BUSBAR_ACCESS_SAME_USER => Access::SameUser,
            BUSBAR_ACCESS_ANYONE => Access::Anyone,
            BUSBAR_ACCESS_ALLOW => Access::Allow {
                uids: list(uids, n_uids, "uids")?,
                gids: list(gids, n_gids, "gids")?,
            },
            other => return Err(Failure::invalid(format!("no access kind {other}"))),
        };
        Ok(())
    })
}

/// Where the bus's sockets live: `BUSBAR_NAMESPACE_ABSTRACT` (the default;
/// `dir` must be NULL) or `BUSBAR_NAMESPACE_FILESYSTEM` in directory `dir`
/// (NULL: `$XDG_RUNTIME_DIR/busbar/<bus>/`). Every endpoint of a bus must
/// give the same.
///
/// # Safety
/// `o` is NULL or live options; `dir` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_set_namespace(
    o: *mut busbar_options,
    kind: c_int,
    dir: *const c_char,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get_mut(o, "options")? };
        let dir = if dir.is_null() {
            None
        } else {
            // SAFETY: not NULL, NUL-terminated by contract.
            Some(PathBuf::from(unsafe { text(dir, "dir")? }))
        };
        o.inner.namespace = match (kind, dir) {
            (BUSBAR_NAMESPACE_ABSTRACT, None) => Namespace::Abstract,
            (BUSBAR_NAMESPACE_ABSTRACT, Some(_)) => {
                return Err(Failure::invalid(
                    "the abstract namespace takes no directory",
                ))
            }
            (BUSBAR_NAMESPACE_FILESYSTEM, dir) => Namespace::Filesystem(dir),
            (other, _) => return Err(Failure::invalid(format!("no namespace kind {other}"))),
        };
        Ok(())
    })
}

/// What a send does when a receiver is full, unless the selector says:
/// `BUSBAR_BACKPRESSURE_BLOCK` (default), `_DROP_NEWEST` or `_FAIL_FAST`.
///
/// # Safety
/// `o` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_set_backpressure(
    o: *mut busbar_options,
    policy: c_int,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get_mut(o, "options")? };
        o.inner.backpressure = backpressure(policy)?;
        Ok(())
    })
}

/// Copies the options' size limits into `*out`.
///
/// # Safety
/// `o` is NULL or live options; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_get_limits(
    o: *const busbar_options,
    out: *mut busbar_limits,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get(o, "options")? };
        let l = &o.inner.limits;
        let limits = busbar_limits {
            max_endpoints: l.max_endpoints as u64,
            max_payload: l.max_payload,
            max_pending_bytes: l.max_pending_bytes as u64,
            max_pending_descriptors: l.max_pending_descriptors as u64,
            link_buffer: l.link_buffer as u64,
        };
        // SAFETY: by contract.
        unsafe { put(out, limits, "out") }
    })
}

/// Sets the options' size limits (read them with `busbar_options_get_limits`
/// first and change what you need).
///
/// # Safety
/// `o` is NULL or live options; `limits` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn busbar_options_set_limits(
    o: *mut busbar_options,
    limits: *const busbar_limits,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (o, l) = unsafe { (get_mut(o, "options")?, *get(limits, "limits")?) };
        let size = |v: u64, what: &str| {
            usize::try_from(v).map_err(|_| Failure::invalid(format!("{what} {v} is too large")))
        };
        o.inner.limits = busbar::Limits {
            max_endpoints: size(l.max_endpoints, "max_endpoints")?,
            max_payload: l.max_payload,
            max_pending_bytes: size(l.max_pending_bytes, "max_pending_bytes")?,
            max_pending_descriptors: size(l.max_pending_descriptors, "max_pending_descriptors")?,
            link_buffer: size(l.link_buffer, "link_buffer")?,
        };
        Ok(())
    })
}

fn join_options(
    options: Options,
    timeout_ms: i64,
) -> Result<(*mut busbar_sender, *mut busbar_receiver), Failure> {
    let (tx, rx) = busbar::join::<BytesMessage, BytesMessage>(options, timeout(timeout_ms))?;
    let receiver = busbar_receiver {
        waker: rx.waker(),
        id: rx.id().0,
        fd: AtomicI32::new(-1),
        rx: UnsafeCell::new(Some(rx)),
        busy: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    };
    Ok((boxed(busbar_sender { tx }), boxed(receiver)))
}

/// Joins bus `bus` with the comma-separated label `labels` and `token`,
/// waiting up to `timeout_ms` for the bus controller (negative: as long as
/// it takes), with default options. On success `*sender` and `*receiver` are
/// the caller's, each to free with its own `_free`.
///
/// # Safety
/// Strings NUL-terminated; `sender` and `receiver` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_join(
    bus: *const c_char,
    labels: *const c_char,
    token: *const c_char,
    timeout_ms: i64,
    sender: *mut *mut busbar_sender,
    receiver: *mut *mut busbar_receiver,
) -> busbar_status {
    run(|| {
        // SAFETY: the header's contract for the three strings.
        let (bus, labels, token) = unsafe {
            (
                text(bus, "bus")?,
                text(labels, "labels")?,
                text(token, "token")?,
            )
        };
        check_out(sender, "sender")?;
        check_out(receiver, "receiver")?;
        let label: busbar::Label = labels.parse().unwrap_or_default();
        let (s, r) = join_options(Options::new(bus, label, token), timeout_ms)?;
        // SAFETY: both checked not NULL, writable by contract.
        unsafe {
            put(sender, s, "sender")?;
            put(receiver, r, "receiver")
        }
    })
}

/// Like `busbar_join`, with options (which stay the caller's).
///
/// # Safety
/// `options` NULL or live; `sender` and `receiver` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_join_with(
    options: *const busbar_options,
    timeout_ms: i64,
    sender: *mut *mut busbar_sender,
    receiver: *mut *mut busbar_receiver,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let o = unsafe { get(options, "options")? };
        check_out(sender, "sender")?;
        check_out(receiver, "receiver")?;
        let (s, r) = join_options(o.inner.clone(), timeout_ms)?;
        // SAFETY: both checked not NULL, writable by contract.
        unsafe {
            put(sender, s, "sender")?;
            put(receiver, r, "receiver")
        }
    })
}

// ---------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------

/// Frees a sender (NULL is ignored). Other threads must be done with it.
///
/// # Safety
/// `s` is NULL or from this library, and not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_sender_free(s: *mut busbar_sender) {
    // SAFETY: by contract.
    unsafe { unbox(s) }
}

/// Another handle to the same sender (freed on its own).
///
/// # Safety
/// `s` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_sender_clone(
    s: *const busbar_sender,
    out: *mut *mut busbar_sender,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let s = unsafe { get(s, "sender")? };
        check_out(out, "out")?;
        let copy = boxed(busbar_sender { tx: s.tx.clone() });
        // SAFETY: checked.
        unsafe { put(out, copy, "out") }
    })
}

/// This endpoint's id (0 for NULL).
///
/// # Safety
/// `s` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_sender_id(s: *const busbar_sender) -> u64 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(s, "sender")? }.tx.id().0)
    })
}

/// 1 when this endpoint hosts the bus controller now, else 0.
///
/// # Safety
/// `s` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_sender_is_controller(s: *const busbar_sender) -> c_int {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(c_int::from(unsafe { get(s, "sender")? }.tx.is_controller()))
    })
}

thread_local! {
    /// The last `to` given to `busbar_send_bytes` on this thread and its
    /// selector, so that a stream to one label is parsed once.
    static LAST_TO: RefCell<Option<(Vec<u8>, bool, Selector)>> = const { RefCell::new(None) };
}

/// Whether the NUL-terminated string at `to` is `text`, read byte by byte
/// up to the first difference (no `strlen` of `to` first, so a stream to
/// one label costs a few compares per message).
///
/// # Safety
/// `to` is not NULL and points to a NUL-terminated string.
unsafe fn same_text(text: &[u8], to: *const c_char) -> bool {
    for (i, &b) in text.iter().enumerate() {
        // SAFETY: the bytes before `i` matched `text`, which holds no NUL
        // (it came from a C string), so `to` has not ended before `i`.
        if unsafe { *to.add(i) } as u8 != b {
            return false;
        }
    }
    // SAFETY: as above: `to[..len]` matched bytes that are not NUL.
    unsafe { *to.add(text.len()) == 0 }
}

/// The selector for `busbar_send_bytes`: the last one made on this thread
/// when `to` and `multicast` are the same, a newly parsed one otherwise.
///
/// # Safety
/// `to` is not NULL and points to a NUL-terminated string.
unsafe fn selector_for(to: *const c_char, multicast: bool) -> Result<Selector, Failure> {
    LAST_TO.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((text, m, selector)) = last.as_ref() {
            // SAFETY: `to` is a NUL-terminated string, by contract.
            if *m == multicast && unsafe { same_text(text, to) } {
                return Ok(selector.clone());
            }
        }
        // SAFETY: not NULL, NUL-terminated, by contract.
        let to = unsafe { CStr::from_ptr(to) };
        let expr = to
            .to_str()
            .map_err(|_| Failure::invalid("to is not UTF-8"))?;
        let op = parse_op(expr)?;
        let selector = if multicast {
            Selector::multicast(op)
        } else {
            Selector::unicast(op)
        };
        *last = Some((to.to_bytes().to_vec(), multicast, selector.clone()));
        Ok(selector)
    })
}

/// Sends `len` bytes at `data` with format tag `format` to the endpoints the
/// label expression `to` picks (`"renderer & !gpu"`): one of them, or with
/// `multicast` non-zero every one. The bytes are copied; they stay the
/// caller's. Waits while a receiver is full (the endpoint's backpressure).
/// `BUSBAR_NO_ROUTE` when a unicast matches nobody. Thread-safe.
///
/// # Safety
/// `s` NULL or live; `to` NUL-terminated; `data` NULL (with `len` 0) or `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn busbar_send_bytes(
    s: *const busbar_sender,
    to: *const c_char,
    multicast: c_int,
    format: u16,
    data: *const c_void,
    len: usize,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, data) = unsafe { (get(s, "sender")?, bytes(data, len, "data")?) };
        if to.is_null() {
            return Err(Failure::null("to"));
        }
        // SAFETY: not NULL, NUL-terminated by contract.
        let selector = unsafe { selector_for(to, multicast != 0)? };
        s.tx.send(Message::new(selector, BytesMessage::new(format, data)))?;
        Ok(())
    })
}

/// How a send of a `busbar_message` waits for a full receiver.
enum Call {
    Send,
    Timeout(Duration),
    Try,
}

/// The Rust message to send for `m`: its bytes copied, its descriptors
/// duplicated and its regions counted once more, so that `m` is untouched
/// when the send fails.
fn outgoing(m: &busbar_message) -> Result<Message<BytesMessage>, Failure> {
    let mut out = Message::new(m.msg.selector.clone(), m.msg.payload.clone());
    for o in m.objects().iter().flatten() {
        let copy = o.try_clone().map_err(|e| {
            Failure::new(
                BUSBAR_IO,
                format!("cannot duplicate fd {}: {e}", o.as_raw()),
            )
        })?;
        out.objects.push(copy);
    }
    for r in m.regions().iter().flatten() {
        out.memory_regions.push(r.region.clone());
    }
    Ok(out)
}

/// # Safety
/// `s` NULL or live; `msg` NULL or points to NULL or a live message.
unsafe fn send_message(
    s: *const busbar_sender,
    msg: *mut *mut busbar_message,
    call: Call,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, slot) = unsafe { (get(s, "sender")?, get_mut(msg, "msg")?) };
        // SAFETY: NULL (checked) or a live message by contract.
        let m = unsafe { get(*slot, "*msg")? };
        let out = outgoing(m)?;
        match call {
            Call::Send => s.tx.send(out),
            Call::Timeout(d) => s.tx.send_timeout(out, d),
            Call::Try => s.tx.try_send(out),
        }?;
        // SAFETY: sent: the message is consumed, as documented.
        drop(unsafe { take_box(msg, "msg")? });
        Ok(())
    })
}

/// Sends `*msg` (see `busbar_message_new`) as its selector says. On success
/// the message is consumed: it is freed and `*msg` set to NULL. On failure
/// `*msg` is untouched and still the caller's: its descriptors are not
/// closed, so it can be sent again or freed. (To keep it, busbar sends a
/// copy of its bytes and duplicates of its descriptors; `busbar_send_bytes`
/// copies the bytes once and nothing more. A region's count includes that
/// duplicate until `busbar_send` returns: a receiver that counts at once
/// may see one handle more.) Thread-safe.
///
/// # Safety
/// `s` NULL or live; `msg` NULL or points to NULL or a live message.
#[no_mangle]
pub unsafe extern "C" fn busbar_send(
    s: *const busbar_sender,
    msg: *mut *mut busbar_message,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { send_message(s, msg, Call::Send) }
}

/// `busbar_send` that waits at most `timeout_ms` for a full receiver
/// (then `BUSBAR_FULL`; a multicast reached the receivers that had room).
/// A negative timeout waits as long as it takes.
///
/// # Safety
/// As `busbar_send`.
#[no_mangle]
pub unsafe extern "C" fn busbar_send_timeout(
    s: *const busbar_sender,
    msg: *mut *mut busbar_message,
    timeout_ms: i64,
) -> busbar_status {
    let call = match timeout(timeout_ms) {
        Some(d) => Call::Timeout(d),
        None => Call::Send,
    };
    // SAFETY: the same contract.
    unsafe { send_message(s, msg, call) }
}

/// `busbar_send` that never waits for a full receiver (`BUSBAR_FULL`).
///
/// # Safety
/// As `busbar_send`.
#[no_mangle]
pub unsafe extern "C" fn busbar_try_send(
    s: *const busbar_sender,
    msg: *mut *mut busbar_message,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { send_message(s, msg, Call::Try) }
}

/// Sends `*msg` as a request (its selector must be unicast or an endpoint
/// id) and waits up to `timeout_ms` (negative: forever) for the answer,
/// which becomes `*answer` (the caller's to free). The answer never reaches
/// this endpoint's receiver. On success `*msg` is consumed and set to NULL;
/// on failure it stays the caller's. `BUSBAR_RESPONDER_GONE` when the
/// endpoint asked leaves before it answers. Thread-safe.
///
/// # Safety
/// `s` NULL or live; `msg` as in `busbar_send`; `answer` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_request(
    s: *const busbar_sender,
    msg: *mut *mut busbar_message,
    timeout_ms: i64,
    answer: *mut *mut busbar_message,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, slot) = unsafe { (get(s, "sender")?, get_mut(msg, "msg")?) };
        // SAFETY: NULL (checked) or a live message by contract.
        let m = unsafe { get(*slot, "*msg")? };
        check_out(answer, "answer")?;
        let out = outgoing(m)?;
        let wait = timeout(timeout_ms).unwrap_or(Duration::MAX);
        let got = s.tx.request::<BytesMessage>(out, wait)?;
        // SAFETY: sent and answered: the message is consumed, as documented.
        drop(unsafe { take_box(msg, "msg")? });
        let got = std::mem::ManuallyDrop::new(got);
        // SAFETY: `got` is never dropped, so the handle takes the message
        // over; `answer` checked.
        unsafe { put(answer, message_handle(&*got), "answer") }
    })
}

/// Answers the request `request` (a received message for which
/// `busbar_message_is_request` is 1) with `len` bytes at `data` and
/// `format`; the bytes are copied. `BUSBAR_NOT_A_REQUEST` for any other
/// message, `BUSBAR_NO_ROUTE` when the requester has left. Each request
/// takes one answer.
///
/// # Safety
/// `s`, `request` NULL or live; `data` NULL (with `len` 0) or `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn busbar_reply(
    s: *const busbar_sender,
    request: *const busbar_message,
    format: u16,
    data: *const c_void,
    len: usize,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, m, data) = unsafe {
            (
                get(s, "sender")?,
                get(request, "request")?,
                bytes(data, len, "data")?,
            )
        };
        let handle = m.msg.reply_handle().ok_or_else(|| {
            Failure::new(
                BUSBAR_NOT_A_REQUEST,
                "send: the message is not a request: nobody waits for an answer to it",
            )
        })?;
        s.tx.reply_with(&handle, BytesMessage::new(format, data))?;
        Ok(())
    })
}

/// Answers the request `handle` stands for, as `busbar_reply` does.
///
/// # Safety
/// `s`, `handle` NULL or live; `data` NULL (with `len` 0) or `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn busbar_reply_with(
    s: *const busbar_sender,
    handle: *const busbar_reply_handle,
    format: u16,
    data: *const c_void,
    len: usize,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, h, data) = unsafe {
            (
                get(s, "sender")?,
                get(handle, "handle")?,
                bytes(data, len, "data")?,
            )
        };
        s.tx.reply_with(&h.handle, BytesMessage::new(format, data))?;
        Ok(())
    })
}

/// Frees a reply handle (NULL is ignored).
///
/// # Safety
/// `h` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_reply_handle_free(h: *mut busbar_reply_handle) {
    // SAFETY: by contract.
    unsafe { unbox(h) }
}

/// Lends `len` bytes of shared memory to fill in place (`busbar_loan_data`)
/// and send with `busbar_send_loan`: the zero-copy send, worth it for large
/// payloads. `*out` is the caller's (free it unsent with `busbar_loan_free`).
///
/// # Safety
/// `s` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_loan_new(
    s: *const busbar_sender,
    format: u16,
    len: usize,
    out: *mut *mut busbar_loan,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let s = unsafe { get(s, "sender")? };
        check_out(out, "out")?;
        let loan = s.tx.loan(format, len)?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_loan { loan }), "out") }
    })
}

/// The loan's memory to write into, `*len` bytes long (NULL for a NULL
/// loan). Valid until the loan is sent or freed.
///
/// # Safety
/// `l` NULL or live; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_loan_data(l: *mut busbar_loan, len: *mut usize) -> *mut u8 {
    run_or(std::ptr::null_mut(), || {
        // SAFETY: by contract.
        let l = unsafe { get_mut(l, "loan")? };
        let slice = l.loan.as_mut_slice();
        if !len.is_null() {
            // SAFETY: not NULL, writable by contract.
            unsafe { put(len, slice.len(), "len")? };
        }
        Ok(slice.as_mut_ptr())
    })
}

/// Sends the loan `*loan` to the endpoints `selector` picks (every receiver
/// maps the same memory). The loan is consumed whatever the outcome: `*loan`
/// is set to NULL (on failure the memory goes back to the pool).
///
/// # Safety
/// `s`, `selector` NULL or live; `loan` NULL or points to NULL or a live loan.
#[no_mangle]
pub unsafe extern "C" fn busbar_send_loan(
    s: *const busbar_sender,
    selector: *const busbar_selector,
    loan: *mut *mut busbar_loan,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (s, sel) = unsafe { (get(s, "sender")?, get(selector, "selector")?) };
        // SAFETY: by contract.
        let l = unsafe { take_box(loan, "loan")? };
        s.tx.send_loan(sel.selector.clone(), l.loan)?;
        Ok(())
    })
}

/// Frees a loan that was not sent (NULL is ignored).
///
/// # Safety
/// `l` NULL or from `busbar_loan`, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_loan_free(l: *mut busbar_loan) {
    // SAFETY: by contract.
    unsafe { unbox(l) }
}

// ---------------------------------------------------------------------------
// Directory
// ---------------------------------------------------------------------------

/// A copy of the bus directory as this endpoint knows it now: every
/// endpoint, this one included. `*out` is the caller's to free.
///
/// # Safety
/// `s` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_endpoints(
    s: *const busbar_sender,
    out: *mut *mut busbar_directory,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let s = unsafe { get(s, "sender")? };
        check_out(out, "out")?;
        let list = s.tx.endpoints();
        let labels = list
            .iter()
            .map(|e| {
                let joined = e.label.iter().collect::<Vec<_>>().join(",");
                CString::new(joined.replace('\0', "")).unwrap_or_default()
            })
            .collect();
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_directory { list, labels }), "out") }
    })
}

/// How many endpoints the bus has, as this endpoint knows it (0 for NULL).
///
/// # Safety
/// `s` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_endpoint_count(s: *const busbar_sender) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(s, "sender")? }.tx.endpoint_count())
    })
}

/// The number of endpoints in a directory (0 for NULL).
///
/// # Safety
/// `d` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_directory_len(d: *const busbar_directory) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(d, "directory")? }.list.len())
    })
}

/// Fills `*out` with endpoint `index` of the directory
/// (`BUSBAR_INVALID_ARGUMENT` past the end). `out->label` is borrowed from
/// the directory.
///
/// # Safety
/// `d` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_directory_get(
    d: *const busbar_directory,
    index: usize,
    out: *mut busbar_endpoint_info,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let d = unsafe { get(d, "directory")? };
        let (e, label) = d.list.get(index).zip(d.labels.get(index)).ok_or_else(|| {
            Failure::invalid(format!("index {index} is past the directory's end"))
        })?;
        let info = busbar_endpoint_info {
            id: e.id.0,
            pid: e.pid,
            uid: e.uid,
            is_controller: c_int::from(e.is_controller),
            queued_bytes: e.queued_bytes,
            dropped: e.dropped,
            sent_per_sec: e.sent_per_sec,
            received_per_sec: e.received_per_sec,
            label: label.as_ptr(),
        };
        // SAFETY: by contract.
        unsafe { put(out, info, "out") }
    })
}

/// Frees a directory (NULL is ignored); its labels go with it.
///
/// # Safety
/// `d` NULL or from `busbar_endpoints`, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_directory_free(d: *mut busbar_directory) {
    // SAFETY: by contract.
    unsafe { unbox(d) }
}

// ---------------------------------------------------------------------------
// Label expressions and selectors
// ---------------------------------------------------------------------------

/// Parses a label expression: `renderer & (gpu | !cpu)`, `"any name"`,
/// `true`, `false` (`!` binds tighter than `&`, `&` tighter than `|`).
/// `BUSBAR_PARSE` with the bad character shown in `busbar_last_error`.
///
/// # Safety
/// `expr` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_parse(
    expr: *const c_char,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let expr = unsafe { text(expr, "expr")? };
        check_out(out, "out")?;
        let op = parse_op(expr)?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_label_op { op }), "out") }
    })
}

/// The expression that matches endpoints whose label holds `name`.
///
/// # Safety
/// `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_leaf(
    name: *const c_char,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let name = unsafe { text(name, "name")? };
        check_out(out, "out")?;
        let op = LabelOp::leaf(name);
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_label_op { op }), "out") }
    })
}

/// The expression `true` (non-zero `value`, matches every endpoint) or `false`.
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_const(
    value: c_int,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    run(|| {
        let op = LabelOp::from(value != 0);
        // SAFETY: by contract.
        unsafe { put(out, boxed(busbar_label_op { op }), "out") }
    })
}

/// `!*a`. Takes `*a` (set to NULL) and gives the result in `*out`.
///
/// # Safety
/// `a` NULL or points to NULL or a live expression; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_not(
    a: *mut *mut busbar_label_op,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    run(|| {
        check_out(out, "out")?;
        // SAFETY: by contract.
        let a = unsafe { take_box(a, "a")? };
        let op = !a.op;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_label_op { op }), "out") }
    })
}

/// # Safety
/// As `busbar_label_op_and`.
unsafe fn combine(
    a: *mut *mut busbar_label_op,
    b: *mut *mut busbar_label_op,
    out: *mut *mut busbar_label_op,
    and: bool,
) -> busbar_status {
    run(|| {
        check_out(out, "out")?;
        // SAFETY: by contract; both checked before either is taken.
        unsafe {
            if get(a, "a")?.is_null() {
                return Err(Failure::null("*a"));
            }
            if get(b, "b")?.is_null() {
                return Err(Failure::null("*b"));
            }
        }
        // SAFETY: by contract.
        let (a, b) = unsafe { (take_box(a, "a")?, take_box(b, "b")?) };
        let op = if and { a.op.and(b.op) } else { a.op.or(b.op) };
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_label_op { op }), "out") }
    })
}

/// `*a & *b`. Takes both (set to NULL) and gives the result in `*out`.
///
/// # Safety
/// `a`, `b` NULL or point to NULL or live expressions; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_and(
    a: *mut *mut busbar_label_op,
    b: *mut *mut busbar_label_op,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { combine(a, b, out, true) }
}

/// `*a | *b`. Takes both (set to NULL) and gives the result in `*out`.
///
/// # Safety
/// As `busbar_label_op_and`.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_or(
    a: *mut *mut busbar_label_op,
    b: *mut *mut busbar_label_op,
    out: *mut *mut busbar_label_op,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { combine(a, b, out, false) }
}

/// The expression as text, in the syntax `busbar_label_op_parse` reads; a
/// new string for the caller to free with `busbar_string_free` (NULL for
/// NULL).
///
/// # Safety
/// `op` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_to_string(op: *const busbar_label_op) -> *mut c_char {
    run_or(std::ptr::null_mut(), || {
        // SAFETY: by contract.
        let op = unsafe { get(op, "op")? };
        let s = CString::new(op.op.to_string().replace('\0', "")).unwrap_or_default();
        Ok(s.into_raw())
    })
}

/// Frees a string this library returned (NULL is ignored).
///
/// # Safety
/// `s` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: made by `CString::into_raw` here, given back once.
        let s = unsafe { CString::from_raw(s) };
        run_quiet(|| drop(s));
    }
}

/// Frees an expression (NULL is ignored).
///
/// # Safety
/// `op` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_label_op_free(op: *mut busbar_label_op) {
    // SAFETY: by contract.
    unsafe { unbox(op) }
}

/// # Safety
/// `op` NULL or points to NULL or a live expression; `out` writable.
unsafe fn selector_of(
    op: *mut *mut busbar_label_op,
    out: *mut *mut busbar_selector,
    multicast: bool,
) -> busbar_status {
    run(|| {
        check_out(out, "out")?;
        // SAFETY: by contract.
        let op = unsafe { take_box(op, "op")? }.op;
        let selector = if multicast {
            Selector::multicast(op)
        } else {
            Selector::unicast(op)
        };
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_selector { selector }), "out") }
    })
}

/// A selector for exactly one endpoint matching `*op` (round-robin among
/// the matches). Takes `*op` (set to NULL). No ttl: `BUSBAR_NO_ROUTE` when
/// nobody matches.
///
/// # Safety
/// `op` NULL or points to NULL or a live expression; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_unicast(
    op: *mut *mut busbar_label_op,
    out: *mut *mut busbar_selector,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { selector_of(op, out, false) }
}

/// A selector for every endpoint matching `*op` (the sender too when it
/// matches). Takes `*op` (set to NULL). A multicast nobody matches is no error.
///
/// # Safety
/// As `busbar_selector_unicast`.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_multicast(
    op: *mut *mut busbar_label_op,
    out: *mut *mut busbar_selector,
) -> busbar_status {
    // SAFETY: the same contract.
    unsafe { selector_of(op, out, true) }
}

/// A unicast (`multicast` 0) or multicast selector for the label
/// expression `expr`, parsed (`BUSBAR_PARSE` when it does not).
///
/// # Safety
/// `expr` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_parse(
    expr: *const c_char,
    multicast: c_int,
    out: *mut *mut busbar_selector,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let expr = unsafe { text(expr, "expr")? };
        check_out(out, "out")?;
        let op = parse_op(expr)?;
        let selector = if multicast != 0 {
            Selector::multicast(op)
        } else {
            Selector::unicast(op)
        };
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_selector { selector }), "out") }
    })
}

/// A selector for exactly the endpoint with id `id` (`BUSBAR_NO_ROUTE` once
/// it has left).
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_endpoint(
    id: u64,
    out: *mut *mut busbar_selector,
) -> busbar_status {
    run(|| {
        let selector = Selector::endpoint(busbar::EndpointId(id));
        // SAFETY: by contract.
        unsafe { put(out, boxed(busbar_selector { selector }), "out") }
    })
}

/// How long a message nobody matches yet waits, in the sender, for a match
/// to join (0, the default: decide at once).
///
/// # Safety
/// `sel` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_set_ttl(
    sel: *mut busbar_selector,
    ttl_ms: u64,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let sel = unsafe { get_mut(sel, "selector")? };
        sel.selector = sel.selector.clone().ttl(Duration::from_millis(ttl_ms));
        Ok(())
    })
}

/// The backpressure policy for this selector's messages (overrides the
/// endpoint's): `BUSBAR_BACKPRESSURE_*`.
///
/// # Safety
/// `sel` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_set_backpressure(
    sel: *mut busbar_selector,
    policy: c_int,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let sel = unsafe { get_mut(sel, "selector")? };
        sel.selector = sel.selector.clone().backpressure(backpressure(policy)?);
        Ok(())
    })
}

/// Makes a multicast that nobody matches fail with `BUSBAR_NO_ROUTE`.
///
/// # Safety
/// `sel` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_require_receiver(
    sel: *mut busbar_selector,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let sel = unsafe { get_mut(sel, "selector")? };
        sel.selector = sel.selector.clone().require_receiver();
        Ok(())
    })
}

/// The selector as text (`unicast(renderer & !gpu)`); a new string to free
/// with `busbar_string_free` (NULL for NULL).
///
/// # Safety
/// `sel` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_to_string(sel: *const busbar_selector) -> *mut c_char {
    run_or(std::ptr::null_mut(), || {
        // SAFETY: by contract.
        let sel = unsafe { get(sel, "selector")? };
        let s = CString::new(sel.selector.to_string().replace('\0', "")).unwrap_or_default();
        Ok(s.into_raw())
    })
}

/// Frees a selector (NULL is ignored).
///
/// # Safety
/// `sel` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_selector_free(sel: *mut busbar_selector) {
    // SAFETY: by contract.
    unsafe { unbox(sel) }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// The storage of one freed message, kept per thread by
/// `busbar_message_free` for the next message received on that thread: a
/// stream of `busbar_recv` + `busbar_message_free` allocates no handles.
/// Null when there is none; what it points to holds no message (its
/// contents were dropped), only the allocation.
struct Spare(Cell<*mut MaybeUninit<busbar_message>>);

impl Spare {
    /// Keeps `storage` when the slot is empty (`None`), or hands it back.
    fn keep(
        &self,
        storage: *mut MaybeUninit<busbar_message>,
    ) -> Option<*mut MaybeUninit<busbar_message>> {
        if self.0.get().is_null() {
            self.0.set(storage);
            None
        } else {
            Some(storage)
        }
    }

    /// The kept storage, if any, leaving the slot empty.
    fn take(&self) -> Option<Box<MaybeUninit<busbar_message>>> {
        let p = self.0.replace(std::ptr::null_mut());
        // SAFETY: not NULL, so the storage of a `Box<busbar_message>` whose
        // contents were dropped, put here by `keep` and owned by the slot
        // alone: the same layout as a `Box<MaybeUninit<busbar_message>>`.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        drop(self.take());
    }
}

thread_local! {
    static SPARE: Spare = const { Spare(Cell::new(std::ptr::null_mut())) };
}

/// Hands a receive's outcome to C: the message into a new handle at
/// `*out`, or the error on.
///
/// # Safety
/// `out` is not NULL and writable.
#[inline(always)]
unsafe fn hand_out(
    got: Result<Message<BytesMessage>, RecvError>,
    out: *mut *mut busbar_message,
) -> Result<(), RecvError> {
    if got.is_err() {
        return got.map(drop);
    }
    // Read in place rather than moved out of the `Result` first: the
    // message is copied once, from where busbar returned it into the handle.
    let got = std::mem::ManuallyDrop::new(got);
    if let Ok(m) = &*got {
        // SAFETY: `m` is owned by `got`, which is never dropped: the
        // handle takes it over; `out` by the caller's contract.
        unsafe { out.write(message_handle(m)) };
    }
    Ok(())
}

/// A handle for the received message at `m`, whose ownership it takes
/// over, in the storage a freed message left on this thread when there
/// is some (no allocation), in a new box otherwise. Only a message that
/// carries descriptors or regions is taken apart (most carry neither).
///
/// # Safety
/// `m` is a live message that nobody uses or drops after this call.
unsafe fn message_handle(m: *const Message<BytesMessage>) -> *mut busbar_message {
    // SAFETY: live, by contract.
    let plain = unsafe { (*m).objects.is_empty() && (*m).memory_regions.is_empty() };
    if !plain {
        // SAFETY: ours to take, by contract.
        return boxed(with_attachments(unsafe { std::ptr::read(m) }));
    }
    let storage = SPARE
        .try_with(Spare::take)
        .ok()
        .flatten()
        .unwrap_or_else(Box::new_uninit);
    let p = Box::into_raw(storage).cast::<busbar_message>();
    // SAFETY: `p` is the storage of a box for a `busbar_message`, written
    // here field by field (the message copied once, straight into it, and
    // ours to take by contract); then it holds a whole `busbar_message`,
    // freed by `busbar_message_free` as one made by `boxed`.
    unsafe {
        std::ptr::copy_nonoverlapping(m, std::ptr::addr_of_mut!((*p).msg), 1);
        std::ptr::addr_of_mut!((*p).attached).write(None);
    }
    p
}

/// A received message's handle with its descriptors and regions in C's form.
#[cold]
fn with_attachments(mut m: Message<BytesMessage>) -> busbar_message {
    let objects = std::mem::take(&mut m.objects)
        .into_iter()
        .map(Some)
        .collect();
    let regions = std::mem::take(&mut m.memory_regions)
        .into_iter()
        .map(|region| Some(Box::new(busbar_region_view { region })))
        .collect();
    busbar_message {
        msg: m,
        attached: Some(Box::new(Attached { objects, regions })),
    }
}

/// A message to send with `busbar_send`: `selector` (copied), format tag
/// `format` and `len` bytes at `data` (copied). Add descriptors with
/// `busbar_message_add_fd` and regions with `busbar_message_add_region`.
/// `*out` is the caller's until a send succeeds or `busbar_message_free`.
///
/// # Safety
/// `selector` NULL or live; `data` NULL (with `len` 0) or `len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_new(
    selector: *const busbar_selector,
    format: u16,
    data: *const c_void,
    len: usize,
    out: *mut *mut busbar_message,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let (sel, data) = unsafe { (get(selector, "selector")?, bytes(data, len, "data")?) };
        check_out(out, "out")?;
        let m = busbar_message::plain(Message::new(
            sel.selector.clone(),
            BytesMessage::new(format, data),
        ));
        // SAFETY: checked.
        unsafe { put(out, boxed(m), "out") }
    })
}

/// Frees a message (NULL is ignored): closes the descriptors it still holds
/// and drops its regions' counts.
///
/// # Safety
/// `m` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_free(m: *mut busbar_message) {
    if m.is_null() {
        return;
    }
    // A panic in a drop is caught (and the storage then leaked).
    run_quiet(|| {
        // SAFETY: by contract a live message from this library (made by
        // `boxed` or `message_handle`), given back once: its contents are
        // dropped here (descriptors closed, region counts dropped) and its
        // storage is either kept for this thread's next received message
        // or freed, never used as a message again before it is written anew.
        unsafe {
            std::ptr::drop_in_place(m);
            let storage = m.cast::<MaybeUninit<busbar_message>>();
            if let Some(unkept) = SPARE.try_with(|s| s.keep(storage)).unwrap_or(Some(storage)) {
                drop(Box::from_raw(unkept));
            }
        }
    });
}

/// The message's bytes, `*len` of them (`len` may be NULL); borrowed from
/// the message: valid until it is freed or sent. NULL for a NULL message.
///
/// # Safety
/// `m` NULL or live; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_data(
    m: *const busbar_message,
    len: *mut usize,
) -> *const u8 {
    run_or(std::ptr::null(), || {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        if !len.is_null() {
            // SAFETY: not NULL, writable by contract.
            unsafe { put(len, m.msg.payload.data.len(), "len")? };
        }
        Ok(m.msg.payload.data.as_ptr())
    })
}

/// The message's format tag (0 for NULL).
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_format(m: *const busbar_message) -> u16 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.msg.payload.format)
    })
}

/// The id of the endpoint that sent a received message (0 for a message
/// made here, or NULL).
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_source(m: *const busbar_message) -> u64 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.msg.source.0)
    })
}

/// 1 when the message is a request its sender waits for an answer to
/// (answer it with `busbar_reply`), else 0.
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_is_request(m: *const busbar_message) -> c_int {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(c_int::from(unsafe { get(m, "message")? }.msg.is_request()))
    })
}

/// The selector the message was sent with, as text (`multicast(renderer)`);
/// a new string to free with `busbar_string_free` (NULL for NULL).
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_selector_string(m: *const busbar_message) -> *mut c_char {
    run_or(std::ptr::null_mut(), || {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        let s = CString::new(m.msg.selector.to_string().replace('\0', "")).unwrap_or_default();
        Ok(s.into_raw())
    })
}

/// Attaches the open descriptor `fd`. On success the message owns it (it is
/// closed when the message is freed, or travels with a successful send); on
/// failure it stays the caller's.
///
/// # Safety
/// `m` NULL or live; `fd` an open descriptor the caller owns.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_add_fd(m: *mut busbar_message, fd: c_int) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        if fd < 0 {
            return Err(Failure::invalid(format!("fd {fd} is not a descriptor")));
        }
        // SAFETY: an open descriptor whose ownership the caller hands over.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        m.attached().objects.push(Some(Object::new(owned)));
        Ok(())
    })
}

/// How many descriptors the message holds, taken ones included (their
/// slots stay, so indexes do not move).
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_fd_count(m: *const busbar_message) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.objects().len())
    })
}

/// Descriptor `index`, borrowed: still the message's (do not close it).
/// -1 when there is none there (taken, out of range, NULL message).
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_fd(m: *const busbar_message, index: usize) -> c_int {
    run_or(-1, || {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        Ok(m.objects()
            .get(index)
            .and_then(|o| o.as_ref())
            .map_or(-1, |o| o.as_raw()))
    })
}

/// Takes descriptor `index` out of the message: the caller owns (and
/// closes) it. -1 when there is none there.
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_take_fd(m: *mut busbar_message, index: usize) -> c_int {
    run_or(-1, || {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        Ok(m.objects_mut()
            .get_mut(index)
            .and_then(Option::take)
            .map_or(-1, |o| o.into_fd().into_raw_fd()))
    })
}

/// Attaches a region: takes `*region` (set to NULL); the message holds it
/// from then on. Keep a handle of your own with `busbar_region_clone` first.
///
/// # Safety
/// `m` NULL or live; `region` NULL or points to NULL or a live region.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_add_region(
    m: *mut busbar_message,
    region: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        // SAFETY: by contract.
        let r = unsafe { take_box(region, "region")? };
        m.attached()
            .regions
            .push(Some(Box::new(busbar_region_view { region: r.region })));
        Ok(())
    })
}

/// How many regions the message holds, taken ones included.
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_region_count(m: *const busbar_message) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.regions().len())
    })
}

/// Region `index`, borrowed from the message (no `free`): valid while the
/// message lives and the region is not taken; adding regions to the message
/// does not move it. NULL when there is none.
///
/// # Safety
/// `m` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_region(
    m: *const busbar_message,
    index: usize,
) -> *const busbar_region_view {
    run_or(std::ptr::null(), || {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        Ok(m.regions()
            .get(index)
            .and_then(|r| r.as_ref())
            .map_or(std::ptr::null(), |r| &**r as *const busbar_region_view))
    })
}

/// Takes region `index` out of the message into `*out`, the caller's to
/// free. `BUSBAR_INVALID_ARGUMENT` when there is none there.
///
/// # Safety
/// `m` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_take_region(
    m: *mut busbar_message,
    index: usize,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        check_out(out, "out")?;
        let view = m
            .regions_mut()
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Failure::invalid(format!("no region at index {index}")))?;
        // SAFETY: checked.
        unsafe {
            put(
                out,
                boxed(busbar_region {
                    region: view.region,
                }),
                "out",
            )
        }
    })
}

/// Maps region `index` of the message (read-write, shared with the other
/// holders) and returns its bytes, `*len` of them; valid while the message
/// holds the region. NULL on failure (see `busbar_last_error`).
///
/// # Safety
/// `m` NULL or live; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_map_region(
    m: *mut busbar_message,
    index: usize,
    len: *mut usize,
) -> *mut u8 {
    run_or(std::ptr::null_mut(), || {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        let view = m
            .regions_mut()
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or_else(|| Failure::invalid(format!("no region at index {index}")))?;
        let bytes = view.region.map(..)?;
        if !len.is_null() {
            // SAFETY: not NULL, writable by contract.
            unsafe { put(len, bytes.len(), "len")? };
        }
        Ok(bytes.as_mut_ptr())
    })
}

/// A reply handle for a received request (`*out` NULL-free: the caller's
/// to free), to answer it with `busbar_reply_with` after the message is
/// gone. `BUSBAR_NOT_A_REQUEST` for any other message.
///
/// # Safety
/// `m` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_message_reply_handle(
    m: *const busbar_message,
    out: *mut *mut busbar_reply_handle,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        check_out(out, "out")?;
        let handle = m
            .msg
            .reply_handle()
            .ok_or_else(|| Failure::new(BUSBAR_NOT_A_REQUEST, "the message is not a request"))?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_reply_handle { handle }), "out") }
    })
}

// ---------------------------------------------------------------------------
// Regions and the registry
// ---------------------------------------------------------------------------

/// A new shared-memory region of `size` bytes, zeroed; its count starts at 1.
/// `*out` is the caller's to free.
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_new(
    size: usize,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        check_out(out, "out")?;
        let region = MemoryRegion::new(size)?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// Another handle to the same region (the count goes up by one).
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_clone(
    r: *const busbar_region,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "region")? };
        let region = r.region.clone();
        // SAFETY: by contract.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// Maps the region (read-write, shared with every holder, no
/// synchronisation) into `*data`, `*len` bytes. Stays mapped until the
/// handle is freed.
///
/// # Safety
/// `r` NULL or live; `data`, `len` writable (`len` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn busbar_region_map(
    r: *mut busbar_region,
    data: *mut *mut u8,
    len: *mut usize,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get_mut(r, "region")? };
        check_out(data, "data")?;
        let bytes = r.region.map(..)?;
        // SAFETY: checked / by contract.
        unsafe {
            if !len.is_null() {
                put(len, bytes.len(), "len")?;
            }
            put(data, bytes.as_mut_ptr(), "data")
        }
    })
}

/// The region's size in bytes (0 for NULL).
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_size(r: *const busbar_region) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(r, "region")? }.region.size())
    })
}

/// How many handles to the region exist, in all processes, counting copies
/// in messages not yet received (0 for NULL).
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_ref_count(r: *const busbar_region) -> u32 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(r, "region")? }.region.ref_count())
    })
}

/// Frees a region handle (NULL is ignored): its count goes down by one, and
/// the memory goes when the last handle anywhere does.
///
/// # Safety
/// `r` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_free(r: *mut busbar_region) {
    // SAFETY: by contract.
    unsafe { unbox(r) }
}

/// A borrowed region's size in bytes (0 for NULL).
///
/// # Safety
/// `v` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_view_size(v: *const busbar_region_view) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(v, "view")? }.region.size())
    })
}

/// A borrowed region's count across processes (0 for NULL).
///
/// # Safety
/// `v` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_view_ref_count(v: *const busbar_region_view) -> u32 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(v, "view")? }.region.ref_count())
    })
}

/// A handle of the caller's own to a borrowed region (the count goes up).
///
/// # Safety
/// `v` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_region_view_clone(
    v: *const busbar_region_view,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let v = unsafe { get(v, "view")? };
        let region = v.region.clone();
        // SAFETY: by contract.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// A new, empty registry (a pool of regions). `*out` is the caller's to free.
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_new(out: *mut *mut busbar_registry) -> busbar_status {
    run(|| {
        let registry = MemoryRegistry::new();
        // SAFETY: by contract.
        unsafe { put(out, boxed(busbar_registry { registry }), "out") }
    })
}

/// A region of `size` bytes from the registry: a free one with the same
/// `tag` (NULL: no tag) reused, or a new one. `*out` is the caller's.
///
/// # Safety
/// `reg` NULL or live; `tag` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_alloc(
    reg: *mut busbar_registry,
    size: usize,
    tag: *const c_char,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let reg = unsafe { get_mut(reg, "registry")? };
        let tag = if tag.is_null() {
            None
        } else {
            // SAFETY: not NULL, NUL-terminated by contract.
            Some(unsafe { text(tag, "tag")? })
        };
        check_out(out, "out")?;
        let region = reg.registry.alloc(size, tag)?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// A C callback and its context, run once when a region is free again.
struct FreeCallback {
    f: unsafe extern "C" fn(*mut c_void),
    ctx: *mut c_void,
}

// SAFETY: the caller of `busbar_registry_alloc_with_free` promises that the
// callback may run, with its `ctx`, on whatever thread calls into the
// registry (documented there).
unsafe impl Send for FreeCallback {}

impl FreeCallback {
    fn call(self) {
        // SAFETY: a C function the caller gave for exactly this call.
        unsafe { (self.f)(self.ctx) }
    }
}

/// Like `busbar_registry_alloc`, and calls `free_fn(ctx)` once the region is
/// free again (found so by `busbar_registry_maintain`, an alloc, or the
/// registry's free), on the thread making that call.
///
/// # Safety
/// As `busbar_registry_alloc`; `free_fn` callable with `ctx` from that thread.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_alloc_with_free(
    reg: *mut busbar_registry,
    size: usize,
    tag: *const c_char,
    free_fn: busbar_free_fn,
    ctx: *mut c_void,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let reg = unsafe { get_mut(reg, "registry")? };
        let tag = if tag.is_null() {
            None
        } else {
            // SAFETY: not NULL, NUL-terminated by contract.
            Some(unsafe { text(tag, "tag")? })
        };
        let f = free_fn.ok_or_else(|| Failure::null("free_fn"))?;
        check_out(out, "out")?;
        let callback = FreeCallback { f, ctx };
        let region = reg
            .registry
            .alloc_with_free(size, tag, move || callback.call())?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// Runs the callbacks of regions that became free and lets idle memory go.
///
/// # Safety
/// `reg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_maintain(reg: *mut busbar_registry) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        unsafe { get_mut(reg, "registry")? }.registry.maintain();
        Ok(())
    })
}

/// How many regions the registry holds, free or in use (0 for NULL).
///
/// # Safety
/// `reg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_len(reg: *const busbar_registry) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(reg, "registry")? }.registry.len())
    })
}

/// Frees a registry (NULL is ignored); regions still held elsewhere live on.
///
/// # Safety
/// `reg` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_registry_free(reg: *mut busbar_registry) {
    // SAFETY: by contract.
    unsafe { unbox(reg) }
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// The receiver's `busy` flag, held for one call.
struct Receiving<'a> {
    r: &'a busbar_receiver,
}

impl<'a> Receiving<'a> {
    /// Takes the receiver for one call: `BUSBAR_CLOSED` after a close,
    /// `BUSBAR_BUSY` while another thread's call runs.
    #[inline]
    fn start(r: &'a busbar_receiver) -> Result<Receiving<'a>, Failure> {
        if r.closed.load(Ordering::Acquire) {
            return Err(refused_closed(r));
        }
        if r.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(busy());
        }
        Ok(Receiving { r })
    }

    /// Runs `f` on the endpoint's receiver. A receive hands its message
    /// out from inside `f` (and `T` is `()`), so that the message moves
    /// once, from busbar's return value into its handle, and not through
    /// the `Result`s on the way out.
    #[inline]
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut EndpointReceiver<BytesMessage>) -> Result<T, RecvError>,
    ) -> Result<T, Failure> {
        // SAFETY: this thread holds `busy`, so nothing else touches `rx`.
        let slot = unsafe { &mut *self.r.rx.get() };
        let Some(rx) = slot.as_mut() else {
            return Err(Failure::closed());
        };
        let out = f(rx);
        if self.r.closed.load(Ordering::Acquire) {
            // Closed while we received: leave now rather than at free.
            *slot = None;
            return out.map_err(|e| failed(e, true));
        }
        out.map_err(|e| failed(e, false))
    }
}

/// `BUSBAR_CLOSED` for a call on a closed receiver, which it drops unless
/// a call holds it.
#[cold]
fn refused_closed(r: &busbar_receiver) -> Failure {
    release_if_closed(r);
    Failure::closed()
}

/// `BUSBAR_BUSY`.
#[cold]
fn busy() -> Failure {
    Failure::new(
        BUSBAR_BUSY,
        "the receiver is in use by another thread's call (one call at a time)",
    )
}

/// A receive's error as C sees it: an interruption by a close is `BUSBAR_CLOSED`.
#[cold]
fn failed(e: RecvError, closed: bool) -> Failure {
    match e {
        RecvError::Interrupted if closed => Failure::closed(),
        e => e.into(),
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.r.busy.store(false, Ordering::Release);
    }
}

/// Drops the endpoint's receiver of a closed handle, unless a call holds it.
fn release_if_closed(r: &busbar_receiver) {
    if r.busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // SAFETY: this thread holds `busy`, so nothing else touches `rx`.
        unsafe { *r.rx.get() = None };
        r.busy.store(false, Ordering::Release);
    }
}

/// Waits up to `timeout_ms` (negative: as long as it takes; 0: only what is
/// here) for the next message, which becomes `*out`, the caller's to free.
/// `BUSBAR_TIMEOUT` when none came; `BUSBAR_CLOSED` when another thread
/// closed the receiver (at once, even mid-wait). Messages of types other
/// than a byte message are skipped; a message over `max_payload` is dropped
/// and reported as `BUSBAR_TOO_LARGE`, the next call going on with the next.
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_recv(
    r: *const busbar_receiver,
    timeout_ms: i64,
    out: *mut *mut busbar_message,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        check_out(out, "out")?;
        // SAFETY: `out` checked not NULL above, writable by contract.
        Receiving::start(r)?.with(|rx| unsafe { hand_out(rx.recv(timeout(timeout_ms)), out) })
    })
}

/// Takes a message that is already here into `*out`, without waiting;
/// `BUSBAR_EMPTY` when there is none (then poll `busbar_receiver_fd`).
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_try_recv(
    r: *const busbar_receiver,
    out: *mut *mut busbar_message,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        check_out(out, "out")?;
        // SAFETY: `out` checked not NULL above, writable by contract.
        Receiving::start(r)?.with(|rx| unsafe { hand_out(rx.try_recv(), out) })
    })
}

/// Waits like `busbar_recv`, then lends the message to `f(ctx, m)` without
/// copying its bytes: `busbar_borrowed_data` points into the sender's ring
/// or a mapped region, valid only during the call. Descriptors and regions
/// can be taken from `m`; the rest are closed after `f` returns. Messages
/// of other types than a byte message are skipped. Keep `f` short (the link
/// is held while it runs); it must not unwind or use this receiver.
///
/// # Safety
/// `r` NULL or live; `f` a function that may be called with `ctx`.
#[no_mangle]
pub unsafe extern "C" fn busbar_recv_with(
    r: *const busbar_receiver,
    timeout_ms: i64,
    f: busbar_borrowed_fn,
    ctx: *mut c_void,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        let f = f.ok_or_else(|| Failure::null("f"))?;
        let deadline = timeout(timeout_ms).map(|d| std::time::Instant::now() + d);
        let mut receiving = Receiving::start(r)?;
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let lent = receiving.with(|rx| {
                rx.recv_with(left, |mut b| {
                    let Some((format, data)) = b.bytes() else {
                        return false; // another type: skipped, as recv does
                    };
                    let mut m = busbar_borrowed {
                        data: data.as_ptr(),
                        len: data.len(),
                        format,
                        source: b.source.0,
                        reply: b.reply_handle(),
                        objects: std::mem::take(&mut b.objects)
                            .into_iter()
                            .map(Some)
                            .collect(),
                        regions: std::mem::take(&mut b.memory_regions)
                            .into_iter()
                            .map(Some)
                            .collect(),
                    };
                    // SAFETY: the caller's function, called with its own ctx
                    // and a message valid for the call (`b` outlives it).
                    unsafe { f(ctx, &mut m) };
                    true
                })
            })?;
            if lent {
                return Ok(());
            }
        }
    })
}

/// The lent message's bytes, `*len` of them: valid only during the callback.
///
/// # Safety
/// `m` NULL or the callback's argument; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_data(
    m: *const busbar_borrowed,
    len: *mut usize,
) -> *const u8 {
    run_or(std::ptr::null(), || {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        if !len.is_null() {
            // SAFETY: not NULL, writable by contract.
            unsafe { put(len, m.len, "len")? };
        }
        Ok(m.data)
    })
}

/// The lent message's format tag.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_format(m: *const busbar_borrowed) -> u16 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.format)
    })
}

/// The id of the endpoint that sent the lent message.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_source(m: *const busbar_borrowed) -> u64 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.source)
    })
}

/// How many descriptors came with the lent message.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_fd_count(m: *const busbar_borrowed) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.objects.len())
    })
}

/// Takes descriptor `index` of the lent message: the caller owns it. -1
/// when there is none there.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_take_fd(m: *mut busbar_borrowed, index: usize) -> c_int {
    run_or(-1, || {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        Ok(m.objects
            .get_mut(index)
            .and_then(Option::take)
            .map_or(-1, |o| o.into_fd().into_raw_fd()))
    })
}

/// How many regions came with the lent message.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_region_count(m: *const busbar_borrowed) -> usize {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(m, "message")? }.regions.len())
    })
}

/// Takes region `index` of the lent message into `*out`, the caller's.
///
/// # Safety
/// `m` NULL or the callback's argument; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_take_region(
    m: *mut busbar_borrowed,
    index: usize,
    out: *mut *mut busbar_region,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get_mut(m, "message")? };
        check_out(out, "out")?;
        let region = m
            .regions
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Failure::invalid(format!("no region at index {index}")))?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_region { region }), "out") }
    })
}

/// 1 when the lent message is a request, else 0.
///
/// # Safety
/// `m` NULL or the callback's argument.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_is_request(m: *const busbar_borrowed) -> c_int {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(c_int::from(unsafe { get(m, "message")? }.reply.is_some()))
    })
}

/// A handle to answer the lent request after the callback
/// (`busbar_reply_with`); `*out` is the caller's to free.
/// `BUSBAR_NOT_A_REQUEST` for any other message.
///
/// # Safety
/// `m` NULL or the callback's argument; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn busbar_borrowed_reply_handle(
    m: *const busbar_borrowed,
    out: *mut *mut busbar_reply_handle,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let m = unsafe { get(m, "message")? };
        check_out(out, "out")?;
        let handle = m
            .reply
            .clone()
            .ok_or_else(|| Failure::new(BUSBAR_NOT_A_REQUEST, "the message is not a request"))?;
        // SAFETY: checked.
        unsafe { put(out, boxed(busbar_reply_handle { handle }), "out") }
    })
}

/// The receiver's poll descriptor, for poll/epoll/select (POLLIN): after
/// `busbar_try_recv` gave `BUSBAR_EMPTY` (or a recv `BUSBAR_TIMEOUT`), it
/// becomes readable when a message may have come; then call
/// `busbar_try_recv` until `BUSBAR_EMPTY` again (readiness may be spurious).
/// Only poll it: never read, write or close it. The same descriptor for the
/// receiver's life. -1 for NULL or a closed receiver, and for a first call
/// made while another thread's call runs on the receiver (`BUSBAR_BUSY` in
/// `busbar_last_error`). Asking for it has a cost for receivers that never
/// poll (a sender then makes a system call to wake this receiver each time
/// it went idle), so ask only for a poll loop.
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_receiver_fd(r: *const busbar_receiver) -> c_int {
    run_or(-1, || {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        if r.closed.load(Ordering::Acquire) {
            return Ok(-1);
        }
        let known = r.fd.load(Ordering::Acquire);
        if known >= 0 {
            return Ok(known);
        }
        let fd = Receiving::start(r)?.with(|rx| Ok(rx.as_fd().as_raw_fd()))?;
        r.fd.store(fd, Ordering::Release);
        Ok(fd)
    })
}

/// This endpoint's id (0 for NULL).
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_receiver_id(r: *const busbar_receiver) -> u64 {
    run_or(0, || {
        // SAFETY: by contract.
        Ok(unsafe { get(r, "receiver")? }.id)
    })
}

/// How long a receive watches the shared-memory rings before it sleeps
/// (50 µs by default; 0 sleeps at once). Spinning costs CPU while it lasts
/// and saves the wake-up when a message comes within it.
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_receiver_set_spin(
    r: *const busbar_receiver,
    spin_us: u64,
) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        Receiving::start(r)?.with(|rx| {
            rx.set_spin(Duration::from_micros(spin_us));
            Ok(())
        })
    })
}

/// Closes the receiver: a `busbar_recv` (or `_try_recv`, `_recv_with`)
/// running in another thread returns `BUSBAR_CLOSED` promptly, and so does
/// every later one; the endpoint stops receiving (its sender still sends).
/// Any thread may call it, at any time, more than once. The handle stays
/// valid until `busbar_receiver_free`, which must come after every other
/// call on it has returned.
///
/// # Safety
/// `r` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn busbar_receiver_close(r: *const busbar_receiver) -> busbar_status {
    run(|| {
        // SAFETY: by contract.
        let r = unsafe { get(r, "receiver")? };
        r.closed.store(true, Ordering::Release);
        r.waker.wake();
        release_if_closed(r);
        Ok(())
    })
}

/// Frees a receiver (NULL is ignored). No other call on it may be running
/// (close it first to end a blocked recv in another thread).
///
/// # Safety
/// `r` NULL or from this library, not used again.
#[no_mangle]
pub unsafe extern "C" fn busbar_receiver_free(r: *mut busbar_receiver) {
    // SAFETY: by contract.
    unsafe { unbox(r) }
}
