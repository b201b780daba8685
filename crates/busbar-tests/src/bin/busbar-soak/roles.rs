//! The processes of a soak run: `busbar-soak role <receiver|sender|holder> --bus B ...`.
//!
//! Each prints `READY <id>` once it has joined, then speaks in stdout
//! lines, one fact each; `FAIL <why>` and exit 1 on an error. Every role
//! ends when its stdin closes, so nothing outlives a dead orchestrator.

use busbar::{EndpointReceiver, EndpointSender, Label, Message, Options, RecvError, Selector};
use busbar_tests::chaos::{self, Chaos, Resources, Rng, Shape, Streams, Violation};
use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a role waits to join, or to see its counts settle, before it
/// gives up: hang guards, far beyond what a working bus needs.
const HANG: Duration = Duration::from_secs(60);
/// The token of every soak bus.
const TOKEN: &str = "busbar-soak";
/// How long a sender waits for its counts to come back before it reports
/// a leak (well within the orchestrator's patience with a silent process).
const SETTLE: Duration = Duration::from_secs(20);
/// How often a receiver looks at who hosts the controller.
const CONTROLLER_POLL: Duration = Duration::from_millis(50);

type Result<T = (), E = String> = std::result::Result<T, E>;

/// Runs the role named in `args[0]`.
pub fn run(args: &[String]) -> Result {
    let role = args.first().ok_or("role name missing")?;
    let opts = crate::options(&args[1..])?;
    let bus = opts.get("bus").ok_or("--bus is required")?.clone();
    match role.as_str() {
        "receiver" => receiver(&bus, crate::number(&opts, "index", 0)?),
        "sender" => sender(
            &bus,
            crate::number(&opts, "seed", 1)?,
            crate::number(&opts, "receivers", 1)?,
            crate::number(&opts, "count", 100)?,
            crate::number(&opts, "affinity", 0u8)? != 0,
        ),
        "holder" => holder(&bus),
        other => Err(format!("unknown role {other:?}")),
    }
}

/// Joins, and prints `READY <id>`.
fn join(
    bus: &str,
    label: Label,
    affinity: bool,
) -> Result<(EndpointSender<Chaos>, EndpointReceiver<Chaos>)> {
    let mut options = Options::new(bus, label, TOKEN);
    options.controller_affinity = affinity;
    let (tx, rx) = busbar::join(options, Some(HANG)).map_err(|e| format!("join: {e}"))?;
    println!("READY {}", tx.id());
    Ok((tx, rx))
}

/// What stdin has said so far.
const RUNNING: u8 = 0;
const FINISH: u8 = 1;
const CLOSED: u8 = 2;

/// Watches stdin on a thread: `finish` sets [`FINISH`], the end of input [`CLOSED`].
fn watch_stdin() -> Arc<AtomicU8> {
    let state = Arc::new(AtomicU8::new(RUNNING));
    let s = state.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l == "finish" => s.store(FINISH, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        s.store(CLOSED, Ordering::SeqCst);
    });
    state
}

