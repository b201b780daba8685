//! [`RingLink`]: a [`HostileRing`] on one end of a socket pair and the
//! real receiving end of a data link (`busbar::testing::LinkEnd`) on the
//! other, both in this process, reporting what became of each read
//! ([`RingRead`]) along with the indices each side last published, so
//! that a test can tell which bytes of the ring hold frames the receiver
//! has not read yet.

use super::attach::{link_sockets, send_raw, RawInput, Unsent};
use super::feed::Delivered;
use super::hostile_ring::HostileRing;
use busbar::testing::{ring_layout, LinkEnd, Pushed, Received, Scribbler, MAX_BAD_FRAMES};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What one read of a [`RingLink`] gave.
#[derive(Debug)]
pub enum RingRead {
    /// A message for the application, with the sequence number its frame carried.
    Delivered {
        /// The frame's sequence number.
        seq: u32,
        /// The message.
        message: Delivered,
    },
    /// A frame refused as malformed (by the link's checks or by decoding) and
    /// counted against the link, which lives on.
    Dropped,
    /// Well formed, of a type a `BytesMessage` receiver does not know: skipped.
    Skipped,
    /// A `BytesMessage` whose payload did not decode.
    DecodeError,
    /// Something the link handled itself (padding, a look at the socket).
    Nothing,
    /// Nothing to read now.
    Empty,
    /// The link ended, and the receiver dropped it.
    Closed {
        /// Cut for misbehaving (a corrupt ring, or `MAX_BAD_FRAMES` malformed
        /// frames), rather than closed by the sender.
        cut: bool,
        /// Malformed frames this read counted (the last one that made the
        /// link cut, if so; a corrupt ring counts up to the limit at once).
        newly_bad: u32,
    },
}

/// A value neither side ever stores in an index (both keep them 8-aligned):
/// [`RingLink`] puts it in an index word around a call to learn whether the
/// call stored that index.
const NOT_AN_INDEX: u64 = 1;

/// A data link with a ring: a [`HostileRing`] on one end of a socket pair,
/// the real receiving end on the other, both in this process.
///
/// Since both ends are here, it learns the indices each side publishes
/// ([`RingLink::producer_tail`], [`RingLink::consumer_head`]): around each
/// call that may store one, it puts a value in the shared word that neither
/// side ever stores, then puts back what was there if the call did not
/// store it. Neither side reads back the index it writes, so this changes
/// nothing they see; it would, with another process reading the ring at
/// the same time, which is why only this in-process harness does it.
#[derive(Debug)]
pub struct RingLink {
    ring: HostileRing,
    tx: Option<OwnedFd>,
    link: Option<LinkEnd>,
    producer_tail: u64,
    consumer_head: u64,
    cut: bool,
    bad_frames: u32,
}

impl RingLink {
    /// A new link with a ring of `capacity` bytes whose indices start at
    /// `start` (see [`HostileRing::new`]); `bell`: the hello hands over an
    /// eventfd too. The hello has gone through the receiving end already.
    pub fn open(capacity: usize, start: u64, bell: bool) -> io::Result<RingLink> {
        let (tx, rx) = link_sockets()?;
        let ring = HostileRing::new(capacity, start)?;
        ring.hello(tx.as_fd(), 0x6861_7273_6820_7269, bell)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let start = ring.scribbler.load_u64(ring_layout::TAIL).unwrap_or(0);
        let mut link = RingLink {
            ring,
            tx: Some(tx),
            link: Some(LinkEnd::new(rx)),
            producer_tail: start,
            consumer_head: start,
            cut: false,
            bad_frames: 0,
        };
        // Not watched: the receiving end opens the ring here, and reads the
        // consumer index from it.
        let took = match link.link.as_mut() {
            Some(l) => match l.read() {
                Received::Nothing if l.knows_peer() => Ok(()),
                other => Err(format!("{other:?} (malformed frames: {})", l.bad_frames())),
            },
            None => Err("no link".into()),
        };
        match took {
            Ok(()) => Ok(link),
            Err(e) => Err(io::Error::other(format!(
                "the receiving end did not take the hello: {e}"
            ))),
        }
    }

