//! `busbar-soak`: keeps N processes joining, leaving, crashing and sending
//! on one bus for a while, then checks that every acknowledged message
//! reached every receiver it was addressed to exactly once and in order,
//! that no process hung and that nothing leaked, and prints the totals.
//!
//! ```text
//! busbar-soak [--processes N] [--seconds S] [--seed X] [--receivers R] [--holders H]
//! ```
//!
//! The processes are this same binary, started again in a role (`busbar-soak
//! role <name> ...`, see `roles.rs`):
//!
//! * **receivers** (R of them, never killed, never hosting the controller)
//!   check every message as it comes: intact, and in order and once per
//!   sender and stream;
//! * **senders** come and go: each joins, streams numbered messages (small,
//!   large, with descriptors, with regions; unicast to one receiver,
//!   multicast to all, round-robin to any) and prints `A <stream> <n>` for
//!   every `send` that returned `Ok`, then leaves, or is killed with
//!   `kill -9` at a random point (mid-join, mid-stream, idle);
//! * **holders** (H of them) only host the controller, and the one hosting
//!   it is killed again and again, so the bus fails over again and again
//!   (senders may host it too, and die with it).
//!
//! The orchestrator (`orchestrator.rs`) does the bookkeeping; exit status 0
//! only when nothing was lost, duplicated, damaged or leaked and nothing hung.

mod orchestrator;
mod roles;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("role") {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
        return match roles::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("FAIL {e}");
                eprintln!("busbar-soak role: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match orchestrator::Settings::parse(&args) {
        Ok(settings) => orchestrator::run(settings),
        Err(e) => {
            eprintln!("busbar-soak: {e}\nusage: busbar-soak [--processes N] [--seconds S] [--seed X] [--receivers R] [--holders H]");
            ExitCode::from(2)
        }
    }
}

/// `--key value` pairs.
pub(crate) fn options(
    args: &[String],
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        out.insert(key.to_string(), value.clone());
    }
    Ok(out)
}

/// The number after `--key`, or `default`.
pub(crate) fn number<N: std::str::FromStr>(
    options: &std::collections::HashMap<String, String>,
    key: &str,
    default: N,
) -> Result<N, String> {
    match options.get(key) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{key}: not a number: {v:?}")),
        None => Ok(default),
    }
}
