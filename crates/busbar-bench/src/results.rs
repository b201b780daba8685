//! One run: every measurement for every selected peer, with a progress bar.

use crate::join_failover::{run_failover, run_join, FailoverTimes, JoinTimes};
use crate::machine::{loadavg, unix_now, Machine};
use crate::measure::{
    Memory, Percentiles, Plan, CPU_SIZE, FAN_IN, FAN_OUT, FAN_SIZE, LATENCY_SIZES, SIZES,
};
use crate::peers::{Peer, Shape, ALL};
use crate::scenario::{self, Rate};
use crate::Res;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// One measurement's outcome.
#[derive(Debug, Clone)]
pub enum Cell<T> {
    Ok(T),
    /// Not applicable: the peer's model has no such thing.
    Na(&'static str),
    /// Tried and failed; the error.
    Failed(String),
    /// Not run this time (`--scenarios` left it out).
    Skipped,
}

/// What `--scenarios` accepts: the parts of a run, each a table (or row).
pub const SCENARIOS: [&str; 8] = [
    "throughput",
    "latency",
    "sleeping",
    "cpu",
    "idle",
    "memory",
    "fan",
    "join",
];

impl<T> Cell<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Cell::Ok(v) => Some(v),
            _ => None,
        }
    }
}

pub struct PeerRun {
    pub peer: Peer,
    /// Per size in [`SIZES`].
    pub throughput: Vec<Cell<Rate>>,
    /// Per size in [`LATENCY_SIZES`].
    pub latency: Vec<Cell<Percentiles>>,
    pub idle_cpu: Cell<f64>,
    /// One-way latency at 64 B of a receiver woken from its sleep.
    pub sleeping: Cell<Percentiles>,
    /// A 1 → 1 stream at [`CPU_SIZE`], for the CPU it costs.
    pub cpu: Cell<Rate>,
    /// A receiver with 32 links, idle.
    pub memory: Cell<Memory>,
    /// Per receiver count in [`FAN_OUT`].
    pub fan_out: Vec<Cell<Rate>>,
    pub fan_in: Cell<Rate>,
}

pub struct Run {
    pub command: String,
    pub plan: Plan,
    pub machine: Machine,
    pub started: u64,
    pub seconds: f64,
    pub load_before: String,
    pub load_after: String,
    pub peers: Vec<PeerRun>,
    pub join: Option<Cell<JoinTimes>>,
    pub failover: Option<Cell<FailoverTimes>>,
}

impl Run {
    /// Peers that ran, in table order.
    pub fn peer_names(&self) -> Vec<&'static str> {
        self.peers.iter().map(|p| p.peer.name()).collect()
    }
}

fn one_to_one() -> Shape {
    Shape {
        receivers: 1,
        senders: 1,
        multicast: false,
    }
}

