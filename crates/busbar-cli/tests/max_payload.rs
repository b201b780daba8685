//! `--max-payload` on `listen` and `send`, across real processes: a
//! listener drops a message over its limit, says so on stderr and goes on;
//! one that raised its limit takes the same message; a sender refuses one
//! over its own limit.

mod support;

use support::*;

#[test]
fn a_listener_drops_a_message_over_its_max_payload_and_a_raised_one_takes_it() {
    let bus = bus("max-payload");
    let big = "x".repeat(2000);
    let strict = listen(&bus, "strict", &["--max-payload", "1K", "--count", "1"]);
    let roomy = listen(&bus, "roomy", &["--max-payload", "4K", "--count", "1"]);
    wait_listed(&bus, |rows| {
        has_label(rows, "strict") && has_label(rows, "roomy")
    });

    // Over the sender's own limit: refused before it leaves.
    let (status, _, err) = Proc::spawn_with_stdin(
        &[
            "send",
            "--bus",
            &bus,
            "--to",
            "roomy",
            "--max-payload",
            "1K",
        ],
        Some(big.as_bytes()),
    )
    .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("over --max-payload (1024 bytes)"), "{err}");

    // With the sender's limit raised it leaves; the strict listener drops it.
    for to in ["strict", "roomy"] {
        let (status, _, err) = Proc::spawn_with_stdin(
            &["send", "--bus", &bus, "--to", to, "--max-payload", "4K"],
            Some(big.as_bytes()),
        )
        .finish();
        assert!(status.success(), "send to {to}: {err}");
    }
    assert_eq!(roomy.line(), big);
    assert_eq!(
        strict.err_line(),
        "busbar: dropped a message of 2003 bytes: over --max-payload (1024 bytes)"
    );
    // And it goes on.
    let (status, _, err) = run(&["send", "--bus", &bus, "--to", "strict", "small"]);
    assert!(status.success(), "{err}");
    assert_eq!(strict.line(), "small", "the large one was not printed");
    let (status, rest, err) = strict.finish();
    assert!(status.success(), "{err}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(roomy.finish().0.success());
}

#[test]
fn a_bad_max_payload_is_a_usage_error() {
    let (status, _, err) = run(&[
        "listen",
        "--bus",
        "b",
        "--label",
        "x",
        "--max-payload",
        "lots",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("not a number of bytes"), "{err}");
}
