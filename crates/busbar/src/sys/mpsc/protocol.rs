//! The named ring's protocol, as [`crate::ring`]'s module docs describe
//! it (claim with one compare-and-swap and helping, clean claim words,
//! padding, commit, reading and reaping at `head`, the two Dekker
//! handshakes), written once over [`Memory`]: [`crate::ring`] calls these
//! functions on the mapped memfd, the loom models (`loom.rs`) on a model.
//!
//! Nothing read from the memory is trusted: lengths and indices are
//! checked here, and a violation is an `Err` naming it (the callers turn
//! it into `InvalidData`).

use super::{Memory, NONE, RECORD};
use crate::sys::mpsc::memory::{Word32, Word64};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `len` rounded up to the record alignment.
pub(crate) fn padded(len: usize) -> usize {
    (len + (RECORD - 1)) & !(RECORD - 1)
}

/// Writes the words of a new ring that are not zero: every slot empty, and
/// no claim where the first claim goes (see "Clean claim words").
pub(crate) fn init<M: Memory>(mem: &M) {
    for i in 0..mem.slots() {
        mem.slot(i).store(NONE, Ordering::Relaxed);
    }
    mem.claim_word(0).store(mem.not_claim(0), Ordering::Relaxed);
}

/// Why [`claim`] (or [`send`]) stopped without a record.
#[derive(Debug)]
pub(crate) enum Stop<E> {
    /// The receiver let go of the ring.
    Disconnected,
    /// The shared memory breaks the protocol (scribbled on).
    Corrupt(&'static str),
    /// The ring is full and the caller's `on_full` gave up.
    Full(E),
}

/// A message record claimed by [`claim`]: fill its payload, then [`commit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimed {
    /// Its index.
    pub r: u64,
    /// Its offset in the data area.
    pub off: usize,
    /// Bytes of the record, header included.
    pub rec: usize,
    /// Bytes of the payload.
    pub len: usize,
}

