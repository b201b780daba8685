//! busbar-bench: cross-process benchmarks of busbar beside ipc-channel,
//! ipmb and iceoryx2, with the same harness, sizes and process layout.
//!
//! ```text
//! cargo run --release -p busbar-bench -- [--quick] [--only PEER[,PEER...]]
//!     [--scenarios PART[,PART...]] [--out DIR]
//! ```
//!
//! The bench process never sends or receives itself: it spawns copies of
//! its own executable (hidden first argument `__role`) as senders and
//! receivers, starts them together, and collects what they report. It
//! prints the tables on stdout and writes `BENCHMARKS.md` and
//! `benchmarks.svg` into `--out`. `BB_TRACE=1` prints when each step starts.

mod chart;
mod join_failover;
mod machine;
mod measure;
mod peers;
mod proc;
mod report;
mod results;
mod roles;
mod scenario;

use clap::Parser;
use std::path::PathBuf;

/// Errors that cross threads and processes as text.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Cross-process benchmarks: busbar beside ipc-channel, ipmb and iceoryx2.
#[derive(Parser, Debug)]
#[command(name = "busbar-bench")]
struct Cli {
    /// Small counts and short runs: a smoke check, not numbers to quote.
    #[arg(long)]
    quick: bool,
    /// Run these libraries (or ways of using busbar) only, comma-separated:
    /// busbar (send/recv), busbar-zc (loan/send_loan/recv_with), busbar-c
    /// (the C API), busbar-chan (busbar::channel's byte channels),
    /// busbar-chan-typed (its typed channels), ipc-channel (byte channels),
    /// ipc-channel-typed, ipmb or iceoryx2 (both ways of waiting).
    #[arg(long, value_parser = peers::GROUPS, value_delimiter = ',')]
    only: Vec<String>,
    /// Run these parts only, comma-separated (default: all): throughput,
    /// latency (ping-pong), sleeping (64 B to a receiver woken from sleep),
    /// cpu (CPU time per message at 1 KiB), idle (idle receiver CPU),
    /// memory (a receiver with 32 links), fan (fan-out and fan-in), join
    /// (busbar join and failover). The others show – in the tables.
    #[arg(long, value_parser = results::SCENARIOS, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Where BENCHMARKS.md and benchmarks.svg go (default: the repository root).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(proc::ROLE_ARG) {
        std::process::exit(child(&args[2..]));
    }
    let cli = Cli::parse();
    let out = cli
        .out
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")));
    let command = {
        let mut c = String::from("cargo run --release -p busbar-bench --");
        for a in &args[1..] {
            c.push(' ');
            c.push_str(a);
        }
        c
    };
    let run = results::collect(cli.quick, &cli.only, &cli.scenarios, command);
    print!("{}", report::tables(&run));
    let md = out.join("BENCHMARKS.md");
    let svg = out.join("benchmarks.svg");
    let mut failed = false;
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
    }
    let mut text = report::markdown(&run);
    // The scale tables come from busbar-scale (crates/busbar-tests): keep them.
    if let Some(section) = std::fs::read_to_string(&md)
        .ok()
        .and_then(|old| report::scale_section(&old))
    {
        text.push('\n');
        text.push_str(&section);
    }
    if let Err(e) = std::fs::write(&md, text) {
        eprintln!("cannot write {}: {e}", md.display());
        failed = true;
    }
    if let Err(e) = chart::draw(&run, &svg) {
        eprintln!("cannot write {}: {e}", svg.display());
        failed = true;
    }
    eprintln!(
        "wrote {} and {} in {:.0} s",
        md.display(),
        svg.display(),
        run.seconds
    );
    std::process::exit(i32::from(failed));
}

/// A child process: `__role PEER ROLE k=v...`.
fn child(args: &[String]) -> i32 {
    let result = match args {
        [peer, role, rest @ ..] => proc::Args::parse(rest).and_then(|a| roles::run(peer, role, &a)),
        _ => Err("usage: __role PEER ROLE k=v...".into()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            println!("@@ ERROR {msg}");
            eprintln!("error: {msg}");
            1
        }
    }
}
