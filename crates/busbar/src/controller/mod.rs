//! The bus controller: the directory of endpoints, pushed to all of them.
//!
//! It runs on a thread inside whichever endpoint won the bind of the bus
//! address. It admits endpoints (protocol version, the host's [`Access`]
//! policy, token, [`Limits::max_endpoints`](crate::Limits::max_endpoints)),
//! tells each newcomer the whole directory and everyone else the change,
//! and notices departures when a control connection closes, which the
//! kernel does for a crashed process too (in the filesystem namespace it
//! then removes the departed endpoint's socket file: `stale.rs`). It never
//! sees a message: data goes endpoint to endpoint.
//!
//! After a failover the new controller starts from its own copy of the
//! directory, so senders keep their routes while the others re-register.
//! Entries nobody re-registers within [`REJOIN_GRACE`] are removed.

mod admit;
mod load;
mod stale;

use crate::departed::Departed;
use crate::frame::{self, Control, Kind, PeerRecord};
use crate::sys::poll::{Doorbell, Poller};
use crate::sys::socket::{self, Listener, PeerCred, Received};
use crate::{Access, Options};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a seeded entry may wait for its endpoint to re-register after a failover.
pub(crate) const REJOIN_GRACE: Duration = Duration::from_secs(3);
/// How long a new connection may take to send its join request.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// Control messages an endpoint may leave unread before the controller drops
/// it (it re-joins when it reads again). The controller itself never waits.
const MAX_OUTBOX_BYTES: usize = 1 << 20;

/// About how many bytes of directory records a welcome carries; the rest
/// follow as `Added` (a frame holds at most `frame::MAX_FRAME` bytes).
const WELCOME_BYTES: usize = 32 * 1024;

/// More than the bytes a record takes encoded (varints at their longest).
fn record_bytes(r: &PeerRecord) -> usize {
    32 + r.label.iter().map(|l| l.len() + 5).sum::<usize>()
}

const STOP: u64 = 0;
const LISTENER: u64 = 1;

/// What a new controller starts from.
pub(crate) struct Seed {
    pub epoch: u64,
    pub peers: Vec<PeerRecord>,
    /// Endpoints known to be gone (the host of the previous controller):
    /// their socket files are removed once nobody listens there.
    pub departed: Vec<u64>,
}

/// A running controller. Dropping it stops the thread and closes the bus
/// address, which makes the other endpoints elect a new one.
pub(crate) struct Controller {
    stop: Arc<Doorbell>,
    thread: Option<JoinHandle<()>>,
}

