'use strict';
// index.d.ts matches the real exports, and a TypeScript example using the
// whole API type-checks with `tsc --noEmit --strict`.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const busbar = require('..');
const { start, run } = require('./helpers');

const pkg = path.join(__dirname, '..');

test('index.d.ts declares exactly what index.js exports', () => {
  const dts = fs.readFileSync(path.join(pkg, 'index.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(busbar).sort());
});

test('the TypeScript example type-checks with tsc --noEmit --strict', async () => {
  const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await run(start(process.execPath, [tsc, '--noEmit', '--strict', '-p', path.join(__dirname, 'types')]), 120000);
  assert.equal(r.code, 0, r.lines.join('\n') + r.stderr);
});
