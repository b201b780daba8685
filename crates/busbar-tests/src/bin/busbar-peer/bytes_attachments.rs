//! Roles that speak `BytesMessage` with attachments, as the bindings do
//! (the Node.js package's tests run them against JavaScript endpoints).

use crate::common::{join, parse_op, Result, HANG};
use crate::Args;
use busbar::{BytesMessage, MemoryRegion, Message, Object, Selector};
use std::fs::File;
use std::io::{Read, Write};

/// The text at the start of `bytes`, up to the first NUL.
fn text_in(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Receives one `BytesMessage`, reads every descriptor it carries to its
/// end and the text at the start of every region, writes
/// `rust saw <text>` at the start of each region, and answers to
/// `--reply-to` with `data=<payload> fds=<a>|<b> regions=<c>|<d>` (the
/// same line is printed as `GOT ...`).
pub fn read_attachments(args: &Args) -> Result {
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(args)?;
    let reply_to = parse_op(args.req("reply-to")?)?;
    let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
    let mut fds = Vec::new();
    for (i, object) in m.objects.into_iter().enumerate() {
        let mut text = String::new();
        File::from(object)
            .read_to_string(&mut text)
            .map_err(|e| format!("reading descriptor {i}: {e}"))?;
        fds.push(text);
    }
    let mut regions = Vec::new();
    for (i, mut region) in m.memory_regions.into_iter().enumerate() {
        let bytes = region.map(..).map_err(|e| format!("region {i}: {e}"))?;
        let seen = text_in(bytes);
        let answer = format!("rust saw {seen}\0");
        let n = answer.len().min(bytes.len());
        bytes[..n].copy_from_slice(&answer.as_bytes()[..n]);
        regions.push(seen);
    }
    let line = format!(
        "data={} fds={} regions={}",
        String::from_utf8_lossy(&m.payload.data),
        fds.join("|"),
        regions.join("|")
    );
    println!("GOT {line}");
    tx.send(Message::new(
        Selector::unicast(reply_to).ttl(HANG),
        BytesMessage::new(0, line),
    ))
    .map_err(|e| format!("answer: {e}"))
}

/// Sends to `--to` (waiting for it to join) a `BytesMessage` `attachments`
/// with the read end of a pipe holding `fd from rust` (the write end
/// closed) and a 4096-byte region starting with `region from rust`; waits
/// for a message back, then prints `REGION <text at its start>` and
/// `REFS <the region's count>`.
pub fn send_attachments(args: &Args) -> Result {
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(args)?;
    let to = parse_op(args.req("to")?)?;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    File::from(w)
        .write_all(b"fd from rust")
        .map_err(|e| format!("write to the pipe: {e}"))?;
    let mut region = MemoryRegion::new(4096).map_err(|e| e.to_string())?;
    region
        .map(..17)
        .map_err(|e| e.to_string())?
        .copy_from_slice(b"region from rust\0");
    let msg = Message::new(
        Selector::unicast(to).ttl(HANG),
        BytesMessage::new(5, "attachments"),
    )
    .with_object(Object::new(r))
    .with_memory_region(region.clone());
    tx.send(msg).map_err(|e| format!("send: {e}"))?;
    let back = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
    drop(back);
    let text = text_in(region.map(..).map_err(|e| e.to_string())?);
    println!("REGION {text}");
    println!("REFS {}", region.ref_count());
    Ok(())
}
