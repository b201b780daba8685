//! busbar: an inter-process message bus for Linux.
//!
//! Processes [`join`] a named bus with a [`Label`], [`send`](EndpointSender::send)
//! typed messages that a [`Selector`] routes by label (unicast or multicast,
//! with `&`, `|` and `!`), and [`recv`](EndpointReceiver::recv) them. A
//! message can carry file descriptors ([`Object`]) and shared memory
//! ([`MemoryRegion`]). There is no daemon: the first endpoint to join hosts
//! the bus controller, and another takes over if it dies.
//!
//! ```
//! use busbar::{label, join, Message, Options, Selector};
//! use std::time::Duration;
//!
//! # let bus = format!("doc.crate.{}", std::process::id());
//! // Two endpoints on one bus (normally in two processes).
//! let (earth, _earth_rx) = join::<String, String>(Options::new(&bus, label!("earth"), "token"), None)?;
//! let (_moon, mut moon_rx) = join::<String, String>(Options::new(&bus, label!("moon", "satellite"), "token"), None)?;
//!
//! // A label expression picks the receivers; wait up to 1 s for one to be there.
//! let to_moon = Selector::unicast("satellite & !earth".parse::<busbar::LabelOp>()?).ttl(Duration::from_secs(1));
//! earth.send(Message::new(to_moon, "hello, moon".to_string()))?;
//!
//! let m = moon_rx.recv(Some(Duration::from_secs(5)))?;
//! assert_eq!(m.payload, "hello, moon");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Zero-copy
//!
//! Large messages need not be copied at all: [`EndpointSender::loan`]
//! lends a buffer in shared memory to fill in place and
//! [`send_loan`](EndpointSender::send_loan) hands the same memory to every
//! receiver; [`EndpointReceiver::recv_with`] lends each message to a
//! closure where it lies (a link's ring, or the sender's region) as a
//! [`Borrowed`]: its bytes are read in place, and `&str` or a borrowing
//! serde type is checked and read from one private copy where the sender
//! could still change the bytes (a plain `recv` copies a ring frame once,
//! too, before decoding it).
//!
//! # Who sent it, and answering it
//!
//! Every received [`Message`] says who sent it ([`Message::source`], from
//! the link it came on, not from the payload), and that endpoint is in the
//! receiver's directory by then: answering it by label or with
//! [`Selector::endpoint`] works at once. [`EndpointSender::request`] sends
//! a message and waits for the answer to it, which the other side gives
//! with [`EndpointSender::reply`]:
//!
//! ```
//! use busbar::{label, join, Message, Options, Selector};
//! use std::time::Duration;
//!
//! # let bus = format!("doc.crate.request.{}", std::process::id());
//! let (clock, mut clock_rx) = join::<u64, u64>(Options::new(&bus, label!("clock"), "token"), None)?;
//! std::thread::spawn(move || {
//!     while let Ok(question) = clock_rx.recv(None) {
//!         let _ = clock.reply(&question, 1_700_000_000);
//!     }
//! });
//! let (app, _app_rx) = join::<u64, u64>(Options::new(&bus, label!("app"), "token"), None)?;
//! let now = app.request::<u64>(Message::new(Selector::unicast("clock"), 0), Duration::from_secs(5))?;
//! assert_eq!(now.payload, 1_700_000_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! The controller (module `controller`) only keeps the directory of
//! endpoints and pushes it to everyone; messages go straight from the sender
//! to each receiver over a data link (module `link`): a shared-memory ring
//! for frames without descriptors, read by a receiver that spins
//! briefly before it sleeps, and a unix seqpacket socket for descriptors
//! (`SCM_RIGHTS`). Payloads larger than 64 KiB travel in a shared-memory
//! region the receiver maps. The wire format is in module `frame`; every
//! raw syscall is in module `sys`. See `docs/ARCHITECTURE.md` in the repository.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

extern crate self as busbar;

#[cfg(feature = "tokio")]
mod asyncio;
mod attach;
mod bytes;
pub mod channel;
mod controller;
mod departed;
mod endpoint;
mod error;
mod frame;
mod label;
mod link;
mod message;
mod namespace;
mod object;
mod options;
pub mod payload;
mod region;
pub mod ring;
mod selector;
mod sync;
#[allow(unsafe_code)] // The platform layer is the one place allowed `unsafe`.
mod sys;
// What the test suite (`busbar-tests`) reaches of the private parts to play
// a hostile peer; the fuzz support itself lives in that crate.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod testing;

#[cfg(feature = "tokio")]
pub use asyncio::{AsyncReceiver, RecvFuture, RecvStream};
pub use busbar_derive::{MessageBox, TypeUuid};
pub use bytes::Bytes;
pub use endpoint::{
    join, Borrowed, EndpointId, EndpointInfo, EndpointReceiver, EndpointSender, EndpointStats,
    LinkStats, Loan, PendingRequest, RecvWaker, ReplyHandle,
};
pub use error::{JoinError, RecvError, RequestError, SendError};
pub use frame::PROTOCOL_VERSION;
#[doc(hidden)]
pub use label::item as __label_item;
pub use label::Label;
pub use message::Message;
pub use object::Object;
pub use options::{Access, Backpressure, Limits, Namespace, Options};
pub use payload::{BytesMessage, CodecError, MessageBox, TypeUuid, TypeUuidBytes};
pub use region::{MemoryRegion, MemoryRegistry, RegionError, RegistryStats};
pub use selector::{LabelOp, ParseError, Selector, SelectorMode, MAX_DEPTH, MAX_EXPR_LEN};
