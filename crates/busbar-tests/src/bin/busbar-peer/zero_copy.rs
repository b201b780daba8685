//! Roles about zero-copy: lending shared memory to send (`loan`,
//! `send_loan`) and receiving in place (`recv_with`).

use crate::common::{expect_text, join, number, parse_op, send_end, send_text, Result, HANG};
use crate::Args;
use busbar::{Borrowed, Selector};
use busbar_tests::{is_pattern, pattern, Mixed, Seq, END};

/// `loan-send --to L --sizes A,B,... [--multicast] [--acks N]`: one loan
/// per size (format = its index), filled with [`pattern`], sent to `L`;
/// `SENT <n>`. With `--acks N`, after each it waits for `N` texts `ack`
/// and prints `POOL <regions the endpoint keeps>`. Then the fence.
pub fn loan_send(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let to = parse_op(args.req("to")?)?;
    let sizes: Vec<usize> = args
        .req("sizes")?
        .split(',')
        .map(number)
        .collect::<Result<_>>()?;
    let acks: usize = args.opt_num("acks")?.unwrap_or(0);
    let selector = if args.flag("multicast") {
        Selector::multicast(to.clone())
    } else {
        Selector::unicast(to.clone())
    }
    .ttl(HANG);
    for (i, &size) in sizes.iter().enumerate() {
        let format = u16::try_from(i).map_err(|_| "too many sizes")?;
        let mut loan = tx.loan(format, size).map_err(|e| format!("loan: {e}"))?;
        loan.as_mut_slice().copy_from_slice(&pattern(size));
        tx.send_loan(selector.clone(), loan)
            .map_err(|e| format!("send_loan of {size} bytes: {e}"))?;
        for _ in 0..acks {
            expect_text(&mut rx, "ack")?;
        }
        if acks > 0 {
            println!("POOL {}", tx.stats().pooled_regions);
        }
    }
    println!("SENT {}", sizes.len());
    send_end(&tx, to)
}

/// `borrow-recv [--ack-to L]`: receives with `recv_with` until the fence,
/// printing per message `BORROWED format=<f> len=<n> pattern=<bool>` (a
/// `BytesMessage`), `SEQ <n>` or `TEXT <s>`, then `END <count>`. With
/// `--ack-to`, answers every message with the text `ack`.
pub fn borrow_recv(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let ack_to = args.get("ack-to").map(parse_op).transpose()?;
    let mut n = 0;
    loop {
        let line = rx
            .recv_with(Some(HANG), |m| describe(&m))
            .map_err(|e| format!("recv_with after {n}: {e}"))??;
        if line == format!("TEXT {END}") {
            println!("END {n}");
            return Ok(());
        }
        println!("{line}");
        n += 1;
        if let Some(to) = &ack_to {
            send_text(&tx, to, "ack")?;
        }
    }
}

/// One line about a lent message, read in place.
fn describe(m: &Borrowed<'_>) -> Result<String> {
    if let Some((format, data)) = m.bytes() {
        return Ok(format!(
            "BORROWED format={format} len={} pattern={}",
            data.len(),
            is_pattern(data)
        ));
    }
    if let Some(text) = m.as_str() {
        return Ok(format!("TEXT {text}"));
    }
    match m.decode::<Seq>() {
        Ok(Some(Seq { n })) => Ok(format!("SEQ {n}")),
        Ok(None) => Err(format!("a message of type {}", m.type_uuid())),
        Err(e) => Err(format!("a Seq that does not decode: {e}")),
    }
}
