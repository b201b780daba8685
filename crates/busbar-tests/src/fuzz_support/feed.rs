//! [`feed_link`]: hostile frames, with whatever descriptors they claim or
//! do not claim, written into one end of a seqpacket socket pair, and the
//! real receiving path run on the other end (`busbar::testing::LinkEnd`:
//! the link's `read`, which checks every frame against what the socket
//! delivered, then the receiver's own `decode` for a `BytesMessage`, then
//! the same bad-frame accounting the receiver does). It reports what
//! became of each frame, so a test can compare that with what it knows
//! about the frame.

use super::attach::{link_sockets, send_raw, RawInput, Unsent};
use busbar::testing::{LinkEnd, Received};
use busbar::{BytesMessage, MemoryRegion, Message, Selector};
use std::io;
use std::os::fd::AsFd;

/// A message the receiving path delivered.
#[derive(Debug)]
pub struct Delivered {
    /// Its selector.
    pub selector: Selector,
    /// Its payload.
    pub payload: BytesMessage,
    /// How many objects came with it (closed since).
    pub objects: usize,
    /// The sizes of the regions that came with it (dropped since).
    pub regions: Vec<usize>,
    /// Whether it is a request (its sender waits for an answer).
    pub request: bool,
}

impl Delivered {
    /// What the application got: `m`, its attachments counted (and let go).
    pub(crate) fn of(m: Message<BytesMessage>) -> Delivered {
        Delivered {
            objects: m.objects.len(),
            regions: m.memory_regions.iter().map(MemoryRegion::size).collect(),
            request: m.is_request(),
            selector: m.selector,
            payload: m.payload,
        }
    }
}

/// What became of one frame.
#[derive(Debug)]
pub enum Outcome {
    /// A hello: the link now knows its peer.
    Hello,
    /// Delivered to the application.
    Delivered(Delivered),
    /// Refused as malformed (by the link's checks or by decoding) and counted against the link.
    Dropped,
    /// Well formed but of a type a `BytesMessage` receiver does not know: skipped.
    Skipped,
    /// A `BytesMessage` whose payload did not decode: `recv` reports `RecvError::Decode`.
    DecodeError,
    /// The read saw the link end without a malformed frame (an empty frame reads as a hang-up).
    Closed,
    /// Not written: the kernel refused it, or the link was closed before it.
    NotSent(String),
    /// Written, but nothing came out of the other end: never expected.
    Lost,
}

/// What [`feed_link`] saw.
#[derive(Debug, Default)]
pub struct FeedReport {
    /// One per input frame, in order.
    pub outcomes: Vec<Outcome>,
    /// The receiver cut the link for sending too many malformed frames.
    pub cut: bool,
    /// The link ended (cut, or read as hung up).
    pub closed: bool,
}

impl FeedReport {
    /// Frames delivered.
    pub fn delivered(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Delivered(_)))
    }

    /// Frames dropped as malformed.
    pub fn dropped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Dropped))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// Writes `frames` into a fresh data link, one at a time, and runs the
/// receiving path on each: the link's `read`, then the receiver's `decode`
/// for a [`BytesMessage`], counting decode-time malformations against the
/// link as `EndpointReceiver` does. Everything it opened is closed when it
/// returns.
///
/// Fails only when it cannot set up (no socket pair, or a descriptor to
/// attach could not be made).
pub fn feed_link(frames: Vec<RawInput>) -> io::Result<FeedReport> {
    let (tx, rx) = link_sockets()?;
    let mut link = Some(LinkEnd::new(rx));
    let mut report = FeedReport::default();
    for input in frames {
        let Some(l) = link.as_mut() else {
            report
                .outcomes
                .push(Outcome::NotSent("the link is closed".into()));
            continue;
        };
        match send_raw(tx.as_fd(), &input) {
            Ok(()) => {}
            Err(Unsent::Refused(e)) => {
                report.outcomes.push(Outcome::NotSent(e.to_string()));
                continue;
            }
            Err(Unsent::Setup(e)) => return Err(e),
        }
        let (outcome, end) = receive_one(l);
        match end {
            End::Open => {}
            End::Cut => {
                report.cut = true;
                report.closed = true;
                link = None;
            }
            End::HungUp => {
                report.closed = true;
                link = None;
            }
        }
        report.outcomes.push(outcome);
    }
    Ok(report)
}

