'use strict';
// Batches: recvBatch, async iteration (a batch per wake-up) and recv() over
// the same stream from another process; messages of every size (in the
// batch's slab, in a Buffer of their own, lent through shared memory) and
// with attachments keep their order, bytes, format and flags.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const busbar = require('..');
const { busName, node, run } = require('./helpers');

const SIZES = [0, 1, 100, 1024, 8192, 8193, 70000, 3000];
const COUNT = 400;

/** Checks message `m`, the `i`th that fixtures/mixed.js sent. */
function check(m, i, source) {
  const size = SIZES[i % SIZES.length];
  assert.equal(m.format, i & 0xffff, `format of message ${i}`);
  assert.ok(Buffer.isBuffer(m.data), `message ${i}: data is a Buffer`);
  assert.equal(m.data.length, size, `length of message ${i}`);
  for (let k = 0; k < size; k++) {
    if (m.data[k] !== ((i + k) & 0xff)) assert.fail(`message ${i}, byte ${k}: ${m.data[k]}`);
  }
  assert.equal(m.multicast, i % 7 === 0, `multicast flag of message ${i}`);
  assert.equal(m.source, source);
  assert.equal(m.selector, 'sink');
  assert.equal(m.isRequest, false);
  if (i % 11 === 0) {
    assert.equal(m.fds.length, 1, `descriptors of message ${i}`);
    assert.ok(fs.fstatSync(m.fds[0].fd).isCharacterDevice());
    assert.equal(m.regions.length, 1, `regions of message ${i}`);
    assert.equal(new Uint8Array(m.regions[0].buffer)[0], i & 0xff);
  } else {
    assert.deepEqual([m.fds.length, m.regions.length], [0, 0], `attachments of message ${i}`);
  }
  m.close();
}

async function stream(name, consume) {
  const bus = busName(name);
  const ep = await busbar.join({ bus, label: 'sink', token: 't', timeoutMs: 10000 });
  const sender = node(path.join(__dirname, 'fixtures', 'mixed.js'), [bus, String(COUNT)]);
  const id = (await sender.line(/^ID /)).slice(3);
  // (The last batch may bring `END` along.)
  const end = (await consume(ep, id)) ?? (await ep.recv());
  assert.equal(end.format, 9);
  const s = await run(sender);
  assert.equal(s.code, 0, s.stderr);
  ep.close();
}

test('recvBatch hands over every message in order, each whole', async () => {
  await stream('batch', async (ep, id) => {
    let i = 0;
    let most = 0;
    let end;
    while (i < COUNT) {
      const batch = await ep.recvBatch({ max: 64 });
      assert.ok(Array.isArray(batch) && batch.length >= 1 && batch.length <= 64);
      most = Math.max(most, batch.length);
      for (const m of batch) {
        if (i < COUNT) check(m, i++, id);
        else end = m;
      }
    }
    console.log(`# largest batch: ${most}`);
    return end;
  });
});

test('async iteration and recv() share the stream; a loop left keeps the rest', async () => {
  await stream('iterate', async (ep, id) => {
    let i = 0;
    // Leave the loop in the middle of a batch (messages are sent without waiting).
    for await (const m of ep) {
      check(m, i++, id);
      if (i === 150) break;
    }
    // The rest of that batch comes next, in order, through recv() and recvBatch().
    for (; i < 200; i++) check(await ep.recv(), i, id);
    const small = await ep.recvBatch({ max: 3 });
    assert.ok(small.length >= 1 && small.length <= 3);
    for (const m of small) check(m, i++, id);
    for await (const m of ep) {
      check(m, i++, id);
      if (i === COUNT) break;
    }
  });
});

