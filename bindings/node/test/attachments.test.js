'use strict';
// File descriptors and shared memory regions between Node and a Rust peer.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const busbar = require('..');
const { busName, peer, run, waitForLabels } = require('./helpers');

const TOKEN = 'busbar-tests'; // the peer's default token

function textAt(buffer) {
  const bytes = new Uint8Array(buffer);
  const end = bytes.indexOf(0);
  return Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString();
}

test('an fd from fs.openSync and a region written from JavaScript, read by Rust', async () => {
  const bus = busName('to-rust');
  const ep = await busbar.join({ bus, label: 'node', token: TOKEN, timeoutMs: 10000 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-node-'));
  const file = path.join(dir, 'note.txt');
  fs.writeFileSync(file, 'written by node');
  const fd = fs.openSync(file, 'r');
  const region = busbar.Region.create(8192);
  assert.equal(region.size, 8192);
  assert.equal(region.refCount, 1);
  const view = new Uint8Array(region.buffer);
  view.set(Buffer.from('region from node\0'));

  const rust = peer('bytes-read-attachments', ['--bus', bus, '--label', 'rust', '--reply-to', 'node']);
  await rust.line(/^READY/);
  await ep.send('rust', 'with attachments', { fds: [fd], regions: [region], ttlMs: 20000 });
  // The caller keeps its own descriptor: the message carried a copy.
  assert.equal(fs.fstatSync(fd).isFile(), true);
  fs.closeSync(fd);

  const answer = await ep.recv({ timeoutMs: 20000 });
  assert.equal(answer.data.toString(), 'data=with attachments fds=written by node regions=region from node');
  // Rust wrote into the same memory this ArrayBuffer shows.
  assert.equal(textAt(region.buffer), 'rust saw region from node');
  const r = await run(rust);
  assert.equal(r.code, 0, r.lines.join('\n') + r.stderr);
  // The peer's handle is gone with its process: only ours counts.
  assert.equal(region.refCount, 1);
  region.close();
  assert.equal(region.refCount, 0);
  assert.equal(view.byteLength, 0, 'close() detached the buffer');
  assert.throws(() => region.buffer, { code: 'CLOSED' });
  region.close(); // idempotent
  fs.rmSync(dir, { recursive: true });
  ep.close();
});

test('an fd from a Rust peer read with fs.readSync; its region written from JavaScript', async () => {
  const bus = busName('from-rust');
  const ep = await busbar.join({ bus, label: 'node', token: TOKEN, timeoutMs: 10000 });
  const rust = peer('bytes-send-attachments', ['--bus', bus, '--label', 'rust', '--to', 'node']);
  const m = await ep.recv({ timeoutMs: 20000 });
  assert.equal(m.data.toString(), 'attachments');
  assert.equal(m.format, 5);
  assert.equal(m.fds.length, 1);
  assert.equal(m.regions.length, 1);

  const fd = m.fds[0];
  const buf = Buffer.alloc(64);
  const n = fs.readSync(fd.fd, buf, 0, buf.length, null);
  assert.equal(buf.subarray(0, n).toString(), 'fd from rust');
  fd.close();
  assert.equal(fd.closed, true);
  assert.throws(() => fd.fd, { code: 'CLOSED' });
  fd.close(); // idempotent

  const region = m.regions[0];
  assert.equal(region.size, 4096);
  assert.equal(textAt(region.buffer), 'region from rust');
  assert.equal(region.refCount, 2);
  new Uint8Array(region.buffer).set(Buffer.from('node wrote this\0'));
  region.close();
  await ep.send({ endpoint: m.source }, 'done');
  const r = await run(rust);
  assert.equal(r.code, 0, r.lines.join('\n') + r.stderr);
  assert.deepEqual(r.lines.slice(1), ['REGION node wrote this', 'REFS 1']);
  ep.close();
});

test('take() hands a received descriptor over; Node to Node with copies of the regions counted', async () => {
  const bus = busName('node-node');
  const a = await busbar.join({ bus, label: 'a', token: TOKEN, timeoutMs: 10000 });
  const b = await busbar.join({ bus, label: 'b', token: TOKEN, timeoutMs: 10000 });
  const region = busbar.Region.create(100);
  region.write('shared', 10);
  const pipe = fs.openSync('/dev/null', 'r');
  // A ttl: a's directory may not list b yet, right after b's join.
  await a.send('b', Buffer.from([1, 2, 3]), { fds: [pipe, pipe], regions: [region], ttlMs: 20000 });
  fs.closeSync(pipe);
  const m = await b.recv({ timeoutMs: 20000 });
  assert.deepEqual([...m.data], [1, 2, 3]);
  assert.equal(m.fds.length, 2);
  const raw = m.fds[0].take();
  assert.equal(typeof raw, 'number');
  assert.equal(m.fds[0].closed, true);
  fs.closeSync(raw); // ours now
  assert.equal(region.refCount, 2);
  assert.equal(m.regions[0].read(10, 6).toString(), 'shared');
  m.close(); // the other fd and the region
  assert.equal(m.fds[1].closed, true);
  assert.equal(region.refCount, 1);
  region.close();
  a.close();
  b.close();
});

test('bad descriptors and closed regions are refused at once', async () => {
  const bus = busName('bad-attach');
  const ep = await busbar.join({ bus, label: 'x', token: TOKEN, timeoutMs: 10000 });
  assert.throws(() => ep.send('x', 'y', { fds: [-1] }), TypeError);
  assert.throws(() => ep.send('x', 'y', { fds: ['3'] }), TypeError);
  assert.throws(() => ep.send('x', 'y', { fds: [987654] }), { code: 'BAD_FD' });
  const region = busbar.Region.create(10);
  region.close();
  assert.throws(() => ep.send('x', 'y', { regions: [region] }), { code: 'CLOSED' });
  assert.throws(() => ep.send('x', 'y', { regions: [{}] }), TypeError);
  assert.throws(() => busbar.Region.create(-1), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => busbar.Region.create(1.5), TypeError);
  const r = busbar.Region.create(4);
  assert.throws(() => r.read(2, 3), { code: 'OUT_OF_RANGE' });
  assert.throws(() => r.write('hello'), { code: 'OUT_OF_RANGE' });
  assert.equal(busbar.Region.create(0).buffer.byteLength, 0);
  r.close();
  ep.close();
});
