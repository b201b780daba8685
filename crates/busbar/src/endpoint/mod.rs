//! Endpoints: `join`, and the state an endpoint's sender, receiver and
//! background thread share.
//!
//! The path of a message: [`EndpointSender::send`] (`sender.rs`) encodes it
//! once into an [`OutFrame`](outgoing::OutFrame) (`outgoing.rs`), picks the
//! receivers from its copy of the directory (`directory.rs`), and writes the
//! frame to each receiver's data link (`crate::link`). The receiving
//! endpoint's [`EndpointReceiver::recv`] (`receiver.rs`) waits on all its
//! links at once (`inbox.rs`), checks the frame, and decodes it. The
//! background thread (`driver.rs`) accepts links, keeps the directory
//! current, holds messages waiting for their `ttl`, and runs the failover.

pub(crate) mod borrowed;
pub(crate) mod control;
mod directory;
mod driver;
mod inbox;
mod learn;
pub(crate) mod lent;
pub(crate) mod loan;
pub(crate) mod outgoing;
pub(crate) mod receiver;
mod request;
mod route;
mod selectors;
mod sender;
mod stats;

pub use borrowed::Borrowed;
pub use loan::Loan;
pub use receiver::{EndpointReceiver, RecvWaker};
pub use request::{PendingRequest, ReplyHandle};
pub(crate) use request::{ReplyPath, ReplyTo};
pub use sender::EndpointSender;
pub use stats::{EndpointStats, LinkStats};

use crate::controller::Seed;
use crate::error::JoinError;
use crate::link::OutLink;
use crate::namespace;
use crate::payload::MessageBox;
use crate::sys::poll::Doorbell;
use crate::sys::socket::{self, Bind};
use crate::{Label, Options};
use control::Attempt;
use directory::Directory;
use inbox::Inbox;
use route::Pending;
use stats::Counters;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An endpoint's id on its bus: random, fixed for the endpoint's life, kept
/// across failovers, never reused. Printed as 16 hex digits.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EndpointId(pub u64);

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One endpoint as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its id.
    pub id: EndpointId,
    /// Its label.
    pub label: Label,
    /// Its process, as the kernel reported it to the controller.
    pub pid: u32,
    /// Its user, as the kernel reported it to the controller.
    pub uid: u32,
    /// Whether it hosts the bus controller.
    pub is_controller: bool,
    /// Bytes other endpoints have written to it that it has not read yet,
    /// as they last reported (about once a second): how far behind it is.
    pub queued_bytes: u64,
    /// Messages other endpoints dropped for it because it was full
    /// ([`Backpressure::DropNewest`](crate::Backpressure::DropNewest)), as last reported.
    pub dropped: u64,
    /// Messages per second it wrote to receivers (a multicast counts once
    /// per receiver), as it last reported: over about a second, up to
    /// about two seconds old.
    pub sent_per_sec: u64,
    /// Messages per second its receiver handed to its application, as it
    /// last reported (like `sent_per_sec`).
    pub received_per_sec: u64,
}

/// What an endpoint's sender handles, receiver and background thread share.
pub(crate) struct Shared {
    pub id: u64,
    pub uid: u32,
    pub options: Options,
    /// What this endpoint's data links introduce it with.
    pub hello: crate::frame::Hello,
    pub directory: RwLock<Directory>,
    /// Outgoing data links, by receiver id.
    pub links: Mutex<HashMap<u64, Arc<OutLink>>>,
    /// Round-robin position for unicast.
    pub rr: AtomicUsize,
    /// Messages waiting for a matching endpoint (ttl).
    pub pending: Mutex<VecDeque<Pending>>,
    pub inbox: Inbox,
    /// Wakes the background thread.
    pub driver_bell: Doorbell,
    /// Set when the endpoint shuts down.
    pub closed: AtomicBool,
    pub counters: Counters,
    /// Regions lent for zero-copy sends, kept mapped for reuse.
    pub loans: Arc<loan::LoanPool>,
    /// The last selector sent, encoded.
    pub selectors: outgoing::SelectorCache,
    /// A payload buffer for the next `try_send_bytes`.
    pub spare: outgoing::Spare,
    /// The receivers the last selector routed to matched.
    pub routes: directory::RouteMemo,
    /// Requests waiting for their answers.
    pub requests: Arc<request::Requests>,
}

