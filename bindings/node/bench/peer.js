'use strict';
// The other process of each measurement (bench.js starts it):
//   node peer.js <transport> sink <address> <count>   counts <count> messages, prints the rate
//   node peer.js <transport> echo <address>           sends every message back
// transport: busbar | zeromq | child_process (address: bus name / ipc:// path / unused).

const busbar = require('..');

const [transport, role, address, countArg] = process.argv.slice(2);
const count = Number(countArg);

function report(first, last, n) {
  const seconds = (last - first) / 1000;
  console.log(JSON.stringify({ messages: n, seconds, rate: (n - 1) / seconds }));
}

async function viaBusbar() {
  const ep = await busbar.join({ bus: address, label: role === 'echo' ? 'pong' : 'sink', token: 'bench', timeoutMs: 10000 });
  console.log('READY');
  if (role === 'sink') {
    let first = 0;
    let n = 0;
    for await (const m of ep) {
      n += 1;
      if (n === 1) first = performance.now();
      if (n === count) break;
      void m;
    }
    report(first, performance.now(), count);
    ep.close();
  } else {
    for await (const m of ep) {
      if (m.format === 9) break;
      await ep.send('ping', m.data);
    }
    ep.close();
  }
}

async function viaZeromq() {
  const zmq = require('zeromq');
  if (role === 'sink') {
    const sock = new zmq.Pull();
    await sock.bind(address);
    console.log('READY');
    let first = 0;
    let n = 0;
    for await (const [msg] of sock) {
      n += 1;
      if (n === 1) first = performance.now();
      if (n === count) break;
      void msg;
    }
    report(first, performance.now(), count);
    sock.close();
  } else {
    const sock = new zmq.Reply();
    await sock.bind(address);
    console.log('READY');
    for await (const [msg] of sock) {
      if (msg.length === 0) break;
      await sock.send(msg);
    }
    sock.close();
  }
}

function viaChildProcess() {
  let n = 0;
  let first = 0;
  process.on('message', (msg) => {
    if (role === 'sink') {
      n += 1;
      if (n === 1) first = performance.now();
      if (n === count) {
        report(first, performance.now(), count);
        process.disconnect();
      }
    } else if (msg.length === 0) {
      process.disconnect();
    } else {
      process.send(msg);
    }
  });
  console.log('READY');
}

if (transport === 'busbar') viaBusbar();
else if (transport === 'zeromq') viaZeromq();
else viaChildProcess();
