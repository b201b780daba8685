//! What `busbar-chan-peer` and `tests/channel.rs` share: the commands a
//! test sends its peer process over a channel.

use busbar::channel::{BytesReceiver, BytesSender, Receiver, Sender, SharedBytes};
use serde::{Deserialize, Serialize};

/// What a `serve` peer does when told.
#[derive(Debug, Serialize, Deserialize)]
pub enum Cmd {
    /// Sends the string back on the sender.
    Echo(String, Sender<String>),
    /// Sends the data and shared bytes back as they came.
    EchoAll(
        Vec<u8>,
        Vec<SharedBytes>,
        Sender<(Vec<u8>, Vec<SharedBytes>)>,
    ),
    /// Sends `0..count` on the sender, then drops it.
    Count(Sender<u64>, u64),
    /// Sends `count` messages of `size` bytes (message `n` is filled with
    /// `n as u8`), then drops the sender.
    Flood(BytesSender, u32, u32),
    /// Receives from the receiver until every sender is gone, forwarding
    /// each message to the sender (a router), then drops both.
    Forward(BytesReceiver, BytesSender),
    /// Keeps the receiver and never reads it (a receiver that stopped).
    Hold(Receiver<Vec<u8>>),
    /// Makes `count` channels and sends each one's sender on the first
    /// sender, and each one's receiver (with the number `n` queued in it)
    /// on the second; keeps nothing.
    MakeChannels(u32, Sender<Sender<u64>>, Sender<Receiver<u64>>),
    /// Sends the sum of the shared bytes back.
    Sum(SharedBytes, Sender<u64>),
    /// Exits at once (as a crash would, but with status 0).
    Exit,
}

/// The byte stream a `Flood` sends: message `n` of `size` bytes.
pub fn flood_message(n: u32, size: u32) -> Vec<u8> {
    vec![n as u8; size as usize]
}

/// A bus payload carrying a channel's sender (`tests/channel.rs`,
/// `channel_ends_travel_in_bus_messages`).
#[derive(Debug, Serialize, Deserialize, busbar::TypeUuid)]
#[uuid = "0c3f7a9e-5b21-4d8e-a6f0-93e1c2d4b5a7"]
pub struct Carry {
    /// Where the peer answers.
    pub reply: Sender<String>,
}
