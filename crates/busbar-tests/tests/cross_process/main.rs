//! busbar across real processes: every test starts `busbar-peer` processes
//! on a bus of its own and checks what they print.
//!
//! Nothing here sleeps to synchronise: peers print `READY` when they have
//! joined, receivers stop at a fence message, and time limits are hang
//! guards only (see `harness.rs`).

mod harness;

mod access;
mod attachments;
mod backpressure;
mod causal;
mod crash;
mod failover;
mod hostile;
mod ipmb_examples;
mod join;
mod liveness;
mod payloads;
mod request;
mod routing;
mod scale;
mod ttl;
mod wake;
mod zero_copy;
