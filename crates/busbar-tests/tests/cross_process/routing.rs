//! Who gets a message: unicast, multicast, every `LabelOp` form, parsed expressions.

use crate::harness::{bus_name, controller_holder, joined, payloads, Peer};
use std::collections::BTreeSet;

#[test]
fn three_processes_none_of_them_the_controller() {
    let bus = bus_name("three");
    let mut holder = controller_holder(&bus);
    let (mut rx, rx_ready) = joined("rx", "recv", &bus, "rx", &[]);
    let (mut tx, tx_ready) = joined("tx", "send", &bus, "tx", &[]);

    // The sender sees all three, and the controller is the holder, not one of the two talking.
    let listed = tx.ask("endpoints");
    let endpoints: BTreeSet<&str> = listed
        .strip_prefix("ENDPOINTS ")
        .unwrap_or_default()
        .split(' ')
        .collect();
    let holder_id = endpoints
        .iter()
        .find(|e| e.ends_with(":holder:true"))
        .copied();
    assert!(
        holder_id.is_some(),
        "the holder must be listed as the controller: {listed}"
    );
    assert!(
        endpoints.contains(format!("{}:rx:false", rx_ready.id).as_str()),
        "{listed}"
    );
    assert!(
        endpoints.contains(format!("{}:tx:false", tx_ready.id).as_str()),
        "{listed}"
    );
    assert_eq!(endpoints.len(), 3, "{listed}");

    assert_eq!(tx.ask("unicast 0 text:hello rx"), "OK");
    assert_eq!(tx.ask("unicast 0 text:END rx"), "OK");
    assert_eq!(rx.received(), ["text=hello @ unicast(rx)"]);
    tx.wait_success();
    holder.wait_success();
}

/// A controller holder, three receivers labelled `worker`, one labelled
/// `idle`, and a sender.
fn workers_idle_and_sender(bus: &str) -> (Peer, Vec<Peer>, Peer, Peer) {
    let holder = controller_holder(bus);
    let workers = (0..3)
        .map(|i| joined(&format!("worker{i}"), "recv", bus, "worker", &[]).0)
        .collect();
    let (idle, _) = joined("idle", "recv", bus, "idle", &[]);
    let (tx, _) = joined("tx", "send", bus, "tx", &[]);
    (holder, workers, idle, tx)
}

#[test]
fn unicast_reaches_exactly_one_match_round_robin() {
    let bus = bus_name("unicast");
    let (_holder, mut workers, mut idle, mut tx) = workers_idle_and_sender(&bus);

    for i in 0..30 {
        assert_eq!(tx.ask(&format!("unicast 0 text:u{i} worker")), "OK");
    }
    assert_eq!(tx.ask("multicast 0 text:END worker | idle"), "OK");

    let mut all = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        let got = payloads(&w.received());
        // Round-robin over three matches: each gets every third message.
        assert_eq!(got.len(), 10, "worker{i} got {got:?}");
        all.extend(got);
    }
    all.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("text=u{i}")).collect();
    want.sort();
    assert_eq!(
        all, want,
        "every unicast message reaches exactly one worker"
    );
    assert_eq!(
        idle.received(),
        Vec::<String>::new(),
        "a non-matching endpoint gets nothing"
    );
    tx.wait_success();
}

#[test]
fn multicast_reaches_every_match_and_no_other() {
    let bus = bus_name("multicast");
    let (_holder, mut workers, mut idle, mut tx) = workers_idle_and_sender(&bus);

    for i in 0..5 {
        assert_eq!(tx.ask(&format!("multicast 0 text:m{i} worker")), "OK");
    }
    assert_eq!(tx.ask("multicast 0 text:END worker | idle"), "OK");
    let want: Vec<String> = (0..5)
        .map(|i| format!("text=m{i} @ multicast(worker)"))
        .collect();
    for w in &mut workers {
        assert_eq!(w.received(), want);
    }
    assert_eq!(idle.received(), Vec::<String>::new());
    tx.wait_success();
}

#[test]
fn each_label_op_form_routes_right() {
    let bus = bus_name("labelop");
    let _holder = controller_holder(&bus);
    let mut a = joined("a", "recv", &bus, "a", &[]).0;
    let mut b = joined("b", "recv", &bus, "b", &[]).0;
    let mut ab = joined("ab", "recv", &bus, "a,b", &[]).0;
    let mut c = joined("c", "recv", &bus, "c", &[]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    // (name, expression as typed, as printed back): True, False, Leaf, Not, And, Or, and a nesting.
    let forms = [
        ("true", "true", "true"),
        ("false", "false", "false"),
        ("leaf", "a", "a"),
        ("not", "!a", "!a"),
        ("and", "a & b", "a & b"),
        ("or", "a|b", "a | b"),
        ("nested", "( a | c ) & ! b", "(a | c) & !b"),
    ];
    for (name, typed, _) in forms {
        let answer = tx.ask(&format!("multicast 0 text:{name} {typed}"));
        // `false` matches nobody: a multicast nobody listens to is no error.
        assert_eq!(answer, "OK", "{name}");
    }
    assert_eq!(tx.ask("multicast 0 text:END a | b | c"), "OK");

    let printed = |name: &str| {
        forms
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.2)
            .unwrap_or_default()
    };
    let expect = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| format!("text={n} @ multicast({})", printed(n)))
            .collect()
    };
    assert_eq!(
        a.received(),
        expect(&["true", "leaf", "or", "nested"]),
        "label {{a}}"
    );
    assert_eq!(b.received(), expect(&["true", "not", "or"]), "label {{b}}");
    assert_eq!(
        ab.received(),
        expect(&["true", "leaf", "and", "or"]),
        "label {{a, b}}"
    );
    assert_eq!(
        c.received(),
        expect(&["true", "not", "nested"]),
        "label {{c}}"
    );
    tx.wait_success();
}

#[test]
fn parsed_expression_round_trips_through_a_real_send() {
    let bus = bus_name("parse");
    let _holder = controller_holder(&bus);
    let mut xy = joined("xy", "recv", &bus, "x,y", &[]).0;
    let mut words = joined("words", "recv", &bus, "two words", &[]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    let cases = [
        ("x&(y|!z)", "x & (y | !z)"),
        (r#""two words" & !(x | y)"#, r#""two words" & !(x | y)"#),
    ];
    for (typed, printed) in cases {
        assert_eq!(
            tx.ask(&format!("parse {typed}")),
            format!("PARSED roundtrip=true {printed}")
        );
        assert_eq!(tx.ask(&format!("unicast 0 text:hi {typed}")), "OK");
        // The printed form parses back to the same tree here, too.
        let ours: busbar::LabelOp = typed.parse().expect("parse");
        assert_eq!(printed.parse::<busbar::LabelOp>().expect("reparse"), ours);
    }
    assert_eq!(tx.ask("multicast 0 text:END x | \"two words\""), "OK");
    assert_eq!(
        xy.received(),
        [format!("text=hi @ unicast({})", cases[0].1)]
    );
    assert_eq!(
        words.received(),
        [format!("text=hi @ unicast({})", cases[1].1)]
    );
    tx.wait_success();
}
