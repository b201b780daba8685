//! The parent's side of each measurement: spawn the processes in the right
//! order, pass bootstrap names along, start them together, collect results.

use crate::measure::{
    cpu_ticks, memory_of, now_ns, ticks_per_second, Fields, Memory, Percentiles, Plan,
    MEMORY_LINKS, SLEEPING_GAP, SLEEPING_SIZE,
};
use crate::peers::{Peer, Shape};
use crate::proc::{Args, Proc};
use crate::Res;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SLACK: Duration = Duration::from_secs(60);

/// Messages per second through a layout, with what got lost on the way.
#[derive(Debug, Clone)]
pub struct Rate {
    /// Messages each receiver got per second (for one receiver: all of them).
    pub per_receiver: f64,
    /// Messages delivered per second, over all receivers.
    pub deliveries: f64,
    /// Bytes of payload delivered per second, over all receivers.
    pub bytes: f64,
    /// Messages sent that no receiver counted (0 when all arrived).
    pub lost: u64,
    /// Messages delivered, in all.
    pub delivered: u64,
    /// CPU time (user + system) all the senders and receivers used, each
    /// from the start of its loop to its result, in nanoseconds.
    pub cpu_ns: u64,
    /// What the receivers reported amiss (gaps, reordering, wrong sizes,
    /// missing end markers, time-outs), if anything.
    pub trouble: Option<String>,
}

/// A bus name nobody else uses.
pub fn fresh_bus(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "bb{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn base_args(peer: Peer, shape: Shape, size: usize, plan: &Plan) -> Args {
    let processes = shape.receivers + shape.senders;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Args::default()
        .set(
            "bus",
            fresh_bus(peer.key().split('-').next().unwrap_or("x")),
        )
        .set("size", size)
        .set("receivers", shape.receivers)
        .set("senders", shape.senders)
        .set("multicast", u8::from(shape.multicast))
        .set("crowded", u8::from(processes > cores))
        .set("give_up_ms", plan.give_up.as_millis())
}

