//! Routing: which receivers get a frame, what a send does when one is
//! full, and the queue of messages waiting for their ttl.

use super::directory::Directory;
use super::inbox::LocalRefusal;
use super::outgoing::OutFrame;
use super::Shared;
use crate::error::SendError;
use crate::link::{Connected, OutLink, SendFailure, Wait};
use crate::sync::{Lock, ReadWrite};
use crate::sys::socket;
use crate::Backpressure;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the background thread retries a waiting message whose receiver was full.
pub(crate) const FULL_RETRY: Duration = Duration::from_millis(5);

/// Which call is sending: it decides how long a full receiver may hold it up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    /// `send`: the policy decides.
    Send,
    /// `send_timeout`: wait at most until then.
    Until(Instant),
    /// `try_send`: never wait.
    Try,
}

/// A message waiting for an endpoint that matches its selector (or for a
/// full one to make room).
#[derive(Debug)]
pub(crate) struct Pending {
    frame: OutFrame,
    deadline: Instant,
    /// Receivers that already have it (a multicast some of whose receivers were full).
    done: Vec<u64>,
    /// Whether a matching receiver was full at the last try.
    stuck: bool,
}

/// Receiver ids, the first kept in place: a unicast delivers to one, and
/// routing it allocates nothing.
#[derive(Debug, Default)]
struct Ids {
    first: Option<u64>,
    rest: Vec<u64>,
}

impl Ids {
    fn push(&mut self, id: u64) {
        if self.first.is_none() {
            self.first = Some(id);
        } else {
            self.rest.push(id);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.first.iter().chain(&self.rest).copied()
    }
}

/// What one routing round achieved.
#[derive(Debug, Default)]
struct Outcome {
    delivered: Ids,
    full: Vec<u64>,
    /// One of `full` is this endpoint, and the thread sending is the one
    /// receiving from it: waiting for room could never end.
    would_deadlock: bool,
    /// The directory's [`changes`](super::directory::Directory::changes)
    /// when the receivers were picked.
    dir_changes: u64,
    /// Nothing was written: the directory had changed since the count the
    /// caller gave (`deliver`'s `unless_changed_since`).
    changed: bool,
}

impl Outcome {
    fn push(&mut self, t: u64, d: Delivery) {
        match d {
            Delivery::Delivered => self.delivered.push(t),
            Delivery::Full => self.full.push(t),
            Delivery::WouldDeadlock => {
                self.full.push(t);
                self.would_deadlock = true;
            }
            Delivery::Gone => {}
        }
    }
}

/// A link to a receiver, or why there is none.
enum Link {
    Ready(Arc<OutLink>),
    /// The receiver is gone.
    Gone,
    /// The receiver has not accepted its earlier connections within the wait.
    Busy,
}

enum Delivery {
    Delivered,
    Full,
    /// This endpoint's own queue is full and the thread sending is the one
    /// receiving from it.
    WouldDeadlock,
    /// The receiver is gone (or was never reachable): try another.
    Gone,
}

impl Shared {
    /// How long a `call` with `selector` waits for a full receiver (its
    /// backpressure policy, or the endpoint's, decides).
    pub(crate) fn wait_for(&self, selector: &crate::Selector, call: Call) -> Wait {
        let policy = selector.backpressure.unwrap_or(self.options.backpressure);
        match (policy, call) {
            (Backpressure::Block, Call::Send) => Wait::Forever,
            (Backpressure::Block, Call::Until(d)) => Wait::Until(d),
            _ => Wait::No,
        }
    }

    /// Routes a message now, or queues it for its ttl.
    ///
    /// Order per receiver is kept with messages already waiting: a new
    /// message does not overtake a waiting one that a full receiver holds up.
    pub(crate) fn route(&self, frame: OutFrame, call: Call) -> Result<(), SendError> {
        self.route_then(frame, call, |_| {})
    }