/// Before the reserve index moves from `r` to `next`: makes sure the word
/// where the next claim goes is no claim for `next`, whatever bytes an
/// earlier lap left there (see "Clean claim words" in [`crate::ring`]).
/// `h` is a `head` loaded before `r` was.
pub(crate) fn clear_next<M: Memory>(mem: &M, r: u64, next: u64, h: u64) {
    if next.wrapping_sub(h) >= mem.capacity() as u64 {
        // `h` may be older than the `head` the claimant saw (a helper that
        // was slow): look again. A `head` loaded now is at least that one
        // (the claim this sender saw was made after it was loaded), and
        // `next` is at most a capacity ahead of it (the claimant checked
        // the room), so `next` is a capacity ahead of a record at `head`
        // only if it is now.
        let h = mem.head().load(Ordering::Acquire);
        if next.wrapping_sub(h) >= mem.capacity() as u64 {
            // The word is the claim of the record at `head`: the receiver
            // clears it when it moves on.
            return;
        }
    }
    let word = mem.claim_word(mem.offset(next));
    let stale = word.load(Ordering::Acquire);
    if mem.reserve().load(Ordering::Acquire) != r {
        // Whoever moved it cleared the word first.
        return;
    }
    // Nobody can have claimed at `next` (that takes the reserve index at
    // `next`): a claim made since the load above makes this fail.
    let _ = word.compare_exchange(
        stale,
        mem.not_claim(next),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// Claims a record for a message of `len` bytes (at most `capacity -
/// RECORD`) as sender `slot`, claiming padding first where the message
/// would cross the end of the data area, and helping other senders move
/// the reserve index. When the ring is full, asks `on_full` how long to
/// wait for room (or why to give up), and waits. `ring` rings the
/// receiver's doorbell. On success the slot says the record's index until
/// [`commit`].
pub(crate) fn claim<M: Memory, E>(
    mem: &M,
    slot: usize,
    len: usize,
    mut on_full: impl FnMut() -> Result<Duration, E>,
    ring: &impl Fn(),
) -> Result<Claimed, Stop<E>> {
    let cap = mem.capacity();
    let need = RECORD + padded(len);
    let mut odd = 0u32;
    loop {
        if mem.gone().load(Ordering::Acquire) != 0 {
            return Err(Stop::Disconnected);
        }
        let h = mem.head().load(Ordering::Acquire);
        let r = mem.reserve().load(Ordering::Acquire);
        if r % RECORD as u64 != 0 {
            return Err(Stop::Corrupt("the reserve index is not aligned"));
        }
        let off = mem.offset(r);
        let used = r.wrapping_sub(h);
        // A full ring (`used == cap`) has no claim at `r`: the word
        // there is the claim of the record at `head`.
        let w = mem.claim_word(off).load(Ordering::Acquire);
        if used < cap as u64 {
            if let Some(c) = mem.decode_claim(r, w) {
                if c.len < RECORD || off + c.len > cap {
                    return Err(Stop::Corrupt("a record's length is out of range"));
                }
                // Claimed already: help its sender move the reserve index.
                let next = r.wrapping_add(c.len as u64);
                clear_next(mem, r, next, h);
                let _ =
                    mem.reserve()
                        .compare_exchange(r, next, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
        }
        if used > cap as u64 {
            // `r` is behind `head` or far ahead of it: only a scribbled
            // header does that for long.
            odd += 1;
            if odd > 100_000 {
                return Err(Stop::Corrupt("the indices are out of range"));
            }
            mem.yield_now();
            continue;
        }
        let (pad, rec) = if off + need > cap {
            (true, cap - off)
        } else {
            (false, need)
        };
        if used as usize + rec > cap {
            // Full: wait for room, Dekker-style with the receiver's
            // `advance` (flag, fence, look again, sleep).
            let timeout = on_full().map_err(Stop::Full)?;
            mem.room().store(1, Ordering::Relaxed);
            mem.fence();
            if mem.head().load(Ordering::Acquire) != h {
                continue;
            }
            mem.wait_room(timeout);
            continue;
        }
        // `w` was loaded after `r`: if the reserve index has moved on
        // meanwhile (this sender was slow), `w` may be what came after a
        // claim at `r` (the receiver's no-claim for the next lap, once it
        // read that record), which the CAS below would take for free space.
        // The receiver stores that no-claim with release, so seeing it
        // means seeing the reserve index past `r` here.
        if mem.reserve().load(Ordering::Acquire) != r {
            continue;
        }
        mem.slot(slot).store(r, Ordering::Release);
        let mine = mem.claim(r, rec, pad);
        if mem
            .claim_word(off)
            .compare_exchange(w, mine, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Lost: the receiver may be waiting for this slot to clear.
            mem.slot(slot).store(NONE, Ordering::Release);
            mem.fence();
            ring_if_sleeping(mem, ring);
            continue;
        }
        let next = r.wrapping_add(rec as u64);
        clear_next(mem, r, next, h);
        let _ = mem
            .reserve()
            .compare_exchange(r, next, Ordering::AcqRel, Ordering::Relaxed);
        if pad {
            // Padding is complete once claimed: the receiver may step
            // over it now, and must be woken to (the room this sender
            // then waits for is behind it).
            mem.slot(slot).store(NONE, Ordering::Release);
            mem.fence();
            ring_if_sleeping(mem, ring);
            continue;
        }
        return Ok(Claimed { r, off, rec, len });
    }
}

/// Commits a record [`claim`]ed (and filled) by sender `slot`: the commit
/// word (release: it orders the payload before it), then the slot cleared
/// (release: a receiver that sees it cleared sees the commit), then the
/// receiver woken if its flag is up.
pub(crate) fn commit<M: Memory>(mem: &M, slot: usize, c: &Claimed, ring: &impl Fn()) {
    let commit = mem.commit(c.r, c.rec - RECORD - c.len);
    mem.commit_word(c.off).store(commit, Ordering::Release);
    mem.slot(slot).store(NONE, Ordering::Release);
    mem.fence();
    ring_if_sleeping(mem, ring);
}

/// Sends a message of `len` bytes as sender `slot`: [`claim`], `fill` the
/// payload in place, [`commit`]. The record is committed even when `fill`
/// fails half way (its result is handed back), so that the space is not
/// held up.
pub(crate) fn send<M: Memory, E, R>(
    mem: &mut M,
    slot: usize,
    len: usize,
    on_full: impl FnMut() -> Result<Duration, E>,
    ring: impl Fn(),
    fill: impl FnOnce(&mut [u8]) -> R,
) -> Result<R, Stop<E>> {
    let c = claim(mem, slot, len, on_full, &ring)?;
    let filled = mem.fill(c.off + RECORD, len, fill);
    commit(mem, slot, &c, &ring);
    filled.ok_or(Stop::Corrupt("a record lies outside the ring"))
}

/// After a sender's `SeqCst` fence: rings the receiver's doorbell if its
/// wake flag is up (and takes the flag down).
pub(crate) fn ring_if_sleeping<M: Memory>(mem: &M, ring: &impl Fn()) {
    if mem.sleeping().load(Ordering::Relaxed) != 0 && mem.sleeping().swap(0, Ordering::AcqRel) != 0
    {
        ring();
    }
}

/// The receiver, before it sleeps: raises its wake flag and fences; it
/// must then look at `head` once more before sleeping (from here on a
/// sender that commits rings).
pub(crate) fn raise_flag<M: Memory>(mem: &M) {
    if mem.sleeping().load(Ordering::Relaxed) == 0 {
        mem.sleeping().swap(1, Ordering::AcqRel);
    }
    mem.fence();
}

/// A committed message found by [`next_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message {
    /// The payload's offset in the data area.
    pub off: usize,
    /// The payload's length.
    pub len: usize,
    /// Bytes of the whole record (what [`deliver`] releases).
    pub rec: usize,
}

/// Whether a committed record (or padding) is at `head`: the spin's look.
pub(crate) fn ready_at_head<M: Memory>(mem: &M, head: u64) -> bool {
    let off = mem.offset(head);
    let w = mem.claim_word(off).load(Ordering::Acquire);
    match mem.decode_claim(head, w) {
        None => false,
        Some(c) if c.pad => true,
        Some(_) => {
            let c = mem.commit_word(off).load(Ordering::Acquire);
            mem.decode_commit(head, c).is_some()
        }
    }
}

/// The committed message at `head` (the receiver's own copy, moved on
/// here), stepping over padding and (with `reap`) over the record of a
/// sender that is gone: one that no sender in a slot for which `live`
/// holds is claiming. `None` when there is none (yet).
pub(crate) fn next_record<M: Memory>(
    mem: &M,
    head: &mut u64,
    reap: bool,
    live: impl Fn(usize) -> bool,
) -> Result<Option<Message>, &'static str> {
    let cap = mem.capacity();
    loop {
        let p = *head;
        let off = mem.offset(p);
        let w = mem.claim_word(off).load(Ordering::Acquire);
        let Some(c) = mem.decode_claim(p, w) else {
            return Ok(None);
        };
        if c.len < RECORD || off + c.len > cap {
            return Err("a record's length is out of range");
        }
        if c.pad {
            if off + c.len != cap {
                return Err("padding does not end at the end of the ring");
            }
            advance(mem, head, c.len);
            continue;
        }
        let slack = match mem.decode_commit(p, mem.commit_word(off).load(Ordering::Acquire)) {
            Some(s) => s,
            None => {
                if !reap || claimed_by_live(mem, p, &live) {
                    return Ok(None);
                }
                match mem.decode_commit(p, mem.commit_word(off).load(Ordering::Acquire)) {
                    Some(s) => s,
                    None => {
                        // Its sender is gone: reclaim the space.
                        tracing::debug!(
                            index = p,
                            len = c.len,
                            "reclaimed the record of a sender that is gone"
                        );
                        advance(mem, head, c.len);
                        continue;
                    }
                }
            }
        };
        if slack > c.len - RECORD {
            return Err("a message's slack is larger than its record");
        }
        return Ok(Some(Message {
            off: off + RECORD,
            len: c.len - RECORD - slack,
            rec: c.len,
        }));
    }
}

/// Empties slot `i` (a sender came, or its connection closed: whatever
/// it claimed is now the receiver's to reclaim).
pub(crate) fn free_slot<M: Memory>(mem: &M, i: usize) {
    mem.slot(i).store(NONE, Ordering::Release);
}

/// Whether a sender in a slot for which `live` holds is claiming at `p`.
pub(crate) fn claimed_by_live<M: Memory>(mem: &M, p: u64, live: impl Fn(usize) -> bool) -> bool {
    (0..mem.slots()).any(|i| live(i) && mem.slot(i).load(Ordering::Acquire) == p)
}

/// Lends the payload of `msg` (from [`next_record`]) to `f`, then releases
/// its record to the senders.
pub(crate) fn deliver<M: Memory, R>(
    mem: &mut M,
    head: &mut u64,
    msg: Message,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, &'static str> {
    let out = mem
        .read(msg.off, msg.len, f)
        .ok_or("a message lies outside the ring")?;
    advance(mem, head, msg.rec);
    Ok(out)
}

/// Releases `len` bytes at `head` to the senders: leaves no claim in the
/// record's claim word for the index a lap later, stores the new `head`
/// (release), fences, and wakes senders waiting for room.
pub(crate) fn advance<M: Memory>(mem: &M, head: &mut u64, len: usize) {
    // The record's claim word is where a claim a lap later may go:
    // leave no claim there (no sender can claim there before `head`
    // has moved on, below).
    let lap = head.wrapping_add(mem.capacity() as u64);
    let off = mem.offset(*head);
    // Release: a sender that loads this word with a stale reserve index
    // then sees the index moved past this record (see `claim`).
    mem.claim_word(off)
        .store(mem.not_claim(lap), Ordering::Release);
    *head = head.wrapping_add(len as u64);
    mem.head().store(*head, Ordering::Release);
    mem.fence();
    if mem.room().load(Ordering::Relaxed) != 0 && mem.room().swap(0, Ordering::AcqRel) != 0 {
        mem.wake_room();
    }
}
