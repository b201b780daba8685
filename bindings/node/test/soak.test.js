'use strict';
// 100k messages from another process: the receiver's RSS and descriptor
// count stay flat.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { busName, start, node, run } = require('./helpers');

const fixture = (name) => path.join(__dirname, 'fixtures', name);

test('100k messages received: RSS and fd count stay flat', async () => {
  const bus = busName('soak');
  const receiver = start(process.execPath, ['--expose-gc', fixture('soak-recv.js'), bus, '10000']);
  await receiver.line(/^READY/);
  const sender = node(fixture('blast.js'), [bus, 'soak', '100000', '256']);
  const [r, s] = await Promise.all([run(receiver, 120000), run(sender, 120000)]);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(r.code, 0, r.stderr);
  const [count, rss, fds] = r.lines.slice(1).map((l) => l.split(' ').slice(1).map(Number));
  assert.deepEqual(count, [100000]);
  // (One link fewer at the end when the sender's exit was seen already.)
  assert.ok(fds[1] <= fds[0], `open descriptors went from ${fds[0]} to ${fds[1]}`);
  // 90k messages of 256 bytes are 23 MB: a leak of any of them shows.
  const grew = rss[1] - rss[0];
  console.log(`# RSS ${rss[0]} -> ${rss[1]}, descriptors ${fds[0]} -> ${fds[1]}`);
  assert.ok(grew < 8 * 1024 * 1024, `RSS grew by ${grew} bytes over 90k messages`);
});
