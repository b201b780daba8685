//! Every Rust error as one stable `.code` string (the table is in
//! bindings/node/README.md); `index.js` turns a native error with one of
//! these codes into a `BusbarError`.

use busbar::{JoinError, RecvError, RegionError, RequestError, SendError};

/// The `status` of a `napi::Error` thrown to JavaScript: napi puts it in the
/// error's `.code`.
#[derive(Debug, Clone, Copy)]
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<napi::Status> for Code {
    /// napi's own failures while converting arguments: a wrong type.
    fn from(_: napi::Status) -> Code {
        Code("INVALID_ARGUMENT")
    }
}

/// What the native functions return.
pub type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// An error on its way to JavaScript: a code and a readable message. Sent
/// from worker threads (a `napi::Error` is built only on the JavaScript
/// thread).
#[derive(Debug, Clone)]
pub struct Failure {
    /// One of the codes in the README's table.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// An `INVALID_ARGUMENT` failure.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new("INVALID_ARGUMENT", message)
    }

    /// The endpoint was closed.
    pub fn closed() -> Failure {
        Failure::new("DISCONNECTED", "the endpoint is closed")
    }
}

impl From<Failure> for napi::Error<Code> {
    fn from(f: Failure) -> Self {
        napi::Error::new(Code(f.code), f.message)
    }
}

impl From<JoinError> for Failure {
    fn from(e: JoinError) -> Failure {
        let code = match &e {
            JoinError::Timeout => "TIMEOUT",
            JoinError::VersionMismatch { .. } => "VERSION_MISMATCH",
            JoinError::TokenMismatch => "TOKEN_MISMATCH",
            JoinError::PermissionDenied { .. } => "PERMISSION_DENIED",
            JoinError::BusFull { .. } => "BUS_FULL",
            JoinError::UntrustedController { .. } => "UNTRUSTED_CONTROLLER",
            JoinError::InvalidIdentifier(_) => "INVALID_ARGUMENT",
            JoinError::Namespace(_) => "NAMESPACE",
            JoinError::Protocol(_) => "PROTOCOL",
            JoinError::Io(_) => "IO",
            _ => "IO",
        };
        Failure::new(code, e.to_string())
    }
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Failure {
        let code = match &e {
            SendError::NoRoute(_) => "NO_ROUTE",
            SendError::TooManyObjects { .. } => "TOO_MANY_OBJECTS",
            SendError::InvalidSelector(_) => "INVALID_ARGUMENT",
            SendError::Full { .. } => "FULL",
            SendError::WouldDeadlock { .. } => "WOULD_DEADLOCK",
            SendError::TooLarge { .. } => "TOO_LARGE",
            SendError::PendingFull(_) => "PENDING_FULL",
            SendError::Encode(_) => "ENCODE",
            SendError::Region(_) => "REGION",
            SendError::Disconnected => "DISCONNECTED",
            SendError::NotARequest => "NOT_A_REQUEST",
            SendError::Io(_) => "IO",
            _ => "IO",
        };
        Failure::new(code, e.to_string())
    }
}

impl From<RecvError> for Failure {
    fn from(e: RecvError) -> Failure {
        let code = match &e {
            RecvError::Timeout | RecvError::Empty => "TIMEOUT",
            RecvError::Disconnected => "DISCONNECTED",
            RecvError::Decode(_) => "DECODE",
            RecvError::TooLarge { .. } => "TOO_LARGE",
            RecvError::Io(_) => "IO",
            _ => "IO",
        };
        Failure::new(code, e.to_string())
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        match e {
            RequestError::Send(e) => e.into(),
            RequestError::Timeout => Failure::new("TIMEOUT", "no answer within the timeout"),
            e @ RequestError::ResponderGone(_) => Failure::new("RESPONDER_GONE", e.to_string()),
            e @ RequestError::Answer(_) => Failure::new("DECODE", e.to_string()),
            e => Failure::new("IO", e.to_string()),
        }
    }
}

impl From<RegionError> for Failure {
    fn from(e: RegionError) -> Failure {
        Failure::new("REGION", e.to_string())
    }
}

impl From<napi::Error> for Failure {
    /// A Node-API call failed (in napi's own code).
    fn from(e: napi::Error) -> Failure {
        Failure::new("NAPI", format!("Node-API: {e}"))
    }
}
