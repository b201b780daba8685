//! A sender that owns a ring. A data link also carries frames through a
//! shared-memory ring that the sender creates and hands over in its hello;
//! a hostile sender owns that memory and can write anything into it at any
//! time. [`HostileRing`] is such a sender: it creates a ring, sends the
//! hello, pushes frames as an honest sender does (the library's producer,
//! filled in place and committed, the receiver's doorbell rung when it
//! sleeps), and maps the ring a second time to scribble on it
//! ([`Scribbler`]: indices, record headers, frame bytes, flag words;
//! offsets in [`ring_layout`]).

use super::attach::{link_sockets, Attachment, FdSpec, Unsent};
use super::frames::ring_hello;
use busbar::testing::{
    create_ring, ring_layout, send_frame, LinkEnd, Pushed, Received, RingProducer, Scribbler,
    MAX_BAD_FRAMES,
};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A sender that owns a ring: it pushes frames as an honest sender does and
/// scribbles on the ring as a hostile one may.
///
/// Dropping it closes the ring as a sender that leaves does ([`HostileRing::close`]);
/// a process that dies in the middle leaves the closed flag down ([`HostileRing::die`]).
#[derive(Debug)]
pub struct HostileRing {
    fd: OwnedFd,
    pub(super) producer: RingProducer,
    pub(super) scribbler: Scribbler,
    capacity: usize,
}

impl HostileRing {
    /// Creates a ring with a data area of `capacity` bytes (a power of two,
    /// at least [`ring_layout::MIN_CAPACITY`]) whose indices both start at
    /// `start` rounded down to a multiple of 8 (an honest sender starts at 0;
    /// a large start makes the indices wrap past 2⁶⁴ soon), and opens its
    /// writing end with the external wake-up a data link uses.
    pub fn new(capacity: usize, start: u64) -> io::Result<HostileRing> {
        let fd = create_ring(capacity)?;
        let scribbler = Scribbler::new(fd.as_fd())?;
        let start = start & !(ring_layout::RECORD as u64 - 1);
        scribbler.store_u64(ring_layout::TAIL, start);
        scribbler.store_u64(ring_layout::HEAD, start);
        let producer = RingProducer::open(fd.as_fd())?;
        Ok(HostileRing {
            fd,
            producer,
            scribbler,
            capacity,
        })
    }

    /// Sends the hello that opens a data link from endpoint `id` on
    /// `socket`, handing over the ring and, with `bell`, the eventfd rung
    /// when the receiver sleeps (as `OutLink::connect` does).
    pub fn hello(&self, socket: BorrowedFd<'_>, id: u64, bell: bool) -> Result<(), Unsent> {
        let mut fds = vec![self.fd.as_fd()];
        if bell {
            fds.push(self.producer.bell());
        }
        let bytes = ring_hello(id, fds.len() as u8);
        send_frame(socket, &bytes, &fds).map_err(Unsent::Refused)
    }

    /// Bytes in the data area.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest frame the ring takes.
    pub fn max_frame_len(&self) -> usize {
        self.capacity - ring_layout::RECORD
    }

    /// The ring's descriptor (to map it again, or to send it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Another mapping of the ring, for scribbling from elsewhere (another thread).
    pub fn scribbler(&self) -> io::Result<Scribbler> {
        Scribbler::new(self.fd.as_fd())
    }

    /// This sender's own mapping, for scribbling.
    pub fn scribble(&mut self) -> &mut Scribbler {
        &mut self.scribbler
    }

    /// Whether the receiver said it let go of the ring.
    pub fn consumer_gone(&self) -> bool {
        self.scribbler.load_u32(ring_layout::GONE).unwrap_or(0) != 0
    }

    /// Pushes one frame as `OutLink::send` does when it may not wait: room
    /// reserved, filled in place, committed, and the receiver's doorbell
    /// rung when it slept (also when the ring was full, but padding
    /// published on the way found it asleep). Refuses (`Gone`) when the
    /// receiver let go of the ring.
    pub fn push(&mut self, frame: &[u8]) -> Pushed {
        self.producer.push(&self.scribbler, frame)
    }

