'use strict';
// Node <-> Rust across processes: the `busbar` command (listen, send,
// request) on one side, this package on the other.

const test = require('node:test');
const assert = require('node:assert/strict');
const busbar = require('..');
const { busName, cli, run, waitForLabels } = require('./helpers');

const TOKEN = 'node-tests';

async function joinHost(bus, label) {
  return busbar.join({ bus, label, token: TOKEN, timeoutMs: 10000 });
}

function listen(bus, label, n, extra = []) {
  return cli(['listen', '--bus', bus, '--label', label, '-n', String(n), '--timeout', '30', '--token', TOKEN, ...extra]);
}

function send(bus, to, text, extra = []) {
  return cli(['send', '--bus', bus, '--to', to, '--token', TOKEN, ...extra, text]);
}

test('Node -> Rust: unicast waits with its ttl for the listener to join', async () => {
  const bus = busName('unicast');
  const ep = await joinHost(bus, 'node');
  const listener = listen(bus, 'rust', 1);
  await ep.send('rust', 'hello from node', { ttlMs: 20000 });
  const r = await run(listener);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines, ['hello from node']);
  ep.close();
});

test('Node -> Rust: multicast reaches every match, a label expression only its matches', async () => {
  const bus = busName('multicast');
  const ep = await joinHost(bus, 'node');
  // gpu gets the multicast and the fence; cpu gets those and the unicast.
  const gpu = listen(bus, 'rust,gpu', 2);
  const cpu = listen(bus, 'rust,cpu', 3);
  await waitForLabels(ep, ['gpu', 'cpu']);
  await ep.send('rust', 'to all', { multicast: true });
  await ep.send(busbar.LabelOp.leaf('rust').and(busbar.LabelOp.leaf('gpu').not()), 'cpu only');
  await ep.send('rust & (gpu | cpu)', 'fence', { multicast: true });
  const [g, c] = await Promise.all([run(gpu), run(cpu)]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(g.lines, ['to all', 'fence']);
  assert.deepEqual(c.lines, ['to all', 'cpu only', 'fence']);
  ep.close();
});

test('Rust -> Node: unicast and multicast by label expression, format and source', async () => {
  const bus = busName('to-node');
  const a = await joinHost(bus, ['node', 'gpu']);
  const b = await busbar.join({ bus, label: ['node', 'cpu'], token: TOKEN, timeoutMs: 10000 });
  let r = await run(send(bus, 'node & gpu', 'for the gpu', ['--format', '7']));
  assert.equal(r.code, 0, r.stderr);
  const m = await a.recv({ timeoutMs: 20000 });
  assert.equal(m.data.toString(), 'for the gpu');
  assert.ok(Buffer.isBuffer(m.data));
  assert.equal(m.format, 7);
  assert.equal(m.selector, 'node & gpu');
  assert.equal(m.multicast, false);
  assert.match(m.source, /^[0-9a-f]{16}$/);
  assert.notEqual(m.source, a.id);

  r = await run(send(bus, 'node', 'for both', ['--multicast']));
  assert.equal(r.code, 0, r.stderr);
  for (const ep of [a, b]) {
    const got = await ep.recv({ timeoutMs: 20000 });
    assert.equal(got.data.toString(), 'for both');
    assert.equal(got.multicast, true);
  }
  // Nothing else came to either.
  await assert.rejects(a.recv({ timeoutMs: 0 }), { code: 'TIMEOUT' });
  await assert.rejects(b.recv({ timeoutMs: 0 }), { code: 'TIMEOUT' });
  a.close();
  b.close();
});

test('Rust -> Node: a message with a ttl waits for the Node endpoint to join', async () => {
  const bus = busName('ttl');
  const host = await joinHost(bus, 'host');
  const sender = send(bus, 'late', 'waited for you', ['--ttl', '20000']);
  // The sender is on the bus (its ttl runs) before the receiver joins.
  await waitForLabels(host, [`busbar-cli:${sender.child.pid}`]);
  const late = await busbar.join({ bus, label: 'late', token: TOKEN, timeoutMs: 10000 });
  const m = await late.recv({ timeoutMs: 20000 });
  assert.equal(m.data.toString(), 'waited for you');
  const r = await run(sender);
  assert.equal(r.code, 0, r.stderr);
  host.close();
  late.close();
});

test('ttl 0 to nobody: NO_ROUTE at once; a multicast to nobody is no failure', async () => {
  const bus = busName('noroute');
  const ep = await joinHost(bus, 'alone');
  await assert.rejects(ep.send('nobody', 'x'), (e) => e instanceof busbar.BusbarError && e.code === 'NO_ROUTE');
  await ep.send('nobody', 'x', { multicast: true });
  await assert.rejects(ep.send('nobody', 'x', { multicast: true, requireReceiver: true }), { code: 'NO_ROUTE' });
  ep.close();
});

test('request and reply, both ways', async () => {
  const bus = busName('request');
  const ep = await joinHost(bus, 'node');
  const responder = listen(bus, 'upper', 1, ['--reply', 'ANSWER']);
  const dir = await waitForLabels(ep, ['upper']);
  const upper = dir.find((e) => e.label.includes('upper'));
  const answer = await ep.request('upper', 'question', { timeoutMs: 20000 });
  assert.equal(answer.data.toString(), 'ANSWER');
  const r = await run(responder);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines, ['question']);
  assert.equal(answer.source, upper.id);

  // The `busbar request` command asks, this endpoint answers.
  const asker = cli(['request', '--bus', bus, '--to', 'node', '--token', TOKEN, 'ping?']);
  const q = await ep.recv({ timeoutMs: 20000 });
  assert.equal(q.isRequest, true);
  assert.equal(q.data.toString(), 'ping?');
  await ep.reply(q, 'pong!');
  const ra = await run(asker);
  assert.equal(ra.code, 0, ra.stderr);
  assert.deepEqual(ra.lines, ['pong!']);

  const plain = await (async () => {
    await ep.send('node', 'not a request');
    return ep.recv({ timeoutMs: 20000 });
  })();
  assert.equal(plain.isRequest, false);
  assert.throws(() => ep.reply(plain, 'x'), { code: 'NOT_A_REQUEST' });
  ep.close();
});
