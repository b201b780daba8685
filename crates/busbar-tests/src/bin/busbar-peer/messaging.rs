//! Roles about routing and delivery: holding the controller, receiving, scripted sending, streams, refusals, timeouts.

use crate::common::{
    controller_of, join, number, options, parse_op, parse_payload, send_end, send_error_kind,
    wait_for_stdin_to_close, wait_until, Describe, Result, HANG,
};
use crate::Args;
use busbar::{EndpointSender, JoinError, LabelOp, Message, RecvError, Selector};
use busbar_tests::{Mixed, Seq, END};
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Joins (normally first, so it hosts the controller) and stays until stdin closes.
pub fn hold(args: &Args) -> Result {
    let (_tx, _rx) = join::<Mixed, Mixed>(args)?;
    wait_for_stdin_to_close()
}

/// Prints every message it gets until the fence; bytes without their hash
/// with `--no-fnv` (see [`Describe::describe_with`]).
pub fn recv<R: Describe>(args: &Args) -> Result {
    let fnv = !args.flag("no-fnv");
    let (_tx, mut rx) = join::<Mixed, R>(args)?;
    let mut n = 0;
    loop {
        let m = match rx.recv(Some(HANG)) {
            Ok(m) => m,
            // Dropped unread: reported in its place, in order.
            Err(RecvError::TooLarge { size, max }) => {
                println!("GOT too-large size={size} max={max}");
                n += 1;
                continue;
            }
            Err(e) => return Err(format!("recv: {e}")),
        };
        if m.payload.is_end() {
            println!("END {n}");
            return Ok(());
        }
        println!("GOT {} @ {}", m.payload.describe_with(fnv), m.selector);
        n += 1;
    }
}

/// Runs commands from stdin, one answer line each:
///
/// * `unicast|multicast <ttl_ms> <payload> <expr>`: sends; `OK` or
///   `ERR <SendError variant> <message>`. `<expr>` is the rest of the line,
///   parsed as a label expression; `<payload>` is `text:<s>`, `seq:<n>`,
///   `point:<x>,<y>` or `bytes:<format>:<len>` (a [`pattern`] of `len` bytes).
/// * `parse <expr>`: `PARSED roundtrip=<bool> <expr as printed>`.
/// * `sleep <ms>`: `SLEPT` (for letting a ttl run out, the thing under test).
/// * `endpoints`: `ENDPOINTS <id>:<label>:<controller> ...`.
/// * `wait-gone <id>`: `GONE <id>` once the directory no longer lists it.
pub fn send(args: &Args) -> Result {
    let (tx, _rx) = join::<Mixed, Mixed>(args)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "unicast" | "multicast" => println!("{}", send_command(&tx, cmd, rest)?),
            "try" | "timeout" | "policy" | "fill" | "stats" | "wait-load" => {
                println!("{}", crate::pressure::command(&tx, cmd, rest)?)
            }
            "parse" => {
                let op = parse_op(rest)?;
                let printed = op.to_string();
                let back = printed
                    .parse::<LabelOp>()
                    .map_err(|e| format!("reparse {printed:?}: {e}"))?;
                println!("PARSED roundtrip={} {printed}", back == op);
            }
            "sleep" => {
                std::thread::sleep(Duration::from_millis(number(rest)?));
                println!("SLEPT");
            }
            "endpoints" => {
                let list: Vec<String> = tx
                    .endpoints()
                    .iter()
                    .map(|e| format!("{}:{}:{}", e.id, e.label, e.is_controller))
                    .collect();
                println!("ENDPOINTS {}", list.join(" "));
            }
            "wait-gone" => {
                wait_until(|| !tx.endpoints().iter().any(|e| e.id.to_string() == rest))
                    .map_err(|_| format!("endpoint {rest} still listed after {HANG:?}"))?;
                println!("GONE {rest}");
            }
            "" => {}
            other => return Err(format!("unknown command {other:?}")),
        }
    }
    Ok(())
}

/// One `unicast|multicast <ttl_ms> <payload> <expr>` command; the answer line.
pub fn send_command(tx: &EndpointSender<Mixed>, mode: &str, rest: &str) -> Result<String> {
    let mut words = rest.splitn(3, ' ');
    let (Some(ttl), Some(payload), Some(expr)) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "usage: {mode} <ttl_ms> <payload> <expr>, got {rest:?}"
        ));
    };
    let op = parse_op(expr)?;
    let selector = if mode == "unicast" {
        Selector::unicast(op)
    } else {
        Selector::multicast(op)
    };
    let selector = selector.ttl(Duration::from_millis(number(ttl)?));
    Ok(
        match tx.send(Message::new(selector, parse_payload(payload)?)) {
            Ok(()) => "OK".to_string(),
            Err(e) => format!("ERR {} {e}", send_error_kind(&e)),
        },
    )
}

