//! What the roles share: joining, sending and expecting text, parsing, printing.

use crate::Args;
use busbar::{
    BytesMessage, EndpointId, EndpointReceiver, EndpointSender, Label, LabelOp, Message, Options,
    Selector, SendError,
};
use busbar_tests::{fnv1a, is_pattern, open_fd_count, pattern, Mixed, Narrow, Point, Seq, END};
use std::time::{Duration, Instant};

/// The token every test bus uses unless told otherwise.
pub const TOKEN: &str = "busbar-tests";
/// How long a peer waits for anything before it gives up: a hang guard, far
/// beyond anything a working bus needs. The tests have their own guards.
pub const HANG: Duration = Duration::from_secs(120);

pub type Result<T = (), E = String> = std::result::Result<T, E>;

/// The options every role joins with: `--bus`, `--label a,b`, `--token`, `--no-affinity`.
pub fn options(args: &Args) -> Result<Options> {
    let label: Label = args
        .get("label")
        .unwrap_or("peer")
        .parse()
        .unwrap_or_default();
    let mut options = Options::new(args.req("bus")?, label, args.get("token").unwrap_or(TOKEN));
    options.controller_affinity = !args.flag("no-affinity");
    crate::access::apply(args, &mut options)?;
    Ok(options)
}

/// Joins and prints `READY <id> controller=<bool>`.
pub fn join<T: busbar::MessageBox, R: busbar::MessageBox>(
    args: &Args,
) -> Result<(EndpointSender<T>, EndpointReceiver<R>)> {
    // `--join-timeout-s S` for runs that start hundreds of processes at once.
    let timeout = match args.opt_num::<u64>("join-timeout-s")? {
        Some(s) => Duration::from_secs(s),
        None => HANG,
    };
    let (tx, rx) =
        busbar::join::<T, R>(options(args)?, Some(timeout)).map_err(|e| format!("join: {e}"))?;
    println!("READY {} controller={}", tx.id(), tx.is_controller());
    Ok((tx, rx))
}

pub fn controller_of<T>(tx: &EndpointSender<T>) -> Option<EndpointId> {
    tx.endpoints()
        .into_iter()
        .find(|e| e.is_controller)
        .map(|e| e.id)
}

pub fn wait_for_stdin_to_close() -> Result {
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())
        .map_err(|e| format!("stdin: {e}"))?;
    Ok(())
}

/// Polls `done` (every 5 ms) until it holds; `Err` after [`HANG`].
pub fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + HANG;
    while !done() {
        if Instant::now() >= deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A text message to `to`, waiting up to [`HANG`] for it to appear in our directory.
pub fn send_text(tx: &EndpointSender<Mixed>, to: &LabelOp, text: &str) -> Result {
    let selector = Selector::unicast(to.clone()).ttl(HANG);
    tx.send(Message::new(selector, Mixed::Text(text.into())))
        .map_err(|e| format!("send {text:?}: {e}"))
}

/// The fence: to every endpoint matching `to`.
pub fn send_end(tx: &EndpointSender<Mixed>, to: LabelOp) -> Result {
    let selector = Selector::multicast(to).ttl(HANG);
    tx.send(Message::new(selector, Mixed::Text(END.into())))
        .map_err(|e| format!("send the fence: {e}"))
}

pub fn expect_text(rx: &mut EndpointReceiver<Mixed>, want: &str) -> Result {
    match rx
        .recv(Some(HANG))
        .map_err(|e| format!("recv (waiting for {want:?}): {e}"))?
        .payload
    {
        Mixed::Text(t) if t == want => Ok(()),
        other => Err(format!("expected {want:?}, got {other:?}")),
    }
}

pub fn parse_op(text: &str) -> Result<LabelOp> {
    text.parse::<LabelOp>()
        .map_err(|e| format!("bad expression {text:?}: {e}\n{}", e.caret(text)))
}

/// `text:<s>`, `seq:<n>`, `point:<x>,<y>`, `bytes:<format>:<len>`.
pub fn parse_payload(spec: &str) -> Result<Mixed> {
    let bad = || format!("bad payload {spec:?}");
    let (kind, value) = spec.split_once(':').ok_or_else(bad)?;
    Ok(match kind {
        "text" => Mixed::Text(value.to_string()),
        "seq" => Mixed::Seq(Seq { n: number(value)? }),
        "point" => {
            let (x, y) = value.split_once(',').ok_or_else(bad)?;
            Mixed::Point(Point {
                x: number(x)?,
                y: number(y)?,
            })
        }
        "bytes" => {
            let (format, len) = value.split_once(':').ok_or_else(bad)?;
            Mixed::Bytes(BytesMessage::new(number(format)?, pattern(number(len)?)))
        }
        _ => return Err(bad()),
    })
}

pub fn number<N: std::str::FromStr>(text: &str) -> Result<N> {
    text.trim()
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))
}

pub fn fd_count() -> Result<usize> {
    open_fd_count().map_err(|e| format!("/proc/self/fd: {e}"))
}

pub fn send_error_kind(e: &SendError) -> &'static str {
    match e {
        SendError::NoRoute(_) => "NoRoute",
        SendError::TooManyObjects { .. } => "TooManyObjects",
        SendError::InvalidSelector(_) => "InvalidSelector",
        SendError::Encode(_) => "Encode",
        SendError::Region(_) => "Region",
        SendError::Disconnected => "Disconnected",
        SendError::Io(_) => "Io",
        SendError::Full { .. } => "Full",
        SendError::TooLarge { .. } => "TooLarge",
        SendError::PendingFull(_) => "PendingFull",
        _ => "Other",
    }
}

/// How `recv` prints a payload, for each receiving type.
pub trait Describe: busbar::MessageBox {
    /// With `fnv`, bytes are printed with their FNV-1a hash as well as
    /// whether they are the test pattern: without it, a gigabyte is checked
    /// in well under a second of an unoptimised build rather than seconds.
    fn describe_with(&self, fnv: bool) -> String;
    fn is_end(&self) -> bool;

    fn describe(&self) -> String {
        self.describe_with(true)
    }
}

impl Describe for Mixed {
    fn describe_with(&self, fnv: bool) -> String {
        match self {
            Mixed::Text(t) => format!("text={t}"),
            Mixed::Seq(s) => format!("seq={}", s.n),
            Mixed::Point(p) => format!("point={},{}", p.x, p.y),
            Mixed::Bytes(b) if fnv => format!(
                "bytes format={} len={} fnv={:016x} pattern={}",
                b.format,
                b.data.len(),
                fnv1a(&b.data),
                is_pattern(&b.data)
            ),
            Mixed::Bytes(b) => format!(
                "bytes format={} len={} pattern={}",
                b.format,
                b.data.len(),
                is_pattern(&b.data)
            ),
        }
    }

    fn is_end(&self) -> bool {
        matches!(self, Mixed::Text(t) if t == END)
    }
}

impl Describe for Narrow {
    fn describe_with(&self, _fnv: bool) -> String {
        match self {
            Narrow::Text(t) => format!("text={t}"),
            Narrow::Seq(s) => format!("seq={}", s.n),
        }
    }

    fn is_end(&self) -> bool {
        matches!(self, Narrow::Text(t) if t == END)
    }
}
