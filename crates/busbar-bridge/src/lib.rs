//! busbar-bridge: joins busbar buses on different hosts through Zenoh.
//!
//! A bridge process joins its local bus and a Zenoh session. Endpoints of
//! the other hosts appear on the local bus as endpoints of their own, with
//! their labels plus `@host:<name>` (and `@remote:<id>`, their id at home),
//! so unicast, multicast, label expressions, `Selector::endpoint`, ttl and
//! request/response reach them with no change to the sender's code. What
//! leaves a host is opt-in: the export expression (default: nothing) says
//! which local endpoints the other hosts see and reach.
//!
//! ```no_run
//! // Host "a": export the camera, listen for the other bridges.
//! let config = busbar_bridge::Config::from_toml(r#"
//! bus = "com.example.robot"
//! token = "secret"
//! host = "a"
//! export = "camera"
//! listen = ["tcp/0.0.0.0:7447"]
//! "#)?;
//! let bridge = busbar_bridge::Bridge::start(config)?;
//! // On host "b", a bridge with `connect = ["tcp/a.example:7447"]`: its bus
//! // now lists an endpoint labelled `camera @host:a`, and
//! // `Selector::unicast("camera")` there reaches the camera here.
//! # drop(bridge);
//! # Ok::<(), busbar_bridge::BridgeError>(())
//! ```
//!
//! # How it works
//!
//! - **Proxies.** For each endpoint another host exports, the bridge joins
//!   its local bus once more, as a *proxy* with the remote label plus
//!   `@host:<name>` and `@remote:<id>`. Whatever a local sender sends to a
//!   proxy (by label, multicast, `Selector::endpoint`, as a request), the
//!   proxy's thread reads and publishes to the bridge of that host, which
//!   hands it to the endpoint through the proxy of the *sender* on its own
//!   bus: so `Message::source` there is an endpoint that stands for the
//!   sender, and answering it (by label, by id, or with `reply`) comes back
//!   the same way. Each proxy is a full busbar endpoint (a background
//!   thread, a forwarding thread, a data link per peer it talks to).
//! - **Membership** travels as Zenoh liveliness tokens, one per exported
//!   endpoint (`busbar/ep/<zid>/<host>/<id>/<label>`): Zenoh withdraws them
//!   when their bridge leaves, dies (its TCP connections close) or its link
//!   goes silent for the lease ([`Config::lease`]), and the proxies go with
//!   them.
//! - **No loops.** Endpoints a bridge made (its own, labelled `@bridge`, and
//!   proxies, labelled `@host:…`) are never exported, and a frame from
//!   another host is delivered only to an exported (so genuinely local)
//!   endpoint: nothing crosses twice. Of several bridges on one bus only
//!   the one with the smallest endpoint id is active; the others stand by
//!   and take over when it goes.
//! - **Order.** Messages and requests from one sender to one receiver
//!   arrive in order: one proxy thread reads a sender's link in order, one
//!   Zenoh publisher per destination bridge keeps it, and the receiving
//!   bridge sends each frame on its local bus in the order it came, a
//!   request included ([`busbar::EndpointSender::request_start`]); only
//!   the wait for a request's answer is handed to a pool of threads.
//! - **Attachments.** Memory regions are *copied* into the frame and into
//!   a new region on the other side: they are no longer shared (writes on
//!   one host are not seen on the other). File descriptors cannot cross:
//!   such a message is refused ([`ForwardError::Descriptors`]), counted and
//!   logged; the sender's `send` has already succeeded locally. Answers
//!   with attachments cannot go back (a failed request).
//!
//! See `docs/ARCHITECTURE.md` ("Beyond one machine") for the wire format
//! and the choices behind it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bridge;
mod config;
mod raw;
pub mod wire;

pub use bridge::{
    bridge_made, Bridge, BridgeStats, ForwardError, BRIDGE_LABEL, HOST_PREFIX, REMOTE_PREFIX,
};
pub use config::{Config, Tls};
pub use raw::Raw;

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is wrong; `line` is its line in the file (0 when
    /// it did not come from one).
    #[error("{}{message}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
    Config {
        /// The line at fault (1-based), or 0.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Zenoh refused.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// The local bus refused.
    #[error("cannot join the local bus: {0}")]
    Join(#[from] busbar::JoinError),
    /// A thread could not start.
    #[error("i/o: {0}")]
    Io(String),
}
