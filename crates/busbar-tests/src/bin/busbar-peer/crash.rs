//! Roles of the crash tests (`tests/cross_process/crash.rs`): processes
//! that are killed with `kill -9` at random points, and the survivors that
//! check they lost nothing, got nothing twice, and leaked nothing.
//!
//! Every role here joins with [`Chaos`] payloads and answers the common
//! commands of [`serve`] on stdin (one answer line each), besides its own:
//!
//! | role | does |
//! |---|---|
//! | `crash-watch` | joins and serves commands; prints `GOT <text>` for every text message |
//! | `crash-sink [--keep-regions]` | checks every numbered message (intact, in order, once per stream); `FAIL` and exit at the first that is not |
//! | `crash-send --streams u:L,m:L,a:L [--count N] [--ack] [--attachments] [--seed S]` | streams numbered messages until `stop` (or N); `ACK <stream> <n>` after each `Ok`; `pause`, `resume` |
//! | `crash-region-send` | `send <n> <expr>`: messages with regions, keeping its own handles; `verify`, `drop` |
//! | `crash-victim` | holds every message it gets (regions mapped); `HELD <k>`; waits to be killed |

use crate::common::{join, number, parse_op, Result, HANG};
use crate::Args;
use busbar::{EndpointSender, MemoryRegion, Message, Selector};
use busbar_tests::chaos::{self, Chaos, Resources, Rng, Shape, Streams};
use busbar_tests::Locked;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long `check` waits for the counts to come back to the baseline
/// before it reports what it sees: a guard, not a pace.
const SETTLE: Duration = Duration::from_secs(20);