impl Controller {
    /// Starts serving on `listener` (already bound to the bus address, and
    /// holding the election lock in the filesystem namespace) inside
    /// endpoint `host`, with the token, access policy, limits and namespace
    /// of `options`.
    pub(crate) fn start(
        listener: Listener,
        host: u64,
        options: &Options,
        seed: Seed,
    ) -> io::Result<Controller> {
        let stop = Arc::new(Doorbell::new()?);
        let poller = Poller::new()?;
        poller.add(stop.as_fd(), STOP)?;
        socket::set_nonblocking(listener.as_fd(), true)?;
        poller.add(listener.as_fd(), LISTENER)?;
        let grace = (!seed.peers.is_empty()).then(|| Instant::now() + REJOIN_GRACE);
        let mut stale = stale::Stale::new(options);
        for id in seed.departed {
            stale.departed(id, Instant::now());
        }
        let mut state = State {
            host,
            token: options.token.as_bytes().to_vec(),
            // SO_PEERCRED reports effective ids: compare like with like.
            uid: rustix::process::geteuid().as_raw(),
            access: options.access.clone(),
            max_endpoints: options.limits.max_endpoints,
            stale,
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
            departed: Departed::default(),
            grace,
            next_token: 2,
            load: load::LoadBoard::default(),
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

impl Controller {
    /// Whether its thread still serves the bus.
    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
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
    /// Frames the endpoint's socket had no room for yet, oldest first.
    outbox: VecDeque<Vec<u8>>,
    outbox_bytes: usize,
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
    /// Who may join (the host's policy).
    access: Access,
    /// The most endpoints the directory may hold.
    max_endpoints: usize,
    /// Socket files of departed endpoints, to remove (filesystem namespace).
    stale: stale::Stale,
    epoch: u64,
    poller: Poller,
    listener: Listener,
    conns: HashMap<u64, Conn>,
    dir: BTreeMap<u64, Entry>,
    /// Endpoints that left while this controller served (not listed again
    /// when a re-joining endpoint reports them).
    departed: Departed,
    /// When the entries nobody re-registered yet are removed.
    grace: Option<Instant>,
    next_token: u64,
    load: load::LoadBoard,
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
                    t => {
                        if !self.flush_out(t) {
                            self.close(t);
                            continue;
                        }
                        self.read_conn(t, &mut buf, &mut control)
                    }
                }
            }
            self.expire(Instant::now(), &mut buf, &mut control);
            if let Some(summary) = self.load.take(Instant::now()) {
                self.broadcast(&Control::Load(summary), None);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let joins = self
            .conns
            .values()
            .filter(|c| c.id.is_none())
            .map(|c| c.since + JOIN_DEADLINE);
        joins
            .chain(self.grace)
            .chain(self.load.due())
            .chain(self.stale.next_deadline())
            .min()
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
                                outbox: VecDeque::new(),
                                outbox_bytes: 0,
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
                    // Control frames carry no descriptors: one that does is
                    // malformed, and handled as such (refused, or disconnected).
                    let bytes = if fds.is_empty() { &buf[..len] } else { &[][..] };
                    drop(fds);
                    if !self.on_frame(token, bytes) {
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
        if let Some(id) = conn.id {
            let report = frame::check(bytes, 0).and_then(|_| frame::decode_small::<Control>(bytes));
            match report {
                Ok(Control::Report(loads)) => {
                    self.load.report(id, loads);
                    return true;
                }
                Ok(Control::Known(peers)) => {
                    self.known(token, id, peers);
                    return true;
                }
                _ => {}
            }
            tracing::warn!(
                "an admitted endpoint sent an unexpected control frame; disconnecting it"
            );
            return false;
        }
        let cred = conn.cred;
        match admit::check(bytes, &self.token, &self.access, self.uid, cred) {
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
                // A seeded entry coming back after a failover has its place already.
                if !self.dir.contains_key(&id) && self.dir.len() >= self.max_endpoints {
                    tracing::info!(
                        pid = cred.pid,
                        uid = cred.uid,
                        "refused a join: the bus has its {} endpoints",
                        self.max_endpoints
                    );
                    let max = u64::try_from(self.max_endpoints).unwrap_or(u64::MAX);
                    self.send(token, &Control::Refuse(frame::Refusal::Full { max }));
                    return false;
                }
                let record = PeerRecord {
                    id,
                    label,
                    pid: cred.pid,
                    uid: cred.uid,
                };
                self.departed.forget(id);
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
                // The welcome carries the directory up to WELCOME_BYTES;
                // the rest follows as `Added`, in frames of one record each,
                // so that no directory is too large for one frame.
                let mut peers = self.dir.values().map(|e| e.record.clone());
                let mut first = Vec::new();
                let mut bytes = 0;
                for r in peers.by_ref() {
                    bytes += record_bytes(&r);
                    first.push(r);
                    if bytes >= WELCOME_BYTES {
                        break;
                    }
                }
                let rest: Vec<PeerRecord> = peers.collect();
                let welcome = Control::Welcome {
                    epoch: self.epoch,
                    controller: self.host,
                    peers: first,
                };
                if !self.send(token, &welcome) {
                    return false;
                }
                for r in rest {
                    if !self.send(token, &Control::Added(r)) {
                        return false;
                    }
                }
                self.broadcast(&Control::Added(record), Some(token));
                true
            }
        }
    }

    /// A re-joining endpoint (`from`, on connection `token`) says whom it
    /// knows. Those this controller does not list, and did not see leave,
    /// are listed as if seeded (they keep their place until they
    /// re-register or the grace runs out) and announced to everyone: a
    /// controller that took over knowing fewer endpoints than the
    /// survivors (it had just joined, say) learns of them all, and so does
    /// an endpoint that joins for the first time meanwhile.
    fn known(&mut self, token: u64, from: u64, peers: Vec<PeerRecord>) {
        let mut added = Vec::new();
        for record in peers {
            let id = record.id;
            if id == from
                || self.dir.contains_key(&id)
                || self.departed.contains(id)
                || self.dir.len() >= self.max_endpoints
            {
                continue;
            }
            self.dir.insert(
                id,
                Entry {
                    record: record.clone(),
                    conn: None,
                },
            );
            added.push(record);
        }
        if added.is_empty() {
            return;
        }
        let until = Instant::now() + REJOIN_GRACE;
        self.grace = Some(self.grace.map_or(until, |g| g.max(until)));
        for record in added {
            tracing::debug!(
                "endpoint {:016x} reported by a re-joining endpoint; listed until it re-registers",
                record.id
            );
            self.broadcast(&Control::Added(record), Some(token));
        }
    }

    /// Sends to one connection without waiting: what the socket has no room
    /// for waits in the connection's outbox. `false` if the endpoint is gone
    /// or has left too much unread (the caller closes it).
    fn send(&mut self, token: u64, msg: &Control) -> bool {
        let bytes = frame::encode_small(Kind::Control, msg, frame::PROTOCOL_VERSION);
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        conn.outbox_bytes += bytes.len();
        conn.outbox.push_back(bytes);
        // Our own host is never dropped: it would take the bus down with it.
        if conn.outbox_bytes > MAX_OUTBOX_BYTES && conn.id != Some(self.host) {
            tracing::warn!(
                pid = conn.cred.pid,
                "an endpoint left {} bytes of control messages unread; dropping it",
                conn.outbox_bytes
            );
            return false;
        }
        self.flush_out(token)
    }

    /// Writes what waits in a connection's outbox, as far as its socket takes
    /// it, and watches for room when something is left. `false` if the endpoint is gone.
    fn flush_out(&mut self, token: u64) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        let had = !conn.outbox.is_empty();
        while let Some(bytes) = conn.outbox.front() {
            match socket::send_frame(conn.fd.as_fd(), &[bytes], &[]) {
                Ok(()) => {
                    conn.outbox_bytes -= bytes.len();
                    conn.outbox.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Gone already: its hang-up is next in the queue; nothing to report.
                Err(e) if socket::is_peer_gone(&e) => return false,
                Err(e) => {
                    tracing::warn!(
                        pid = conn.cred.pid,
                        "writing to an endpoint failed ({e}); dropping it"
                    );
                    return false;
                }
            }
        }
        if had {
            let _ = self
                .poller
                .watch_writable(conn.fd.as_fd(), token, !conn.outbox.is_empty());
        }
        true
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
                self.departed.insert(id);
                self.load.forget(id);
                self.stale.departed(id, Instant::now());
                self.broadcast(&Control::Removed(id), None);
            }
        }
    }

    fn expire(&mut self, now: Instant, buf: &mut [u8], control: &mut [std::mem::MaybeUninit<u8>]) {
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.id.is_none() && now >= c.since + JOIN_DEADLINE)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            // Its join request may be there, unread only because a busy
            // controller had others to answer first (a storm of joins): take
            // it before giving up on the connection.
            self.read_conn(t, buf, control);
            if self.conns.get(&t).is_some_and(|c| c.id.is_none()) {
                self.close(t);
            }
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
                self.departed.insert(id);
                self.stale.departed(id, now);
                self.broadcast(&Control::Removed(id), None);
            }
        }
        self.stale.run(now);
    }
}