    /// Reserves room for `frame`, writes its first `written` bytes, and
    /// never commits it (a sender that stops, or dies, half way through a
    /// frame). Whether room was reserved. A wake-up owed for padding
    /// published on the way is not paid (the next push pays it).
    pub fn abandon(&mut self, frame: &[u8], written: usize) -> bool {
        self.producer.abandon(frame, written)
    }

    /// Rings the eventfd handed over in the hello, as a sender does when its
    /// receiver sleeps (a hostile one may ring it any time).
    pub fn ring_bell(&self) {
        self.producer.ring_bell();
    }

    /// Closes the ring as a sender that leaves does (the closed flag goes up).
    pub fn close(&mut self) {
        self.producer.close();
    }

    /// Lets go of the ring as a process that dies does: the closed flag
    /// stays down (a dying process runs no destructor; the kernel only
    /// closes its descriptors).
    pub fn die(&mut self) {
        if self.producer.close() {
            self.scribbler.store_u32(ring_layout::CLOSED, 0);
        }
    }

    /// Whether the producer is still open.
    pub fn is_open(&self) -> bool {
        self.producer.is_open()
    }
}

/// What a hello handing over a ring hands over after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFd {
    /// Nothing (a ring without an eventfd).
    None,
    /// The sender's eventfd, as an honest sender does.
    Bell,
    /// Something else.
    Spec(FdSpec),
}

/// What the receiving end made of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOutcome {
    /// Taken: the link knows its peer (and holds the ring).
    Taken,
    /// Refused, and the link cut.
    Cut,
    /// Anything else (a bug, for a hello).
    Other,
}

/// Offers `ring` in a hello (then `second`) on a fresh link and reads it
/// with the real receiving end; then, if it was taken, reads once more
/// (the first look at the ring). What became of the hello, and whether
/// that read cut the link.
pub fn offer_ring(ring: &HostileRing, second: SecondFd) -> io::Result<(HelloOutcome, bool)> {
    let (tx, rx) = link_sockets()?;
    let extra = match &second {
        SecondFd::Spec(spec) => Some(Attachment::make(spec)?),
        _ => None,
    };
    let mut fds = vec![ring.fd()];
    match (&second, &extra) {
        (SecondFd::Bell, _) => fds.push(ring.producer.bell()),
        (_, Some(a)) => fds.push(a.fd()),
        _ => {}
    }
    let hello = ring_hello(0x0ffe_4ed0, fds.len() as u8);
    send_frame(tx.as_fd(), &hello, &fds)?;
    drop(extra);
    let mut link = LinkEnd::new(rx);
    let outcome = match link.read() {
        Received::Nothing if link.knows_peer() => HelloOutcome::Taken,
        Received::Closed if link.bad_frames() >= MAX_BAD_FRAMES => HelloOutcome::Cut,
        _ => HelloOutcome::Other,
    };
    if outcome != HelloOutcome::Taken {
        return Ok((outcome, false));
    }
    let cut = matches!(link.read(), Received::Closed) && link.bad_frames() >= MAX_BAD_FRAMES;
    Ok((outcome, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rings_in_a_hello_get_the_link_cut() {
        let good = HostileRing::new(4096, 0).expect("ring");
        assert_eq!(
            offer_ring(&good, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Taken, false)
        );
        assert_eq!(
            offer_ring(&good, SecondFd::None).expect("offer"),
            (HelloOutcome::Taken, false)
        );
        assert_eq!(
            offer_ring(&good, SecondFd::Spec(FdSpec::Pipe)).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        let mut magic = HostileRing::new(4096, 0).expect("ring");
        magic.scribble().write(0, b"notaring");
        assert_eq!(
            offer_ring(&magic, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        let misaligned = HostileRing::new(4096, 0).expect("ring");
        misaligned.scribbler.store_u64(ring_layout::HEAD, 12);
        assert_eq!(
            offer_ring(&misaligned, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        // Taken (the tail is not looked at yet), cut at the first look.
        let far = HostileRing::new(4096, 0).expect("ring");
        far.scribbler.store_u64(ring_layout::TAIL, 4096 + 8);
        assert_eq!(
            offer_ring(&far, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Taken, true)
        );
    }
}