    /// The sending end, to push frames and scribble with.
    pub fn ring(&mut self) -> &mut HostileRing {
        &mut self.ring
    }

    /// What the producer last published (its `tail`).
    pub fn producer_tail(&self) -> u64 {
        self.producer_tail
    }

    /// What the consumer last released (its `head`).
    pub fn consumer_head(&self) -> u64 {
        self.consumer_head
    }

    /// [`HostileRing::push`], learning the producer index it publishes.
    pub fn push(&mut self, frame: &[u8]) -> Pushed {
        let HostileRing {
            producer,
            scribbler,
            ..
        } = &mut self.ring;
        let (out, tail) = watching(scribbler, ring_layout::TAIL, || {
            producer.push(scribbler, frame)
        });
        if let Some(t) = tail {
            self.producer_tail = t;
        }
        out
    }

    /// [`HostileRing::abandon`], learning the producer index if padding was published.
    pub fn abandon(&mut self, frame: &[u8], written: usize) -> bool {
        let HostileRing {
            producer,
            scribbler,
            ..
        } = &mut self.ring;
        let (out, tail) = watching(scribbler, ring_layout::TAIL, || {
            producer.abandon(frame, written)
        });
        if let Some(t) = tail {
            self.producer_tail = t;
        }
        out
    }

    /// Writes a whole frame, with descriptors, to the socket (as an honest
    /// sender does with a frame that carries descriptors or does not fit the ring).
    pub fn send_socket(&mut self, input: &RawInput) -> Result<(), Unsent> {
        match &self.tx {
            Some(tx) => send_raw(tx.as_fd(), input),
            None => Err(Unsent::Refused(io::Error::from_raw_os_error(
                rustix::io::Errno::PIPE.raw_os_error(),
            ))),
        }
    }

    /// Whether the receiving end hung up the socket (it dropped the link).
    pub fn receiver_hung_up(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| hung_up(tx.as_fd()))
    }

    /// Closes the sender's end of the socket (the ring stays as it is: close
    /// or kill it first with [`HostileRing::close`] / [`HostileRing::die`]).
    pub fn hang_up(&mut self) {
        self.tx = None;
    }

    /// One read of the receiving end: the link's `read`, then `decode` of a
    /// `BytesMessage` for a data frame, counting decode-time malformations
    /// against the link as the receiver does. A link that ends is dropped.
    pub fn read(&mut self) -> RingRead {
        let Some(link) = self.link.as_mut() else {
            return RingRead::Closed {
                cut: self.cut,
                newly_bad: 0,
            };
        };
        let bad_before = link.bad_frames();
        let (got, head) = watching(&self.ring.scribbler, ring_layout::HEAD, || link.read());
        if let Some(h) = head {
            self.consumer_head = h;
        }
        let out = match got {
            Received::Message { seq, message } => RingRead::Delivered {
                seq,
                message: Delivered::of(message),
            },
            Received::Skipped => RingRead::Skipped,
            Received::Malformed { cut: true } => self.end(bad_before),
            Received::Malformed { cut: false } => RingRead::Dropped,
            Received::DecodeError => RingRead::DecodeError,
            Received::Nothing if link.bad_frames() > bad_before => RingRead::Dropped,
            Received::Nothing => RingRead::Nothing,
            Received::Empty => RingRead::Empty,
            Received::Closed => self.end(bad_before),
        };
        if let Some(l) = &self.link {
            self.bad_frames = l.bad_frames();
        }
        out
    }

    /// The link ended: drop it as the receiver does.
    fn end(&mut self, bad_before: u32) -> RingRead {
        let bad = self.link.as_ref().map_or(0, LinkEnd::bad_frames);
        self.bad_frames = bad;
        self.cut = bad >= MAX_BAD_FRAMES;
        self.link = None;
        RingRead::Closed {
            cut: self.cut,
            newly_bad: bad.saturating_sub(bad_before),
        }
    }

    /// What the receiver does before it sleeps: raises the ring's flag and
    /// looks again. Whether something is there after all (do not sleep).
    pub fn prepare_sleep(&mut self) -> bool {
        self.link.as_mut().is_some_and(LinkEnd::prepare_sleep)
    }

    /// What the receiver does when it wakes: lowers the ring's flag, takes
    /// note that the socket may have something, and silences the doorbell.
    pub fn wake(&mut self) {
        if let Some(l) = self.link.as_mut() {
            l.wake();
        }
    }

    /// Whether the receiver's copy of the doorbell is ringing (it would
    /// wake). `false` for a link whose hello handed over no eventfd.
    pub fn bell_rung(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(bell) = self.link.as_ref().and_then(LinkEnd::bell) else {
            return false;
        };
        let mut fds = [PollFd::new(&bell, PollFlags::IN)];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// What the receiver's spin loop looks at: whether the ring seems to
    /// have something (it may release padding on the way).
    pub fn ring_has_frame(&mut self) -> bool {
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        let (out, head) = watching(&self.ring.scribbler, ring_layout::HEAD, || {
            link.ring_has_frame()
        });
        if let Some(h) = head {
            self.consumer_head = h;
        }
        out
    }

    /// Whether the receiver still holds the link.
    pub fn is_open(&self) -> bool {
        self.link.is_some()
    }

    /// Whether the receiver cut the link for misbehaving.
    pub fn cut(&self) -> bool {
        self.cut
    }

    /// Malformed frames the link was charged with.
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }
}

