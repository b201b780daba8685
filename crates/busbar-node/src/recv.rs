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
use crate::region::Region;
use busbar::{Borrowed, BytesMessage, EndpointReceiver, LabelOp, RecvError, TypeUuid};
use napi::bindgen_prelude::{Array, BufferSlice, Null};
use napi::{Env, JsString};
use std::os::fd::AsFd;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::time::Duration;

/// The most messages handed over at once; JavaScript keeps the ones its
/// callers have not asked for yet, so this bounds what waits inside Node.
pub const MAX_BATCH: usize = 64;
/// A batch stops growing past this many payload bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// How many 32-bit words of a batch's slab describe one message (see
/// [`Receiving::try_batch`]); index.js reads them in this order.
pub const META_WORDS: usize = 7;
/// Payloads up to this long are copied into the batch's slab; longer ones
/// get a `Buffer` of their own.
const SLAB_PAYLOAD_MAX: usize = 8 * 1024;
/// A slab holds at most this many payload bytes: a message kept for long
/// keeps its whole slab alive, as a `Buffer` a socket read does in Node.
const SLAB_BYTES: usize = 64 * 1024;

/// What [`Receiving::watch`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Stop watching.
    Stop,
    /// Watch, keeping the event loop alive.
    Start,
    /// Go on watching without keeping the event loop alive.
    Idle,
}

/// An endpoint's receiver and the handle that waits on it. Lives on the
/// JavaScript thread of its endpoint.
pub struct Receiving {
    /// Declared first: dropped (stopped, closed) before the receiver whose
    /// descriptor it watches.
    poll: Option<Poll>,
    rx: Option<EndpointReceiver<BytesMessage>>,
    /// An error met while filling a batch, for the next receive.
    deferred: Option<Failure>,
    /// Where a batch's slab is put together (kept: no allocation per batch).
    slab: Vec<u8>,
    /// The slab's description of each message.
    meta: Vec<u32>,
    /// The last source seen and its text.
    source: Option<(u64, String)>,
    /// The last selector seen and its text.
    selector: Option<(LabelOp, String)>,
}

/// A batch being written into one JavaScript array: slot 0 the slab (a
/// `Buffer`), 1 the number of messages, 2 where in the slab their
/// descriptions start; then the strings, buffers and attachments the
/// descriptions point at by index.
struct Out<'env> {
    env: &'env Env,
    array: Array<'env>,
    next: u32,
    /// Index of the source string set last, for the source it was made for.
    source: Option<(u64, u32)>,
    /// Index of the selector string set last.
    selector: Option<u32>,
}

impl<'env> Out<'env> {
    fn new(env: &'env Env) -> Result<Out<'env>, Failure> {
        Ok(Out {
            env,
            array: env.create_array(0)?,
            next: 3,
            source: None,
            selector: None,
        })
    }

    /// Sets the next slot to `value`; its index.
    fn push<T: napi::bindgen_prelude::ToNapiValue>(&mut self, value: T) -> Result<u32, Failure> {
        let at = self.next;
        self.array.set(at, value)?;
        self.next += 1;
        Ok(at)
    }

    fn string(&mut self, text: &str) -> Result<u32, Failure> {
        let s: JsString<'env> = self.env.create_string(text)?;
        self.push(s)
    }
}

impl Receiving {
    /// Takes the endpoint's receiver.
    pub fn new(rx: EndpointReceiver<BytesMessage>) -> Receiving {
        Receiving {
            poll: None,
            rx: Some(rx),
            deferred: None,
            slab: Vec::new(),
            meta: Vec::new(),
            source: None,
            selector: None,
        }
    }

