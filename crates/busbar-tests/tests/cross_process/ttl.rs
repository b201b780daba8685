//! Messages that wait for their receiver: `ttl`.

use crate::harness::{bus_name, controller_holder, joined};

#[test]
fn message_sent_before_its_receiver_joins_arrives_within_ttl() {
    let bus = bus_name("ttl");
    let _holder = controller_holder(&bus);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    // Without a ttl, no match is an error at once.
    assert!(tx.ask("unicast 0 text:now late").starts_with("ERR NoRoute"));
    // With one, the message waits in the sender (and so does the fence, behind it).
    assert_eq!(tx.ask("unicast 60000 text:early late"), "OK");
    assert_eq!(tx.ask("unicast 60000 text:END late"), "OK");

    let (mut rx, _) = joined("rx", "recv", &bus, "late", &[]);
    assert_eq!(rx.received(), ["text=early @ unicast(late)"]);
    tx.wait_success();
}

#[test]
fn message_whose_ttl_ran_out_is_not_delivered() {
    let bus = bus_name("expired");
    let _holder = controller_holder(&bus);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    assert_eq!(tx.ask("unicast 200 text:expired late"), "OK");
    // Let the ttl run out (the passing of time is what is tested here; the
    // fence below, not this pause, decides when the receiver is done).
    assert_eq!(tx.ask("sleep 400"), "SLEPT");

    let (mut rx, _) = joined("rx", "recv", &bus, "late", &[]);
    assert_eq!(tx.ask("unicast 60000 text:fence late"), "OK");
    assert_eq!(tx.ask("unicast 60000 text:END late"), "OK");
    assert_eq!(
        rx.received(),
        ["text=fence @ unicast(late)"],
        "the expired message must not arrive"
    );
    tx.wait_success();
}
