//! The errors of `join`, `send` and `recv`: each variant is something a caller can act on.

use crate::payload::CodecError;
use crate::region::RegionError;
use std::io;

/// Why [`join`](crate::join) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No controller answered within the timeout (with `controller_affinity = false`
    /// the endpoint waits for another one to host it).
    #[error("timed out waiting for the bus controller")]
    Timeout,
    /// The controller speaks another protocol version.
    #[error(
        "protocol version mismatch: this endpoint speaks {ours}, the bus controller {controller}"
    )]
    VersionMismatch {
        /// Ours.
        ours: u16,
        /// The controller's.
        controller: u16,
    },
    /// The controller refused the token.
    #[error("the bus refused the token")]
    TokenMismatch,
    /// The controller does not allow this process's user.
    #[error("permission denied: the bus does not admit uid {uid}")]
    PermissionDenied {
        /// Our uid, as the controller saw it.
        uid: u32,
    },
    /// The controller already admits as many endpoints as its limit allows.
    #[error("the bus is full: its controller admits at most {max} endpoints")]
    BusFull {
        /// The controller's limit.
        max: usize,
    },
    /// The process serving the bus address runs as a user this endpoint's
    /// [`Access`](crate::Access) policy does not admit; the join request (and
    /// the token in it) was not sent.
    #[error("the bus controller (pid {pid}) runs as uid {uid}, which this endpoint's access policy does not admit")]
    UntrustedController {
        /// The controller's uid.
        uid: u32,
        /// The controller's pid.
        pid: u32,
    },
    /// The identifier is empty, too long or contains NUL.
    #[error("invalid bus identifier {0:?}: 1 to 64 bytes, no NUL")]
    InvalidIdentifier(String),
    /// The [filesystem namespace](crate::Namespace::Filesystem) cannot be used:
    /// `XDG_RUNTIME_DIR` is unset and no directory was given, the directory is
    /// not private to this user (a directory it owns, no group or other
    /// permissions), the identifier cannot name a directory, or the socket
    /// paths would be too long for a unix socket address.
    #[error("cannot use the bus directory: {0}")]
    Namespace(String),
    /// The controller answered something this endpoint does not understand.
    #[error("bus protocol error: {0}")]
    Protocol(String),
    /// A system call failed.
    #[error("i/o error while joining: {0}")]
    Io(#[from] io::Error),
}

