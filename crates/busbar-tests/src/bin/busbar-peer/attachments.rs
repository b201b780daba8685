//! Roles about what messages carry: descriptors and memory regions.

use crate::common::{
    expect_text, fd_count, join, parse_op, send_end, send_text, wait_for_stdin_to_close, Describe,
    Result, HANG,
};
use crate::Args;
use busbar::{LabelOp, MemoryRegion, MemoryRegistry, Message, Object, Selector, SendError};
use busbar_tests::{is_pattern, pattern, Mixed};
use std::fs::File;
use std::io::{Read, Write};

/// For each of `--counts`, sends one message carrying that many pipe
/// write-ends and checks that the receiver wrote `<index>\n` into each:
/// `FDS_OK <count>`. A count the bus refuses gives
/// `FDS_REFUSED <count> <max> leaked=<descriptors left open by the attempt>`.
pub fn fds_send(args: &Args) -> Result {
    let (tx, _rx) = join::<Mixed, Mixed>(args)?;
    let to = parse_op(args.req("to")?)?;
    for count in args.list("counts")? {
        let before = fd_count()?;
        let mut msg = Message::new(
            Selector::unicast(to.clone()),
            Mixed::Text(format!("fds {count}")),
        );
        let mut readers = Vec::with_capacity(count);
        for _ in 0..count {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))?;
            readers.push(File::from(r));
            msg.objects.push(Object::new(w));
        }
        match tx.send(msg) {
            Ok(()) => {
                for (i, mut r) in readers.into_iter().enumerate() {
                    let mut got = String::new();
                    r.read_to_string(&mut got)
                        .map_err(|e| format!("reading pipe {i}: {e}"))?;
                    if got != format!("{i}\n") {
                        return Err(format!("pipe {i} of {count} held {got:?}"));
                    }
                }
                println!("FDS_OK {count}");
            }
            Err(SendError::TooManyObjects { count, max, .. }) => {
                drop(readers);
                let leaked = fd_count()? as i64 - before as i64;
                println!("FDS_REFUSED {count} {max} leaked={leaked}");
            }
            Err(e) => return Err(format!("send with {count} descriptors: {e}")),
        }
    }
    send_end(&tx, to)
}

/// Writes `<index>\n` into every descriptor of every message; `GOT_FDS <n>`.
pub fn fds_recv(args: &Args) -> Result {
    let (_tx, mut rx) = join::<Mixed, Mixed>(args)?;
    loop {
        let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        if m.payload.is_end() {
            println!("END");
            return Ok(());
        }
        let n = m.objects.len();
        for (i, object) in m.objects.into_iter().enumerate() {
            File::from(object)
                .write_all(format!("{i}\n").as_bytes())
                .map_err(|e| format!("write to fd {i}: {e}"))?;
        }
        println!("GOT_FDS {n}");
    }
}

/// One message with a descriptor and a region attached (and the pipe's read end closed).
pub fn churn_message(to: &LabelOp) -> Result<Message<Mixed>> {
    let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let region = MemoryRegion::new(64).map_err(|e| e.to_string())?;
    Ok(
        Message::new(Selector::unicast(to.clone()), Mixed::Text("churn".into()))
            .with_object(Object::new(w))
            .with_memory_region(region),
    )
}

/// Sends one warm-up message (which opens the link), waits for the
/// receiver's answer, counts descriptors, sends `--count` messages with
/// attachments and the fence, counts again.
pub fn fd_churn_send(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let to = parse_op(args.req("to")?)?;
    let count: u64 = args.num("count")?;
    tx.send(churn_message(&to)?)
        .map_err(|e| format!("warm-up send: {e}"))?;
    // Counting starts when both links are up and nothing is in flight.
    expect_text(&mut rx, "counted")?;
    let before = fd_count()?;
    for i in 0..count {
        tx.send(churn_message(&to)?)
            .map_err(|e| format!("send {i}: {e}"))?;
    }
    send_end(&tx, to)?;
    println!("FDCOUNT before={before} after={}", fd_count()?);
    // Stay until told: the receiver leaving would close our link to it.
    wait_for_stdin_to_close()
}

