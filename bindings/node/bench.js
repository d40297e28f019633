// Calls per second of a cached authenticated read through the Node package:
// getRecord with a valid access token (token check, session check, policy
// decision, decryption, durable audit event), on SQLite.
//
//   npm ci --ignore-scripts --prefix bindings/node && npm run build --prefix bindings/node
//                                      (the release library, into native/)
//   node bindings/node/bench.js [seconds=10] [concurrency=1] [getRecord|authenticate]
//
// `authenticate` measures the token check alone (no audit write), which
// isolates what the binding adds from the durable audit write every read pays.
//
// Compare with `cargo bench -p clarity-benches --bench service` and
// bindings/python/bench.py; figures in docs/BENCHMARKS.md.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Clarity } = require('.');

const PASSWORD = 'benchmarks deserve good passwords too';

async function main() {
  const seconds = Number(process.argv[2] || 10);
  const concurrency = Number(process.argv[3] || 1);
  const op = process.argv[4] || 'getRecord';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clarity-bench-'));
  const c = await Clarity.open({ data_dir: dir });
  try {
    await c.createUserAsOperator({ email: 'perf@example.org', password: PASSWORD, roles: ['clinician'] });
    const token = (await c.login('perf@example.org', PASSWORD)).access_token;
    const patient = await c.createPatient(token, {
      mrn: 'BENCH-1', given_name: 'Bench', family_name: 'Mark', birth_date: '1980-01-01', sex: 'other',
    });
    const record = await c.createRecord(token, patient.id, 'observation', { code: '8867-4', heart_rate: 72 });
    const call = op === 'authenticate' ? () => c.authenticate(token) : () => c.getRecord(token, record.id);
    for (let i = 0; i < 200; i++) await call(); // warm up

    let calls = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(Math.round(seconds * 1e9));
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (process.hrtime.bigint() < deadline) {
        await call();
        calls += 1;
      }
    }));
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(`node ${op} (cached token, sqlite, ${concurrency} in flight): ` +
      `${Math.round(calls / elapsed).toLocaleString('en')} calls/s (${calls} calls in ${elapsed.toFixed(1)} s, ` +
      `${(elapsed / calls * 1e6).toFixed(1)} µs per call)`);
  } finally {
    await c.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
