//! The receiving half of an endpoint.

use super::borrowed::{Borrowed, Opened, Payload, Unopened};
use super::inbox::{Got, Origin, Step, BELL};
use super::lent::LentMaps;
use super::{Core, EndpointId};
use crate::error::RecvError;
use crate::frame::{FrameError, MAX_FRAME};
use crate::link::RawFrame;
use crate::payload::MessageBox;
use crate::sys::socket;
use crate::Message;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of ring frames a receiver decodes ahead from one link at a time.
const READ_AHEAD_BYTES: usize = 64 << 10;

/// How long a receiver watches its rings before it sleeps, by default.
const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Looks at the rings between two looks at the clock while spinning.
const SPIN_TURNS: u32 = 16;

/// Looks at the clock between two looks at the sockets while spinning.
const SOCKET_EVERY: u32 = 8;

/// Receives messages of type `R` sent to this endpoint.
pub struct EndpointReceiver<R> {
    core: Arc<Core>,
    /// Frames read, with the poller token of the link each came from
    /// ([`BELL`] for messages to ourselves).
    ready: VecDeque<(u64, Ready<R>)>,
    buf: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    tokens: Vec<u64>,
    /// How long to watch the rings before sleeping.
    spin: Duration,
    /// Private memory a ring frame is copied into before it is decoded.
    scratch: Vec<u8>,
    /// The selectors decoded last (most frames carry one of them).
    selectors: super::selectors::Selectors,
    _payload: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for EndpointReceiver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointReceiver")
            .field("id", &EndpointId(self.core.shared.id))
            .finish()
    }
}

/// Interrupts an [`EndpointReceiver`]'s blocking receive from another
/// thread: made by [`EndpointReceiver::waker`]; cheap to clone, `Send` and
/// `Sync`. It does not keep the endpoint alive.
///
/// [`wake`](RecvWaker::wake) makes exactly one blocking receive
/// ([`recv`](EndpointReceiver::recv) or
/// [`recv_with`](EndpointReceiver::recv_with)) return
/// [`RecvError::Interrupted`] promptly, taking no message: the one waiting
/// now, or, when none is, the next one to start. Messages already there
/// stay for the next call. Wakes do not add up: several before a receive
/// interrupt that one receive. [`try_recv`](EndpointReceiver::try_recv)
/// neither sees nor takes a wake. It is how an event loop cancels a receive
/// it runs on a thread of its own, or how a receive blocked in one thread
/// ends when another closes the endpoint.
#[derive(Clone, Debug)]
pub struct RecvWaker {
    shared: std::sync::Weak<super::Shared>,
}

impl RecvWaker {
    /// Interrupts the blocking receive running now, or else the next one.
    /// Does nothing once the endpoint is gone.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Options, RecvError};
    /// # let bus = format!("doc.wake.{}", std::process::id());
    /// let (_tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// rx.waker().wake(); // nobody waits yet: the next receive is interrupted
    /// assert!(matches!(rx.recv(None), Err(RecvError::Interrupted)));
    /// assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.inbox.interrupt();
        }
    }
}

/// The receiver's descriptor, for an application's own `poll`, `epoll` or
/// event loop (it is an epoll descriptor: poll it for input, never read it
/// or close it).
///
/// The contract: once [`try_recv`](EndpointReceiver::try_recv) returned
/// [`RecvError::Empty`] (or `recv`/`recv_with` returned
/// [`RecvError::Timeout`]), the descriptor turns readable when a message
/// may have come; then call `try_recv` until it says `Empty` again, and
/// poll again. Readiness can be spurious (`try_recv` finds nothing): just
/// poll again. Asking for the descriptor costs nothing until then; from
/// then on, a receive that finds nothing raises each ring's flag so that
/// the next frame's sender rings the descriptor (one extra system call
/// per wake-up on the sending side).
///
/// ```
/// use busbar::{label, BytesMessage, Message, Options, RecvError, Selector};
/// use std::os::fd::AsFd;
/// # let bus = format!("doc.as_fd.{}", std::process::id());
/// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
/// // (An event loop keeps `rx.as_fd().as_raw_fd()`: it stays valid as
/// // long as the receiver.)
/// let wait = |rx: &busbar::EndpointReceiver<BytesMessage>| {
///     let fd = rx.as_fd();
///     let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
///     rustix::event::poll(&mut fds, None)
/// };
/// assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
/// tx.send(Message::new(Selector::unicast("a"), BytesMessage::from("hi")))?;
/// wait(&rx)?; // returns: the message is there
/// assert_eq!(rx.try_recv()?.payload.data, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<R> std::os::fd::AsFd for EndpointReceiver<R> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.core.shared.inbox.watch_fd()
    }
}

