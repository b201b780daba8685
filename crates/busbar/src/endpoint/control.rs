//! The endpoint's side of the control plane: find (or become) the
//! controller, and join it.

use crate::controller::{Controller, Seed};
use crate::error::JoinError;
use crate::frame::{self, Control, Kind, PeerRecord, Refusal};
use crate::namespace;
use crate::sys::dir;
use crate::sys::socket::{self, Address, Bind, Connect, Listener, Received};
use crate::Options;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

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
    /// Nobody is serving the bus yet (or someone is just starting to, or
    /// the controller has not accepted its earlier connections yet): try
    /// again shortly.
    Retry,
}

/// A join request on its way: the answer is the next frame on `conn`.
pub(crate) struct Asked {
    pub conn: OwnedFd,
    /// The controller we started on the way, if we did.
    pub started: Option<Controller>,
}

/// The first half of an attempt to join: connect (or, with affinity, become
/// the controller and connect to ourselves) and send the join request.
pub(crate) enum Begun {
    Asked(Asked),
    Retry,
}

/// Tries once to join the bus, waiting for the controller until
/// `deadline` (`None`: as long as it takes): while its backlog is full,
/// then for its answer. When no controller answers and the options allow
/// it, binds the bus address and starts a controller seeded with `seed`.
pub(crate) fn attempt(
    options: &Options,
    id: u64,
    seed: impl FnOnce() -> Seed,
    deadline: Option<Instant>,
) -> Result<Attempt, JoinError> {
    let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let asked = match begin(options, id, seed, limit)? {
        Begun::Asked(a) => a,
        Begun::Retry => return Ok(Attempt::Retry),
    };
    match wait_answer(&asked.conn, options, deadline)? {
        Some(answer) => Ok(Attempt::Joined(
            answer.into_joined(asked.conn)?,
            asked.started,
        )),
        None => Ok(Attempt::Retry),
    }
}

/// Connects to the controller, waiting at most `limit` for room in its
/// backlog (`None`: as long as it takes), or becomes it, and sends the join
/// request. Never waits for the answer.
pub(crate) fn begin(
    options: &Options,
    id: u64,
    seed: impl FnOnce() -> Seed,
    limit: Option<Duration>,
) -> Result<Begun, JoinError> {
    let addr = namespace::bus_address(options)?;
    let mut started = None;
    let conn = match socket::connect_within(&addr, limit)? {
        Connect::Connected(conn) => conn,
        Connect::Busy => return Ok(Begun::Retry),
        Connect::Refused => {
            if !options.controller_affinity {
                return Ok(Begun::Retry);
            }
            let Some(listener) = claim(options, &addr)? else {
                return Ok(Begun::Retry);
            };
            let s = seed();
            started = Some(Controller::start(listener, id, options, s)?);
            // Our own controller's backlog is empty: this does not wait.
            match socket::connect_within(&addr, limit)? {
                Connect::Connected(conn) => conn,
                Connect::Busy | Connect::Refused => return Ok(Begun::Retry),
            }
        }
    };
    if ask(&conn, options, id)? {
        Ok(Begun::Asked(Asked { conn, started }))
    } else {
        Ok(Begun::Retry)
    }
}

/// Tries to become the bus's controller: binds the bus address, after
/// winning the lock on `bus.lock` and removing a stale `bus.sock` in the
/// filesystem namespace (the listener then holds the lock for its life).
/// `None` when someone else is (or is becoming) the controller.
fn claim(options: &Options, addr: &Address) -> io::Result<Option<Listener>> {
    let lock = match addr.file() {
        None => None,
        Some(socket_file) => {
            let Some(lock) = dir::try_lock(&namespace::lock_path(options)?)? else {
                return Ok(None);
            };
            // We hold the lock, so no live controller serves this file: it is stale.
            if dir::unlink(socket_file)? {
                tracing::info!(
                    "removed the stale controller socket {}",
                    socket_file.display()
                );
            }
            Some(lock)
        }
    };
    Ok(match (socket::bind_listener(addr)?, lock) {
        (Bind::Bound(listener), Some(lock)) => Some(listener.keep_lock(lock)),
        (Bind::Bound(listener), None) => Some(listener),
        (Bind::InUse, _) => None,
    })
}

