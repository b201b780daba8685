//! `busbar send`: send one message.

use crate::common::{self, parse_bytes, parse_secs, Failure, EXIT_USAGE};
use crate::reach::Reach;
use busbar::{BytesMessage, Label, LabelOp, Message, Selector, SendError};
use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

/// Send one message (a BytesMessage) to the endpoints a label expression picks.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Send one message (a BytesMessage) to the endpoints a label expression picks.

The message is TEXT (several words are joined with spaces), or else all of \
stdin (one trailing newline removed, so `echo hi | busbar send ...` sends \
`hi`). It goes to one endpoint whose label matches --to (unicast), or to all \
of them with --multicast. The exit status is 0 only when the message was \
handed to its receivers.

--to takes a label expression: names, `!` (not), `&` (and), `|` (or), \
parentheses, `true` and `false`; quote names with other characters: \
'renderer & !gpu | \"my codec\"'.

Without --ttl, a message that no endpoint matches fails at once. With \
--ttl MS the command waits up to MS milliseconds for a matching endpoint to \
join, sends then, and exits 3 if none came.

Why `send` does not host the bus: the first endpoint on a bus hosts its \
controller, and when that process exits the others must elect a new one. A \
short-lived `send` that became the controller would make every send cause a \
failover, and a bus that nobody else runs has nobody to receive. So `send` \
only joins a bus that another process (a listener, your application) runs, \
and fails with \"no bus named ... is running\" after --join-timeout when there \
is none. --controller lets it host the bus anyway, for example to send with \
--ttl before any receiver exists; the bus then fails over when it exits.")]
pub struct Args {
    /// The bus to send on.
    #[arg(long, value_name = "NAME")]
    bus: String,

    #[command(flatten)]
    reach: Reach,

    /// The label expression that picks the receivers, e.g. `renderer & !gpu`.
    #[arg(long, value_name = "EXPR")]
    to: String,

    /// Send to every matching endpoint instead of exactly one.
    #[arg(long)]
    multicast: bool,

    /// Wait up to MS milliseconds for a matching endpoint to join, instead
    /// of failing at once when there is none.
    #[arg(long, value_name = "MS")]
    ttl: Option<u64>,

    /// The sending endpoint's own label (comma-separated). The command adds
    /// `busbar-cli:<pid>` to it, and never sends to itself.
    #[arg(long, value_name = "A,B,...")]
    label: Option<String>,

    /// The BytesMessage's format tag, for receivers that look at it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    format: u16,

    /// The largest message to send (64M, 1G, ...). Receivers have their
    /// own limit (`busbar listen --max-payload`) and drop larger messages.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64M")]
    max_payload: u64,

    /// Host the bus controller if no one runs the bus (see above).
    #[arg(long)]
    controller: bool,

    /// How long to wait for the bus controller to answer.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    join_timeout: Duration,

    /// The message; read from stdin when absent.
    #[arg(value_name = "TEXT")]
    text: Vec<String>,
}

/// Runs `busbar send`.
pub fn run(args: Args, token: &str) -> Result<(), Failure> {
    let op = parse_expression(&args.to)?;
    let data = if args.text.is_empty() {
        read_stdin()?
    } else {
        args.text.join(" ").into_bytes()
    };

    let marker = common::cli_marker();
    let mut label: Label = args
        .label
        .as_deref()
        .unwrap_or("")
        .parse()
        .unwrap_or_default();
    label.insert(marker.clone());
    let mut options = args
        .reach
        .options(&args.bus, label.clone(), token, args.controller);
    options.limits.max_payload = args.max_payload;
    let (sender, _receiver) = common::join::<BytesMessage, BytesMessage>(
        options,
        args.join_timeout,
        "; start a listener first (busbar listen), or pass --controller",
    )?;

    // Never pick this short-lived endpoint itself: a message to it would be lost when it exits.
    let shown = op.to_string();
    let route = if op.matches(&label) {
        op.and(!LabelOp::leaf(marker))
    } else {
        op
    };
    let selector = if args.multicast {
        // Exit 0 means someone got it: a multicast to nobody is an error here.
        Selector::multicast(route.clone()).require_receiver()
    } else {
        Selector::unicast(route.clone())
    };
    let message = || {
        Message::new(
            selector.clone(),
            BytesMessage::new(args.format, data.clone()),
        )
    };
    let no_route = |_| {
        let hint = if args.controller && sender.is_controller() {
            "; this command hosts the bus, so nobody else is on it yet: add --ttl MS to wait for a receiver"
        } else {
            "; add --ttl MS to wait for one to join"
        };
        Failure::failed(format!(
            "no endpoint on bus {:?} matches `{shown}`{hint}",
            args.bus
        ))
    };

    let Some(ttl) = args.ttl.filter(|&ms| ms > 0).map(Duration::from_millis) else {
        return match sender.send(message()) {
            Ok(()) => Ok(()),
            Err(SendError::NoRoute(e)) => Err(no_route(e)),
            Err(e) => Err(send_failed(&args.bus, e)),
        };
    };

    // With a ttl, wait here for a match rather than letting the library hold
    // the message: it would be lost when this process exits.
    let deadline = Instant::now() + ttl;
    let me = sender.id();
    loop {
        let (_, found) = common::wait_for_directory(&sender, deadline, |endpoints| {
            endpoints
                .iter()
                .any(|e| e.id != me && route.matches(&e.label))
        });
        if !found {
            return Err(Failure::timeout(format!(
                "no endpoint matching `{shown}` joined bus {:?} within {} ms; nothing was sent",
                args.bus,
                ttl.as_millis()
            )));
        }
        match sender.send(message()) {
            Ok(()) => return Ok(()),
            // It left again before the message went out: wait for the next one.
            Err(SendError::NoRoute(_)) => continue,
            Err(e) => return Err(send_failed(&args.bus, e)),
        }
    }
}

/// Parses `--to`; a bad expression is a usage error that shows where it went wrong.
pub fn parse_expression(text: &str) -> Result<LabelOp, Failure> {
    text.parse::<LabelOp>().map_err(|e| {
        let caret: String = e
            .caret(text)
            .lines()
            .map(|l| format!("\n    {l}"))
            .collect();
        Failure::new(EXIT_USAGE, format!("--to: {e}{caret}"))
    })
}

/// The message to send when no TEXT was given: all of stdin, less one trailing newline.
fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        eprintln!("busbar: reading the message from stdin (end it with Ctrl-D)");
    }
    let mut data = Vec::new();
    stdin
        .read_to_end(&mut data)
        .map_err(|e| Failure::failed(format!("cannot read the message from stdin: {e}")))?;
    if data.last() == Some(&b'\n') {
        data.pop();
        if data.last() == Some(&b'\r') {
            data.pop();
        }
    }
    Ok(data)
}

/// A send that failed for another reason than "no route".
fn send_failed(bus: &str, e: SendError) -> Failure {
    match e {
        SendError::TooLarge { size, max } => Failure::failed(format!(
            "the message takes {size} bytes, over --max-payload ({max} bytes): raise it \
             here and in its receivers (busbar listen --max-payload)"
        )),
        e => Failure::failed(format!("sending on bus {bus:?} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_expression_shows_a_caret() {
        let failure = parse_expression("a & (b | ").unwrap_err();
        let text = format!("{failure:?}");
        assert!(text.contains("code: 2"), "{text}");
        assert!(text.contains("\\n    a & (b | \\n             ^"), "{text}");
        assert!(parse_expression("renderer & !gpu").is_ok());
    }
}
