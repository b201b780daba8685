//! The sending side of a ring, for a test that plays a hostile sender: the
//! ring's layout, a mapping to scribble on it, and the library's own
//! producer with the doorbell a data link hands over.

use crate::sys::memfd::Mapping;
use crate::sys::poll::Doorbell;
use crate::sys::ring::{self, Producer, PushError};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

/// Byte offsets in a ring's file (the table in busbar's `sys/ring/mod.rs`).
pub mod ring_layout {
    /// Producer index (`tail`): bytes ever published, 8 bytes.
    pub const TAIL: usize = 128;
    /// Consumer index (`head`): bytes ever released, 8 bytes.
    pub const HEAD: usize = 256;
    /// Futex word: 1 while the consumer sleeps or is about to, 4 bytes.
    pub const SLEEPING: usize = 384;
    /// 1 once the producer closed the ring, 4 bytes.
    pub const CLOSED: usize = 388;
    /// Futex word: 1 while the producer waits for room, 4 bytes.
    pub const ROOM: usize = 392;
    /// 1 once the consumer let go of the ring, 4 bytes.
    pub const GONE: usize = 396;
    /// 1 while the consumer promises a heavy barrier (membarrier) before it
    /// sleeps, 4 bytes: the producer then publishes with a light fence.
    pub const SLEEP_BARRIER: usize = 400;
    /// 1 while the producer promises one before it waits for room, 4 bytes.
    pub const ROOM_BARRIER: usize = 404;
    /// Where the data area starts (the ring's header length).
    pub const DATA: usize = crate::sys::ring::HEADER_LEN;
    /// Bytes of a record header, and the alignment of every record and index.
    pub const RECORD: usize = 8;
    /// Record kind of a frame.
    pub const KIND_FRAME: u32 = crate::sys::ring::KIND_FRAME;
    /// Record kind of the padding up to the end of the data area.
    pub const KIND_PAD: u32 = crate::sys::ring::KIND_PAD;
    /// The smallest data area a ring may have.
    pub const MIN_CAPACITY: usize = crate::sys::ring::MIN_CAPACITY;
    /// The smallest data area an honest sender gives a data link.
    pub const MIN_LINK_CAPACITY: usize = crate::sys::ring::MIN_LINK_CAPACITY;

    /// The record header word for a record of `kind` and `len` bytes.
    pub fn record(kind: u32, len: u32) -> u64 {
        (u64::from(kind) << 32) | u64::from(len)
    }

    /// `len` rounded up to the record alignment.
    pub fn padded(len: usize) -> usize {
        len.div_ceil(RECORD) * RECORD
    }
}

/// Creates a ring's file (a sealed memfd) with a data area of `capacity`
/// bytes (a power of two, at least [`ring_layout::MIN_CAPACITY`]), both
/// indices at 0, as a sender does.
pub fn create_ring(capacity: usize) -> io::Result<OwnedFd> {
    ring::create(capacity)
}

/// Reads and writes any byte or word of a ring's file through a mapping of
/// its own, at any time: the hands of a hostile sender (which owns the
/// memory of its link). Offsets are into the whole file ([`ring_layout`]);
/// anything outside it is refused, never a panic.
#[derive(Debug)]
pub struct Scribbler {
    map: Mapping,
}

impl Scribbler {
    /// Maps the ring in `fd` (a memfd sealed against shrinking) for scribbling.
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Scribbler> {
        Ok(Scribbler {
            map: Mapping::whole(fd)?,
        })
    }

    /// Bytes in the file: the ring's header and its data area.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty (never, for a ring).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The 8-byte word at `at` (8-aligned), if inside the file.
    pub fn load_u64(&self, at: usize) -> Option<u64> {
        Some(self.map.atomic_u64(at)?.load(Ordering::SeqCst))
    }

    /// Stores the 8-byte word at `at` (8-aligned); whether it was inside the file.
    pub fn store_u64(&self, at: usize, value: u64) -> bool {
        self.map
            .atomic_u64(at)
            .map(|w| w.store(value, Ordering::SeqCst))
            .is_some()
    }

    /// The 4-byte word at `at` (4-aligned), if inside the file.
    pub fn load_u32(&self, at: usize) -> Option<u32> {
        Some(self.map.atomic_u32(at)?.load(Ordering::SeqCst))
    }

    /// Stores the 4-byte word at `at` (4-aligned); whether it was inside the file.
    pub fn store_u32(&self, at: usize, value: u32) -> bool {
        self.map
            .atomic_u32(at)
            .map(|w| w.store(value, Ordering::SeqCst))
            .is_some()
    }

