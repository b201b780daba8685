//! What the property tests and the fuzz loop (`busbar-fuzz`) use to play a
//! hostile peer: frames that start honest and then lie, the descriptors
//! they carry, raw senders, and harnesses that put the library's real
//! receiving end behind them and report what became of every frame.
//!
//! - [`frames`]: the frames an honest sender writes ([`honest_frame`],
//!   [`data_frame`], [`hello_frame`], [`ring_hello`], [`join_frame`]),
//!   built with the library's own encoders, so a test starts from what a
//!   real peer sends and then lies.
//! - [`attach`]: the descriptors a frame carries ([`FdSpec`], made here
//!   with rustix) and [`send_raw`], which writes a [`RawInput`] to any
//!   seqpacket socket (a live endpoint's or controller's too).
//! - [`feed`]: [`feed_link`] writes frames into one end of a socket pair
//!   and runs the real receiving path on the other end, reporting an
//!   [`Outcome`] per frame.
//! - [`hostile_ring`]: [`HostileRing`], a sender that owns a ring, pushes
//!   frames into it as an honest sender does and scribbles on it as a
//!   hostile one may; [`offer_ring`] offers one in a hello.
//! - [`ring_link`]: [`RingLink`], a hostile ring in front of the real
//!   receiving end, reporting each read ([`RingRead`]) and the indices
//!   each side last published.
//!
//! The few things only the library can do (its wire encoders and checks,
//! the raw descriptor-carrying send, the ring's producer and layout, the
//! receiving end of a link) come from the hidden `busbar::testing` module
//! (feature `test-hooks`), re-exported here so that a test has one place
//! to import from.

pub mod attach;
pub mod feed;
pub mod frames;
pub mod hostile_ring;
pub mod ring_link;

pub use attach::{seal, send_raw, FdSpec, RawInput, Unsent};
pub use busbar::testing::{
    check_frame, decode_control, decode_hello, header_seq, parse_selector, ring_layout,
    FrameHeader, Pushed, Scribbler, FLAG_PAYLOAD_BY_REF, FLAG_PAYLOAD_IN_FD,
    FLAG_PAYLOAD_IN_REGION, FLAG_REPLY, FLAG_REQUEST, HEADER_LEN, KIND_CONTROL, KIND_DATA,
    KIND_HELLO, LINK_SLOTS, MAX_BAD_FRAMES, MAX_FDS_PER_FRAME, MAX_FRAME, MAX_SELECTOR, NO_SLOT,
    REGION_LOCATOR_LEN,
};
pub use feed::{feed_link, Delivered, FeedReport, Outcome};
pub use frames::{data_frame, hello_frame, honest_frame, join_frame, ring_hello, Honest};
pub use hostile_ring::{offer_ring, HelloOutcome, HostileRing, SecondFd};
pub use ring_link::{RingLink, RingRead};