/// The common commands, answered on stdout:
///
/// * `baseline`: `BASELINE fds=<a> memfds=<b> maps=<c> host=<bool>`, and remembers it;
/// * `check`: waits until the counts equal the baseline's (or [`SETTLE`]
///   passes), then `CHECK ok <counts> host=<bool>`,
///   `CHECK leak now=<counts> baseline=<counts> fds=<targets>`, or
///   `CHECK host-changed` when this endpoint started or stopped hosting the
///   controller in between (which changes its descriptors for good reason);
/// * `controller-not <id,id,..>`: `CONTROLLER <id>` once the directory shows a controller not listed;
/// * `wait-listed <id>`: `LISTED <id>` once the directory lists that endpoint;
/// * `view <id,id,..>`: `VIEW controller=<id>` once the directory lists
///   exactly those endpoints and one of them hosts the controller;
/// * `ping <text> <expr>`: unicast text, ttl 0: `PING ok` or `PING err <error>`.
///
/// Anything else goes to `extra`, which answers `Ok(false)` for unknown
/// commands. Returns when stdin closes.
pub fn serve(
    tx: &EndpointSender<Chaos>,
    mut extra: impl FnMut(&str, &str) -> Result<bool>,
) -> Result {
    let mut baseline: Option<(Resources, bool)> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "baseline" => {
                // Regions kept for large payloads are a cache, let go a
                // second after the last: count without them.
                let start = Instant::now();
                while tx.stats().pooled_regions > 0 {
                    if start.elapsed() > SETTLE {
                        return Err("the endpoint keeps its pooled regions".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let now = Resources::now()?;
                let host = tx.is_controller();
                baseline = Some((now, host));
                println!("BASELINE {now} host={host}");
            }
            "check" => {
                let (want, was_host) = baseline.ok_or("check before baseline")?;
                let got = Resources::settle(want, SETTLE)?;
                let host = tx.is_controller();
                if host != was_host {
                    println!("CHECK host-changed");
                } else if got == want {
                    println!("CHECK ok {got} host={host}");
                } else {
                    println!(
                        "CHECK leak now={got} baseline={want} fds={}",
                        Resources::describe_fds()
                    );
                }
            }
            "controller-not" => {
                let old: BTreeSet<&str> = rest.split(',').collect();
                let mut found = None;
                wait_for(|| {
                    found = controller(tx).filter(|c| !old.contains(c.as_str()));
                    found.is_some()
                })?;
                println!("CONTROLLER {}", found.unwrap_or_default());
            }
            "wait-listed" => {
                wait_for(|| tx.endpoints().iter().any(|e| e.id.to_string() == rest))?;
                println!("LISTED {rest}");
            }
            "view" => {
                let want: BTreeSet<String> = rest.split(',').map(str::to_string).collect();
                let mut host = None;
                wait_for(|| {
                    let list = tx.endpoints();
                    let ids: BTreeSet<String> = list.iter().map(|e| e.id.to_string()).collect();
                    host = controller(tx).filter(|c| want.contains(c));
                    ids == want && host.is_some()
                })?;
                println!("VIEW controller={}", host.unwrap_or_default());
            }
            "ping" => {
                let (text, expr) = rest.split_once(' ').ok_or("usage: ping <text> <expr>")?;
                let msg = Message::new(
                    Selector::unicast(parse_op(expr)?),
                    Chaos::Text(text.to_string()),
                );
                match tx.send(msg) {
                    Ok(()) => println!("PING ok"),
                    Err(e) => println!("PING err {e}"),
                }
            }
            "" => {}
            _ => {
                if !extra(cmd, rest)? {
                    return Err(format!("unknown command {line:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The controller's id as the directory shows it.
fn controller(tx: &EndpointSender<Chaos>) -> Option<String> {
    tx.endpoints()
        .into_iter()
        .find(|e| e.is_controller)
        .map(|e| e.id.to_string())
}

/// Polls `done` every 5 ms until it holds; `Err` after [`HANG`].
fn wait_for(mut done: impl FnMut() -> bool) -> Result {
    let deadline = Instant::now() + HANG;
    while !done() {
        if Instant::now() >= deadline {
            return Err(format!("condition not reached within {HANG:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Prints `FAIL <why>` and exits at once: a receiving thread found
/// something wrong, and the test must hear it whatever it waits for.
fn die(why: &str) -> ! {
    println!("FAIL {why}");
    eprintln!("busbar-peer: {why}");
    std::process::exit(1)
}

/// Joins, prints `GOT <text>` for text messages (checks and drops numbered
/// ones), and serves the common commands until stdin closes.
pub fn watch(args: &Args) -> Result {
    let (tx, mut rx) = join::<Chaos, Chaos>(args)?;
    std::thread::spawn(move || loop {
        match rx.recv(None) {
            Ok(Message {
                payload: Chaos::Text(t),
                ..
            }) => println!("GOT {t}"),
            Ok(mut m) => {
                if let Err(e) = chaos::verify(&mut m) {
                    die(&e);
                }
            }
            Err(e) => die(&format!("recv: {e}")),
        }
    });
    serve(&tx, |_, _| Ok(false))
}

/// What a sink's receiving thread and its command loop share.
#[derive(Default)]
struct Sink {
    streams: Streams,
    /// With `--keep-regions`: the regions received so far, with their stamps.
    held: Vec<(u64, u64, MemoryRegion)>,
}

/// Checks every numbered message: intact, and in order and once per
/// (sender, stream); `FAIL` and exit 1 at the first that is not. Commands:
///
/// * `wait-total <n>`: `TOTAL <m>` once `m >= n` messages arrived in all;
/// * `wait-count <from> <stream> <n>`: `COUNT <m>` once `m >= n` arrived from that stream;
/// * with `--keep-regions`: `verify-held` (`HELD ok <k>` after checking
///   every kept region's bytes again) and `release` (`RELEASED <k>`).
pub fn sink(args: &Args) -> Result {
    let (tx, mut rx) = join::<Chaos, Chaos>(args)?;
    let keep = args.flag("keep-regions");
    let state = Arc::new((Mutex::new(Sink::default()), Condvar::new()));
    let shared = state.clone();
    std::thread::spawn(move || {
        let (lock, changed) = &*shared;
        loop {
            let mut m = match rx.recv(None) {
                Ok(m) => m,
                Err(e) => die(&format!("recv: {e}")),
            };
            if let Chaos::Text(t) = &m.payload {
                println!("GOT {t}");
                continue;
            }
            let stamp = chaos::verify(&mut m).unwrap_or_else(|e| die(&e));
            // Close what the message carries before it counts as received,
            // so that a count taken after `wait-count` sees none of it.
            let mut regions = std::mem::take(&mut m.memory_regions);
            drop(m);
            if !keep {
                regions.clear();
            }
            let mut sink = lock.locked();
            if let Err(v) = sink.streams.accept(&stamp) {
                die(&v.to_string());
            }
            for r in regions {
                sink.held.push((stamp.from, stamp.n, r));
            }
            drop(sink);
            changed.notify_all();
        }
    });
    let (lock, changed) = &*state;
    let wait = |done: &dyn Fn(&Sink) -> bool| -> Result<u64> {
        let guard = lock.locked();
        let (guard, timeout) = changed
            .wait_timeout_while(guard, HANG, |s| !done(s))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if timeout.timed_out() {
            return Err(format!(
                "not reached within {HANG:?}; {} messages in all",
                guard.streams.total
            ));
        }
        Ok(guard.streams.total)
    };
    serve(&tx, |cmd, rest| {
        let words: Vec<&str> = rest.split(' ').collect();
        match (cmd, words.as_slice()) {
            ("wait-total", [n]) => {
                let n: u64 = number(n)?;
                println!("TOTAL {}", wait(&|s| s.streams.total >= n)?);
            }
            ("wait-count", [from, stream, n]) => {
                let from = u64::from_str_radix(from, 16).map_err(|_| format!("bad id {from:?}"))?;
                let (stream, n): (u32, u64) = (number(stream)?, number(n)?);
                wait(&|s| s.streams.count(from, stream) >= n)?;
                let sink = lock.locked();
                println!("COUNT {}", sink.streams.count(from, stream));
            }
            ("verify-held", []) | ("verify-held", [""]) => {
                let mut sink = lock.locked();
                for (from, n, r) in &mut sink.held {
                    chaos::check_region(r, *from, *n)?;
                }
                println!("HELD ok {}", sink.held.len());
            }
            ("release", []) | ("release", [""]) => {
                let mut sink = lock.locked();
                let k = sink.held.len();
                sink.held.clear();
                println!("RELEASED {k}");
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A sender's stream: where its messages go.
struct Stream {
    selector: Selector,
    anycast: bool,
    next: u64,
}

/// `u:<expr>` unicast, `m:<expr>` multicast, `a:<expr>` round-robin unicast (anycast), comma-separated.
fn parse_streams(spec: &str) -> Result<Vec<Stream>> {
    spec.split(',')
        .map(|s| {
            let (mode, expr) = s
                .split_once(':')
                .ok_or_else(|| format!("bad stream {s:?}"))?;
            let op = parse_op(expr)?;
            let (selector, anycast) = match mode {
                "u" => (Selector::unicast(op), false),
                "m" => (Selector::multicast(op), false),
                "a" => (Selector::unicast(op), true),
                _ => return Err(format!("bad stream mode in {s:?}")),
            };
            Ok(Stream {
                selector,
                anycast,
                next: 0,
            })
        })
        .collect()
}

/// What a sender's loop and its command thread share.
#[derive(Default)]
struct Gate {
    paused: bool,
    stop: bool,
    /// The loop is waiting while paused.
    idle: bool,
    /// The loop is over and printed `SENT`.
    finished: bool,
    /// Messages accepted so far, per stream.
    counts: Vec<u64>,
}

/// Streams numbered messages (ttl 0: `Ok` means the receivers have them)
/// to `--streams`, a random stream and shape each (`--attachments` mixes
/// in descriptors and regions), until `stop` or `--count`; with `--ack`,
/// `ACK <stream> <n>` after each `Ok`. Then `SENT <count of stream 0>
/// <count of stream 1> ...`, and it serves commands until stdin closes.
/// `pause` answers `PAUSED <counts as in SENT>` once no send is under way
/// and none will start until `resume` (`RESUMED`). When stdin closes, it
/// stops as for `stop`.
pub fn send(args: &Args) -> Result {
    let (tx, _rx) = join::<Chaos, Chaos>(args)?;
    let mut streams = parse_streams(args.req("streams")?)?;
    let count = args.opt_num::<u64>("count")?.unwrap_or(u64::MAX);
    let ack = args.flag("ack");
    let attachments = args.flag("attachments");
    let mut rng = Rng::new(args.opt_num("seed")?.unwrap_or(1));
    let gate = Arc::new((Mutex::new(Gate::default()), Condvar::new()));
    let commands = {
        let tx = tx.clone();
        let gate = gate.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*gate;
            let served = serve(&tx, |cmd, _| {
                let mut g = lock.locked();
                match cmd {
                    "pause" => {
                        g.paused = true;
                        cv.notify_all();
                        let g = cv
                            .wait_while(g, |g| !g.idle && !g.finished)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        println!("PAUSED {}", counts_line(&g.counts));
                    }
                    "resume" => {
                        g.paused = false;
                        cv.notify_all();
                        println!("RESUMED");
                    }
                    // Answered by the sending loop, with its counts.
                    "stop" => {
                        g.stop = true;
                        cv.notify_all();
                        drop(cv.wait_while(g, |g| !g.finished));
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            });
            lock.locked().stop = true;
            cv.notify_all();
            served
        })
    };
    let (lock, cv) = &*gate;
    let from = tx.id().0;
    let mut sent = 0;
    loop {
        let mut g = lock.locked();
        g.counts = streams.iter().map(|s| s.next).collect();
        while g.paused && !g.stop {
            g.idle = true;
            cv.notify_all();
            g = cv
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        g.idle = false;
        if g.stop || sent >= count {
            break;
        }
        drop(g);
        let i = rng.below(streams.len() as u64) as usize;
        let s = &mut streams[i];
        let shape = Shape::pick(&mut rng, attachments);
        let msg = chaos::build(
            (from, i as u32, s.next, s.anycast),
            shape,
            &mut rng,
            s.selector.clone(),
        )?;
        tx.send(msg)
            .map_err(|e| format!("send of message {} of stream {i}: {e}", s.next))?;
        if ack {
            println!("ACK {i} {}", s.next);
        }
        s.next += 1;
        sent += 1;
    }
    let counts: Vec<u64> = streams.iter().map(|s| s.next).collect();
    println!("SENT {}", counts_line(&counts));
    let mut g = lock.locked();
    g.finished = true;
    cv.notify_all();
    drop(g);
    commands
        .join()
        .map_err(|_| "the command thread panicked".to_string())?
}

fn counts_line(counts: &[u64]) -> String {
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    counts.join(" ")
}

/// Serves `send <n> <expr>`: `n` messages (stream 0, numbered on from
/// earlier ones), each with regions and sometimes descriptors and a large
/// body, multicast to `expr`; keeps its own handle of every region sent:
/// `SENT <n>`. `verify`: checks every kept region's bytes and writes and
/// reads back a word in each: `VERIFIED <k> min_count=<c>`. `drop`: lets
/// them go: `DROPPED <k>`.
pub fn region_send(args: &Args) -> Result {
    let (tx, _rx) = join::<Chaos, Chaos>(args)?;
    let mut rng = Rng::new(args.opt_num("seed")?.unwrap_or(1));
    let from = tx.id().0;
    let mut next = 0u64;
    let mut kept: Vec<(u64, MemoryRegion)> = Vec::new();
    serve(&tx.clone(), |cmd, rest| {
        match cmd {
            "send" => {
                let (n, expr) = rest.split_once(' ').ok_or("usage: send <n> <expr>")?;
                let n: u64 = number(n)?;
                let op = parse_op(expr)?;
                for _ in 0..n {
                    let shape = if rng.chance(50) {
                        Shape::Regions
                    } else {
                        Shape::Everything
                    };
                    let msg = chaos::build(
                        (from, 0, next, false),
                        shape,
                        &mut rng,
                        Selector::multicast(op.clone()),
                    )?;
                    kept.extend(msg.memory_regions.iter().map(|r| (next, r.clone())));
                    tx.send(msg)
                        .map_err(|e| format!("send of message {next}: {e}"))?;
                    next += 1;
                }
                println!("SENT {n}");
            }
            "verify" => {
                let mut min_count = u32::MAX;
                for (n, r) in &mut kept {
                    chaos::check_region(r, from, *n)?;
                    min_count = min_count.min(r.ref_count());
                    // Still ours to write: write a word and read it back, then restore it.
                    let size = r.size();
                    let last = r.map(size - 1..).map_err(|e| e.to_string())?;
                    let old = last[0];
                    last[0] = !old;
                    let back = r.map(size - 1..).map_err(|e| e.to_string())?;
                    if back[0] != !old {
                        return Err(format!("region of message {n}: a write did not stick"));
                    }
                    back[0] = old;
                }
                println!("VERIFIED {} min_count={min_count}", kept.len());
            }
            "drop" => {
                println!("DROPPED {}", kept.len());
                kept.clear();
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Holds every message it gets, its regions mapped, and prints `HELD <k>`
/// after each; never lets go. The test kills it.
pub fn victim(args: &Args) -> Result {
    let (_tx, mut rx) = join::<Chaos, Chaos>(args)?;
    let mut held = Vec::new();
    loop {
        let mut m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        chaos::verify(&mut m)?;
        held.push(m);
        println!("HELD {}", held.len());
    }
}
