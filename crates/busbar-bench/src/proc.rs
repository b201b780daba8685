//! Processes: the parent spawns copies of itself in a role, and both sides
//! talk over the child's stdin and stdout in lines.
//!
//! A child writes protocol lines prefixed with `@@ ` (`READY`, `NAME x`,
//! `FIRST`, `RESULT k=v ...`); everything else it prints, and all of its
//! stderr, is kept as a log to show when something fails. The parent writes
//! plain lines to the child's stdin (`GO`, `PEER x`, `STOP`, ...).

use crate::Res;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The argument that marks a child process (hidden from `--help`).
pub const ROLE_ARG: &str = "__role";
const PREFIX: &str = "@@ ";
const LOG_LINES: usize = 40;

/// Arguments handed to a role: `key=value` pairs.
#[derive(Debug, Clone, Default)]
pub struct Args(pub Vec<(String, String)>);

impl Args {
    pub fn set(mut self, key: &str, value: impl ToString) -> Args {
        self.0.push((key.to_string(), value.to_string()));
        self
    }

    pub fn parse(items: &[String]) -> Res<Args> {
        let mut out = Vec::new();
        for item in items {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("role argument without '=': {item}"))?;
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Args(out))
    }

    pub fn str(&self, key: &str) -> Res<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("missing role argument {key}").into())
    }

    pub fn num(&self, key: &str) -> Res<u64> {
        let v = self.str(key)?;
        v.parse()
            .map_err(|_| format!("role argument {key}={v} is not a number").into())
    }
}

/// A child process seen from the parent.
pub struct Proc {
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    /// Spawns this executable as `peer`/`role` with `args`.
    pub fn spawn(peer: &str, role: &str, args: &Args) -> Res<Proc> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(ROLE_ARG).arg(peer).arg(role);
        for (k, v) in &args.0 {
            cmd.arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        spawn_reader(stdout, Some(tx), log.clone());
        spawn_reader(stderr, None, log.clone());
        Ok(Proc {
            label: format!("{peer}/{role}"),
            stdin: child.stdin.take(),
            child,
            lines,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the child's stdin.
    pub fn tell(&mut self, line: &str) -> Res<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| self.fail(&format!("cannot write {line:?}: {e}")))?;
        Ok(())
    }

    /// Waits for a protocol line starting with `word`; returns the rest.
    /// Other protocol lines go to `other` (e.g. `NAME x` to forward).
    pub fn expect(
        &mut self,
        word: &str,
        timeout: Duration,
        other: &mut dyn FnMut(&str) -> Res<()>,
    ) -> Res<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = strip_word(&line, word) {
                        return Ok(rest.to_string());
                    }
                    if line.starts_with("ERROR") {
                        return Err(self.fail(&line));
                    }
                    other(&line)?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fail(&format!("no {word} within {timeout:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(self.fail(&format!("exited before {word}")));
                }
            }
        }
    }

    /// Like [`expect`](Self::expect), ignoring other lines.
    pub fn expect_only(&mut self, word: &str, timeout: Duration) -> Res<String> {
        self.expect(word, timeout, &mut |_| Ok(()))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An error naming this child, with the end of its log.
    pub fn fail(&self, what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        let log = self.log.locked();
        let tail: Vec<&str> = log.iter().rev().take(6).map(|s| s.as_str()).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{}: {what}; log: {}", self.label, tail.join(" | ")).into()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Closing stdin tells a well-behaved child to finish; give it a moment.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
    }
}

fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(' ')
    }
}

fn spawn_reader(
    from: impl Read + Send + 'static,
    protocol: Option<mpsc::Sender<String>>,
    log: Arc<Mutex<VecDeque<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            match (&protocol, line.strip_prefix(PREFIX)) {
                (Some(tx), Some(msg)) => {
                    let _ = tx.send(msg.to_string());
                }
                _ => {
                    let mut log = log.locked();
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        }
    });
}

/// The child's side: protocol lines out, the parent's lines in.
pub struct Ctl {
    lines: Receiver<String>,
}

impl Ctl {
    pub fn new() -> Ctl {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
            }
            let _ = tx.send("EOF".to_string());
        });
        Ctl { lines }
    }

    /// Writes a protocol line to the parent.
    pub fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{line}");
        let _ = out.flush();
    }

    /// The parent's next line (`None` on timeout). `EOF` when the parent is gone.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for `GO`, handing each `PEER` name that comes before it to `on_peer`.
    pub fn wait_go(&self, timeout: Duration, on_peer: &mut dyn FnMut(&str) -> Res<()>) -> Res<()> {
        loop {
            match self.next(timeout).as_deref() {
                Some("GO") => return Ok(()),
                Some(l) if l.starts_with("PEER ") => on_peer(&l[5..])?,
                Some(l) => return Err(format!("expected GO, got {l}").into()),
                None => return Err("no GO from the parent".into()),
            }
        }
    }

    /// Waits for a line starting with `word`; returns the rest.
    pub fn wait_word(&self, word: &str, timeout: Duration) -> Res<String> {
        match self.next(timeout) {
            Some(l) => strip_word(&l, word)
                .map(str::to_string)
                .ok_or_else(|| format!("expected {word}, got {l}").into()),
            None => Err(format!("no {word} from the parent").into()),
        }
    }
}

/// A [`Mutex`] taken whether or not it is poisoned: a log is still worth
/// reading after the thread filling it panicked.
trait Locked<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