test('recvBatch checks its arguments, times out and aborts', async () => {
  const ep = await busbar.join({ bus: busName('batch-args'), label: 'a', token: 't', timeoutMs: 10000 });
  assert.throws(() => ep.recvBatch({ max: 0 }), { name: 'BusbarError', code: 'INVALID_ARGUMENT' });
  assert.throws(() => ep.recvBatch({ max: 1.5 }), TypeError);
  assert.throws(() => ep.recvBatch({ timeoutMs: -1 }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(ep.recvBatch({ timeoutMs: 0 }), { code: 'TIMEOUT' });
  const ac = new AbortController();
  const pending = ep.recvBatch({ signal: ac.signal });
  ac.abort();
  await assert.rejects(pending, { code: 'ABORTED' });
  await ep.send('a', 'one');
  await ep.send('a', 'two');
  const got = await ep.recvBatch({ max: 100 });
  assert.deepEqual(got.map((m) => m.data.toString()), ['one', 'two']);
  ep.close();
  await assert.rejects(ep.recvBatch(), { code: 'DISCONNECTED' });
});

test('sends to one place, to others, with and without attachments, and refused ones keep their order and places', async () => {
  const bus = busName('places');
  const ep = await busbar.join({ bus, label: ['a', 'b'], token: 't', timeoutMs: 10000 });
  const child = node(path.join(__dirname, 'fixtures', 'places.js'), [bus]);
  const got = [];
  while (got.length < 16) {
    const m = await ep.recv({ timeoutMs: 20000 });
    got.push([m.data.toString(), m.selector, m.format, m.multicast, m.fds.length]);
    m.close();
  }
  const r = await run(child);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines, ['ERR INVALID_ARGUMENT', 'ERR INVALID_ARGUMENT', 'DONE']);
  const want = [
    ['a', 0, false, 0], ['a', 0, false, 0], ['a', 7, false, 0], ['b', 0, false, 0], ['b', 0, false, 0],
    ['a', 0, false, 0], ['a', 0, false, 0], ['a', 0, false, 1], ['a', 0, false, 0], ['a', 0, false, 0],
    ['a', 0, false, 0], ['b', 0, true, 0], ['b', 0, true, 0], ['b', 0, false, 0], ['a & b', 0, false, 0],
    ['a & b', 0, false, 0],
  ].map(([sel, format, multicast, fds], n) => [`m ${n}`, sel, format, multicast, fds]);
  assert.deepEqual(got, want);
  ep.close();
});

test('payloads kept across many batches stay whole; sources and selectors that change between messages are right', async () => {
  // Two senders at once, each awaiting every send, each switching its
  // selector: every received payload is kept until the end (small ones
  // share slabs, which fill and are replaced meanwhile), and each
  // message's source and selector are its own although the native side
  // gives their text only when they change.
  const bus = busName('streams');
  const COUNT_EACH = 3000;
  const ep = await busbar.join({ bus, label: 'sink', token: 't', timeoutMs: 10000 });
  const senders = [1, 2].map((tag) => node(path.join(__dirname, 'fixtures', 'streams.js'), [bus, String(tag), String(COUNT_EACH)]));
  const ids = [];
  for (const s of senders) ids.push((await s.line(/^ID /)).slice(3));
  for (const s of senders) s.child.stdin.write('go\n');
  const kept = [];
  let ends = 0;
  for await (const m of ep) {
    if (m.format === 9 && m.data.toString() === 'END') {
      ends += 1;
      if (ends === 2) break;
      continue;
    }
    kept.push(m);
  }
  assert.equal(kept.length, 2 * COUNT_EACH);
  const next = [0, 0];
  for (const m of kept) {
    const which = ids.indexOf(m.source);
    assert.ok(which >= 0, `a source of ours: ${m.source}`);
    const i = next[which]++;
    const tag = which + 1;
    assert.equal(m.format, i & 0xffff, `format of message ${i} from ${tag}`);
    assert.equal(m.selector, i % 5 < 3 ? 'sink' : 'sink | nobody', `selector of message ${i} from ${tag}`);
    assert.equal(m.data.length, 1000);
    for (let k = 0; k < 1000; k++) {
      if (m.data[k] !== ((tag * 31 + i + k) & 0xff)) assert.fail(`message ${i} from ${tag}, byte ${k}: ${m.data[k]}`);
    }
  }
  assert.deepEqual(next, [COUNT_EACH, COUNT_EACH]);
  for (const s of senders) {
    const r = await run(s);
    assert.equal(r.code, 0, r.stderr);
  }
  ep.close();
});

test('sends not awaited while the receiver is behind: every one arrives once, in order, with the bytes it had when sent', async () => {
  const N = 5000;
  const bus = busName('backlog');
  const ep = await busbar.join({ bus, label: 'sink', token: 't', timeoutMs: 10000 });
  const sender = node(path.join(__dirname, 'fixtures', 'backlog.js'), [bus, String(N)]);
  const id = (await sender.line(/^ID /)).slice(3);
  sender.child.stdin.write('go\n');
  // Nothing is read until every send of the first half was made: the
  // queue fills, and the sends after that wait in the sender.
  await sender.line(/^SENT$/);
  let i = 0;
  for await (const m of ep) {
    if (m.data.length === 3) {
      assert.deepEqual([m.format, m.data.toString()], [9, 'END']);
      break;
    }
    assert.equal(m.format, i & 0xffff, `format of message ${i}`);
    assert.equal(m.data.length, 1000, `length of message ${i}`);
    for (let k = 0; k < 1000; k++) {
      if (m.data[k] !== ((i + k) & 0xff)) assert.fail(`message ${i}, byte ${k}: ${m.data[k]}`);
    }
    assert.equal(m.source, id);
    assert.equal(m.selector, i % 7 < 4 ? 'sink' : 'sink | nobody', `selector of message ${i}`);
    assert.equal(m.fds.length, i % 1000 === 999 ? 1 : 0, `descriptors of message ${i}`);
    m.close();
    i += 1;
  }
  assert.equal(i, 2 * N);
  assert.ok(sender.lines.includes(`DONE ${N}`), JSON.stringify(sender.lines));
  const s = await run(sender);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stderr, '');
  ep.close();
});
