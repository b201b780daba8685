//! [`ReceiverSet`]: waiting on many receivers at once.

use super::{BytesReceiver, Receiver};
use crate::payload::MessageBox;
use crate::sys::poll::Poller;
use crate::{EndpointReceiver, Message, RecvError};
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Messages taken from one member in one [`select`](ReceiverSet::select)
/// before the others get their turn.
const BATCH: usize = 64;

mod sealed {
    pub trait Sealed {}
}

/// What a [`ReceiverSet`] can wait on: channel receivers
/// ([`Receiver<T>`], [`BytesReceiver`]) and bus receivers
/// ([`EndpointReceiver<R>`](crate::EndpointReceiver)). Sealed.
///
/// What each gives in a [`Selection::Message`]: a `Receiver<T>` a `T`, a
/// `BytesReceiver` a `Vec<u8>`, an `EndpointReceiver<R>` a
/// [`Message<R>`](crate::Message).
///
/// ```
/// fn wait_on<S: busbar::channel::Selectable>(_: S) {}
/// let (_tx, rx) = busbar::channel::channel::<u8>()?;
/// wait_on(rx);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Selectable: sealed::Sealed + Send + 'static {
    #[doc(hidden)]
    fn poll_fd(&self) -> BorrowedFd<'_>;
    #[doc(hidden)]
    fn take(&mut self) -> Result<Box<dyn Any + Send>, RecvError>;
}

impl<T> sealed::Sealed for Receiver<T> {}

impl<T: DeserializeOwned + Send + 'static> Selectable for Receiver<T> {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn take(&mut self) -> Result<Box<dyn Any + Send>, RecvError> {
        self.try_recv().map(|m| Box::new(m) as Box<dyn Any + Send>)
    }
}

impl sealed::Sealed for BytesReceiver {}

impl Selectable for BytesReceiver {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn take(&mut self) -> Result<Box<dyn Any + Send>, RecvError> {
        self.try_recv().map(|m| Box::new(m) as Box<dyn Any + Send>)
    }
}

impl<R> sealed::Sealed for EndpointReceiver<R> {}

impl<R: MessageBox> Selectable for EndpointReceiver<R> {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn take(&mut self) -> Result<Box<dyn Any + Send>, RecvError> {
        self.try_recv()
            .map(|m: Message<R>| Box::new(m) as Box<dyn Any + Send>)
    }
}

/// A message a [`ReceiverSet`] took: what its receiver gives (see
/// [`Selectable`]), to take out with [`take`](Selected::take).
pub struct Selected(Box<dyn Any + Send>);

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected").finish_non_exhaustive()
    }
}

impl Selected {
    /// The message, if it is a `M`; else the `Selected` back.
    ///
    /// ```
    /// use busbar::channel::{channel, ReceiverSet, Selection};
    /// let (tx, rx) = channel::<String>()?;
    /// let mut set = ReceiverSet::new()?;
    /// let id = set.add(rx)?;
    /// tx.send("hi".into())?;
    /// for s in set.select(None)? {
    ///     if let Selection::Message(from, m) = s {
    ///         assert_eq!(from, id);
    ///         assert_eq!(m.take::<String>().expect("a String"), "hi");
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take<M: 'static>(self) -> Result<M, Selected> {
        self.0.downcast::<M>().map(|m| *m).map_err(Selected)
    }
}

/// What [`ReceiverSet::select`] found.
#[derive(Debug)]
pub enum Selection {
    /// A message from the member of this id.
    Message(u64, Selected),
    /// The member of this id is finished (every sender gone, or the
    /// endpoint shut down): it was taken out of the set.
    Closed(u64),
    /// A message from the member of this id could not be read (it did not
    /// decode, say); it is dropped and the member stays.
    Failed(u64, RecvError),
}

/// Waits on many receivers at once, channel and bus receivers alike:
/// ipc-channel's `IpcReceiverSet`.
///
/// [`select`](ReceiverSet::select) sleeps until some member has
/// something, then returns everything there is (up to 64 messages per
/// member per call), each with the id [`add`](ReceiverSet::add) gave.
/// It waits on its members' descriptors (their [`AsFd`]), so no thread
/// per member and no polling interval; the set is [`AsFd`] itself, with
/// the same contract, for an application's own event loop.
///
/// ```
/// use busbar::channel::{bytes_channel, channel, ReceiverSet, Selection};
/// let (tx1, rx1) = channel::<u32>()?;
/// let (tx2, rx2) = bytes_channel()?;
/// let mut set = ReceiverSet::new()?;
/// let (id1, id2) = (set.add(rx1)?, set.add(rx2)?);
/// tx1.send(1)?;
/// tx2.send(b"two")?;
/// drop((tx1, tx2));
/// let (mut messages, mut closed) = (0, 0);
/// while closed < 2 {
///     for s in set.select(None)? {
///         match s {
///             Selection::Message(id, m) if id == id1 => assert_eq!(m.take::<u32>().unwrap(), 1),
///             Selection::Message(id, m) if id == id2 => assert_eq!(m.take::<Vec<u8>>().unwrap(), b"two"),
///             Selection::Closed(_) => closed += 1,
///             other => panic!("{other:?}"),
///         }
///         messages += 1;
///     }
/// }
/// assert_eq!(messages, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReceiverSet {
    poller: Poller,
    members: BTreeMap<u64, Box<dyn Selectable>>,
    next_id: u64,
    tokens: Vec<u64>,
}

