//! Status codes, the thread's last error, and the guard every entry point
//! runs its body in (errors become a status and a message, panics are caught).

use busbar::{JoinError, RecvError, RegionError, RequestError, SendError};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a fallible call returns: `BUSBAR_OK` (0) or a negative `BUSBAR_*`
/// code naming the kind of error. `busbar_status_str` names it and
/// `busbar_last_error` gives the whole message of the thread's last failure.
pub type busbar_status = i32;

/// Success.
pub const BUSBAR_OK: busbar_status = 0;
/// Nothing came (or no controller answered) within the timeout.
pub const BUSBAR_TIMEOUT: busbar_status = -1;
/// `busbar_try_recv` found no message ready.
pub const BUSBAR_EMPTY: busbar_status = -2;
/// No endpoint matches a unicast selector (or a multicast one that requires a
/// receiver), or the endpoint named by id has left.
pub const BUSBAR_NO_ROUTE: busbar_status = -3;
/// A receiver's queue is full and the call or policy says not to wait (or
/// `busbar_send_timeout` ran out).
pub const BUSBAR_FULL: busbar_status = -4;
/// This endpoint's own queue is full and only the calling thread could empty it.
pub const BUSBAR_WOULD_DEADLOCK: busbar_status = -5;
/// More descriptors (fds and regions) than one message can carry (253).
pub const BUSBAR_TOO_MANY_OBJECTS: busbar_status = -6;
/// A payload over the endpoint's `max_payload` (sent, or received and dropped).
pub const BUSBAR_TOO_LARGE: busbar_status = -7;
/// The selector cannot travel (too long, nested too deep, a multicast request).
pub const BUSBAR_INVALID_SELECTOR: busbar_status = -8;
/// Too much is already waiting for a ttl in this endpoint.
pub const BUSBAR_PENDING_FULL: busbar_status = -9;
/// The bus refused the token.
pub const BUSBAR_TOKEN_MISMATCH: busbar_status = -10;
/// The bus controller speaks another protocol version.
pub const BUSBAR_VERSION_MISMATCH: busbar_status = -11;
/// The bus does not admit this process's user.
pub const BUSBAR_PERMISSION_DENIED: busbar_status = -12;
/// The bus admits no more endpoints.
pub const BUSBAR_BUS_FULL: busbar_status = -13;
/// The bus controller runs as a user this endpoint's access policy does not admit.
pub const BUSBAR_UNTRUSTED_CONTROLLER: busbar_status = -14;
/// The filesystem namespace's directory cannot be used.
pub const BUSBAR_NAMESPACE: busbar_status = -15;
/// A peer answered something this endpoint does not understand.
pub const BUSBAR_PROTOCOL: busbar_status = -16;
/// The endpoint has shut down.
pub const BUSBAR_DISCONNECTED: busbar_status = -17;
/// The receiver was closed (`busbar_receiver_close`).
pub const BUSBAR_CLOSED: busbar_status = -18;
/// `busbar_reply` was given a message that is not a request.
pub const BUSBAR_NOT_A_REQUEST: busbar_status = -19;
/// The endpoint asked left or died before it answered the request.
pub const BUSBAR_RESPONDER_GONE: busbar_status = -20;
/// An answer came that cannot be read as a byte message.
pub const BUSBAR_BAD_ANSWER: busbar_status = -21;
/// A payload did not encode or decode.
pub const BUSBAR_DECODE: busbar_status = -22;
/// A memory region could not be created or mapped.
pub const BUSBAR_REGION: busbar_status = -23;
/// A label expression did not parse; the message shows where.
pub const BUSBAR_PARSE: busbar_status = -24;
/// A NULL pointer, a string that is not UTF-8, an out-of-range index or value.
pub const BUSBAR_INVALID_ARGUMENT: busbar_status = -25;
/// A system call failed.
pub const BUSBAR_IO: busbar_status = -26;
/// busbar panicked inside the call (a bug: please report it); the call had no effect
/// that can be relied on, but the process goes on.
pub const BUSBAR_PANIC: busbar_status = -27;
/// The receiver is in use by another thread's call right now (a receiver
/// serves one call at a time; only `busbar_receiver_close` may come from
/// another thread meanwhile).
pub const BUSBAR_BUSY: busbar_status = -28;
/// A receive was interrupted (by a wake-up that was not a close).
pub const BUSBAR_INTERRUPTED: busbar_status = -29;
/// An error this version of the binding has no name for (the message says what).
pub const BUSBAR_OTHER: busbar_status = -99;

