//! Commands of the `send` role about full receivers: `try_send`,
//! `send_timeout`, backpressure policies, filling a link, and stats.

use crate::common::{number, parse_op, parse_payload, send_error_kind, wait_until, Result, HANG};
use busbar::{Backpressure, BytesMessage, EndpointSender, Message, Selector, SendError};
use busbar_tests::Mixed;
use std::time::Duration;

/// One command; the answer line.
///
/// * `try <mode> <payload> <expr>`: `try_send`; `OK` or `ERR <kind> <message>`.
/// * `timeout <ms> <mode> <payload> <expr>`: `send_timeout`.
/// * `policy <block|drop|fail> <mode> <payload> <expr>`: `send` with that backpressure.
/// * `fill <mode> <bytes> <expr>`: `try_send`s `bytes`-long `BytesMessage`s
///   with format 0, 1, … until one is refused as full: `FILLED <n sent>`.
/// * `stats`: `STATS sent=… dropped_full=… queued=<peer>:<bytes>,…`.
/// * `wait-load <id>`: waits until the directory (the controller's summary of
///   every sender's reports) shows bytes queued for and drops to endpoint
///   `<id>`: `LOAD <id> queued=<bytes> dropped=<n>`.
pub fn command(tx: &EndpointSender<Mixed>, cmd: &str, rest: &str) -> Result<String> {
    let answer = |r: std::result::Result<(), SendError>| match r {
        Ok(()) => "OK".to_string(),
        Err(e) => format!("ERR {} {e}", send_error_kind(&e)),
    };
    match cmd {
        "try" => {
            let (selector, payload) = selector_and_payload(rest)?;
            Ok(answer(tx.try_send(Message::new(selector, payload))))
        }
        "timeout" => {
            let (ms, rest) = rest
                .split_once(' ')
                .ok_or("usage: timeout <ms> <mode> <payload> <expr>")?;
            let (selector, payload) = selector_and_payload(rest)?;
            let d = Duration::from_millis(number(ms)?);
            Ok(answer(tx.send_timeout(Message::new(selector, payload), d)))
        }
        "policy" => {
            let (policy, rest) = rest
                .split_once(' ')
                .ok_or("usage: policy <block|drop|fail> ...")?;
            let policy = match policy {
                "block" => Backpressure::Block,
                "drop" => Backpressure::DropNewest,
                "fail" => Backpressure::FailFast,
                other => return Err(format!("unknown policy {other:?}")),
            };
            let (selector, payload) = selector_and_payload(rest)?;
            Ok(answer(tx.send(Message::new(
                selector.backpressure(policy),
                payload,
            ))))
        }
        "fill" => {
            let mut words = rest.splitn(3, ' ');
            let (Some(mode), Some(bytes), Some(expr)) = (words.next(), words.next(), words.next())
            else {
                return Err("usage: fill <mode> <bytes> <expr>".into());
            };
            let op = parse_op(expr)?;
            let pad = vec![0u8; number::<usize>(bytes)?];
            for n in 0..=u16::MAX {
                let selector = mode_selector(mode, op.clone())?;
                let payload = Mixed::Bytes(BytesMessage::new(n, pad.clone()));
                match tx.try_send(Message::new(selector, payload)) {
                    Ok(()) => {}
                    Err(SendError::Full { .. }) => return Ok(format!("FILLED {n}")),
                    Err(e) => return Err(format!("fill: {e}")),
                }
            }
            Err("fill: the receiver never filled up".into())
        }
        "stats" => {
            let s = tx.stats();
            let queued: Vec<String> = s
                .links
                .iter()
                .map(|l| format!("{}:{}", l.peer, l.queued_bytes))
                .collect();
            Ok(format!(
                "STATS sent={} dropped_full={} queued={}",
                s.sent,
                s.dropped_full,
                queued.join(",")
            ))
        }
        "wait-load" => {
            let load = || {
                tx.endpoints()
                    .into_iter()
                    .find(|e| e.id.to_string() == rest && e.queued_bytes > 0 && e.dropped > 0)
            };
            wait_until(|| load().is_some())
                .map_err(|_| format!("no load shown for {rest} after {HANG:?}"))?;
            let e = load().ok_or("the load went away")?;
            Ok(format!(
                "LOAD {rest} queued={} dropped={}",
                e.queued_bytes, e.dropped
            ))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn mode_selector(mode: &str, op: busbar::LabelOp) -> Result<Selector> {
    match mode {
        "unicast" => Ok(Selector::unicast(op)),
        "multicast" => Ok(Selector::multicast(op)),
        other => Err(format!("unknown mode {other:?}")),
    }
}

/// `<mode> <payload> <expr>`.
fn selector_and_payload(rest: &str) -> Result<(Selector, Mixed)> {
    let mut words = rest.splitn(3, ' ');
    let (Some(mode), Some(payload), Some(expr)) = (words.next(), words.next(), words.next()) else {
        return Err(format!("usage: <mode> <payload> <expr>, got {rest:?}"));
    };
    Ok((
        mode_selector(mode, parse_op(expr)?)?,
        parse_payload(payload)?,
    ))
}
