// Test helpers: a fresh Clarity per test on SQLite, and on PostgreSQL when
// CLARITY_TEST_POSTGRES_URL is set (a schema per test). Outside CI an unset
// variable skips loudly; in CI (CI=true) it fails.
'use strict';

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Clarity } = require('..');

const PASSWORD = 'a test passphrase nobody would guess';
const REPO = path.resolve(__dirname, '..', '..', '..');
const inCi = () => ['true', '1'].includes(process.env.CI);
const postgresUrl = () => (process.env.CLARITY_TEST_POSTGRES_URL || '').trim();

/** The backends to run on, each `{name, skip}` for node:test. */
function backends() {
  const pg = postgresUrl();
  if (!pg && inCi()) throw new Error('CLARITY_TEST_POSTGRES_URL is not set: CI runs every PostgreSQL test');
  return [
    { name: 'sqlite', skip: false },
    { name: 'postgres', skip: pg ? false : 'SKIPPED: PostgreSQL test not run: set CLARITY_TEST_POSTGRES_URL to run it' },
  ];
}

/** Opens a fresh instance on `backend`; `close()` closes it and cleans up. */
async function open(backend) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clarity-node-'));
  const config = { data_dir: dir };
  let schema = null;
  if (backend === 'postgres') {
    schema = `node_${crypto.randomUUID().replaceAll('-', '')}`;
    config.store = { backend: 'postgres', postgres_url: postgresUrl(), postgres_schema: schema };
  }
  const clarity = await Clarity.open(config);
  const close = async () => {
    await clarity.close();
    fs.rmSync(dir, { recursive: true, force: true });
    if (schema) {
      try {
        execFileSync('psql', [postgresUrl(), '-qAtc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: 'ignore' });
      } catch { /* the run's database is dropped at the end anyway */ }
    }
  };
  return { clarity, close };
}

/** A user holding `role` (operator path), logged in: {id, token}. */
async function newUser(c, role) {
  const email = `${role}-${crypto.randomUUID()}@test.example`;
  const user = await c.createUserAsOperator({ email, password: PASSWORD, roles: [role] });
  const tokens = await c.login(email, PASSWORD);
  return { id: user.id, token: tokens.access_token };
}

function profile(extra = {}) {
  return {
    mrn: `JS-${crypto.randomUUID()}`, given_name: 'Ada', family_name: 'Node',
    birth_date: '1990-05-17', sex: 'female', ...extra,
  };
}

/** Every item of a paged list. */
async function allItems(fetch) {
  const items = [];
  let cursor = null;
  do {
    const page = await fetch(cursor);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

module.exports = { PASSWORD, REPO, backends, open, newUser, profile, allItems, inCi };
