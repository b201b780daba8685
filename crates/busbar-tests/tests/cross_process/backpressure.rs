//! Full receivers: bounded links, `try_send`, `send_timeout`, the policies,
//! and a stopped receiver that holds up nobody but itself.

use crate::harness::{bus_name, controller_holder, joined, payloads};

#[test]
fn a_stopped_receiver_delays_only_messages_to_itself() {
    let bus = bus_name("stopped");
    let _holder = controller_holder(&bus);
    let (mut slow, slow_ready) = joined("slow", "recv", &bus, "slow", &[]);
    let (mut fast, _) = joined("fast", "recv", &bus, "fast", &[]);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    slow.stop();
    // Fill the link to the stopped receiver: its queue is bounded.
    let filled = tx.ask("fill unicast 60000 slow");
    let n: u16 = filled
        .strip_prefix("FILLED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| tx.fail(&format!("unexpected {filled:?}")));
    assert!(n >= 1, "at least one message fits: {filled}");

    // Each way of not waiting reports the full receiver.
    assert!(tx.ask("try unicast text:t slow").starts_with("ERR Full"));
    assert!(tx
        .ask("timeout 100 unicast text:t slow")
        .starts_with("ERR Full"));
    assert!(tx
        .ask("policy fail unicast text:t slow")
        .starts_with("ERR Full"));
    // Drop-newest goes on and counts the drop.
    assert_eq!(tx.ask("policy drop unicast text:dropped slow"), "OK");
    let stats = tx.ask("stats");
    assert!(stats.contains("dropped_full=1"), "{stats}");
    let queued: usize = stats
        .split(&format!("{}:", slow_ready.id))
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| {
            tx.fail(&format!(
                "no queue depth for the slow receiver in {stats:?}"
            ))
        });
    assert!(
        queued > 0,
        "the stopped receiver's queue is visible: {stats}"
    );
    // And everyone sees it in the directory (what `busbar list` prints),
    // once the sender's next report has gone through the controller.
    let load = tx.ask(&format!("wait-load {}", slow_ready.id));
    assert!(load.contains("dropped=1"), "{load}");

    // Everyone else goes on: traffic to another receiver, a multicast that
    // drops for the stopped one, and a join (the controller is not held up).
    assert_eq!(tx.ask("unicast 0 text:hello fast"), "OK");
    assert_eq!(tx.ask("policy drop multicast text:both slow | fast"), "OK");
    let (mut late, _) = joined("late", "recv", &bus, "late", &[]);
    assert_eq!(tx.ask("unicast 60000 text:END late"), "OK");
    assert_eq!(late.received(), Vec::<String>::new());
    assert_eq!(tx.ask("unicast 0 text:END fast"), "OK");
    assert_eq!(payloads(&fast.received()), ["text=hello", "text=both"]);

    // Once it runs again it gets everything that was accepted for it, in
    // order, and nothing that was refused or dropped.
    slow.resume();
    assert_eq!(tx.ask("unicast 0 text:END slow"), "OK");
    let zeros = vec![0u8; 60000];
    let (fnv, pattern) = (
        busbar_tests::fnv1a(&zeros),
        busbar_tests::is_pattern(&zeros),
    );
    let want: Vec<String> = (0..n)
        .map(|i| format!("bytes format={i} len=60000 fnv={fnv:016x} pattern={pattern}"))
        .collect();
    assert_eq!(payloads(&slow.received()), want);
    tx.close_stdin();
    tx.wait_success();
}
