//! The Rust side of the C and C++ bindings' tests (`bindings/c/tests/`):
//! a peer that speaks only `BytesMessage`, as every binding does.
//!
//! `bytes` answers each message by its format tag, to the endpoint that
//! sent it (`Selector::endpoint(source)`), and prints one line per message:
//!
//! | format | data | does | answer (same format) |
//! |---|---|---|---|
//! | 1 | any | echoes | `rust:<data>` |
//! | 2 | any | writes `rust <i>\n` into descriptor `i` and closes it | `fds <n>` |
//! | 3 | the text at the start of each region | checks it, writes `changed by rust` over it, drops the region | `region <ref_count seen while held>` (or `region mismatch`) |
//! | 4 | `send <n> <label>` | sends `rust <i>` (format 4) to `label`, n times, with a 5 s ttl | `sent <n>` |
//! | 8 | any | requests `ping` (format 8) from the sender and waits for its answer | `requested <answer>` |
//! | 9 | `END` | prints `END <messages>` and exits | none |
//!
//! A request (of any format but 9) is answered with `reply` instead:
//! `answer:<data>`.

use crate::common::{join, Result, HANG};
use crate::Args;
use busbar::{BytesMessage, Message, Selector};
use std::fs::File;
use std::io::Write;
use std::time::Duration;

pub fn bytes(args: &Args) -> Result {
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(args)?;
    let mut count = 0u64;
    loop {
        let mut m = rx.recv(Some(HANG)).map_err(|e| format!("recv: {e}"))?;
        count += 1;
        let format = m.payload.format;
        let text = String::from_utf8_lossy(&m.payload.data).into_owned();
        println!(
            "GOT format={format} len={} fds={} regions={} request={}",
            m.payload.data.len(),
            m.objects.len(),
            m.memory_regions.len(),
            m.is_request()
        );
        if format == 9 {
            println!("END {count}");
            return Ok(());
        }
        if m.is_request() {
            tx.reply(&m, BytesMessage::new(format, format!("answer:{text}")))
                .map_err(|e| format!("reply: {e}"))?;
            continue;
        }
        let answer = match format {
            1 => {
                let mut data = b"rust:".to_vec();
                data.extend_from_slice(&m.payload.data);
                data
            }
            2 => {
                let n = m.objects.len();
                for (i, o) in std::mem::take(&mut m.objects).into_iter().enumerate() {
                    let mut f = File::from(o.into_fd());
                    writeln!(f, "rust {i}").map_err(|e| format!("writing fd {i}: {e}"))?;
                }
                format!("fds {n}").into_bytes()
            }
            3 => {
                let mut seen = Vec::new();
                for mut r in std::mem::take(&mut m.memory_regions) {
                    let count = r.ref_count();
                    let bytes = r.map(..).map_err(|e| format!("map: {e}"))?;
                    if !bytes.starts_with(&m.payload.data) {
                        seen.push("mismatch".to_string());
                        continue;
                    }
                    let new = b"changed by rust\0";
                    let n = new.len().min(bytes.len());
                    bytes[..n].copy_from_slice(&new[..n]);
                    seen.push(count.to_string());
                }
                format!("region {}", seen.join(",")).into_bytes()
            }
            4 => {
                let mut words = text.split_whitespace();
                let (Some("send"), Some(n), Some(label)) =
                    (words.next(), words.next(), words.next())
                else {
                    return Err(format!("format 4 wants `send <n> <label>`, got {text:?}"));
                };
                let n: u64 = n.parse().map_err(|_| format!("not a count: {n:?}"))?;
                let to = Selector::unicast(label).ttl(Duration::from_secs(5));
                for i in 0..n {
                    let msg = Message::new(to.clone(), BytesMessage::new(4, format!("rust {i}")));
                    tx.send(msg).map_err(|e| format!("send {i}: {e}"))?;
                }
                format!("sent {n}").into_bytes()
            }
            8 => {
                let ask = Message::new(Selector::endpoint(m.source), BytesMessage::new(8, "ping"));
                let got = tx
                    .request::<BytesMessage>(ask, HANG)
                    .map_err(|e| format!("request: {e}"))?;
                let mut data = b"requested ".to_vec();
                data.extend_from_slice(&got.payload.data);
                data
            }
            other => return Err(format!("no behaviour for format {other}")),
        };
        let back = Message::new(
            Selector::endpoint(m.source),
            BytesMessage::new(format, answer),
        );
        tx.send(back).map_err(|e| format!("answer: {e}"))?;
    }
}
