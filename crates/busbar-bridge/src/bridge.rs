//! The bridge: a local bus on one side, a Zenoh session on the other.

use crate::config::Config;
use crate::raw::Raw;
use crate::wire::{self, Kind};
use crate::BridgeError;
use busbar::{
    Borrowed, BytesMessage, EndpointId, EndpointReceiver, EndpointSender, Label, MemoryRegion,
    Message, MessageBox, Options, PendingRequest, RecvError, RecvWaker, ReplyHandle, RequestError,
    Selector, SendError, TypeUuid,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zenoh::bytes::ZBytes;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::sample::SampleKind;
use zenoh::Wait;

/// The label item every bridge's own endpoint carries.
pub const BRIDGE_LABEL: &str = "@bridge";
/// The prefix of the label item naming an endpoint's host (`@host:b`).
pub const HOST_PREFIX: &str = "@host:";
/// The prefix of the label item giving a remote endpoint's id on its own
/// bus (`@remote:00c0ffee00c0ffee`).
pub const REMOTE_PREFIX: &str = "@remote:";

/// How long a message from another host waits for its local receiver to
/// be in the directory of the endpoint that delivers it.
const DELIVERY_TTL: Duration = Duration::from_secs(1);
/// Threads that wait for answers to requests from other hosts (the
/// requests themselves are sent in order with the messages, by Zenoh's
/// callback or the deliver thread).
const REQUEST_THREADS: usize = 16;
/// How long a bridge asks the others about a source it does not know yet.
const LEARN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a source that could not be learnt is not asked about again.
const UNKNOWN_MEMORY: Duration = Duration::from_secs(10);

/// Whether a label marks an endpoint a bridge made (its own, or one
/// standing for an endpoint of another host): never exported, so nothing
/// loops back.
pub fn bridge_made(label: &Label) -> bool {
    label
        .iter()
        .any(|item| item == BRIDGE_LABEL || item.starts_with(HOST_PREFIX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// A bridge's counters (see [`Bridge::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Messages and requests sent to other hosts.
    pub forwarded: u64,
    /// Messages and requests from other hosts handed to local endpoints.
    pub delivered: u64,
    /// Answers from other hosts handed back to local requesters.
    pub answered: u64,
    /// Memory regions whose contents were copied into a message.
    pub regions_copied: u64,
    /// Messages refused because they carry file descriptors
    /// ([`ForwardError::Descriptors`]).
    pub refused_descriptors: u64,
    /// Messages from a local endpoint the export expression does not
    /// cover, refused ([`ForwardError::UnexportedSource`]).
    pub unexported_source: u64,
    /// Messages from another host for a local endpoint that is not
    /// exported (or no longer there), refused.
    pub unexported_target: u64,
    /// Messages from another host whose source this bridge could not learn.
    pub unknown_source: u64,
    /// Messages from another host that a local send refused (the receiver
    /// left, is full under a policy that does not wait, ...).
    pub delivery_failed: u64,
    /// Requests that got no answer here, or whose answer could not be
    /// handed back.
    pub requests_failed: u64,
    /// Zenoh samples on the bridge's keys that did not parse: dropped.
    pub garbage: u64,
    /// Local endpoints this bridge exports now.
    pub exported: u64,
    /// Endpoints of other hosts this bridge knows now.
    pub remote: u64,
    /// Local endpoints standing for those (proxies) now.
    pub proxies: u64,
    /// Whether this bridge is the active one on its bus (another bridge
    /// with a smaller endpoint id makes it stand by).
    pub active: bool,
}

impl BridgeStats {
    /// One `name=value` per line.
    pub fn to_text(&self) -> String {
        format!(
            "forwarded={}\ndelivered={}\nanswered={}\nregions_copied={}\nrefused_descriptors={}\n\
             unexported_source={}\nunexported_target={}\nunknown_source={}\ndelivery_failed={}\n\
             requests_failed={}\ngarbage={}\nexported={}\nremote={}\nproxies={}\nactive={}\n",
            self.forwarded,
            self.delivered,
            self.answered,
            self.regions_copied,
            self.refused_descriptors,
            self.unexported_source,
            self.unexported_target,
            self.unknown_source,
            self.delivery_failed,
            self.requests_failed,
            self.garbage,
            self.exported,
            self.remote,
            self.proxies,
            self.active,
        )
    }
}

/// Why a local message did not cross to another host. The sender's own
/// `send` succeeded (it reached the bridge's endpoint on its bus); the
/// bridge drops the message, counts it ([`BridgeStats`]), logs the first
/// of each kind per sender as a warning, and keeps the last one for
/// [`Bridge::last_refusal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The message carries file descriptors ([`busbar::Object`]): they
    /// cannot cross hosts.
    #[error("message from endpoint {sender} carries {count} file descriptor(s): descriptors cannot cross hosts, message refused")]
    Descriptors {
        /// The sending endpoint.
        sender: EndpointId,
        /// How many it carried.
        count: usize,
    },
    /// The sender is not covered by the export expression: what is not
    /// exported neither is seen on nor reaches other hosts, nor speaks to
    /// them.
    #[error("endpoint {0} is not exported: its messages do not leave this host")]
    UnexportedSource(EndpointId),
    /// A memory region could not be read to copy it.
    #[error("a memory region of endpoint {sender} could not be read: {why}")]
    Region {
        /// The sending endpoint.
        sender: EndpointId,
        /// What failed.
        why: String,
    },
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    delivered: AtomicU64,
    answered: AtomicU64,
    regions_copied: AtomicU64,
    refused_descriptors: AtomicU64,
    unexported_source: AtomicU64,
    unexported_target: AtomicU64,
    unknown_source: AtomicU64,
    delivery_failed: AtomicU64,
    requests_failed: AtomicU64,
    garbage: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The most bytes of small frames a proxy packs into one Zenoh put.
/// Below Zenoh's batch size (64 KiB), so that a batch travels in one piece.
const BATCH_MAX: usize = 32 * 1024;

/// What the messages of a proxy's batch looked up, for the messages after
/// them.
#[derive(Default)]
struct Known {
    /// The last source found exported.
    source: Option<EndpointId>,
    /// The bridge the remote endpoint is reached through.
    via: Option<Arc<str>>,
}

/// What [`Inner::outgoing`] made of a message.
enum Out {
    /// A frame appended to the proxy's batch from this offset on, for the
    /// bridge named.
    Batched(Arc<str>, usize),
    /// A frame of its own, for the bridge named.
    Whole(Arc<str>, ZBytes),
}

/// A local endpoint standing for an endpoint of another host.
struct Proxy {
    sender: EndpointSender<Passed>,
    waker: RecvWaker,
    /// The remote endpoint's id on its bus.
    remote: u64,
    /// The bridge (Zenoh id) its messages go through.
    via: Mutex<Arc<str>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    fn shut(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

struct Remote {
    host: String,
    label: Label,
    /// Bridges announcing it (usually one).
    via: Vec<String>,
    proxy: Option<Arc<Proxy>>,
}

struct Exported {
    _token: LivelinessToken,
    /// When it was announced.
    since: Instant,
}

/// How long an endpoint announced on its first message (before the
/// bridge's own directory listed it) is kept while that directory does
/// not list it yet.
const ANNOUNCE_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Tables {
    active: bool,
    exported: HashMap<u64, Exported>,
    remotes: HashMap<u64, Remote>,
}

/// A local request waiting for its answer from another host.
struct Waiting {
    handle: ReplyHandle,
    sender: EndpointSender<Passed>,
    via: Arc<str>,
    since: Instant,
}

/// A request from another host, sent on the local bus: for a request
/// thread to wait for its answer and send it back.
struct Job {
    pending: PendingRequest<Raw>,
    /// When the requester's bridge stops waiting for it.
    deadline: Instant,
    zid: String,
    src: u64,
    dst: u64,
    corr: u64,
}

enum Event {
    Put(String),
    Delete(String),
}

struct Inner {
    config: Config,
    zid: String,
    session: zenoh::Session,
    me: EndpointSender<Raw>,
    counters: Counters,
    tables: RwLock<Tables>,
    /// Taken while a proxy is made, so that two threads never make two.
    making: Mutex<()>,
    publishers: Mutex<HashMap<String, Arc<Publisher<'static>>>>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    next_corr: AtomicU64,
    closed: AtomicBool,
    last_refusal: Mutex<Option<ForwardError>>,
    /// Sources asked about in vain lately (a forged frame's), not asked
    /// about again for [`UNKNOWN_MEMORY`].
    unknown: Mutex<HashMap<(String, u64), Instant>>,
    /// Requests from other hosts, for the request threads.
    jobs: crossbeam_channel::Sender<Job>,
    /// Frames whose source must be learnt first, for the deliver thread
    /// (Zenoh's callback must not wait for Zenoh).
    slow: crossbeam_channel::Sender<ZBytes>,
    /// Frames in `slow` not handled yet: while there are, the callback
    /// queues every frame behind them, so that order is kept.
    slow_pending: AtomicUsize,
    /// Senders already warned about, per kind of refusal.
    warned: Mutex<std::collections::HashSet<(u8, u64)>>,
}

/// A running bridge. Dropping it leaves the bus and closes the Zenoh
/// session; the other hosts see its endpoints go at once.
pub struct Bridge {
    inner: Arc<Inner>,
    me_waker: RecvWaker,
    threads: Vec<JoinHandle<()>>,
    _liveliness: zenoh::pubsub::Subscriber<()>,
    _inbox: zenoh::pubsub::Subscriber<()>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("bus", &self.inner.config.bus)
            .field("host", &self.inner.config.host)
            .field("zid", &self.inner.zid)
            .finish()
    }
}

fn zenoh_config(config: &Config) -> Result<zenoh::Config, BridgeError> {
    let mut z = zenoh::Config::default();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let settings = [
        ("mode", "\"peer\"".to_string()),
        ("listen/endpoints", list(&config.listen)),
        ("connect/endpoints", list(&config.connect)),
        ("scouting/multicast/enabled", config.scouting.to_string()),
        (
            "transport/link/tx/lease",
            config.lease.as_millis().to_string(),
        ),
        // A receiver that stops reading holds its sender back (busbar's
        // backpressure, end to end); Zenoh closes a session whose queue
        // stays full this long (its default is 5 s).
        (
            "transport/link/tx/queue/congestion_control/block/wait_before_close",
            "60000000".to_string(),
        ),
    ];
    for (key, value) in settings {
        z.insert_json5(key, &value)
            .map_err(|e| BridgeError::Zenoh(format!("setting {key} = {value}: {e}")))?;
    }
    Ok(z)
}

impl Bridge {
    /// Opens the Zenoh session, joins the local bus and starts bridging.
    ///
    /// The bridge's own endpoint joins with the label `@bridge @host:<host>`
    /// (it hosts the bus controller if there is none yet). Endpoints of
    /// other hosts appear on the local bus as they are learnt; local
    /// endpoints that [`Config::export`] matches are announced to the other
    /// hosts within [`Config::poll`] of their join.
    pub fn start(config: Config) -> Result<Bridge, BridgeError> {
        config.check()?;
        let session = zenoh::open(zenoh_config(&config)?)
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("cannot open the Zenoh session: {e}")))?;
        let zid = session.zid().to_string();
        let mut label = Label::default();
        label.insert(BRIDGE_LABEL);
        label.insert(format!("{HOST_PREFIX}{}", config.host));
        let mut options = Options::new(&config.bus, label, &config.token);
        options.limits.max_payload = config.max_payload;
        let (me, me_rx) = busbar::join::<Raw, Raw>(options, Some(Duration::from_secs(10)))?;
        let (jobs_tx, jobs) = crossbeam_channel::bounded::<Job>(1024);
        let (slow_tx, slow) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            config,
            zid,
            session,
            me,
            counters: Counters::default(),
            tables: RwLock::new(Tables::default()),
            making: Mutex::new(()),
            publishers: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            next_corr: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            last_refusal: Mutex::new(None),
            warned: Mutex::new(Default::default()),
            unknown: Mutex::new(HashMap::new()),
            jobs: jobs_tx,
            slow: slow_tx,
            slow_pending: AtomicUsize::new(0),
        });
        let (events_tx, events) = crossbeam_channel::unbounded();
        let liveliness = inner
            .session
            .liveliness()
            .declare_subscriber(format!("{}/ep/**", wire::PREFIX))
            .history(true)
            .callback(move |sample| {
                let key = sample.key_expr().as_str().to_string();
                let _ = events_tx.send(match sample.kind() {
                    SampleKind::Put => Event::Put(key),
                    SampleKind::Delete => Event::Delete(key),
                });
            })
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("cannot watch the other hosts: {e}")))?;
        let i = inner.clone();
        let inbox = inner
            .session
            .declare_subscriber(format!("{}/to/{}", wire::PREFIX, inner.zid))
            .callback(move |sample| i.on_sample(sample.payload().clone()))
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("cannot subscribe: {e}")))?;
        let me_waker = me_rx.waker();
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(|e| BridgeError::Io(e.to_string()))
        };
        // First look at the local bus before anything else runs.
        inner.reconcile();
        let i = inner.clone();
        threads.push(spawn(
            "bridge-members",
            Box::new(move || i.membership(&events)),
        )?);
        let i = inner.clone();
        threads.push(spawn(
            "bridge-deliver",
            Box::new(move || {
                while !i.closed.load(Ordering::Relaxed) {
                    match slow.recv_timeout(Duration::from_millis(100)) {
                        Ok(data) => {
                            i.incoming(data, true);
                            i.slow_pending.fetch_sub(1, Ordering::AcqRel);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            }),
        )?);
        for n in 0..REQUEST_THREADS {
            let i = inner.clone();
            let jobs = jobs.clone();
            threads.push(spawn(
                &format!("bridge-req{n}"),
                Box::new(move || {
                    while !i.closed.load(Ordering::Relaxed) {
                        if let Ok(job) = jobs.recv_timeout(Duration::from_millis(100)) {
                            i.request(job);
                        }
                    }
                }),
            )?);
        }
        let i = inner.clone();
        threads.push(spawn("bridge-self", Box::new(move || i.serve_self(me_rx)))?);
        Ok(Bridge {
            inner,
            me_waker,
            threads,
            _liveliness: liveliness,
            _inbox: inbox,
        })
    }

    /// This bridge's Zenoh id (hex), as the other bridges address it.
    pub fn zid(&self) -> &str {
        &self.inner.zid
    }

    /// The bridge's own endpoint on the local bus (label `@bridge
    /// @host:<host>`).
    pub fn endpoint_id(&self) -> EndpointId {
        self.inner.me.id()
    }

    /// The counters now.
    pub fn stats(&self) -> BridgeStats {
        self.inner.stats()
    }

    /// The last message the bridge refused to forward, and why.
    pub fn last_refusal(&self) -> Option<ForwardError> {
        lock(&self.inner.last_refusal).clone()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.me_waker.wake();
        let proxies: Vec<_> = {
            let mut t = write(&self.inner.tables);
            t.exported.clear();
            t.remotes.drain().filter_map(|(_, r)| r.proxy).collect()
        };
        for p in proxies {
            p.shut();
        }
        let _ = self.inner.session.close().wait();
        // The request threads end when the deliver thread (holding the job
        // sender) has ended.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn stats(&self) -> BridgeStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let t = read(&self.tables);
        BridgeStats {
            forwarded: get(&c.forwarded),
            delivered: get(&c.delivered),
            answered: get(&c.answered),
            regions_copied: get(&c.regions_copied),
            refused_descriptors: get(&c.refused_descriptors),
            unexported_source: get(&c.unexported_source),
            unexported_target: get(&c.unexported_target),
            unknown_source: get(&c.unknown_source),
            delivery_failed: get(&c.delivery_failed),
            requests_failed: get(&c.requests_failed),
            garbage: get(&c.garbage),
            exported: t.exported.len() as u64,
            remote: t.remotes.len() as u64,
            proxies: t.remotes.values().filter(|r| r.proxy.is_some()).count() as u64,
            active: t.active,
        }
    }

    fn refuse(&self, e: ForwardError) {
        let (kind, source) = match &e {
            ForwardError::Descriptors { sender: source, .. } => {
                bump(&self.counters.refused_descriptors);
                (0, *source)
            }
            ForwardError::UnexportedSource(source) => {
                bump(&self.counters.unexported_source);
                (1, *source)
            }
            ForwardError::Region { sender: source, .. } => (2, *source),
        };
        let first = {
            let mut warned = lock(&self.warned);
            if warned.len() >= 4096 {
                warned.clear(); // Bounded: a sender may be warned about again.
            }
            warned.insert((kind, source.0))
        };
        if first {
            tracing::warn!("{e}");
        }
        *lock(&self.last_refusal) = Some(e);
    }

    // ---- local side: what is exported, who stands for whom ----

    /// Looks at the local directory: which bridge is active, what to
    /// export, which proxies to make or drop.
    fn reconcile(self: &Arc<Self>) {
        let directory = self.me.endpoints();
        let me = self.me.id();
        let active = !directory
            .iter()
            .any(|e| e.id < me && e.label.contains(BRIDGE_LABEL));
        let mut drop_proxies = Vec::new();
        {
            let mut t = write(&self.tables);
            if t.active != active {
                tracing::info!(
                    "bridge {} is {} on bus {}",
                    self.zid,
                    if active { "active" } else { "standing by" },
                    self.config.bus
                );
                t.active = active;
            }
            if !active {
                t.exported.clear();
                for r in t.remotes.values_mut() {
                    drop_proxies.extend(r.proxy.take());
                }
            } else {
                let wanted: HashMap<u64, &Label> = directory
                    .iter()
                    .filter(|e| !bridge_made(&e.label) && self.config.export.matches(&e.label))
                    .map(|e| (e.id.0, &e.label))
                    .collect();
                t.exported
                    .retain(|id, e| wanted.contains_key(id) || e.since.elapsed() < ANNOUNCE_GRACE);
                for (id, label) in wanted {
                    self.announce(&mut t, id, label);
                }
            }
        }
        for p in drop_proxies {
            p.shut();
        }
        if active {
            let missing: Vec<u64> = read(&self.tables)
                .remotes
                .iter()
                .filter(|(_, r)| r.proxy.is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in missing {
                self.ensure_proxy(id);
            }
        }
        // Publishers for bridges no remote endpoint goes through any more
        // (a bridge that left or restarted: a new Zenoh id each time).
        {
            let t = read(&self.tables);
            let live: std::collections::HashSet<&str> = t
                .remotes
                .values()
                .flat_map(|r| r.via.iter().map(String::as_str))
                .collect();
            let waiting = lock(&self.waiting);
            lock(&self.publishers).retain(|zid, _| {
                live.contains(zid.as_str()) || waiting.values().any(|w| *w.via == **zid)
            });
        }
        // Requests whose answer will not come any more.
        let limit = self.config.request_timeout + Duration::from_secs(5);
        lock(&self.waiting).retain(|_, w| w.since.elapsed() < limit);
    }

    /// Exports `source` at once if the export expression covers it: it
    /// sent before the bridge's next look at the directory. The proxy it
    /// sent to lists it (busbar's causal directory), so the proxy's
    /// directory is asked.
    fn export_now(&self, proxy: &Proxy, source: EndpointId) -> bool {
        let Some(e) = proxy
            .sender
            .endpoints()
            .into_iter()
            .find(|e| e.id == source)
        else {
            return false;
        };
        if bridge_made(&e.label) || !self.config.export.matches(&e.label) {
            return false;
        }
        let mut t = write(&self.tables);
        if !t.active {
            return false;
        }
        self.announce(&mut t, source.0, &e.label)
    }

    /// Declares the liveliness token of local endpoint `id`.
    fn announce(&self, t: &mut Tables, id: u64, label: &Label) -> bool {
        if t.exported.contains_key(&id) {
            return true;
        }
        let key = wire::endpoint_key(&self.zid, &self.config.host, id, label);
        match self.session.liveliness().declare_token(key).wait() {
            Ok(token) => {
                t.exported.insert(
                    id,
                    Exported {
                        _token: token,
                        since: Instant::now(),
                    },
                );
                true
            }
            Err(e) => {
                tracing::warn!("cannot announce endpoint {id:016x}: {e}");
                false
            }
        }
    }

    fn membership(self: &Arc<Self>, events: &crossbeam_channel::Receiver<Event>) {
        let mut next = Instant::now() + self.config.poll;
        while !self.closed.load(Ordering::Relaxed) {
            let wait = next.saturating_duration_since(Instant::now());
            let mut changed = false;
            match events.recv_timeout(wait) {
                Ok(ev) => {
                    changed |= self.remote_event(ev);
                    while let Ok(ev) = events.try_recv() {
                        changed |= self.remote_event(ev);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            if changed || Instant::now() >= next {
                self.reconcile();
                next = Instant::now() + self.config.poll;
            }
        }
    }

    /// Takes in a liveliness event; whether the table changed.
    fn remote_event(&self, ev: Event) -> bool {
        let (put, key) = match ev {
            Event::Put(k) => (true, k),
            Event::Delete(k) => (false, k),
        };
        let a = match wire::parse_endpoint_key(&key) {
            Ok(a) => a,
            Err(wire::Malformed(why)) => {
                bump(&self.counters.garbage);
                tracing::debug!("ignoring liveliness key {key:?}: {why}");
                return false;
            }
        };
        if a.zid == self.zid {
            return false;
        }
        let gone = {
            let mut t = write(&self.tables);
            if put {
                let r = t.remotes.entry(a.id).or_insert_with(|| Remote {
                    host: a.host.clone(),
                    label: a.label.clone(),
                    via: Vec::new(),
                    proxy: None,
                });
                if !r.via.contains(&a.zid) {
                    r.via.push(a.zid);
                }
                None
            } else {
                let Some(r) = t.remotes.get_mut(&a.id) else {
                    return false;
                };
                r.via.retain(|z| *z != a.zid);
                if let Some(first) = r.via.first() {
                    if let Some(p) = &r.proxy {
                        *lock(&p.via) = Arc::from(first.as_str());
                    }
                    None
                } else {
                    t.remotes.remove(&a.id).and_then(|r| r.proxy)
                }
            }
        };
        if let Some(p) = gone {
            p.shut();
        }
        true
    }

    /// Makes the proxy of remote endpoint `id` if it has none (and this
    /// bridge is active); its sender.
    fn ensure_proxy(self: &Arc<Self>, id: u64) -> Option<EndpointSender<Passed>> {
        let _making = lock(&self.making);
        let (label, via) = {
            let t = read(&self.tables);
            if !t.active {
                return None;
            }
            let r = t.remotes.get(&id)?;
            if let Some(p) = &r.proxy {
                return Some(p.sender.clone());
            }
            let mut label = r.label.clone();
            label.insert(format!("{HOST_PREFIX}{}", r.host));
            label.insert(format!("{REMOTE_PREFIX}{id:016x}"));
            (label, Arc::<str>::from(r.via.first()?.as_str()))
        };
        let mut options = Options::new(&self.config.bus, label, &self.config.token);
        options.controller_affinity = false;
        options.limits.max_payload = self.config.max_payload;
        let (sender, receiver) =
            match busbar::join::<Passed, Raw>(options, Some(Duration::from_secs(10))) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("cannot join a proxy for remote endpoint {id:016x}: {e}");
                    return None;
                }
            };
        let proxy = Arc::new(Proxy {
            sender: sender.clone(),
            waker: receiver.waker(),
            remote: id,
            via: Mutex::new(via),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let mut t = write(&self.tables);
        let Some(r) = t.remotes.get_mut(&id) else {
            return None; // Gone meanwhile: the new endpoint leaves as it drops.
        };
        let me = self.clone();
        let p = proxy.clone();
        let thread = std::thread::Builder::new()
            .name(format!("bridge-px-{id:016x}"))
            .spawn(move || me.forward(&p, receiver));
        match thread {
            Ok(h) => *lock(&proxy.thread) = Some(h),
            Err(e) => {
                tracing::warn!("cannot start a proxy thread: {e}");
                return None;
            }
        }
        r.proxy = Some(proxy);
        Some(sender)
    }

    // ---- local to remote ----

    /// A proxy's thread: reads what local senders send to the remote
    /// endpoint and publishes it to that endpoint's bridge, in order.
    /// Small frames ready at once go in one Zenoh put (up to
    /// [`BATCH_MAX`] bytes): the frames that follow the first are taken
    /// only if they can be read without a system call
    /// (`try_recv_ready_with`), so a lone message never waits.
    fn forward(&self, proxy: &Proxy, mut rx: EndpointReceiver<Raw>) {
        let mut publisher: Option<(Arc<str>, Arc<Publisher<'static>>)> = None;
        let mut batch: Vec<u8> = Vec::new();
        let mut batch_via: Option<Arc<str>> = None;
        rx.set_spin(self.config.spin);
        while !proxy.stop.load(Ordering::Relaxed) && !self.closed.load(Ordering::Relaxed) {
            // Looked up once per batch.
            let mut known = Known::default();
            let mut out = rx.recv_with(None, |m| self.outgoing(proxy, m, &mut batch, &mut known));
            loop {
                let ended = out.is_err();
                match out {
                    Ok(Some(Out::Batched(via, mark))) => {
                        if batch_via
                            .as_ref()
                            .is_some_and(|v| !Arc::ptr_eq(v, &via) && *v != via)
                        {
                            // The remote moved to another bridge: what is
                            // batched so far goes where it was going.
                            let rest = batch.split_off(mark);
                            let before = std::mem::replace(&mut batch, rest);
                            if let Some(v) = batch_via.take() {
                                self.put(proxy, &mut publisher, v, ZBytes::from(before));
                            }
                        }
                        batch_via = Some(via);
                    }
                    Ok(Some(Out::Whole(via, frame))) => {
                        if let Some(v) = batch_via.take() {
                            let before = std::mem::take(&mut batch);
                            self.put(proxy, &mut publisher, v, ZBytes::from(before));
                        }
                        self.put(proxy, &mut publisher, via, frame);
                    }
                    Ok(None) => {}
                    Err(RecvError::Interrupted) | Err(RecvError::Empty) => {}
                    Err(RecvError::Disconnected) => {
                        if let Some(v) = batch_via.take() {
                            let before = std::mem::take(&mut batch);
                            self.put(proxy, &mut publisher, v, ZBytes::from(before));
                        }
                        return;
                    }
                    Err(e) => tracing::warn!("proxy of {:016x}: {e}", proxy.remote),
                }
                if ended || batch.len() >= BATCH_MAX {
                    break;
                }
                out = rx.try_recv_ready_with(|m| self.outgoing(proxy, m, &mut batch, &mut known));
            }
            if let Some(v) = batch_via.take() {
                let before = std::mem::take(&mut batch);
                self.put(proxy, &mut publisher, v, ZBytes::from(before));
            }
        }
    }

    /// Publishes `frames` to bridge `via` (with the proxy thread's
    /// publisher, declared on first use).
    fn put(
        &self,
        proxy: &Proxy,
        publisher: &mut Option<(Arc<str>, Arc<Publisher<'static>>)>,
        via: Arc<str>,
        frames: ZBytes,
    ) {
        let cached = publisher.as_ref().filter(|(z, _)| *z == via);
        let p = match cached {
            Some((_, p)) => p.clone(),
            None => match self.publisher(&via) {
                Some(p) => {
                    *publisher = Some((via, p.clone()));
                    p
                }
                None => return,
            },
        };
        if let Err(e) = p.put(frames).wait() {
            tracing::warn!("cannot publish to bridge {}: {e}", proxy_via(proxy));
        }
    }

    fn publisher(&self, zid: &str) -> Option<Arc<Publisher<'static>>> {
        let mut all = lock(&self.publishers);
        if let Some(p) = all.get(zid) {
            return Some(p.clone());
        }
        let declared = self
            .session
            .declare_publisher(format!("{}/to/{zid}", wire::PREFIX))
            .congestion_control(CongestionControl::Block)
            .wait();
        match declared {
            Ok(p) => {
                let p = Arc::new(p);
                all.insert(zid.to_string(), p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::warn!("cannot declare a publisher for bridge {zid}: {e}");
                None
            }
        }
    }

    fn publish(&self, zid: &str, bytes: Vec<u8>) {
        if let Some(p) = self.publisher(zid) {
            if let Err(e) = p.put(bytes).wait() {
                tracing::warn!("cannot publish to bridge {zid}: {e}");
            }
        }
    }

    /// Turns a message a proxy received into a frame for the remote
    /// bridge (or refuses it): appended to `batch` when it fits in
    /// [`BATCH_MAX`] (or `batch` is empty), else a frame of its own.
    ///
    /// A payload in shared memory its sender lent (over 64 KiB) goes to
    /// Zenoh where it lies (Zenoh copies it once, into its batches), in a
    /// frame of its own; a smaller one is copied once, from the link's ring
    /// into the frame. `known`: what the messages before it in the batch
    /// looked up.
    fn outgoing(
        &self,
        proxy: &Proxy,
        mut m: Borrowed<'_>,
        batch: &mut Vec<u8>,
        known: &mut Known,
    ) -> Option<Out> {
        let source = m.source;
        if !m.objects.is_empty() {
            self.refuse(ForwardError::Descriptors {
                sender: source,
                count: m.objects.len(),
            });
            return None;
        }
        if known.source != Some(source) {
            if !read(&self.tables).exported.contains_key(&source.0)
                && !self.export_now(proxy, source)
            {
                self.refuse(ForwardError::UnexportedSource(source));
                return None;
            }
            known.source = Some(source);
        }
        let via = known
            .via
            .get_or_insert_with(|| lock(&proxy.via).clone())
            .clone();
        let (kind, corr) = match m.reply_handle() {
            Some(handle) => {
                let corr = self.next_corr.fetch_add(1, Ordering::Relaxed);
                lock(&self.waiting).insert(
                    corr,
                    Waiting {
                        handle,
                        sender: proxy.sender.clone(),
                        via: via.clone(),
                        since: Instant::now(),
                    },
                );
                (Kind::Request, corr)
            }
            None => (Kind::Message, 0),
        };
        let extra: usize = m.memory_regions.iter().map(|r| 8 + r.size()).sum();
        let shared = m.shared_payload();
        let type_uuid = m.type_uuid().into_bytes();
        let regions = m.memory_regions.len();
        let head = |out: &mut Vec<u8>, len: usize| {
            wire::encode_head_into(
                out,
                kind,
                &self.zid,
                source.0,
                proxy.remote,
                corr,
                type_uuid,
                len,
                regions,
            )
        };
        // A frame of its own, or appended to `batch` from `mark` on.
        let mark = batch.len();
        let mut own = Vec::new();
        let (lent, into_batch) = match shared {
            Some(lent) => {
                head(&mut own, lent.len());
                (Some(ZBytes::from(bytes::Bytes::from_owner(lent))), false)
            }
            None => {
                let payload = m.payload();
                let size = wire::PREFIX_MAX + payload.len() + extra;
                let into_batch = mark == 0 || mark + size <= BATCH_MAX;
                let out = if into_batch { &mut *batch } else { &mut own };
                out.reserve(if mark == 0 { size.max(BATCH_MAX) } else { size });
                head(out, payload.len());
                out.extend_from_slice(payload);
                (None, into_batch)
            }
        };
        let mut tail = Vec::new();
        let regions_out = match (&lent, into_batch) {
            (Some(_), _) => &mut tail,
            (None, true) => &mut *batch,
            (None, false) => &mut own,
        };
        let mut failed = None;
        for region in m.memory_regions.iter_mut() {
            match region.map(..) {
                Ok(bytes) => wire::push_region(regions_out, bytes),
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
            bump(&self.counters.regions_copied);
        }
        if let Some(why) = failed {
            if into_batch {
                batch.truncate(mark);
            }
            self.refuse(ForwardError::Region {
                sender: source,
                why,
            });
            return None;
        }
        bump(&self.counters.forwarded);
        Some(match lent {
            Some(payload) => {
                let mut w = ZBytes::writer();
                w.append(ZBytes::from(own));
                w.append(payload);
                if !tail.is_empty() {
                    w.append(ZBytes::from(tail));
                }
                Out::Whole(via, w.finish())
            }
            None if into_batch => Out::Batched(via, mark),
            None => Out::Whole(via, ZBytes::from(own)),
        })
    }

    // ---- remote to local ----

    /// A frame from Zenoh's callback: handled here, or queued for the
    /// deliver thread when its source must be learnt first (or frames are
    /// queued already).
    fn on_sample(self: &Arc<Self>, data: ZBytes) {
        let data = if self.slow_pending.load(Ordering::Acquire) > 0 {
            Some(data)
        } else {
            self.incoming(data, false)
        };
        if let Some(data) = data {
            self.slow_pending.fetch_add(1, Ordering::AcqRel);
            if self.slow.send(data).is_err() {
                self.slow_pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Handles a sample (one frame, or a batch of them); gives back what
    /// is left of it, from the first frame whose source is not known, when
    /// `may_learn` is false.
    ///
    /// A frame comes in one piece, or (from 64 KiB on, as Zenoh's
    /// fragments) in several. One in pieces is read where it lies when it
    /// has no regions: its header from a copy of its first bytes, its
    /// payload straight from the pieces into the local frame
    /// ([`Passed`]). A batch, a frame with regions or one that does not
    /// parse is read from one piece (copied into one when it came in
    /// several). Every frame of a batch is checked before any is handled:
    /// one that does not parse, or a batch cut short, drops the whole
    /// sample (counted as `garbage`).
    fn incoming(self: &Arc<Self>, data: ZBytes, may_learn: bool) -> Option<ZBytes> {
        let max = self.config.max_payload;
        let total = data.len();
        let data = if data.slices().nth(1).is_some() {
            let mut head = [0u8; wire::PREFIX_MAX];
            let first = prefix(&data, &mut head);
            if let Ok(f) = wire::decode_prefix(first, total, max) {
                let deferred = self.one(f, first, &data, 0, may_learn, &mut Looked::default());
                return deferred.then_some(data);
            }
            ZBytes::from(data.to_bytes().into_owned())
        } else {
            data
        };
        let bytes: &[u8] = data.slices().next().unwrap_or(&[]);
        let frames = match wire::decode_batch(bytes, max) {
            Ok(frames) => frames,
            Err((n, wire::Malformed(why))) => {
                bump(&self.counters.garbage);
                tracing::debug!("dropped a malformed sample ({total} bytes, frame {n}): {why}");
                return None;
            }
        };
        let mut rest = None;
        let mut looked = Looked::default();
        for (at, f) in frames {
            if self.one(f, &bytes[at..], &data, at, may_learn, &mut looked) {
                rest = Some(at);
                break;
            }
        }
        match rest {
            None => None,
            Some(0) => Some(data.clone()),
            Some(at) => Some(ZBytes::from(bytes[at..].to_vec())),
        }
    }

    /// Handles frame `f`, which starts `at` bytes into `data` (`bytes`: the
    /// frame from its start, or its first bytes when it has no regions).
    /// True when it was not handled: its source is not known and
    /// `may_learn` is false. `looked`: what the frames before it in the
    /// same sample looked up.
    fn one(
        self: &Arc<Self>,
        f: wire::Frame<'_>,
        bytes: &[u8],
        data: &ZBytes,
        at: usize,
        may_learn: bool,
        looked: &mut Looked,
    ) -> bool {
        let payload = Payload {
            type_uuid: f.type_uuid,
            data,
            start: at + f.payload.start,
            len: f.payload.len(),
        };
        match f.kind {
            Kind::Message | Kind::Request => {
                let known = looked.knows(f.src)
                    || read(&self.tables)
                        .remotes
                        .get(&f.src)
                        .is_some_and(|r| r.proxy.is_some());
                if !known && !may_learn {
                    return true;
                }
                self.inbound(f, bytes, payload, looked)
            }
            Kind::Answer => self.answer(f, payload.passed()),
            Kind::Failed => {
                if lock(&self.waiting).remove(&f.corr).is_some() {
                    bump(&self.counters.requests_failed);
                }
            }
        }
        false
    }

    fn fail_request(&self, f: &wire::Frame<'_>) {
        if f.kind == Kind::Request {
            bump(&self.counters.requests_failed);
            let out = wire::encode(
                Kind::Failed,
                &self.zid,
                f.dst,
                f.src,
                f.corr,
                [0; 16],
                &[],
                0,
                0,
            );
            self.publish(f.zid, out);
        }
    }

    /// `bytes`: the frame, or its first bytes when it has no regions.
    fn inbound(
        self: &Arc<Self>,
        f: wire::Frame<'_>,
        bytes: &[u8],
        payload: Payload<'_>,
        looked: &mut Looked,
    ) {
        if !looked.knows(f.src) {
            match self.source(f.zid, f.src) {
                Some(s) => looked.source = Some((f.src, s)),
                None => {
                    bump(&self.counters.unknown_source);
                    self.fail_request(&f);
                    return;
                }
            }
        }
        if looked.exported != Some(f.dst) {
            if !read(&self.tables).exported.contains_key(&f.dst) {
                bump(&self.counters.unexported_target);
                self.fail_request(&f);
                return;
            }
            looked.exported = Some(f.dst);
        }
        let mut regions = Vec::new();
        for range in &f.regions {
            let region = bytes.get(range.clone()).unwrap_or_default();
            match copy_region(region) {
                Ok(r) => regions.push(r),
                Err(e) => {
                    tracing::warn!("cannot make a region for a message from another host: {e}");
                    bump(&self.counters.delivery_failed);
                    self.fail_request(&f);
                    return;
                }
            }
        }
        // No ttl first (nothing waits in the proxy's ttl queue unless it
        // must): one is given, to a message made again, only when this
        // proxy does not list the receiver yet.
        let message = |ttl: Duration, regions: Vec<MemoryRegion>| {
            let selector = Selector::endpoint(EndpointId(f.dst)).ttl(ttl);
            let mut m = Message::new(selector, payload.passed());
            m.memory_regions = regions;
            m
        };
        let msg = message(Duration::ZERO, regions.clone());
        let again = || message(DELIVERY_TTL, regions);
        let Some((_, sender)) = &looked.source else {
            return;
        };
        if f.kind == Kind::Request {
            // Sent here, in order with the messages around it; a request
            // thread waits for the answer.
            let timeout = self.config.request_timeout;
            let deadline = Instant::now() + timeout;
            let started = match sender.request_start::<Raw>(msg, timeout) {
                // Not in this proxy's directory yet (it joined a moment ago).
                Err(RequestError::Send(SendError::NoRoute(_))) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    sender.request_start::<Raw>(again(), left)
                }
                other => other,
            };
            let pending = match started {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!("cannot send a request to {:016x}: {e}", f.dst);
                    self.fail_request(&f);
                    return;
                }
            };
            let job = Job {
                pending,
                deadline,
                zid: f.zid.to_string(),
                src: f.src,
                dst: f.dst,
                corr: f.corr,
            };
            if self.jobs.send(job).is_err() {
                bump(&self.counters.requests_failed);
            }
            return;
        }
        let sent = match sender.send(msg) {
            // Not in this proxy's directory yet (it joined a moment ago).
            Err(SendError::NoRoute(_)) => sender.send(again()),
            other => other,
        };
        match sent {
            Ok(()) => bump(&self.counters.delivered),
            Err(e) => {
                bump(&self.counters.delivery_failed);
                tracing::debug!("cannot deliver to {:016x}: {e}", f.dst);
            }
        }
    }

    /// The sender of the proxy standing for endpoint `src` of bridge
    /// `zid`, learning it from the others if its announcement has not come
    /// yet.
    fn source(self: &Arc<Self>, zid: &str, src: u64) -> Option<EndpointSender<Passed>> {
        if let Some(p) = read(&self.tables)
            .remotes
            .get(&src)
            .and_then(|r| r.proxy.as_ref())
        {
            return Some(p.sender.clone());
        }
        // Its announcement is on its way (or the frame lies): ask, for a
        // while, unless it was asked about in vain a moment ago.
        let key = (zid.to_string(), src);
        {
            let mut unknown = lock(&self.unknown);
            unknown.retain(|_, at| at.elapsed() < UNKNOWN_MEMORY);
            if unknown.contains_key(&key) {
                return None;
            }
        }
        let deadline = Instant::now() + LEARN_TIMEOUT;
        while Instant::now() < deadline && !self.closed.load(Ordering::Relaxed) {
            if !read(&self.tables).remotes.contains_key(&src) {
                let expr = format!("{}/ep/{zid}/*/{src:016x}/*", wire::PREFIX);
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(replies) = self.session.liveliness().get(expr).timeout(left).wait() {
                    while let Ok(reply) = replies.recv() {
                        if let Ok(sample) = reply.result() {
                            let key = sample.key_expr().as_str().to_string();
                            self.remote_event(Event::Put(key));
                        }
                    }
                }
            }
            if let Some(sender) = self.ensure_proxy(src) {
                return Some(sender);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        lock(&self.unknown).insert(key, Instant::now());
        None
    }

    fn answer(&self, f: wire::Frame<'_>, payload: Passed) {
        let Some(w) = lock(&self.waiting).remove(&f.corr) else {
            return;
        };
        if *w.via != *f.zid || !f.regions.is_empty() {
            bump(&self.counters.requests_failed);
            return;
        }
        match w.sender.reply_with(&w.handle, payload) {
            Ok(()) => bump(&self.counters.answered),
            Err(e) => {
                bump(&self.counters.requests_failed);
                tracing::debug!("cannot hand an answer back: {e}");
            }
        }
    }

    /// Waits for the answer to a request from another host and sends it back.
    fn request(&self, job: Job) {
        let answer = job
            .pending
            .wait(job.deadline.saturating_duration_since(Instant::now()));
        let out = match answer {
            Ok(a) if a.objects.is_empty() && a.memory_regions.is_empty() => {
                bump(&self.counters.delivered);
                wire::encode(
                    Kind::Answer,
                    &self.zid,
                    job.dst,
                    job.src,
                    job.corr,
                    a.payload.type_uuid,
                    &a.payload.bytes,
                    0,
                    0,
                )
            }
            other => {
                if let Err(e) = other {
                    tracing::debug!("a request from another host got no answer: {e}");
                } else {
                    tracing::warn!("an answer with attachments cannot go back to another host");
                }
                bump(&self.counters.requests_failed);
                wire::encode(
                    Kind::Failed,
                    &self.zid,
                    job.dst,
                    job.src,
                    job.corr,
                    [0; 16],
                    &[],
                    0,
                    0,
                )
            }
        };
        self.publish(&job.zid, out);
    }

    /// Answers `stats` requests to the bridge's own endpoint.
    fn serve_self(&self, mut rx: EndpointReceiver<Raw>) {
        while !self.closed.load(Ordering::Relaxed) {
            let asked = rx.recv_with(None, |m| {
                let stats = m.bytes().is_some_and(|(_, b)| b == b"stats");
                m.reply_handle().filter(|_| stats)
            });
            match asked {
                Ok(Some(handle)) => {
                    let mut text = self.stats().to_text();
                    if let Some(e) = lock(&self.last_refusal).as_ref() {
                        text.push_str(&format!("last_refusal={e}\n"));
                    }
                    let mut bytes = Vec::new();
                    if BytesMessage::new(0, text).encode_into(&mut bytes).is_ok() {
                        let raw = Raw {
                            type_uuid: BytesMessage::TYPE_UUID,
                            bytes,
                        };
                        let _ = self.me.reply_with(&handle, raw);
                    }
                }
                Ok(None) | Err(RecvError::Interrupted) => {}
                Err(RecvError::Disconnected) => break,
                Err(e) => tracing::debug!("bridge endpoint: {e}"),
            }
        }
    }
}

fn proxy_via(p: &Proxy) -> Arc<str> {
    lock(&p.via).clone()
}

/// The first bytes of a frame in pieces, copied into `head`.
fn prefix<'h>(data: &ZBytes, head: &'h mut [u8; wire::PREFIX_MAX]) -> &'h [u8] {
    let mut n = 0;
    for slice in data.slices() {
        let take = slice.len().min(head.len() - n);
        head[n..n + take].copy_from_slice(&slice[..take]);
        n += take;
        if n == head.len() {
            break;
        }
    }
    &head[..n]
}

fn copy_region(bytes: &[u8]) -> Result<MemoryRegion, busbar::RegionError> {
    let mut r = MemoryRegion::new(bytes.len().max(1))?;
    if !bytes.is_empty() {
        r.map(..bytes.len())?.copy_from_slice(bytes);
    }
    Ok(r)
}

/// What the frames of one sample looked up, for the frames after them:
/// a batch's frames mostly come from one source to one destination.
#[derive(Default)]
struct Looked {
    /// The last source whose proxy sent, and that proxy's sender.
    source: Option<(u64, EndpointSender<Passed>)>,
    /// The last destination found exported.
    exported: Option<u64>,
}

impl Looked {
    /// Whether the proxy sending for `src` is the one kept.
    fn knows(&self, src: u64) -> bool {
        self.source.as_ref().is_some_and(|(s, _)| *s == src)
    }
}

/// Where a frame's payload lies in the sample it came in.
#[derive(Clone, Copy)]
struct Payload<'a> {
    type_uuid: busbar::TypeUuidBytes,
    data: &'a ZBytes,
    start: usize,
    len: usize,
}

impl Payload<'_> {
    fn passed(&self) -> Passed {
        Passed {
            type_uuid: self.type_uuid,
            data: self.data.clone(),
            start: self.start,
            len: self.len,
        }
    }
}

/// A payload from another host, passed on from Zenoh's buffer: copied
/// once, into the local frame (or the region a large one travels in).
#[derive(Clone)]
struct Passed {
    type_uuid: busbar::TypeUuidBytes,
    data: ZBytes,
    start: usize,
    len: usize,
}

impl MessageBox for Passed {
    fn type_uuid(&self) -> busbar::TypeUuidBytes {
        self.type_uuid
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), busbar::CodecError> {
        let at = out.len();
        out.resize(at + self.len, 0);
        self.encode_to_slice(&mut out[at..])
    }

    /// Known: so busbar writes it straight into the local frame, or into
    /// the shared memory a large one travels in, with no buffer between.
    fn encoded_len(&self) -> Option<usize> {
        Some(self.len)
    }

    fn encode_to_slice(&self, out: &mut [u8]) -> Result<(), busbar::CodecError> {
        let (start, end) = (self.start, self.start + self.len);
        if out.len() != self.len {
            return Err(busbar::CodecError::new("a payload of another length"));
        }
        let (mut at, mut put) = (0usize, 0usize);
        for slice in self.data.slices() {
            let (s, e) = (at, at + slice.len());
            at = e;
            if e <= start || s >= end {
                continue;
            }
            let piece = &slice[start.max(s) - s..end.min(e) - s];
            out[put..put + piece.len()].copy_from_slice(piece);
            put += piece.len();
        }
        if put != self.len {
            return Err(busbar::CodecError::new("a payload beyond its frame"));
        }
        Ok(())
    }

    /// Never used to receive: proxies receive with `recv_with`, requests
    /// decode their answers as [`Raw`].
    fn decode(_: busbar::TypeUuidBytes, _: &[u8]) -> Result<Option<Self>, busbar::CodecError> {
        Ok(None)
    }
}
