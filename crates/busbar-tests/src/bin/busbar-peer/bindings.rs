//! Roles that speak `BytesMessage` only, as the C, Node.js and Python
//! bindings do: the Rust side of the bindings' cross-process tests.
//!
//! `bytes-agent` answers commands sent to it as the text of a message (the
//! answers go back to the message's `source`, or as the reply to a
//! request), one stdout line per command:
//!
//! | command (message text) | does | prints |
//! |---|---|---|
//! | `echo ...` | sends the same format and bytes back (replies, for a request) | `ECHO <len> format=<f> <selector>` |
//! | `write-fds <text>` | writes `<text>` into every descriptor that came with it, closes them; answers `wrote <n>` | `WROTE <n>` |
//! | `give-fd <text>` | a pipe with `<text>` in it, write end closed: sends the read end with text `fd` | `GAVE fd` |
//! | `check-region <text>` | reads the first region: starts with `<text>`? writes `from rust` at its start, lets go of it; answers `region <ok> ref_count=<c> sum=<s>` | `REGION <ok> ...` |
//! | `give-region <size>` | a region of `<size>` bytes, byte `i` = `i % 251`, sent with text `region`; waits for `done`, then checks it starts with `from python` and that only it holds the region; answers `region-back <ok> ref_count=<c>` | `REGION-BACK <ok> ref_count=<c>` |
//! | `END` | exits 0 | `END <n>` (messages before it) |
//!
//! `bytes-flood --to L --count N` sends `N` messages to `L` (unicast, with a
//! pipe's read end and a 64-byte region each), then `END`; `FLOOD <n>`.

use crate::common::{join, parse_op, Result, HANG};
use crate::Args;
use busbar::{BytesMessage, EndpointSender, MemoryRegion, Message, Object, ReplyHandle, Selector};
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

type Tx = EndpointSender<BytesMessage>;

/// Where an answer goes: the request's reply, or the sender by id.
struct Answer<'a> {
    tx: &'a Tx,
    to: busbar::EndpointId,
    reply: Option<ReplyHandle>,
}

impl Answer<'_> {
    fn send(&self, text: &str, attach: Option<(Option<Object>, Option<MemoryRegion>)>) -> Result {
        let payload = BytesMessage::from(text);
        if let Some(handle) = &self.reply {
            return self
                .tx
                .reply_with(handle, payload)
                .map_err(|e| format!("reply {text:?}: {e}"));
        }
        let mut m = Message::new(Selector::endpoint(self.to), payload);
        if let Some((object, region)) = attach {
            m.objects.extend(object);
            m.memory_regions.extend(region);
        }
        self.tx.send(m).map_err(|e| format!("send {text:?}: {e}"))
    }
}

/// Byte `i` of a region `give-region` makes.
fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// See the module's table.
pub fn bytes_agent(args: &Args) -> Result {
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(args)?;
    let mut count = 0u64;
    loop {
        let m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        let text = String::from_utf8_lossy(&m.payload.data).into_owned();
        let (command, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let answer = Answer {
            tx: &tx,
            to: m.source,
            reply: m.reply_handle(),
        };
        match command {
            "END" => {
                println!("END {count}");
                return Ok(());
            }
            "echo" => {
                println!(
                    "ECHO {} format={} {}",
                    m.payload.data.len(),
                    m.payload.format,
                    m.selector
                );
                let payload = BytesMessage::new(m.payload.format, m.payload.data.clone());
                match &answer.reply {
                    Some(h) => tx.reply_with(h, payload),
                    None => tx.send(Message::new(Selector::endpoint(m.source), payload)),
                }
                .map_err(|e| format!("echo: {e}"))?;
            }
            "write-fds" => {
                let n = m.objects.len();
                for object in m.objects {
                    File::from(object)
                        .write_all(rest.as_bytes())
                        .map_err(|e| format!("write to a descriptor: {e}"))?;
                }
                println!("WROTE {n}");
                answer.send(&format!("wrote {n}"), None)?;
            }
            "give-fd" => {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| format!("pipe: {e}"))?;
                File::from(w)
                    .write_all(rest.as_bytes())
                    .map_err(|e| format!("write to the pipe: {e}"))?;
                answer.send("fd", Some((Some(Object::new(r)), None)))?;
                println!("GAVE fd");
            }
            "check-region" => {
                let Some(mut region) = m.memory_regions.into_iter().next() else {
                    return Err("check-region without a region".into());
                };
                let bytes = region.map(..).map_err(|e| format!("map: {e}"))?;
                let ok = bytes.starts_with(rest.as_bytes());
                let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
                let ours = b"from rust";
                if bytes.len() >= ours.len() {
                    bytes[..ours.len()].copy_from_slice(ours);
                }
                let refs = region.ref_count();
                drop(region);
                let line = format!("region {ok} ref_count={refs} sum={sum}");
                println!("REGION {ok} ref_count={refs} sum={sum}");
                answer.send(&line, None)?;
            }
            "give-region" => {
                let size: usize = rest
                    .trim()
                    .parse()
                    .map_err(|e| format!("give-region {rest:?}: {e}"))?;
                let mut region = MemoryRegion::new(size).map_err(|e| e.to_string())?;
                for (i, b) in region
                    .map(..)
                    .map_err(|e| e.to_string())?
                    .iter_mut()
                    .enumerate()
                {
                    *b = pattern_byte(i);
                }
                answer.send("region", Some((None, Some(region.clone()))))?;
                // Wait for `done` from the other side, which wrote into it.
                let done = rx.recv(Some(HANG)).map_err(|e| format!("recv done: {e}"))?;
                if done.payload.data != b"done" {
                    return Err(format!("expected done, got {:?}", done.payload.data));
                }
                let refs = settle_refs(&region);
                let ok = region
                    .map(..)
                    .map_err(|e| e.to_string())?
                    .starts_with(b"from python");
                println!("REGION-BACK {ok} ref_count={refs}");
                Answer {
                    tx: &tx,
                    to: done.source,
                    reply: None,
                }
                .send(&format!("region-back {ok} ref_count={refs}"), None)?;
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        count += 1;
    }
}

/// The region's count once the other side's handles are gone (it drops
/// them before it says `done`, but a count can lag the message by a moment
/// when the drop happens in another thread): polled for up to a second.
fn settle_refs(region: &MemoryRegion) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(1);
    while region.ref_count() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    region.ref_count()
}

/// See the module's doc.
pub fn bytes_flood(args: &Args) -> Result {
    let (tx, _rx) = join::<BytesMessage, BytesMessage>(args)?;
    let to = parse_op(args.req("to")?)?;
    let count: u64 = args.num("count")?;
    for i in 0..count {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("pipe: {e}"))?;
        let region = MemoryRegion::new(64).map_err(|e| e.to_string())?;
        let m = Message::new(
            Selector::unicast(to.clone()).ttl(HANG),
            BytesMessage::new(1, i.to_le_bytes().to_vec()),
        )
        .with_object(Object::new(r))
        .with_memory_region(region);
        tx.send(m).map_err(|e| format!("send {i}: {e}"))?;
    }
    tx.send(Message::new(
        Selector::unicast(to).ttl(HANG),
        BytesMessage::from("END"),
    ))
    .map_err(|e| format!("send END: {e}"))?;
    println!("FLOOD {count}");
    Ok(())
}