/// Takes the warm-up message, answers it to `--ack-to`, counts descriptors,
/// takes `--count` messages (dropping their attachments) and the fence,
/// counts again, and stays until stdin closes.
pub fn fd_churn_recv(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let count: u64 = args.num("count")?;
    let ack_to = parse_op(args.req("ack-to")?)?;
    drop(
        rx.recv(Some(HANG))
            .map_err(|e| format!("warm-up recv: {e}"))?,
    );
    // The sender waits for this before it goes on, so nothing is in flight
    // (or read ahead) now; and our link to it is open already.
    send_text(&tx, &ack_to, "counted")?;
    let before = fd_count()?;
    let mut got = 0u64;
    loop {
        let m = rx
            .recv(Some(HANG))
            .map_err(|e| format!("recv after {got}: {e}"))?;
        if m.payload.is_end() {
            break;
        }
        if m.objects.len() != 1 || m.memory_regions.len() != 1 {
            return Err(format!(
                "message {got} had {} objects, {} regions",
                m.objects.len(),
                m.memory_regions.len()
            ));
        }
        got += 1;
    }
    if got != count {
        return Err(format!("got {got} messages, expected {count}"));
    }
    println!("FDCOUNT before={before} after={}", fd_count()?);
    // Stay until told: the sender leaving would close our link to it.
    wait_for_stdin_to_close()
}

/// Bytes of the region the region test shares.
pub const REGION_SIZE: usize = 64 * 1024;
/// What `region-b` writes at the start of the region.
pub const REPLY: &[u8; 8] = b"B-WROTE!";

/// The region test's owner: allocates from a registry, fills, sends to
/// `--to`, and follows the counts as B holds and drops its handle; then
/// checks the registry hands the same memory out again.
pub fn region_a(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let to = parse_op(args.req("to")?)?;
    // Only the counts may decide reuse, never how long the exchange took.
    let mut registry = MemoryRegistry::new()
        .with_idle_timeout(HANG)
        .with_busy_timeout(None);
    let mut region = registry
        .alloc(REGION_SIZE, Some("test"))
        .map_err(|e| e.to_string())?;
    region
        .map(..REGION_SIZE)
        .map_err(|e| e.to_string())?
        .copy_from_slice(&pattern(REGION_SIZE));
    println!("A_ALLOC count={}", region.ref_count());
    let msg = Message::new(Selector::unicast(to.clone()), Mixed::Text("region".into()))
        .with_memory_region(region.clone());
    tx.send(msg).map_err(|e| format!("send: {e}"))?;
    println!("A_SENT count={}", region.ref_count());
    // Until `send` returned, the message's own handle counted too; B reads
    // the count only after this.
    send_text(&tx, &to, "sent")?;

    expect_text(&mut rx, "held")?;
    let reply = region.map(..REPLY.len()).map_err(|e| e.to_string())? == REPLY;
    println!("A_HELD count={} reply={reply}", region.ref_count());
    send_text(&tx, &to, "drop")?;
    expect_text(&mut rx, "dropped")?;
    println!("A_RELEASED count={}", region.ref_count());

    drop(region);
    registry.maintain();
    let stats = registry.stats();
    println!(
        "A_FREE regions={} free_regions={}",
        stats.regions, stats.free_regions
    );
    // A new region is all zeros; the reused one still holds B's reply.
    let mut again = registry
        .alloc(REGION_SIZE, Some("test"))
        .map_err(|e| e.to_string())?;
    let same = again.map(..REPLY.len()).map_err(|e| e.to_string())? == REPLY;
    println!(
        "A_REUSED regions={} same_memory={same} count={}",
        registry.len(),
        again.ref_count()
    );
    Ok(())
}

/// The region test's borrower: checks the bytes and the count, writes a
/// reply into the region, and drops it when A says so.
pub fn region_b(args: &Args) -> Result {
    let (tx, mut rx) = join::<Mixed, Mixed>(args)?;
    let reply_to = parse_op(args.req("reply-to")?)?;
    let mut m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
    let mut region = m
        .memory_regions
        .pop()
        .ok_or("the message carried no region")?;
    expect_text(&mut rx, "sent")?;
    let bytes = region.map(..).map_err(|e| e.to_string())?;
    let ok = bytes.len() >= REGION_SIZE && is_pattern(&bytes[..REGION_SIZE]);
    println!(
        "B_GOT count={} size_ok={} pattern={ok}",
        region.ref_count(),
        region.size() >= REGION_SIZE
    );
    region
        .map(..REPLY.len())
        .map_err(|e| e.to_string())?
        .copy_from_slice(REPLY);
    send_text(&tx, &reply_to, "held")?;
    expect_text(&mut rx, "drop")?;
    drop(region);
    println!("B_DROPPED");
    send_text(&tx, &reply_to, "dropped")
}
