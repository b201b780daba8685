//! The endpoint's background thread: accepts data links, keeps the
//! directory current, releases messages waiting for their `ttl`, and
//! runs the failover when the controller goes away.

use super::control::{self, Begun};
use super::Shared;
use crate::controller::Controller;
use crate::controller::Seed;
use crate::frame::{self, Control, Kind, LinkLoad, LoadReport};
use crate::sync::{Lock, ReadWrite};
use crate::sys::poll::Poller;
use crate::sys::socket::{self, Listener, Received};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BELL: u64 = 0;
const LISTENER: u64 = 1;
const CONTROL: u64 = 2;

/// How often an endpoint tells the controller how far behind its receivers are (when that changed).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Directory records per `Known` frame (each well under 300 bytes).
const KNOWN_PER_FRAME: usize = 128;

/// The longest pause between two attempts to reach a new controller.
const MAX_RETRY: Duration = Duration::from_millis(20);

/// Starts the background thread of a joined endpoint.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: Listener,
    control: OwnedFd,
    controller: Option<Controller>,
) -> io::Result<JoinHandle<()>> {
    let poller = Poller::new()?;
    poller.add(shared.driver_bell.as_fd(), BELL)?;
    socket::set_nonblocking(listener.as_fd(), true)?;
    poller.add(listener.as_fd(), LISTENER)?;
    poller.add(control.as_fd(), CONTROL)?;
    let mut driver = Driver {
        shared,
        poller,
        listener,
        control: Some(control),
        asked: false,
        controller,
        retry_at: None,
        backoff: Duration::from_millis(1),
        departed: None,
        report_at: Instant::now() + REPORT_EVERY,
        reported: LoadReport::default(),
        counted: Counted::now(0, 0),
    };
    std::thread::Builder::new()
        .name("busbar-endpoint".into())
        .spawn(move || driver.run())
}

struct Driver {
    shared: Arc<Shared>,
    poller: Poller,
    /// Our data address. Declared before `control`, so that on shutdown it
    /// closes (and removes its socket file) before the controller sees us go.
    listener: Listener,
    /// The control connection; `None` between losing a controller and joining the next.
    control: Option<OwnedFd>,
    /// Whether `control` carries a join request not answered yet (after a
    /// failover): its next frame is the answer.
    asked: bool,
    /// The controller, when this endpoint hosts it.
    controller: Option<Controller>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The endpoint that hosted the controller we lost, until we re-joined:
    /// if we become the controller, we clean up after it.
    departed: Option<u64>,
    /// When to tell the controller how far behind our receivers are next.
    report_at: Instant,
    /// What we told it last.
    reported: LoadReport,
    /// Our message counters when we last looked, for the rates.
    counted: Counted,
}

/// An endpoint's message counters at one moment.
struct Counted {
    at: Instant,
    sent: u64,
    received: u64,
}

impl Counted {
    fn now(sent: u64, received: u64) -> Counted {
        Counted {
            at: Instant::now(),
            sent,
            received,
        }
    }

    /// Messages per second from `self` to `later`, rounded.
    fn rates(&self, later: &Counted) -> (u64, u64) {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        let rate = |from: u64, to: u64| {
            if secs <= 0.0 {
                0
            } else {
                (to.saturating_sub(from) as f64 / secs).round() as u64
            }
        };
        (
            rate(self.sent, later.sent),
            rate(self.received, later.received),
        )
    }
}

