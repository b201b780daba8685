//! `join` and `NativeEndpoint`: one endpoint on a bus, speaking
//! `BytesMessage`.
//!
//! Nothing here blocks the JavaScript thread. `join`, a send that has to
//! wait for room, a request and a reply run on threads of their own (a
//! joining thread, the endpoint's sending thread, one thread per request)
//! and report through the endpoint's thread-safe function, which index.js
//! references only while it waits for something: an endpoint nobody waits
//! on keeps no process alive. Receiving needs no thread: see [`recv`].

use crate::error::{Failure, Result};
use crate::labelop;
use crate::message::{Event, Outcome, Received, ReplyToken, SelectorText};
use crate::recv::{Receiving, Taken, Watch};
use crate::region::Region;
use busbar::{
    Backpressure, BytesMessage, EndpointId, EndpointReceiver, EndpointSender, Label, Message,
    Object, Options, Selector,
};
use napi::bindgen_prelude::{ClassInstance, FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The endpoint's one way back to JavaScript: calls index.js's event
/// function with an [`Event`]. Weak: it keeps the event loop alive only
/// while index.js references it ([`NativeEndpoint::keep_alive`]).
type Events = ThreadsafeFunction<Outcome, (), Event, Status, false, true>;

/// What `join`'s callback gets: an error's code and message, or the endpoint.
type JoinArgs = FnArgs<(Option<String>, Option<String>, Option<NativeEndpoint>)>;

/// The thread-safe function `join` answers through (strong: the process
/// waits for a join).
type Joined = ThreadsafeFunction<std::result::Result<Parts, Failure>, (), JoinArgs, Status, false>;

/// A request waits at most this long when JavaScript gives no timeout
/// (its responder leaving ends it at once anyway).
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a joining thread hands to JavaScript.
struct Parts {
    sender: EndpointSender<BytesMessage>,
    rx: EndpointReceiver<BytesMessage>,
    events: Arc<Events>,
}

/// A duration from milliseconds given by JavaScript: `None` for no limit.
fn millis(ms: Option<f64>, what: &str) -> std::result::Result<Option<Duration>, Failure> {
    match ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(ms) if ms == f64::INFINITY => Ok(None),
        Some(ms) => Err(Failure::invalid(format!(
            "{what} must be a number of milliseconds >= 0, not {ms}"
        ))),
    }
}

/// Joins bus `bus` as `label`, on a thread of its own; `done(code,
/// message, endpoint)` is called on this thread when it has joined or
/// failed. `on_event` is the endpoint's event function.
#[allow(clippy::too_many_arguments)]
#[napi(catch_unwind)]
pub fn join(
    bus: String,
    label: Vec<String>,
    token: String,
    timeout_ms: Option<f64>,
    controller_affinity: bool,
    done: Function<JoinArgs, ()>,
    on_event: Function<Event, ()>,
) -> Result<()> {
    let timeout = millis(timeout_ms, "timeoutMs")?;
    let mut options = Options::new(bus, Label::new(label), token);
    options.controller_affinity = controller_affinity;
    let events: Events = on_event
        .build_threadsafe_function::<Outcome>()
        .weak::<true>()
        .build_callback(|ctx| {
            let (kind, id) = (ctx.value.kind, ctx.value.id);
            // The operation still ends when its messages cannot be made
            // into JavaScript values (out of memory): with that error.
            Ok(ctx
                .value
                .into_js(&ctx.env)
                .unwrap_or_else(|f| Event::failed(kind, id, f)))
        })
        .map_err(Failure::from)?;
    let events = Arc::new(events);
    let joined: Joined = done
        .build_threadsafe_function::<std::result::Result<Parts, Failure>>()
        .build_callback(|ctx| {
            Ok(FnArgs::from(match ctx.value {
                Ok(parts) => (None, None, Some(NativeEndpoint::new(parts))),
                Err(f) => (Some(f.code.to_string()), Some(f.message), None),
            }))
        })
        .map_err(Failure::from)?;
    std::thread::Builder::new()
        .name("busbar-node-join".into())
        .spawn(move || {
            let result = crate::no_panic(|| {
                let (sender, rx) = busbar::join::<BytesMessage, BytesMessage>(options, timeout)?;
                Ok(Parts { sender, rx, events })
            });
            joined.call(result, ThreadsafeFunctionCallMode::NonBlocking);
        })
        .map_err(|e| Failure::new("IO", format!("cannot start a thread to join: {e}")))?;
    Ok(())
}

