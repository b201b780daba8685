//! iceoryx2 0.10: a publish-subscribe service of `[u8]` slices in shared
//! memory (`loan_slice_uninit` → `write_from_slice` → `send`; the receiver
//! reads the sample in place). No sample is dropped: safe overflow is off
//! and the publisher retries until delivered. Each subscriber's queue holds
//! up to 256 KiB of samples (at least 2, at most 256 samples).
//!
//! Two ways to wait for a sample:
//! - spin: the receiver polls `receive()` in a loop and burns a core. It
//!   calls `sched_yield` after every 1024 empty polls, so that a sender
//!   that shares its core still gets to run (and after every empty poll
//!   when the layout has more processes than the machine has cores);
//! - event: the sender also `notify()`s an event service after each send,
//!   and a receiver with nothing to read sleeps in `Listener::timed_wait`.

use super::{wait_until, End};
use crate::proc::{Args, Ctl};
use crate::Res;
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_BYTES: usize = 256 << 10;
/// Empty polls between two `sched_yield`s of a spinning receiver.
const SPINS: u32 = 1024;

struct Iox {
    // Ports first: they must go before the node that holds them.
    publisher: Option<Publisher<ipc::Service, [u8], ()>>,
    subscriber: Option<Subscriber<ipc::Service, [u8], ()>>,
    notifier: Option<Notifier<ipc::Service>>,
    listener: Option<Listener<ipc::Service>>,
    /// The service we publish on, to see who subscribes.
    out: Option<PubSub<ipc::Service, [u8], ()>>,
    _in: Option<PubSub<ipc::Service, [u8], ()>>,
    /// Subscribers to wait for at `GO` (the ponger starts before the pinger).
    wait_at_go: usize,
    /// Publishers the subscriber connects to at `GO`.
    publishers: usize,
    crowded: bool,
    _node: Node<ipc::Service>,
}

struct Spec {
    receivers: usize,
    senders: usize,
    size: usize,
}

fn pubsub(node: &Node<ipc::Service>, name: &str, s: &Spec) -> Res<PubSub<ipc::Service, [u8], ()>> {
    let name: ServiceName = name.try_into().map_err(|e| format!("{e:?}"))?;
    let queue = (QUEUE_BYTES / s.size.max(1)).clamp(2, 256);
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .history_size(0)
        .subscriber_max_buffer_size(queue)
        .subscriber_max_borrowed_samples(2)
        .max_subscribers(s.receivers)
        .max_publishers(s.senders)
        .max_nodes(s.receivers + s.senders + 2)
        .open_or_create()
        .map_err(|e| format!("service {name:?}: {e:?}").into())
}

fn event(
    node: &Node<ipc::Service>,
    name: &str,
    s: &Spec,
) -> Res<iceoryx2::service::port_factory::event::PortFactory<ipc::Service>> {
    let name: ServiceName = name.try_into().map_err(|e| format!("{e:?}"))?;
    node.service_builder(&name)
        .event()
        .max_listeners(s.receivers)
        .max_notifiers(s.senders)
        .max_nodes(s.receivers + s.senders + 2)
        .open_or_create()
        .map_err(|e| format!("event {name:?}: {e:?}").into())
}

