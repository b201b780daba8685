//! How an endpoint joins a bus.

use crate::sys::socket::PeerCred;
use crate::Label;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How to join a bus: which bus, as whom, with what secret.
///
/// ```
/// let mut options = busbar::Options::new("com.example.solar", busbar::label!("earth"), "token");
/// options.controller_affinity = false; // never host the controller
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The bus name. Only endpoints with the same identifier talk to each other.
    /// At most [`Options::MAX_IDENTIFIER`] bytes, no NUL.
    pub identifier: String,
    /// The strings that describe this endpoint; selectors match against them.
    pub label: Label,
    /// A shared secret: the controller refuses endpoints with another token.
    pub token: String,
    /// Whether this endpoint may host the bus controller (default `true`).
    /// With `false` it never does, and `join` waits for one up to its timeout.
    pub controller_affinity: bool,
    /// Who may join the bus and open links to this endpoint (default: the same user).
    pub access: Access,
    /// Where the bus's sockets live (default: the abstract namespace).
    pub namespace: Namespace,
    /// What `send` does when a receiver is full, unless the selector says otherwise
    /// (default: wait).
    pub backpressure: Backpressure,
    /// Size limits, each with its own error.
    pub limits: Limits,
    pub(crate) protocol_version: u16,
}

impl Options {
    /// The longest bus identifier, in bytes.
    pub const MAX_IDENTIFIER: usize = 64;

    /// Options for joining bus `identifier` with `label` and `token`;
    /// `controller_affinity` is `true`.
    pub fn new(identifier: impl Into<String>, label: Label, token: impl Into<String>) -> Options {
        Options {
            identifier: identifier.into(),
            label,
            token: token.into(),
            controller_affinity: true,
            access: Access::default(),
            namespace: Namespace::default(),
            backpressure: Backpressure::default(),
            limits: Limits::default(),
            protocol_version: crate::frame::PROTOCOL_VERSION,
        }
    }

    /// Claims another protocol version at join (only for testing refusals:
    /// the `busbar-peer` test binary joins as a peer of another version, so
    /// feature `test-hooks` only).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn with_protocol_version(mut self, version: u16) -> Options {
        self.protocol_version = version;
        self
    }
}

/// Who may join a bus and open data links to its endpoints. Checked with
/// `SO_PEERCRED` on every connection, control and data alike.
///
/// ```
/// let mut options = busbar::Options::new("com.example.shared", busbar::label!("svc"), "token");
/// options.access = busbar::Access::Allow { uids: vec![1001], gids: vec![] };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Access {
    /// Only processes running as the same user as this endpoint (the default).
    #[default]
    SameUser,
    /// The same user, plus processes whose uid or gid is listed.
    Allow {
        /// Admitted user ids.
        uids: Vec<u32>,
        /// Admitted group ids (the peer's primary gid, as `SO_PEERCRED` reports it).
        gids: Vec<u32>,
    },
    /// Any local process that can reach the socket (and knows the token).
    Anyone,
}

impl Access {
    /// Whether a process with credentials `peer` (as `SO_PEERCRED` gives them:
    /// effective uid, primary gid) may connect to an endpoint running as
    /// (effective) `our_uid`, or receive from it.
    pub(crate) fn admits(&self, our_uid: u32, peer: PeerCred) -> bool {
        match self {
            Access::SameUser => peer.uid == our_uid,
            Access::Allow { uids, gids } => {
                peer.uid == our_uid || uids.contains(&peer.uid) || gids.contains(&peer.gid)
            }
            Access::Anyone => true,
        }
    }
}

/// Where a bus's sockets live.
///
/// ```
/// let mut options = busbar::Options::new("com.example.private", busbar::label!("svc"), "token");
/// options.namespace = busbar::Namespace::Filesystem(None); // $XDG_RUNTIME_DIR/busbar/com.example.private/
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Namespace {
    /// The abstract unix namespace (`\0busbar/<identifier>`): no files to
    /// clean up; reachable by every process in the network namespace, so
    /// only the `SO_PEERCRED` checks of [`Access`] keep others out.
    #[default]
    Abstract,
    /// Socket files in a directory only the owner may enter (0700): the
    /// given directory, or `$XDG_RUNTIME_DIR/busbar/<identifier>/` for `None`.
    /// File permissions then apply on top of [`Access`].
    Filesystem(Option<PathBuf>),
}

/// What `send` does when a receiver's link is full.
///
/// ```
/// use busbar::{Backpressure, Selector};
/// let telemetry = Selector::multicast("dashboard").backpressure(Backpressure::DropNewest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Backpressure {
    /// Wait until the receiver makes room (the default).
    /// [`send_timeout`](crate::EndpointSender::send_timeout) bounds the wait and
    /// [`try_send`](crate::EndpointSender::try_send) does not wait at all.
    #[default]
    Block,
    /// Drop the message for that receiver, count the drop, and go on.
    DropNewest,
    /// Fail at once with [`SendError::Full`](crate::SendError::Full).
    FailFast,
}

