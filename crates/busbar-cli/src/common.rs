//! What the subcommands share: exit codes and errors, joining a bus,
//! waiting on the directory, writing lines to stdout.

use crate::reach;
use busbar::{
    EndpointInfo, EndpointReceiver, EndpointSender, JoinError, Label, MessageBox, Namespace,
    Options,
};
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit status of a failure: cannot join, send failed, a demo step failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of bad usage, such as a label expression that does not parse.
/// (clap uses 2 for its own usage errors too.)
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a timeout: messages or a matching endpoint did not come in time.
pub const EXIT_TIMEOUT: u8 = 3;

/// Why a subcommand stopped early: an exit status and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit status.
    code: u8,
    /// Printed to stderr after `busbar: `; nothing is printed when empty.
    message: String,
}

impl Failure {
    /// A failure with exit status `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure with exit status [`EXIT_FAILURE`].
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_FAILURE, message)
    }

    /// A failure with exit status [`EXIT_TIMEOUT`].
    pub fn timeout(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_TIMEOUT, message)
    }

    /// Whoever read our stdout has gone (a closed pipe): stop quietly, with status 0.
    pub fn stdout_closed() -> Failure {
        Failure::new(0, "")
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prints the message to stderr and gives the exit status.
    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("busbar: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Writes one line to stdout and flushes it, so pipes and tests see each
/// line as soon as it is written. A closed stdout ends the command quietly.
pub fn print_line(line: &str) -> Result<(), Failure> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let mut out = io::stdout().lock();
    match out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::stdout_closed()),
        Err(e) => Err(Failure::failed(format!("cannot write to stdout: {e}"))),
    }
}

/// Parses a number of seconds such as `5` or `0.25` for clap.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a number of seconds from 0 up"))
}

/// Parses a number of bytes for clap: `65536`, `64K`, `64M`, `1G` (powers
/// of 1024; `KiB`, `MiB`, `GiB` too).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        _ => {
            return Err(format!(
                "{s:?} is not a number of bytes: a whole number, then K, M or G if you like (64M)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes: a whole number first (64M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too many bytes"))
}

/// A label string that only this process's CLI endpoint carries, so that
/// the CLI can keep its own messages from coming back to itself and other
/// processes can tell it apart in `busbar list`.
pub fn cli_marker() -> String {
    format!("busbar-cli:{}", std::process::id())
}

/// A label for a table or a log line: `gpu,renderer`, or `-` when empty.
pub fn show_label(label: &Label) -> String {
    if label.is_empty() {
        "-".to_string()
    } else {
        label.to_string()
    }
}

/// Joins the bus `options` name and turns every [`JoinError`] into a
/// message that says what to do about it.
///
/// With `options.controller_affinity == false` the endpoint never hosts
/// the controller, so a timeout means nobody runs the bus; `hint` is added
/// to that message.
pub fn join<T: MessageBox, R: MessageBox>(
    options: Options,
    timeout: Duration,
    hint: &str,
) -> Result<(EndpointSender<T>, EndpointReceiver<R>), Failure> {
    let bus = options.identifier.clone();
    let may_host = options.controller_affinity;
    let place = match &options.namespace {
        Namespace::Abstract => String::new(),
        ns => format!(" in {}", reach::describe(ns, &bus)),
    };
    busbar::join(options, Some(timeout)).map_err(|e| match e {
        JoinError::Timeout if !may_host => Failure::failed(format!(
            "no bus named {bus:?} is running{place}: no bus controller answered within {}{hint}",
            secs(timeout)
        )),
        JoinError::Timeout => Failure::failed(format!(
            "timed out after {} joining bus {bus:?}",
            secs(timeout)
        )),
        JoinError::TokenMismatch => Failure::failed(format!(
            "bus {bus:?} refused our token: give the bus's token with --token or BUSBAR_TOKEN"
        )),
        JoinError::PermissionDenied { uid } => Failure::failed(format!(
            "bus {bus:?} does not admit uid {uid}: its controller's access policy \
             (--access where it was started) leaves this user out"
        )),
        JoinError::UntrustedController { uid, pid } => Failure::failed(format!(
            "bus {bus:?} is run by pid {pid} as uid {uid}, which our --access does not \
             admit: nothing was sent to it (add uid:{uid} to --access to trust it)"
        )),
        JoinError::Namespace(why) => Failure::failed(format!(
            "cannot use the bus directory for --namespace: {why}"
        )),
        other => Failure::failed(format!("cannot join bus {bus:?}: {other}")),
    })
}

/// A duration for messages: `1s`, `0.25s`.
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Waits until `ready` holds for the sender's view of the directory, or
/// `deadline` passes. Returns the last view and whether `ready` held.
///
/// The library pushes directory changes to every endpoint but has no way
/// to wait for one, so this looks again every few milliseconds.
pub fn wait_for_directory<T>(
    sender: &EndpointSender<T>,
    deadline: Instant,
    mut ready: impl FnMut(&[EndpointInfo]) -> bool,
) -> (Vec<EndpointInfo>, bool) {
    let mut pause = Duration::from_millis(1);
    loop {
        let endpoints = sender.endpoints();
        if ready(&endpoints) {
            return (endpoints, true);
        }
        let now = Instant::now();
        if now >= deadline {
            return (endpoints, false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert!(parse_bytes("1.5M").unwrap_err().contains("number of bytes"));
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("64T").is_err());
        assert!(parse_bytes("99999999999999G")
            .unwrap_err()
            .contains("too many"));
    }

    #[test]
    fn labels_show() {
        assert_eq!(show_label(&Label::default()), "-");
        assert_eq!(show_label(&busbar::label!("b", "a")), "a,b");
    }
}
