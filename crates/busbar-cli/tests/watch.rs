//! `busbar list --watch`: the directory again and again, with each
//! endpoint's message rates, across real processes.

mod support;

use busbar::{label, BytesMessage, Message, Options, Selector};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Reads the next table `list --watch` shows: its heading, then the table.
fn next_table(watch: &Proc) -> (String, Vec<Row>) {
    let mut heading = watch.line();
    if heading.is_empty() {
        heading = watch.line();
    }
    assert!(heading.starts_with("bus "), "a heading: {heading:?}");
    let count: usize = heading
        .rsplit_once(": ")
        .and_then(|(_, n)| n.strip_suffix(" endpoint(s)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the number of endpoints in {heading:?}"));
    let lines: Vec<String> = (0..=count).map(|_| watch.line()).collect();
    (heading, parse_table(&lines))
}

#[test]
fn watch_shows_count_tables_and_stops() {
    let bus = bus("watch-count");
    let listener = listen(&bus, "idle", &[]);
    wait_listed(&bus, |rows| has_label(rows, "idle"));
    let watch = Proc::spawn(&[
        "list",
        "--bus",
        &bus,
        "--watch",
        "--count",
        "3",
        "--interval",
        "0.05",
    ]);
    for _ in 0..3 {
        let (heading, rows) = next_table(&watch);
        assert!(heading.contains(&format!("{bus:?}")), "{heading}");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].pid, listener.pid());
        assert_eq!(
            (rows[0].in_per_sec, rows[0].out_per_sec),
            (0, 0),
            "an idle bus"
        );
    }
    let (status, rest, err) = watch.finish();
    assert!(status.success(), "{err}");
    assert!(rest.is_empty(), "exactly 3 tables: {rest:?}");
}

#[test]
fn count_and_interval_need_watch() {
    for flag in [["--count", "2"], ["--interval", "1"]] {
        let (status, _, err) = run(&["list", "--bus", "b", flag[0], flag[1]]);
        assert_eq!(status.code(), Some(2), "{flag:?}: {err}");
        assert!(err.contains("--watch"), "{err}");
    }
}

/// A sender in this process keeps sending to a `busbar listen`; `watch`
/// shows the sender's OUT/S and the listener's IN/S above zero. How soon
/// depends on the machine: the test reads tables until it sees them
/// (bounded by the hang guard), never counting on a time.
#[test]
fn watch_shows_the_message_rate_of_a_busy_sender_and_its_receiver() {
    let bus = bus("watch-busy");
    let listener = listen(&bus, "sink", &[]);
    wait_listed(&bus, |rows| has_label(rows, "sink"));

    let mut options = Options::new(&bus, label!("busy"), "busbar");
    options.controller_affinity = false;
    let (tx, _rx) = busbar::join::<BytesMessage, BytesMessage>(options, Some(GUARD))
        .expect("this process joins the bus");
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let message = Message::new(
                    Selector::unicast("sink"),
                    BytesMessage::new(0, b"tick".to_vec()),
                );
                if tx.send(message).is_err() {
                    break;
                }
                sent += 1;
                // A steady trickle, so the listener's output stays small.
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };

    let watch = Proc::spawn(&["list", "--bus", &bus, "--watch", "--interval", "0.2"]);
    let deadline = Instant::now() + GUARD;
    let me = std::process::id();
    let seen = loop {
        let (_, rows) = next_table(&watch);
        let busy = rows
            .iter()
            .find(|r| r.pid == me)
            .expect("the busy sender is listed");
        let sink = rows
            .iter()
            .find(|r| r.label == "sink")
            .expect("the listener is listed");
        assert_eq!(busy.label, "busy");
        if busy.out_per_sec > 0 && sink.in_per_sec > 0 {
            break (busy.out_per_sec, sink.in_per_sec);
        }
        assert!(Instant::now() < deadline, "no rate shown: {rows:?}");
    };
    stop.store(true, Ordering::Relaxed);
    let sent = sending.join().expect("the sender");
    assert!(sent > 0);
    // Rates, not totals: at most one message per millisecond was sent
    // (with room for rounding over a short interval).
    assert!(seen.0 <= 1100 && seen.1 <= 1100, "{seen:?}");
    drop(watch);
    drop(listener);
}
