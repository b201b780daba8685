//! Channels between processes: ipc-channel's model on busbar's data links.
//!
//! [`channel`] makes a typed channel, [`bytes_channel`] one of raw bytes.
//! Both ends work in one process, and either end can move to another
//! process inside a message: put it in the payload of another channel's
//! message or of a bus message ([`EndpointSender::send`](crate::EndpointSender::send)),
//! and the other side gets a working end (it travels as an attachment,
//! `SCM_RIGHTS`, never as a number the receiver must trust). The first
//! channel between two processes that share nothing yet is made with a
//! [`OneShotServer`] and its name.
//!
//! ```
//! let (tx, rx) = busbar::channel::channel::<String>()?;
//! tx.send("hello".to_string())?;
//! assert_eq!(rx.recv()?, "hello");
//! // A channel travels inside another channel's message.
//! let (tx2, rx2) = busbar::channel::channel::<u32>()?;
//! let (carrier, carried) = busbar::channel::channel::<busbar::channel::Sender<u32>>()?;
//! carrier.send(tx2)?;
//! carried.recv()?.send(7)?;
//! assert_eq!(rx2.recv()?, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! A channel is a data link without a controller. Its receiver holds one
//! end of a seqpacket socket pair, the *door*; every [`Sender`] holds (a
//! duplicate of) the other end. On its first message a sender makes its
//! own data link (a seqpacket socket pair, a shared-memory ring in a sealed
//! memfd, an eventfd), introduces it on its socket as a bus link does, and
//! passes the receiving socket through the door. From then on its
//! messages go into the ring (no system call while the receiver is
//! awake), or, with descriptors or over 64 KiB, whole on the socket (a
//! large payload in a pooled shared-memory region the receiver maps). The
//! receiver spins on its rings for a while, then sleeps in `epoll_wait`
//! on the door, the sockets and the eventfds, exactly as an
//! [`EndpointReceiver`](crate::EndpointReceiver) does.
//!
//! - Bounded: a link holds [`CAPACITY`] bytes in its ring (plus what its
//!   socket buffer takes of frames with descriptors). [`Sender::send`]
//!   waits for room under the sender's [`Backpressure`](crate::Backpressure)
//!   (block by default), [`Sender::send_timeout`] for a while,
//!   [`Sender::try_send`] not at all ([`SendError::Full`](crate::SendError::Full)).
//! - Disconnected both ways: once every sender is gone (dropped, or its
//!   process dead) `recv` returns [`RecvError::Disconnected`](crate::RecvError::Disconnected)
//!   after the messages already sent; once the receiver is gone `send`
//!   returns [`SendError::Disconnected`](crate::SendError::Disconnected).
//! - Order: the messages of one sender (and of its clones in the same
//!   process, which share its link) arrive in the order sent. Senders in
//!   different processes are not ordered with respect to each other.
//! - Descriptors: a sender costs its process the door and, once it sent,
//!   its link's socket and eventfd; a receiver its door, an epoll
//!   descriptor and three per sending link (socket, eventfd, ring memfd).
//!   All are closed when the end is dropped.

mod attachments;
mod receiver;
mod sender;
mod server;
mod set;

pub use attachments::SharedBytes;
pub use receiver::{BytesReceiver, Receiver};
pub use sender::{BytesSender, OpaqueSender, Sender};
pub use server::OneShotServer;
pub use set::{ReceiverSet, Selectable, Selected, Selection};

use std::io;

/// Bytes a channel's link holds in its shared-memory ring before a sender
/// waits for room (the bus's default [`Limits::link_buffer`](crate::Limits::link_buffer)).
pub const CAPACITY: usize = 256 << 10;

/// The payload type id of a typed channel's frames (postcard).
const TYPED: crate::TypeUuidBytes = *b"busbar.channel.T";

/// The payload type id of a byte channel's frames (the bytes themselves).
const BYTES: crate::TypeUuidBytes = *b"busbar.channel.B";

/// A typed channel: a [`Sender`] and its [`Receiver`].
///
/// `T` is any serde type. Channel ends, [`SharedBytes`] and
/// [`Object`](crate::Object)-free types alike travel in it; a channel end
/// inside `T` moves to whoever receives the message.
///
/// ```
/// let (tx, rx) = busbar::channel::channel::<(u32, String)>()?;
/// let t = std::thread::spawn(move || tx.send((1, "one".into())));
/// assert_eq!(rx.recv()?, (1, "one".to_string()));
/// t.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel<T>() -> io::Result<(Sender<T>, Receiver<T>)> {
    let (door_tx, door_rx) = door()?;
    Ok((Sender::from_door(door_tx)?, Receiver::from_door(door_rx)?))
}

/// A channel of bytes: a [`BytesSender`] and its [`BytesReceiver`]. No
/// encoding at all: the bytes sent are the bytes received, and
/// [`BytesReceiver::recv_with`] reads them where they lie.
///
/// ```
/// let (tx, rx) = busbar::channel::bytes_channel()?;
/// tx.send(b"raw bytes")?;
/// assert_eq!(rx.recv()?, b"raw bytes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bytes_channel() -> io::Result<(BytesSender, BytesReceiver)> {
    let (door_tx, door_rx) = door()?;
    Ok((
        BytesSender::from_door(door_tx)?,
        BytesReceiver::from_door(door_rx)?,
    ))
}

/// A new door: the socket pair new links pass through.
fn door() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    crate::sys::socket::socketpair()
}
