//! `busbar request` and `busbar listen --reply`: a round trip from the shell.

mod support;

use support::*;

#[test]
fn request_prints_the_answer_of_listen_reply() {
    let bus = bus("request");
    let listener = listen(&bus, "echo", &["--reply", "pong", "--count", "2"]);
    wait_listed(&bus, |rows| has_label(rows, "echo"));
    for _ in 0..2 {
        let (status, out, err) = run(&[
            "request",
            "--bus",
            &bus,
            "--to",
            "echo",
            "--timeout",
            "60",
            "ping",
        ]);
        assert!(status.success(), "request failed: {err}");
        assert_eq!(out, vec!["pong".to_string()]);
    }
    assert_eq!(listener.line(), "ping");
    assert_eq!(listener.line(), "ping");
    let (status, _, err) = listener.finish();
    assert!(status.success(), "listen failed: {err}");
}

#[test]
fn request_without_a_match_or_an_answer_fails() {
    let bus = bus("request-none");
    // A listener that does not answer.
    let listener = listen(&bus, "mute", &[]);
    wait_listed(&bus, |rows| has_label(rows, "mute"));
    let (status, out, err) = run(&["request", "--bus", &bus, "--to", "nobody", "x"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.is_empty() && err.contains("no endpoint"), "{err}");
    let (status, out, err) = run(&[
        "request",
        "--bus",
        &bus,
        "--to",
        "mute",
        "--timeout",
        "0.2",
        "x",
    ]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(out.is_empty() && err.contains("no answer"), "{err}");
    drop(listener);
}
