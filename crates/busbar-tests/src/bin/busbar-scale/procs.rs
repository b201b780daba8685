//! Many `busbar-peer` processes at once: starting them, reading their
//! lines, and measuring what each costs (from `/proc`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest the harness waits for one line: a hang guard.
pub const GUARD: Duration = Duration::from_secs(300);

/// A running `busbar-peer`, its stdout read line by line on a small thread.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `busbar-peer <args>` (its stderr goes to ours).
    pub fn start(peer: &std::path::Path, name: String, args: &[String]) -> Result<Proc, String> {
        let mut child = Command::new(peer)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} ({}): {e}", name, peer.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start a reader thread: {e}"))?;
        Ok(Proc {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rest of the next line that starts with `prefix` (a `FAIL` line,
    /// an exit or [`GUARD`] of silence is an error).
    pub fn expect(&mut self, prefix: &str) -> Result<String, String> {
        let deadline = Instant::now() + GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_string());
                    }
                    if line.starts_with("FAIL ") {
                        return Err(format!("{}: {line}", self.name));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: no {prefix:?} within {GUARD:?}", self.name))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited before {prefix:?}", self.name))
                }
            }
        }
    }

    /// Writes one line to its stdin.
    pub fn tell(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Closes stdin and waits for a successful exit.
    pub fn finish(mut self) -> Result<(), String> {
        self.stdin = None;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited with {status}", self.name))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one process holds, from `/proc/<pid>`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    /// Open descriptors.
    pub fds: f64,
    /// Memory mappings (lines of `maps`).
    pub maps: f64,
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: f64,
    /// Of which shared memory (memfd, rings, regions), KiB (`RssShmem`).
    pub shmem_kib: f64,
}

impl Cost {
    /// Reads it for `pid`; `None` when the process is gone.
    pub fn of(pid: u32) -> Option<Cost> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .ok()?
            .lines()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0.0)
        };
        Some(Cost {
            fds: fds as f64,
            maps: maps as f64,
            rss_kib: kib("VmRSS:"),
            shmem_kib: kib("RssShmem:"),
        })
    }

    /// The mean over `pids` (those still there).
    pub fn mean(pids: impl Iterator<Item = u32>) -> Cost {
        let all: Vec<Cost> = pids.filter_map(Cost::of).collect();
        let n = all.len().max(1) as f64;
        let sum = all.iter().fold(Cost::default(), |a, c| Cost {
            fds: a.fds + c.fds,
            maps: a.maps + c.maps,
            rss_kib: a.rss_kib + c.rss_kib,
            shmem_kib: a.shmem_kib + c.shmem_kib,
        });
        Cost {
            fds: sum.fds / n,
            maps: sum.maps / n,
            rss_kib: sum.rss_kib / n,
            shmem_kib: sum.shmem_kib / n,
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
