//! What the tests of the `busbar` command share: running it, reading its
//! output line by line, waiting for `busbar list` to show an endpoint.
//!
//! Every wait is bounded by [`GUARD`], and every process a test starts is
//! killed when the test ends, passed or failed.

#![allow(dead_code)] // each test binary uses its own part of this

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_busbar");

/// The longest any one wait may take before the test fails instead of hanging.
pub const GUARD: Duration = Duration::from_secs(60);

/// A bus name no other test (nor another run) uses.
pub fn bus(name: &str) -> String {
    format!("cli-test.{}.{name}", std::process::id())
}

/// The command with a clean environment for busbar.
pub fn busbar(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("BUSBAR_TOKEN")
        .env_remove("RUST_LOG");
    command
}

/// A running `busbar`, killed when dropped. Its stdout is read line by line as it comes.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<()>>,
    err_lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with_stdin(args, None)
    }

    pub fn spawn_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Proc {
        Proc::start(busbar(args), stdin)
    }

    /// Starts `command` (a [`busbar`] command, perhaps configured further).
    pub fn start(mut command: Command, stdin: Option<&[u8]>) -> Proc {
        let mut child = command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start busbar");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(bytes).expect("write stdin");
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, err_lines) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            stderr: Some(stderr),
            err_lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(GUARD)
            .expect("a line from busbar in time")
    }

    /// The next line it prints on stderr.
    pub fn err_line(&self) -> String {
        self.err_lines
            .recv_timeout(GUARD)
            .expect("a line from busbar on stderr in time")
    }

    /// Waits for it to exit: its status, the lines it printed and not yet
    /// read, and its stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "busbar did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(reader) = self.stderr.take() {
            reader.join().expect("stderr reader");
        }
        let stderr: String = self.err_lines.try_iter().map(|l| l + "\n").collect();
        let lines = self.lines.iter().collect();
        (status, lines, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The arguments of `busbar listen --bus BUS --label LABEL --timeout 60`
/// and `extra`: a listener that exits 3 after a minute, a hang guard of its own.
pub fn listen_args<'a>(bus: &'a str, label: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["listen", "--bus", bus, "--label", label, "--timeout", "60"];
    args.extend_from_slice(extra);
    args
}

/// Starts [`listen_args`].
pub fn listen(bus: &str, label: &str, extra: &[&str]) -> Proc {
    Proc::spawn(&listen_args(bus, label, extra))
}

/// Runs `busbar` to the end: status, stdout lines, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    Proc::spawn(args).finish()
}

/// Runs `busbar list` until its table satisfies `ready`, and gives that table.
pub fn wait_listed(bus: &str, ready: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    wait_listed_with(bus, &[], ready)
}

/// [`wait_listed`] with more arguments for `busbar list` (e.g. `--namespace`).
pub fn wait_listed_with(bus: &str, extra: &[&str], ready: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + GUARD;
    let mut args = vec!["list", "--bus", bus, "--join-timeout", "5"];
    args.extend_from_slice(extra);
    loop {
        // `list` itself waits (up to its join timeout) for the bus to exist.
        let (status, lines, _) = run(&args);
        if status.success() {
            let rows = parse_table(&lines);
            if ready(&rows) {
                return rows;
            }
        }
        assert!(
            Instant::now() < deadline,
            "bus {bus} never showed what the test waits for"
        );
    }
}

/// One row of `busbar list`.
#[derive(Debug)]
pub struct Row {
    pub pid: u32,
    pub controller: bool,
    pub in_per_sec: u64,
    pub out_per_sec: u64,
    pub queued: u64,
    pub dropped: u64,
    pub label: String,
}

pub fn parse_table(lines: &[String]) -> Vec<Row> {
    assert!(lines[0].starts_with("ID "), "header: {lines:?}");
    lines[1..]
        .iter()
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 9, "row {line:?}");
            assert_eq!(cells[0].len(), 16, "id in {line:?}");
            Row {
                pid: cells[1].parse().expect("pid"),
                controller: match cells[3] {
                    "yes" => true,
                    "-" => false,
                    other => panic!("controller column {other:?}"),
                },
                in_per_sec: cells[4].parse().expect("messages in per second"),
                out_per_sec: cells[5].parse().expect("messages out per second"),
                queued: cells[6].parse().expect("queued bytes"),
                dropped: cells[7].parse().expect("dropped"),
                label: cells[8].to_string(),
            }
        })
        .collect()
}

pub fn has_label(rows: &[Row], label: &str) -> bool {
    rows.iter().any(|r| r.label == label)
}
