'use strict';
// recv never blocks the event loop; an idle endpoint keeps no process
// alive; an aborted recv loses nothing; worker threads.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const busbar = require('..');
const { busName, node, run, start } = require('./helpers');

const fixture = (name) => path.join(__dirname, 'fixtures', name);

test('a setInterval keeps ticking while a recv is pending', async () => {
  const bus = busName('interval');
  const ep = await busbar.join({ bus, label: 'me', token: 't', timeoutMs: 10000 });
  // The message is sent by the timer itself: if the pending recv held the
  // event loop, no tick would run and the recv would time out.
  let ticks = 0;
  const timer = setInterval(() => {
    ticks += 1;
    if (ticks === 20) ep.send('me', 'after 20 ticks');
  }, 5);
  const m = await ep.recv({ timeoutMs: 20000 });
  clearInterval(timer);
  assert.equal(m.data.toString(), 'after 20 ticks');
  assert.ok(ticks >= 20);
  ep.close();
});

test('a receive that spins leaves the event loop running and takes a message from another process', async () => {
  const bus = busName('spin');
  // A spin of up to 5 s per receive: timers must still tick meanwhile.
  const ep = await busbar.join({ bus, label: 'receiver', token: 't', timeoutMs: 10000, spinUs: 5e6 });
  const sender = node(fixture('sender.js'), [bus, 'receiver']);
  await sender.line(/^READY/);
  let ticks = 0;
  const timer = setInterval(() => {
    ticks += 1;
    if (ticks === 10) sender.child.stdin.write('go\n');
  }, 5);
  const m = await ep.recv({ timeoutMs: 20000 });
  assert.equal(m.data.toString(), 'n 0');
  assert.ok(ticks >= 10);
  clearInterval(timer);
  sender.child.stdin.write('go\n');
  assert.equal((await ep.recv({ timeoutMs: 20000 })).data.toString(), 'n 1');
  sender.child.stdin.end();
  assert.equal((await run(sender)).code, 0);
  ep.close();
});

test('spinUs: 0 sleeps at once, and a bad spinUs throws', async () => {
  const bus = busName('nospin');
  const ep = await busbar.join({ bus, label: 'me', token: 't', timeoutMs: 10000, spinUs: 0 });
  const p = ep.recv({ timeoutMs: 20000 });
  setTimeout(() => ep.send('me', 'later'), 20);
  assert.equal((await p).data.toString(), 'later');
  ep.close();
  assert.throws(() => busbar.join({ bus, label: 'me', spinUs: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => busbar.join({ bus, label: 'me', spinUs: 'long' }), TypeError);
});

test('a script that joined and never called close() exits by itself within a second', async () => {
  const bus = busName('no-close');
  const r = await run(node(fixture('no-close.js'), [bus]));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines.slice(0, 4), ['GOT to myself', 'RECV TIMEOUT', 'RECV ABORTED', 'LAST']);
  const ms = Number(r.lines[4].split(' ')[1]);
  assert.ok(ms < 1000, `the event loop stayed alive ${ms} ms after the last statement`);
});

test('an endpoint that is garbage collected leaves the bus', async () => {
  const r = await run(start(process.execPath, ['--expose-gc', fixture('gc.js'), busName('gc')]));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines, ['JOINED true', 'GONE']);
});

test('an aborted recv loses nothing: every message comes, in order', async () => {
  const bus = busName('abort');
  const ep = await busbar.join({ bus, label: 'receiver', token: 't', timeoutMs: 10000 });
  const sender = node(fixture('sender.js'), [bus, 'receiver']);
  await sender.line(/^READY/);
  const N = 200;
  const got = [];
  let aborted = 0;
  for (let i = 0; i < N; i++) {
    const ac = new AbortController();
    const p = ep.recv({ signal: ac.signal, timeoutMs: 20000 });
    sender.child.stdin.write('go\n');
    // Abort at varying moments: at once, after a turn of the loop, after a few.
    for (let k = 0; k < i % 4; k++) await new Promise((r) => setImmediate(r));
    ac.abort(new Error(`abort ${i}`));
    try {
      got.push((await p).data.toString());
    } catch (e) {
      assert.equal(e.code, 'ABORTED');
      assert.equal(e.cause.message, `abort ${i}`);
      aborted += 1;
    }
  }
  while (got.length < N) got.push((await ep.recv({ timeoutMs: 20000 })).data.toString());
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => `n ${i}`));
  assert.ok(aborted > 0, 'no receive was aborted');
  await assert.rejects(ep.recv({ timeoutMs: 0 }), { code: 'TIMEOUT' });
  sender.child.stdin.end();
  assert.equal((await run(sender)).code, 0);
  ep.close();
});