impl std::fmt::Debug for ReceiverSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverSet")
            .field("members", &self.members.len())
            .finish()
    }
}

impl ReceiverSet {
    /// An empty set.
    ///
    /// ```
    /// let set = busbar::channel::ReceiverSet::new()?;
    /// assert!(set.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<ReceiverSet> {
        Ok(ReceiverSet {
            poller: Poller::new()?,
            members: BTreeMap::new(),
            next_id: 0,
            tokens: Vec::new(),
        })
    }

    /// Adds a receiver; its id in the [`Selection`]s (ids are never reused).
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::bytes_channel()?;
    /// let mut set = busbar::channel::ReceiverSet::new()?;
    /// assert_eq!(set.add(rx)?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add(&mut self, receiver: impl Selectable) -> io::Result<u64> {
        let id = self.next_id;
        self.poller.add(receiver.poll_fd(), id)?;
        self.next_id += 1;
        self.members.insert(id, Box::new(receiver));
        Ok(id)
    }

    /// How many receivers the set holds.
    ///
    /// ```
    /// let set = busbar::channel::ReceiverSet::new()?;
    /// assert_eq!(set.len(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set holds no receiver.
    ///
    /// ```
    /// assert!(busbar::channel::ReceiverSet::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Waits up to `timeout` (`None`: as long as it takes) until some
    /// member has a message or is finished, and returns everything there
    /// is. Empty when the timeout ran out first; `Some(Duration::ZERO)`
    /// only looks (ipc-channel's `try_select`). [`RecvError::Disconnected`]
    /// when the set holds no receiver.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = busbar::channel::channel::<u8>()?;
    /// let mut set = busbar::channel::ReceiverSet::new()?;
    /// set.add(rx)?;
    /// assert!(set.select(Some(Duration::from_millis(5)))?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select(&mut self, timeout: Option<Duration>) -> Result<Vec<Selection>, RecvError> {
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        let deadline = match deadline {
            Some(Some(d)) => Some(d),
            // Too far to say: as long as it takes.
            Some(None) | None => None,
        };
        loop {
            if self.members.is_empty() {
                return Err(RecvError::Disconnected);
            }
            let found = self.gather();
            if !found.is_empty() {
                return Ok(found);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(found);
            }
            // Every member said Empty, so each one's descriptor turns
            // readable when something may have come.
            self.poller.wait(&mut self.tokens, deadline)?;
        }
    }

    /// Takes what every member has now.
    fn gather(&mut self) -> Vec<Selection> {
        let mut found = Vec::new();
        let mut closed = Vec::new();
        for (&id, member) in self.members.iter_mut() {
            for _ in 0..BATCH {
                match member.take() {
                    Ok(m) => found.push(Selection::Message(id, Selected(m))),
                    Err(RecvError::Empty) => break,
                    Err(RecvError::Disconnected) => {
                        closed.push(id);
                        break;
                    }
                    Err(e) => found.push(Selection::Failed(id, e)),
                }
            }
        }
        for id in closed {
            if let Some(member) = self.members.remove(&id) {
                self.poller.remove(member.poll_fd());
            }
            found.push(Selection::Closed(id));
        }
        found
    }
}

/// The set's descriptor for an application's own event loop (an epoll
/// descriptor watching its members'): once [`select`](ReceiverSet::select)
/// returned nothing (a timeout, or `Some(Duration::ZERO)` with nothing
/// there), it turns readable when a member may have something; then
/// select again. Readiness can be spurious.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// let (tx, rx) = busbar::channel::channel::<u8>()?;
/// let mut set = busbar::channel::ReceiverSet::new()?;
/// set.add(rx)?;
/// assert!(set.select(Some(Duration::ZERO))?.is_empty());
/// tx.send(3)?;
/// let fd = set.as_fd();
/// let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
/// rustix::event::poll(&mut fds, None)?;
/// assert_eq!(set.select(Some(Duration::ZERO))?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsFd for ReceiverSet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}