/// Every status and its name, as `busbar_status_str` gives it.
pub(crate) const NAMES: &[(busbar_status, &CStr)] = &[
    (BUSBAR_OK, c"OK"),
    (BUSBAR_TIMEOUT, c"TIMEOUT"),
    (BUSBAR_EMPTY, c"EMPTY"),
    (BUSBAR_NO_ROUTE, c"NO_ROUTE"),
    (BUSBAR_FULL, c"FULL"),
    (BUSBAR_WOULD_DEADLOCK, c"WOULD_DEADLOCK"),
    (BUSBAR_TOO_MANY_OBJECTS, c"TOO_MANY_OBJECTS"),
    (BUSBAR_TOO_LARGE, c"TOO_LARGE"),
    (BUSBAR_INVALID_SELECTOR, c"INVALID_SELECTOR"),
    (BUSBAR_PENDING_FULL, c"PENDING_FULL"),
    (BUSBAR_TOKEN_MISMATCH, c"TOKEN_MISMATCH"),
    (BUSBAR_VERSION_MISMATCH, c"VERSION_MISMATCH"),
    (BUSBAR_PERMISSION_DENIED, c"PERMISSION_DENIED"),
    (BUSBAR_BUS_FULL, c"BUS_FULL"),
    (BUSBAR_UNTRUSTED_CONTROLLER, c"UNTRUSTED_CONTROLLER"),
    (BUSBAR_NAMESPACE, c"NAMESPACE"),
    (BUSBAR_PROTOCOL, c"PROTOCOL"),
    (BUSBAR_DISCONNECTED, c"DISCONNECTED"),
    (BUSBAR_CLOSED, c"CLOSED"),
    (BUSBAR_NOT_A_REQUEST, c"NOT_A_REQUEST"),
    (BUSBAR_RESPONDER_GONE, c"RESPONDER_GONE"),
    (BUSBAR_BAD_ANSWER, c"BAD_ANSWER"),
    (BUSBAR_DECODE, c"DECODE"),
    (BUSBAR_REGION, c"REGION"),
    (BUSBAR_PARSE, c"PARSE"),
    (BUSBAR_INVALID_ARGUMENT, c"INVALID_ARGUMENT"),
    (BUSBAR_IO, c"IO"),
    (BUSBAR_PANIC, c"PANIC"),
    (BUSBAR_BUSY, c"BUSY"),
    (BUSBAR_INTERRUPTED, c"INTERRUPTED"),
    (BUSBAR_OTHER, c"OTHER"),
];

/// The name of `status` (`"TIMEOUT"`), or `"UNKNOWN"`.
pub(crate) fn name(status: busbar_status) -> &'static CStr {
    NAMES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(c"UNKNOWN", |(_, n)| n)
}

/// An error on its way to C: a status and the message for `busbar_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: busbar_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: busbar_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(BUSBAR_INVALID_ARGUMENT, message)
    }

    pub fn null(what: &str) -> Failure {
        Failure::invalid(format!("{what} is NULL"))
    }

    pub fn closed() -> Failure {
        Failure::new(BUSBAR_CLOSED, "the receiver was closed")
    }

    fn panic(payload: Box<dyn Any + Send>) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Failure::new(BUSBAR_PANIC, format!("busbar panicked: {what}"))
    }

    /// Stores the message as the thread's last error; returns the status.
    fn record(self) -> busbar_status {
        let text = CString::new(self.message.replace('\0', "\\0")).unwrap_or_default();
        LAST_ERROR.with(|last| *last.borrow_mut() = text);
        self.status
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs `f` with a pointer to the thread's last error message.
pub(crate) fn with_last_error<T>(f: impl FnOnce(&CStr) -> T) -> T {
    LAST_ERROR.with(|last| f(&last.borrow()))
}

/// Runs an entry point's body: `Ok` is `BUSBAR_OK`, an error is recorded and
/// its status returned, and a panic is caught and reported as `BUSBAR_PANIC`.
#[inline]
pub(crate) fn run(f: impl FnOnce() -> Result<(), Failure>) -> busbar_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => BUSBAR_OK,
        Ok(Err(e)) => e.record(),
        Err(p) => Failure::panic(p).record(),
    }
}

/// Runs the body of an entry point that returns a value, not a status:
/// `fallback` when it fails or panics (the error is recorded all the same).
#[inline]
pub(crate) fn run_or<T>(fallback: T, f: impl FnOnce() -> Result<T, Failure>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            e.record();
            fallback
        }
        Err(p) => {
            Failure::panic(p).record();
            fallback
        }
    }
}

/// Runs the body of an entry point that returns nothing (the `*_free`
/// functions): a panic (a `Drop` that panicked) is caught and recorded as
/// the thread's last error, never an abort.
#[inline]
pub(crate) fn run_quiet(f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        Failure::panic(p).record();
    }
}