    /// Writes `bytes` at `at`, cut at the end of the file; how many were written.
    pub fn write(&mut self, at: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.map.len().saturating_sub(at));
        match self.map.slice_mut(at, n) {
            Some(dst) => {
                dst.copy_from_slice(&bytes[..n]);
                n
            }
            None => 0,
        }
    }

    /// Copies out up to `len` bytes at `at` (fewer at the end of the file).
    pub fn read(&mut self, at: usize, len: usize) -> Vec<u8> {
        let n = len.min(self.map.len().saturating_sub(at));
        self.map
            .slice_mut(at, n)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }
}

/// What became of a frame an honest sender pushed into its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Published. `woke`: the receiver had gone to sleep, and its doorbell was rung.
    Sent {
        /// Whether the receiver was asleep.
        woke: bool,
    },
    /// No room now (perhaps only the padding up to the end of the data area went in).
    Full,
    /// The frame can never fit this ring: an honest sender sends it through the socket.
    TooLarge,
    /// The producer found the ring broken (the consumer index moved backwards,
    /// past the producer's, or off alignment): an honest sender gives the link up.
    Corrupt(&'static str),
    /// The receiver let go of the ring: an honest sender gives the link up.
    Gone,
    /// The producer is closed (or dead).
    Closed,
}

/// The library's writing end of a ring, opened with the external wake-up a
/// data link uses, and the doorbell (an eventfd) it rings when the
/// receiver sleeps. Dropping it (or [`RingProducer::close`]) closes the
/// ring as a sender that leaves does: the closed flag goes up.
#[derive(Debug)]
pub struct RingProducer {
    producer: Option<Producer>,
    bell: Doorbell,
}

impl RingProducer {
    /// Opens the writing end of the ring in `ring` (made by [`create_ring`]).
    pub fn open(ring: BorrowedFd<'_>) -> io::Result<RingProducer> {
        let mut producer = Producer::open(ring)?;
        producer.set_external_wake();
        Ok(RingProducer {
            producer: Some(producer),
            bell: Doorbell::new()?,
        })
    }

    /// Pushes one frame as `OutLink::send` does when it may not wait: room
    /// reserved, filled in place, committed, and the receiver's doorbell
    /// rung when it slept (also when the ring was full, but padding
    /// published on the way found it asleep). Refuses (`Gone`) when the
    /// receiver let go of the ring, as `ring` (a mapping of it) says.
    pub fn push(&mut self, ring: &Scribbler, frame: &[u8]) -> Pushed {
        if ring.load_u32(ring_layout::GONE).unwrap_or(0) != 0 {
            return Pushed::Gone;
        }
        let Some(producer) = self.producer.as_mut() else {
            return Pushed::Closed;
        };
        match producer.reserve(frame.len()) {
            Ok(mut grant) => {
                let buf = grant.bytes_mut();
                if buf.len() != frame.len() {
                    return Pushed::Corrupt("the ring granted room of the wrong size");
                }
                buf.copy_from_slice(frame);
                let woke = grant.commit();
                if woke {
                    self.bell.ring();
                }
                Pushed::Sent { woke }
            }
            Err(PushError::Full) => {
                // Padding published on the way may have found the receiver asleep.
                if producer.take_owed_wake() {
                    self.bell.ring();
                }
                Pushed::Full
            }
            Err(PushError::TooLarge { .. }) => Pushed::TooLarge,
            Err(PushError::Corrupt(why)) => Pushed::Corrupt(why),
        }
    }

    /// Reserves room for `frame`, writes its first `written` bytes, and
    /// never commits it (a sender that stops, or dies, half way through a
    /// frame). Whether room was reserved. A wake-up owed for padding
    /// published on the way is not paid (the next push pays it).
    pub fn abandon(&mut self, frame: &[u8], written: usize) -> bool {
        let Some(producer) = self.producer.as_mut() else {
            return false;
        };
        match producer.reserve(frame.len()) {
            Ok(mut grant) => {
                let n = written.min(frame.len());
                if let Some(dst) = grant.bytes_mut().get_mut(..n) {
                    dst.copy_from_slice(&frame[..n]);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The doorbell's eventfd, to hand over in a hello.
    pub fn bell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Rings the doorbell, as a sender does when its receiver sleeps.
    pub fn ring_bell(&self) {
        self.bell.ring();
    }

    /// Closes the writing end (the closed flag goes up); whether it was open.
    pub fn close(&mut self) -> bool {
        self.producer.take().is_some()
    }

    /// Whether the writing end is still open.
    pub fn is_open(&self) -> bool {
        self.producer.is_some()
    }
}