/// Why [`EndpointSender::send`](crate::EndpointSender::send) failed. When `send`
/// fails, nothing was delivered to anyone, except as noted for multicast.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No endpoint matches a unicast selector (or a multicast one that
    /// [requires a receiver](crate::Selector::require_receiver)) and its
    /// `ttl` is zero. (With a `ttl`, the message waits instead; a multicast
    /// that nobody matches is not an error.)
    #[error("no endpoint matches {0}")]
    NoRoute(String),
    /// The message has more descriptors than one frame can carry.
    #[error("too many descriptors: {count} (objects and regions{spill}), at most {max}")]
    TooManyObjects {
        /// Objects plus regions (plus one when the payload spills into a memfd).
        count: usize,
        /// The kernel's limit.
        max: usize,
        /// Notes the payload's own descriptor when it counts.
        spill: &'static str,
    },
    /// The selector cannot travel: its text is longer than a frame allows, or
    /// its expression is nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    #[error("invalid selector: {0}")]
    InvalidSelector(String),
    /// A receiver's link is full and the policy (or `try_send`) says not to wait,
    /// or `send_timeout` ran out. For multicast, `delivered` receivers got it.
    #[error("receiver full: {full} receiver(s) had no room ({delivered} got the message)")]
    Full {
        /// Receivers that got the message.
        delivered: usize,
        /// Receivers that had no room.
        full: usize,
    },
    /// This endpoint's own queue of messages to itself is full, the send
    /// would have to wait for room, and the thread sending is the one
    /// receiving from this endpoint (it sends from inside `recv_with`'s
    /// closure, say): only it could make room, so waiting would never end.
    /// Receive on another thread, or send to a selector that does not
    /// match this endpoint. For multicast, `delivered` receivers got the
    /// message.
    ///
    /// A send waits for room in its own endpoint's queue as for any
    /// receiver's when another thread (or nobody yet) may receive; this is
    /// returned only when that cannot be.
    #[error("this endpoint's own queue is full and the thread sending is the one receiving from it: waiting for room would never end ({delivered} other receiver(s) got the message)")]
    WouldDeadlock {
        /// Receivers that got the message.
        delivered: usize,
    },
    /// The payload is larger than [`Limits::max_payload`](crate::Limits::max_payload).
    #[error("payload of {size} bytes is over the limit of {max}")]
    TooLarge {
        /// The encoded payload's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Waiting for its ttl, the message would take more than the endpoint's
    /// [`Limits`](crate::Limits) allow for waiting messages.
    #[error("too much is waiting for a ttl already: {0}")]
    PendingFull(String),
    /// The payload could not be encoded.
    #[error(transparent)]
    Encode(#[from] CodecError),
    /// A memory region could not be prepared for sending.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// This endpoint has shut down.
    #[error("the endpoint is disconnected from the bus")]
    Disconnected,
    /// [`reply`](crate::EndpointSender::reply) was given a message that is
    /// not a request (see [`Message::is_request`](crate::Message::is_request)).
    #[error("the message is not a request: nobody waits for an answer to it")]
    NotARequest,
    /// A system call failed.
    #[error("i/o error while sending: {0}")]
    Io(#[from] io::Error),
}

/// Why [`EndpointSender::request`](crate::EndpointSender::request) got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request could not be sent: as [`send`](crate::EndpointSender::send)
    /// fails (`NoRoute` also when its `ttl` ran out before a match
    /// appeared; `InvalidSelector` for a multicast selector: a request
    /// goes to one endpoint).
    #[error("the request was not sent: {0}")]
    Send(#[from] SendError),
    /// No answer came within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The endpoint that got the request left, or its process died, before
    /// it answered. Reported as soon as its end of the link closes, not
    /// when the timeout runs out.
    #[error("endpoint {0} left before it answered")]
    ResponderGone(crate::EndpointId),
    /// An answer came but is not what the caller asked for: a type it does
    /// not know, a payload that does not decode, or a malformed frame.
    #[error("the answer cannot be read: {0}")]
    Answer(String),
}

/// Why [`EndpointReceiver::recv`](crate::EndpointReceiver::recv) returned no message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing arrived within the timeout.
    #[error("timed out waiting for a message")]
    Timeout,
    /// `try_recv` found nothing ready.
    #[error("no message ready")]
    Empty,
    /// The endpoint has shut down.
    #[error("the endpoint is disconnected from the bus")]
    Disconnected,
    /// A message of a known type arrived but its payload did not decode; it is dropped.
    #[error("a message did not decode: {0}")]
    Decode(#[from] CodecError),
    /// A message's payload is larger than this endpoint's
    /// [`Limits::max_payload`](crate::Limits::max_payload) (its sender's
    /// limit is higher): it is dropped before a byte of it is read, and the
    /// next call goes on with the next message. Raise the limit in
    /// [`Options::limits`](crate::Options::limits) to accept such messages.
    #[error("dropped a message of {size} bytes: over this endpoint's max_payload of {max} bytes")]
    TooLarge {
        /// The payload's size, as its frame says.
        size: u64,
        /// This endpoint's limit.
        max: u64,
    },
    /// A [`RecvWaker`](crate::RecvWaker) interrupted the blocking receive;
    /// no message was taken.
    #[error("the receive was interrupted by its waker")]
    Interrupted,
    /// A system call failed.
    #[error("i/o error while receiving: {0}")]
    Io(#[from] io::Error),
}
