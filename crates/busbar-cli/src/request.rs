//! `busbar request`: send one request and print its answer.

use crate::common::{self, parse_secs, print_line, Failure};
use crate::reach::Reach;
use busbar::{
    BytesMessage, EndpointSender, Label, LabelOp, Message, RequestError, Selector, SendError,
};
use std::time::Duration;

/// Send a request (a BytesMessage) to one endpoint and print its answer.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Send a request (a BytesMessage) to one endpoint whose label matches --to, \
wait for its answer, and print it as one line on stdout (as `busbar listen` \
prints messages). An endpoint answers with the library's \
EndpointSender::reply, or `busbar listen --reply TEXT`, so

    busbar listen --bus demo --label echo --reply pong &
    busbar request --bus demo --to echo ping

prints `pong`.

Exit status: 0 with an answer; 1 when nobody matches --to, the endpoint \
left before it answered, or the request failed; 3 when no answer came within \
--timeout.

Like `busbar send`, `request` only joins a bus another process runs.")]
pub struct Args {
    /// The bus to send on.
    #[arg(long, value_name = "NAME")]
    bus: String,

    #[command(flatten)]
    reach: Reach,

    /// The label expression that picks the endpoint that answers, e.g. `echo`.
    #[arg(long, value_name = "EXPR")]
    to: String,

    /// How long to wait for the answer (fractions allowed: 0.5).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    timeout: Duration,

    /// Wait up to MS milliseconds for a matching endpoint to join, instead
    /// of failing at once when there is none (within --timeout).
    #[arg(long, value_name = "MS")]
    ttl: Option<u64>,

    /// The BytesMessage's format tag.
    #[arg(long, value_name = "N", default_value_t = 0)]
    format: u16,

    /// Print the answer's data as hex, even when it is UTF-8.
    #[arg(long)]
    hex: bool,

    /// How long to wait for the bus controller to answer.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    join_timeout: Duration,

    /// The request's text (several words are joined with spaces).
    #[arg(value_name = "TEXT", required = true)]
    text: Vec<String>,
}

/// Runs `busbar request`.
pub fn run(args: Args, token: &str) -> Result<(), Failure> {
    let op = crate::send::parse_expression(&args.to)?;
    let marker = common::cli_marker();
    let mut label = Label::default();
    label.insert(marker.clone());
    let options = args.reach.options(&args.bus, label, token, false);
    let (sender, _receiver) = common::join::<BytesMessage, BytesMessage>(
        options,
        args.join_timeout,
        "; start the endpoint that answers first (busbar listen --reply TEXT)",
    )?;
    // Never ask this short-lived endpoint itself.
    let route = op.clone().and(!LabelOp::leaf(marker));
    let mut selector = Selector::unicast(route);
    if let Some(ms) = args.ttl {
        selector = selector.ttl(Duration::from_millis(ms));
    }
    let request = Message::new(
        selector,
        BytesMessage::new(args.format, args.text.join(" ").into_bytes()),
    );
    let bus = &args.bus;
    match sender.request::<BytesMessage>(request, args.timeout) {
        Ok(answer) => print_line(&crate::listen::render(&answer.payload.data, args.hex)),
        Err(RequestError::Send(SendError::NoRoute(_))) => Err(Failure::failed(format!(
            "no endpoint on bus {bus:?} matches `{op}`; add --ttl MS to wait for one to join"
        ))),
        Err(RequestError::Timeout) => Err(Failure::timeout(format!(
            "no answer from `{op}` on bus {bus:?} within {}",
            common::secs(args.timeout)
        ))),
        Err(e) => Err(Failure::failed(format!(
            "request on bus {bus:?} failed: {e}"
        ))),
    }
}

/// `busbar listen --reply TEXT`: answers `message` with TEXT when it is a
/// request (a failure, say because the requester left, goes to stderr).
pub fn answer(sender: &EndpointSender<BytesMessage>, message: &Message<BytesMessage>, text: &str) {
    if !message.is_request() {
        return;
    }
    let answer = BytesMessage::new(message.payload.format, text.as_bytes().to_vec());
    if let Err(e) = sender.reply(message, answer) {
        eprintln!(
            "busbar: could not answer a request from {}: {e}",
            message.source
        );
    }
}
