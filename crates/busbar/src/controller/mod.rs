//! The bus controller: the directory of endpoints, pushed to all of them.
//!
//! It runs on a thread inside whichever endpoint won the bind of the bus
//! address. It admits endpoints (protocol version, token, uid), tells each
//! newcomer the whole directory and everyone else the change, and notices
//! departures when a control connection closes, which the kernel does for
//! a crashed process too. It never sees a message: data goes endpoint to
//! endpoint.
//!
//! After a failover the new controller starts from its own copy of the
//! directory, so senders keep their routes while the others re-register.
//! Entries nobody re-registers within [`REJOIN_GRACE`] are removed.

mod admit;

use crate::endpoint::control::Seed;
use crate::frame::{self, Control, Kind, PeerRecord};
use crate::sys::poll::{Doorbell, Poller};
use crate::sys::socket::{self, PeerCred, Received};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a seeded entry may wait for its endpoint to re-register after a failover.
pub(crate) const REJOIN_GRACE: Duration = Duration::from_secs(3);
/// How long a new connection may take to send its join request.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a send to one endpoint may block before that endpoint is dropped.
const MEMBER_SEND_TIMEOUT: Duration = Duration::from_secs(2);

const STOP: u64 = 0;
const LISTENER: u64 = 1;

/// A running controller. Dropping it stops the thread and closes the bus
/// address, which makes the other endpoints elect a new one.
pub(crate) struct Controller {
    stop: Arc<Doorbell>,
    thread: Option<JoinHandle<()>>,
}

