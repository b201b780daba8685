//! The causal directory's processes: a newcomer that speaks at once, and
//! an endpoint that answers whoever just spoke, by label, with no ttl.

use crate::common::{self, Result, HANG};
use crate::Args;
use busbar::{Message, Selector, SendError};
use busbar_tests::{Mixed, END};
use std::io::BufRead;

/// `answer`: for every text message `L` (a label), sends `L` back with
/// `Selector::unicast(L)` and no ttl: the sender is an endpoint that has
/// just joined. Prints `NOROUTE <label>` for each answer that found no
/// route, and at the fence `ANSWERED <n> noroute=<k>`.
pub fn answer(args: &Args) -> Result {
    let (tx, mut rx) = common::join::<Mixed, Mixed>(args)?;
    let (mut answered, mut noroute) = (0u64, 0u64);
    loop {
        let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        let Mixed::Text(label) = m.payload else {
            continue;
        };
        if label == END {
            break;
        }
        match tx.send(Message::new(
            Selector::unicast(label.as_str()),
            Mixed::Text(label.clone()),
        )) {
            Ok(()) => answered += 1,
            Err(SendError::NoRoute(_)) => {
                noroute += 1;
                println!("NOROUTE {label}");
            }
            Err(e) => return Err(format!("answering {label}: {e}")),
        }
    }
    println!("ANSWERED {answered} noroute={noroute}");
    Ok(())
}

/// `rounds --to L --rounds N [--pause-at K]`: N times, joins as a new
/// endpoint labelled `<label>.<pid>.<i>`, at once sends its label to `L`
/// (unicast, ttl for the first contact only while a failover may be under
/// way), waits for the answer and leaves. At round K it prints `AT K` and
/// waits for a line on stdin (the test kills the controller meanwhile).
/// Then the fence to `L` and `ROUNDS <n> lost=<k>`.
pub fn rounds(args: &Args) -> Result {
    let to = args.req("to")?.to_string();
    let n: u64 = args.num("rounds")?;
    let pause_at: Option<u64> = args.opt_num("pause-at")?;
    let base = args.get("label").unwrap_or("b").to_string();
    let mut options = common::options(args)?;
    let mut lost = 0u64;
    for i in 0..n {
        if pause_at == Some(i) {
            println!("AT {i}");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("stdin: {e}"))?;
        }
        let label = format!("{base}.{}.{i}", std::process::id());
        options.label = busbar::Label::new([label.clone()]);
        let (tx, mut rx) = busbar::join::<Mixed, Mixed>(options.clone(), Some(HANG))
            .map_err(|e| format!("join {i}: {e}"))?;
        // `to` is listed in the welcome (it has been on the bus all along),
        // unless a failover is under way and nobody has re-registered it
        // yet: only then is the ttl needed.
        let selector = Selector::unicast(to.as_str()).ttl(HANG);
        tx.send(Message::new(selector, Mixed::Text(label.clone())))
            .map_err(|e| format!("send {i}: {e}"))?;
        match rx.recv(Some(HANG)) {
            Ok(Message {
                payload: Mixed::Text(t),
                ..
            }) if t == label => {}
            Ok(other) => return Err(format!("round {i}: unexpected {:?}", other.payload)),
            Err(e) => {
                lost += 1;
                println!("LOST {i}: {e}");
            }
        }
    }
    let options_end = {
        let mut o = options.clone();
        o.label = busbar::Label::new([format!("{base}.end")]);
        o
    };
    let (tx, _rx) =
        busbar::join::<Mixed, Mixed>(options_end, Some(HANG)).map_err(|e| format!("join: {e}"))?;
    common::send_end(&tx, to.as_str().into())?;
    println!("ROUNDS {n} lost={lost}");
    Ok(())
}

/// `sees --labels a,b,c`: joins, waits until its directory lists an
/// endpoint with each label, prints `SEES a,b,c` and leaves.
pub fn sees(args: &Args) -> Result {
    let labels: Vec<String> = args.req("labels")?.split(',').map(str::to_string).collect();
    let (tx, _rx) = common::join::<Mixed, Mixed>(args)?;
    let all_listed = || {
        let listed = tx.endpoints();
        labels
            .iter()
            .all(|l| listed.iter().any(|e| e.label.contains(l)))
    };
    common::wait_until(all_listed).map_err(|()| {
        let listed: Vec<String> = tx.endpoints().iter().map(|e| e.label.to_string()).collect();
        format!("never saw all of {labels:?}; sees {listed:?}")
    })?;
    println!("SEES {}", labels.join(","));
    Ok(())
}