enum End {
    Open,
    Cut,
    HungUp,
}

/// Reads and decodes the one frame just written.
fn receive_one(link: &mut LinkEnd) -> (Outcome, End) {
    let bad_before = link.bad_frames();
    match link.read() {
        Received::Message { message, .. } => {
            (Outcome::Delivered(Delivered::of(message)), End::Open)
        }
        Received::Skipped => (Outcome::Skipped, End::Open),
        Received::Malformed { cut } => {
            let end = if cut { End::Cut } else { End::Open };
            (Outcome::Dropped, end)
        }
        Received::DecodeError => (Outcome::DecodeError, End::Open),
        Received::Nothing if link.bad_frames() > bad_before => (Outcome::Dropped, End::Open),
        Received::Nothing => (Outcome::Hello, End::Open),
        Received::Closed if link.bad_frames() > bad_before => (Outcome::Dropped, End::Cut),
        Received::Closed => (Outcome::Closed, End::HungUp),
        Received::Empty => (Outcome::Lost, End::Open),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_support::{
        decode_control, decode_hello, hello_frame, honest_frame, join_frame, seal, FdSpec, Honest,
        MAX_BAD_FRAMES,
    };

    fn honest(data: &[u8], spill: bool, objects: usize, regions: Vec<usize>) -> RawInput {
        honest_frame(&Honest {
            selector: Selector::unicast("a"),
            message: BytesMessage::new(7, data),
            seq: 0,
            objects,
            regions,
            spill,
        })
        .expect("fits")
    }

    #[test]
    fn small_frames_read_back_as_the_library_reads_them() {
        assert_eq!(decode_hello(&hello_frame(0x1234)), Some(0x1234));
        let join = join_frame(busbar::PROTOCOL_VERSION, "t", 5, &["a", "b"]);
        let text = decode_control(&join).expect("a control frame");
        assert!(
            text.starts_with("Join {") && text.contains("id: 5"),
            "{text}"
        );
    }

    #[test]
    fn honest_frames_are_delivered_and_lies_dropped() {
        let hello = RawInput {
            bytes: hello_frame(1),
            fds: vec![],
        };
        let good = honest(b"hi", false, 2, vec![100]);
        let spilled = honest(b"big", true, 0, vec![]);
        let mut unsealed_region = honest(b"x", false, 0, vec![1]);
        unsealed_region.fds = vec![FdSpec::Memfd {
            len: 4096,
            contents: b"busbarR1".to_vec(),
            seals: 0,
        }];
        let report = feed_link(vec![hello, good, spilled, unsealed_region]).expect("feed");
        assert!(matches!(report.outcomes[0], Outcome::Hello));
        match &report.outcomes[1] {
            Outcome::Delivered(d) => {
                assert_eq!(d.payload, BytesMessage::new(7, *b"hi"));
                assert_eq!((d.objects, d.regions.clone()), (2, vec![100]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&report.outcomes[2], Outcome::Delivered(d) if d.payload.data == b"big"));
        assert!(matches!(report.outcomes[3], Outcome::Dropped));
        assert!(!report.closed);
    }

    #[test]
    fn data_before_hello_is_dropped_and_the_link_cut() {
        let frames = (0..MAX_BAD_FRAMES + 2)
            .map(|_| honest(b"early", false, 0, vec![]))
            .collect();
        let report = feed_link(frames).expect("feed");
        assert!(report.cut);
        assert_eq!(report.dropped(), MAX_BAD_FRAMES as usize);
        assert!(matches!(report.outcomes.last(), Some(Outcome::NotSent(_))));
    }

    #[test]
    fn decode_time_lies_count_towards_the_cut() {
        let mut frames = vec![RawInput {
            bytes: hello_frame(1),
            fds: vec![],
        }];
        for _ in 0..MAX_BAD_FRAMES {
            let mut f = honest(b"lying", true, 0, vec![]);
            // The payload memfd is shorter than the header says.
            f.fds = vec![FdSpec::Memfd {
                len: 1,
                contents: vec![],
                seals: seal::SHRINK | seal::GROW | seal::WRITE,
            }];
            frames.push(f);
        }
        let report = feed_link(frames).expect("feed");
        assert!(report.cut, "{report:?}");
        assert_eq!(report.dropped(), MAX_BAD_FRAMES as usize);
    }
}
