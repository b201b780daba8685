//! What a message says: several types through one `MessageBox`, and payload sizes.

use crate::harness::{bus_name, controller_holder, joined, payloads};
use busbar_tests::{fnv1a, pattern};

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
        fnv1a(&pattern(5))
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
    let mut rx = joined("rx", "recv", &bus, "rx", &[]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

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
                fnv1a(&pattern(size))
            )
        })
        .collect();
    assert_eq!(payloads(&rx.received()), want);
    tx.wait_success();
}