impl<R> Drop for EndpointReceiver<R> {
    fn drop(&mut self) {
        self.core.shared.inbox.close();
    }
}

impl<R: MessageBox> EndpointReceiver<R> {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        EndpointReceiver {
            core,
            ready: VecDeque::new(),
            buf: vec![0; MAX_FRAME],
            control: socket::recv_control_space(),
            tokens: Vec::new(),
            spin: DEFAULT_SPIN,
            scratch: Vec::new(),
            selectors: Default::default(),
            _payload: PhantomData,
        }
    }

    /// Waits for the next message, up to `timeout` (`None`: as long as it takes).
    ///
    /// Messages of a type `R` does not know are skipped. A message of a known
    /// type whose payload does not decode is dropped and reported as
    /// [`RecvError::Decode`], and one larger than this endpoint's
    /// [`Limits::max_payload`](crate::Limits::max_payload) is dropped unread
    /// and reported as [`RecvError::TooLarge`]; either way the next call
    /// goes on with the next message.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let bus = format!("doc.recv.{}", std::process::id());
    /// let (_s, mut receiver) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// let err = receiver.recv(Some(Duration::from_millis(10)));
    /// assert!(matches!(err, Err(busbar::RecvError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Message<R>, RecvError> {
        let mut deadline = Deadline::new(timeout);
        let _receiving = self.core.shared.inbox.receiving();
        loop {
            if self.core.shared.inbox.take_interrupt() {
                return Err(RecvError::Interrupted);
            }
            if let Some(m) = self.next_ready() {
                return m;
            }
            let deadline = deadline.get();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if self.core.shared.inbox.arm() && self.scan() {
                    continue;
                }
                return Err(RecvError::Timeout);
            }
            self.fill(deadline)?;
        }
    }

    /// Takes a message that is already here, without waiting.
    /// [`RecvError::Empty`] when there is none.
    ///
    /// ```
    /// # let bus = format!("doc.try_recv.{}", std::process::id());
    /// let (_s, mut receiver) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// assert!(matches!(receiver.try_recv(), Err(busbar::RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Message<R>, RecvError> {
        let _receiving = self.core.shared.inbox.receiving();
        loop {
            if let Some(m) = self.next_ready() {
                return m;
            }
            if !self.fill(Some(Instant::now()))? {
                if self.core.shared.inbox.arm() && self.scan() {
                    continue;
                }
                return Err(RecvError::Empty);
            }
        }
    }

    /// [`try_recv`](Self::try_recv) and [`recv_with`](Self::recv_with) in
    /// one: lends a message that is already here to `f`, without waiting
    /// and without copying its payload, and returns what `f` returns;
    /// [`RecvError::Empty`] when there is none. Like `try_recv`, it reads
    /// the sockets and silences the descriptor ([`AsFd`]) when it finds
    /// nothing, so an event loop polling that descriptor can use it in
    /// place of `try_recv`.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, RecvError, Selector};
    /// # let bus = format!("doc.try_recv_with.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// assert!(matches!(rx.try_recv_with(|_| ()), Err(RecvError::Empty)));
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::new(4, b"abc".to_vec())))?;
    /// let got = rx.try_recv_with(|m| m.bytes().map(|(f, b)| (f, b.to_vec())))?;
    /// assert_eq!(got, Some((4, b"abc".to_vec())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_with<T>(&mut self, f: impl FnOnce(Borrowed<'_>) -> T) -> Result<T, RecvError> {
        let mut f = Some(f);
        let _receiving = self.core.shared.inbox.receiving();
        if let Some(out) = self.lend_next(&mut f) {
            return out;
        }
        self.wait_input(Some(Instant::now()))?;
        if let Some(out) = self.lend_next(&mut f) {
            return out;
        }
        if self.core.shared.inbox.arm() {
            if let Some(out) = self.lend_next(&mut f) {
                return out;
            }
        }
        Err(RecvError::Empty)
    }

    /// [`try_recv_with`](Self::try_recv_with) without a system call: lends
    /// a message only when it can be read at once — from a link's ring,
    /// read already, or sent to this endpoint by itself — and neither polls
    /// the sockets nor arms the descriptor ([`AsFd`]). For the messages of
    /// a batch after the first: [`RecvError::Empty`] here says nothing
    /// about the descriptor, so an event loop calls `try_recv_with` (or
    /// `try_recv`) until *that* finds nothing before it polls again.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, RecvError, Selector};
    /// # let bus = format!("doc.try_recv_ready_with.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// for text in ["one", "two"] {
    ///     tx.send(Message::new(Selector::unicast("a"), BytesMessage::from(text)))?;
    /// }
    /// let first = rx.try_recv_with(|m| m.payload().len())?;
    /// let second = rx.try_recv_ready_with(|m| m.bytes().map(|(_, b)| b.to_vec()))?;
    /// assert_eq!(second, Some(b"two".to_vec()));
    /// assert!(matches!(rx.try_recv_ready_with(|_| ()), Err(RecvError::Empty)));
    /// # let _ = first;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_ready_with<T>(
        &mut self,
        f: impl FnOnce(Borrowed<'_>) -> T,
    ) -> Result<T, RecvError> {
        let mut f = Some(f);
        let _receiving = self.core.shared.inbox.receiving();
        match self.lend_next(&mut f) {
            Some(out) => out,
            None => Err(RecvError::Empty),
        }
    }

    /// [`try_recv`](Self::try_recv) without a system call: takes a message
    /// only when it can be had at once — from a link's ring, read already,
    /// or sent to this endpoint by itself — and neither polls the sockets
    /// nor arms the descriptor ([`AsFd`]). For a binding that takes what is
    /// queued before it decides to wait: [`RecvError::Empty`] here says
    /// nothing about the sockets, so it then calls [`recv`](Self::recv) (or
    /// `try_recv`), which reads them.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, RecvError, Selector};
    /// # let bus = format!("doc.try_recv_ready.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// for text in ["one", "two"] {
    ///     tx.send(Message::new(Selector::unicast("a"), BytesMessage::from(text)))?;
    /// }
    /// assert_eq!(rx.recv(None)?.payload.data, b"one");
    /// assert_eq!(rx.try_recv_ready()?.payload.data, b"two");
    /// assert!(matches!(rx.try_recv_ready(), Err(RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_ready(&mut self) -> Result<Message<R>, RecvError> {
        let _receiving = self.core.shared.inbox.receiving();
        loop {
            if let Some(m) = self.next_ready() {
                return m;
            }
            if !self.scan() {
                return Err(RecvError::Empty);
            }
        }
    }

    /// For an event loop that polls the descriptor ([`AsFd`]): watches the
    /// shared-memory rings for up to `spin` before going back to the
    /// descriptor, as [`recv`](Self::recv) spins before it sleeps. Makes
    /// no system call and reads nothing; while it watches, the rings'
    /// sleeping flags are down, so senders do not ring the descriptor.
    ///
    /// `true`: a message may be there: take it with
    /// [`try_recv`](Self::try_recv) or [`try_recv_with`](Self::try_recv_with)
    /// (which arm the descriptor again when they find nothing). `false`:
    /// nothing came, and the descriptor is armed as `try_recv` leaves it,
    /// so the next frame turns it readable. Sockets (descriptors, large
    /// frames, new links) are not read here: they turn the descriptor
    /// readable meanwhile, so an event loop keeps polling it.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, RecvError, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.spin_for.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    /// assert!(!rx.spin_for(Duration::from_micros(20)));
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::from("hi")))?;
    /// assert!(rx.spin_for(Duration::from_micros(20)));
    /// assert_eq!(rx.try_recv()?.payload.data, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spin_for(&mut self, spin: Duration) -> bool {
        let inbox = &self.core.shared.inbox;
        if !self.ready.is_empty() {
            return true;
        }
        inbox.awake();
        let end = Instant::now() + spin;
        loop {
            if inbox.watch(SPIN_TURNS) {
                return true;
            }
            if Instant::now() >= end {
                break;
            }
        }
        inbox.arm()
    }

    /// This endpoint's id.
    pub fn id(&self) -> EndpointId {
        EndpointId(self.core.shared.id)
    }

    /// A handle another thread uses to interrupt this receiver's blocking
    /// [`recv`](Self::recv) or [`recv_with`](Self::recv_with): see [`RecvWaker`].
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Options, RecvError};
    /// # let bus = format!("doc.waker.{}", std::process::id());
    /// let (_tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// let waker = rx.waker();
    /// let waiting = std::thread::spawn(move || rx.recv(None));
    /// waker.wake();
    /// assert!(matches!(waiting.join().unwrap(), Err(RecvError::Interrupted)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn waker(&self) -> RecvWaker {
        RecvWaker {
            shared: Arc::downgrade(&self.core.shared),
        }
    }

    /// Decodes frames already read until one is a message for us (or a
    /// payload that did not decode). Returned as it was queued: a message
    /// moved into another wrapper on its way out is copied again.
    fn next_ready(&mut self) -> Option<Result<Message<R>, RecvError>> {
        while let Some((token, ready)) = self.ready.pop_front() {
            let counters = &self.core.shared.counters;
            let (raw, origin) = match ready {
                Ready::Raw(raw, origin) => (raw, origin),
                Ready::Decoded(m) => {
                    count_handed(counters, &m);
                    return Some(m);
                }
            };
            let max = self.core.shared.options.limits.max_payload;
            if raw.header.payload_len > max {
                // Over this endpoint's own limit: dropped before a byte of it is read.
                let out = Err(too_large(raw.header.payload_len, max));
                count_handed::<Message<R>>(counters, &out);
                return Some(out);
            }
            match decode_with(raw, &self.core.shared.inbox.lent, &origin) {
                Ok(Decoded::Message(m)) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    return Some(Ok(m));
                }
                Ok(Decoded::Skipped) => {}
                Ok(Decoded::Malformed(e)) => self.malformed(token, e),
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    /// Counts a frame from the link of `token` that turned out malformed
    /// (cutting the link when it has sent too many).
    fn malformed(&self, token: u64, e: FrameError) {
        let shared = &self.core.shared;
        shared.inbox.malformed(token, e, &shared.counters);
    }

    /// Waits for the next message, up to `timeout` (`None`: as long as it
    /// takes), and lends it to `f` without copying its payload: `f` reads
    /// it where it lies — in the sender's link ring, a mapped memfd, or the
    /// region of a [`Loan`](crate::Loan) — and what `f` returns is
    /// returned. Messages with attachments or over 64 KiB arrive through
    /// the socket and are lent from there.
    ///
    /// Every message is lent, whatever its type (see [`Borrowed`]), except
    /// one larger than [`Limits::max_payload`](crate::Limits::max_payload):
    /// it is dropped unread and reported as [`RecvError::TooLarge`]. The
    /// link is held while `f` runs: the sender may fill its ring meanwhile,
    /// but keep `f` short.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, Selector};
    /// # let bus = format!("doc.recv_with.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::new(0, vec![1, 2, 3])))?;
    /// let sum: u32 = rx.recv_with(None, |m| m.bytes().map_or(0, |(_, b)| b.iter().map(|&x| u32::from(x)).sum()))?;
    /// assert_eq!(sum, 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with<T>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(Borrowed<'_>) -> T,
    ) -> Result<T, RecvError> {
        let mut deadline = Deadline::new(timeout);
        let mut f = Some(f);
        // `f` may send: a send to ourselves then cannot wait for room, since
        // only this thread could make it.
        let _receiving = self.core.shared.inbox.receiving();
        loop {
            if self.core.shared.inbox.take_interrupt() {
                return Err(RecvError::Interrupted);
            }
            if let Some(out) = self.lend_next(&mut f) {
                return out;
            }
            let deadline = deadline.get();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if self.core.shared.inbox.arm() {
                    // Something came as the rings were armed: lend it
                    // (only while there is input, so this ends).
                    if let Some(out) = self.lend_next(&mut f) {
                        return out;
                    }
                }
                return Err(RecvError::Timeout);
            }
            self.wait_input(deadline)?;
        }
    }

    /// Lends the next message there is to `f`: one read already, else the
    /// next a link has (from its ring, in place). `Err` for a message over
    /// `max_payload`, dropped unread.
    fn lend_next<T, F: FnOnce(Borrowed<'_>) -> T>(
        &mut self,
        f: &mut Option<F>,
    ) -> Option<Result<T, RecvError>> {
        let core = self.core.clone();
        let inbox = &core.shared.inbox;
        let max = core.shared.options.limits.max_payload;
        loop {
            if self.ready.is_empty() {
                let me = Origin::local(core.shared.id);
                inbox.take_local(|f| self.ready.push_back((BELL, Ready::Raw(f, me.clone()))));
            }
            while let Some((token, ready)) = self.ready.pop_front() {
                let out = match ready {
                    Ready::Raw(raw, origin) => self.lend_owned(token, raw, &origin, max, f),
                    Ready::Decoded(m) => lend_decoded(m, f),
                };
                if let Some(out) = out {
                    count_handed(&core.shared.counters, &out);
                    return Some(out);
                }
            }
            let shared = &core.shared;
            let mut read_ahead = false;
            let mut lent = None;
            let selectors = &mut self.selectors;
            inbox.walk(
                (&mut self.buf, &mut self.control),
                &shared.counters,
                |hello| shared.learn_sender(hello),
                |_, header, bytes, origin| {
                    if header.payload_len > max {
                        return Ok(Err(too_large(header.payload_len, max)));
                    }
                    lend_in_place(header, bytes, origin, selectors, f).map(Ok)
                },
                |token, origin, got| match got {
                    Got::InPlace(Ok(out)) => {
                        lent = Some(out);
                        Step::Stop
                    }
                    Got::InPlace(Err(e)) => Step::Malformed(e),
                    Got::Frame(raw) => {
                        // From the socket: lent from our copy, in order.
                        self.ready
                            .push_back((token, Ready::Raw(raw, origin.clone())));
                        read_ahead = true;
                        Step::Stop
                    }
                },
            );
            if let Some(out) = lent {
                count_handed(&shared.counters, &out);
                return Some(out);
            }
            if !read_ahead {
                return None;
            }
        }
    }

    /// Lends a frame read off a socket (or sent to ourselves) to `f`.
    fn lend_owned<T, F: FnOnce(Borrowed<'_>) -> T>(
        &mut self,
        token: u64,
        raw: RawFrame,
        origin: &Origin,
        max: u64,
        f: &mut Option<F>,
    ) -> Option<Result<T, RecvError>> {
        if raw.header.payload_len > max {
            return Some(Err(too_large(raw.header.payload_len, max)));
        }
        let reply_to = origin.reply_to(&raw.header);
        let opened = match Opened::open(raw, &self.core.shared.inbox.lent) {
            Ok(o) => o,
            Err(Unopened::Skipped) => return None,
            Err(Unopened::Malformed(e)) => {
                self.malformed(token, e);
                return None;
            }
        };
        let stable = opened.payload.stable();
        // A payload in a lent region can be kept past `f` (`shared_payload`).
        let (mut payload, view) = match opened.payload {
            Payload::Lent(view) => (None, Some(Arc::new(view))),
            other => (Some(other), None),
        };
        let bytes = match (&mut payload, &view) {
            (Some(p), _) => p.bytes(),
            (None, Some(v)) => Some(v.bytes()),
            (None, None) => None,
        };
        let Some(bytes) = bytes else {
            self.malformed(
                token,
                FrameError::Body("the payload lies outside its region".into()),
            );
            return None;
        };
        let mut lent = Borrowed::new(
            opened.selector,
            opened.objects,
            opened.memory_regions,
            opened.type_uuid,
            bytes,
            stable,
            (EndpointId(origin.source), reply_to),
        );
        if let Some(v) = &view {
            lent = lent.in_region(v.clone());
        }
        f.take().map(|f| Ok(f(lent)))
    }

    /// Sets how long `recv` watches the shared-memory rings before it goes
    /// to sleep when nothing is there (default 50 µs). Spinning costs CPU
    /// while it lasts, and saves the wake-up (tens of µs) when a message
    /// comes within it; zero sleeps at once. An idle receiver sleeps either way.
    ///
    /// ```
    /// # let bus = format!("doc.set_spin.{}", std::process::id());
    /// let (_s, mut receiver) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// receiver.set_spin(std::time::Duration::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Waits for input until `deadline` and reads what came: first what is
    /// there, then spins on the rings for a while, then sleeps on the poller
    /// (every ring's flag raised, so its sender rings our eventfd). Whether
    /// anything was read.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if self.scan() {
            return Ok(true);
        }
        self.wait_input(deadline)?;
        Ok(self.scan())
    }

    /// Waits until `deadline` for a ring to have a frame or the poller to
    /// report something (reading nothing).
    fn wait_input(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        let now = Instant::now();
        let spin_end = deadline.map_or(now + self.spin, |d| d.min(now + self.spin));
        let mut turns: u32 = 0;
        let polite_from = now + crate::sys::ring::SPIN_ALONE;
        loop {
            let t = Instant::now();
            if t >= spin_end {
                break;
            }
            if self.core.shared.inbox.watch(SPIN_TURNS) {
                return Ok(());
            }
            if t >= polite_from && !crate::sys::ring::give_way() {
                // Nothing for a while, and whoever will send may need the
                // processor, but yielding it costs a time slice now: sleep.
                break;
            }
            turns = turns.wrapping_add(1);
            if turns % SOCKET_EVERY == 0 {
                // Now and then the sockets too (descriptors, large frames, new links).
                let inbox = &self.core.shared.inbox;
                inbox.wait(&mut self.tokens, Some(Instant::now()))?;
                if !self.tokens.is_empty() {
                    inbox.mark_ready(&self.tokens);
                    return Ok(());
                }
            }
        }
        let inbox = &self.core.shared.inbox;
        if inbox.prepare_sleep() {
            // Something came: no wait, so no tokens (not the last wait's).
            self.tokens.clear();
        } else {
            inbox.wait(&mut self.tokens, deadline)?;
        }
        inbox.awake();
        inbox.mark_ready(&self.tokens);
        Ok(())
    }

    /// Reads what is there now: messages to ourselves, then what the links
    /// have (see [`Inbox::walk`](super::inbox::Inbox::walk)). Whether anything is ready.
    fn scan(&mut self) -> bool {
        let inbox = &self.core.shared.inbox;
        let me = Origin::local(self.core.shared.id);
        inbox.take_local(|f| self.ready.push_back((BELL, Ready::Raw(f, me.clone()))));
        let shared = &self.core.shared;
        let max = shared.options.limits.max_payload;
        let scratch = &mut self.scratch;
        let selectors = &mut self.selectors;
        // Both closures below queue into `ready`, one after the other.
        let ready = std::cell::RefCell::new(&mut self.ready);
        // Decoded messages wait in `ready` as allocations; frames left in
        // the ring cost nothing. A few at a time keeps the allocator reusing
        // the same memory: at most READ_AHEAD_BYTES from one link per scan.
        let mut taken = (BELL, 0usize);
        inbox.walk(
            (&mut self.buf, &mut self.control),
            &shared.counters,
            |hello| shared.learn_sender(hello),
            // Frames in the ring are decoded as they are read (from a
            // private copy) and queued right here: what goes back through
            // the link and the ring is only how it went, since a message
            // returned through each of their layers would be copied at
            // each (a few hundred bytes, most of a small message's cost).
            // Those off the socket are decoded later.
            |token, header, bytes, origin| {
                let out =
                    match decode_in_place::<R>(header, bytes, max, (scratch, selectors), origin) {
                        Ok(Decoded::Message(m)) => Ok(m),
                        Ok(Decoded::Skipped) => return InPlace::Skipped,
                        Ok(Decoded::Malformed(e)) => return InPlace::Malformed(e),
                        Err(e) => Err(e),
                    };
                ready.borrow_mut().push_back((token, Ready::Decoded(out)));
                InPlace::Queued(scratch.len())
            },
            |token, origin, got| {
                if taken.0 != token {
                    taken = (token, 0);
                }
                match got {
                    Got::Frame(f) => ready
                        .borrow_mut()
                        .push_back((token, Ready::Raw(f, origin.clone()))),
                    Got::InPlace(InPlace::Queued(len)) => {
                        taken.1 += len;
                        if taken.1 >= READ_AHEAD_BYTES {
                            return Step::NextLink;
                        }
                    }
                    Got::InPlace(InPlace::Skipped) => {}
                    Got::InPlace(InPlace::Malformed(e)) => return Step::Malformed(e),
                }
                Step::More
            },
        );
        !self.ready.is_empty()
    }
}

