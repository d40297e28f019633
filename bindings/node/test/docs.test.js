// The example of docs/bindings-node.md runs as written, requiring the
// package by its name as an application would.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { it } = require('node:test');
const { REPO } = require('./helpers');

it('runs the documented example', () => {
  const doc = fs.readFileSync(path.join(REPO, 'docs', 'bindings-node.md'), 'utf8');
  const example = doc.match(/```js\n([\s\S]*?)```/);
  assert.ok(example, 'docs/bindings-node.md has a js example');
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'clarity-example-'));
  try {
    fs.mkdirSync(path.join(app, 'node_modules', '@clarity'), { recursive: true });
    fs.symlinkSync(path.resolve(__dirname, '..'), path.join(app, 'node_modules', '@clarity', 'sdk'));
    fs.writeFileSync(path.join(app, 'example.js'), example[1]);
    const out = execFileSync(process.execPath, ['example.js'], { cwd: app, encoding: 'utf8', timeout: 120000 });
    assert.match(out, /heart rate: 72/);
    assert.match(out, /admin: not_found/);
    assert.match(out, /audit ok: true/);
  } finally {
    fs.rmSync(app, { recursive: true, force: true });
  }
});
