//! Spawning `busbar-peer` processes and talking to them through their stdout lines.
//!
//! Every wait here is for a line a peer prints when something happened;
//! time limits ([`GUARD`]) only turn a hang into a failure with a clear
//! message. A [`Peer`] is killed when dropped, so a failing test leaves no
//! process behind.

use busbar_tests::Locked;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The helper binary, built by cargo for these tests.
pub const PEER: &str = env!("CARGO_BIN_EXE_busbar-peer");

/// The longest a test waits for one line (or one exit) before it fails:
/// a hang guard, far beyond what the slowest step needs on a loaded machine.
pub const GUARD: Duration = Duration::from_secs(60);

/// A bus name no other test (in this run or a parallel one) uses.
pub fn bus_name(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bt.{test}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a peer said when it joined.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Its endpoint id, as `EndpointId` prints it.
    pub id: String,
    /// Whether it hosts the bus controller.
    pub controller: bool,
}

/// A running `busbar-peer`.
pub struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Peer {
    /// Starts `busbar-peer <role> --bus <bus> --label <label> <extra...>`.
    pub fn start(name: &str, role: &str, bus: &str, label: &str, extra: &[&str]) -> Peer {
        Peer::start_with(name, role, bus, label, extra, |_| {})
    }

    /// Like [`start`](Peer::start), with a last say on the command (to change its uid, say).
    pub fn start_with(
        name: &str,
        role: &str,
        bus: &str,
        label: &str,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Peer {
        let mut cmd = Command::new(PEER);
        cmd.arg(role)
            .args(["--bus", bus, "--label", label])
            .args(extra);
        configure(&mut cmd);
        Peer::spawn(name, cmd)
    }

    /// Starts `cmd` (any program that speaks in stdout lines) with its
    /// stdin, stdout and stderr piped to the test.
    pub fn spawn(name: &str, mut cmd: Command) -> Peer {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                sink.locked().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Peer {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            status: None,
        }
    }

    /// Waits for `READY <id> controller=<bool>`.
    pub fn ready(&mut self) -> Ready {
        let rest = self.expect("READY ");
        let (id, controller) = rest
            .split_once(" controller=")
            .unwrap_or_else(|| self.fail(&format!("bad READY line {rest:?}")));
        Ready {
            id: id.to_string(),
            controller: controller == "true",
        }
    }

    /// The next line, waiting up to [`GUARD`].
    pub fn line(&mut self) -> String {
        self.line_within(GUARD)
    }

    /// The next line, waiting up to `guard`. Fails the test when the peer
    /// printed `FAIL ...`, exited, or said nothing for that long.
    pub fn line_within(&mut self, guard: Duration) -> String {
        match self.lines.recv_timeout(guard) {
            Ok(line) => {
                self.seen.push(line.clone());
                if line.starts_with("FAIL ") {
                    self.fail(&format!("peer failed: {line}"));
                }
                line
            }
            Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                "no line from the peer within {guard:?} (hang guard)"
            )),
            Err(RecvTimeoutError::Disconnected) => {
                self.reap(Duration::from_secs(5));
                self.fail("the peer closed its stdout (exited) before printing the expected line")
            }
        }
    }

    /// The next line, which must start with `prefix`; the rest of it.
    pub fn expect(&mut self, prefix: &str) -> String {
        let line = self.line();
        match line.strip_prefix(prefix) {
            Some(rest) => rest.to_string(),
            None => self.fail(&format!(
                "expected a line starting with {prefix:?}, got {line:?}"
            )),
        }
    }

    /// The next line, which must be `want`.
    pub fn expect_line(&mut self, want: &str) {
        let line = self.line();
        if line != want {
            self.fail(&format!("expected the line {want:?}, got {line:?}"));
        }
    }

    /// For a `recv` peer: the `GOT` lines (without `GOT `) up to `END <n>`;
    /// checks `n` and that the peer then exits successfully.
    pub fn received(&mut self) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix("GOT ") {
                got.push(rest.to_string());
            } else if line.strip_prefix("END ").and_then(|n| n.parse().ok()) == Some(got.len()) {
                break;
            } else {
                self.fail(&format!("expected GOT or END {}, got {line:?}", got.len()));
            }
        }
        self.wait_success();
        got
    }

    /// Writes one line to the peer's stdin.
    pub fn tell(&mut self, line: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of {} already closed", self.name));
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            self.fail(&format!("cannot write {line:?} to the peer: {e}"));
        }
    }

    /// Writes a command line and returns the answer line.
    pub fn ask(&mut self, command: &str) -> String {
        self.tell(command);
        self.line()
    }

    /// Closes the peer's stdin (`hold` and `send` peers then exit).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin, waits for the exit, and checks that it succeeded and
    /// that the peer printed nothing the test did not read.
    pub fn wait_success(&mut self) {
        self.close_stdin();
        if !self.reap(GUARD) {
            self.fail(&format!("did not exit within {GUARD:?} (hang guard)"));
        }
        let extra: Vec<String> = self.lines.try_iter().collect();
        self.seen.extend(extra.iter().cloned());
        if !extra.is_empty() {
            self.fail(&format!("printed lines the test did not expect: {extra:?}"));
        }
        if self.status.is_some_and(|s| !s.success()) {
            self.fail("exited with failure");
        }
    }

    /// Stops the process (`SIGSTOP`): it keeps its sockets but reads
    /// nothing. Returns once every thread of it is stopped.
    ///
    /// `kill` only queues the signal: the kernel wakes one thread to take
    /// it, and that thread stops the others when it next runs. On a loaded
    /// machine it may wait for a core for milliseconds, and meanwhile the
    /// process's other threads (its controller's, say) still run and answer
    /// whatever reaches them. So this waits until `/proc` shows each thread
    /// stopped (state `T`).
    pub fn stop(&mut self) {
        self.signal(rustix::process::Signal::STOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        let start = Instant::now();
        loop {
            match all_stopped(&tasks) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => self.fail(&format!("cannot read {tasks}: {e}")),
            }
            if start.elapsed() > GUARD {
                self.fail(&format!("not stopped {GUARD:?} after SIGSTOP"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets a stopped process go on (`SIGCONT`).
    pub fn resume(&mut self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&mut self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            if let Err(e) = rustix::process::kill_process(pid, sig) {
                self.fail(&format!("could not send {sig:?}: {e}"));
            }
        }
    }

    /// The lines a peer that is gone printed and the test has not read yet
    /// (after [`kill9`](Peer::kill9): everything it said before it died).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    rest.push(line);
                }
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("its stdout is still open after it died (hang guard)")
                }
            }
        }
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        if !self.reap(GUARD) {
            self.fail("still running after SIGKILL");
        }
    }

    /// Waits up to `guard` for the process to exit; whether it did.
    fn reap(&mut self, guard: Duration) -> bool {
        let deadline = Instant::now() + guard;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) | Err(_) => return false,
            }
        }
        if let Some(t) = self.stderr_reader.take() {
            let _ = t.join();
        }
        true
    }

    /// How many times `needle` appears in what the peer wrote to stderr (its log) so far.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr.locked().matches(needle).count()
    }

    /// Waits up to [`GUARD`] until the peer's stderr (its log) contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + GUARD;
        loop {
            let found = self.stderr.locked().contains(needle);
            if found {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{needle:?} did not appear on stderr within {GUARD:?} (hang guard)"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Fails the test with everything known about this peer.
    pub fn fail(&self, why: &str) -> ! {
        let stderr = self.stderr.locked().clone();
        let tail: Vec<&String> = self
            .seen
            .iter()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "peer {} (pid {}): {why}\n  exit status: {:?}\n  last stdout lines: {tail:#?}\n  stderr:\n{stderr}",
            self.name,
            self.child.id(),
            self.status,
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts a peer that only holds the bus controller, and checks that it does.
pub fn controller_holder(bus: &str) -> Peer {
    let mut holder = Peer::start("holder", "hold", bus, "holder", &[]);
    let ready = holder.ready();
    assert!(
        ready.controller,
        "the first endpoint on a fresh bus must host its controller"
    );
    holder
}

/// Whether every thread in `tasks` (a `/proc/<pid>/task` directory) is
/// stopped by a signal (or gone).
fn all_stopped(tasks: &str) -> std::io::Result<bool> {
    for task in std::fs::read_dir(tasks)? {
        let stat = match std::fs::read_to_string(task?.path().join("stat")) {
            Ok(s) => s,
            // The thread ended between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // `pid (comm) S ...`: the state follows the last ')' (comm may hold one).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if !matches!(state, Some("T" | "Z" | "X")) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Starts a peer and waits for it to join; checks that it does not host the controller.
pub fn joined(name: &str, role: &str, bus: &str, label: &str, extra: &[&str]) -> (Peer, Ready) {
    let mut peer = Peer::start(name, role, bus, label, extra);
    let ready = peer.ready();
    if ready.controller {
        peer.fail("hosts the controller, but another endpoint already did");
    }
    (peer, ready)
}

/// The payload part of `recv`'s `GOT <payload> @ <selector>` lines.
pub fn payloads(got: &[String]) -> Vec<String> {
    got.iter()
        .map(|g| {
            g.split_once(" @ ")
                .map_or(g.as_str(), |(p, _)| p)
                .to_string()
        })
        .collect()
}