pub fn open(role: &str, args: &Args, _ctl: &Ctl, events: bool) -> Res<Box<dyn End>> {
    set_log_level(LogLevel::Error);
    let bus = args.str("bus")?;
    let spec = Spec {
        receivers: args.num("receivers")? as usize,
        senders: args.num("senders")? as usize,
        size: args.num("size")? as usize,
    };
    let crowded = args.num("crowded")? == 1;
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| format!("node: {e:?}"))?;
    // Topics: "fwd" carries source → sink and ping → pong; "back" pong → ping.
    let (pub_topic, sub_topic) = match role {
        "sink" => (None, Some("fwd")),
        "source" => (Some("fwd"), None),
        "pong" => (Some("back"), Some("fwd")),
        "ping" => (Some("fwd"), Some("back")),
        _ => return Err(format!("iceoryx2 has no role {role}").into()),
    };
    let mut end = Iox {
        publisher: None,
        subscriber: None,
        notifier: None,
        listener: None,
        out: None,
        _in: None,
        wait_at_go: 0,
        publishers: if role == "sink" { spec.senders } else { 1 },
        crowded,
        _node: node,
    };
    let node = &end._node;
    if let Some(topic) = sub_topic {
        let service = pubsub(node, &format!("{bus}/{topic}"), &spec)?;
        end.subscriber = Some(
            service
                .subscriber_builder()
                .create()
                .map_err(|e| format!("subscriber: {e:?}"))?,
        );
        if events {
            let ev = event(node, &format!("{bus}/{topic}/ev"), &spec)?;
            end.listener = Some(
                ev.listener_builder()
                    .create()
                    .map_err(|e| format!("listener: {e:?}"))?,
            );
        }
        end._in = Some(service);
    }
    if let Some(topic) = pub_topic {
        let service = pubsub(node, &format!("{bus}/{topic}"), &spec)?;
        end.publisher = Some(
            service
                .publisher_builder()
                .initial_max_slice_len(spec.size)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .map_err(|e| format!("publisher: {e:?}"))?,
        );
        if events {
            let ev = event(node, &format!("{bus}/{topic}/ev"), &spec)?;
            end.notifier = Some(
                ev.notifier_builder()
                    .create()
                    .map_err(|e| format!("notifier: {e:?}"))?,
            );
        }
        end.out = Some(service);
    }
    let want = if role == "source" { spec.receivers } else { 1 };
    if role == "pong" {
        end.wait_at_go = want;
    } else if pub_topic.is_some() {
        end.wait_subscribers(want)?;
    }
    Ok(Box::new(end))
}

impl Iox {
    fn wait_subscribers(&self, n: usize) -> Res<()> {
        let service = self.out.as_ref().ok_or("no service")?;
        wait_until(&format!("{n} subscribers"), CONNECT_TIMEOUT, || {
            service.dynamic_config().number_of_subscribers() >= n
        })?;
        // Open the connections now: a sample sent to a subscriber that has
        // not connected yet is dropped once its queue is full.
        if let Some(p) = &self.publisher {
            p.update_connections()
                .map_err(|e| format!("publisher connections: {e:?}"))?;
        }
        Ok(())
    }

    fn connect_publishers(&self) -> Res<()> {
        let (Some(service), Some(sub)) = (&self._in, &self.subscriber) else {
            return Ok(());
        };
        let n = self.publishers;
        wait_until(&format!("{n} publishers"), CONNECT_TIMEOUT, || {
            service.dynamic_config().number_of_publishers() >= n
        })?;
        sub.update_connections()
            .map_err(|e| format!("subscriber connections: {e:?}").into())
    }
}

impl End for Iox {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        let publisher = self.publisher.as_ref().ok_or("not a sender")?;
        let sample = publisher
            .loan_slice_uninit(data.len())
            .map_err(|e| format!("loan: {e:?}"))?;
        sample
            .write_from_slice(data)
            .send()
            .map_err(|e| format!("send: {e:?}"))?;
        if let Some(n) = &self.notifier {
            n.notify().map_err(|e| format!("notify: {e:?}"))?;
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let sub = self.subscriber.as_ref().ok_or("not a receiver")?;
        let deadline = Instant::now() + timeout;
        let mut polls = 0u32;
        loop {
            if let Some(sample) = sub.receive().map_err(|e| format!("receive: {e:?}"))? {
                f(sample.payload());
                return Ok(true);
            }
            if let Some(listener) = &self.listener {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                listener
                    .timed_wait(|_| {}, left)
                    .map_err(|e| format!("wait: {e:?}"))?;
                continue;
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(SPINS) && Instant::now() >= deadline {
                return Ok(false);
            }
            if self.crowded || polls.is_multiple_of(SPINS) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn on_go(&mut self) -> Res<()> {
        if self.wait_at_go > 0 {
            self.wait_subscribers(self.wait_at_go)?;
        }
        self.connect_publishers()
    }
}
