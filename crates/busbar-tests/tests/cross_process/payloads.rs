//! What a message says: several types through one `MessageBox`, and payload sizes.

use crate::harness::{bus_name, controller_holder, joined, payloads};
use busbar_tests::pattern_fnv1a;

#[test]
fn several_types_through_one_message_box_unknown_ones_skipped() {
    let bus = bus_name("types");
    let _holder = controller_holder(&bus);
    let mut full = joined("full", "recv", &bus, "types,full", &[]).0;
    let mut narrow = joined("narrow", "recv", &bus, "types,narrow", &["--narrow"]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    for payload in ["text:one", "point:1,-2", "seq:3", "bytes:7:5", "text:two"] {
        assert_eq!(tx.ask(&format!("multicast 0 {payload} types")), "OK");
    }
    assert_eq!(tx.ask("multicast 0 text:END types"), "OK");

    let bytes = format!(
        "bytes format=7 len=5 fnv={:016x} pattern=true",
        pattern_fnv1a(5)
    );
    assert_eq!(
        payloads(&full.received()),
        ["text=one", "point=1,-2", "seq=3", &bytes, "text=two"]
    );
    // `Narrow` knows only text and seq: the point and the bytes are skipped,
    // and the message after each still arrives.
    assert_eq!(
        payloads(&narrow.received()),
        ["text=one", "seq=3", "text=two"]
    );
    tx.wait_success();
}

#[test]
fn payloads_of_0_1_64k_plus_1_16m_and_64m_bytes_arrive_byte_exact() {
    let bus = bus_name("sizes");
    let _holder = controller_holder(&bus);
    // 64 MiB of data is over the default `max_payload` (with its header): raised on both sides.
    let raised = ["--max-payload", "100000000"];
    let mut rx = joined("rx", "recv", &bus, "rx", &raised).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &raised);

    let sizes = [0usize, 1, 64 * 1024 + 1, 16 << 20, 64 << 20];
    for (format, size) in sizes.iter().enumerate() {
        assert_eq!(
            tx.ask(&format!("unicast 0 bytes:{format}:{size} rx")),
            "OK",
            "{size} bytes"
        );
    }
    assert_eq!(tx.ask("unicast 0 text:END rx"), "OK");

    let want: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(format, &size)| {
            format!(
                "bytes format={format} len={size} fnv={:016x} pattern=true",
                pattern_fnv1a(size)
            )
        })
        .collect();
    assert_eq!(payloads(&rx.received()), want);
    tx.wait_success();
}

/// One gigabyte: the payload travels as a sealed memfd that the receiver
/// maps. The receiving peer checks every byte against the pattern
/// (`pattern=true` with the right `len` is byte-exact) and skips the FNV
/// hash, which would take seconds over a gigabyte in a debug build; this
/// process holds no copy of the payload at all. Both sides raise
/// `max_payload` (64 MiB by default) to take it.
#[test]
fn a_1_gib_payload_arrives_byte_exact() {
    const SIZE: usize = 1 << 30;
    let bus = bus_name("gib");
    let _holder = controller_holder(&bus);
    let raised = format!("{}", SIZE + 64);
    let mut rx = joined(
        "rx",
        "recv",
        &bus,
        "rx",
        &["--no-fnv", "--max-payload", &raised],
    )
    .0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &["--max-payload", &raised]);

    assert_eq!(tx.ask(&format!("unicast 0 bytes:9:{SIZE} rx")), "OK");
    assert_eq!(tx.ask("unicast 0 text:END rx"), "OK");

    assert_eq!(
        payloads(&rx.received()),
        [format!("bytes format=9 len={SIZE} pattern=true")]
    );
    tx.wait_success();
}

/// A receiver keeps its own `max_payload` whatever its senders' are: a
/// larger payload is dropped unread and reported in its place (the
/// messages around it arrive), a receiver that raised its limit takes the
/// same payload, and a sender that did not raise its own cannot send it.
#[test]
fn a_payload_over_the_receivers_max_payload_is_refused_and_raising_it_lets_it_through() {
    const DEFAULT_MAX: u64 = 64 << 20;
    let size = DEFAULT_MAX as usize + 1;
    let bus = bus_name("max-payload");
    let _holder = controller_holder(&bus);
    let mut strict = joined("strict", "recv", &bus, "strict", &["--no-fnv"]).0;
    let raised = format!("{}", 2 * DEFAULT_MAX);
    let mut roomy = joined(
        "roomy",
        "recv",
        &bus,
        "roomy",
        &["--no-fnv", "--max-payload", &raised],
    )
    .0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &["--max-payload", &raised]);
    let (mut plain_tx, _) = joined("plain-tx", "send", &bus, "plain-tx", &[]);

    // A sender with the default limit refuses it itself.
    let refused = plain_tx.ask(&format!("unicast 0 bytes:1:{size} roomy"));
    assert!(
        refused.starts_with("ERR TooLarge") && refused.contains(&DEFAULT_MAX.to_string()),
        "{refused}"
    );
    plain_tx.wait_success();
    for to in ["strict", "roomy"] {
        assert_eq!(tx.ask(&format!("unicast 0 text:before {to}")), "OK");
        assert_eq!(tx.ask(&format!("unicast 0 bytes:1:{size} {to}")), "OK");
        assert_eq!(tx.ask(&format!("unicast 0 text:after {to}")), "OK");
    }
    assert_eq!(tx.ask("multicast 0 text:END strict | roomy"), "OK");

    let strict_got = payloads(&strict.received());
    assert_eq!(strict_got.len(), 3, "{strict_got:?}");
    assert_eq!(strict_got[0], "text=before");
    let too_large: Vec<&str> = strict_got[1].split(' ').collect();
    assert_eq!(too_large[0], "too-large", "{strict_got:?}");
    let reported: u64 = too_large[1]
        .strip_prefix("size=")
        .and_then(|s| s.parse().ok())
        .expect("the size it reports");
    assert!(reported > DEFAULT_MAX, "{strict_got:?}");
    assert_eq!(too_large[2], format!("max={DEFAULT_MAX}"));
    assert_eq!(strict_got[2], "text=after");

    assert_eq!(
        payloads(&roomy.received()),
        [
            "text=before".to_string(),
            format!("bytes format=1 len={size} pattern=true"),
            "text=after".to_string(),
        ]
    );
    tx.wait_success();
}