/// Owned by the sender and receiver handles; the endpoint shuts down when the last one goes.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shared.discard_pending();
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.driver_bell.ring();
        if let Some(t) = self.driver.take() {
            let _ = t.join();
        }
    }
}

/// Joins the bus `options.identifier`: finds its controller (or, with
/// `controller_affinity`, becomes it when there is none), registers, and
/// returns a sender of `T` and a receiver of `R`.
///
/// `timeout` bounds the whole join, one budget for finding the controller,
/// waiting for it to accept, and waiting for its answer (a busy or starved
/// controller is waited for, never given up on early); `None` waits as
/// long as it takes.
///
/// ```
/// use std::time::Duration;
/// # let bus = format!("doc.join.{}", std::process::id());
/// let options = busbar::Options::new(bus, busbar::label!("earth"), "token");
/// let (sender, mut receiver) = busbar::join::<String, String>(options, Some(Duration::from_secs(5)))?;
/// sender.send(busbar::Message::new(busbar::Selector::unicast("earth"), "hi".to_string()))?;
/// assert_eq!(receiver.recv(Some(Duration::from_secs(5)))?.payload, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn join<T: MessageBox, R: MessageBox>(
    mut options: Options,
    timeout: Option<Duration>,
) -> Result<(EndpointSender<T>, EndpointReceiver<R>), JoinError> {
    let ident = &options.identifier;
    if ident.is_empty() || ident.len() > Options::MAX_IDENTIFIER || ident.contains('\0') {
        return Err(JoinError::InvalidIdentifier(ident.clone()));
    }
    // The filesystem namespace: find, create or check the bus directory.
    namespace::prepare(&mut options)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    // Open our own data address first, so that peers can reach us as soon as they learn of us.
    let (id, listener) = loop {
        let id = uuid::Uuid::new_v4().as_u64_pair().0;
        if let Bind::Bound(l) = socket::bind_listener(&namespace::link_address(&options, id)?)? {
            break (id, l);
        }
    };
    let mut backoff = Duration::from_millis(1);
    let (joined, controller) = loop {
        let seed = || Seed {
            epoch: 1,
            peers: Vec::new(),
            departed: Vec::new(),
        };
        match control::attempt(&options, id, seed, deadline)? {
            Attempt::Joined(j, c) => break (j, c),
            Attempt::Retry => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(JoinError::Timeout);
                }
                let left = deadline.map_or(backoff, |d| d - now);
                std::thread::sleep(backoff.min(left));
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
        }
    };
    let mut directory = Directory::default();
    directory.reset(joined.epoch, joined.controller, joined.peers);
    let shared = Arc::new(Shared {
        id,
        // SO_PEERCRED reports effective ids: compare like with like.
        uid: rustix::process::geteuid().as_raw(),
        hello: crate::frame::Hello {
            id,
            label: options.label.iter().map(str::to_string).collect(),
        },
        options,
        directory: RwLock::new(directory),
        links: Mutex::new(HashMap::new()),
        // Start anywhere, so that short-lived senders spread over the matches too.
        rr: AtomicUsize::new(uuid::Uuid::new_v4().as_u64_pair().1 as usize),
        pending: Mutex::new(VecDeque::new()),
        inbox: Inbox::new()?,
        driver_bell: Doorbell::new()?,
        closed: AtomicBool::new(false),
        counters: Counters::default(),
        loans: Arc::default(),
        selectors: outgoing::SelectorCache,
        spare: outgoing::Spare::default(),
        routes: directory::RouteMemo::default(),
        requests: Arc::new(request::Requests::new()?),
    });
    let driver = driver::spawn(shared.clone(), listener, joined.conn, controller)?;
    let core = Arc::new(Core {
        shared,
        driver: Some(driver),
    });
    Ok((
        EndpointSender::new(core.clone()),
        EndpointReceiver::new(core),
    ))
}