impl Driver {
    fn run(&mut self) {
        let mut ready = Vec::new();
        let mut buf = vec![0u8; frame::MAX_FRAME];
        let mut space = socket::recv_control_space();
        while !self.shared.closed.load(Ordering::SeqCst) {
            let expiry = self.shared.directory.read_locked().next_expiry();
            let trim = self.shared.loans.trim(Instant::now());
            let unmap = self.shared.inbox.lent.locked().trim(Instant::now());
            self.shared.inbox.forget_retired();
            let deadline = [
                expiry,
                trim,
                unmap,
                self.shared.next_pending_deadline(),
                self.retry_at,
                Some(self.report_at),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Err(e) = self.poller.wait(&mut ready, deadline) {
                tracing::error!("endpoint poll failed: {e}");
                return;
            }
            for &token in &ready {
                match token {
                    BELL => self.shared.driver_bell.clear(),
                    LISTENER => self.accept_links(),
                    CONTROL => self.read_control(&mut buf, &mut space),
                    _ => {}
                }
            }
            if self.control.is_none() && self.retry_at.is_some_and(|t| Instant::now() >= t) {
                self.rejoin();
            }
            self.prune_directory();
            self.flush_pending();
            if Instant::now() >= self.report_at {
                self.report_load();
            }
        }
    }

    /// Drops peers kept from before a failover that never came back, and
    /// closes our links to them.
    fn prune_directory(&self) {
        let gone = {
            let mut dir = self.shared.directory.write_locked();
            if dir.next_expiry().is_none_or(|t| Instant::now() < t) {
                return;
            }
            dir.prune(Instant::now())
        };
        for id in gone {
            tracing::info!(
                "endpoint {id:016x} did not come back after the failover; forgetting it"
            );
            self.shared.forget_link(id);
        }
    }

    /// Tells the controller how much each of our receivers has not read yet
    /// and how much we dropped for it, and how many messages we sent and
    /// received per second since we last looked, when that changed since
    /// last time.
    fn report_load(&mut self) {
        self.report_at = Instant::now() + REPORT_EVERY;
        // Never `stats()`: it waits for the ttl queue, which a sender may
        // hold while it waits for a full receiver.
        let c = &self.shared.counters;
        let counted = Counted::now(
            c.sent.load(Ordering::Relaxed),
            c.received.load(Ordering::Relaxed),
        );
        let (sent_per_sec, received_per_sec) = self.counted.rates(&counted);
        self.counted = counted;
        let Some(conn) = self.control.as_ref() else {
            return;
        };
        let links: Vec<LinkLoad> = self
            .shared
            .link_stats()
            .into_iter()
            .map(|l| LinkLoad {
                peer: l.peer.0,
                queued_bytes: l.queued_bytes as u64,
                dropped: l.dropped_full,
            })
            .collect();
        let load = LoadReport {
            links,
            sent_per_sec,
            received_per_sec,
        };
        if load == self.reported {
            return;
        }
        let report = frame::encode_small(
            Kind::Control,
            &Control::Report(load.clone()),
            frame::PROTOCOL_VERSION,
        );
        // Never wait for the controller: if its socket is full, the next report will do.
        if socket::send_frame(conn.as_fd(), &[&report], &[]).is_ok() {
            self.reported = load;
        }
    }

    fn flush_pending(&self) {
        // A sender holding the queue is flushing it itself (and may be
        // waiting for a full receiver): never wait for it here.
        let Some(mut pending) = self.shared.try_pending() else {
            return;
        };
        if !pending.is_empty() {
            // Never wait for a full receiver here: this thread keeps the directory current.
            self.shared
                .flush(&mut pending, Instant::now(), crate::link::Wait::No);
        }
    }

    fn accept_links(&self) {
        loop {
            let fd = match socket::accept(self.listener.as_fd()) {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("accepting a data link failed: {e}");
                    return;
                }
            };
            match socket::peer_cred(fd.as_fd()) {
                Ok(c) if self.shared.options.access.admits(self.shared.uid, c) => {}
                Ok(c) => {
                    tracing::warn!(
                        pid = c.pid,
                        uid = c.uid,
                        gid = c.gid,
                        "refused a data link from a process our access policy does not admit"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("no credentials on a data link: {e}");
                    continue;
                }
            }
            if socket::set_nonblocking(fd.as_fd(), true).is_ok() {
                self.shared.inbox.add_link(fd);
            }
        }
    }

    fn read_control(&mut self, buf: &mut [u8], space: &mut [std::mem::MaybeUninit<u8>]) {
        loop {
            let Some(conn) = self.control.as_ref() else {
                return;
            };
            let got = socket::recv_frame(conn.as_fd(), buf, space);
            let (len, fds) = match got {
                Ok(Received::WouldBlock) => return,
                // Control frames carry no descriptors; `check` refuses one that does.
                Ok(Received::Frame { len, fds }) => (len, fds.len()),
                Ok(Received::Closed) | Ok(Received::Truncated) | Err(_) => {
                    self.lost_controller();
                    return;
                }
            };
            let bytes = &buf[..len];
            if self.asked {
                if !self.answered(bytes, fds) {
                    return;
                }
                continue;
            }
            let msg = frame::check(bytes, fds).and_then(|_| frame::decode_small::<Control>(bytes));
            let mut dir = self.shared.directory.write_locked();
            match msg {
                Ok(Control::Added(record)) => dir.add(record),
                Ok(Control::Removed(id)) => {
                    dir.remove(id);
                    drop(dir);
                    self.shared.forget_link(id);
                }
                Ok(Control::Load(loads)) => dir.set_load(&loads),
                Ok(Control::Welcome {
                    epoch,
                    controller,
                    peers,
                }) => dir.reset(epoch, controller, peers),
                Ok(other) => tracing::warn!("unexpected control message {other:?}"),
                Err(e) => tracing::warn!("malformed control frame: {e}"),
            }
        }
    }

    /// Takes the controller's answer to our re-join request. `false` when
    /// it refused us (the connection is dropped and a retry scheduled).
    fn answered(&mut self, bytes: &[u8], fds: usize) -> bool {
        let welcome = if fds == 0 {
            control::answer(bytes, &self.shared.options)
        } else {
            Err(crate::error::JoinError::Protocol(
                "the answer to join carried descriptors".into(),
            ))
        };
        match welcome {
            Ok(w) => {
                let known = {
                    let mut dir = self.shared.directory.write_locked();
                    dir.reset(w.epoch, w.controller, w.peers);
                    dir.records()
                };
                // Tell the new controller whom we know: it may have taken
                // over knowing fewer endpoints than we do. (In pieces that
                // stay far below the largest frame.)
                if let Some(conn) = self.control.as_ref() {
                    for chunk in known.chunks(KNOWN_PER_FRAME) {
                        let frame = frame::encode_small(
                            Kind::Control,
                            &Control::Known(chunk.to_vec()),
                            frame::PROTOCOL_VERSION,
                        );
                        if let Err(e) = socket::send_frame(conn.as_fd(), &[&frame], &[]) {
                            tracing::debug!("could not tell the new controller whom we know: {e}");
                            break;
                        }
                    }
                }
                self.asked = false;
                self.departed = None;
                // The new controller knows nothing of our load yet.
                self.reported = LoadReport::default();
                true
            }
            Err(e) => {
                tracing::warn!("re-joining the bus failed: {e}");
                if let Some(conn) = self.control.take() {
                    self.poller.remove(conn.as_fd());
                }
                self.asked = false;
                self.schedule_retry();
                false
            }
        }
    }

    /// The control connection closed: the controller is gone. Forget it and
    /// start electing a new one; data links stay up meanwhile.
    fn lost_controller(&mut self) {
        if let Some(conn) = self.control.take() {
            self.poller.remove(conn.as_fd());
        }
        let old = {
            let mut dir = self.shared.directory.write_locked();
            let old = dir.controller.take();
            if let Some(id) = old {
                if id != self.shared.id {
                    dir.remove(id);
                }
            }
            old
        };
        if let Some(id) = old {
            self.shared.forget_link(id);
            tracing::info!("lost the bus controller (endpoint {id:016x}); electing a new one");
            if id != self.shared.id {
                self.departed = Some(id);
            }
        }
        self.asked = false;
        // Losing our connection to the controller we host (it dropped us,
        // say) is no reason to stop it: the others still use it, and we
        // join it again. Only one that stopped by itself is let go.
        if self.controller.as_ref().is_some_and(|c| !c.is_running()) {
            self.controller = None;
        }
        self.backoff = Duration::from_millis(1);
        self.retry_at = Some(Instant::now());
    }

    /// Connects to the controller (or becomes it) and sends the join
    /// request, without waiting: neither for room in the controller's
    /// backlog (it retries shortly) nor for the answer, which
    /// [`read_control`](Driver::read_control) takes. This thread accepts
    /// our data links, so it must never wait for another process.
    fn rejoin(&mut self) {
        let shared = &self.shared;
        let seed = || {
            let dir = shared.directory.read_locked();
            Seed {
                epoch: dir.epoch + 1,
                peers: dir.records(),
                departed: self.departed.into_iter().collect(),
            }
        };
        match control::begin(&shared.options, shared.id, seed, Some(Duration::ZERO)) {
            Ok(Begun::Asked(asked)) => {
                if let Some(started) = asked.started {
                    tracing::info!("this endpoint now hosts the bus controller");
                    self.controller = Some(started);
                }
                let watched = socket::set_nonblocking(asked.conn.as_fd(), true)
                    .and_then(|()| self.poller.add(asked.conn.as_fd(), CONTROL));
                if let Err(e) = watched {
                    tracing::warn!("could not watch the control connection: {e}");
                    self.schedule_retry();
                    return;
                }
                self.control = Some(asked.conn);
                self.asked = true;
                self.retry_at = None;
            }
            Ok(Begun::Retry) => self.schedule_retry(),
            Err(e) => {
                tracing::warn!("re-joining the bus failed: {e}");
                self.schedule_retry();
            }
        }
    }

    fn schedule_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }
}