/// Runs the scenarios `scenarios` selects (all when it is empty, see
/// [`SCENARIOS`]) for the peers `only` selects (all when it is empty).
pub fn collect(quick: bool, only: &[String], scenarios: &[String], command: String) -> Run {
    let wanted = |s: &str| scenarios.is_empty() || scenarios.iter().any(|w| w == s);
    let plan = Plan::new(quick);
    let started = unix_now();
    let load_before = loadavg();
    let t0 = Instant::now();
    let peers: Vec<Peer> = ALL
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| p.group() == o))
        .collect();
    let with_busbar = peers.contains(&Peer::Busbar) && wanted("join");
    let per_peer = [
        ("throughput", SIZES.len()),
        ("latency", LATENCY_SIZES.len()),
        ("sleeping", 1),
        ("cpu", 1),
        ("idle", 1),
        ("memory", 1),
        ("fan", FAN_OUT.len() + 1),
    ]
    .iter()
    .filter(|(s, _)| wanted(s))
    .map(|(_, n)| n)
    .sum::<usize>();
    let steps = peers.len() * per_peer + if with_busbar { 2 } else { 0 };
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let step = |what: String| {
        // BB_TRACE=1: when each step starts, on stderr.
        if std::env::var_os("BB_TRACE").is_some() {
            eprintln!("[{:7.2} s] {what}", t0.elapsed().as_secs_f64());
        }
        bar.set_message(what);
    };
    let mut runs = Vec::new();
    for peer in peers {
        let name = peer.name();
        let mut throughput = Vec::new();
        for size in SIZES {
            if !wanted("throughput") {
                throughput.push(Cell::Skipped);
                continue;
            }
            step(format!("{name}: throughput {}", crate::report::size(size)));
            throughput.push(attempt(peer, one_to_one(), || {
                scenario::stream(peer, one_to_one(), size, &plan)
            }));
            bar.inc(1);
        }
        let mut latency = Vec::new();
        for size in LATENCY_SIZES {
            if !wanted("latency") {
                latency.push(Cell::Skipped);
                continue;
            }
            step(format!("{name}: latency {}", crate::report::size(size)));
            latency.push(attempt(peer, one_to_one(), || {
                scenario::latency(peer, size, &plan)
            }));
            bar.inc(1);
        }
        let run_one = |what: &str, label: String| {
            let go = wanted(what);
            if go {
                step(format!("{name}: {label}"));
            }
            go
        };
        let sleeping = if run_one("sleeping", "sleeping receiver latency".into()) {
            let c = attempt(peer, one_to_one(), || {
                scenario::sleeping_latency(peer, &plan)
            });
            bar.inc(1);
            c
        } else {
            Cell::Skipped
        };
        let cpu = if run_one("cpu", "CPU cost".into()) {
            let c = attempt(peer, one_to_one(), || {
                scenario::stream(peer, one_to_one(), CPU_SIZE, &plan)
            });
            bar.inc(1);
            c
        } else {
            Cell::Skipped
        };
        let idle_cpu = if run_one("idle", "idle receiver CPU".into()) {
            let c = attempt(peer, one_to_one(), || scenario::idle_cpu(peer, &plan));
            bar.inc(1);
            c
        } else {
            Cell::Skipped
        };
        let memory = if run_one("memory", "receiver memory".into()) {
            let c = cell(scenario::idle_memory(peer, &plan));
            bar.inc(1);
            c
        } else {
            Cell::Skipped
        };
        let mut fan_out = Vec::new();
        for n in FAN_OUT {
            if !wanted("fan") {
                fan_out.push(Cell::Skipped);
                continue;
            }
            step(format!("{name}: multicast to {n}"));
            let shape = Shape {
                receivers: n,
                senders: 1,
                multicast: true,
            };
            fan_out.push(attempt(peer, shape, || {
                scenario::stream(peer, shape, FAN_SIZE, &plan)
            }));
            bar.inc(1);
        }
        let shape = Shape {
            receivers: 1,
            senders: FAN_IN,
            multicast: false,
        };
        let fan_in = if wanted("fan") {
            step(format!("{name}: {FAN_IN} senders into 1"));
            let c = attempt(peer, shape, || {
                scenario::stream(peer, shape, FAN_SIZE, &plan)
            });
            bar.inc(1);
            c
        } else {
            Cell::Skipped
        };
        runs.push(PeerRun {
            peer,
            throughput,
            latency,
            idle_cpu,
            sleeping,
            cpu,
            memory,
            fan_out,
            fan_in,
        });
    }
    let (mut join, mut failover) = (None, None);
    if with_busbar {
        step("busbar: join time".to_string());
        join = Some(cell(run_join(&plan)));
        bar.inc(1);
        step("busbar: failover after kill -9".to_string());
        failover = Some(cell(run_failover(&plan)));
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Run {
        command,
        plan,
        machine: Machine::read(),
        started,
        seconds: t0.elapsed().as_secs_f64(),
        load_before,
        load_after: loadavg(),
        peers: runs,
        join,
        failover,
    }
}

fn attempt<T>(peer: Peer, shape: Shape, f: impl FnOnce() -> Res<T>) -> Cell<T> {
    match peer.supports(shape) {
        Err(why) => Cell::Na(why),
        Ok(()) => cell(f()),
    }
}

fn cell<T>(r: Res<T>) -> Cell<T> {
    match r {
        Ok(v) => Cell::Ok(v),
        Err(e) => Cell::Failed(e.to_string()),
    }
}
