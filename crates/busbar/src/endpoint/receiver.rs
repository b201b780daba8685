//! The receiving half of an endpoint.

use super::inbox::BELL;
use super::{Core, EndpointId};
use crate::error::RecvError;
use crate::frame::{self, FrameError, MAX_FRAME};
use crate::link::{RawFrame, Read, MAX_BAD_FRAMES};
use crate::payload::MessageBox;
use crate::sys::{blob, socket};
use crate::{MemoryRegion, Message, Object};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames read from one link before looking at the others (fairness).
const BATCH: usize = 64;

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
    ready: VecDeque<(u64, RawFrame)>,
    buf: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    tokens: Vec<u64>,
    /// How long to watch the rings before sleeping.
    spin: Duration,
    _payload: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for EndpointReceiver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointReceiver")
            .field("id", &EndpointId(self.core.shared.id))
            .finish()
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
            _payload: PhantomData,
        }
    }

    /// Waits for the next message, up to `timeout` (`None`: as long as it takes).
    ///
    /// Messages of a type `R` does not know are skipped. A message of a known
    /// type whose payload does not decode is dropped and reported as
    /// [`RecvError::Decode`]; the next call goes on with the next message.
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
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = self.next_ready()? {
                return Ok(m);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
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
        loop {
            if let Some(m) = self.next_ready()? {
                return Ok(m);
            }
            if !self.fill(Some(Instant::now()))? {
                return Err(RecvError::Empty);
            }
        }
    }

    /// This endpoint's id.
    pub fn id(&self) -> EndpointId {
        EndpointId(self.core.shared.id)
    }

    /// Decodes frames already read until one is a message for us.
    fn next_ready(&mut self) -> Result<Option<Message<R>>, RecvError> {
        while let Some((token, raw)) = self.ready.pop_front() {
            let counters = &self.core.shared.counters;
            let max = self.core.shared.options.limits.max_payload;
            let decoded = if raw.header.payload_len > max {
                // Over this endpoint's own limit: dropped before a byte of it is read.
                Decoded::Malformed(FrameError::TooLarge(raw.header.payload_len))
            } else {
                decode(raw)?
            };
            match decoded {
                Decoded::Message(m) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(m));
                }
                Decoded::Skipped => {}
                Decoded::Malformed(e) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    if self.core.shared.inbox.malformed(token, e) {
                        counters.links_cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(None)
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
        let now = Instant::now();
        let spin_end = deadline.map_or(now + self.spin, |d| d.min(now + self.spin));
        let mut turns: u32 = 0;
        while Instant::now() < spin_end {
            for _ in 0..SPIN_TURNS {
                std::hint::spin_loop();
                if self.rings_have_frames() && self.scan() {
                    return Ok(true);
                }
            }
            turns = turns.wrapping_add(1);
            if turns % SOCKET_EVERY == 0 {
                // Now and then the sockets too (descriptors, large frames, new links).
                self.core
                    .shared
                    .inbox
                    .poller
                    .wait(&mut self.tokens, Some(Instant::now()))?;
                if !self.tokens.is_empty() {
                    self.mark_ready();
                    if self.scan() {
                        return Ok(true);
                    }
                }
            }
        }
        let inbox = &self.core.shared.inbox;
        let woke = {
            let mut links = inbox.links.lock().unwrap_or_else(|p| p.into_inner());
            let mut any = false;
            for link in links.values_mut() {
                any |= link.prepare_sleep();
            }
            any
        };
        if !woke {
            inbox.poller.wait(&mut self.tokens, deadline)?;
        }
        for link in inbox
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            link.awake();
        }
        self.mark_ready();
        Ok(self.scan())
    }

    /// Whether any ring has a frame (shared memory only, no system call).
    fn rings_have_frames(&mut self) -> bool {
        let inbox = &self.core.shared.inbox;
        let mut links = inbox.links.lock().unwrap_or_else(|p| p.into_inner());
        links.values_mut().any(|l| l.ring_has_frame())
            || !inbox
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Tells the links the poller reported that their sockets are ready;
    /// silences the doorbell.
    fn mark_ready(&mut self) {
        let inbox = &self.core.shared.inbox;
        let mut links = inbox.links.lock().unwrap_or_else(|p| p.into_inner());
        for &token in &self.tokens {
            if token == BELL {
                inbox.bell.clear();
            } else if let Some(link) = links.get_mut(&token) {
                link.socket_ready();
            }
        }
    }

    /// Reads what is there now: messages to ourselves, then up to [`BATCH`]
    /// frames from each link. Whether anything is ready.
    fn scan(&mut self) -> bool {
        let inbox = &self.core.shared.inbox;
        self.ready.extend(
            inbox
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .map(|f| (BELL, f)),
        );
        let counters = &self.core.shared.counters;
        let mut links = inbox.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        for (&token, link) in links.iter_mut() {
            let bad_before = link.bad_frames();
            let mut closed = false;
            for _ in 0..BATCH {
                match link.read(&mut self.buf, &mut self.control) {
                    Read::Frame(f) => self.ready.push_back((token, f)),
                    Read::Nothing => {}
                    Read::Empty => break,
                    Read::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
            if let Some(bell) = link.bell_to_watch() {
                if let Err(e) = inbox.poller.add(bell, token) {
                    tracing::warn!("could not watch a data link's wake-up descriptor: {e}");
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
        }
        for token in gone {
            if let Some(link) = links.remove(&token) {
                inbox.unwatch(&link);
            }
        }
        !self.ready.is_empty()
    }
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
pub(crate) fn decode<R: MessageBox>(mut raw: RawFrame) -> Result<Decoded<R>, RecvError> {
    let h = raw.header.clone();
    let selector = match frame::decode_selector(raw.selector()) {
        Ok(s) => s,
        Err(e) => return Ok(Decoded::Malformed(e)),
    };
    let mut fds = std::mem::take(&mut raw.fds).into_iter();
    let objects: Vec<Object> = fds
        .by_ref()
        .take(h.n_objects as usize)
        .map(Object::from)
        .collect();
    let mut memory_regions = Vec::with_capacity(h.n_regions as usize);
    for fd in fds.by_ref().take(h.n_regions as usize) {
        match MemoryRegion::from_received_fd(fd) {
            Ok(r) => memory_regions.push(r),
            Err(e) => return Ok(Decoded::Malformed(FrameError::Body(e.to_string()))),
        }
    }
    let mut mapped;
    let payload: &[u8] = if h.payload_in_fd() {
        let Some(fd) = fds.next() else {
            return Ok(Decoded::Malformed(FrameError::Body(
                "the payload descriptor is missing".into(),
            )));
        };
        let len = match usize::try_from(h.payload_len) {
            Ok(len) => len,
            Err(_) => return Ok(Decoded::Malformed(FrameError::TooLarge(h.payload_len))),
        };
        // Mapped read-only, decoded straight from the mapping; unmapped when
        // this returns (the descriptor is closed right after mapping).
        match blob::map_sealed(std::os::fd::AsFd::as_fd(&fd), len) {
            Ok(mapping) => {
                drop(fd);
                mapped = mapping;
                mapped.bytes()
            }
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                // No address space (or map count) left for it: `mmap` said `ENOMEM`.
                tracing::warn!("dropped a message of {len} bytes: {e}");
                return Ok(Decoded::Skipped);
            }
            Err(e) => {
                return Ok(Decoded::Malformed(FrameError::Body(format!(
                    "payload descriptor: {e}"
                ))))
            }
        }
    } else {
        raw.inline_payload()
    };
    match R::decode(h.type_uuid, payload)? {
        Some(payload) => Ok(Decoded::Message(Message {
            selector,
            payload,
            objects,
            memory_regions,
        })),
        None => {
            tracing::debug!(type_id = %uuid::Uuid::from_bytes(h.type_uuid), "skipped a message of a type this receiver does not know");
            Ok(Decoded::Skipped)
        }
    }
}
