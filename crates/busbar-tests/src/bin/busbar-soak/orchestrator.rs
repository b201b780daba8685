//! The soak's orchestrator: starts, kills and retires the processes, reads
//! what they say, and checks the outcome against what the senders were
//! told (`A <stream> <n>`: `send` returned `Ok`).
//!
//! Timing drives only the chaos (when to kill the controller, how long a
//! run lasts); every check waits for what the processes say, with hang
//! guards only.

use crate::roles::Report;
use busbar_tests::chaos::{Digest, Rng};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long a process may stay silent when it should be talking (joining,
/// sending, reporting, exiting) before it counts as hung.
const GUARD: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    processes: usize,
    seconds: u64,
    seed: u64,
    receivers: usize,
    holders: usize,
}

impl Settings {
    /// `--processes N --seconds S --seed X --receivers R --holders H`.
    pub fn parse(args: &[String]) -> Result<Settings, String> {
        let o = crate::options(args)?;
        let processes: usize = crate::number(&o, "processes", 8)?;
        let receivers = crate::number(&o, "receivers", (processes / 4).max(2))?;
        let holders = crate::number(&o, "holders", 2)?;
        if receivers == 0 || holders == 0 || processes < receivers + holders + 1 {
            return Err(format!(
                "--processes {processes} leaves no room for a sender besides {receivers} receiver(s) and {holders} holder(s)"
            ));
        }
        Ok(Settings {
            processes,
            seconds: crate::number(&o, "seconds", 60)?,
            seed: crate::number(&o, "seed", Rng::fresh_seed())?,
            receivers,
            holders,
        })
    }

    fn senders(&self) -> usize {
        self.processes - self.receivers - self.holders
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Receiver(usize),
    Holder,
    Sender,
}

/// How a sender's life ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Leaves cleanly (its stdin is closed): after `at` acknowledged messages, or once done.
    Leave { at: Option<u64> },
    /// `kill -9` after `at` acknowledged messages, or once done (idle).
    Crash { at: Option<u64> },
    /// `kill -9` this long after it was started: anywhere in its join.
    CrashEarly { after: Duration },
}

struct Proc {
    name: String,
    kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    started: Instant,
    last_heard: Instant,
    id: Option<u64>,
    fate: Fate,
    /// The highest acknowledged number per stream.
    acks: HashMap<u32, u64>,
    acked: u64,
    done: Option<Vec<u64>>,
    killed: bool,
    closed_at: Option<Instant>,
    eof: bool,
    status: Option<ExitStatus>,
    report: Report,
    /// Reported as hung once.
    hung: bool,
}

impl Proc {
    fn alive(&self) -> bool {
        self.status.is_none() && !self.killed
    }

