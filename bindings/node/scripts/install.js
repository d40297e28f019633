// Puts the native library in native/: a prebuilt one named by
// LIBCLARITY_PATH (the test suite builds it once for C, Python and Node), or
// one built here with `cargo build --release -p clarity-ffi` in the
// repository this package sits in.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const NAMES = { darwin: 'libclarity.dylib', win32: 'clarity.dll' };
const name = NAMES[process.platform] || 'libclarity.so';
const here = path.resolve(__dirname, '..');

function workspaceRoot() {
  for (let dir = path.dirname(here); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'Cargo.toml');
    if (fs.existsSync(manifest) && fs.readFileSync(manifest, 'utf8').includes('[workspace]')) {
      return dir;
    }
  }
  throw new Error('the clarity repository was not found above bindings/node: ' +
    'install from a checkout, or set LIBCLARITY_PATH to a built libclarity');
}

function library() {
  if (process.env.LIBCLARITY_PATH) {
    if (!fs.statSync(process.env.LIBCLARITY_PATH, { throwIfNoEntry: false })?.isFile()) {
      throw new Error(`LIBCLARITY_PATH=${process.env.LIBCLARITY_PATH} is not a file`);
    }
    return process.env.LIBCLARITY_PATH;
  }
  const root = workspaceRoot();
  execFileSync('cargo', ['build', '--release', '--locked', '-p', 'clarity-ffi'], { cwd: root, stdio: 'inherit' });
  const target = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  return path.join(target, 'release', name);
}

const destination = path.join(here, 'native');
fs.mkdirSync(destination, { recursive: true });
fs.copyFileSync(library(), path.join(destination, name));
