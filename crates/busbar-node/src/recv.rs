//! The receiving side of an endpoint, on the JavaScript thread: messages
//! are taken with `try_recv`, and waiting for more is libuv's job.
//!
//! The endpoint's receiver has a descriptor ([`AsFd`]) that turns readable
//! when a message may have come once `try_recv` found nothing. index.js
//! asks for a batch ([`Receiving::take_into`]); when it finds none and a
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
/// [`Receiving::take_into`]); index.js reads them in this order.
pub const META_WORDS: usize = 7;
/// Payloads up to this long are copied into the slab; longer ones get a
/// `Buffer` of their own.
pub const SLAB_PAYLOAD_MAX: usize = 8 * 1024;
/// Room a slab must have left for one more message to be taken into it:
/// its payload and every description a batch may write after it.
/// index.js gives a new slab when the one it has has less.
pub const SLAB_ROOM: usize = SLAB_PAYLOAD_MAX + MAX_BATCH * META_WORDS * 4 + 4;
/// The longest slab taken (its offsets must fit the count's word).
const SLAB_MAX: usize = 1 << 24;

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
    /// The slab's description of each message (kept: no allocation per batch).
    meta: Vec<u32>,
    /// The last source handed to JavaScript (index.js keeps its text).
    source: Option<u64>,
    /// The last selector seen and its text, and whether JavaScript has
    /// that text as its last one.
    selector: Option<(LabelOp, String)>,
    selector_given: bool,
}

/// What [`Receiving::take_into`] took.
pub enum Taken<'env> {
    /// Nothing: no message was there.
    Nothing,
    /// `count` messages, described from `meta_at` on in the slab, with
    /// nothing JavaScript does not have yet (their source and selector are
    /// the last ones it was given): index.js gets `meta_at * 128 + count`.
    Plain { count: u32, meta_at: u32 },
    /// Messages that come with strings, buffers or attachments: an array,
    /// `[count, meta_at, ...]`, the rest of it what the descriptions point at.
    WithValues(Array<'env>),
}

/// The values of a batch that JavaScript does not have yet, in one
/// array: slot 0 the number of messages, 1 where in the slab their
/// descriptions start; then the strings, buffers and attachments the
/// descriptions point at by index (so never 0).
struct Out<'env> {
    env: &'env Env,
    array: Array<'env>,
    next: u32,
}