/// Waits for `p`'s READY, forwarding each `NAME` it prints to `others` as
/// `PEER`.
fn ready(p: &mut Proc, others: &mut [Proc]) -> Res<()> {
    p.expect("READY", READY_TIMEOUT, &mut |line| {
        if let Some(name) = line.strip_prefix("NAME ") {
            for o in others.iter_mut() {
                o.tell(&format!("PEER {name}"))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Spawns `n` processes in `role` at once (the `index` argument tells them
/// apart), then waits until each is ready.
fn start(peer: Peer, role: &str, args: &Args, n: usize, others: &mut [Proc]) -> Res<Vec<Proc>> {
    let mut group = Vec::new();
    for i in 0..n {
        group.push(Proc::spawn(
            peer.key(),
            role,
            &args.clone().set("index", i),
        )?);
    }
    for p in &mut group {
        ready(p, others)?;
    }
    Ok(group)
}

/// Receivers and senders, spawned in the order the peer needs.
struct Layout {
    receivers: Vec<Proc>,
    senders: Vec<Proc>,
}

fn spawn_layout(peer: Peer, shape: Shape, rx: &Args, tx: &Args) -> Res<Layout> {
    let mut l = Layout {
        receivers: Vec::new(),
        senders: Vec::new(),
    };
    let (rx_role, tx_role) = (rx.str("role")?, tx.str("role")?);
    if peer.senders_first(shape) {
        l.senders = start(peer, tx_role, tx, shape.senders, &mut [])?;
        l.receivers = start(peer, rx_role, rx, shape.receivers, &mut l.senders)?;
    } else {
        l.receivers = start(peer, rx_role, rx, shape.receivers, &mut [])?;
        l.senders = start(peer, tx_role, tx, shape.senders, &mut l.receivers)?;
    }
    for p in &mut l.receivers {
        p.tell("GO")?;
    }
    for p in &mut l.receivers {
        p.expect_only("SET", READY_TIMEOUT)?;
    }
    for p in &mut l.senders {
        p.tell("GO")?;
    }
    Ok(l)
}

/// One or more senders stream `size`-byte messages to one or more receivers.
pub fn stream(peer: Peer, shape: Shape, size: usize, plan: &Plan) -> Res<Rate> {
    let base = base_args(peer, shape, size, plan);
    let rx = base.clone().set("role", "sink");
    let tx = base
        .set("role", "source")
        .set("mode", "stream")
        .set("dur_ms", plan.stream.as_millis())
        .set("min", plan.min_count(size))
        .set(
            "max",
            (plan.max_deliveries / (shape.receivers * shape.senders) as u64)
                .max(plan.min_count(size)),
        );
    let mut l = spawn_layout(peer, shape, &rx, &tx)?;
    let wait = plan.stream + SLACK;
    let mut sent = 0;
    let mut start = u64::MAX;
    let mut cpu_ns = 0;
    for p in &mut l.senders {
        let f = Fields::parse(&p.expect_only("RESULT", wait)?);
        sent += f.num("sent")?;
        start = start.min(f.num("start")?);
        cpu_ns += f.num("cpu_ns")?;
    }
    let (mut delivered, mut last, mut trouble) = (0, 0, Vec::new());
    for p in &mut l.receivers {
        let f = Fields::parse(&p.expect_only("RESULT", wait)?);
        delivered += f.num("count")?;
        cpu_ns += f.num("cpu_ns")?;
        last = last.max(f.num("last")?);
        for k in ["gaps", "disorder", "bad", "timeout"] {
            if f.num(k)? > 0 {
                trouble.push(format!("{k}={}", f.num(k)?));
            }
        }
        if f.num("ends")? < shape.senders as u64 {
            trouble.push(format!("ends={}", f.num("ends")?));
        }
    }
    let expected = sent
        * if shape.multicast {
            shape.receivers as u64
        } else {
            1
        };
    if delivered == 0 {
        return Err(format!("nothing arrived ({} sent; {})", sent, trouble.join(" ")).into());
    }
    let seconds = last.saturating_sub(start) as f64 / 1e9;
    let deliveries = delivered as f64 / seconds;
    Ok(Rate {
        per_receiver: deliveries / shape.receivers as f64,
        deliveries,
        bytes: deliveries * size as f64,
        lost: expected.saturating_sub(delivered),
        delivered,
        cpu_ns,
        trouble: (!trouble.is_empty()).then(|| trouble.join(" ")),
    })
}

/// Ping-pong: one-way latency as half of each round trip.
pub fn latency(peer: Peer, size: usize, plan: &Plan) -> Res<Percentiles> {
    let shape = Shape {
        receivers: 1,
        senders: 1,
        multicast: false,
    };
    let base = base_args(peer, shape, size, plan);
    let rx = base.clone().set("role", "pong");
    let tx = base
        .set("role", "ping")
        .set("warmup", plan.latency_warmup)
        .set("min", plan.latency_min)
        .set("dur_ms", plan.latency.as_millis());
    let mut l = spawn_layout(peer, shape, &rx, &tx)?;
    let line = l.senders[0].expect_only("RESULT", plan.latency + SLACK)?;
    l.receivers[0].expect_only("RESULT", SLACK)?;
    Percentiles::from_fields(&Fields::parse(&line))
}

/// CPU use of a receiver that has its link up and nothing to read, in
/// percent of one core.
pub fn idle_cpu(peer: Peer, plan: &Plan) -> Res<f64> {
    let shape = Shape {
        receivers: 1,
        senders: 1,
        multicast: false,
    };
    let base = base_args(peer, shape, 64, plan);
    let rx = base.clone().set("role", "sink");
    let tx = base.set("role", "source").set("mode", "one");
    let mut l = spawn_layout(peer, shape, &rx, &tx)?;
    l.receivers[0].expect_only("FIRST", SLACK)?;
    std::thread::sleep(Duration::from_millis(200));
    let pid = l.receivers[0].pid();
    let (c0, t0) = (cpu_ticks(pid)?, now_ns());
    std::thread::sleep(plan.idle);
    let (c1, t1) = (cpu_ticks(pid)?, now_ns());
    l.senders[0].tell("STOP")?;
    l.receivers[0].expect_only("RESULT", SLACK)?;
    let busy = (c1 - c0) as f64 / ticks_per_second() as f64;
    Ok(100.0 * busy / ((t1 - t0) as f64 / 1e9))
}

/// Ping-pong at [`SLEEPING_SIZE`] where the pinger waits [`SLEEPING_GAP`]
/// before each ping, so that the ponger has gone back to sleep (past any
/// spin): one-way latency of a message that wakes its receiver, from the
/// pinger's `send` to the return of the ponger's receive.
pub fn sleeping_latency(peer: Peer, plan: &Plan) -> Res<Percentiles> {
    let shape = Shape {
        receivers: 1,
        senders: 1,
        multicast: false,
    };
    let gap_us = SLEEPING_GAP.as_micros();
    let base = base_args(peer, shape, SLEEPING_SIZE, plan).set("gap_us", gap_us);
    let rx = base.clone().set("role", "pong");
    let tx = base
        .set("role", "ping")
        .set("warmup", plan.latency_warmup)
        .set("min", plan.sleeping_min)
        .set("dur_ms", plan.latency.as_millis());
    let mut l = spawn_layout(peer, shape, &rx, &tx)?;
    let most = plan.sleeping_min + plan.latency_warmup;
    let wait = plan.latency + SLEEPING_GAP * most as u32 * 2 + SLACK;
    let line = l.senders[0].expect_only("RESULT", wait)?;
    l.receivers[0].expect_only("RESULT", SLACK)?;
    Percentiles::from_fields(&Fields::parse(&line))
}

/// The memory of a receiver that [`MEMORY_LINKS`] senders (each its own
/// process) have sent one 1 KiB message each, read once all have arrived
/// and nothing more comes.
pub fn idle_memory(peer: Peer, plan: &Plan) -> Res<Memory> {
    let shape = Shape {
        receivers: 1,
        senders: MEMORY_LINKS,
        multicast: false,
    };
    let base = base_args(peer, shape, 1 << 10, plan);
    let rx = base
        .clone()
        .set("role", "sink")
        .set("first_after", MEMORY_LINKS);
    let tx = base.set("role", "source").set("mode", "one");
    let mut l = spawn_layout(peer, shape, &rx, &tx)?;
    l.receivers[0].expect_only("FIRST", SLACK)?;
    // Let whatever a first message sets in motion settle.
    std::thread::sleep(Duration::from_millis(200));
    let memory = memory_of(l.receivers[0].pid())?;
    for p in &mut l.senders {
        p.tell("STOP")?;
    }
    l.receivers[0].expect_only("RESULT", SLACK)?;
    Ok(memory)
}
