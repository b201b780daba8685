//! The tables (stdout and BENCHMARKS.md) and the text around them.

use crate::machine::utc;
use crate::measure::Percentiles;
use crate::measure::{
    Memory, CPU_SIZE, FAN_IN, FAN_SIZE, LATENCY_SIZES, MEMORY_LINKS, SIZES, SLEEPING_GAP,
    SLEEPING_SIZE,
};
use crate::peers::{is_busbar, Peer};
use crate::results::{Cell, PeerRun, Run};
use crate::scenario::Rate;
use std::fmt::Write;

/// `16 B`, `1 KiB`, `16 MiB`.
pub fn size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// Messages per second: `1.23 M/s`.
pub fn per_sec(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.1} /s")
    }
}

/// Bytes per second in powers of ten: `16.3 MB/s`.
pub fn bytes_per_sec(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} GB/s", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} MB/s", x / 1e6)
    } else {
        format!("{:.1} kB/s", x / 1e3)
    }
}

/// Nanoseconds as µs or ms.
pub fn dur(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// A cell's text; a failure or anomaly gets a mark and a numbered note.
fn show<T>(c: &Cell<T>, notes: &mut Vec<String>, what: &str, f: impl Fn(&T) -> String) -> String {
    match c {
        Cell::Ok(v) => f(v),
        Cell::Na(_) => "n/a".to_string(),
        Cell::Skipped => "–".to_string(),
        Cell::Failed(e) => {
            notes.push(format!("{what}: failed: {e}"));
            format!("failed [{}]", notes.len())
        }
    }
}

fn rate_cell(c: &Cell<Rate>, notes: &mut Vec<String>, what: &str, full: bool) -> String {
    let mut s = show(c, notes, what, |r| {
        if full {
            format!("{} · {}", per_sec(r.per_receiver), bytes_per_sec(r.bytes))
        } else {
            per_sec(r.per_receiver)
        }
    });
    if let Cell::Ok(r) = c {
        let mut odd = Vec::new();
        if r.lost > 0 {
            odd.push(format!(
                "{} of {} messages lost",
                r.lost,
                r.lost + r.delivered
            ));
        }
        if let Some(t) = &r.trouble {
            odd.push(format!("receivers reported {t}"));
        }
        if !odd.is_empty() {
            notes.push(format!("{what}: {}", odd.join("; ")));
            let _ = write!(s, " [{}]", notes.len());
        }
    }
    s
}

fn header(out: &mut String, first: &str, run: &Run) {
    let names = run.peer_names();
    let _ = writeln!(out, "| {first} | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(names.len()));
}

fn row(out: &mut String, first: &str, cells: Vec<String>) {
    let _ = writeln!(out, "| {first} | {} |", cells.join(" | "));
}

fn each<F: FnMut(&PeerRun) -> String>(run: &Run, f: F) -> Vec<String> {
    run.peers.iter().map(f).collect()
}

/// Each busbar variant ÷ each other peer, messages/s per size: one row per
/// size and busbar variant.
fn ratios(out: &mut String, run: &Run) {
    let (busbars, others): (Vec<&PeerRun>, Vec<&PeerRun>) =
        run.peers.iter().partition(|p| is_busbar(p.peer));
    if busbars.is_empty() || others.is_empty() {
        return;
    }
    let names: Vec<&str> = others.iter().map(|p| p.peer.name()).collect();
    let _ = writeln!(
        out,
        "\nbusbar ÷ peer, messages/s (above 1: busbar is faster)\n"
    );
    let _ = writeln!(out, "| size | busbar | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(names.len()));
    for (i, s) in SIZES.iter().enumerate() {
        for bb in &busbars {
            let cells: Vec<String> = others
                .iter()
                .map(|p| match (bb.throughput[i].ok(), p.throughput[i].ok()) {
                    (Some(a), Some(b)) => format!("{:.2}", a.per_receiver / b.per_receiver),
                    _ => "–".to_string(),
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                size(*s),
                bb.peer.name(),
                cells.join(" | ")
            );
        }
    }
}

/// The peer (of `peers`) whose throughput at `size` is highest, with it.
fn fastest<'a>(run: &'a Run, peers: &[Peer], at: usize) -> Option<(Peer, &'a Rate)> {
    let i = SIZES.iter().position(|s| *s == at)?;
    run.peers
        .iter()
        .filter(|p| peers.contains(&p.peer))
        .filter_map(|p| p.throughput[i].ok().map(|r| (p.peer, r)))
        .max_by(|a, b| a.1.per_receiver.total_cmp(&b.1.per_receiver))
}

/// The peer (of `peers`) whose latency at `size` is lowest by `key`, with it.
fn quickest<'a>(
    run: &'a Run,
    peers: &[Peer],
    at: usize,
    key: impl Fn(&Percentiles) -> u64,
) -> Option<(Peer, &'a Percentiles)> {
    let i = LATENCY_SIZES.iter().position(|s| *s == at)?;
    run.peers
        .iter()
        .filter(|p| peers.contains(&p.peer))
        .filter_map(|p| p.latency[i].ok().map(|l| (p.peer, l)))
        .min_by_key(|(_, l)| key(l))
}

/// The peer (of `peers`) with the lowest `key`, with it.
fn best(run: &Run, peers: &[Peer], key: impl Fn(&PeerRun) -> Option<u64>) -> Option<(Peer, u64)> {
    run.peers
        .iter()
        .filter(|p| peers.contains(&p.peer))
        .filter_map(|p| key(p).map(|k| (p.peer, k)))
        .min_by_key(|(_, k)| *k)
}

/// CPU nanoseconds per million messages delivered (which is CPU
/// microseconds per message, times 1000).
fn cpu_per_million(r: &Rate) -> u64 {
    (r.cpu_ns as f64 * 1e6 / r.delivered.max(1) as f64) as u64
}

/// CPU nanoseconds as seconds: `1.23 s`.
fn cpu_s(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

/// Bytes as KiB or MiB.
fn mem(bytes: u64) -> String {
    if bytes >= 10 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

const BUSBARS: [Peer; 2] = [Peer::Busbar, Peer::BusbarZc];
const IOX: [Peer; 2] = [Peer::IoxSpin, Peer::IoxEvent];

/// The project's targets, with the best busbar variant for each (and which).
/// Nothing when no busbar variant ran.
fn targets(out: &mut String, run: &Run) {
    if !run.peers.iter().any(|p| is_busbar(p.peer)) {
        return;
    }
    let _ = writeln!(out, "### busbar against its targets\n");
    let _ = writeln!(out, "| target | goal | measured | busbar | met |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut line =
        |what: String, goal: &str, got: Option<(f64, String, Peer)>, ok: &dyn Fn(f64) -> bool| {
            let _ = match got {
                Some((v, shown, bb)) => writeln!(
                    out,
                    "| {what} | {goal} | {shown} | {} | {} |",
                    bb.name(),
                    if ok(v) { "yes" } else { "no" }
                ),
                None => writeln!(out, "| {what} | {goal} | – | – | – |"),
            };
        };
    for (at, goal) in [(16, 2.0), (1 << 10, 1.5), (16 << 10, 1.0), (1 << 20, 1.0)] {
        let got =
            fastest(run, &BUSBARS, at)
                .zip(fastest(run, &IOX, at))
                .map(|((bb, a), (iox, b))| {
                    let r = a.per_receiver / b.per_receiver;
                    (r, format!("{r:.2} (÷ {})", iox.name()), bb)
                });
        line(
            format!("throughput {} ÷ iceoryx2", size(at)),
            &format!("≥ {goal:.1}"),
            got,
            &|r| r >= goal,
        );
    }
    let got = fastest(run, &BUSBARS, 16)
        .zip(fastest(run, &[Peer::IpcChannel], 16))
        .map(|((bb, a), (_, b))| {
            let r = a.per_receiver / b.per_receiver;
            (r, format!("{r:.2}"), bb)
        });
    line(
        "throughput 16 B ÷ ipc-channel".into(),
        "≥ 5",
        got,
        &|r| r >= 5.0,
    );
    let got = fastest(run, &BUSBARS, 1 << 20).map(|(bb, a)| (a.bytes, bytes_per_sec(a.bytes), bb));
    line("throughput 1 MiB".into(), "≥ 10 GB/s", got, &|b| {
        b >= 10e9
    });
    let got = quickest(run, &BUSBARS, 64, |l| l.p50)
        .zip(quickest(run, &[Peer::IoxSpin], 64, |l| l.p50))
        .map(|((bb, a), (_, b))| {
            let r = a.p50 as f64 / b.p50.max(1) as f64;
            (r, format!("{r:.2} ({} ÷ {})", dur(a.p50), dur(b.p50)), bb)
        });
    line(
        "latency 64 B p50 ÷ iceoryx2 (spin) p50".into(),
        "≤ 1.5",
        got,
        &|r| r <= 1.5,
    );
    let got = quickest(run, &BUSBARS, 64, |l| l.p99).map(|(bb, a)| (a.p99 as f64, dur(a.p99), bb));
    line("latency 64 B p99".into(), "≤ 3 µs", got, &|ns| ns <= 3e3);
    let got = quickest(run, &BUSBARS, 64 << 10, |l| l.p50)
        .zip(quickest(run, &[Peer::IoxSpin], 64 << 10, |l| l.p50))
        .map(|((bb, a), (_, b))| {
            let r = a.p50 as f64 / b.p50.max(1) as f64;
            (r, format!("{r:.2} ({} ÷ {})", dur(a.p50), dur(b.p50)), bb)
        });
    line(
        "latency 64 KiB p50 ÷ iceoryx2 (spin) p50".into(),
        "≤ 3",
        got,
        &|r| r <= 3.0,
    );
    let got = best(run, &BUSBARS, |p| p.sleeping.ok().map(|l| l.p50))
        .zip(best(run, &[Peer::IpcChannel], |p| {
            p.sleeping.ok().map(|l| l.p50)
        }))
        .map(|((bb, a), (_, b))| {
            let r = a as f64 / b.max(1) as f64;
            (r, format!("{r:.2} ({} ÷ {})", dur(a), dur(b)), bb)
        });
    line(
        format!(
            "sleeping receiver {} p50 ÷ ipc-channel",
            size(SLEEPING_SIZE)
        ),
        "≤ 1.0",
        got,
        &|r| r <= 1.0,
    );
    let got = best(run, &BUSBARS, |p| p.cpu.ok().map(cpu_per_million))
        .zip(best(run, &[Peer::IoxEvent], |p| {
            p.cpu.ok().map(cpu_per_million)
        }))
        .map(|((bb, a), (_, b))| {
            let r = a as f64 / b.max(1) as f64;
            (r, format!("{r:.2} ({} ÷ {})", cpu_s(a), cpu_s(b)), bb)
        });
    line(
        format!("CPU per message {} ÷ iceoryx2 (event)", size(CPU_SIZE)),
        "≤ 1.0",
        got,
        &|r| r <= 1.0,
    );
    let _ = writeln!(
        out,
        "\nEach row takes the better busbar variant (named); throughput ÷ iceoryx2 divides by \
         the faster of iceoryx2 (spin) and (event) at that size (named), messages/s. A target \
         whose peer did not run, or failed, shows –.{}\n",
        if run.plan.quick {
            " This was a `--quick` run: these say nothing yet."
        } else {
            ""
        }
    );
}

/// busbar's channels against ipc-channel's (issue 12's goals: at least 5×
/// at 16 B, 1 KiB and 1 MiB), byte and typed channels each against their
/// like. Nothing when neither pair ran.
fn channel_targets(out: &mut String, run: &Run) {
    let pairs = [
        ("bytes", Peer::BusbarChan, Peer::IpcChannel),
        ("typed", Peer::BusbarChanTyped, Peer::IpcChannelTyped),
    ];
    let ran = |p: Peer| run.peers.iter().any(|r| r.peer == p);
    let pairs: Vec<_> = pairs
        .into_iter()
        .filter(|(_, bb, ipc)| ran(*bb) && ran(*ipc))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "### busbar channels against ipc-channel's\n");
    let _ = writeln!(out, "| channels | target | goal | measured | met |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (kind, bb, ipc) in &pairs {
        for at in [16, 1 << 10, 1 << 20] {
            let got = fastest(run, &[*bb], at)
                .zip(fastest(run, &[*ipc], at))
                .map(|((_, a), (_, b))| a.per_receiver / b.per_receiver);
            let _ = match got {
                Some(r) => writeln!(
                    out,
                    "| {kind} | throughput {} ÷ {} | ≥ 5 | {r:.2} | {} |",
                    size(at),
                    ipc.name(),
                    if r >= 5.0 { "yes" } else { "no" }
                ),
                None => writeln!(
                    out,
                    "| {kind} | throughput {} ÷ {} | ≥ 5 | – | – |",
                    size(at),
                    ipc.name()
                ),
            };
        }
        let got = quickest(run, &[*ipc], 64, |l| l.p50)
            .zip(quickest(run, &[*bb], 64, |l| l.p50))
            .map(|((_, a), (_, b))| (a.p50, b.p50));
        let _ = match got {
            Some((a, b)) => writeln!(
                out,
                "| {kind} | latency 64 B p50, {} ÷ {} | – | {:.1} ({} ÷ {}) | – |",
                ipc.name(),
                bb.name(),
                a as f64 / b.max(1) as f64,
                dur(a),
                dur(b)
            ),
            None => writeln!(
                out,
                "| {kind} | latency 64 B p50, {} ÷ {} | – | – | – |",
                ipc.name(),
                bb.name()
            ),
        };
    }
    let _ = writeln!(
        out,
        "\nmessages/s of each busbar channel ÷ its ipc-channel counterpart in this run (bytes: \
         `busbar channel` ÷ `ipc-channel`, typed: `busbar channel (typed)` ÷ `ipc-channel \
         (typed)`); latency: how many times lower busbar's p50 is.{}\n",
        if run.plan.quick {
            " This was a `--quick` run: these say nothing yet."
        } else {
            ""
        }
    );
}

/// The tables, in Markdown (also what goes to stdout). Notes for failed or
/// odd cells are numbered and listed after the tables.
pub fn tables(run: &Run) -> String {
    let mut out = String::new();
    let mut notes = Vec::new();
    targets(&mut out, run);
    channel_targets(&mut out, run);
    let _ = writeln!(out, "### Throughput, one sender → one receiver\n");
    header(&mut out, "size", run);
    for (i, s) in SIZES.iter().enumerate() {
        let cells = each(run, |p| {
            let what = format!("{} throughput {}", p.peer.name(), size(*s));
            rate_cell(&p.throughput[i], &mut notes, &what, true)
        });
        row(&mut out, &size(*s), cells);
    }
    ratios(&mut out, run);
    let _ = writeln!(
        out,
        "\n### One-way latency (ping-pong, half the round trip)\n"
    );
    header(&mut out, "size, percentile", run);
    for (i, s) in LATENCY_SIZES.iter().enumerate() {
        for (pname, pick) in [("p50", 0usize), ("p99", 1), ("p99.9", 2)] {
            let cells = each(run, |p| {
                let what = format!("{} latency {}", p.peer.name(), size(*s));
                // Report a failure once, on the p50 row.
                if pick > 0 && matches!(p.latency[i], Cell::Failed(_)) {
                    return "failed".to_string();
                }
                show(&p.latency[i], &mut notes, &what, |l| {
                    dur([l.p50, l.p99, l.p999][pick])
                })
            });
            row(&mut out, &format!("{} {pname}", size(*s)), cells);
        }
        let cells = each(run, |p| match &p.latency[i] {
            Cell::Ok(l) => l.n.to_string(),
            _ => "–".to_string(),
        });
        row(&mut out, &format!("{} round trips", size(*s)), cells);
    }
    let _ = writeln!(
        out,
        "\n### Sleeping receiver: one-way latency, {}, one message every {} ms\n",
        size(SLEEPING_SIZE),
        SLEEPING_GAP.as_millis()
    );
    header(&mut out, "percentile", run);
    for (pname, pick) in [("p50", 0usize), ("p99", 1), ("p99.9", 2)] {
        let cells = each(run, |p| {
            if pick > 0 && matches!(p.sleeping, Cell::Failed(_)) {
                return "failed".to_string();
            }
            let what = format!("{} sleeping receiver latency", p.peer.name());
            show(&p.sleeping, &mut notes, &what, |l| {
                dur([l.p50, l.p99, l.p999][pick])
            })
        });
        row(&mut out, pname, cells);
    }
    let cells = each(run, |p| match &p.sleeping {
        Cell::Ok(l) => l.n.to_string(),
        _ => "–".to_string(),
    });
    row(&mut out, "messages", cells);
    let _ = writeln!(
        out,
        "\n### CPU cost: {} messages, one sender → one receiver, as fast as they go\n",
        size(CPU_SIZE)
    );
    header(&mut out, "", run);
    let cells = each(run, |p| {
        let what = format!("{} CPU cost", p.peer.name());
        show(&p.cpu, &mut notes, &what, |r| cpu_s(cpu_per_million(r)))
    });
    row(&mut out, "CPU s per million messages", cells);
    let cells = each(run, |p| match &p.cpu {
        Cell::Ok(r) => per_sec(r.per_receiver),
        _ => "–".to_string(),
    });
    row(&mut out, "at", cells);
    let _ = writeln!(
        out,
        "\n### Memory: a receiver with {MEMORY_LINKS} links, idle\n"
    );
    header(&mut out, "", run);
    type Pick = fn(&Memory) -> String;
    let picks: [(&str, Pick); 3] = [
        ("resident (RSS)", |m| mem(m.rss)),
        ("of which shared memory", |m| mem(m.rss_shmem)),
        ("shared memory mapped", |m| {
            format!("{} in {} mappings", mem(m.mapped_shared), m.shared_mappings)
        }),
    ];
    for (i, (label, f)) in picks.iter().enumerate() {
        let cells = each(run, |p| {
            if i > 0 && matches!(p.memory, Cell::Failed(_)) {
                return "failed".to_string();
            }
            let what = format!("{} receiver memory", p.peer.name());
            show(&p.memory, &mut notes, &what, f)
        });
        row(&mut out, label, cells);
    }
    let _ = writeln!(
        out,
        "\n### Receiver CPU while idle (link up, nothing to read)\n"
    );
    header(&mut out, "", run);
    let cells = each(run, |p| {
        let what = format!("{} idle CPU", p.peer.name());
        show(&p.idle_cpu, &mut notes, &what, |c| {
            format!("{c:.1} % of a core")
        })
    });
    row(&mut out, "CPU", cells);
    let _ = writeln!(
        out,
        "\n### Fan-out by multicast and fan-in, {} messages\n",
        size(FAN_SIZE)
    );
    header(&mut out, "layout", run);
    for (i, n) in crate::measure::FAN_OUT.iter().enumerate() {
        let cells = each(run, |p| {
            let what = format!("{} multicast to {n}", p.peer.name());
            let mut s = rate_cell(&p.fan_out[i], &mut notes, &what, false);
            if let Cell::Ok(r) = &p.fan_out[i] {
                if *n > 1 {
                    let _ = write!(s, " each ({} in all)", per_sec(r.deliveries));
                }
            }
            s
        });
        row(&mut out, &format!("1 → {n}, multicast"), cells);
    }
    let cells = each(run, |p| {
        let what = format!("{} {FAN_IN} senders into 1", p.peer.name());
        rate_cell(&p.fan_in, &mut notes, &what, false)
    });
    row(&mut out, &format!("{FAN_IN} → 1"), cells);
    if run.join.is_some() || run.failover.is_some() {
        let _ = writeln!(out, "\n### busbar: join and failover\n");
        let _ = writeln!(out, "| what | p50 | p99 | max | n |\n|---|---|---|---|---|");
        match &run.join {
            Some(Cell::Ok(j)) => {
                let _ = writeln!(
                    out,
                    "| join a bus that has a controller | {} | {} | {} | {} |",
                    dur(j.p50),
                    dur(j.p99),
                    dur(j.max),
                    j.n
                );
                let _ = writeln!(
                    out,
                    "| join a new bus (elect self, start the controller) | {} | {} | {} | {} |",
                    dur(j.fresh_p50),
                    dur(j.fresh_p99),
                    dur(j.fresh_max),
                    j.n
                );
            }
            Some(c) => {
                let s = show(c, &mut notes, "busbar join", |_| String::new());
                let _ = writeln!(out, "| join | {s} | | | |");
            }
            None => {}
        }
        match &run.failover {
            Some(Cell::Ok(f)) => {
                for (what, p) in [
                    ("failover: a survivor sees a new controller", &f.controller),
                    ("failover: a message to a survivor answered", &f.echo),
                ] {
                    let _ = writeln!(
                        out,
                        "| {what} (since `kill -9`) | {} | {} | {} | {} |",
                        dur(p.p50),
                        dur(p.p99),
                        dur(p.max),
                        f.rounds
                    );
                }
            }
            Some(c) => {
                let s = show(c, &mut notes, "busbar failover", |_| String::new());
                let _ = writeln!(out, "| failover | {s} | | | |");
            }
            None => {}
        }
    }
    let na: Vec<String> = run
        .peers
        .iter()
        .flat_map(|p| {
            let mut v = Vec::new();
            for c in p.fan_out.iter().chain([&p.fan_in]) {
                if let Cell::Na(why) = c {
                    v.push(format!("{}: {why}", p.peer.name()));
                }
            }
            v.dedup();
            v
        })
        .collect();
    if !notes.is_empty() || !na.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {n}", i + 1);
        }
        for n in na {
            let _ = writeln!(out, "- n/a, {n}");
        }
    }
    out
}

/// What BENCHMARKS.md holds from the section `busbar-scale`
/// (crates/busbar-tests) wrote, at its begin marker, to the end: that
/// section and the hand-written ones after it (Node.js, Python, named
/// ring, channels), kept when the rest is rewritten.
pub fn scale_section(old: &str) -> Option<String> {
    let a = old.find("<!-- busbar-scale: begin")?;
    Some(format!("{}\n", old[a..].trim_end()))
}

/// The whole BENCHMARKS.md (without the scale section: see [`scale_section`]).
pub fn markdown(run: &Run) -> String {
    let mut s = String::new();
    let m = &run.machine;
    let _ = writeln!(s, "# busbar benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `busbar-bench` on {} from one run; do not edit the numbers by hand, \
         run it again.{}\n",
        utc(run.started),
        if run.plan.quick {
            " **This was a `--quick` run: small counts, a smoke check, not numbers to quote.**"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "```sh\n{}\n```\n", run.command);
    let _ = writeln!(s, "The run took {:.0} s.\n", run.seconds);
    let _ = writeln!(s, "![throughput and latency](benchmarks.svg)\n");
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(
        s,
        "- CPU: {} ({} logical CPUs in /proc/cpuinfo; `nproc`: {})",
        m.cpu, m.logical_cpus, m.nproc
    );
    let _ = writeln!(
        s,
        "- memory: {}; kernel {}; {}",
        m.memory, m.kernel, m.rustc
    );
    let _ = writeln!(
        s,
        "- load average (1, 5, 15 min) before the run: {}; after: {}",
        run.load_before, run.load_after
    );
    let libs: Vec<&str> = {
        let mut v: Vec<&str> = run.peers.iter().map(|p| p.peer.library()).collect();
        v.dedup();
        v
    };
    let _ = writeln!(s, "- libraries: {}\n", libs.join("; "));
    let _ = writeln!(s, "## Results\n");
    s.push_str(&tables(run));
    s.push_str(METHOD);
    s
}

const METHOD: &str = include_str!("method.md");
