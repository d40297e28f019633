// Builds the native library into native/ (`npm run build` in this directory;
// not a lifecycle script, so installing the package never runs it and npm
// has no script of it to allow). Runs
// `cargo build --release -p clarity-ffi` in the repository this directory
// belongs to, with cargo's progress shown, and copies libclarity in.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const NAMES = { darwin: 'libclarity.dylib', win32: 'clarity.dll' };
const name = NAMES[process.platform] || 'libclarity.so';
const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..', '..');
const manifest = path.join(root, 'clarity-ffi', 'Cargo.toml');

if (!fs.existsSync(manifest)) {
  console.error(`@clarity/sdk: ${manifest} is missing: build the package from a checkout ` +
    'of the Clarity repository (bindings/node)');
  process.exit(1);
}
execFileSync('cargo', ['build', '--release', '--locked', '--manifest-path', manifest],
  { cwd: root, stdio: 'inherit' });
const metadata = JSON.parse(execFileSync('cargo',
  ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest],
  { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }));
const destination = path.join(here, 'native');
fs.mkdirSync(destination, { recursive: true });
fs.copyFileSync(path.join(metadata.target_directory, 'release', name), path.join(destination, name));
console.error(`@clarity/sdk: ${path.join('native', name)} built`);