/// Runs `f` with [`NOT_AN_INDEX`] in the index word at `at`; what `f`
/// returned, and the index it stored, if it stored one (else the word gets
/// back what it held).
fn watching<R>(scribbler: &Scribbler, at: usize, f: impl FnOnce() -> R) -> (R, Option<u64>) {
    let before = scribbler.load_u64(at).unwrap_or(0);
    scribbler.store_u64(at, NOT_AN_INDEX);
    let out = f();
    match scribbler.load_u64(at) {
        Some(NOT_AN_INDEX) | None => {
            scribbler.store_u64(at, before);
            (out, None)
        }
        Some(stored) => (out, Some(stored)),
    }
}

/// Whether the other end of the connected socket `fd` hung up (a poll
/// that does not wait), as the library's own senders look.
fn hung_up(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::RDHUP)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_support::data_frame;
    use busbar::{BytesMessage, Selector};

    #[test]
    fn ring_link_tracks_both_indices_and_delivers() {
        let mut link = RingLink::open(256, 0, true).expect("ring link");
        let frame =
            data_frame(&Selector::unicast("a"), &BytesMessage::new(3, *b"abc"), 0).expect("frame");
        assert_eq!(link.push(&frame), Pushed::Sent { woke: false });
        let tail = (8 + ring_layout::padded(frame.len())) as u64;
        assert_eq!(link.producer_tail(), tail);
        // The layout table holds: the producer index is where we say.
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::TAIL),
            Some(tail)
        );
        match link.read() {
            RingRead::Delivered { seq: 0, message } => {
                assert_eq!(message.payload, BytesMessage::new(3, *b"abc"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(link.consumer_head(), tail);
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::HEAD),
            Some(tail)
        );
        assert!(matches!(link.read(), RingRead::Empty));
        // A read that releases nothing leaves a scribbled index as it was.
        link.ring()
            .scribble()
            .store_u64(ring_layout::HEAD, 0xdead_bee0);
        assert!(matches!(link.read(), RingRead::Empty));
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::HEAD),
            Some(0xdead_bee0)
        );
        assert_eq!(link.consumer_head(), tail);
    }

    #[test]
    fn a_receiver_asleep_is_rung_by_a_commit() {
        let mut link = RingLink::open(4096, u64::MAX - 15, true).expect("ring link");
        assert!(!link.prepare_sleep());
        assert!(!link.bell_rung());
        let frame =
            data_frame(&Selector::unicast("a"), &BytesMessage::new(0, *b"x"), 0).expect("frame");
        assert_eq!(link.push(&frame), Pushed::Sent { woke: true });
        assert!(link.bell_rung());
        link.wake();
        assert!(!link.bell_rung());
        assert!(matches!(link.read(), RingRead::Delivered { seq: 0, .. }));
    }
}
