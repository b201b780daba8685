//! The `busbar` command, run as a user would: real processes, each test on its own bus.
//!
//! Nothing sleeps to synchronise: a test waits for a listener with
//! `busbar list`, or sends with `--ttl` so the sender waits for it. Every
//! wait is bounded by [`GUARD`], and every process a test starts is killed
//! when the test ends, passed or failed.

mod support;

use support::*;

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
