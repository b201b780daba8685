'use strict';
// What the tests share: the Rust programs they talk to (the `busbar`
// command and the `busbar-peer` test binary, built by scripts/test-node.sh),
// a fresh bus name per test, and waiting for a child's lines.

const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const root = path.resolve(__dirname, '..', '..', '..');
const binDir = process.env.BUSBAR_BIN_DIR || path.join(root, 'target', 'debug');

/** Path of a binary of the workspace. */
function bin(name) {
  return path.join(binDir, name);
}

let counter = 0;
/** A bus name no other test uses. */
function busName(what) {
  counter += 1;
  return `node-test.${what}.${process.pid}.${counter}.${Math.random().toString(16).slice(2, 8)}`;
}

/** How long a test waits for anything before it fails: a hang guard only. */
const HANG_MS = 30000;

/**
 * Starts a child; `lines` collects its stdout lines, `line(re)` waits for
 * one matching, `exited` resolves with its exit code.
 */
function start(file, args, opts = {}) {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const lines = [];
  const waiters = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.slice()) {
      if (w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal));
  });
  return {
    child,
    lines,
    exited,
    get stderr() {
      return stderr;
    },
    line(re, ms = HANG_MS) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no line ${re} from ${file} in ${ms} ms; lines: ${JSON.stringify(lines)}; stderr: ${stderr}`)), ms);
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** The `busbar` command with these arguments. */
function cli(args, opts) {
  return start(bin('busbar'), args, opts);
}

/** `busbar-peer <role> ...`. */
function peer(role, args, opts) {
  return start(bin('busbar-peer'), [role, ...args], opts);
}

/** Runs a child to its end: { code, lines, stderr }; fails after the hang guard. */
async function run(c, ms = HANG_MS) {
  let t;
  const guard = new Promise((_, reject) => {
    t = setTimeout(() => {
      c.kill();
      reject(new Error(`still running after ${ms} ms: lines ${JSON.stringify(c.lines)}; stderr: ${c.stderr}`));
    }, ms);
  });
  try {
    const code = await Promise.race([c.exited, guard]);
    // Let readline hand over the last lines.
    await new Promise((r) => setImmediate(r));
    return { code, lines: c.lines, stderr: c.stderr };
  } finally {
    clearTimeout(t);
  }
}

/** Waits until `ep`'s directory lists an endpoint with each label string. */
async function waitForLabels(ep, labels, ms = HANG_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const dir = ep.endpoints();
    if (labels.every((l) => dir.some((e) => e.label.includes(l)))) return dir;
    if (Date.now() > end) throw new Error(`the directory never listed ${labels}: ${JSON.stringify(dir)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs a Node script in a child process: { code, lines, stderr }. */
function node(script, args = [], opts) {
  return start(process.execPath, [script, ...args], opts);
}

module.exports = { bin, busName, start, cli, peer, run, node, waitForLabels, HANG_MS, root };