impl<'env> Out<'env> {
    fn new(env: &'env Env) -> Result<Out<'env>, Failure> {
        Ok(Out {
            env,
            array: env.create_array(0)?,
            next: 2,
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
            meta: Vec::new(),
            source: None,
            selector: None,
            selector_given: false,
        }
    }

    /// Up to `max` messages that are already there, without waiting,
    /// copied into `slab` (a `Buffer` index.js gives, with at least
    /// [`SLAB_ROOM`] bytes from `at` on) from `at` on: [`Taken::Nothing`]
    /// when there are none (only then is the descriptor armed, see
    /// [`watch`](Self::watch)).
    ///
    /// Each message's payload is copied once, out of the shared memory it
    /// lies in (the link's ring, a region) into the slab, when it is at
    /// most [`SLAB_PAYLOAD_MAX`] bytes (larger ones get a `Buffer` of their
    /// own). After the payloads (aligned to 4) come [`META_WORDS`]
    /// native-endian `u32` per message: the payload's start in the slab
    /// and its length, its format tag (bits 0-15) and whether it was
    /// multicast (bit 16), the indexes in the array of values (see
    /// [`Taken`]) of its source and selector strings (0: the last ones
    /// index.js was given), of its own `Buffer` (0: the payload is in the
    /// slab) and of its attachments (0: none; else three slots: its
    /// descriptors, its regions, its request token, each null when
    /// absent). index.js goes on writing the next batch where the
    /// descriptions start, and gives a new slab when too little is left:
    /// a stream of messages from one sender to one selector costs V8
    /// nothing but the `Buffer` index.js makes over each payload.
    pub fn take_into<'env>(
        &mut self,
        env: &'env Env,
        slab: &mut [u8],
        at: usize,
        max: usize,
    ) -> Result<Taken<'env>, Failure> {
        if let Some(f) = self.deferred.take() {
            return Err(f);
        }
        let rx = self.rx.as_mut().ok_or_else(Failure::closed)?;
        if slab.len() > SLAB_MAX || at > slab.len() || slab.len() - at < SLAB_ROOM {
            return Err(Failure::invalid(format!(
                "a slab of {} bytes (at most {SLAB_MAX}) with {SLAB_ROOM} free from {at}",
                slab.len()
            )));
        }
        let mut take = Take {
            env,
            out: None,
            slab,
            pos: at,
            meta: &mut self.meta,
            source: &mut self.source,
            selector: &mut self.selector,
            selector_given: &mut self.selector_given,
        };
        take.meta.clear();
        let max = max.clamp(1, MAX_BATCH);
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut failure = None;
        while count < max && bytes < MAX_BATCH_BYTES && take.slab.len() - take.pos >= SLAB_ROOM {
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
        if failure.is_some() {
            // The message that failed may have set a string JavaScript will
            // not see: give both again with the next message.
            *take.source = None;
            *take.selector_given = false;
        }
        if count == 0 {
            return match failure {
                Some(f) => Err(f),
                None => Ok(Taken::Nothing),
            };
        }
        self.deferred = failure;
        let Take {
            out,
            slab,
            mut pos,
            meta,
            ..
        } = take;
        pos = pos.next_multiple_of(4);
        let meta_at = pos;
        for word in meta.iter() {
            // In the slab: SLAB_ROOM was left before each message taken.
            let place = slab
                .get_mut(pos..pos + 4)
                .ok_or_else(|| Failure::new("PANIC", "the slab ran out of room"))?;
            place.copy_from_slice(&word.to_ne_bytes());
            pos += 4;
        }
        // In range: the slab is at most SLAB_MAX bytes, a batch MAX_BATCH.
        let (count, meta_at) = (count as u32, meta_at as u32);
        Ok(match out {
            None => Taken::Plain { count, meta_at },
            Some(mut out) => {
                out.array.set(0, count)?;
                out.array.set(1, meta_at)?;
                Taken::WithValues(out.array)
            }
        })
    }

    /// Watches the rings for up to `spin` without a system call (busbar's
    /// `EndpointReceiver::spin_for`): whether a message may be there now
    /// (then [`take_into`](Self::take_into) takes it); when not, the
    /// descriptor is armed again, as after a `take_into` that found nothing.
    ///
    /// A spin that found nothing yields the processor before it returns
    /// (index.js spins in slices of 10 µs): a sender waiting for this
    /// processor gets it. Under a real-time policy (`chrt -f`) nothing
    /// else would take it from a spinning receiver, and a sender that had
    /// to share its processor with one (another process takes the other
    /// one) would wait out the whole spin for every message.
    pub fn spin(&mut self, spin: Duration) -> Result<bool, Failure> {
        if self.deferred.is_some() {
            return Ok(true);
        }
        let rx = self.rx.as_mut().ok_or_else(Failure::closed)?;
        let ready = rx.spin_for(spin);
        if !ready {
            std::thread::yield_now();
        }
        Ok(ready)
    }

    /// Watches the receiver's descriptor, or stops: `Watch::Start` calls
    /// `func` (taken on first use, a JavaScript function) whenever it is
    /// readable, keeping the event loop alive; `Watch::Idle` goes on
    /// watching without keeping the loop alive (nobody waits now, but a
    /// caller may come back within the turn: the watch stays in the
    /// kernel instead of being taken out and put back for each message);
    /// `Watch::Stop` stops.
    ///
    /// Start only after [`take_into`](Self::take_into) found nothing: the
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
    env: &'env Env,
    /// The batch's values, made when the first one is needed.
    out: Option<Out<'env>>,
    slab: &'a mut [u8],
    /// Where the next payload goes in the slab.
    pos: usize,
    meta: &'a mut Vec<u32>,
    source: &'a mut Option<u64>,
    selector: &'a mut Option<(LabelOp, String)>,
    selector_given: &'a mut bool,
}

impl<'env> Take<'_, 'env> {
    /// The batch's array of values.
    fn out(&mut self) -> Result<&mut Out<'env>, Failure> {
        if self.out.is_none() {
            self.out = Some(Out::new(self.env)?);
        }
        self.out
            .as_mut()
            .ok_or_else(|| Failure::new("PANIC", "no array"))
    }

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
        let in_slab = data.len() <= SLAB_PAYLOAD_MAX;
        let (start, own) = match self.slab.get_mut(self.pos..self.pos + data.len()) {
            // (Always there: SLAB_ROOM was left.)
            Some(place) if in_slab => {
                place.copy_from_slice(data);
                let start = self.pos as u32;
                self.pos += data.len();
                (start, 0)
            }
            _ => {
                let buffer = BufferSlice::copy_from(self.env, data)?;
                (0, self.out()?.push(buffer)?)
            }
        };
        let source = if *self.source == Some(m.source.0) {
            0
        } else {
            let text = m.source.to_string();
            let at = self.out()?.string(&text)?;
            *self.source = Some(m.source.0);
            at
        };
        let op = &m.selector.label_op;
        let known = self.selector.as_ref().is_some_and(|(last, _)| last == op);
        let selector = if known && *self.selector_given {
            0
        } else {
            if !known {
                *self.selector = Some((op.clone(), op.to_string()));
            }
            let text = self
                .selector
                .as_ref()
                .map_or(String::new(), |(_, t)| t.clone());
            let at = self.out()?.string(&text)?;
            *self.selector_given = true;
            at
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
            let out = self.out()?;
            let at = if objects.is_empty() {
                out.push(Null)?
            } else {
                // The descriptors belong to JavaScript from here on
                // (index.js wraps each in an `Fd`).
                let fds: Vec<i32> = objects
                    .into_iter()
                    .map(|o| OwnedFd::from(o).into_raw_fd())
                    .collect();
                out.push(fds)?
            };
            if memory_regions.is_empty() {
                out.push(Null)?;
            } else {
                let regions: Vec<Region> = memory_regions.into_iter().map(Region::wrap).collect();
                out.push(regions)?;
            }
            match reply {
                Some(handle) => out.push(crate::message::ReplyToken { handle })?,
                None => out.push(Null)?,
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
