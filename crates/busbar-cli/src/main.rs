//! `busbar`: talk to a busbar bus from the shell, and see the bus at work.
//!
//! * `busbar listen` joins a bus and prints the messages it receives.
//! * `busbar send` sends one message.
//! * `busbar request` sends a request and prints its answer.
//! * `busbar list` shows who is on a bus (with `--watch`, again every second).
//! * `busbar demo` starts several processes on a fresh bus and shows
//!   unicast, multicast, a label expression, a file descriptor and a shared
//!   memory region going between them.
//!
//! Each subcommand lives in its own module; [`common`] holds what they
//! share (joining, errors and exit codes, output).

#![deny(missing_docs)]

mod common;
mod demo;
mod list;
mod listen;
mod reach;
mod request;
mod send;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// What `busbar --help` says first.
const LONG_ABOUT: &str = "\
busbar: an inter-process message bus for Linux.

Processes join a named bus with a label (a set of strings), send messages \
that a label expression routes (unicast: one matching endpoint; multicast: \
all of them), and receive them; messages can carry file descriptors and \
shared memory. There is no daemon: the first endpoint that joins a bus hosts \
its controller, and another takes over if it dies.

Start with `busbar demo`. Then, in two terminals:

    busbar listen --bus hello --label world
    busbar send --bus hello --to world 'hi there'";

/// Text shown after every `--help`: exit codes and the environment.
const AFTER_HELP: &str = "\
Exit status: 0 success; 1 failure (cannot join, send failed, a demo step \
failed); 2 bad usage or a bad label expression; 3 timed out (listen did not \
get its messages in time, a send's ttl ran out, the demo did not finish).

Environment: BUSBAR_TOKEN sets --token; RUST_LOG sets the log filter for -v.";

/// busbar: an inter-process message bus for Linux.
#[derive(Debug, Parser)]
#[command(name = "busbar", version, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Log what busbar does to stderr (-v info, -vv debug, -vvv trace;
    /// RUST_LOG overrides the filter).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// The bus's shared secret: a bus admits only endpoints with its token.
    #[arg(
        long,
        global = true,
        env = "BUSBAR_TOKEN",
        default_value = "busbar",
        hide_env_values = true
    )]
    token: String,

    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    Listen(listen::Args),
    Send(send::Args),
    Request(request::Args),
    List(list::Args),
    Demo(demo::Args),
    /// One process of `busbar demo` (started by the demo itself).
    #[command(hide = true)]
    DemoRole(demo::RoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Listen(args) => listen::run(args, &cli.token),
        Command::Send(args) => send::run(args, &cli.token),
        Command::Request(args) => request::run(args, &cli.token),
        Command::List(args) => list::run(args, &cli.token),
        Command::Demo(args) => demo::run(args, &cli.token, cli.verbose),
        Command::DemoRole(args) => demo::run_role(args, &cli.token),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Sends tracing output to stderr when `-v` is given (or `RUST_LOG` is set).
fn init_tracing(verbose: u8) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    if verbose == 0 && !from_env {
        return;
    }
    let default = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Another subscriber cannot be installed already; if it were, keeping it is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
