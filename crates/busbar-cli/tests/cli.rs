//! The `busbar` command, run as a user would: real processes, each test on its own bus.
//!
//! Nothing sleeps to synchronise: a test waits for a listener with
//! `busbar list`, or sends with `--ttl` so the sender waits for it. Every
//! wait is bounded by [`GUARD`], and every process a test starts is killed
//! when the test ends, passed or failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_busbar");

/// The longest any one wait may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// A bus name no other test (nor another run) uses.
fn bus(name: &str) -> String {
    format!("cli-test.{}.{name}", std::process::id())
}

/// The command with a clean environment for busbar.
fn busbar(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("BUSBAR_TOKEN")
        .env_remove("RUST_LOG");
    command
}

/// A running `busbar`, killed when dropped. Its stdout is read line by line as it comes.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with_stdin(args, None)
    }

    fn spawn_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Proc {
        let mut child = busbar(args)
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
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Proc {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(GUARD)
            .expect("a line from busbar in time")
    }

    /// Waits for it to exit: its status, the lines it printed and not yet
    /// read, and its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "busbar did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default();
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

/// Runs `busbar` to the end: status, stdout lines, stderr.
fn run(args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    Proc::spawn(args).finish()
}

/// Runs `busbar list` until its table satisfies `ready`, and gives that table.
fn wait_listed(bus: &str, ready: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + GUARD;
    loop {
        // `list` itself waits (up to its join timeout) for the bus to exist.
        let (status, lines, _) = run(&["list", "--bus", bus, "--join-timeout", "5"]);
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
struct Row {
    pid: u32,
    controller: bool,
    #[allow(dead_code)] // parsed to check the column holds a number
    queued: u64,
    #[allow(dead_code)] // parsed to check the column holds a number
    dropped: u64,
    label: String,
}

fn parse_table(lines: &[String]) -> Vec<Row> {
    assert!(lines[0].starts_with("ID "), "header: {lines:?}");
    lines[1..]
        .iter()
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 7, "row {line:?}");
            assert_eq!(cells[0].len(), 16, "id in {line:?}");
            Row {
                pid: cells[1].parse().expect("pid"),
                controller: match cells[3] {
                    "yes" => true,
                    "-" => false,
                    other => panic!("controller column {other:?}"),
                },
                queued: cells[4].parse().expect("queued bytes"),
                dropped: cells[5].parse().expect("dropped"),
                label: cells[6].to_string(),
            }
        })
        .collect()
}

fn has_label(rows: &[Row], label: &str) -> bool {
    rows.iter().any(|r| r.label == label)
}

#[test]
fn listen_prints_what_send_sends() {
    let bus = bus("roundtrip");
    let listener = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "earth",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    // The ttl makes `send` wait for the listener; the join timeout, for the bus.
    let (status, out, err) = run(&[
        "send",
        "--bus",
        &bus,
        "--to",
        "earth",
        "--ttl",
        "60000",
        "--join-timeout",
        "60",
        "hello, moon",
    ]);
    assert!(status.success(), "send failed: {err}");
    assert!(out.is_empty(), "send prints nothing on stdout: {out:?}");
    assert_eq!(listener.line(), "hello, moon");
    let (status, rest, err) = listener.finish();
    assert!(status.success(), "listen failed: {err}");
    assert!(rest.is_empty(), "listen prints only the messages: {rest:?}");
}

#[test]
fn send_reads_stdin_and_listen_shows_binary_as_hex() {
    let bus = bus("stdin");
    let listener = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "sink",
        "--count",
        "3",
        "--timeout",
        "60",
    ]);
    let send = |bytes: &[u8]| {
        let args = [
            "send",
            "--bus",
            &bus,
            "--to",
            "sink",
            "--ttl",
            "60000",
            "--join-timeout",
            "60",
        ];
        let (status, _, err) = Proc::spawn_with_stdin(&args, Some(bytes)).finish();
        assert!(status.success(), "send failed: {err}");
    };
    send(b"from stdin\n");
    send(&[0xff, 0x00, 0x41]);
    send(b"two\nlines");
    assert_eq!(listener.line(), "from stdin");
    assert_eq!(listener.line(), "ff0041");
    assert_eq!(listener.line(), "two\\nlines");
    assert!(listener.finish().0.success());
}

#[test]
fn multicast_reaches_every_matching_listener() {
    let bus = bus("multicast");
    let one = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "renderer,one",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    let two = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "renderer,two",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    wait_listed(&bus, |rows| {
        has_label(rows, "one,renderer") && has_label(rows, "renderer,two")
    });
    let (status, _, err) = run(&[
        "send",
        "--bus",
        &bus,
        "--multicast",
        "--to",
        "renderer",
        "to all renderers",
    ]);
    assert!(status.success(), "send failed: {err}");
    assert_eq!(one.line(), "to all renderers");
    assert_eq!(two.line(), "to all renderers");
    assert!(one.finish().0.success());
    assert!(two.finish().0.success());
}

#[test]
fn label_expression_picks_the_receiver() {
    let bus = bus("expression");
    let cpu = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "renderer,cpu",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    let gpu = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "renderer,gpu",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    wait_listed(&bus, |rows| {
        has_label(rows, "cpu,renderer") && has_label(rows, "gpu,renderer")
    });
    for (to, text) in [("renderer & !gpu", "for cpu"), ("gpu | nothing", "for gpu")] {
        let (status, _, err) = run(&["send", "--bus", &bus, "--to", to, text]);
        assert!(status.success(), "send to {to} failed: {err}");
    }
    assert_eq!(cpu.line(), "for cpu");
    assert_eq!(gpu.line(), "for gpu");
    assert!(cpu.finish().0.success());
    assert!(gpu.finish().0.success());
}