/// Size limits of an endpoint (and, for `max_endpoints`, of the bus it hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most endpoints the controller admits, when this endpoint hosts it
    /// ([`JoinError::BusFull`](crate::JoinError::BusFull) beyond). Default 1024.
    pub max_endpoints: usize,
    /// The largest payload this endpoint sends or accepts, in bytes.
    /// Default 64 MiB; at most 4 GiB (the wire format's limit).
    ///
    /// Over it, `send` fails with
    /// [`SendError::TooLarge`](crate::SendError::TooLarge), and a receiver
    /// drops an incoming message unread and reports it once as
    /// [`RecvError::TooLarge`](crate::RecvError::TooLarge) (counted in
    /// [`EndpointStats::too_large`](crate::EndpointStats::too_large)).
    ///
    /// Why 64 MiB: a receiver copies a payload into its own memory to decode
    /// it, so every process its [`Access`] policy admits (by default, any
    /// process of the same user) can make it allocate this much per message.
    /// 64 MiB is an allocation a desktop application takes in passing, and
    /// still carries an uncompressed 4K RGBA frame (33 MB) in one message.
    /// Bulk data is better attached as a
    /// [`MemoryRegion`](crate::MemoryRegion): it is mapped, never copied,
    /// and does not count here.
    ///
    /// To move larger payloads, raise it on the sending and the receiving
    /// side alike:
    ///
    /// ```
    /// let mut options = busbar::Options::new("com.example.video", busbar::label!("raw"), "token");
    /// options.limits.max_payload = 1 << 30; // 1 GiB
    /// ```
    pub max_payload: u64,
    /// Bytes of payload that may wait for their ttl in this endpoint
    /// ([`SendError::PendingFull`](crate::SendError::PendingFull) beyond). Default 64 MiB.
    pub max_pending_bytes: usize,
    /// Descriptors (objects, regions, large payloads) that may wait for their
    /// ttl in this endpoint ([`SendError::PendingFull`](crate::SendError::PendingFull)
    /// beyond). Default 1024.
    pub max_pending_descriptors: usize,
    /// The bytes a link to one receiver may hold before that receiver counts
    /// as full: the size of the link's shared-memory ring (rounded up to a
    /// power of two, at least 4 KiB), and of its socket's send buffer, which
    /// carries the messages with attachments (the kernel may round it).
    /// Each link's ring costs this much shared memory. Default 256 KiB.
    pub link_buffer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_endpoints: 1024,
            max_payload: 64 << 20,
            max_pending_bytes: 64 << 20,
            max_pending_descriptors: 1024,
            link_buffer: 256 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 1, uid, gid }
    }

    #[test]
    fn same_user_admits_only_our_uid() {
        let a = Access::SameUser;
        assert!(a.admits(1000, cred(1000, 1000)));
        assert!(a.admits(1000, cred(1000, 5)), "the gid does not matter");
        assert!(
            !a.admits(1000, cred(1001, 1000)),
            "a shared gid is not enough"
        );
        assert!(!a.admits(1000, cred(0, 0)), "not even root");
        assert!(!a.admits(0, cred(1000, 1000)));
    }

    #[test]
    fn allow_admits_us_and_the_listed_uids_and_gids() {
        let a = Access::Allow {
            uids: vec![65534, 7],
            gids: vec![100],
        };
        assert!(a.admits(1000, cred(1000, 1)), "ourselves");
        assert!(a.admits(1000, cred(65534, 65534)), "a listed uid");
        assert!(a.admits(1000, cred(7, 1)), "another listed uid");
        assert!(a.admits(1000, cred(2000, 100)), "a listed gid");
        assert!(!a.admits(1000, cred(2000, 2000)), "neither listed");
        assert!(
            !a.admits(1000, cred(100, 7)),
            "uids and gids are not mixed up"
        );
        let empty = Access::Allow {
            uids: vec![],
            gids: vec![],
        };
        assert!(empty.admits(1000, cred(1000, 1)));
        assert!(!empty.admits(1000, cred(1001, 1)));
    }

    #[test]
    fn anyone_admits_everyone() {
        for (uid, gid) in [(0, 0), (1000, 1000), (65534, 65534), (u32::MAX, u32::MAX)] {
            assert!(Access::Anyone.admits(1000, cred(uid, gid)));
        }
    }

    #[test]
    fn default_is_same_user() {
        assert_eq!(Access::default(), Access::SameUser);
        assert_eq!(Namespace::default(), Namespace::Abstract);
    }
}