/// When a receive with a timeout gives up, from the first time it found
/// nothing: the clock is read only then. A stream of messages mostly finds
/// one queued already, and reading the clock on every call was 7.5 % of a
/// 16 B receiver's time (perf, the vDSO's `clock_gettime`).
struct Deadline {
    timeout: Option<Duration>,
    at: Option<Option<Instant>>,
}

impl Deadline {
    fn new(timeout: Option<Duration>) -> Deadline {
        Deadline { timeout, at: None }
    }

    /// The deadline (`None`: none), fixed on the first call.
    fn get(&mut self) -> Option<Instant> {
        let timeout = self.timeout;
        *self
            .at
            .get_or_insert_with(|| timeout.map(|t| Instant::now() + t))
    }
}

/// What became of a frame [`EndpointReceiver::scan`] decoded where it lay.
enum InPlace {
    /// Queued in `ready` (a message, or a payload that did not decode),
    /// having taken this many bytes of the private copy.
    Queued(usize),
    /// Nothing for this receiver (see [`Decoded::Skipped`]).
    Skipped,
    /// Malformed: counted against its link.
    Malformed(FrameError),
}

/// A frame read from a link, waiting for `recv`.
enum Ready<R> {
    /// Read off a socket (or sent to ourselves): decoded when its turn comes.
    Raw(RawFrame, Origin),
    /// Decoded in place from a ring as it was read.
    Decoded(Result<Message<R>, RecvError>),
}

