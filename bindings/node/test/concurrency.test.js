// One handle, many concurrent promises: no crash, no lost writes. Each
// call runs on a worker thread; afterwards every record is listed exactly
// once and reads back with what was written.
'use strict';

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const { backends, open, newUser, profile, allItems } = require('./helpers');

const WRITES = 200;

for (const backend of backends()) {
  describe(`concurrency on ${backend.name}`, { skip: backend.skip }, () => {
    it(`${WRITES} concurrent writes and reads on one handle`, async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const doctor = await newUser(c, 'clinician');
        const patient = await c.createPatient(doctor.token, profile());
        let ticks = 0;
        const timer = setInterval(() => { ticks += 1; }, 1);
        const written = await Promise.all(
          Array.from({ length: WRITES }, async (_, i) => {
            const record = await c.createRecord(doctor.token, patient.id, 'note', { i });
            assert.deepEqual((await c.getRecord(doctor.token, record.id)).data, { i });
            return record;
          }),
        );
        clearInterval(timer);
        assert.ok(ticks > 0, 'the event loop kept running while the calls ran');
        const listed = await allItems((cursor) => c.listRecords(doctor.token, patient.id, { limit: 100, cursor }));
        assert.deepEqual(listed.map((r) => r.id).sort(), written.map((r) => r.id).sort());
        const byId = new Map(written.map((r) => [r.id, r.data]));
        for (const r of listed) assert.deepEqual(r.data, byId.get(r.id));
        const auditor = await newUser(c, 'auditor');
        assert.equal((await c.verifyAudit(auditor.token)).ok, true);
      } finally {
        await close();
      }
    });
  });
}