impl From<JoinError> for Failure {
    fn from(e: JoinError) -> Failure {
        let status = match &e {
            JoinError::Timeout => BUSBAR_TIMEOUT,
            JoinError::VersionMismatch { .. } => BUSBAR_VERSION_MISMATCH,
            JoinError::TokenMismatch => BUSBAR_TOKEN_MISMATCH,
            JoinError::PermissionDenied { .. } => BUSBAR_PERMISSION_DENIED,
            JoinError::BusFull { .. } => BUSBAR_BUS_FULL,
            JoinError::UntrustedController { .. } => BUSBAR_UNTRUSTED_CONTROLLER,
            JoinError::InvalidIdentifier(_) => BUSBAR_INVALID_ARGUMENT,
            JoinError::Namespace(_) => BUSBAR_NAMESPACE,
            JoinError::Protocol(_) => BUSBAR_PROTOCOL,
            JoinError::Io(_) => BUSBAR_IO,
            _ => BUSBAR_OTHER,
        };
        Failure::new(status, format!("join: {e}"))
    }
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Failure {
        let status = match &e {
            SendError::NoRoute(_) => BUSBAR_NO_ROUTE,
            SendError::TooManyObjects { .. } => BUSBAR_TOO_MANY_OBJECTS,
            SendError::InvalidSelector(_) => BUSBAR_INVALID_SELECTOR,
            SendError::Full { .. } => BUSBAR_FULL,
            SendError::WouldDeadlock { .. } => BUSBAR_WOULD_DEADLOCK,
            SendError::TooLarge { .. } => BUSBAR_TOO_LARGE,
            SendError::PendingFull(_) => BUSBAR_PENDING_FULL,
            SendError::Encode(_) => BUSBAR_DECODE,
            SendError::Region(_) => BUSBAR_REGION,
            SendError::Disconnected => BUSBAR_DISCONNECTED,
            SendError::NotARequest => BUSBAR_NOT_A_REQUEST,
            SendError::Io(_) => BUSBAR_IO,
            _ => BUSBAR_OTHER,
        };
        Failure::new(status, format!("send: {e}"))
    }
}

impl From<RecvError> for Failure {
    fn from(e: RecvError) -> Failure {
        let status = match &e {
            RecvError::Timeout => BUSBAR_TIMEOUT,
            RecvError::Empty => BUSBAR_EMPTY,
            RecvError::Disconnected => BUSBAR_DISCONNECTED,
            RecvError::Decode(_) => BUSBAR_DECODE,
            RecvError::TooLarge { .. } => BUSBAR_TOO_LARGE,
            RecvError::Interrupted => BUSBAR_INTERRUPTED,
            RecvError::Io(_) => BUSBAR_IO,
            _ => BUSBAR_OTHER,
        };
        Failure::new(status, format!("recv: {e}"))
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        match e {
            RequestError::Send(e) => {
                let f = Failure::from(e);
                Failure::new(f.status, format!("request not sent: {}", f.message))
            }
            RequestError::Timeout => Failure::new(BUSBAR_TIMEOUT, format!("request: {e}")),
            RequestError::ResponderGone(_) => {
                Failure::new(BUSBAR_RESPONDER_GONE, format!("request: {e}"))
            }
            RequestError::Answer(_) => Failure::new(BUSBAR_BAD_ANSWER, format!("request: {e}")),
            other => Failure::new(BUSBAR_OTHER, format!("request: {other}")),
        }
    }
}

impl From<RegionError> for Failure {
    fn from(e: RegionError) -> Failure {
        Failure::new(BUSBAR_REGION, format!("region: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_distinct_name() {
        let mut statuses: Vec<_> = NAMES.iter().map(|(s, _)| *s).collect();
        let mut names: Vec<_> = NAMES.iter().map(|(_, n)| *n).collect();
        statuses.sort();
        statuses.dedup();
        names.sort();
        names.dedup();
        assert_eq!((statuses.len(), names.len()), (NAMES.len(), NAMES.len()));
        assert_eq!(name(BUSBAR_TIMEOUT), c"TIMEOUT");
        assert_eq!(name(12345), c"UNKNOWN");
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = run(|| panic!("on purpose"));
        assert_eq!(status, BUSBAR_PANIC);
        with_last_error(|m| assert!(m.to_string_lossy().contains("on purpose")));
        assert_eq!(run_or(7, || -> Result<i32, Failure> { panic!("again") }), 7);
        with_last_error(|m| assert!(m.to_string_lossy().contains("again")));
        run_quiet(|| panic!("in a drop"));
        with_last_error(|m| assert!(m.to_string_lossy().contains("in a drop")));
    }

    #[test]
    fn an_error_is_recorded_for_this_thread_only() {
        let status = run(|| Err(Failure::null("sender")));
        assert_eq!(status, BUSBAR_INVALID_ARGUMENT);
        with_last_error(|m| assert_eq!(m, c"sender is NULL"));
        std::thread::spawn(|| with_last_error(|m| assert!(m.is_empty())))
            .join()
            .expect("the other thread");
    }
}