    /// Like [`route`](Self::route), and shows the frame to `done` just
    /// before it is dropped, when routing is through with it: it went out
    /// (or nowhere), or a receiver was full, or writing it failed (the
    /// error is returned). Not a frame held for its ttl, nor one refused a
    /// place there (dropped with the error). For a caller that reuses what
    /// the frame owns (`try_send_bytes`, its payload buffer). The frame is
    /// dropped where it lies: it is a few hundred bytes, and moving it back
    /// out of every send (880b628's `route_back`) cost more than the rest
    /// of `route` around `deliver` (callgrind, 16 B).
    pub(crate) fn route_then(
        &self,
        mut frame: OutFrame,
        call: Call,
        done: impl FnOnce(&mut OutFrame),
    ) -> Result<(), SendError> {
        if self.closed.load(Ordering::Relaxed) {
            done(&mut frame);
            return Err(SendError::Disconnected);
        }
        let policy = frame
            .selector
            .backpressure
            .unwrap_or(self.options.backpressure);
        let wait = self.wait_for(&frame.selector, call);
        let mut pending = self.pending.locked();
        if !pending.is_empty() {
            self.flush(&mut pending, Instant::now(), wait);
        }
        if pending.iter().any(|p| p.stuck) {
            // An older message waits for a full receiver: going round it could reorder.
            if frame.selector.ttl.is_zero() {
                done(&mut frame);
                return Err(SendError::Full {
                    delivered: 0,
                    full: 1,
                });
            }
            return self.hold(&mut pending, frame, Vec::new(), true);
        }
        if !pending.is_empty() && !frame.selector.ttl.is_zero() {
            return self.hold(&mut pending, frame, Vec::new(), false);
        }
        drop(pending);
        let out = match self.deliver(&frame, &[], wait, None) {
            Ok(out) => out,
            Err(e) => {
                done(&mut frame);
                return Err(e);
            }
        };
        if !out.full.is_empty() {
            let failed = if policy == Backpressure::DropNewest {
                self.count_drops(&out.full);
                None
            } else if out.would_deadlock {
                Some(SendError::WouldDeadlock {
                    delivered: out.delivered.len(),
                })
            } else {
                Some(SendError::Full {
                    delivered: out.delivered.len(),
                    full: out.full.len(),
                })
            };
            if let Some(e) = failed {
                done(&mut frame);
                return Err(e);
            }
        }
        // Nobody matches: a multicast nobody listens to is no failure (unless
        // its selector requires a receiver); with a ttl it waits for a first one.
        let selector = &frame.selector;
        let went = !out.delivered.is_empty()
            || !out.full.is_empty()
            || (selector.ttl.is_zero()
                && Directory::is_multicast(selector)
                && !selector.require_receiver);
        if went {
            done(&mut frame);
            return Ok(());
        }
        let mut pending = self.pending.locked();
        self.hold(&mut pending, frame, Vec::new(), false)
    }