    fn close_stdin(&mut self) {
        if self.stdin.take().is_some() {
            self.closed_at = Some(Instant::now());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Everything that went wrong, by kind.
#[derive(Debug, Default)]
struct Violations {
    lost: u64,
    duplicated: u64,
    corrupt: u64,
    leaked_fds: u64,
    leaks: u64,
    hung: u64,
    other: u64,
    /// The first few, in words.
    notes: Vec<String>,
}

impl Violations {
    fn note(&mut self, what: String) {
        if self.notes.len() < 50 {
            eprintln!("busbar-soak: VIOLATION {what}");
            self.notes.push(what);
        }
    }

    fn total(&self) -> u64 {
        self.lost + self.duplicated + self.corrupt + self.leaks + self.hung + self.other
    }
}

#[derive(Debug, Default)]
struct Totals {
    started: u64,
    senders_started: u64,
    crashes: u64,
    controller_kills: u64,
    early_kills: u64,
    stream_kills: u64,
    idle_kills: u64,
    clean_leaves: u64,
}

struct Soak {
    settings: Settings,
    exe: PathBuf,
    bus: String,
    logs: PathBuf,
    rng: Rng,
    procs: Vec<Proc>,
    events: Receiver<(usize, Option<String>)>,
    events_tx: Sender<(usize, Option<String>)>,
    controller: Option<u64>,
    controllers_seen: BTreeSet<u64>,
    totals: Totals,
    v: Violations,
}

/// Runs a soak; the exit code says whether it held.
pub fn run(settings: Settings) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("busbar-soak: cannot find my own binary: {e}");
            return ExitCode::from(2);
        }
    };
    let bus = format!(
        "soak.{}.{:x}",
        std::process::id(),
        settings.seed & 0xffff_ffff
    );
    let logs = std::env::temp_dir().join(format!("busbar-soak.{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("busbar-soak: cannot create {}: {e}", logs.display());
        return ExitCode::from(2);
    }
    println!(
        "busbar-soak --processes {} --seconds {} --seed {} --receivers {} --holders {}  (bus {bus}, logs in {})",
        settings.processes,
        settings.seconds,
        settings.seed,
        settings.receivers,
        settings.holders,
        logs.display()
    );
    let (events_tx, events) = mpsc::channel();
    let mut soak = Soak {
        rng: Rng::new(settings.seed),
        settings,
        exe,
        bus,
        logs: logs.clone(),
        procs: Vec::new(),
        events,
        events_tx,
        controller: None,
        controllers_seen: BTreeSet::new(),
        totals: Totals::default(),
        v: Violations::default(),
    };
    soak.run();
    soak.check();
    let ok = soak.summary();
    drop(soak);
    if ok {
        let _ = std::fs::remove_dir_all(&logs);
        ExitCode::SUCCESS
    } else {
        println!("the processes' stderr is kept in {}", logs.display());
        ExitCode::FAILURE
    }
}

impl Soak {
    fn spawn(&mut self, kind: Kind) -> usize {
        let idx = self.procs.len();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("role");
        let (name, fate) = match kind {
            Kind::Receiver(i) => {
                cmd.args(["receiver", "--index", &i.to_string()]);
                (format!("receiver{i}"), Fate::Leave { at: None })
            }
            Kind::Holder => {
                cmd.arg("holder");
                (format!("holder{idx}"), Fate::Leave { at: None })
            }
            Kind::Sender => {
                let count = self.rng.between(20, 2000);
                let affinity = u8::from(self.rng.chance(30));
                let fate = match self.rng.below(100) {
                    0..=9 => Fate::CrashEarly {
                        after: Duration::from_millis(self.rng.below(40)),
                    },
                    10..=49 => Fate::Crash {
                        at: Some(self.rng.below(count)),
                    },
                    50..=59 => Fate::Crash { at: None },
                    60..=69 => Fate::Leave {
                        at: Some(self.rng.below(count)),
                    },
                    _ => Fate::Leave { at: None },
                };
                cmd.args([
                    "sender",
                    "--seed",
                    &self.rng.next_u64().to_string(),
                    "--receivers",
                    &self.settings.receivers.to_string(),
                    "--count",
                    &count.to_string(),
                    "--affinity",
                    &affinity.to_string(),
                ]);
                self.totals.senders_started += 1;
                (format!("sender{idx}"), fate)
            }
        };
        cmd.args(["--bus", &self.bus]);
        let stderr = std::fs::File::create(self.logs.join(format!("{name}.err")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                // Out of processes or descriptors: the machine's problem, but a failed run.
                self.v.other += 1;
                self.v.note(format!("cannot start {name}: {e}"));
                panic!("cannot start {name}: {e}");
            }
        };
        let stdout = child.stdout.take();
        let tx = self.events_tx.clone();
        std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((idx, Some(line))).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send((idx, None));
        });
        self.totals.started += 1;
        let now = Instant::now();
        self.procs.push(Proc {
            name,
            kind,
            stdin: child.stdin.take(),
            child,
            started: now,
            last_heard: now,
            id: None,
            fate,
            acks: HashMap::new(),
            acked: 0,
            done: None,
            killed: false,
            closed_at: None,
            eof: false,
            status: None,
            report: Report::default(),
            hung: false,
        });
        idx
    }

    /// `kill -9`; whether it was alive to be killed.
    fn kill(&mut self, idx: usize) -> bool {
        let p = &mut self.procs[idx];
        if p.killed || p.status.is_some() {
            return false;
        }
        let _ = p.child.kill();
        p.killed = true;
        self.totals.crashes += 1;
        true
    }

    fn count(&self, kind: Kind) -> usize {
        self.procs
            .iter()
            .filter(|p| p.kind == kind && p.alive() && p.stdin.is_some())
            .count()
    }

    /// Handles what arrives within `wait`; whether anything did.
    fn pump(&mut self, wait: Duration) -> bool {
        let first = match self.events.recv_timeout(wait) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => return false,
        };
        self.on_event(first);
        // Then whatever else is there already, in a bounded batch.
        for _ in 0..10_000 {
            match self.events.try_recv() {
                Ok(e) => self.on_event(e),
                Err(_) => break,
            }
        }
        true
    }

    fn on_event(&mut self, (idx, line): (usize, Option<String>)) {
        let Some(line) = line else {
            self.procs[idx].eof = true;
            return;
        };
        self.procs[idx].last_heard = Instant::now();
        let mut words = line.splitn(3, ' ');
        let head = words.next().unwrap_or("");
        let a = words.next();
        let b = words.next();
        match head {
            "READY" => self.procs[idx].id = a.and_then(|id| u64::from_str_radix(id, 16).ok()),
            "A" => {
                let (Some(stream), Some(n)) = (
                    a.and_then(|s| s.parse::<u32>().ok()),
                    b.and_then(|n| n.parse::<u64>().ok()),
                ) else {
                    return self.bad_line(idx, &line);
                };
                let p = &mut self.procs[idx];
                p.acks.insert(stream, n);
                p.acked += 1;
                let (acked, fate) = (p.acked, p.fate);
                match fate {
                    Fate::Crash { at: Some(k) } if acked > k && self.kill(idx) => {
                        self.totals.stream_kills += 1;
                    }
                    Fate::Leave { at: Some(k) } if acked > k => self.procs[idx].close_stdin(),
                    _ => {}
                }
            }
            "HOSTING" => {
                if let Some(id) = self.procs[idx].id {
                    self.new_controller(id);
                }
            }
            "CONTROLLER" => {
                if let Some(id) = a.and_then(|id| u64::from_str_radix(id, 16).ok()) {
                    self.new_controller(id);
                }
            }
            "DONE" if self.procs[idx].kind == Kind::Sender => {
                let counts: Option<Vec<u64>> =
                    line.split(' ').skip(1).map(|c| c.parse().ok()).collect();
                self.procs[idx].done = counts;
                match self.procs[idx].fate {
                    Fate::Crash { at: None } => {
                        if self.kill(idx) {
                            self.totals.idle_kills += 1;
                        }
                    }
                    Fate::Leave { .. } => self.procs[idx].close_stdin(),
                    // Its kill point was never reached: it goes when the others go.
                    _ => self.procs[idx].fate = Fate::Leave { at: None },
                }
            }
            "RES" if self.procs[idx].kind == Kind::Sender => {
                if a != Some("ok") && a != Some("host") {
                    let name = self.procs[idx].name.clone();
                    self.leak(&name, &line);
                }
            }
            "VIOLATION" => {
                let name = self.procs[idx].name.clone();
                match a {
                    Some("lost") => self.v.lost += 1,
                    Some("duplicated") => self.v.duplicated += 1,
                    Some("corrupt") => self.v.corrupt += 1,
                    _ => self.v.other += 1,
                }
                self.v.note(format!("{name}: {line}"));
            }
            "SENDERR" | "FAIL" => {
                let name = self.procs[idx].name.clone();
                self.v.other += 1;
                self.v.note(format!("{name}: {line}"));
            }
            _ => {
                let p = &mut self.procs[idx];
                if matches!(p.kind, Kind::Receiver(_)) && p.report.take(&line) {
                    if line.starts_with("RES ") && !line.starts_with("RES ok") {
                        let name = p.name.clone();
                        self.leak(&name, &line);
                    }
                } else {
                    self.bad_line(idx, &line);
                }
            }
        }
    }

    fn bad_line(&mut self, idx: usize, line: &str) {
        let name = self.procs[idx].name.clone();
        self.v.other += 1;
        self.v.note(format!("{name}: unexpected line {line:?}"));
    }

    /// Counts a `RES leak now=fds=A ... want|baseline=fds=B ...` line.
    fn leak(&mut self, name: &str, line: &str) {
        let fds = |key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|rest| rest.strip_prefix("fds="))
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<i64>().ok())
        };
        let now = fds("now=");
        let want = fds("want=").or_else(|| fds("baseline="));
        let extra = match (now, want) {
            (Some(a), Some(b)) => (a - b).unsigned_abs(),
            _ => 1,
        };
        self.v.leaks += 1;
        self.v.leaked_fds += extra;
        self.v.note(format!("{name}: {line}"));
    }

    fn new_controller(&mut self, id: u64) {
        self.controller = Some(id);
        self.controllers_seen.insert(id);
    }

    /// Reaps exited processes; notes those that failed or hung.
    fn reap(&mut self) {
        for i in 0..self.procs.len() {
            let p = &mut self.procs[i];
            if p.status.is_none() {
                if let Ok(Some(s)) = p.child.try_wait() {
                    p.status = Some(s);
                    if !p.killed && !s.success() {
                        let what = format!("{} exited with {s} without being killed", p.name);
                        self.v.other += 1;
                        self.v.note(what);
                    } else if !p.killed && p.kind == Kind::Sender {
                        self.totals.clean_leaves += 1;
                    }
                }
            }
            let p = &mut self.procs[i];
            if p.status.is_some() || p.killed || p.hung {
                continue;
            }
            let now = Instant::now();
            let hung = if let Some(closed) = p.closed_at {
                now.duration_since(closed) > GUARD
            } else if p.id.is_none() {
                now.duration_since(p.started) > GUARD
            } else {
                p.kind == Kind::Sender
                    && p.done.is_none()
                    && now.duration_since(p.last_heard) > GUARD
            };
            if hung {
                p.hung = true;
                let what = format!(
                    "{} hung (silent for {GUARD:?} when it should have been talking or gone)",
                    p.name
                );
                self.v.hung += 1;
                self.v.note(what);
                let _ = p.child.kill();
                p.killed = true;
            }
        }
    }

    /// The chaos, for the set time; then everyone is retired and the receivers report.
    fn run(&mut self) {
        let start = Instant::now();
        let end = start + Duration::from_secs(self.settings.seconds);
        // Holders first: receivers never host the controller, so they wait for one.
        for _ in 0..self.settings.holders {
            self.spawn(Kind::Holder);
        }
        for i in 0..self.settings.receivers {
            self.spawn(Kind::Receiver(i));
        }
        let ready = |s: &Soak| {
            s.procs
                .iter()
                .filter(|p| matches!(p.kind, Kind::Receiver(_)))
                .all(|p| p.id.is_some())
        };
        while !ready(self) && self.v.total() == 0 {
            self.pump(Duration::from_millis(10));
            self.reap();
        }
        let mut next_kill = Instant::now() + self.pause();
        let mut next_report = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            while self.count(Kind::Holder) < self.settings.holders {
                self.spawn(Kind::Holder);
            }
            while self.count(Kind::Sender) < self.settings.senders() {
                self.spawn(Kind::Sender);
            }
            let now = Instant::now();
            if now >= next_kill {
                next_kill = now + self.pause();
                // Receivers never host it; holders and senders with affinity do.
                let host = self.controller.and_then(|c| {
                    self.procs.iter().position(|p| {
                        p.id == Some(c) && p.alive() && !matches!(p.kind, Kind::Receiver(_))
                    })
                });
                if let Some(i) = host {
                    if self.kill(i) {
                        self.totals.controller_kills += 1;
                    }
                }
            }
            for i in 0..self.procs.len() {
                if let Fate::CrashEarly { after } = self.procs[i].fate {
                    if now >= self.procs[i].started + after && self.kill(i) {
                        self.totals.early_kills += 1;
                    }
                }
            }
            self.pump(Duration::from_millis(5));
            self.reap();
            if now >= next_report {
                next_report = now + Duration::from_secs(10);
                println!(
                    "t={:>4}s started={} crashes={} failovers={} acknowledged={} violations={}",
                    start.elapsed().as_secs(),
                    self.totals.started,
                    self.totals.crashes,
                    self.controllers_seen.len().saturating_sub(1),
                    self.procs.iter().map(|p| p.acked).sum::<u64>(),
                    self.v.total()
                );
            }
        }
        self.retire();
    }

    /// Time until the next controller kill.
    fn pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.between(200, 1200))
    }

    /// The end: senders leave (no more kills), then receivers drain and report.
    fn retire(&mut self) {
        for p in &mut self.procs {
            if p.kind == Kind::Sender && p.alive() {
                p.close_stdin();
            }
        }
        // A controller for the receivers to report under.
        if self.count(Kind::Holder) == 0 {
            self.spawn(Kind::Holder);
        }
        let senders_gone = |s: &Soak| {
            s.procs
                .iter()
                .filter(|p| p.kind == Kind::Sender)
                .all(|p| p.status.is_some() || p.hung)
        };
        while !senders_gone(self) {
            self.pump(Duration::from_millis(10));
            self.reap();
        }
        for p in &mut self.procs {
            if let (Kind::Receiver(_), Some(stdin)) = (p.kind, p.stdin.as_mut()) {
                let _ = writeln!(stdin, "finish").and_then(|()| stdin.flush());
                // Reporting is talking: the guard runs from here.
                p.last_heard = Instant::now();
            }
        }
        let deadline = Instant::now() + GUARD * 2;
        let reported = |s: &Soak| {
            s.procs
                .iter()
                .filter(|p| matches!(p.kind, Kind::Receiver(_)))
                .all(|p| p.report.received.is_some() || p.status.is_some())
        };
        while !reported(self) {
            if Instant::now() >= deadline {
                for p in &mut self.procs {
                    if matches!(p.kind, Kind::Receiver(_)) && p.report.received.is_none() {
                        p.hung = true;
                        self.v.hung += 1;
                        let what = format!("{} did not report within {:?}", p.name, GUARD * 2);
                        if self.v.notes.len() < 50 {
                            self.v.notes.push(what);
                        }
                    }
                }
                break;
            }
            self.pump(Duration::from_millis(10));
            self.reap();
        }
        for p in &mut self.procs {
            p.close_stdin();
        }
        while self.procs.iter().any(|p| p.status.is_none() && !p.hung) {
            self.pump(Duration::from_millis(10));
            self.reap();
        }
        // The last lines of everyone, then the readers are done.
        while self.pump(Duration::from_millis(50)) {}
    }

    /// Every acknowledged message must have reached every receiver it was
    /// addressed to, once, in order (the receivers checked order and
    /// repeats as they went; here the counts are compared).
    fn check(&mut self) {
        let r = self.settings.receivers;
        let multicast = r as u32;
        let anycast = r as u32 + 1;
        let reports: Vec<&Report> = (0..r)
            .map(|i| {
                self.procs
                    .iter()
                    .find(|p| p.kind == Kind::Receiver(i))
                    .map(|p| &p.report)
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        if reports.len() != r {
            self.v.other += 1;
            return;
        }
        // Shortfalls and surpluses (counted in `lost` and `duplicated`), and other inconsistencies.
        let mut problems = Vec::new();
        let mut others = Vec::new();
        let mut lost = 0;
        let mut duplicated = 0;
        let mut known = BTreeSet::new();
        for p in self.procs.iter().filter(|p| p.kind == Kind::Sender) {
            let Some(id) = p.id else { continue };
            known.insert(id);
            let clean = p.done.is_some() && !p.killed && p.status.is_some_and(|s| s.success());
            // A killed sender may have had one more message accepted whose `A` line it never printed.
            let slack = u64::from(!clean);
            for stream in 0..=anycast {
                let acked = p.acks.get(&stream).map_or(0, |n| n + 1);
                if clean {
                    let done = p
                        .done
                        .as_ref()
                        .and_then(|d| d.get(stream as usize))
                        .copied();
                    if done != Some(acked) {
                        others.push(format!(
                            "{}: stream {stream}: acknowledged {acked}, but its last line said {done:?}",
                            p.name
                        ));
                    }
                }
                let mut compare = |got: u64, whom: &str| {
                    if got < acked {
                        lost += acked - got;
                        problems.push(format!(
                            "{}: stream {stream}: {whom} got {got} of {acked} acknowledged messages",
                            p.name
                        ));
                    } else if got > acked + slack {
                        duplicated += got - acked - slack;
                        problems.push(format!(
                            "{}: stream {stream}: {whom} got {got} messages, only {acked} were acknowledged{}",
                            p.name,
                            if clean { "" } else { " (and one in flight)" }
                        ));
                    }
                };
                if stream < multicast {
                    let got = reports[stream as usize]
                        .streams
                        .get(&(id, stream))
                        .copied()
                        .unwrap_or(0);
                    compare(got, &format!("receiver{stream}"));
                } else if stream == multicast {
                    for (i, rep) in reports.iter().enumerate() {
                        let got = rep.streams.get(&(id, stream)).copied().unwrap_or(0);
                        compare(got, &format!("receiver{i}"));
                    }
                } else {
                    let mut count = 0;
                    let mut digest = Digest::default();
                    for rep in &reports {
                        if let Some(&(c, d)) = rep.anycasts.get(&(id, stream)) {
                            count += c;
                            digest.merge(Digest(d));
                        }
                    }
                    let exact = |n: u64| count == n && digest == Digest::of_range(n);
                    if !(exact(acked) || (slack == 1 && exact(acked + 1))) {
                        compare(count, "the receivers together");
                        if count >= acked && count <= acked + slack {
                            // Right count, wrong numbers: some lost, as many duplicated.
                            lost += 1;
                            duplicated += 1;
                            problems.push(format!(
                                "{}: anycast stream: {count} messages arrived, but not each of 0..{count} once",
                                p.name
                            ));
                        }
                    }
                }
            }
        }
        for (i, rep) in reports.iter().enumerate() {
            let strangers: BTreeSet<u64> = rep
                .streams
                .keys()
                .chain(rep.anycasts.keys())
                .map(|(f, _)| *f)
                .filter(|f| !known.contains(f))
                .collect();
            if !strangers.is_empty() {
                others.push(format!(
                    "receiver{i} got messages from unknown senders {strangers:x?}"
                ));
            }
        }
        self.v.lost += lost;
        self.v.duplicated += duplicated;
        for what in problems {
            self.v.note(what);
        }
        for what in others {
            self.v.other += 1;
            self.v.note(what);
        }
    }

    /// Prints the totals; whether the run held.
    fn summary(&self) -> bool {
        let t = &self.totals;
        let acknowledged: u64 = self.procs.iter().map(|p| p.acked).sum();
        let checked: u64 = self.procs.iter().filter_map(|p| p.report.received).sum();
        let v = &self.v;
        println!(
            "senders: {} started, {} left cleanly, killed {} mid-join, {} mid-stream, {} idle; controller hosts killed: {}",
            t.senders_started, t.clean_leaves, t.early_kills, t.stream_kills, t.idle_kills, t.controller_kills
        );
        println!(
            "processes started={}, crashes injected={}, failovers={}, messages acknowledged={}, checked={}, lost={}, duplicated={}, corrupt={}, leaked fds={}, hung={}, other violations={}",
            t.started,
            t.crashes,
            self.controllers_seen.len().saturating_sub(1),
            acknowledged,
            checked,
            v.lost,
            v.duplicated,
            v.corrupt,
            v.leaked_fds,
            v.hung,
            v.other,
        );
        let ok = v.total() == 0 && checked > 0;
        if !ok {
            for n in &v.notes {
                println!("  {n}");
            }
            if checked == 0 {
                println!("  no message was checked at all");
            }
        }
        println!("{}", if ok { "SOAK OK" } else { "SOAK FAILED" });
        ok
    }
}
