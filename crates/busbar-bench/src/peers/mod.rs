//! The libraries under test, each behind the same small interface.
//!
//! A peer opens an [`End`] in one of four roles: `sink` (receives a
//! stream), `source` (sends one), `pong` (answers pings) and `ping`. The
//! harness in `roles.rs` drives every peer through the same loops.

use crate::proc::{Args, Ctl};
use crate::Res;
use std::time::Duration;

pub mod busbar;
#[allow(unsafe_code)] // calls into C: the one module of the bench that does
mod busbar_c;
mod busbar_chan;
mod busbar_chan_typed;
mod iceoryx2;
mod ipc_channel;
mod ipc_channel_typed;
mod ipmb;
mod typed;

/// One end of a link, in a child process.
pub trait End {
    /// Sends one message holding `data` (to every sink, for a multicast).
    fn send(&mut self, data: &[u8]) -> Res<()>;
    /// Waits up to `timeout` for one message and hands its bytes to `f`.
    /// `Ok(false)` when none came in time.
    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool>;
    /// The parent forwards a name a counterpart printed (`NAME x`).
    fn on_peer(&mut self, name: &str) -> Res<()> {
        Err(format!("unexpected peer name {name}").into())
    }
    /// Everybody is ready; the measured part starts.
    fn on_go(&mut self) -> Res<()> {
        Ok(())
    }
}

/// A library, or one way of using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// busbar `send` / `recv`: the payload is copied in and out.
    Busbar,
    /// busbar `loan` / `send_loan` / `recv_with`: the payload is written
    /// into lent shared memory and read where it lies.
    BusbarZc,
    /// busbar through its C API (`busbar_send_bytes`, `busbar_recv`), called from C.
    BusbarC,
    /// busbar's channels (`busbar::channel`), set up as ipc-channel's are.
    BusbarChan,
    /// busbar's typed channels (`busbar::channel::channel::<T>()`) with a
    /// serde message holding the bytes.
    BusbarChanTyped,
    /// ipc-channel's byte channel.
    IpcChannel,
    /// ipc-channel's typed channels (`ipc::channel::<T>()`), the same
    /// message as `BusbarChanTyped`.
    IpcChannelTyped,
    Ipmb,
    /// iceoryx2 publish-subscribe, the receiver polling in a loop.
    IoxSpin,
    /// iceoryx2 publish-subscribe plus an event service: the receiver sleeps.
    IoxEvent,
}

pub const ALL: [Peer; 10] = [
    Peer::Busbar,
    Peer::BusbarZc,
    Peer::BusbarC,
    Peer::BusbarChan,
    Peer::BusbarChanTyped,
    Peer::IpcChannel,
    Peer::IpcChannelTyped,
    Peer::Ipmb,
    Peer::IoxSpin,
    Peer::IoxEvent,
];

/// What `--only` accepts: each peer's [`group`](Peer::group).
pub const GROUPS: [&str; 9] = [
    "busbar",
    "busbar-zc",
    "busbar-c",
    "busbar-chan",
    "busbar-chan-typed",
    "ipc-channel",
    "ipc-channel-typed",
    "ipmb",
    "iceoryx2",
];

/// Whether `peer` is one of the two ways of using busbar.
pub fn is_busbar(peer: Peer) -> bool {
    matches!(peer, Peer::Busbar | Peer::BusbarZc)
}

/// What a scenario needs of a peer's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub receivers: usize,
    pub senders: usize,
    pub multicast: bool,
}

