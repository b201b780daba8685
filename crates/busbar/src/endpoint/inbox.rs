//! Where an endpoint's incoming links and its messages to itself meet.

use super::lent::LentMaps;
use super::stats::Counters;
use super::{ReplyPath, ReplyTo};
use crate::frame::{FrameError, Header, PeerRecord};
use crate::link::{InLink, RawFrame, ReadWith, Wait, MAX_BAD_FRAMES, RING_BELL};
use crate::sync::{CondvarWait, Lock};
use crate::sys::poll::{Doorbell, Poller};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Frames read from one link before looking at the others (fairness).
const BATCH: usize = 64;

/// How many messages to itself an endpoint holds before it counts as full.
pub(crate) const LOCAL_MAX: usize = 1024;

/// How long a `send` waits for room in its own endpoint's queue, with
/// nothing taken out of it, before it logs that it may wait for ever.
const STALL_WARNING: Duration = Duration::from_secs(5);

thread_local! {
    /// The inboxes this thread is receiving from right now (inside `recv`,
    /// `try_recv` or `recv_with`, whose closure may send), innermost last.
    static RECEIVING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as receiving from an inbox until dropped.
pub(crate) struct Receiving(usize);

impl Drop for Receiving {
    fn drop(&mut self) {
        let _ = RECEIVING.try_with(|r| {
            let mut r = r.borrow_mut();
            if let Some(i) = r.iter().rposition(|&k| k == self.0) {
                r.remove(i);
            }
        });
    }
}

/// Why a message to oneself was not queued.
pub(crate) enum LocalRefusal {
    /// No room within the wait.
    Full(RawFrame),
    /// No room, and the thread that would have to make room is the one
    /// sending: it is inside a receive of this very endpoint.
    WouldDeadlock(RawFrame),
    /// The receiver is gone.
    Closed(RawFrame),
}

/// The poller token of the doorbell that rings for local frames.
pub(crate) const BELL: u64 = 0;

/// Incoming links (added by the background thread as peers connect) and
/// frames this endpoint sent itself. The receiver waits on all of them.
pub(crate) struct Inbox {
    poller: Poller,
    /// Regions received as payloads, kept mapped for the next message in them.
    pub lent: Arc<Mutex<LentMaps>>,
    /// The links the receiver reads, by poller token: see [`Inbox::links`].
    links: Mutex<HashMap<u64, InLink>>,
    /// Links accepted since the receiver last looked. The background thread
    /// only ever takes this lock, and only for a moment: it never waits for
    /// the receiver, which holds `links` while it lends a message to its
    /// caller's closure.
    incoming: Mutex<Vec<(u64, InLink)>>,
    /// Set after a link is put in `incoming`, cleared by the receiver
    /// before it takes them: the receiver's every look at its links
    /// (many per microsecond while it spins) skips `incoming`'s lock
    /// while nothing new came.
    has_incoming: AtomicBool,
    local: Mutex<VecDeque<RawFrame>>,
    /// Whether `local` holds frames (changed with `local` locked), for the
    /// spinning receiver to look at without taking the lock.
    has_local: AtomicBool,
    /// Rung when the receiver takes the local queue or goes away: for
    /// senders waiting for room in it.
    room: Condvar,
    /// Senders waiting on `room` (changed with `local` locked).
    waiting: AtomicUsize,
    /// How many times the receiver took the local queue.
    taken: AtomicU64,
    bell: Doorbell,
    next_token: AtomicU64,
    open: AtomicBool,
    /// Set by a [`RecvWaker`](super::RecvWaker), taken by the blocking
    /// receive it interrupts (the doorbell wakes a sleeping one).
    interrupted: AtomicBool,
    /// Whether the application watches the poller's descriptor (it asked
    /// for it): then a receive that finds nothing leaves every ring's
    /// flag raised, so that the next frame makes the descriptor readable.
    watched: AtomicBool,
}

impl Inbox {
    pub(crate) fn new() -> io::Result<Inbox> {
        let poller = Poller::new()?;
        let bell = Doorbell::new()?;
        poller.add(bell.as_fd(), BELL)?;
        Ok(Inbox {
            poller,
            lent: Arc::default(),
            links: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Vec::new()),
            has_incoming: AtomicBool::new(false),
            local: Mutex::new(VecDeque::new()),
            has_local: AtomicBool::new(false),
            room: Condvar::new(),
            waiting: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            bell,
            next_token: AtomicU64::new(BELL + 1),
            open: AtomicBool::new(true),
            interrupted: AtomicBool::new(false),
            watched: AtomicBool::new(false),
        })
    }

    /// Whether a receiver still takes messages.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a new incoming link (a non-blocking socket).
    pub(crate) fn add_link(&self, fd: OwnedFd) {
        if !self.is_open() {
            return;
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let link = InLink::with_maps(fd, self.lent.clone());
        if let Err(e) = self.poller.add(link.as_fd(), token) {
            tracing::warn!("could not watch an incoming link: {e}");
            return;
        }
        self.incoming.locked().push((token, link));
        // After the push: a receiver that clears the flag before taking
        // finds the link, or sees the flag again on its next look.
        self.has_incoming.store(true, Ordering::Release);
    }

    /// The links the receiver reads, with those accepted since it last looked.
    pub(crate) fn links(&self) -> MutexGuard<'_, HashMap<u64, InLink>> {
        let mut links = self.links.locked();
        // A load first: the spinning receiver looks many times a
        // microsecond, and a swap would write the line every time.
        if self.has_incoming.load(Ordering::Relaxed)
            && self.has_incoming.swap(false, Ordering::AcqRel)
        {
            let new = std::mem::take(&mut *self.incoming.locked());
            links.extend(new);
        }
        links
    }

    /// Queues a frame this endpoint sent itself. When [`LOCAL_MAX`] of them
    /// wait already, waits for the receiver to take them as `wait` allows,
    /// like a write to a full link, unless the current thread is itself
    /// receiving from this inbox: then nobody else can make room, and it
    /// says so ([`LocalRefusal::WouldDeadlock`]) instead of waiting.
    pub(crate) fn push_local(&self, frame: RawFrame, wait: Wait) -> Result<(), LocalRefusal> {
        let mut local = self.local.locked();
        let started = Instant::now();
        let taken_before = self.taken.load(Ordering::Relaxed);
        let mut warned = false;
        loop {
            // `close` marks the inbox closed before it empties the queue:
            // an emptied queue must not take the frame.
            if !self.is_open() {
                return Err(LocalRefusal::Closed(frame));
            }
            if local.len() < LOCAL_MAX {
                break;
            }
            let now = Instant::now();
            let slice = match wait {
                Wait::No => return Err(LocalRefusal::Full(frame)),
                _ if self.is_receiving_here() => return Err(LocalRefusal::WouldDeadlock(frame)),
                Wait::Until(d) if now >= d => return Err(LocalRefusal::Full(frame)),
                Wait::Until(d) => d - now,
                Wait::Forever => STALL_WARNING,
            };
            if !warned
                && now.duration_since(started) >= STALL_WARNING
                && self.taken.load(Ordering::Relaxed) == taken_before
            {
                warned = true;
                tracing::warn!(
                    "send has waited {:?} for room among the {LOCAL_MAX} unread messages this endpoint sent itself, \
                     and its receiver took none meanwhile: if no other thread receives on this endpoint, it waits \
                     for ever (receive on another thread, drop the receiver, or use send_timeout or try_send)",
                    now.duration_since(started)
                );
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            local = self.room.wait_locked(local, slice);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        local.push_back(frame);
        self.has_local.store(true, Ordering::Release);
        drop(local);
        self.bell.ring();
        Ok(())
    }

    /// Hands every frame this endpoint sent itself to `f`, in order, and
    /// wakes senders waiting for room.
    pub(crate) fn take_local(&self, f: impl FnMut(RawFrame)) {
        if !self.has_local() {
            return;
        }
        let mut local = self.local.locked();
        if local.is_empty() {
            return;
        }
        self.has_local.store(false, Ordering::Release);
        local.drain(..).for_each(f);
        self.taken.fetch_add(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_all();
        }
    }

    /// Whether a frame this endpoint sent itself waits.
    pub(crate) fn has_local(&self) -> bool {
        self.has_local.load(Ordering::Acquire)
    }

    /// Marks the current thread as receiving from this inbox until the
    /// guard is dropped: a send from it (say, from a `recv_with` closure)
    /// must not wait for room only this thread could make.
    pub(crate) fn receiving(&self) -> Receiving {
        let key = self as *const Inbox as usize;
        RECEIVING.with(|r| r.borrow_mut().push(key));
        Receiving(key)
    }

    /// Whether the current thread is receiving from this inbox.
    fn is_receiving_here(&self) -> bool {
        let key = self as *const Inbox as usize;
        RECEIVING.with(|r| r.borrow().contains(&key))
    }

    /// A frame from the link of poller token `token` turned out malformed
    /// when it was decoded: counts it, and against that link, and cuts the
    /// link when it has sent too many.
    pub(crate) fn malformed(&self, token: u64, e: FrameError, counters: &Counters) {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        let mut links = self.links();
        let Some(link) = links.get_mut(&token) else {
            // A message to ourselves, or the link is gone already.
            tracing::warn!("dropped a malformed message: {e}");
            return;
        };
        if !link.malformed(e) {
            return;
        }
        if let Some(link) = links.remove(&token) {
            self.unwatch(&link);
        }
        counters.links_cut.fetch_add(1, Ordering::Relaxed);
    }

    /// The one link walker: reads up to [`BATCH`] frames from each link, in
    /// order, and hands each to `each` with the link's poller token and the
    /// frame's [`Origin`] (a frame due from the ring goes through
    /// `in_place` first, which sees it where it lies, before its slot is
    /// released). `each` says how to go on.
    ///
    /// The walker deals with the rest: a hello is learnt (`learn`; a link
    /// whose hello claims another endpoint's id is cut), malformed frames
    /// are counted against their link and in `counters` (`malformed`, and
    /// `links_cut` for a link cut for them), closed and cut links are
    /// dropped, and the eventfds of links whose hello just came are watched.
    /// `buf` and `control` are what [`InLink::read_with`] reads the socket into.
    pub(crate) fn walk<T>(
        &self,
        (buf, control): (&mut [u8], &mut [MaybeUninit<u8>]),
        counters: &Counters,
        mut learn: impl FnMut(PeerRecord) -> bool,
        mut in_place: impl FnMut(u64, Header, &[u8], &Origin) -> T,
        mut each: impl FnMut(u64, &Origin, Got<T>) -> Step,
    ) {
        let mut links = self.links();
        let mut gone = Vec::new();
        for (&token, link) in links.iter_mut() {
            let bad_before = link.bad_frames();
            let mut closed = false;
            let mut stop = false;
            let mut origin = Origin::of(link);
            for _ in 0..BATCH {
                let step = match link.read_with(buf, control, |h, b| in_place(token, h, b, &origin))
                {
                    ReadWith::Frame(f) => each(token, &origin, Got::Frame(f)),
                    ReadWith::InPlace(t) => each(token, &origin, Got::InPlace(t)),
                    ReadWith::Nothing => {
                        // Nothing for the application (a hello, say): list
                        // the sender its hello introduced, if it just did,
                        // before anything from the link reaches the caller.
                        if let Some(hello) = link.take_hello() {
                            if !learn(hello) {
                                link.refuse_peer();
                                closed = true;
                                break;
                            }
                        }
                        origin = Origin::of(link);
                        Step::More
                    }
                    ReadWith::Empty => break,
                    ReadWith::Closed => {
                        closed = true;
                        break;
                    }
                };
                match step {
                    Step::More => {}
                    Step::NextLink => break,
                    Step::Stop => {
                        stop = true;
                        break;
                    }
                    Step::Malformed(e) => {
                        if link.malformed(e) {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            let bad = link.bad_frames().saturating_sub(bad_before);
            counters
                .malformed
                .fetch_add(u64::from(bad), Ordering::Relaxed);
            if closed {
                if link.bad_frames() >= MAX_BAD_FRAMES {
                    counters.links_cut.fetch_add(1, Ordering::Relaxed);
                }
                gone.push(token);
            }
            if stop {
                break;
            }
        }
        for token in gone {
            if let Some(link) = links.remove(&token) {
                self.unwatch(&link);
            }
        }
        // The eventfds of links whose hello just arrived.
        for (&token, link) in links.iter_mut() {
            if let Some(bell) = link.bell_to_watch() {
                if let Err(e) = self.poller.add(bell, token | RING_BELL) {
                    tracing::warn!("could not watch a data link's wake-up descriptor: {e}");
                }
            }
        }
    }

    /// Lets each link forget the regions its sender retired, if the
    /// receiver is not reading its links right now (it never waits for it).
    pub(crate) fn forget_retired(&self) {
        if let Ok(mut links) = self.links.try_lock() {
            for link in links.values_mut() {
                link.forget_retired();
            }
        }
    }

    /// Looks up to `turns` times, a spin-loop pause apart, whether a ring
    /// has a frame, a message to ourselves waits, or a waker interrupted
    /// the receive (shared memory only, no system call; the links' lock is
    /// taken once). Whether something is there.
    pub(crate) fn watch(&self, turns: u32) -> bool {
        let mut links = self.links();
        for _ in 0..turns {
            std::hint::spin_loop();
            if links.values_mut().any(|l| l.ring_has_frame())
                || self.has_local()
                || self.interrupted.load(Ordering::Relaxed)
            {
                return true;
            }
        }
        false
    }

    /// Interrupts the blocking receive running now, or the next one.
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
        self.bell.ring();
    }

    /// Whether a waker interrupted the receive; takes the interruption.
    pub(crate) fn take_interrupt(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed) && self.interrupted.swap(false, Ordering::AcqRel)
    }

    /// The poller's descriptor, for the application to poll; from now on
    /// a receive that finds nothing leaves the rings' flags raised (see
    /// [`Inbox::arm`]).
    pub(crate) fn watch_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.watched.store(true, Ordering::Relaxed);
        self.poller.as_fd()
    }

    /// After a receive found nothing: if the application polls the
    /// poller's descriptor, raises every ring's sleeping flag (and leaves
    /// it raised) so that the next frame's producer rings our eventfd and
    /// the descriptor turns readable; sockets and the doorbell make it
    /// readable by themselves. `true` when something came meanwhile (read
    /// again before saying nothing is there).
    pub(crate) fn arm(&self) -> bool {
        self.watched.load(Ordering::Relaxed) && self.prepare_sleep()
    }

    /// Raises every ring's sleeping flag before the receiver sleeps.
    /// `true` when something came after all (do not sleep).
    pub(crate) fn prepare_sleep(&self) -> bool {
        let mut any = false;
        for link in self.links().values_mut() {
            any |= link.prepare_sleep();
        }
        any
    }

    /// Lowers every ring's sleeping flag after the receiver woke.
    pub(crate) fn awake(&self) {
        for link in self.links().values_mut() {
            link.awake();
        }
    }

    /// Waits until `deadline` (`None`: for ever) for a socket, an eventfd
    /// or the doorbell; `tokens` gets the poller tokens of those ready.
    pub(crate) fn wait(&self, tokens: &mut Vec<u64>, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.wait(tokens, deadline)
    }

    /// Tells the links the poller reported (`tokens`) that their sockets are
    /// ready, silences the eventfds of those whose rings rang, and the doorbell.
    pub(crate) fn mark_ready(&self, tokens: &[u64]) {
        let mut links = self.links();
        for &token in tokens {
            if token == BELL {
                self.bell.clear();
            } else if token & RING_BELL != 0 {
                if let Some(link) = links.get_mut(&(token & !RING_BELL)) {
                    link.bell_rang();
                }
            } else if let Some(link) = links.get_mut(&token) {
                link.socket_ready();
            }
        }
    }

    /// Stops watching a link's descriptors, before it is dropped. (The
    /// sender holds the link's eventfd open too, so closing ours would not
    /// take it out of the poller.)
    pub(crate) fn unwatch(&self, link: &InLink) {
        for fd in link.watched() {
            self.poller.remove(fd);
        }
    }

    /// The receiver is gone: close every link so that senders notice.
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
        let mut links = self.links();
        for (_, link) in links.drain() {
            self.unwatch(&link);
        }
        drop(links);
        let mut local = self.local.locked();
        local.clear();
        self.has_local.store(false, Ordering::Release);
        // Senders waiting for room see the receiver gone.
        self.room.notify_all();
    }
}

/// What [`Inbox::walk`]'s closure says after a frame.
pub(crate) enum Step {
    /// Read on from this link.
    More,
    /// Done with this link for this walk (it may have more).
    NextLink,
    /// Done with every link for this walk.
    Stop,
    /// The frame was malformed: count it against its link (cut after too
    /// many), and read on.
    Malformed(FrameError),
}

/// A frame as [`Inbox::walk`] hands it over.
pub(crate) enum Got<T> {
    /// Read off the socket, into our own memory.
    Frame(RawFrame),
    /// What the walk's `in_place` made of a frame due from the ring.
    InPlace(T),
}

/// Where a frame came from: the sender, and the way back to it.
#[derive(Clone)]
pub(crate) struct Origin {
    /// The sending endpoint, as the link's hello introduced it.
    pub source: u64,
    /// The link's socket, for answers to requests (`None`: from ourselves).
    back: Option<Weak<OwnedFd>>,
}

impl Origin {
    /// Frames from a link.
    pub(crate) fn of(link: &InLink) -> Origin {
        Origin {
            source: link.peer.unwrap_or(0),
            back: Some(link.back()),
        }
    }

    /// Frames this endpoint (`id`) sent itself.
    pub(crate) fn local(id: u64) -> Origin {
        Origin {
            source: id,
            back: None,
        }
    }

    /// Frames from `source` that are never requests (answers).
    pub(crate) fn answer(source: u64) -> Origin {
        Origin { source, back: None }
    }

    /// How to answer a frame with this header, if it is a request.
    pub(crate) fn reply_to(&self, header: &Header) -> Option<ReplyTo> {
        header.is_request().then(|| ReplyTo {
            corr: header.correlation,
            path: match &self.back {
                Some(back) => ReplyPath::Link(back.clone()),
                None => ReplyPath::Local,
            },
        })
    }
}