    fn hold(
        &self,
        pending: &mut VecDeque<Pending>,
        frame: OutFrame,
        done: Vec<u64>,
        stuck: bool,
    ) -> Result<(), SendError> {
        if frame.selector.ttl.is_zero() {
            return Err(SendError::NoRoute(frame.selector.to_string()));
        }
        let limits = &self.options.limits;
        let (bytes, fds) = pending
            .iter()
            .map(|p| p.frame.weight())
            .fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1));
        let (b, f) = frame.weight();
        if bytes + b > limits.max_pending_bytes {
            return Err(SendError::PendingFull(format!(
                "{} bytes wait already, {b} more would pass the limit of {}",
                bytes, limits.max_pending_bytes
            )));
        }
        if fds + f > limits.max_pending_descriptors {
            return Err(SendError::PendingFull(format!(
                "{fds} descriptors wait already, {f} more would pass the limit of {}",
                limits.max_pending_descriptors
            )));
        }
        let deadline = Instant::now() + frame.selector.ttl;
        pending.push_back(Pending {
            frame,
            deadline,
            done,
            stuck,
        });
        // The background thread wakes at the new deadline.
        self.driver_bell.ring();
        Ok(())
    }

    /// Retries waiting messages in order, waiting for full receivers as
    /// `wait` says, and drops those whose ttl ran out. Stops at a message a
    /// full receiver holds up, so that nothing behind it overtakes it.
    ///
    /// A message that finds nobody stays, and those behind it may go (they
    /// cannot share a receiver with it) only as long as the directory is
    /// the one it found nobody in: when an endpoint is listed meanwhile (the
    /// background thread takes the controller's word while we flush), the
    /// flush starts again from the front, so that the waiting message
    /// reaches a receiver they share before they do.
    pub(crate) fn flush(&self, pending: &mut VecDeque<Pending>, now: Instant, wait: Wait) {
        let mut keep = VecDeque::with_capacity(pending.len());
        // The directory's change count when a message first found nobody.
        let mut nobody_in: Option<u64> = None;
        while let Some(mut p) = pending.pop_front() {
            // Expired first: a match that appeared after the ttl ran out must not get it.
            if now >= p.deadline {
                self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(selector = %p.frame.selector, "no endpoint matched within the ttl; message dropped");
                continue;
            }
            let wait = match wait {
                Wait::Until(d) => Wait::Until(d.min(p.deadline)),
                Wait::Forever => Wait::Until(p.deadline),
                Wait::No => Wait::No,
            };
            let out = match self.deliver(&p.frame, &p.done, wait, nobody_in) {
                Ok(out) if out.changed => {
                    // Someone was listed since a message ahead found
                    // nobody: from the front again (each restart follows
                    // a change of the directory, so this ends).
                    pending.push_front(p);
                    let rest = std::mem::take(pending);
                    keep.extend(rest);
                    *pending = std::mem::take(&mut keep);
                    nobody_in = None;
                    continue;
                }
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(selector = %p.frame.selector, "a waiting message could not be sent: {e}");
                    continue;
                }
            };
            p.done.extend(out.delivered.iter());
            if out.full.is_empty() && !p.done.is_empty() {
                continue; // everyone it matched has it
            }
            let policy = p
                .frame
                .selector
                .backpressure
                .unwrap_or(self.options.backpressure);
            if !out.full.is_empty() && policy == Backpressure::DropNewest {
                self.count_drops(&out.full);
                continue;
            }
            // Still nobody matches (the ones behind it may go: they cannot
            // share a receiver with it, in this directory), or a full
            // receiver holds it up (nothing behind it goes, so that nothing
            // overtakes it).
            p.stuck = !out.full.is_empty();
            if !p.stuck && nobody_in.is_none() {
                nobody_in = Some(out.dir_changes);
            }
            let stuck = p.stuck;
            keep.push_back(p);
            if stuck {
                keep.extend(pending.drain(..));
                break;
            }
        }
        *pending = keep;
    }

    fn count_drops(&self, full: &[u64]) {
        let links = self.links.locked();
        for t in full {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            if let Some(l) = links.get(t) {
                l.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The ttl queue, unless a sender holds it (it may be waiting for a full
    /// receiver while it does): for the background thread, which must not wait.
    pub(crate) fn try_pending(&self) -> Option<std::sync::MutexGuard<'_, VecDeque<Pending>>> {
        self.pending.try_locked()
    }

    /// Messages waiting for their ttl.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.locked().len()
    }

    /// The endpoint is shutting down: one last try for waiting messages,
    /// then say how many are dropped with it.
    pub(crate) fn discard_pending(&self) {
        let mut pending = self.pending.locked();
        if pending.is_empty() {
            return;
        }
        self.flush(&mut pending, Instant::now(), Wait::No);
        if !pending.is_empty() {
            tracing::warn!(
                "endpoint {:016x} shut down with {} message(s) still waiting for their ttl; they are dropped",
                self.id,
                pending.len()
            );
            pending.clear();
        }
    }

    /// When the background thread should look at the waiting messages next.
    ///
    /// A sender may hold the queue while it waits for a full receiver; the
    /// background thread must not wait with it, so it looks again shortly.
    pub(crate) fn next_pending_deadline(&self) -> Option<Instant> {
        let Some(pending) = self.try_pending() else {
            return Some(Instant::now() + FULL_RETRY);
        };
        let retry = pending
            .iter()
            .any(|p| p.stuck)
            .then(|| Instant::now() + FULL_RETRY);
        pending.iter().map(|p| p.deadline).chain(retry).min()
    }

    /// Writes the frame to the receivers its selector picks from the
    /// directory, skipping those in `done`. With `unless_changed_since`,
    /// writes nothing (`changed`) when the directory's change count is no
    /// longer that one.
    fn deliver(
        &self,
        frame: &OutFrame,
        done: &[u64],
        wait: Wait,
        unless_changed_since: Option<u64>,
    ) -> Result<Outcome, SendError> {
        let mut out = Outcome::default();
        let all = {
            let dir = self.directory.read_locked();
            out.dir_changes = dir.changes();
            if unless_changed_since.is_some_and(|c| c != out.dir_changes) {
                out.changed = true;
                return Ok(out);
            }
            dir.matching_memo(&frame.selector, frame.selector_key(), &self.routes)
        };
        let targets: Cow<'_, [u64]> = if done.is_empty() {
            Cow::Borrowed(&all)
        } else {
            Cow::Owned(all.iter().copied().filter(|t| !done.contains(t)).collect())
        };
        if targets.is_empty() {
            return Ok(out);
        }
        if Directory::is_multicast(&frame.selector) {
            // First everyone with room, then (if we may wait) the full ones.
            let mut first_error = None;
            let mut full = Vec::new();
            for &t in targets.iter() {
                match self.deliver_to(t, frame, Wait::No) {
                    Ok(Delivery::Full) => full.push(t),
                    Ok(d) => out.push(t, d),
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            for t in full {
                let d = if wait == Wait::No {
                    Ok(Delivery::Full)
                } else {
                    self.deliver_to(t, frame, wait)
                };
                match d {
                    Ok(d) => out.push(t, d),
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            return match first_error {
                Some(e) => Err(e),
                None => Ok(out),
            };
        }
        // Unicast: the next match in turn that has room; if all are full, wait for the first.
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % targets.len();
        let (before, after) = targets.split_at(start);
        let mut full = Vec::new();
        for &t in after.iter().chain(before) {
            match self.deliver_to(t, frame, Wait::No)? {
                Delivery::Delivered => {
                    out.delivered.push(t);
                    return Ok(out);
                }
                Delivery::Full | Delivery::WouldDeadlock => full.push(t),
                Delivery::Gone => {}
            }
        }
        if wait != Wait::No {
            // A full queue of our own that only this thread could empty
            // does not stop us from waiting for another match.
            let mut stuck_on_self = None;
            for &t in &full {
                match self.deliver_to(t, frame, wait)? {
                    Delivery::Gone => {}
                    Delivery::WouldDeadlock => stuck_on_self = Some(t),
                    d => {
                        out.push(t, d);
                        return Ok(out);
                    }
                }
            }
            if let Some(t) = stuck_on_self {
                out.push(t, Delivery::WouldDeadlock);
            }
            return Ok(out);
        }
        // Only one receiver gets a unicast: it counts once as full.
        out.full.extend(full.first());
        Ok(out)
    }

    fn deliver_to(&self, target: u64, frame: &OutFrame, wait: Wait) -> Result<Delivery, SendError> {
        if target == self.id {
            if !self.inbox.is_open() {
                return Ok(Delivery::Gone);
            }
            // Our own queue is bounded like a link, and waited for the same way.
            let (raw, own) = frame.local_copy()?;
            frame.delivering(None, self.id);
            let (raw, refused) = match self.inbox.push_local(raw, wait) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(Delivery::Delivered);
                }
                Err(LocalRefusal::Full(raw)) => (raw, Delivery::Full),
                Err(LocalRefusal::WouldDeadlock(raw)) => (raw, Delivery::WouldDeadlock),
                Err(LocalRefusal::Closed(raw)) => (raw, Delivery::Gone),
            };
            drop(raw);
            frame.return_counts(own);
            frame.undelivered();
            return Ok(refused);
        }
        let link = match self.link_to(target, wait)? {
            Link::Ready(link) => link,
            Link::Gone => return Ok(Delivery::Gone),
            Link::Busy => return Ok(Delivery::Full),
        };
        // A request waits on this link before it is written: its answer
        // can come back before `write_to` returns.
        frame.delivering(Some(&link), target);
        let written = frame.write_to(&link, wait);
        if written.is_err() {
            frame.undelivered();
        }
        match written {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery::Delivered)
            }
            Err(SendFailure::Full) => Ok(Delivery::Full),
            Err(SendFailure::Io(e)) if socket::is_peer_gone(&e) => {
                self.forget_link(target);
                Ok(Delivery::Gone)
            }
            Err(SendFailure::Io(e)) => Err(e.into()),
        }
    }

    /// The link to `target`, connecting on first use (waiting for the
    /// receiver to accept as `wait` says).
    ///
    /// No lock is held while connecting: the connect waits for the
    /// receiver's background thread to accept, and that thread may itself
    /// be waiting for one of ours (its own sender connecting to us, say).
    /// Two senders racing to make the same link keep the first one made.
    fn link_to(&self, target: u64, wait: Wait) -> Result<Link, SendError> {
        if let Some(l) = self.links.locked().get(&target) {
            return Ok(Link::Ready(l.clone()));
        }
        let addr = crate::namespace::link_address(&self.options, target)?;
        let limits = &self.options.limits;
        let made = OutLink::connect(
            &addr,
            &self.hello,
            self.uid,
            &self.options.access,
            limits.link_buffer,
            wait,
        );
        let l = match made {
            Ok(Connected::Link(l)) => l,
            Ok(Connected::Gone) => return Ok(Link::Gone),
            Ok(Connected::Busy) => return Ok(Link::Busy),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!("not sending to endpoint {target:016x}: {e}");
                return Ok(Link::Gone);
            }
            Err(e) => return Err(e.into()),
        };
        l.set_buffer(limits.link_buffer)?;
        let mut links = self.links.locked();
        // The directory may have dropped the target since the sender picked
        // it (the background thread then forgot its link before we made
        // this one): keep no link nobody will ever forget. (It drops the
        // directory entry before it takes `links`, which we hold.)
        let listed = self.directory.read_locked().lists(target);
        if !listed {
            return Ok(Link::Gone);
        }
        Ok(Link::Ready(
            links.entry(target).or_insert_with(|| Arc::new(l)).clone(),
        ))
    }

    /// Drops the link to an endpoint that went away.
    pub(crate) fn forget_link(&self, target: u64) {
        self.links.locked().remove(&target);
    }
}
