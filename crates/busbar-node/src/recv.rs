//! The receiving side of an endpoint, on the JavaScript thread: messages
//! are taken with `try_recv`, and waiting for more is libuv's job.
//!
//! The endpoint's receiver has a descriptor ([`AsFd`]) that turns readable
//! when a message may have come once `try_recv` found nothing. index.js
//! asks for a batch ([`Receiving::try_batch`]); when it finds none and a
//! caller waits, it starts [`Receiving::watch`]: a libuv poll handle on
//! that descriptor, on the thread's own event loop, which calls index.js
//! back whenever the descriptor is readable, until no caller waits. So a
//! message that finds JavaScript idle costs one wake-up (the event
//! loop's), no thread waits for it, and nothing wakes while nobody waits.

use crate::error::Failure;
use crate::ffi::Poll;
use crate::message::{Received, SelectorText};
use busbar::{BytesMessage, EndpointReceiver, RecvError};
use napi::Env;
use std::os::fd::AsFd;

/// The most messages handed over at once; JavaScript keeps the ones its
/// callers have not asked for yet, so this bounds what waits inside Node.
pub const MAX_BATCH: usize = 64;
/// A batch stops growing past this many payload bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// An endpoint's receiver and the handle that waits on it. Lives on the
/// JavaScript thread of its endpoint.
pub struct Receiving {
    /// Declared first: dropped (stopped, closed) before the receiver whose
    /// descriptor it watches.
    poll: Option<Poll>,
    rx: Option<EndpointReceiver<BytesMessage>>,
    /// An error met while filling a batch, for the next receive.
    deferred: Option<Failure>,
    /// Selector texts, shared by the messages of a batch.
    texts: SelectorText,
}

impl Receiving {
    /// Takes the endpoint's receiver.
    pub fn new(rx: EndpointReceiver<BytesMessage>) -> Receiving {
        Receiving {
            poll: None,
            rx: Some(rx),
            deferred: None,
            texts: SelectorText::default(),
        }
    }

    /// Up to `max` messages that are already there, without waiting (an
    /// empty batch when there are none).
    pub fn try_batch(&mut self, max: usize) -> Result<Vec<Received>, Failure> {
        if let Some(f) = self.deferred.take() {
            return Err(f);
        }
        let rx = self.rx.as_mut().ok_or_else(Failure::closed)?;
        let mut batch = Vec::new();
        match fill(rx, &mut self.texts, &mut batch, max.clamp(1, MAX_BATCH)) {
            Some(f) if batch.is_empty() => Err(f),
            Some(f) => {
                self.deferred = Some(f);
                Ok(batch)
            }
            None => Ok(batch),
        }
    }

    /// Starts (`on`) or stops watching the receiver's descriptor; while
    /// started, `func` (taken on first use, a JavaScript function) is
    /// called whenever it is readable.
    ///
    /// Start only after [`try_batch`](Self::try_batch) found nothing: the
    /// descriptor's contract (see busbar's `EndpointReceiver: AsFd`).
    pub fn watch<'env>(
        &mut self,
        env: &Env,
        on: bool,
        func: Option<&impl napi::JsValue<'env>>,
    ) -> Result<(), Failure> {
        if !on {
            if let Some(p) = &self.poll {
                p.stop();
            }
            return Ok(());
        }
        let rx = self.rx.as_ref().ok_or_else(Failure::closed)?;
        if self.poll.is_none() {
            let func = func.ok_or_else(|| {
                Failure::invalid("the first watch(true) takes the function to call")
            })?;
            self.poll = Some(Poll::new(env, rx.as_fd(), func)?);
        }
        match &self.poll {
            Some(p) => p.start(),
            None => Err(Failure::closed()),
        }
    }

    /// Ends receiving: stops waiting, drops the receiver.
    pub fn close(&mut self) {
        self.poll = None;
        self.rx = None;
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.close();
    }
}

/// Adds what `try_recv` finds to `batch`, up to `max` messages or
/// [`MAX_BATCH_BYTES`]; an error other than "nothing there" is returned
/// (its message, if any, was dropped by busbar).
fn fill(
    rx: &mut EndpointReceiver<BytesMessage>,
    texts: &mut SelectorText,
    batch: &mut Vec<Received>,
    max: usize,
) -> Option<Failure> {
    let mut bytes: usize = batch.iter().map(Received::weight).sum();
    while batch.len() < max && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(m) => {
                let r = Received::new(m, texts);
                bytes += r.weight();
                batch.push(r);
            }
            Err(RecvError::Empty) => return None,
            Err(e) => return Some(e.into()),
        }
    }
    None
}
