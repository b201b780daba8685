//! The endpoint's side of the control plane: find (or become) the
//! controller, and join it.

use crate::controller::Controller;
use crate::error::JoinError;
use crate::frame::{self, Control, Kind, PeerRecord, Refusal};
use crate::sys::socket::{self, Address, Bind, Received};
use crate::Options;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a joiner waits for the controller's answer to its join request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The address of a bus's controller.
pub(crate) fn bus_address(identifier: &str) -> io::Result<Address> {
    Address::abstract_name(&format!("busbar/{identifier}"))
}

/// The address where endpoint `id` accepts data links.
pub(crate) fn link_address(identifier: &str, id: u64) -> io::Result<Address> {
    Address::abstract_name(&format!("busbar/{identifier}/{id:016x}"))
}

/// A joined control connection and what the controller said.
pub(crate) struct Joined {
    pub conn: OwnedFd,
    pub epoch: u64,
    pub controller: u64,
    pub peers: Vec<PeerRecord>,
}

/// One attempt to reach the controller: connect, or (with affinity) become it.
pub(crate) enum Attempt {
    /// Joined.
    Joined(Joined, Option<Controller>),
    /// Nobody is serving the bus yet (or someone is just starting to): try again shortly.
    Retry,
}

/// What a new controller starts from.
pub(crate) struct Seed {
    pub epoch: u64,
    pub peers: Vec<PeerRecord>,
}

/// Tries once to join the bus. When no controller answers and the options
/// allow it, binds the bus address and starts a controller seeded with `seed`.
pub(crate) fn attempt(
    options: &Options,
    id: u64,
    seed: impl FnOnce() -> Seed,
) -> Result<Attempt, JoinError> {
    let addr = bus_address(&options.identifier)?;
    let mut started = None;
    let conn = match socket::connect(&addr)? {
        Some(conn) => conn,
        None => {
            if !options.controller_affinity {
                return Ok(Attempt::Retry);
            }
            match socket::bind_listener(&addr)? {
                Bind::InUse => return Ok(Attempt::Retry),
                Bind::Bound(listener) => {
                    let s = seed();
                    started = Some(Controller::start(listener, id, options.token.clone(), s)?);
                    match socket::connect(&addr)? {
                        Some(conn) => conn,
                        None => return Ok(Attempt::Retry),
                    }
                }
            }
        }
    };
    match handshake(conn, options, id)? {
        Some(joined) => Ok(Attempt::Joined(joined, started)),
        None => Ok(Attempt::Retry),
    }
}

/// Sends the join request and reads the answer. `Ok(None)` when the
/// controller went away mid-way (a failover is under way: try again).
fn handshake(conn: OwnedFd, options: &Options, id: u64) -> Result<Option<Joined>, JoinError> {
    let join = Control::Join {
        version: options.protocol_version,
        token: options.token.as_bytes().to_vec(),
        id,
        label: options.label.iter().map(str::to_string).collect(),
    };
    let request = frame::encode_small(Kind::Control, &join, options.protocol_version);
    match socket::send_frame(conn.as_fd(), &[&request], &[]) {
        Ok(()) => {}
        Err(e) if socket::is_peer_gone(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let mut control = socket::recv_control_space();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(JoinError::Protocol(
                "the controller did not answer the join request".into(),
            ));
        }
        socket::set_recv_timeout(conn.as_fd(), Some(left))?;
        let len = match socket::recv_frame(conn.as_fd(), &mut buf, &mut control)? {
            Received::Frame { len, .. } => len,
            Received::Closed => return Ok(None),
            Received::WouldBlock => continue,
            Received::Truncated => {
                return Err(JoinError::Protocol("oversized answer to join".into()))
            }
        };
        let bytes = &buf[..len];
        let answer = match frame::check(bytes, 0) {
            Ok(_) => frame::decode_small::<Control>(bytes),
            // A controller of another version still says why, in a body whose encoding is stable.
            Err(frame::FrameError::Version(_)) => frame::decode_small::<Control>(bytes),
            Err(e) => Err(e),
        }
        .map_err(|e| JoinError::Protocol(e.to_string()))?;
        return match answer {
            Control::Welcome {
                epoch,
                controller,
                peers,
            } => {
                socket::set_recv_timeout(conn.as_fd(), None)?;
                socket::set_nonblocking(conn.as_fd(), true)?;
                Ok(Some(Joined {
                    conn,
                    epoch,
                    controller,
                    peers,
                }))
            }
            Control::Refuse(Refusal::Version { controller }) => Err(JoinError::VersionMismatch {
                ours: options.protocol_version,
                controller,
            }),
            Control::Refuse(Refusal::Token) => Err(JoinError::TokenMismatch),
            Control::Refuse(Refusal::Permission { uid }) => {
                Err(JoinError::PermissionDenied { uid })
            }
            Control::Refuse(Refusal::DuplicateId) => {
                Err(JoinError::Protocol("endpoint id already in use".into()))
            }
            Control::Refuse(Refusal::Malformed) => Err(JoinError::Protocol(
                "the controller could not read our join".into(),
            )),
            other => Err(JoinError::Protocol(format!(
                "unexpected answer to join: {other:?}"
            ))),
        };
    }
}
