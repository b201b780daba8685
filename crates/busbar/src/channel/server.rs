//! [`OneShotServer`]: the first channel between two processes, by name.

use super::{BytesReceiver, Receiver};
use crate::sys::socket::{self, Address, Bind, Listener, Received};
use crate::Access;
use serde::de::DeserializeOwned;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};

/// The verdict a server sends a connection it accepts.
const ACCEPTED: &[u8] = b"Y";

/// The verdict a server sends a connection whose user it does not admit.
const REFUSED: &[u8] = b"N";

/// The abstract socket name of a server called `name`.
fn address(name: &str) -> io::Result<Address> {
    Address::abstract_name(&format!("busbar-channel/{name}"))
}

/// A server that hands out one channel, to the first process that
/// connects to its name: how two processes that share nothing yet get
/// their first channel (then send each other more inside it).
///
/// The name is random and lives in the abstract socket namespace (nothing
/// to clean up). Whoever connects is checked with `SO_PEERCRED` against
/// the server's [`Access`] (by default the same user), and checks the
/// server the same way. Once one connection is accepted the name is gone:
/// a second [`Sender::connect`](super::Sender::connect) fails with
/// `ConnectionRefused` instead of waiting for nothing. `connect` returns
/// once the server has accepted, so run [`accept`](OneShotServer::accept)
/// in another process or thread.
///
/// ```
/// use busbar::channel::{OneShotServer, Sender};
/// let (server, name) = OneShotServer::<String>::new()?;
/// // `name` goes to the other process (a command-line argument, say), which does:
/// let client = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let tx = Sender::<String>::connect(&name)?;
///     tx.send("hello".into())?;
///     assert!(Sender::<String>::connect(&name).is_err(), "one shot only");
///     Ok(())
/// });
/// let (rx, first) = server.accept()?;
/// assert_eq!(first, "hello");
/// client.join().unwrap().unwrap();
/// drop(rx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OneShotServer<T> {
    listener: Listener,
    access: Access,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for OneShotServer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShotServer").finish_non_exhaustive()
    }
}

impl<T> OneShotServer<T> {
    /// A server for the same user's processes, and its name.
    ///
    /// ```
    /// let (_server, name) = busbar::channel::OneShotServer::<u8>::new()?;
    /// assert!(!name.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<(OneShotServer<T>, String)> {
        OneShotServer::with_access(Access::SameUser)
    }

    /// A server that admits the processes `access` admits, and its name.
    ///
    /// ```
    /// let (_server, _name) = busbar::channel::OneShotServer::<u8>::with_access(busbar::Access::Anyone)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_access(access: Access) -> io::Result<(OneShotServer<T>, String)> {
        loop {
            let name = uuid::Uuid::new_v4().simple().to_string();
            if let Bind::Bound(listener) = socket::bind_listener(&address(&name)?)? {
                let server = OneShotServer {
                    listener,
                    access,
                    _t: PhantomData,
                };
                return Ok((server, name));
            }
        }
    }

    /// Waits for the first admitted connection; gives up the name (later
    /// connects are refused at once) and returns the connection's door.
    fn accept_door(self) -> io::Result<OwnedFd> {
        let me = rustix::process::geteuid().as_raw();
        loop {
            let Some(fd) = socket::accept(self.listener.as_fd())? else {
                continue;
            };
            let cred = match socket::peer_cred(fd.as_fd()) {
                Ok(c) => c,
                Err(_) => continue,
            };
            if !self.access.admits(me, cred) {
                tracing::warn!(
                    pid = cred.pid,
                    uid = cred.uid,
                    "a one-shot server refused a connection its access policy does not admit"
                );
                let _ = socket::send_frame(fd.as_fd(), &[REFUSED], &[]);
                continue;
            }
            match socket::send_frame(fd.as_fd(), &[ACCEPTED], &[]) {
                Ok(()) => {}
                // It gave up before we got to it.
                Err(e) if socket::is_peer_gone(&e) => continue,
                Err(e) => return Err(e),
            }
            // Closing the listener refuses every later connect, and resets
            // those waiting in its backlog.
            drop(self.listener);
            return Ok(fd);
        }
    }
}

/// A receive's error as an I/O error.
fn io_error(e: crate::RecvError) -> io::Error {
    match e {
        crate::RecvError::Io(e) => e,
        crate::RecvError::Disconnected => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client hung up before its first message",
        ),
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

impl<T: DeserializeOwned> OneShotServer<T> {
    /// Waits for a client to connect and send its first message: the
    /// channel's receiving end, and that message.
    ///
    /// ```
    /// let (server, name) = busbar::channel::OneShotServer::<u32>::new()?;
    /// let t = std::thread::spawn(move || busbar::channel::Sender::<u32>::connect(&name)?.send(9).map_err(std::io::Error::other));
    /// let (rx, first) = server.accept()?;
    /// assert_eq!(first, 9);
    /// t.join().unwrap()?;
    /// # drop(rx);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(self) -> io::Result<(Receiver<T>, T)> {
        let rx = Receiver::from_door(self.accept_door()?)?;
        let first = rx.recv().map_err(io_error)?;
        Ok((rx, first))
    }
}

impl OneShotServer<Vec<u8>> {
    /// A server for a byte channel ([`BytesSender::connect`](super::BytesSender::connect)).
    ///
    /// ```
    /// let (_server, _name) = busbar::channel::OneShotServer::new_bytes()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new_bytes() -> io::Result<(OneShotServer<Vec<u8>>, String)> {
        OneShotServer::new()
    }

    /// As [`accept`](OneShotServer::accept), for a byte channel.
    ///
    /// ```
    /// let (server, name) = busbar::channel::OneShotServer::new_bytes()?;
    /// let t = std::thread::spawn(move || busbar::channel::BytesSender::connect(&name)?.send(b"hi").map_err(std::io::Error::other));
    /// let (_rx, first) = server.accept_bytes()?;
    /// assert_eq!(first, b"hi");
    /// t.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept_bytes(self) -> io::Result<(BytesReceiver, Vec<u8>)> {
        let rx = BytesReceiver::from_door(self.accept_door()?)?;
        let first = rx.recv().map_err(io_error)?;
        Ok((rx, first))
    }
}

/// Connects to the server named `name`: checks it against `access`, waits
/// for its verdict, and returns the door.
pub(super) fn connect(name: &str, access: &Access) -> io::Result<OwnedFd> {
    let refused = || {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "no one-shot server named {name} takes connections (gone, or it accepted one already)"
            ),
        )
    };
    let fd = match socket::connect_within(&address(name)?, None)? {
        socket::Connect::Connected(fd) => fd,
        socket::Connect::Refused | socket::Connect::Busy => return Err(refused()),
    };
    let cred = socket::peer_cred(fd.as_fd())?;
    let me = rustix::process::geteuid().as_raw();
    if !access.admits(me, cred) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the one-shot server {name} runs as uid {} (gid {}), which the access policy does not admit",
                cred.uid, cred.gid
            ),
        ));
    }
    let mut buf = [0u8; 16];
    let mut control = socket::recv_control_space();
    loop {
        match socket::recv_frame(fd.as_fd(), &mut buf, &mut control) {
            Ok(Received::Frame { len, .. }) if &buf[..len] == ACCEPTED => return Ok(fd),
            Ok(Received::Frame { len, .. }) if &buf[..len] == REFUSED => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the one-shot server {name} does not admit this process"),
                ))
            }
            Ok(Received::WouldBlock) => continue,
            Ok(_) => return Err(refused()),
            Err(e) if socket::is_peer_gone(&e) => return Err(refused()),
            Err(e) => return Err(e),
        }
    }
}