/// Sends `Seq` 0..count unicast to `--to`, then the fence.
///
/// `--progress-at K` prints `PROGRESS K` before message K and goes on;
/// `--pause-at P` prints `PAUSED P` before message P and waits for a line on
/// stdin. With `--report-controller`, after the last message and before the
/// fence, it waits until the directory shows a controller other than the
/// one it joined under and prints `CONTROLLER <id>`.
pub fn stream(args: &Args) -> Result {
    let (tx, _rx) = join::<Mixed, Mixed>(args)?;
    let first_controller = controller_of(&tx);
    let to = parse_op(args.req("to")?)?;
    let count: u64 = args.num("count")?;
    let progress_at = args.opt_num::<u64>("progress-at")?;
    let pause_at = args.opt_num::<u64>("pause-at")?;
    for n in 0..count {
        if progress_at == Some(n) {
            println!("PROGRESS {n}");
        }
        if pause_at == Some(n) {
            println!("PAUSED {n}");
            let mut go = String::new();
            std::io::stdin()
                .read_line(&mut go)
                .map_err(|e| format!("stdin: {e}"))?;
        }
        let msg = Message::new(Selector::unicast(to.clone()), Mixed::Seq(Seq { n }));
        tx.send(msg)
            .map_err(|e| format!("send of message {n}: {e}"))?;
    }
    // Report the controller before the fence: once the receiver has the
    // fence it exits, and if it hosted the controller, that starts another
    // failover.
    if args.flag("report-controller") {
        let mut new = None;
        wait_until(|| {
            new = controller_of(&tx).filter(|c| Some(*c) != first_controller);
            new.is_some()
        })
        .map_err(|_| format!("no new controller after {HANG:?}"))?;
        if let Some(c) = new {
            println!("CONTROLLER {c}");
        }
    }
    send_end(&tx, to)?;
    println!("SENT {count}");
    Ok(())
}

/// Checks that `Seq`s arrive in order, each once, from 0 up to the fence
/// (and that there are `--count` of them, when given).
pub fn stream_recv(args: &Args) -> Result {
    let (_tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let count = args.opt_num::<u64>("count")?;
    let mut next = 0u64;
    loop {
        let m = rx
            .recv(Some(HANG))
            .map_err(|e| format!("recv after {next} messages: {e}"))?;
        match m.payload {
            Mixed::Seq(Seq { n }) if n == next => next += 1,
            Mixed::Seq(Seq { n }) => return Err(format!("STREAM expected {next}, got {n}")),
            Mixed::Text(t) if t == END => break,
            other => return Err(format!("unexpected {other:?} after {next} messages")),
        }
    }
    if count.is_some_and(|c| c != next) {
        return Err(format!("STREAM got {next} messages, expected {count:?}"));
    }
    println!("STREAM ok received={next}");
    Ok(())
}

/// Joins with `--token` / `--version` and expects a refusal:
/// `REFUSED TokenMismatch`, `REFUSED VersionMismatch ours=<v> controller=<v>`,
/// `REFUSED PermissionDenied uid=<uid>`, `REFUSED BusFull max=<n>`; `JOINED`
/// (and exit 1) if admitted.
pub fn join_error(args: &Args) -> Result {
    let mut options = options(args)?;
    if let Some(v) = args.opt_num::<u16>("version")? {
        options = options.with_protocol_version(v);
    }
    // Never host the controller ourselves: the one already there must answer.
    options.controller_affinity = false;
    let timeout = args
        .opt_num::<u64>("join-timeout-s")?
        .map_or(HANG, Duration::from_secs);
    let refusal = match busbar::join::<Mixed, Mixed>(options, Some(timeout)) {
        Ok((tx, _rx)) => {
            // Say who answered, so that a test can tell which controller did.
            let controller = tx
                .endpoints()
                .into_iter()
                .find(|e| e.is_controller)
                .map_or("none".to_string(), |e| format!("{} pid={}", e.id, e.pid));
            return Err(format!(
                "JOINED as {} (controller {controller}) although it should have been refused",
                tx.id()
            ));
        }
        Err(JoinError::TokenMismatch) => "TokenMismatch".to_string(),
        Err(JoinError::VersionMismatch { ours, controller }) => {
            format!("VersionMismatch ours={ours} controller={controller}")
        }
        Err(JoinError::PermissionDenied { uid }) => format!("PermissionDenied uid={uid}"),
        Err(JoinError::UntrustedController { uid, .. }) => format!("UntrustedController uid={uid}"),
        Err(JoinError::BusFull { max }) => format!("BusFull max={max}"),
        Err(JoinError::Timeout) => "Timeout".to_string(),
        Err(e) => format!("Other {e}"),
    };
    println!("REFUSED {refusal}");
    Ok(())
}

/// `recv` with a `--ms` timeout on an endpoint nobody sends to; then `try_recv`.
pub fn expect_timeout(args: &Args) -> Result {
    let (_tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let timeout = Duration::from_millis(args.num("ms")?);
    let start = Instant::now();
    match rx.recv(Some(timeout)) {
        Err(RecvError::Timeout) => println!("TIMEOUT elapsed_ms={}", start.elapsed().as_millis()),
        Err(e) => return Err(format!("recv gave {e} instead of a timeout")),
        Ok(m) => return Err(format!("recv gave a message: {:?}", m.payload)),
    }
    match rx.try_recv() {
        Err(RecvError::Empty) => println!("EMPTY"),
        other => return Err(format!("try_recv gave {other:?} instead of Empty")),
    }
    Ok(())
}
