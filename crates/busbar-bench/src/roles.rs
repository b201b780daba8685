//! The child processes' loops, the same for every peer.
//!
//! - `sink`: counts what arrives until every sender's end marker is in
//!   (or nothing came for `give_up_ms`); says `FIRST` at the first message.
//! - `source`: `mode=stream` sends stamped messages for `dur_ms` (and at
//!   least `min`, at most `max` of them); `mode=one` sends one and waits for `STOP`; then
//!   an end marker. It stays until the parent lets it go, so that nothing
//!   it sent dies with it.
//! - `pong` answers each message with one of the same size and stamp.
//! - `ping` times round trips and reports percentiles of half of each.
//!   With `gap_us` set it waits that long before each ping and times one
//!   way instead: from just before its `send` to just after the ponger's
//!   receive returned, a time the ponger writes into its answer.
//!
//! `sink` and `source` report the CPU time they used (user + system, all
//! threads) from the start of their loop to their `RESULT` as `cpu_ns`.

use crate::measure::{cpu_ns_self, now_ns, read_stamp, stamp, Percentiles, Tally, END};
use crate::peers::{End, Peer};
use crate::proc::{Args, Ctl};
use crate::Res;
use std::time::{Duration, Instant};

const GO_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `role` of `peer` in this (child) process.
pub fn run(peer: &str, role: &str, args: &Args) -> Res<()> {
    // Die with the parent, whatever happens to it.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let ctl = Ctl::new();
    if let Some(r) = crate::join_failover::child_role(role) {
        return r(args, &ctl);
    }
    let peer = Peer::from_key(peer).ok_or_else(|| format!("unknown peer {peer}"))?;
    let mut end = peer.open(role, args, &ctl)?;
    ctl.say("READY");
    ctl.wait_go(GO_TIMEOUT, &mut |name| end.on_peer(name))?;
    end.on_go()?;
    if role == "sink" || role == "pong" {
        // Receivers are set up before any sender starts.
        ctl.say("SET");
    }
    match role {
        "sink" => sink(end.as_mut(), args, &ctl),
        "source" => source(end.as_mut(), args, &ctl),
        "pong" => pong(end.as_mut(), args, &ctl),
        "ping" => ping(end.as_mut(), args, &ctl),
        _ => Err(format!("unknown role {role}").into()),
    }
}

fn sink(end: &mut dyn End, args: &Args, ctl: &Ctl) -> Res<()> {
    let cpu = cpu_ns_self();
    let senders = args.num("senders")?;
    // `FIRST` once this many messages are in (the memory row waits for one
    // from each of its senders).
    let first_after = args.num("first_after").unwrap_or(1).max(1);
    let mut tally = Tally::new(senders as usize, args.num("size")? as usize);
    let give_up = Duration::from_millis(args.num("give_up_ms")?);
    let mut timed_out = false;
    let mut said_first = false;
    while tally.ends < senders {
        if !end.recv(give_up, &mut |data| tally.on(data))? {
            timed_out = true;
            break;
        }
        if !said_first && tally.count >= first_after {
            ctl.say("FIRST");
            said_first = true;
        }
    }
    let cpu = cpu_ns_self() - cpu;
    ctl.say(&format!("{} cpu_ns={cpu}", tally.line(timed_out)));
    Ok(())
}

fn source(end: &mut dyn End, args: &Args, ctl: &Ctl) -> Res<()> {
    let index = args.num("index")? as u32;
    let mut buf = vec![0xa5u8; args.num("size")? as usize];
    let cpu = cpu_ns_self();
    let start = now_ns();
    let mut sent = 0u64;
    if args.str("mode")? == "one" {
        stamp(&mut buf, 0, index);
        end.send(&buf)?;
        sent = 1;
        ctl.wait_word("STOP", GO_TIMEOUT)?;
    } else {
        let dur = Duration::from_millis(args.num("dur_ms")?);
        let (min, max) = (args.num("min")?, args.num("max")?);
        let t0 = Instant::now();
        while sent < max {
            stamp(&mut buf, sent, index);
            end.send(&buf)?;
            sent += 1;
            if sent >= min
                && (sent.is_multiple_of(16) || buf.len() >= 1 << 16)
                && t0.elapsed() >= dur
            {
                break;
            }
        }
    }
    stamp(&mut buf, END, index);
    end.send(&buf)?;
    let cpu = cpu_ns_self() - cpu;
    ctl.say(&format!("RESULT sent={sent} start={start} cpu_ns={cpu}"));
    // Stay until the parent is done with the receivers.
    let _ = ctl.next(GO_TIMEOUT);
    Ok(())
}

fn pong(end: &mut dyn End, args: &Args, ctl: &Ctl) -> Res<()> {
    let mut reply = vec![0x5au8; args.num("size")? as usize];
    let give_up = Duration::from_millis(args.num("give_up_ms")?);
    // One-way timing: the answer says when the ping was received.
    let one_way = args.num("gap_us").is_ok_and(|g| g > 0);
    if one_way && reply.len() < 20 {
        return Err("one-way timing needs 20-byte messages".into());
    }
    let mut answered = 0u64;
    loop {
        let mut stamp_in = None;
        if !end.recv(give_up, &mut |data| stamp_in = read_stamp(data))? {
            return Err("no ping for too long".into());
        }
        let received = now_ns();
        let (seq, _) = stamp_in.ok_or("short ping")?;
        if seq == END {
            break;
        }
        stamp(&mut reply, seq, 0);
        if one_way {
            reply[12..20].copy_from_slice(&received.to_le_bytes());
        }
        end.send(&reply)?;
        answered += 1;
    }
    ctl.say(&format!("RESULT answered={answered}"));
    Ok(())
}

fn ping(end: &mut dyn End, args: &Args, ctl: &Ctl) -> Res<()> {
    let mut buf = vec![0xa5u8; args.num("size")? as usize];
    let warmup = args.num("warmup")?;
    let min = args.num("min")?;
    let dur = Duration::from_millis(args.num("dur_ms")?);
    let give_up = Duration::from_millis(args.num("give_up_ms")?);
    // With a gap: wait before each ping, and time it one way.
    let gap = Duration::from_micros(args.num("gap_us").unwrap_or(0));
    let mut one_way = Vec::with_capacity(min as usize * 4);
    let mut measured_since = None;
    let mut seq = 0u64;
    loop {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        stamp(&mut buf, seq, 0);
        let sent = now_ns();
        let t = Instant::now();
        end.send(&buf)?;
        let mut back = None;
        let mut received = 0u64;
        if !end.recv(give_up, &mut |data| {
            back = read_stamp(data).map(|s| s.0);
            if let Some(at) = data.get(12..20) {
                received = u64::from_le_bytes(at.try_into().unwrap_or_default());
            }
        })? {
            return Err(format!("no pong for round trip {seq}").into());
        }
        let rtt = t.elapsed();
        if back != Some(seq) {
            return Err(format!("pong {back:?} for ping {seq}").into());
        }
        seq += 1;
        if seq <= warmup {
            continue;
        }
        one_way.push(if gap.is_zero() {
            rtt.as_nanos() as u64 / 2
        } else {
            received.saturating_sub(sent)
        });
        let since = *measured_since.get_or_insert_with(Instant::now);
        if one_way.len() as u64 >= min && since.elapsed() >= dur {
            break;
        }
    }
    stamp(&mut buf, END, 0);
    end.send(&buf)?;
    ctl.say(&Percentiles::of(&mut one_way).line());
    Ok(())
}
