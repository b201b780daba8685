//! Receiving on tokio (feature `tokio`): `recv_async()` and a [`Stream`]
//! for every receiver, built on its descriptor ([`AsFd`]) and tokio's
//! reactor ([`AsyncFd`]): no thread per receiver, no polling interval.
//!
//! Every receiver's descriptor has the same contract (see
//! [`EndpointReceiver`'s](crate::EndpointReceiver#impl-AsFd-for-EndpointReceiver<R>)):
//! once `try_recv` said `Empty`, it turns readable when a message may have
//! come. So a receive here is: `try_recv`; on `Empty`, wait for readiness
//! (registered with the reactor), clear it, and `try_recv` again. A message
//! is only ever taken inside a poll that returns it, so **dropping a
//! `recv_async()` future (a `select!` that took another branch, a timeout)
//! loses no message**: the next receive gets it.
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use busbar::AsyncReceiver;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
//! rt.block_on(async {
//!     let (tx, rx) = busbar::channel::channel::<u32>()?;
//!     std::thread::spawn(move || tx.send(7));
//!     let mut rx = rx;
//!     assert_eq!(rx.recv_async().await?, 7);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::channel::{BytesReceiver, Receiver, ReceiverSet, Selection};
use crate::ring::RingReceiver;
use crate::{EndpointReceiver, Message, MessageBox, RecvError};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

mod sealed {
    pub trait Sealed {}
}

/// A receiver that can wait on tokio's reactor: every busbar receiver
/// (feature `tokio`). `T` is what one receive gives.
///
/// The methods must be called from within a tokio runtime with I/O
/// enabled (`enable_io`).
pub trait AsyncReceiver<T>: AsFd + sealed::Sealed {
    /// Takes what is here already, or [`RecvError::Empty`] (and arms the
    /// descriptor).
    fn try_recv_now(&mut self) -> Result<T, RecvError>;

    /// Waits for the next message without blocking the thread.
    /// Cancel-safe: dropping the future loses no message.
    fn recv_async(&mut self) -> RecvFuture<'_, Self, T>
    where
        Self: Sized,
    {
        RecvFuture {
            waiter: Waiter::new(self),
        }
    }

    /// The messages as a [`Stream`], which ends at
    /// [`RecvError::Disconnected`]; other errors are items (the stream
    /// goes on after them).
    fn stream(&mut self) -> RecvStream<'_, Self, T>
    where
        Self: Sized,
    {
        RecvStream {
            waiter: Waiter::new(self),
            done: false,
        }
    }
}

struct Waiter<'a, R, T> {
    rx: &'a mut R,
    /// A duplicate of the receiver's descriptor, registered on first need.
    fd: Option<AsyncFd<OwnedFd>>,
    _t: PhantomData<fn() -> T>,
}

impl<'a, R: AsyncReceiver<T>, T> Waiter<'a, R, T> {
    fn new(rx: &'a mut R) -> Self {
        Waiter {
            rx,
            fd: None,
            _t: PhantomData,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        loop {
            match self.rx.try_recv_now() {
                Err(RecvError::Empty) | Err(RecvError::Timeout) => {}
                other => return Poll::Ready(other),
            }
            if self.fd.is_none() {
                match crate::sys::reactor::register(self.rx.as_fd()) {
                    Ok(fd) => self.fd = Some(fd),
                    Err(e) => return Poll::Ready(Err(RecvError::Io(e))),
                }
                // Registering reports what is ready already: look again.
                continue;
            }
            let Some(fd) = &self.fd else {
                return Poll::Ready(Err(RecvError::Io(io::Error::other("no registration"))));
            };
            match fd.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(mut guard)) => {
                    // Cleared before the next look, so that anything that
                    // comes after the look sets it again.
                    guard.clear_ready();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(RecvError::Io(e))),
            }
        }
    }
}

/// The future of [`AsyncReceiver::recv_async`].
pub struct RecvFuture<'a, R, T> {
    waiter: Waiter<'a, R, T>,
}

impl<R, T> std::fmt::Debug for RecvFuture<'_, R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvFuture")
    }
}

impl<R: AsyncReceiver<T>, T> Future for RecvFuture<'_, R, T> {
    type Output = Result<T, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().waiter.poll(cx)
    }
}

/// The stream of [`AsyncReceiver::stream`].
pub struct RecvStream<'a, R, T> {
    waiter: Waiter<'a, R, T>,
    done: bool,
}

impl<R, T> std::fmt::Debug for RecvStream<'_, R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvStream")
    }
}

impl<R: AsyncReceiver<T>, T> Stream for RecvStream<'_, R, T> {
    type Item = Result<T, RecvError>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.waiter.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(RecvError::Disconnected)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(item) => Poll::Ready(Some(item)),
        }
    }
}

// These structs hold only `&mut R` and a registration: moving them is fine.
impl<R, T> Unpin for RecvFuture<'_, R, T> {}
impl<R, T> Unpin for RecvStream<'_, R, T> {}

impl<R> sealed::Sealed for EndpointReceiver<R> {}
impl<R: MessageBox> AsyncReceiver<Message<R>> for EndpointReceiver<R> {
    fn try_recv_now(&mut self) -> Result<Message<R>, RecvError> {
        self.try_recv()
    }
}

impl<T> sealed::Sealed for Receiver<T> {}
impl<T: DeserializeOwned> AsyncReceiver<T> for Receiver<T> {
    fn try_recv_now(&mut self) -> Result<T, RecvError> {
        self.try_recv()
    }
}

impl sealed::Sealed for BytesReceiver {}
impl AsyncReceiver<Vec<u8>> for BytesReceiver {
    fn try_recv_now(&mut self) -> Result<Vec<u8>, RecvError> {
        self.try_recv()
    }
}

impl sealed::Sealed for RingReceiver {}
/// `T` is the type the senders [`send`](crate::ring::RingSender::send):
/// `rx.recv_async::<T>()` is written `AsyncReceiver::<T>::recv_async(&mut rx)`,
/// or through [`RingReceiver::recv_async`].
impl<T: DeserializeOwned> AsyncReceiver<T> for RingReceiver {
    fn try_recv_now(&mut self) -> Result<T, RecvError> {
        self.try_recv()
    }
}

impl RingReceiver {
    /// [`AsyncReceiver::recv_async`] for messages of type `T` (feature `tokio`).
    pub fn recv_async<T: DeserializeOwned>(&mut self) -> RecvFuture<'_, Self, T> {
        AsyncReceiver::<T>::recv_async(self)
    }

    /// [`AsyncReceiver::stream`] of messages of type `T` (feature `tokio`).
    pub fn stream<T: DeserializeOwned>(&mut self) -> RecvStream<'_, Self, T> {
        AsyncReceiver::<T>::stream(self)
    }
}

impl sealed::Sealed for ReceiverSet {}
/// A receive is a [`select`](ReceiverSet::select) that found something;
/// `Disconnected` once the set is empty.
impl AsyncReceiver<Vec<Selection>> for ReceiverSet {
    fn try_recv_now(&mut self) -> Result<Vec<Selection>, RecvError> {
        let found = self.select(Some(Duration::ZERO))?;
        if found.is_empty() {
            return Err(RecvError::Empty);
        }
        Ok(found)
    }
}
