#!/usr/bin/env node
'use strict';
// `npm install`'s build step: compiles crates/busbar-node with cargo from
// this repository's workspace and copies the library to busbar.node.
// Nothing is downloaded but crates (cargo's own registry).
//
// BUSBAR_NODE_PROFILE=debug builds without optimisations (faster to build);
// CARGO_TARGET_DIR is honoured.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');
const profile = process.env.BUSBAR_NODE_PROFILE === 'debug' ? 'debug' : 'release';
const args = ['build', '--locked', '-p', 'busbar-node'];
if (profile === 'release') args.push('--release');

console.log(`busbar: cargo ${args.join(' ')} (in ${root})`);
const r = spawnSync('cargo', args, { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(`busbar: cannot run cargo: ${r.error.message} (a Rust toolchain is needed to build the native module)`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status ?? 1);

const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(root, process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const lib = path.join(targetDir, profile, 'libbusbar_node.so');
const out = path.join(__dirname, '..', 'busbar.node');
// Copy to a temporary name and rename: a process that has the old module
// loaded keeps its mapping, and a half-written file is never loaded.
fs.copyFileSync(lib, `${out}.tmp`);
fs.renameSync(`${out}.tmp`, out);
console.log(`busbar: ${path.relative(process.cwd(), out)} from ${lib}`);