impl Controller {
    /// Starts serving on `listener` (already bound to the bus address) inside endpoint `host`.
    pub(crate) fn start(
        listener: OwnedFd,
        host: u64,
        token: String,
        seed: Seed,
    ) -> io::Result<Controller> {
        let stop = Arc::new(Doorbell::new()?);
        let poller = Poller::new()?;
        poller.add(stop.as_fd(), STOP)?;
        socket::set_nonblocking(listener.as_fd(), true)?;
        poller.add(listener.as_fd(), LISTENER)?;
        let grace = (!seed.peers.is_empty()).then(|| Instant::now() + REJOIN_GRACE);
        let mut state = State {
            host,
            token: token.into_bytes(),
            uid: rustix::process::getuid().as_raw(),
            epoch: seed.epoch,
            poller,
            listener,
            conns: HashMap::new(),
            dir: seed
                .peers
                .into_iter()
                .map(|r| {
                    (
                        r.id,
                        Entry {
                            record: r,
                            conn: None,
                        },
                    )
                })
                .collect(),
            grace,
            next_token: 2,
        };
        let bell = stop.clone();
        let thread = std::thread::Builder::new()
            .name("busbar-controller".into())
            .spawn(move || state.run(&bell))?;
        tracing::debug!(host = format_args!("{host:016x}"), "controller started");
        Ok(Controller {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn {
    fd: OwnedFd,
    cred: PeerCred,
    /// The endpoint id, once admitted.
    id: Option<u64>,
    since: Instant,
}

struct Entry {
    record: PeerRecord,
    /// The control connection of this endpoint; `None` for an entry seeded
    /// after a failover that has not re-registered yet.
    conn: Option<u64>,
}

struct State {
    host: u64,
    token: Vec<u8>,
    uid: u32,
    epoch: u64,
    poller: Poller,
    listener: OwnedFd,
    conns: HashMap<u64, Conn>,
    dir: BTreeMap<u64, Entry>,
    grace: Option<Instant>,
    next_token: u64,
}

impl State {
    fn run(&mut self, stop: &Doorbell) {
        let mut ready = Vec::new();
        let mut buf = vec![0u8; frame::MAX_FRAME];
        let mut control = socket::recv_control_space();
        loop {
            let deadline = self.next_deadline();
            if let Err(e) = self.poller.wait(&mut ready, deadline) {
                tracing::error!("controller poll failed: {e}");
                return;
            }
            for &token in &ready {
                match token {
                    STOP => {
                        stop.clear();
                        return;
                    }
                    LISTENER => self.accept_all(),
                    t => self.read_conn(t, &mut buf, &mut control),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let joins = self
            .conns
            .values()
            .filter(|c| c.id.is_none())
            .map(|c| c.since + JOIN_DEADLINE);
        joins.chain(self.grace).min()
    }

    fn accept_all(&mut self) {
        loop {
            let fd = match socket::accept(self.listener.as_fd()) {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("controller accept failed: {e}");
                    return;
                }
            };
            let setup = || -> io::Result<PeerCred> {
                let cred = socket::peer_cred(fd.as_fd())?;
                socket::set_nonblocking(fd.as_fd(), true)?;
                socket::set_send_timeout(fd.as_fd(), Some(MEMBER_SEND_TIMEOUT))?;
                Ok(cred)
            };
            match setup() {
                Ok(cred) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    if self.poller.add(fd.as_fd(), token).is_ok() {
                        self.conns.insert(
                            token,
                            Conn {
                                fd,
                                cred,
                                id: None,
                                since: Instant::now(),
                            },
                        );
                    }
                }
                Err(e) => tracing::warn!("could not set up a control connection: {e}"),
            }
        }
    }

    fn read_conn(&mut self, token: u64, buf: &mut [u8], control: &mut [std::mem::MaybeUninit<u8>]) {
        loop {
            let Some(conn) = self.conns.get(&token) else {
                return;
            };
            let got = socket::recv_frame(conn.fd.as_fd(), buf, control);
            match got {
                Ok(Received::WouldBlock) => return,
                Ok(Received::Frame { len, fds }) => {
                    drop(fds);
                    if !self.on_frame(token, &buf[..len]) {
                        self.close(token);
                        return;
                    }
                }
                Ok(Received::Closed) | Ok(Received::Truncated) | Err(_) => {
                    self.close(token);
                    return;
                }
            }
        }
    }

    /// Handles one frame from a connection; `false` closes it.
    fn on_frame(&mut self, token: u64, bytes: &[u8]) -> bool {
        let Some(conn) = self.conns.get(&token) else {
            return false;
        };
        if conn.id.is_some() {
            tracing::warn!(
                "an admitted endpoint sent an unexpected control frame; disconnecting it"
            );
            return false;
        }
        let cred = conn.cred;
        match admit::check(bytes, &self.token, self.uid, cred) {
            Err(refusal) => {
                tracing::info!(
                    pid = cred.pid,
                    uid = cred.uid,
                    "refused a join: {refusal:?}"
                );
                self.send(token, &Control::Refuse(refusal));
                false
            }
            Ok((id, label)) => {
                if self.dir.get(&id).is_some_and(|e| e.conn.is_some()) {
                    self.send(token, &Control::Refuse(frame::Refusal::DuplicateId));
                    return false;
                }
                let record = PeerRecord {
                    id,
                    label,
                    pid: cred.pid,
                    uid: cred.uid,
                };
                self.dir.insert(
                    id,
                    Entry {
                        record: record.clone(),
                        conn: Some(token),
                    },
                );
                if let Some(c) = self.conns.get_mut(&token) {
                    c.id = Some(id);
                }
                let welcome = Control::Welcome {
                    epoch: self.epoch,
                    controller: self.host,
                    peers: self.dir.values().map(|e| e.record.clone()).collect(),
                };
                if !self.send(token, &welcome) {
                    return false;
                }
                self.broadcast(&Control::Added(record), Some(token));
                true
            }
        }
    }

    /// Sends to one connection; `false` if it failed (the caller closes it).
    fn send(&self, token: u64, msg: &Control) -> bool {
        let Some(conn) = self.conns.get(&token) else {
            return false;
        };
        let bytes = frame::encode_small(Kind::Control, msg, frame::PROTOCOL_VERSION);
        // Admitted connections are non-blocking for reads; block (bounded) for this write.
        let _ = socket::set_nonblocking(conn.fd.as_fd(), false);
        let result = socket::send_frame(conn.fd.as_fd(), &[&bytes], &[]);
        let _ = socket::set_nonblocking(conn.fd.as_fd(), true);
        match result {
            Ok(()) => true,
            // Gone already: its hang-up is next in the queue; nothing to report.
            Err(e) if socket::is_peer_gone(&e) => false,
            Err(e) => {
                tracing::warn!(
                    pid = conn.cred.pid,
                    "an endpoint did not take a control message ({e}); dropping it"
                );
                false
            }
        }
    }

    /// Sends to every admitted endpoint but `except`; drops those that fail.
    fn broadcast(&mut self, msg: &Control, except: Option<u64>) {
        let targets: Vec<u64> = self
            .conns
            .iter()
            .filter(|(t, c)| c.id.is_some() && Some(**t) != except)
            .map(|(t, _)| *t)
            .collect();
        let failed: Vec<u64> = targets
            .into_iter()
            .filter(|t| !self.send(*t, msg))
            .collect();
        for t in failed {
            self.close(t);
        }
    }

    fn close(&mut self, token: u64) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        self.poller.remove(conn.fd.as_fd());
        if let Some(id) = conn.id {
            if self.dir.get(&id).is_some_and(|e| e.conn == Some(token)) {
                self.dir.remove(&id);
                self.broadcast(&Control::Removed(id), None);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.id.is_none() && now >= c.since + JOIN_DEADLINE)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.close(t);
        }
        if self.grace.is_some_and(|g| now >= g) {
            self.grace = None;
            let gone: Vec<u64> = self
                .dir
                .iter()
                .filter(|(_, e)| e.conn.is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                tracing::info!(
                    "endpoint {id:016x} did not re-register after failover; removing it"
                );
                self.dir.remove(&id);
                self.broadcast(&Control::Removed(id), None);
            }
        }
    }
}
