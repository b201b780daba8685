//! Mirrors ipmb 0.8.5's `examples/rejoin.rs` against busbar: the same calls
//! in the same shape, so that code ported from ipmb keeps working. It joins
//! as `moon` (hosting the bus), leaves, joins again, and receives with a
//! 500 ms timeout until something other than a timeout happens.
//!
//! Differences: the bus name is made unique per run
//! ([`busbar_tests::example_bus`]), and "Timeout" is printed on stdout (ipmb
//! logs it) so that the test knows it waits; the test then sends it a `()`,
//! and it prints what ended the wait.

use busbar::label;
use busbar_tests::example_bus;
use std::time::Duration;

fn main() {
    let option = busbar::Options::new(example_bus("com.solar"), label!("moon"), "");

    {
        let (_sender, _receiver) =
            busbar::join::<(), ()>(option.clone(), None).expect("Join solar.com failed");
    }

    let (_sender, mut receiver) =
        busbar::join::<(), ()>(option, None).expect("Join solar.com failed");

    loop {
        match receiver.recv(Some(Duration::from_millis(500))) {
            Err(busbar::RecvError::Timeout) => {
                println!("Timeout");
                continue;
            }
            other => {
                // Not in ipmb (`_ => break`): say what ended the wait.
                println!("{:?}", other.map(|m| m.payload));
                break;
            }
        }
    }
}
