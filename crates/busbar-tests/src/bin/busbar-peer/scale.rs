//! Roles for many endpoints on one bus: the all-to-all mesh, members that
//! watch the directory settle, and busy processes that starve the machine.

use crate::common::{join, wait_for_stdin_to_close, wait_until, Result, HANG};
use crate::Args;
use busbar::{EndpointSender, Message, Selector};
use busbar_tests::{Mixed, Seq};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::time::Duration;

/// `mesh --count N --index I [--hold]`: waits until the directory lists
/// `N` endpoints with our label, multicasts one `Seq` (its index) to all of
/// them (itself included), and waits for `N` messages; prints
/// `MESH got=<n> distinct=<d>` and exits (with `--hold`, once stdin closes:
/// its links stay up to be measured).
pub fn mesh(args: &Args) -> Result {
    busbar_tests::raise_fd_limit();
    let count: usize = args.num("count")?;
    let index: u64 = args.num("index")?;
    let label = args.req("label")?.to_string();
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    wait_until(|| members(&tx, &label) >= count)
        .map_err(|_| format!("the directory never listed {count} members"))?;
    tx.send(Message::new(
        Selector::multicast(label.as_str()),
        Mixed::Seq(Seq { n: index }),
    ))
    .map_err(|e| format!("multicast: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut got = 0;
    while got < count {
        match rx
            .recv(Some(HANG))
            .map_err(|e| format!("recv after {got}: {e}"))?
            .payload
        {
            Mixed::Seq(s) => {
                seen.insert(s.n);
                got += 1;
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
    }
    println!("MESH got={got} distinct={}", seen.len());
    if args.flag("hold") {
        wait_for_stdin_to_close()?;
    }
    Ok(())
}

/// How many endpoints with `label` the directory lists.
fn members(tx: &EndpointSender<Mixed>, label: &str) -> usize {
    tx.endpoints()
        .iter()
        .filter(|e| e.label.contains(label))
        .count()
}

/// What an endpoint's directory says, in one line: how many endpoints,
/// which one hosts the controller (or `none`, or `several`), and a digest
/// of the sorted ids.
fn directory_line(tx: &EndpointSender<Mixed>) -> String {
    let list = tx.endpoints();
    let controllers: Vec<String> = list
        .iter()
        .filter(|e| e.is_controller)
        .map(|e| e.id.to_string())
        .collect();
    let controller = match controllers.as_slice() {
        [] => "none".to_string(),
        [one] => one.clone(),
        _ => "several".to_string(),
    };
    let mut ids: Vec<u64> = list.iter().map(|e| e.id.0).collect();
    ids.sort_unstable();
    let digest = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, id| {
        (h ^ id).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "n={} controller={controller} digest={digest:016x}",
        list.len()
    )
}

/// `member [--expect N] [--poll-ms P] [--timing] [--settle-timeout-s S]`: joins (with `--timing`
/// prints `JOINED us=<join time> listed=<endpoints listed then>`), then
/// calls `endpoints()` every `P` ms (default 2: a busy program) until the
/// directory lists `N` endpoints (any number without `--expect`) and one
/// controller; prints `SETTLED <directory>`. Then answers
/// each stdin line `check` with `DIR <directory>` (see [`directory_line`]),
/// still polling between lines, until stdin closes.
pub fn member(args: &Args) -> Result {
    let expect: Option<usize> = args.opt_num("expect")?;
    let poll = Duration::from_millis(args.opt_num("poll-ms")?.unwrap_or(2));
    let began = std::time::Instant::now();
    let (tx, _rx) = join::<Mixed, Mixed>(args)?;
    if args.flag("timing") {
        println!(
            "JOINED us={} listed={}",
            began.elapsed().as_micros(),
            tx.endpoints().len()
        );
    }
    let settled = |tx: &EndpointSender<Mixed>| {
        // The count is cheap; the list only once the count is right.
        if expect.is_some_and(|n| tx.endpoint_count() != n) {
            return false;
        }
        let list = tx.endpoints();
        expect.is_none_or(|n| list.len() == n)
            && list.iter().filter(|e| e.is_controller).count() == 1
    };
    let deadline = std::time::Instant::now()
        + args
            .opt_num::<u64>("settle-timeout-s")?
            .map_or(HANG, Duration::from_secs);
    while !settled(&tx) {
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "the directory did not settle at {expect:?} endpoints: {}",
                directory_line(&tx)
            ));
        }
        std::thread::sleep(poll);
    }
    println!("SETTLED {}", directory_line(&tx));
    for line in std::io::stdin().lock().lines() {
        match line.map_err(|e| format!("stdin: {e}"))?.as_str() {
            "check" => println!("DIR {}", directory_line(&tx)),
            other => return Err(format!("unknown command {other:?}")),
        }
    }
    Ok(())
}

/// `spin`: burns a core until stdin closes (a busy program starving the
/// machine); prints `SPINNING` first. Does not join.
pub fn spin(_args: &Args) -> Result {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = wait_for_stdin_to_close();
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    println!("SPINNING");
    let mut x = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    std::hint::black_box(x);
    Ok(())
}
