//! Requests and answers across processes: responders, requesters, and a
//! receiver that says who sent what.

use crate::common::{self, Result, HANG};
use crate::Args;
use busbar::{EndpointId, Message, RequestError, Selector};
use busbar_tests::{Mixed, END};
use std::collections::BTreeSet;

/// `respond [--hold-after N --held K]`: answers every request with its own
/// payload. With `--hold-after`, stops answering after N answers and
/// prints `HELD <K>` once it holds K unanswered requests (the test then
/// kills it). At the fence: `ANSWERED <n>`.
pub fn respond(args: &Args) -> Result {
    let (tx, mut rx) = common::join::<Mixed, Mixed>(args)?;
    let hold_after: Option<u64> = args.opt_num("hold-after")?;
    let held_mark: u64 = args.opt_num("held")?.unwrap_or(0);
    let (mut answered, mut held) = (0u64, Vec::new());
    loop {
        let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        if matches!(&m.payload, Mixed::Text(t) if t == END) {
            break;
        }
        if !m.is_request() {
            return Err(format!("not a request: {:?}", m.payload));
        }
        if hold_after.is_some_and(|n| answered >= n) {
            held.push(m);
            if held.len() as u64 == held_mark {
                println!("HELD {held_mark}");
            }
            continue;
        }
        let echo = match &m.payload {
            Mixed::Text(t) => Mixed::Text(t.clone()),
            Mixed::Seq(s) => Mixed::Seq(*s),
            other => return Err(format!("unexpected request {other:?}")),
        };
        tx.reply(&m, echo).map_err(|e| format!("reply: {e}"))?;
        answered += 1;
    }
    println!("ANSWERED {answered}");
    Ok(())
}

/// `requests --to L --threads T --count N [--expect-gone] [--fence]`: T threads make
/// N requests each (`Text("<t>.<i>")`, unicast to L, no ttl) and check that
/// each answer is their own request's payload. Prints `REQUESTS
/// ok=<n> mismatched=<m> responders=<r>` (r: distinct answering
/// endpoints). With `--expect-gone` each thread goes on until a request
/// fails and the line is `GONE <threads that saw ResponderGone>
/// other=<other errors>`. With `--fence`, the fence to every L at the end.
pub fn requests(args: &Args) -> Result {
    let (tx, _rx) = common::join::<Mixed, Mixed>(args)?;
    let to = args.req("to")?.to_string();
    let threads: u64 = args.num("threads")?;
    let count: u64 = args.opt_num("count")?.unwrap_or(u64::MAX);
    let expect_gone = args.flag("expect-gone");
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let tx = tx.clone();
            let to = to.clone();
            std::thread::spawn(move || {
                let (mut ok, mut mismatched, mut gone, mut other) = (0u64, 0u64, 0u64, 0u64);
                let mut responders = BTreeSet::new();
                for i in 0..count {
                    let text = format!("{t}.{i}");
                    let request =
                        Message::new(Selector::unicast(to.as_str()), Mixed::Text(text.clone()));
                    match tx.request::<Mixed>(request, HANG) {
                        Ok(answer) => {
                            responders.insert(answer.source);
                            match answer.payload {
                                Mixed::Text(a) if a == text => ok += 1,
                                _ => mismatched += 1,
                            }
                        }
                        Err(RequestError::ResponderGone(_)) if expect_gone => {
                            gone += 1;
                            break;
                        }
                        Err(e) => {
                            eprintln!("request {text}: {e}");
                            other += 1;
                            if expect_gone {
                                break;
                            }
                        }
                    }
                }
                (ok, mismatched, gone, other, responders)
            })
        })
        .collect();
    let (mut ok, mut mismatched, mut gone, mut other) = (0, 0, 0, 0);
    let mut responders: BTreeSet<EndpointId> = BTreeSet::new();
    for w in workers {
        let (o, m, g, e, r) = w.join().map_err(|_| "a requesting thread panicked")?;
        ok += o;
        mismatched += m;
        gone += g;
        other += e;
        responders.extend(r);
    }
    if args.flag("fence") {
        common::send_end(&tx, to.as_str().into())?;
    }
    if expect_gone {
        println!("GONE {gone} other={other}");
    } else {
        if other > 0 {
            return Err(format!("{other} requests failed (see stderr)"));
        }
        println!(
            "REQUESTS ok={ok} mismatched={mismatched} responders={}",
            responders.len()
        );
    }
    Ok(())
}

/// `sources`: prints `FROM <source> <text> listed=<bool>` for each text
/// message (listed: whether the directory lists the source as it is
/// handed over) until the fence, then `END <n>`.
pub fn sources(args: &Args) -> Result {
    let (tx, mut rx) = common::join::<Mixed, Mixed>(args)?;
    let mut n = 0;
    loop {
        let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        let Mixed::Text(text) = m.payload else {
            continue;
        };
        if text == END {
            break;
        }
        let listed = tx.endpoints().iter().any(|e| e.id == m.source);
        println!("FROM {} {text} listed={listed}", m.source);
        n += 1;
    }
    println!("END {n}");
    Ok(())
}
