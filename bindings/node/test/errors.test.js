'use strict';
// Errors carry their `.code`; bad arguments throw at once and the process
// lives on; a receiver that does not read holds its senders back.

const test = require('node:test');
const assert = require('node:assert/strict');
const busbar = require('..');
const { BusbarError, LabelOp } = busbar;
const { busName, peer, run, waitForLabels } = require('./helpers');

const isCode = (code) => (e) => e instanceof BusbarError && e.code === code && e.message.length > 0;

test('join: TOKEN_MISMATCH, TIMEOUT, a bad bus name', async () => {
  const bus = busName('join');
  const host = await busbar.join({ bus, label: 'host', token: 'right', timeoutMs: 10000 });
  await assert.rejects(busbar.join({ bus, label: 'x', token: 'wrong', timeoutMs: 10000 }), isCode('TOKEN_MISMATCH'));
  await assert.rejects(
    busbar.join({ bus: busName('nobody'), label: 'x', timeoutMs: 50, controllerAffinity: false }),
    isCode('TIMEOUT'),
  );
  await assert.rejects(busbar.join({ bus: 'x'.repeat(65), label: 'x' }), isCode('INVALID_ARGUMENT'));
  host.close();
});

test('bad arguments throw at once', async () => {
  assert.throws(() => busbar.join(), TypeError);
  assert.throws(() => busbar.join({ label: 'x' }), TypeError);
  assert.throws(() => busbar.join({ bus: 'b', label: 7 }), TypeError);
  assert.throws(() => busbar.join({ bus: 'b', timeoutMs: -1 }), isCode('INVALID_ARGUMENT'));
  assert.throws(() => busbar.join({ bus: 'b', timeoutMs: 'soon' }), TypeError);
  const bus = busName('args');
  const ep = await busbar.join({ bus, label: 'me', token: 't', timeoutMs: 10000 });
  assert.throws(() => ep.send('me & (', 'x'), (e) => isCode('INVALID_ARGUMENT')(e) && e.message.includes('^'));
  assert.throws(() => ep.send(42, 'x'), TypeError);
  assert.throws(() => ep.send('me', 42), TypeError);
  assert.throws(() => ep.send('me', { data: 1 }), TypeError);
  assert.throws(() => ep.send('me', 'x', { ttlMs: -1 }), isCode('INVALID_ARGUMENT'));
  assert.throws(() => ep.send('me', 'x', { format: 70000 }), TypeError);
  assert.throws(() => ep.send('me', 'x', { backpressure: 'sometimes' }), TypeError);
  assert.throws(() => ep.send({ endpoint: 'not hex' }, 'x'), isCode('INVALID_ARGUMENT'));
  assert.throws(() => ep.recv({ timeoutMs: -5 }), isCode('INVALID_ARGUMENT'));
  assert.throws(() => ep.recv({ signal: 'stop' }), TypeError);
  assert.throws(() => ep.reply({}, 'x'), TypeError);
  assert.throws(() => LabelOp.parse('a | | b'), isCode('INVALID_ARGUMENT'));
  assert.throws(() => LabelOp.parse(3), TypeError);
  // Still working after all that.
  await ep.send(LabelOp.parse('me | nobody'), new Uint8Array([104, 105]));
  assert.equal((await ep.recv({ timeoutMs: 10000 })).data.toString(), 'hi');
  await assert.rejects(ep.recv({ timeoutMs: 1 }), isCode('TIMEOUT'));
  ep.close();
});

test('LabelOp builds, prints and matches as busbar does', () => {
  const op = LabelOp.leaf('renderer').and(LabelOp.leaf('gpu').not()).or('codec');
  assert.equal(op.toString(), 'renderer & !gpu | codec');
  assert.equal(LabelOp.parse(op.toString()).toString(), op.toString());
  assert.equal(op.matches(['renderer', 'cpu']), true);
  assert.equal(op.matches(['renderer', 'gpu']), false);
  assert.equal(op.matches('codec'), true);
  assert.equal(LabelOp.leaf('any name').toString(), '"any name"');
  assert.equal(LabelOp.true().matches([]), true);
  assert.equal(LabelOp.false().matches(['x']), false);
});

test('a receiver that does not read: FULL under fail-fast; under block the send waits, the event loop does not', async () => {
  const bus = busName('full');
  const ep = await busbar.join({ bus, label: 'node', token: 'busbar-tests', timeoutMs: 10000 });
  // A Rust endpoint that never reads.
  const sink = peer('hold', ['--bus', bus, '--label', 'sink']);
  await sink.line(/^READY/);
  await waitForLabels(ep, ['sink']);
  const kib = Buffer.alloc(1024, 1);
  let sent = 0;
  for (;;) {
    try {
      await ep.send('sink', kib, { backpressure: 'fail-fast' });
      sent += 1;
    } catch (e) {
      assert.ok(isCode('FULL')(e), String(e));
      break;
    }
    assert.ok(sent < 100000, 'the sink never filled up');
  }
  assert.ok(sent > 10);
  // Under the default policy the send waits for room, on the sending thread.
  let settled = false;
  const blocked = ep.send('sink', kib).then(
    () => { settled = true; },
    (e) => { settled = e; },
  );
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  // Its receiver leaves: the waiting send ends (delivered nowhere).
  sink.child.stdin.end();
  await run(sink);
  await blocked;
  assert.notEqual(settled, false);
  ep.close();
});