/// Lends a message `recv` had decoded already (a caller mixing `recv` and
/// `recv_with`) to `f`: its payload encoded again.
fn lend_decoded<R: MessageBox, T, F: FnOnce(Borrowed<'_>) -> T>(
    m: Result<Message<R>, RecvError>,
    f: &mut Option<F>,
) -> Option<Result<T, RecvError>> {
    let m = match m {
        Ok(m) => m,
        Err(e @ RecvError::TooLarge { .. }) => return Some(Err(e)),
        Err(e) => {
            tracing::warn!("dropped a message that did not decode: {e}");
            return None;
        }
    };
    let mut payload = Vec::new();
    if let Err(e) = m.payload.encode_into(&mut payload) {
        tracing::warn!("dropped a message that did not encode again: {e}");
        return None;
    }
    let lent = Borrowed::new(
        m.selector,
        m.objects,
        m.memory_regions,
        m.payload.type_uuid(),
        &payload,
        true,
        (m.source, m.reply_to.map(|to| *to)),
    );
    f.take().map(|f| Ok(f(lent)))
}

/// The error for a message of `size` bytes over this endpoint's `max_payload`.
fn too_large(size: u64, max: u64) -> RecvError {
    RecvError::TooLarge { size, max }
}

/// Counts what a receiver hands its caller: a message (or a payload that
/// did not decode), or a message dropped for its size.
fn count_handed<T>(counters: &super::stats::Counters, out: &Result<T, RecvError>) {
    let counter = match out {
        Err(RecvError::TooLarge { .. }) => &counters.too_large,
        _ => &counters.received,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Decodes a data frame read from a ring (checked: its lengths hold; it
/// has no descriptors). The sender can still write the ring: the frame is
/// copied into `scratch` (private memory, reused) first, since checking
/// bytes that can change under the check proves nothing (a string checked
/// as UTF-8, then changed, would not be).
fn decode_in_place<R: MessageBox>(
    header: crate::frame::Header,
    shared: &[u8],
    max: u64,
    (scratch, selectors): (&mut Vec<u8>, &mut super::selectors::Selectors),
    origin: &Origin,
) -> Result<Decoded<R>, RecvError> {
    if header.payload_len > max {
        return Err(too_large(header.payload_len, max));
    }
    scratch.clear();
    scratch.extend_from_slice(shared);
    let (selector, payload) = crate::frame::split_body(&header, scratch);
    let selector = match selectors.decode(selector) {
        Ok(s) => s,
        Err(e) => return Ok(Decoded::Malformed(e)),
    };
    Ok(match R::decode(header.type_uuid, payload)? {
        Some(payload) => Decoded::Message(Message {
            selector,
            payload,
            objects: Vec::new(),
            memory_regions: Vec::new(),
            source: EndpointId(origin.source),
            reply_to: origin.reply_to(&header).map(Box::new),
        }),
        None => Decoded::Skipped,
    })
}

/// What became of a frame the links delivered.
pub(crate) enum Decoded<R> {
    /// A message for the application.
    Message(Message<R>),
    /// Well formed, but nothing for this receiver: a type `R` does not know,
    /// or a payload too large to buffer. Logged and dropped.
    Skipped,
    /// Malformed in a way [`frame::check`] cannot see (a bad selector, a
    /// descriptor that is not what the header says). Dropped; the caller
    /// counts it against the link it came from.
    Malformed(FrameError),
}

/// Turns a checked frame into a message. `Err` only when the payload is of
/// a type `R` knows but does not decode ([`RecvError::Decode`]).
// `testing::LinkEnd` (feature `test-hooks`) decodes as a receiver does, with
// no region mappings to share and no link to answer on.
#[cfg(feature = "test-hooks")]
pub(crate) fn decode<R: MessageBox>(raw: RawFrame) -> Result<Decoded<R>, RecvError> {
    decode_with(raw, &Mutex::default(), &Origin::answer(0))
}

/// `decode`, with the receiver's mappings of regions, for a frame from `origin`.
pub(crate) fn decode_with<R: MessageBox>(
    raw: RawFrame,
    lent: &Mutex<LentMaps>,
    origin: &Origin,
) -> Result<Decoded<R>, RecvError> {
    let reply_to = origin.reply_to(&raw.header);
    let mut opened = match Opened::open(raw, lent) {
        Ok(o) => o,
        Err(Unopened::Skipped) => return Ok(Decoded::Skipped),
        Err(Unopened::Malformed(e)) => return Ok(Decoded::Malformed(e)),
    };
    let type_uuid = opened.type_uuid;
    let stable = opened.payload.stable();
    let fds = std::mem::take(&mut opened.objects)
        .into_iter()
        .map(crate::Object::into_fd)
        .collect();
    // A payload lent in a region is decoded where it lies: a large one
    // stays there (a `BytesMessage` keeps it as its `Bytes`: no buffer to
    // allocate, fault in and copy), a small one is copied once.
    let opened = match opened.payload {
        Payload::Lent(view) => {
            let len = view.len();
            let Some(shared) = crate::Bytes::shared(Arc::new(view), 0, len) else {
                return Ok(Decoded::Malformed(FrameError::Body(
                    "the payload lies outside its region".into(),
                )));
            };
            let (decoded, objects) =
                crate::attach::provide(fds, || R::decode_shared(type_uuid, shared));
            return finish(
                decoded?,
                opened.selector,
                objects,
                opened.memory_regions,
                origin,
                reply_to,
                type_uuid,
            );
        }
        payload => Opened { payload, ..opened },
    };
    let mut opened = opened;
    let Some(payload) = opened.payload.bytes() else {
        return Ok(Decoded::Malformed(FrameError::Body(
            "the payload lies outside its region".into(),
        )));
    };
    // A region its sender can still write is decoded from a private copy
    // (see `decode_in_place`).
    let private;
    let payload = if stable {
        payload
    } else {
        private = payload.to_vec();
        &private[..]
    };
    // Channel ends in the payload take their descriptors (`attach`); the
    // rest are the message's objects.
    let (decoded, objects) = crate::attach::provide(fds, || R::decode(type_uuid, payload));
    let selector = std::mem::replace(
        &mut opened.selector,
        crate::Selector::unicast(crate::LabelOp::True),
    );
    let regions = std::mem::take(&mut opened.memory_regions);
    finish(
        decoded?, selector, objects, regions, origin, reply_to, type_uuid,
    )
}

/// The message a decoded payload makes (`None`: a type `R` does not know).
fn finish<R>(
    payload: Option<R>,
    selector: crate::Selector,
    objects: Vec<std::os::fd::OwnedFd>,
    memory_regions: Vec<crate::MemoryRegion>,
    origin: &Origin,
    reply_to: Option<super::ReplyTo>,
    type_uuid: crate::TypeUuidBytes,
) -> Result<Decoded<R>, RecvError> {
    match payload {
        Some(payload) => Ok(Decoded::Message(Message {
            selector,
            payload,
            objects: objects.into_iter().map(crate::Object::from).collect(),
            memory_regions,
            source: EndpointId(origin.source),
            reply_to: reply_to.map(Box::new),
        })),
        None => {
            tracing::debug!(type_id = %uuid::Uuid::from_bytes(type_uuid), "skipped a message of a type this receiver does not know");
            Ok(Decoded::Skipped)
        }
    }
}

/// Lends a data frame read in place from a ring (checked: its lengths hold)
/// to `f`: no descriptors, the payload in the frame.
fn lend_in_place<T, F: FnOnce(Borrowed<'_>) -> T>(
    header: crate::frame::Header,
    bytes: &[u8],
    origin: &Origin,
    selectors: &mut super::selectors::Selectors,
    f: &mut Option<F>,
) -> Result<T, FrameError> {
    let (selector, payload) = crate::frame::split_body(&header, bytes);
    // The sender can still write the ring: parse a private copy.
    let private = selector.to_vec();
    let selector = selectors.decode(&private)?;
    let lent = Borrowed::new(
        selector,
        Vec::new(),
        Vec::new(),
        header.type_uuid,
        payload,
        false,
        (EndpointId(origin.source), origin.reply_to(&header)),
    );
    f.take()
        .map(|f| f(lent))
        .ok_or_else(|| FrameError::Body("nobody to lend the message to".into()))
}