    /// Up to `max` messages that are already there, without waiting, as
    /// one JavaScript array (empty when there are none: only then is the
    /// descriptor armed, see [`watch`](Self::watch)).
    ///
    /// Each message's payload is copied once out of the shared memory it
    /// lies in (the link's ring, a region), into the batch's slab: one
    /// `Buffer` per batch, with every small payload and, after them,
    /// [`META_WORDS`] native-endian `u32` per message: the payload's start
    /// in the slab and its length, its format tag (bits 0-15) and whether
    /// it was multicast (bit 16), the array indexes of its source and
    /// selector strings, of its own `Buffer` (0: the payload is in the
    /// slab) and of its attachments (0: none; else three slots: its
    /// descriptors, its regions, its request token, each null when absent).
    /// So a message costs V8 no allocation of its own but the `Buffer`
    /// index.js makes over its bytes, and no call from Rust into V8.
    pub fn try_batch<'env>(&mut self, env: &'env Env, max: usize) -> Result<Array<'env>, Failure> {
        if let Some(f) = self.deferred.take() {
            return Err(f);
        }
        let rx = self.rx.as_mut().ok_or_else(Failure::closed)?;
        let mut take = Take {
            out: Out::new(env)?,
            slab: &mut self.slab,
            meta: &mut self.meta,
            source: &mut self.source,
            selector: &mut self.selector,
        };
        take.slab.clear();
        take.meta.clear();
        let max = max.clamp(1, MAX_BATCH);
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut failure = None;
        while count < max && bytes < MAX_BATCH_BYTES {
            // What the rings hold first, without a system call; the sockets
            // (and arming the descriptor, which makes the next sender ring
            // it) only once that found nothing and the batch is still empty:
            // a batch that found messages ends without arming, and index.js
            // asks again until one comes back empty.
            let got = match rx.try_recv_ready_with(|m| take.message(m)) {
                Err(RecvError::Empty) if count == 0 => rx.try_recv_with(|m| take.message(m)),
                other => other,
            };
            match got {
                Ok(Ok(Some(weight))) => {
                    count += 1;
                    bytes += weight;
                }
                Ok(Ok(None)) => {}
                Ok(Err(f)) => {
                    failure = Some(f);
                    break;
                }
                Err(RecvError::Timeout | RecvError::Empty | RecvError::Interrupted) => break,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            }
        }
        if count == 0 {
            return match failure {
                Some(f) => Err(f),
                None => Ok(env.create_array(0)?),
            };
        }
        self.deferred = failure;
        let Take {
            mut out,
            slab,
            meta,
            ..
        } = take;
        while slab.len() % 4 != 0 {
            slab.push(0);
        }
        let meta_at = slab.len();
        for word in meta.iter() {
            slab.extend_from_slice(&word.to_ne_bytes());
        }
        let buffer = BufferSlice::copy_from(env, &slab[..])?;
        out.array.set(0, buffer)?;
        out.array.set(1, count as u32)?;
        out.array.set(2, meta_at as u32)?;
        Ok(out.array)
    }
    /// Watches the rings for up to `spin` without a system call (busbar's
    /// `EndpointReceiver::spin_for`): whether a message may be there now
    /// (then [`try_batch`](Self::try_batch) takes it); when not, the
    /// descriptor is armed again, as after a `try_batch` that found nothing.
    pub fn spin(&mut self, spin: Duration) -> Result<bool, Failure> {
        if self.deferred.is_some() {
            return Ok(true);
        }
        let rx = self.rx.as_mut().ok_or_else(Failure::closed)?;
        Ok(rx.spin_for(spin))
    }

    /// Watches the receiver's descriptor, or stops: `Watch::Start` calls
    /// `func` (taken on first use, a JavaScript function) whenever it is
    /// readable, keeping the event loop alive; `Watch::Idle` goes on
    /// watching without keeping the loop alive (nobody waits now, but a
    /// caller may come back within the turn: the watch stays in the
    /// kernel instead of being taken out and put back for each message);
    /// `Watch::Stop` stops.
    ///
    /// Start only after [`try_batch`](Self::try_batch) found nothing: the
    /// descriptor's contract (see busbar's `EndpointReceiver: AsFd`).
    pub fn watch<'env>(
        &mut self,
        env: &Env,
        how: Watch,
        func: Option<&impl napi::JsValue<'env>>,
    ) -> Result<(), Failure> {
        match how {
            Watch::Stop => {
                if let Some(p) = &self.poll {
                    p.stop();
                }
                return Ok(());
            }
            Watch::Idle => {
                if let Some(p) = &self.poll {
                    p.keep_alive(false);
                }
                return Ok(());
            }
            Watch::Start => {}
        }
        let rx = self.rx.as_ref().ok_or_else(Failure::closed)?;
        if self.poll.is_none() {
            let func = func.ok_or_else(|| {
                Failure::invalid("the first watch(true) takes the function to call")
            })?;
            self.poll = Some(Poll::new(env, rx.as_fd(), func)?);
        }
        match &self.poll {
            Some(p) => {
                p.keep_alive(true);
                p.start()
            }
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

/// What a batch is being written into, while `recv_with` lends messages.
struct Take<'a, 'env> {
    out: Out<'env>,
    slab: &'a mut Vec<u8>,
    meta: &'a mut Vec<u32>,
    source: &'a mut Option<(u64, String)>,
    selector: &'a mut Option<(LabelOp, String)>,
}

impl Take<'_, '_> {
    /// Adds message `m`: its weight (bytes held), `None` when it is not a
    /// `BytesMessage` (skipped, as `EndpointReceiver<BytesMessage>` skips
    /// types it does not know; its attachments are closed).
    fn message(&mut self, m: Borrowed<'_>) -> Result<Option<usize>, Failure> {
        let (format, data) = match m.bytes() {
            Some(b) => b,
            None if *m.type_uuid().as_bytes() == BytesMessage::TYPE_UUID => {
                return Err(Failure::new(
                    "DECODE",
                    "cannot decode `BytesMessage`: its length prefix does not hold",
                ))
            }
            None => return Ok(None),
        };
        let len = u32::try_from(data.len())
            .map_err(|_| Failure::new("TOO_LARGE", "a payload of 4 GiB or more"))?;
        let (start, own) =
            if data.len() <= SLAB_PAYLOAD_MAX && self.slab.len() + data.len() <= SLAB_BYTES {
                let start = self.slab.len() as u32;
                self.slab.extend_from_slice(data);
                (start, 0)
            } else {
                let buffer = BufferSlice::copy_from(self.out.env, data)?;
                (0, self.out.push(buffer)?)
            };
        let source = match self.out.source {
            Some((id, at)) if id == m.source.0 => at,
            _ => {
                if self.source.as_ref().is_none_or(|(id, _)| *id != m.source.0) {
                    *self.source = Some((m.source.0, m.source.to_string()));
                }
                let text = self.source.as_ref().map_or("", |(_, t)| t.as_str());
                let at = self.out.string(text)?;
                self.out.source = Some((m.source.0, at));
                at
            }
        };
        let op = &m.selector.label_op;
        let known = self.selector.as_ref().is_some_and(|(last, _)| last == op);
        let selector = match self.out.selector {
            Some(at) if known => at,
            _ => {
                if !known {
                    *self.selector = Some((op.clone(), op.to_string()));
                }
                let text = self.selector.as_ref().map_or("", |(_, t)| t.as_str());
                let at = self.out.string(text)?;
                self.out.selector = Some(at);
                at
            }
        };
        let reply = m.reply_handle();
        let multicast = u32::from(m.selector.mode == busbar::SelectorMode::Multicast);
        let attachments = if m.objects.is_empty() && m.memory_regions.is_empty() && reply.is_none()
        {
            0
        } else {
            let Borrowed {
                objects,
                memory_regions,
                ..
            } = m;
            let at = if objects.is_empty() {
                self.out.push(Null)?
            } else {
                // The descriptors belong to JavaScript from here on
                // (index.js wraps each in an `Fd`).
                let fds: Vec<i32> = objects
                    .into_iter()
                    .map(|o| OwnedFd::from(o).into_raw_fd())
                    .collect();
                self.out.push(fds)?
            };
            if memory_regions.is_empty() {
                self.out.push(Null)?;
            } else {
                let regions: Vec<Region> = memory_regions.into_iter().map(Region::wrap).collect();
                self.out.push(regions)?;
            }
            match reply {
                Some(handle) => self.out.push(crate::message::ReplyToken { handle })?,
                None => self.out.push(Null)?,
            };
            at
        };
        let words: [u32; META_WORDS] = [
            start,
            len,
            u32::from(format) | multicast << 16,
            source,
            selector,
            own,
            attachments,
        ];
        self.meta.extend_from_slice(&words);
        Ok(Some(data.len() + 64))
    }
}
