//! `busbar listen`: join a bus and print what arrives.

use crate::common::{self, parse_bytes, parse_secs, print_line, Failure};
use crate::reach::Reach;
use busbar::{BytesMessage, Label, RecvError};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Join a bus with a label and print every message it receives, one line each.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Join a bus with a label and print every message it receives, one line each.

Each message (a BytesMessage: what `busbar send` sends, and what a Rust \
program sends as busbar::BytesMessage) is printed as one line on stdout: its \
data as text when it is UTF-8 (with newlines and other control characters \
written as \\n, \\u{1b}, ...), else as hex. Nothing else is printed on stdout, so scripts can \
read it; errors go to stderr. Messages of other types are skipped.

A listener may host the bus controller (the first endpoint on a bus does), \
so `busbar listen` is a way to start a bus. When it exits, another endpoint \
takes the controller over. Use --no-controller to only join a bus that \
someone else runs.")]
pub struct Args {
    /// The bus to join (its name, 1 to 64 bytes).
    #[arg(long, value_name = "NAME")]
    bus: String,

    #[command(flatten)]
    reach: Reach,

    /// This endpoint's label: comma-separated strings that senders' label
    /// expressions are matched against, e.g. `renderer,gpu`.
    #[arg(long, value_name = "A,B,...")]
    label: String,

    /// Exit with status 0 after this many messages (default: run until
    /// killed or --timeout).
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,

    /// Exit with status 3 when the messages have not all come within this
    /// many seconds of starting (fractions allowed: 0.5).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,

    /// Print every message's data as hex, even when it is UTF-8.
    #[arg(long)]
    hex: bool,

    /// Never host the bus controller: only join a bus that another endpoint
    /// already runs (see --join-timeout).
    #[arg(long)]
    no_controller: bool,

    /// How long to wait for the bus controller to answer.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    join_timeout: Duration,

    /// The largest message to take (64M, 1G, ...): a larger one is dropped
    /// unread and reported on stderr. This process allocates up to this
    /// much for a message, so raise it only for senders you expect it from.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64M")]
    max_payload: u64,

    /// Answer every request (`busbar request`, `EndpointSender::request`)
    /// with TEXT, after printing it as any message.
    #[arg(long, value_name = "TEXT")]
    reply: Option<String>,
}

/// Runs `busbar listen`.
pub fn run(args: Args, token: &str) -> Result<(), Failure> {
    let start = Instant::now();
    let deadline = args.timeout.map(|t| start + t);
    let join_timeout = match args.timeout {
        Some(t) => args.join_timeout.min(t),
        None => args.join_timeout,
    };
    let label: Label = args.label.parse().unwrap_or_default();
    let mut options = args
        .reach
        .options(&args.bus, label.clone(), token, !args.no_controller);
    options.limits.max_payload = args.max_payload;
    let (sender, mut receiver) = common::join::<BytesMessage, BytesMessage>(
        options,
        join_timeout,
        "; start a listener without --no-controller to host it",
    )?;
    tracing::info!(
        bus = %args.bus,
        id = %sender.id(),
        label = %common::show_label(&label),
        controller = sender.is_controller(),
        "listening"
    );
    let mut received: u64 = 0;
    while args.count.is_none_or(|n| received < n) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match receiver.recv(left) {
            Ok(message) => {
                print_line(&render(&message.payload.data, args.hex))?;
                if let Some(text) = &args.reply {
                    crate::request::answer(&sender, &message, text);
                }
                received += 1;
            }
            Err(RecvError::Timeout) => {
                let wanted = match args.count {
                    Some(n) => format!("{received} of {n} messages"),
                    None => format!("{received} messages"),
                };
                let waited = args.timeout.map(common::secs).unwrap_or_default();
                return Err(Failure::timeout(format!(
                    "timed out after {waited} on bus {:?}: received {wanted}",
                    args.bus
                )));
            }
            Err(RecvError::Decode(e)) => {
                eprintln!("busbar: skipped a message that did not decode: {e}")
            }
            Err(RecvError::TooLarge { size, max }) => eprintln!(
                "busbar: dropped a message of {size} bytes: over --max-payload ({max} bytes)"
            ),
            Err(e) => {
                return Err(Failure::failed(format!(
                    "receiving on bus {:?} failed: {e}",
                    args.bus
                )))
            }
        }
    }
    Ok(())
}

/// One message as one line: UTF-8 text with control characters escaped,
/// or lowercase hex.
pub fn render(data: &[u8], hex: bool) -> String {
    if !hex {
        if let Ok(text) = std::str::from_utf8(data) {
            let mut line = String::with_capacity(text.len());
            for c in text.chars() {
                if c.is_control() && c != '\t' {
                    line.extend(c.escape_default());
                } else {
                    line.push(c);
                }
            }
            return line;
        }
    }
    let mut line = String::with_capacity(data.len() * 2);
    for b in data {
        // Writing to a String cannot fail.
        let _ = write!(line, "{b:02x}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn lines() {
        assert_eq!(render(b"hello", false), "hello");
        assert_eq!(render(b"", false), "");
        assert_eq!(render("a\tb\nc\u{1b}".as_bytes(), false), "a\tb\\nc\\u{1b}");
        assert_eq!(render("héllo".as_bytes(), false), "héllo");
        assert_eq!(render(&[0xff, 0x00, 0x10], false), "ff0010");
        assert_eq!(render(b"hi", true), "6869");
    }
}