/// Sends `data` (format `format`) from endpoint `handle` where its last
/// [`NativeEndpoint::send`] went, if that send's selector `key` is `key`,
/// on the JavaScript thread: 1 when the message was handed over; 0 when
/// nothing was sent and `send` must do it (another key, or the message
/// would have to wait for room: `send` hands it to the sending thread).
/// Errors as `send`'s. The path of a stream of messages to one place
/// without attachments, called once per message: JavaScript's
/// `native.sendSame(handle, key, data, format)`, defined with Node-API
/// itself (`ffi::raw`), which costs a fraction of napi's wrapper of a
/// method of twelve arguments, or of a function.
pub fn send_same(
    handle: u32,
    key: u32,
    data: &[u8],
    format: u32,
) -> std::result::Result<u32, Failure> {
    let format = u16::try_from(format)
        .map_err(|_| Failure::invalid(format!("format {format} is not a 16-bit number")))?;
    FAST.with(|f| {
        let f = f.borrow();
        let e = fast_entry(&f, handle).ok_or_else(Failure::closed)?;
        let Some((k, sel)) = &e.selector else {
            return Ok(0);
        };
        let waits = sel.backpressure.unwrap_or_default() == Backpressure::Block;
        if *k != key || (waits && sel.mode == busbar::SelectorMode::Multicast) {
            return Ok(0);
        }
        // Copied into a buffer the endpoint keeps: no allocation per message.
        match e.sender.try_send_bytes(sel.clone(), format, data) {
            Ok(()) => Ok(1),
            Err(busbar::SendError::Full { .. }) if waits => Ok(0),
            Err(err) => Err(Failure::from(err)),
        }
    })
}

/// The entry of endpoint `handle` in [`FAST`].
fn fast_entry(fast: &[(u32, Fast)], handle: u32) -> Option<&Fast> {
    fast.iter().find(|(h, _)| *h == handle).map(|(_, e)| e)
}

/// Runs `f` with the receiving side of endpoint `handle`.
fn receiving<T>(
    handle: u32,
    f: impl FnOnce(&mut Receiving) -> std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    FAST.with(|fast| {
        let mut fast = fast.borrow_mut();
        bury(&mut fast);
        let e = fast
            .iter_mut()
            .find(|(h, _)| *h == handle)
            .ok_or_else(Failure::closed)?;
        f(&mut e.1.receiving)
    })
}

/// Up to `max` messages already there, taken without waiting into `slab`
/// from `at` on (see `Receiving::take_into`), on the JavaScript thread:
/// JavaScript's `native.takeInto(handle, slab, at, max)`, defined with
/// Node-API itself (`ffi::raw`) as [`send_same`] is: called once per batch.
pub fn take_into<'env>(
    env: &'env Env,
    handle: u32,
    slab: &mut [u8],
    at: u32,
    max: u32,
) -> std::result::Result<Taken<'env>, Failure> {
    receiving(handle, |r| {
        r.take_into(env, slab, at as usize, max as usize)
    })
}

/// What the sending thread does.
enum SendJob {
    /// A send that has to wait for room (or comes after one that did).
    Send { id: u32, msg: Message<BytesMessage> },
    /// An answer to a request.
    Reply {
        id: u32,
        handle: busbar::ReplyHandle,
        payload: BytesMessage,
    },
}

/// What [`send_same`] needs of an endpoint, found by the endpoint's
/// number: napi-rs guards every call of a class's method (a process-wide
/// lock and map of borrows, about 0.2 µs a call, measured), so the path
/// taken once per message is a free function.
struct Fast {
    sender: EndpointSender<BytesMessage>,
    /// The receiving side ([`take_into`] and the methods that wait).
    receiving: Receiving,
    /// The last selector `send` made, with the key index.js gave the
    /// arguments it was made from.
    selector: Option<(u32, Selector)>,
}

