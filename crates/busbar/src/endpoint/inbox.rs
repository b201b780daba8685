//! Where an endpoint's incoming links and its messages to itself meet.

use crate::frame::FrameError;
use crate::link::{InLink, RawFrame};
use crate::sys::poll::{Doorbell, Poller};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many messages to itself an endpoint holds before it counts as full.
pub(crate) const LOCAL_MAX: usize = 1024;

/// The poller token of the doorbell that rings for local frames.
pub(crate) const BELL: u64 = 0;

/// Incoming links (added by the background thread as peers connect) and
/// frames this endpoint sent itself. The receiver waits on all of them.
pub(crate) struct Inbox {
    pub poller: Poller,
    /// The links the receiver reads, by poller token: see [`Inbox::links`].
    links: Mutex<HashMap<u64, InLink>>,
    /// Links accepted since the receiver last looked. The background thread
    /// only ever takes this lock, and only for a moment: it never waits for
    /// the receiver, which holds `links` while it lends a message to its
    /// caller's closure.
    incoming: Mutex<Vec<(u64, InLink)>>,
    pub local: Mutex<VecDeque<RawFrame>>,
    pub bell: Doorbell,
    next_token: AtomicU64,
    open: AtomicBool,
}

impl Inbox {
    pub(crate) fn new() -> io::Result<Inbox> {
        let poller = Poller::new()?;
        let bell = Doorbell::new()?;
        poller.add(bell.as_fd(), BELL)?;
        Ok(Inbox {
            poller,
            links: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Vec::new()),
            local: Mutex::new(VecDeque::new()),
            bell,
            next_token: AtomicU64::new(BELL + 1),
            open: AtomicBool::new(true),
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
        let link = InLink::new(fd);
        if let Err(e) = self.poller.add(link.as_fd(), token) {
            tracing::warn!("could not watch an incoming link: {e}");
            return;
        }
        self.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((token, link));
    }

    /// The links the receiver reads, with those accepted since it last looked.
    pub(crate) fn links(&self) -> MutexGuard<'_, HashMap<u64, InLink>> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let new = std::mem::take(&mut *self.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        links.extend(new);
        links
    }

    /// Queues a frame this endpoint sent itself; gives it back when
    /// [`LOCAL_MAX`] of them wait already (the receiver is full).
    pub(crate) fn push_local(&self, frame: RawFrame) -> Result<(), RawFrame> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() >= LOCAL_MAX {
            return Err(frame);
        }
        local.push_back(frame);
        drop(local);
        self.bell.ring();
        Ok(())
    }

    /// A frame from the link of poller token `token` turned out malformed
    /// when it was decoded: counts it against that link and cuts the link
    /// when it has sent too many. Whether it was cut.
    pub(crate) fn malformed(&self, token: u64, e: FrameError) -> bool {
        let mut links = self.links();
        let Some(link) = links.get_mut(&token) else {
            // A message to ourselves, or the link is gone already.
            tracing::warn!("dropped a malformed message: {e}");
            return false;
        };
        if !link.malformed(e) {
            return false;
        }
        if let Some(link) = links.remove(&token) {
            self.unwatch(&link);
        }
        true
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
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