/// Checks whoever holds the bus address and sends it the join request.
/// `false` when the controller went away mid-way (a failover is under way:
/// try again).
fn ask(conn: &OwnedFd, options: &Options, id: u64) -> Result<bool, JoinError> {
    // Whoever holds the bus address gets our token: it must be someone our
    // policy admits, not a process of another user that bound the name first.
    let cred = socket::peer_cred(conn.as_fd())?;
    if !options
        .access
        .admits(rustix::process::geteuid().as_raw(), cred)
    {
        return Err(JoinError::UntrustedController {
            uid: cred.uid,
            pid: cred.pid,
        });
    }
    let join = Control::Join {
        version: options.protocol_version,
        token: options.token.as_bytes().to_vec(),
        id,
        label: options.label.iter().map(str::to_string).collect(),
    };
    let request = frame::encode_small(Kind::Control, &join, options.protocol_version);
    match socket::send_frame(conn.as_fd(), &[&request], &[]) {
        Ok(()) => Ok(true),
        Err(e) if socket::is_peer_gone(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The controller's welcome.
pub(crate) struct Welcome {
    pub epoch: u64,
    pub controller: u64,
    pub peers: Vec<PeerRecord>,
}

impl Welcome {
    /// Makes `conn` the joined control connection (non-blocking from now on).
    fn into_joined(self, conn: OwnedFd) -> Result<Joined, JoinError> {
        socket::set_recv_timeout(conn.as_fd(), None)?;
        socket::set_nonblocking(conn.as_fd(), true)?;
        Ok(Joined {
            conn,
            epoch: self.epoch,
            controller: self.controller,
            peers: self.peers,
        })
    }
}

/// Waits until `deadline` (`None`: as long as it takes) for the answer to
/// the join request. `Ok(None)` when the controller went away mid-way or
/// the deadline passed (the caller tells which).
fn wait_answer(
    conn: &OwnedFd,
    options: &Options,
    deadline: Option<Instant>,
) -> Result<Option<Welcome>, JoinError> {
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let mut control = socket::recv_control_space();
    loop {
        let left = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                Some(left)
            }
            None => None,
        };
        socket::set_recv_timeout(conn.as_fd(), left)?;
        let len = match socket::recv_frame(conn.as_fd(), &mut buf, &mut control)? {
            Received::Frame { len, .. } => len,
            Received::Closed => return Ok(None),
            Received::WouldBlock => continue,
            Received::Truncated => {
                return Err(JoinError::Protocol("oversized answer to join".into()))
            }
        };
        return answer(&buf[..len], options).map(Some);
    }
}

/// Reads the controller's answer to a join request: its welcome, or why it refused.
pub(crate) fn answer(bytes: &[u8], options: &Options) -> Result<Welcome, JoinError> {
    let answer = match frame::check(bytes, 0) {
        Ok(_) => frame::decode_small::<Control>(bytes),
        // A controller of another version still says why, in a body whose encoding is stable.
        Err(frame::FrameError::Version(_)) => frame::decode_small::<Control>(bytes),
        Err(e) => Err(e),
    }
    .map_err(|e| JoinError::Protocol(e.to_string()))?;
    match answer {
        Control::Welcome {
            epoch,
            controller,
            peers,
        } => Ok(Welcome {
            epoch,
            controller,
            peers,
        }),
        Control::Refuse(Refusal::Version { controller }) => Err(JoinError::VersionMismatch {
            ours: options.protocol_version,
            controller,
        }),
        Control::Refuse(Refusal::Token) => Err(JoinError::TokenMismatch),
        Control::Refuse(Refusal::Permission { uid }) => Err(JoinError::PermissionDenied { uid }),
        Control::Refuse(Refusal::DuplicateId) => {
            Err(JoinError::Protocol("endpoint id already in use".into()))
        }
        Control::Refuse(Refusal::Malformed) => Err(JoinError::Protocol(
            "the controller could not read our join".into(),
        )),
        Control::Refuse(Refusal::Full { max }) => Err(JoinError::BusFull {
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }),
        other => Err(JoinError::Protocol(format!(
            "unexpected answer to join: {other:?}"
        ))),
    }
}