thread_local! {
    /// The endpoints of this JavaScript thread, by number (an endpoint
    /// lives on the thread that joined: Node-API objects do not move).
    /// (A list: a thread has an endpoint or two, found faster by
    /// looking than by hashing.)
    static FAST: RefCell<Vec<(u32, Fast)>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// Endpoints closed while [`FAST`] was borrowed: removed from it by
    /// the next one who borrows it mutably ([`bury`]).
    static DEAD: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Removes the endpoints in [`DEAD`] from `fast`.
fn bury(fast: &mut Vec<(u32, Fast)>) {
    let dead = DEAD.with(|d| std::mem::take(&mut *d.borrow_mut()));
    if !dead.is_empty() {
        fast.retain(|(h, _)| !dead.contains(h));
    }
}

/// The next endpoint's number (unique in the process).
static NEXT_HANDLE: AtomicU32 = AtomicU32::new(1);

/// One endpoint on a bus (index.js's `Endpoint` wraps it).
#[napi]
pub struct NativeEndpoint {
    sender: Option<EndpointSender<BytesMessage>>,
    id: EndpointId,
    events: Arc<Events>,
    send_jobs: Option<mpsc::Sender<SendJob>>,
    /// Whether `events` is referenced now.
    kept_alive: bool,
    /// Its number in [`FAST`].
    handle: u32,
}

/// One endpoint of the directory.
#[napi(object, object_from_js = false)]
pub struct EndpointInfo {
    /// Its id (16 hex digits).
    pub id: String,
    /// Its label's strings.
    pub label: Vec<String>,
    /// Its process.
    pub pid: u32,
    /// Its user.
    pub uid: u32,
    /// Whether it hosts the bus controller.
    pub is_controller: bool,
    /// Bytes written to it that it has not read, as last reported.
    pub queued_bytes: f64,
}

/// Which policy a number from index.js names (0: the endpoint's).
fn policy(n: u32) -> std::result::Result<Option<Backpressure>, Failure> {
    match n {
        0 => Ok(None),
        1 => Ok(Some(Backpressure::Block)),
        2 => Ok(Some(Backpressure::DropNewest)),
        3 => Ok(Some(Backpressure::FailFast)),
        n => Err(Failure::invalid(format!("unknown backpressure policy {n}"))),
    }
}

/// Where a message goes: a label expression, or exactly one endpoint.
fn selector(
    to: &str,
    endpoint: Option<&str>,
    multicast: bool,
    ttl_ms: f64,
    backpressure: u32,
    require_receiver: bool,
) -> std::result::Result<Selector, Failure> {
    let mut s = match endpoint {
        Some(hex) => {
            let id = u64::from_str_radix(hex, 16)
                .map_err(|_| Failure::invalid(format!("{hex:?} is not an endpoint id")))?;
            Selector::endpoint(EndpointId(id))
        }
        None if multicast => Selector::multicast(labelop::parse(to)?),
        None => Selector::unicast(labelop::parse(to)?),
    };
    if let Some(ttl) = millis(Some(ttl_ms), "ttlMs")? {
        s = s.ttl(ttl);
    }
    if let Some(p) = policy(backpressure)? {
        s = s.backpressure(p);
    }
    if require_receiver {
        s = s.require_receiver();
    }
    Ok(s)
}

/// A message with copies of the caller's descriptors and handles to its
/// regions (the caller keeps its own).
fn message(
    selector: Selector,
    data: &[u8],
    format: u32,
    fds: &[i64],
    regions: &[ClassInstance<Region>],
) -> std::result::Result<Message<BytesMessage>, Failure> {
    let format = u16::try_from(format)
        .map_err(|_| Failure::invalid(format!("format {format} is not a 16-bit number")))?;
    let mut msg = Message::new(selector, BytesMessage::new(format, data.to_vec()));
    for fd in fds {
        msg.objects.push(Object::new(crate::ffi::dup_fd(*fd)?));
    }
    for r in regions {
        msg.memory_regions.push(r.handle()?);
    }
    Ok(msg)
}

impl NativeEndpoint {
    fn new(parts: Parts) -> NativeEndpoint {
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        let fast = Fast {
            sender: parts.sender.clone(),
            receiving: Receiving::new(parts.rx),
            selector: None,
        };
        FAST.with(|f| {
            let mut f = f.borrow_mut();
            bury(&mut f);
            f.push((handle, fast));
        });
        NativeEndpoint {
            id: parts.sender.id(),
            sender: Some(parts.sender),
            events: parts.events,
            send_jobs: None,
            kept_alive: false,
            handle,
        }
    }

    /// The selector made for key `key` by the last send, if that was it.
    fn selector_for(&self, key: u32) -> Option<Selector> {
        FAST.with(|f| {
            fast_entry(&f.borrow(), self.handle)
                .and_then(|e| e.selector.as_ref())
                .filter(|(k, _)| *k == key)
                .map(|(_, s)| s.clone())
        })
    }

    fn sender(&self) -> std::result::Result<&EndpointSender<BytesMessage>, Failure> {
        self.sender.as_ref().ok_or_else(Failure::closed)
    }

    fn emitter(&self) -> impl Fn(Outcome) + Send + 'static {
        let events = Arc::clone(&self.events);
        move |o| {
            // Fails only while Node tears the environment down; the
            // outcome (its descriptors, its regions) is dropped then.
            events.call(o, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// The sending thread's queue, started on first use.
    fn send_queue(&mut self) -> std::result::Result<&mpsc::Sender<SendJob>, Failure> {
        if self.send_jobs.is_none() {
            let sender = self.sender()?.clone();
            let emit = self.emitter();
            let (tx, jobs) = mpsc::channel::<SendJob>();
            std::thread::Builder::new()
                .name("busbar-node-send".into())
                .spawn(move || {
                    while let Ok(job) = jobs.recv() {
                        let (id, r) = match job {
                            SendJob::Send { id, msg } => {
                                (id, crate::no_panic(|| Ok(sender.send(msg)?)))
                            }
                            SendJob::Reply {
                                id,
                                handle,
                                payload,
                            } => (
                                id,
                                crate::no_panic(|| Ok(sender.reply_with(&handle, payload)?)),
                            ),
                        };
                        emit(Outcome {
                            kind: "send",
                            id,
                            result: r.map(|()| Vec::new()),
                        });
                    }
                })
                .map_err(|e| Failure::new("IO", format!("cannot start the sending thread: {e}")))?;
            self.send_jobs = Some(tx);
        }
        self.send_jobs.as_ref().ok_or_else(Failure::closed)
    }

    fn shut(&mut self) {
        // (Not there while the thread is torn down: dropped with it.)
        // Taken out first, dropped after: dropping closes the receiver.
        // A finalizer that ran while the list was borrowed (the garbage
        // collector, while a batch makes JavaScript values) leaves the
        // entry to the next one who borrows it.
        let handle = self.handle;
        let gone = FAST
            .try_with(|f| match f.try_borrow_mut() {
                Ok(mut f) => {
                    let at = f.iter().position(|(h, _)| *h == handle);
                    at.map(|at| f.swap_remove(at))
                }
                Err(_) => {
                    let _ = DEAD.try_with(|d| d.borrow_mut().push(handle));
                    None
                }
            })
            .ok()
            .flatten();
        drop(gone);
        self.sender = None;
        self.send_jobs = None;
    }
}

impl Drop for NativeEndpoint {
    fn drop(&mut self) {
        self.shut();
    }
}

#[napi]
impl NativeEndpoint {
    /// This endpoint's id (16 hex digits).
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.id.to_string()
    }

    /// Whether it hosts the bus controller.
    #[napi(getter)]
    pub fn is_controller(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| s.is_controller())
    }

    /// References the endpoint's thread-safe function while index.js waits
    /// for an outcome (the process stays up), and unreferences it after.
    #[napi(catch_unwind)]
    pub fn keep_alive(&mut self, env: &Env, keep: bool) -> Result<()> {
        if keep != self.kept_alive {
            crate::ffi::tsfn_keep_alive(env, self.events.raw(), keep)?;
            self.kept_alive = keep;
        }
        Ok(())
    }

    /// This endpoint's number, for [`send_same`].
    #[napi(getter)]
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Sends a message. Returns `true` when it was handed over here and
    /// now; `false` when it went to the sending thread (it had to wait for
    /// room, or `queued` says earlier ones are there): its outcome then
    /// comes as a `send` event with `id`. `key` names the selector
    /// arguments (index.js gives the same key for the same ones): the
    /// selector made for the last key is reused, and [`send_same`] sends
    /// with it.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn send(
        &mut self,
        id: u32,
        key: u32,
        to: String,
        endpoint: Option<String>,
        data: &[u8],
        format: u32,
        multicast: bool,
        ttl_ms: f64,
        fds: Vec<i64>,
        regions: Vec<ClassInstance<Region>>,
        backpressure: u32,
        require_receiver: bool,
        queued: bool,
    ) -> Result<bool> {
        self.sender()?;
        let sel = match self.selector_for(key) {
            Some(sel) => sel,
            None => {
                let sel = selector(
                    &to,
                    endpoint.as_deref(),
                    multicast,
                    ttl_ms,
                    backpressure,
                    require_receiver,
                )?;
                FAST.with(|f| {
                    let mut f = f.borrow_mut();
                    if let Some((_, e)) = f.iter_mut().find(|(h, _)| *h == self.handle) {
                        e.selector = Some((key, sel.clone()));
                    }
                });
                sel
            }
        };
        let waits = sel.backpressure.unwrap_or_default() == Backpressure::Block;
        // A multicast that `try_send` finds partly full has gone to some
        // receivers already, so one that may wait goes to the thread whole.
        let whole_on_thread = waits && multicast;
        let at_once = !queued && !whole_on_thread;
        if at_once {
            let msg = message(sel.clone(), data, format, &fds, &regions)?;
            match self.sender()?.try_send(msg) {
                Ok(()) => return Ok(true),
                Err(busbar::SendError::Full { .. }) if waits => {}
                Err(e) => return Err(Failure::from(e).into()),
            }
        }
        // Rebuilt: the message `try_send` refused was dropped (its copies
        // of the descriptors closed, its region counts given back).
        let msg = message(sel, data, format, &fds, &regions)?;
        self.send_queue()?
            .send(SendJob::Send { id, msg })
            .map_err(|_| Failure::closed())?;
        Ok(false)
    }

    /// Answers a request; the outcome comes as a `send` event with `id`.
    #[napi(catch_unwind)]
    pub fn reply(&mut self, id: u32, token: &ReplyToken, data: &[u8], format: u32) -> Result<()> {
        let format = u16::try_from(format)
            .map_err(|_| Failure::invalid(format!("format {format} is not a 16-bit number")))?;
        let job = SendJob::Reply {
            id,
            handle: token.handle.clone(),
            payload: BytesMessage::new(format, data.to_vec()),
        };
        self.send_queue()?
            .send(job)
            .map_err(|_| Failure::closed())?;
        Ok(())
    }

    /// Sends a request (unicast) and waits for its answer on a thread of
    /// its own; the answer comes as a `request` event with `id`.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn request(
        &mut self,
        id: u32,
        to: String,
        endpoint: Option<String>,
        data: &[u8],
        format: u32,
        ttl_ms: f64,
        fds: Vec<i64>,
        regions: Vec<ClassInstance<Region>>,
        timeout_ms: Option<f64>,
    ) -> Result<()> {
        let timeout = millis(timeout_ms, "timeoutMs")?.unwrap_or(NO_TIMEOUT);
        let sel = selector(&to, endpoint.as_deref(), false, ttl_ms, 0, false)?;
        let msg = message(sel, data, format, &fds, &regions)?;
        let sender = self.sender()?.clone();
        let emit = self.emitter();
        std::thread::Builder::new()
            .name("busbar-node-request".into())
            .spawn(move || {
                let result = crate::no_panic(|| {
                    let answer = sender.request::<BytesMessage>(msg, timeout)?;
                    Ok(vec![Received::new(answer, &mut SelectorText::default())])
                });
                drop(sender);
                emit(Outcome {
                    kind: "request",
                    id,
                    result,
                });
            })
            .map_err(|e| Failure::new("IO", format!("cannot start a request thread: {e}")))?;
        Ok(())
    }

    /// Watches the shared-memory rings for up to `micros` µs on this
    /// thread, without a system call, after `takeInto` found nothing:
    /// whether a message may be there now (`takeInto` takes it). When not,
    /// the descriptor `watch` polls is armed again. index.js spins in short
    /// slices, one per turn of the event loop, so timers and I/O go on.
    #[napi(catch_unwind)]
    pub fn spin(&mut self, micros: f64) -> Result<bool> {
        if self.sender.is_none() {
            return Err(Failure::closed().into());
        }
        let spin = millis(Some(micros / 1000.0), "spin")?.unwrap_or(Duration::ZERO);
        Ok(receiving(self.handle, |r| r.spin(spin))?)
    }

    /// Watches for messages on this thread's event loop, after `takeInto`
    /// found none (`how` 1): `onReadable` (given with the first watch) is
    /// called whenever a message may be there, and the process stays
    /// alive; goes on watching without keeping the process alive (2: nobody
    /// waits now; index.js stops when called back with nobody waiting), or
    /// stops (0).
    #[napi(catch_unwind)]
    pub fn watch(
        &mut self,
        env: &Env,
        how: u32,
        on_readable: Option<Function<(), ()>>,
    ) -> Result<()> {
        if self.sender.is_none() {
            return Err(Failure::closed().into());
        }
        let how = match how {
            0 => Watch::Stop,
            1 => Watch::Start,
            2 => Watch::Idle,
            n => return Err(Failure::invalid(format!("unknown watch mode {n}")).into()),
        };
        receiving(self.handle, |r| r.watch(env, how, on_readable.as_ref()))?;
        Ok(())
    }

    /// The directory: every endpoint on the bus, this one included.
    #[napi(catch_unwind)]
    pub fn endpoints(&self) -> Result<Vec<EndpointInfo>> {
        Ok(self
            .sender()?
            .endpoints()
            .into_iter()
            .map(|e| EndpointInfo {
                id: e.id.to_string(),
                label: e.label.iter().map(str::to_string).collect(),
                pid: e.pid,
                uid: e.uid,
                is_controller: e.is_controller,
                queued_bytes: e.queued_bytes as f64,
            })
            .collect())
    }

    /// Leaves the bus (idempotent): a waiting receive ends with
    /// `DISCONNECTED`; sends already handed to the sending thread finish.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.shut();
    }
}