test('close() ends a pending recv with DISCONNECTED and is idempotent', async () => {
  const bus = busName('close');
  const ep = await busbar.join({ bus, label: 'me', token: 't', timeoutMs: 10000 });
  const first = ep.recv();
  const second = ep.recv({ timeoutMs: 20000 });
  setImmediate(() => ep.close());
  await Promise.all([
    assert.rejects(first, { code: 'DISCONNECTED' }),
    assert.rejects(second, { code: 'DISCONNECTED' }),
  ]);
  ep.close();
  assert.equal(ep.closed, true);
  await assert.rejects(ep.send('me', 'x'), { code: 'DISCONNECTED' });
  await assert.rejects(ep.recv(), { code: 'DISCONNECTED' });
});

test('async iteration, and several callers waiting at once', async () => {
  const bus = busName('iterate');
  const ep = await busbar.join({ bus, label: 'me', token: 't', timeoutMs: 10000 });
  const waiting = [ep.recv(), ep.recv(), ep.recv()];
  for (let i = 0; i < 8; i++) await ep.send('me', `m${i}`);
  assert.deepEqual((await Promise.all(waiting)).map((m) => m.data.toString()), ['m0', 'm1', 'm2']);
  const seen = [];
  for await (const m of ep) {
    seen.push(m.data.toString());
    if (seen.length === 5) break;
  }
  assert.deepEqual(seen, ['m3', 'm4', 'm5', 'm6', 'm7']);
  setImmediate(() => ep.close());
  for await (const m of ep) assert.fail(`unexpected ${m.data}`);
});

test('the same module in a worker thread', async () => {
  const bus = busName('worker');
  const ep = await busbar.join({ bus, label: 'main', token: 't', timeoutMs: 10000 });
  const worker = new Worker(`
    const busbar = require(${JSON.stringify(path.join(__dirname, '..'))});
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const ep = await busbar.join({ bus: workerData, label: 'worker', token: 't', timeoutMs: 10000 });
      const m = await ep.recv({ timeoutMs: 20000 });
      await ep.send('main', 'worker got ' + m.data);
      parentPort.postMessage('done');
    })();
  `, { eval: true, workerData: bus });
  const exited = new Promise((r) => worker.on('exit', r));
  await ep.send('worker', 'hello', { ttlMs: 20000 });
  const m = await ep.recv({ timeoutMs: 20000 });
  assert.equal(m.data.toString(), 'worker got hello');
  // The worker never closed its endpoint: its thread ends all the same.
  assert.equal(await exited, 0);
  ep.close();
});

test('a worker terminated while its recv waits ends cleanly, and the process goes on', async () => {
  // The worker's endpoint watches its descriptor on the worker's own event
  // loop; terminate() tears that loop down with the watch still started:
  // it must be closed in time (a loop closed with a handle open aborts
  // the whole process), and nothing must be called back afterwards.
  const bus = busName('worker-terminate');
  const ep = await busbar.join({ bus, label: 'main', token: 't', timeoutMs: 10000 });
  for (let round = 0; round < 3; round++) {
    const worker = new Worker(`
      const busbar = require(${JSON.stringify(path.join(__dirname, '..'))});
      const { workerData, parentPort } = require('node:worker_threads');
      (async () => {
        const ep = await busbar.join({ bus: workerData, label: 'waiter', token: 't', timeoutMs: 10000 });
        const pending = ep.recv();
        parentPort.postMessage('waiting');
        await pending;
      })();
    `, { eval: true, workerData: bus });
    const exited = new Promise((r) => worker.on('exit', r));
    await new Promise((r) => worker.once('message', r));
    await worker.terminate();
    assert.equal(await exited, 1);
  }
  // This process's own endpoint still works.
  await ep.send('main', 'still here');
  assert.equal((await ep.recv({ timeoutMs: 20000 })).data.toString(), 'still here');
  ep.close();
});
