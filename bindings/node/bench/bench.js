'use strict';
// Node -> Node over busbar, zeromq (ipc:// transport) and Node's own
// child_process IPC channel (advanced serialization, which sends a Buffer as
// bytes), each in its natural style: `await` every send. (zeromq's send
// must be awaited: it takes one send at a time. child_process's send need
// not be, but a loop that does not wait for its callback moved fewer 1 KiB
// messages per second here than one that does: 49-54 k/s against 77-102,
// chrt -f 50, 2026-12-06; so awaiting is its faster style too.) One run each:
//   throughput: this process sends COUNT messages of 64 B, then of 1 KiB, to
//     a child that counts them; the rate is the child's, first to last message;
//   latency: 64 B ping-pong with a child that echoes, one-way = round trip / 2,
//     p50 and p99 over ROUNDS rounds after WARMUP.
// Prints a markdown table. Usage: node bench.js [--count N] [--rounds N]

const { spawn, fork } = require('node:child_process');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const readline = require('node:readline');
const busbar = require('..');
const zmq = require('zeromq');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const COUNT = arg('count', 100000);
const ROUNDS = arg('rounds', 20000);
const WARMUP = 2000;
const PEER = path.join(__dirname, 'peer.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-bench-'));
let serial = 0;

function lines(child) {
  const rl = readline.createInterface({ input: child.stdout });
  const queue = [];
  const waiting = [];
  rl.on('line', (l) => (waiting.length ? waiting.shift()(l) : queue.push(l)));
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
}

function address(transport) {
  serial += 1;
  if (transport === 'busbar') return `bench.${process.pid}.${serial}`;
  if (transport === 'zeromq') return `ipc://${path.join(tmp, `z${serial}.sock`)}`;
  return '-';
}

function start(transport, role, addr, count) {
  const args = [PEER, transport, role, addr, String(count ?? 0)];
  const child = transport === 'child_process'
    ? fork(PEER, args.slice(1), { serialization: 'advanced', stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const next = lines(child);
  const exited = new Promise((r) => child.on('exit', r));
  return { child, next, exited };
}

async function sender(transport, addr, child) {
  if (transport === 'busbar') {
    const ep = await busbar.join({ bus: addr, label: 'ping', token: 'bench', timeoutMs: 10000 });
    return {
      send: (b) => ep.send('sink | pong', b, { ttlMs: 10000 }),
      recv: async () => (await ep.recv()).data,
      end: async () => {
        await ep.send('pong', 'END', { format: 9 }).catch(() => {});
        ep.close();
      },
    };
  }
  if (transport === 'zeromq') {
    return null; // made per measurement (push or request socket)
  }
  let resolveNext = null;
  child.on('message', (m) => resolveNext && resolveNext(m));
  return {
    send: (b) => new Promise((resolve, reject) => child.send(b, (e) => (e ? reject(e) : resolve()))),
    recv: () => new Promise((r) => { resolveNext = r; }),
    end: async () => {
      if (child.connected) child.send(Buffer.alloc(0));
    },
  };
}

async function throughput(transport, size) {
  const addr = address(transport);
  const peer = start(transport, 'sink', addr, COUNT);
  await peer.next(); // READY
  const payload = Buffer.alloc(size, 0x5a);
  if (transport === 'zeromq') {
    const sock = new zmq.Push();
    sock.connect(addr);
    for (let i = 0; i < COUNT; i++) await sock.send(payload);
    const r = JSON.parse(await peer.next());
    sock.close();
    await peer.exited;
    return r.rate;
  }
  const s = await sender(transport, addr, peer.child);
  for (let i = 0; i < COUNT; i++) await s.send(payload);
  const r = JSON.parse(await peer.next());
  await peer.exited;
  if (transport === 'busbar') await s.end();
  return r.rate;
}

async function latency(transport) {
  const addr = address(transport);
  const peer = start(transport, 'echo', addr);
  await peer.next();
  const payload = Buffer.alloc(64, 0x5a);
  let roundTrip;
  let end;
  if (transport === 'zeromq') {
    const sock = new zmq.Request();
    sock.connect(addr);
    roundTrip = async () => {
      await sock.send(payload);
      await sock.receive();
    };
    end = async () => {
      await sock.send(Buffer.alloc(0));
      sock.close();
    };
  } else {
    const s = await sender(transport, addr, peer.child);
    roundTrip = async () => {
      const answer = s.recv();
      await s.send(payload);
      await answer;
    };
    end = s.end;
  }
  const times = [];
  for (let i = 0; i < WARMUP + ROUNDS; i++) {
    const t0 = performance.now();
    await roundTrip();
    if (i >= WARMUP) times.push((performance.now() - t0) / 2);
  }
  await end();
  await peer.exited;
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))] * 1000;
  return { p50: at(0.5), p99: at(0.99) };
}

function rate(r) {
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)} M/s`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)} k/s`;
  return `${r.toFixed(0)} /s`;
}

function us(v) {
  return v >= 100 ? `${v.toFixed(0)}` : `${v.toFixed(1)}`;
}

(async () => {
  const transports = ['busbar', 'zeromq', 'child_process'];
  const results = {};
  for (const t of transports) {
    const r64 = await throughput(t, 64);
    const r1k = await throughput(t, 1024);
    const lat = await latency(t);
    results[t] = { r64, r1k, lat };
    console.error(`${t}: ${rate(r64)} at 64 B, ${rate(r1k)} at 1 KiB, one-way ${us(lat.p50)} / ${us(lat.p99)} us`);
  }
  const zmqVersion = require('zeromq/package.json').version;
  console.log(`Node ${process.version}, zeromq ${zmqVersion} (libzmq ${zmq.version}), ${os.cpus().length} cores; ${COUNT} messages per throughput run, ${ROUNDS} ping-pong rounds.\n`);
  console.log('| Node → Node | busbar | zeromq (ipc://) | child_process IPC |');
  console.log('|---|---|---|---|');
  const row = (name, f) => console.log(`| ${name} | ${transports.map((t) => f(results[t])).join(' | ')} |`);
  row('64 B', (r) => rate(r.r64));
  row('1 KiB', (r) => rate(r.r1k));
  row('64 B one-way latency p50 / p99', (r) => `${us(r.lat.p50)} / ${us(r.lat.p99)} µs`);
  const b = results.busbar;
  const z = results.zeromq;
  const c = results.child_process;
  console.log(`\nAt 1 KiB busbar moves ${(b.r1k / z.r1k).toFixed(1)}× zeromq's messages per second and ${(b.r1k / c.r1k).toFixed(1)}× child_process's; its 64 B p50 latency is ${(b.lat.p50 / z.lat.p50).toFixed(2)}× zeromq's and ${(b.lat.p50 / c.lat.p50).toFixed(2)}× child_process's.`);
  fs.rmSync(tmp, { recursive: true, force: true });
})();