impl Peer {
    /// The name in tables, the chart and on the command line of a child.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Busbar => "busbar",
            Peer::BusbarZc => "busbar (zero-copy)",
            Peer::BusbarC => "busbar (C)",
            Peer::BusbarChan => "busbar channel",
            Peer::BusbarChanTyped => "busbar channel (typed)",
            Peer::IpcChannel => "ipc-channel",
            Peer::IpcChannelTyped => "ipc-channel (typed)",
            Peer::Ipmb => "ipmb",
            Peer::IoxSpin => "iceoryx2 (spin)",
            Peer::IoxEvent => "iceoryx2 (event)",
        }
    }

    /// A name without spaces, for child command lines.
    pub fn key(self) -> &'static str {
        match self {
            Peer::Busbar => "busbar",
            Peer::BusbarZc => "busbar-zc",
            Peer::BusbarC => "busbar-c",
            Peer::BusbarChan => "busbar-chan",
            Peer::BusbarChanTyped => "busbar-chan-typed",
            Peer::IpcChannel => "ipc-channel",
            Peer::IpcChannelTyped => "ipc-channel-typed",
            Peer::Ipmb => "ipmb",
            Peer::IoxSpin => "iceoryx2-spin",
            Peer::IoxEvent => "iceoryx2-event",
        }
    }

    /// The `--only` group it belongs to (see [`GROUPS`]).
    pub fn group(self) -> &'static str {
        match self {
            Peer::IoxSpin | Peer::IoxEvent => "iceoryx2",
            p => p.key(),
        }
    }

    pub fn from_key(key: &str) -> Option<Peer> {
        ALL.into_iter().find(|p| p.key() == key)
    }

    /// The library and version, for the report.
    pub fn library(self) -> &'static str {
        match self {
            Peer::Busbar | Peer::BusbarZc => "busbar 0.1.0 (this workspace)",
            Peer::BusbarC => "busbar 0.1.0 (this workspace), through libbusbar's C API",
            Peer::BusbarChan => "busbar 0.1.0 (this workspace), busbar::channel byte channels",
            Peer::BusbarChanTyped => {
                "busbar 0.1.0 (this workspace), busbar::channel typed channels"
            }
            Peer::IpcChannel => "ipc-channel 0.23.1",
            Peer::IpcChannelTyped => "ipc-channel 0.23.1, typed channels",
            Peer::Ipmb => "ipmb 0.8.5",
            Peer::IoxSpin | Peer::IoxEvent => "iceoryx2 0.10.0",
        }
    }

    /// Whether the peer's model can do this at all (`Err`: why not).
    pub fn supports(self, shape: Shape) -> Result<(), &'static str> {
        match self {
            Peer::IpcChannel | Peer::IpcChannelTyped | Peer::BusbarChan | Peer::BusbarChanTyped
                if shape.multicast =>
            {
                Err("no multicast: a channel has one receiver")
            }
            _ => Ok(()),
        }
    }

    /// Whether the senders must start (and join) before the receivers.
    /// ipmb 0.8.5 on Linux delivers only to or from its controller, which
    /// is the first endpoint to join; so the single side starts first.
    pub fn senders_first(self, shape: Shape) -> bool {
        self == Peer::Ipmb && shape.receivers > 1
    }

    /// Opens this peer's end for `role` in a child process.
    pub fn open(self, role: &str, args: &Args, ctl: &Ctl) -> Res<Box<dyn End>> {
        match self {
            Peer::Busbar => busbar::open(role, args, ctl, false),
            Peer::BusbarZc => busbar::open(role, args, ctl, true),
            Peer::BusbarC => busbar_c::open(role, args, ctl),
            Peer::BusbarChan => busbar_chan::open(role, args, ctl),
            Peer::BusbarChanTyped => busbar_chan_typed::open(role, args, ctl),
            Peer::IpcChannel => ipc_channel::open(role, args, ctl),
            Peer::IpcChannelTyped => ipc_channel_typed::open(role, args, ctl),
            Peer::Ipmb => ipmb::open(role, args, ctl),
            Peer::IoxSpin => iceoryx2::open(role, args, ctl, false),
            Peer::IoxEvent => iceoryx2::open(role, args, ctl, true),
        }
    }
}

/// Polls `ready` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Res<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        if std::time::Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