#[test]
fn list_shows_the_listeners_and_the_controller() {
    let bus = bus("list");
    let first = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "first",
        "--timeout",
        "60",
    ]);
    wait_listed(&bus, |rows| has_label(rows, "first"));
    let second = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "second,extra",
        "--timeout",
        "60",
    ]);
    let rows = wait_listed(&bus, |rows| has_label(rows, "extra,second"));
    assert_eq!(
        rows.len(),
        2,
        "the two listeners and not `list` itself: {rows:?}"
    );
    let row = |label: &str| rows.iter().find(|r| r.label == label).expect("row");
    assert_eq!(row("first").pid, first.pid());
    assert!(
        row("first").controller,
        "the first listener hosts the controller: {rows:?}"
    );
    assert_eq!(row("extra,second").pid, second.pid());
    assert!(!row("extra,second").controller);
}

#[test]
fn bad_expression_exits_2_with_a_caret() {
    let (status, out, err) = run(&[
        "send",
        "--bus",
        &bus("bad-expr"),
        "--to",
        "a & (b |",
        "text",
    ]);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(out.is_empty());
    assert!(err.contains("bad label expression at 8"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "a & (b |")
        .expect("the expression is shown");
    let expr_col = lines[at].find('a').expect("a");
    let caret_col = lines[at + 1].find('^').expect("a caret under it");
    assert_eq!(caret_col - expr_col, 8, "{err}");
}

#[test]
fn listen_timeout_exits_nonzero() {
    let (status, out, err) = run(&[
        "listen",
        "--bus",
        &bus("timeout"),
        "--label",
        "x",
        "--count",
        "1",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(status.code(), Some(3), "stderr: {err}");
    assert!(out.is_empty(), "{out:?}");
    assert!(err.contains("timed out") && err.contains("0 of 1"), "{err}");
}

#[test]
fn send_without_a_bus_says_so() {
    let bus = bus("nobody");
    let (status, _, err) = run(&[
        "send",
        "--bus",
        &bus,
        "--to",
        "x",
        "--join-timeout",
        "0.2",
        "hello",
    ]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&format!("no bus named \"{bus}\" is running")),
        "{err}"
    );
    let (status, _, err) = run(&["list", "--bus", &bus, "--join-timeout", "0.2"]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("no bus named"), "{err}");
}

#[test]
fn send_without_a_match_fails_or_times_out() {
    let bus = bus("nomatch");
    let _listener = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "here",
        "--timeout",
        "60",
    ]);
    wait_listed(&bus, |rows| has_label(rows, "here"));
    let (status, _, err) = run(&["send", "--bus", &bus, "--to", "elsewhere", "x"]);
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("no endpoint on bus") && err.contains("`elsewhere`"),
        "{err}"
    );
    let (status, _, err) = run(&[
        "send",
        "--bus",
        &bus,
        "--to",
        "elsewhere",
        "--ttl",
        "200",
        "x",
    ]);
    assert_eq!(status.code(), Some(3), "stderr: {err}");
    assert!(err.contains("within 200 ms"), "{err}");
}

#[test]
fn send_with_ttl_waits_for_a_listener_that_joins_later() {
    let bus = bus("late");
    // This sender hosts the bus itself, and waits for a receiver.
    let sender = Proc::spawn(&[
        "send",
        "--bus",
        &bus,
        "--controller",
        "--ttl",
        "60000",
        "--to",
        "late",
        "sent before you came",
    ]);
    let rows = wait_listed(&bus, |rows| !rows.is_empty());
    assert!(
        rows[0].label.starts_with("busbar-cli:") && rows[0].controller,
        "{rows:?}"
    );
    let listener = Proc::spawn(&[
        "listen",
        "--bus",
        &bus,
        "--label",
        "late",
        "--count",
        "1",
        "--timeout",
        "60",
    ]);
    assert_eq!(listener.line(), "sent before you came");
    let (status, _, err) = sender.finish();
    assert!(status.success(), "send failed: {err}");
    assert!(listener.finish().0.success());
}

#[test]
fn demo_exits_0_and_shows_every_step() {
    let (status, out, err) = run(&["demo"]);
    assert!(status.success(), "demo failed: {err}\n{}", out.join("\n"));
    let text = out.join("\n");
    for expected in [
        "[director]",
        "(hosts the controller)",
        "[camera]       unicast to `renderer`: \"frame 1\"",
        "got \"frame 1\" by unicast(renderer)",
        "[renderer-cpu] got \"config v2\" by multicast(renderer)",
        "[renderer-gpu] got \"config v2\" by multicast(renderer)",
        "[renderer-cpu] got \"cpu-only job\" by unicast(renderer & !gpu)",
        "sends the write end of a pipe to `recorder`",
        "[camera]       read \"hello from the recorder (pid ",
        "ref_count 2 (camera + recorder)",
        "ref_count is back to 1",
        "all checks passed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for line in &out {
        assert!(
            line.starts_with('['),
            "every line says who printed it: {line:?}"
        );
    }
}

#[test]
fn help_explains_the_commands() {
    let (status, out, _) = run(&["--help"]);
    assert!(status.success());
    let text = out.join("\n");
    for word in ["listen", "send", "list", "demo", "Exit status"] {
        assert!(text.contains(word), "{word} in {text}");
    }
    assert!(
        !text.contains("demo-role"),
        "the demo's own subcommand stays hidden"
    );
    let (_, out, _) = run(&["send", "--help"]);
    assert!(out.join("\n").contains("Why `send` does not host the bus"));
}