fn wait_for_close(state: &AtomicU8) {
    while state.load(Ordering::SeqCst) != CLOSED {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stable receiver, labelled `r<index>` and `sink`, that never hosts the
/// controller. Checks every message as it comes and prints
/// `VIOLATION <lost|duplicated|corrupt> <what>` for each one that is wrong;
/// `CONTROLLER <id>` whenever its directory shows a new controller.
///
/// On `finish` (sent once every sender is gone) it reads until its
/// descriptors are back to what they were right after it joined, which
/// means every link is drained and closed, and reports:
/// `STREAM <from> <stream> <count>` per normal stream,
/// `ANY <from> <stream> <count> <digest>` per anycast stream,
/// `RES ok|leak now=<counts> baseline=<counts>`, `DONE received=<n>`.
fn receiver(bus: &str, index: usize) -> Result {
    let (tx, mut rx) = join(bus, Label::new([format!("r{index}"), "sink".into()]), false)?;
    let baseline = Resources::now()?;
    let stdin = watch_stdin();
    let mut streams = Streams::default();
    let mut controller = None;
    let mut next_poll = Instant::now();
    let mut drain_until = None;
    let mut settled_once = false;
    let leak = loop {
        match rx.recv(Some(Duration::from_millis(50))) {
            Ok(mut m) => {
                if matches!(m.payload, Chaos::Text(_)) {
                    continue;
                }
                match chaos::verify(&mut m) {
                    Err(e) => println!("VIOLATION corrupt {e}"),
                    Ok(stamp) => match streams.accept(&stamp) {
                        Ok(()) => {}
                        Err(Violation::Lost(s)) => println!("VIOLATION lost {s}"),
                        Err(Violation::Duplicated(s)) => println!("VIOLATION duplicated {s}"),
                    },
                }
            }
            Err(RecvError::Timeout) => {
                if let Some(until) = drain_until {
                    // Everything read (the wait timed out) and every link
                    // closed (the descriptors are back), twice in a row and
                    // with a controller: drained.
                    let now = Resources::now()?;
                    let connected = tx.endpoints().iter().any(|e| e.is_controller);
                    if now == baseline && connected {
                        if settled_once {
                            break None;
                        }
                        settled_once = true;
                    } else {
                        settled_once = false;
                        if Instant::now() >= until {
                            break Some(now);
                        }
                    }
                }
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + CONTROLLER_POLL;
            let c = tx
                .endpoints()
                .into_iter()
                .find(|e| e.is_controller)
                .map(|e| e.id);
            if c.is_some() && c != controller {
                controller = c;
                if let Some(c) = c {
                    println!("CONTROLLER {c}");
                }
            }
        }
        match stdin.load(Ordering::SeqCst) {
            CLOSED => return Ok(()),
            FINISH if drain_until.is_none() => drain_until = Some(Instant::now() + HANG),
            _ => {}
        }
    };
    for (from, stream, count) in streams.counts() {
        println!("STREAM {from:016x} {stream} {count}");
    }
    for (from, stream, a) in streams.anycasts() {
        println!("ANY {from:016x} {stream} {} {:016x}", a.count, a.digest.0);
    }
    match leak {
        None => println!("RES ok now={baseline} baseline={baseline}"),
        Some(now) => println!(
            "RES leak now={now} baseline={baseline} fds={}",
            Resources::describe_fds()
        ),
    }
    println!("DONE received={}", streams.total);
    wait_for_close(&stdin);
    Ok(())
}

/// A churning sender: streams `count` numbered messages of random shapes
/// (ttl 0, so `Ok` means the receivers have them) on `receivers + 2`
/// streams: stream `i < receivers` unicast to `r<i>`, stream `receivers`
/// multicast to every `sink`, stream `receivers + 1` round-robin unicast to
/// any `sink`. Prints `A <stream> <n>` after every `Ok`, `HOSTING` if it
/// comes to host the controller, and stops early when stdin closes.
///
/// At the end: `RES ok|leak|host now=<counts> want=<counts>` (with a link
/// open to every receiver, it must hold exactly the descriptors it held
/// after joining plus those links, and no memfd but the links' rings; a
/// host holds more descriptors for good reason), `DONE <count per stream>`; then it waits for stdin to
/// close and leaves.
fn sender(bus: &str, seed: u64, receivers: usize, count: u64, affinity: bool) -> Result {
    let (tx, _rx) = join(bus, Label::new(["sender"]), affinity)?;
    // Like any application, it starts once its receivers are there. (A
    // newcomer knows only whom the controller lists; right after a
    // failover to an endpoint that had just joined, that may not be
    // everyone yet.)
    let deadline = Instant::now() + HANG;
    let all_there = || {
        let listed = tx.endpoints();
        (0..receivers).all(|i| {
            let label = format!("r{i}");
            listed.iter().any(|e| e.label.contains(&label))
        })
    };
    while !all_there() {
        if Instant::now() >= deadline {
            return Err(format!(
                "the {receivers} receivers are not all listed after {HANG:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let base = Resources::now()?;
    let stdin = watch_stdin();
    let mut rng = Rng::new(seed);
    let mut streams: Vec<(Selector, bool, u64)> = (0..receivers)
        .map(|i| (Selector::unicast(format!("r{i}").as_str()), false, 0))
        .collect();
    streams.push((Selector::multicast("sink"), false, 0));
    streams.push((Selector::unicast("sink"), true, 0));
    let from = tx.id().0;
    let mut hosting = tx.is_controller();
    if hosting {
        println!("HOSTING");
    }
    let mut sent = 0;
    while sent < count && stdin.load(Ordering::SeqCst) == RUNNING {
        let i = rng.below(streams.len() as u64) as usize;
        let (selector, anycast, next) = &mut streams[i];
        let shape = Shape::pick(&mut rng, true);
        let msg = chaos::build(
            (from, i as u32, *next, *anycast),
            shape,
            &mut rng,
            selector.clone(),
        )?;
        if let Err(e) = tx.send(msg) {
            println!("SENDERR {e}");
            return Err(format!("send of message {} of stream {i}: {e}", *next));
        }
        println!("A {i} {next}");
        *next += 1;
        sent += 1;
        if !hosting && sent % 32 == 0 && tx.is_controller() {
            hosting = true;
            println!("HOSTING");
        }
    }
    // A link to every receiver, so that the descriptors to expect are known.
    let bye = Message::new(Selector::multicast("sink"), Chaos::Text("bye".into()));
    if let Err(e) = tx.send(bye) {
        println!("SENDERR {e}");
        return Err(format!("send of the last multicast: {e}"));
    }
    // Each link holds its socket and the eventfd that wakes its receiver,
    // and maps its shared-memory ring (whose descriptor it closed).
    let want = Resources {
        fds: base.fds + 2 * receivers,
        memfds: 0,
        maps: receivers,
    };
    // A host holds the controller's descriptors too, as many as it has members.
    let host_now = || hosting || tx.is_controller();
    let now = Resources::settle_until(
        |r| {
            if host_now() {
                r.memfds == 0 && r.maps == want.maps
            } else {
                *r == want
            }
        },
        SETTLE,
    )?;
    let verdict = if host_now() {
        if now.memfds == 0 && now.maps == want.maps {
            "host"
        } else {
            "leak"
        }
    } else if now == want {
        "ok"
    } else {
        "leak"
    };
    println!("RES {verdict} now={now} want={want}");
    let counts: Vec<String> = streams.iter().map(|s| s.2.to_string()).collect();
    println!("DONE {}", counts.join(" "));
    wait_for_close(&stdin);
    Ok(())
}

/// Joins with controller affinity, prints `HOSTING` once it hosts the
/// controller, and stays until stdin closes.
fn holder(bus: &str) -> Result {
    let (tx, _rx) = join(bus, Label::new(["holder"]), true)?;
    let stdin = watch_stdin();
    let mut hosting = false;
    while stdin.load(Ordering::SeqCst) != CLOSED {
        if !hosting && tx.is_controller() {
            hosting = true;
            println!("HOSTING");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Parses a receiver's report lines into `(from, stream) → count` maps.
#[derive(Debug, Default)]
pub struct Report {
    /// `STREAM` lines.
    pub streams: HashMap<(u64, u32), u64>,
    /// `ANY` lines: count and digest.
    pub anycasts: HashMap<(u64, u32), (u64, u64)>,
    /// The `RES` line.
    pub res: Option<String>,
    /// `DONE received=<n>`.
    pub received: Option<u64>,
}

impl Report {
    /// Takes one line of a receiver; whether it was part of the report.
    pub fn take(&mut self, line: &str) -> bool {
        let mut w = line.split(' ');
        let hex = |s: Option<&str>| s.and_then(|s| u64::from_str_radix(s, 16).ok());
        let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
        match w.next() {
            Some("STREAM") => {
                if let (Some(f), Some(s), Some(c)) = (hex(w.next()), num(w.next()), num(w.next())) {
                    self.streams.insert((f, s as u32), c);
                }
            }
            Some("ANY") => {
                if let (Some(f), Some(s), Some(c), Some(d)) =
                    (hex(w.next()), num(w.next()), num(w.next()), hex(w.next()))
                {
                    self.anycasts.insert((f, s as u32), (c, d));
                }
            }
            Some("RES") => self.res = Some(line.to_string()),
            Some("DONE") => {
                self.received = line
                    .strip_prefix("DONE received=")
                    .and_then(|n| n.parse().ok())
                    .or(Some(0));
            }
            _ => return false,
        }
        true
    }
}
