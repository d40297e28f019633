// S-AC-1 S-AC-3: the authorisation matrix — every role × operation ×
// relationship — through the Node package and the C ABI, held to the very
// specification the Rust and HTTP tests use (exported by the library's test
// build), so no expected value is re-typed here.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, it } = require('node:test');
const sdk = require('..');
const crypto = require('node:crypto');
const { PASSWORD, backends, open, newUser, profile, inCi } = require('./helpers');

const NOTE = { text: 'seen today' };
const DISCLOSURE = { recipient: 'R', purpose: 'P', description: 'D', legal_basis: 'L' };

async function outcome(call) {
  try {
    await call();
    return 'Allowed';
  } catch (e) {
    if (e instanceof sdk.NotFoundError) return 'Hidden';
    if (e instanceof sdk.PermissionDeniedError) return 'Denied';
    if (e instanceof sdk.InvalidInputError) return 'Refused';
    throw e;
  }
}

async function listing(call, patient) {
  try {
    const page = await call();
    return page.items.some((p) => p.id === patient) ? 'Listed' : 'NotListed';
  } catch (e) {
    if (e instanceof sdk.PermissionDeniedError) return 'Denied';
    throw e;
  }
}

async function perform(c, caller, owner, op, cell) {
  const { token } = caller;
  const { patient: p, record: r, mrn } = cell;
  switch (op) {
    case 'CreatePatient': return outcome(() => c.createPatient(token, profile()));
    case 'ReadPatient': return outcome(() => c.getPatient(token, p));
    case 'ListPatients': return listing(() => c.listPatients(token, { limit: 1000 }), p);
    case 'LookupPatient': return listing(() => c.searchPatients(token, { mrn }), p);
    case 'UpdatePatient': {
      const current = await c.getPatient(owner.token, p);
      return outcome(() => c.updatePatient(token, p, current.version, profile({ mrn })));
    }
    case 'ReadRecord': return outcome(() => c.getRecord(token, r));
    case 'ListRecords': return outcome(() => c.listRecords(token, p));
    case 'CreateNote': return outcome(() => c.createRecord(token, p, 'note', NOTE));
    case 'CreatePrescription': return outcome(() => c.createRecord(token, p, 'prescription', NOTE));
    case 'UpdateRecord': {
      const { version } = await c.getRecord(owner.token, r);
      return outcome(() => c.updateRecord(token, r, version, NOTE));
    }
    case 'DeleteRecord': {
      const spare = await c.createRecord(owner.token, p, 'note', NOTE);
      return outcome(() => c.deleteRecord(token, spare.id));
    }
    case 'ManageCareTeam':
      return outcome(() => c.addCareTeamMember(token, p, owner.id, { relationship: 'attending' }));
    case 'ManageUsers': return outcome(() => c.listUsers(token, { limit: 1000 }));
    case 'ReviewGrants': return outcome(() => c.listGrants(token, { limit: 1000 }));
    case 'ResearchView': return outcome(() => c.researchPatients(token, { limit: 10 }));
    case 'BreakGlass': return outcome(() => c.breakGlass(token, p, 'matrix: emergency access check'));
    case 'ChangeOwnRoles': return outcome(() => c.updateUser(token, caller.id, { roles: ['auditor'] }));
    case 'AdminWithPhiRole': {
      const email = `mixed-${crypto.randomUUID()}@test.example`;
      return outcome(() => c.createUser(token, { email, password: PASSWORD, roles: ['admin', 'clinician'] }));
    }
    case 'ReadAccessLog': return outcome(() => c.patientAccessLog(token, p));
    case 'ListDisclosures': return outcome(() => c.listDisclosures(token, p));
    case 'RecordDisclosure': return outcome(() => c.recordDisclosure(token, p, DISCLOSURE));
    case 'ErasePatient': return outcome(() => c.erasePatient(token, p));
    default: throw new Error(`the specification names an operation this test does not know: ${op}`);
  }
}

async function runMatrix(c, spec) {
  const admin = await newUser(c, 'admin');
  const owner = await newUser(c, 'clinician');
  const callers = [];
  for (const role of spec.roles) callers.push({ role, ...(await newUser(c, role)) });
  const answers = new Map();
  for (const rel of spec.relationships) {
    const cells = [];
    for (const caller of callers) {
      const patient = await c.createPatient(owner.token, profile());
      const record = await c.createRecord(owner.token, patient.id, 'note', { text: 'x' });
      if (rel === 'Own' && caller.role === 'patient') {
        await c.updateUser(admin.token, caller.id, { patient_id: patient.id });
      } else if (rel === 'Assigned') {
        await c.addCareTeamMember(admin.token, patient.id, caller.id);
      } else if (rel === 'ExpiredAssignment') {
        // Assignments cannot be made in the past: one that ends in two seconds.
        await c.addCareTeamMember(admin.token, patient.id, caller.id, { expiresAt: new Date(Date.now() + 2000) });
      } else if (rel === 'BreakGlass' && caller.role === 'clinician') {
        await c.breakGlass(caller.token, patient.id, 'unconscious in the emergency room');
      }
      cells.push({ patient: patient.id, mrn: patient.mrn, record: record.id });
    }
    if (rel === 'ExpiredAssignment') await new Promise((done) => setTimeout(done, 2500));
    for (const [i, caller] of callers.entries()) {
      for (const op of spec.operations) {
        answers.set(`${caller.role} ${op} ${rel}`, await perform(c, caller, owner, op, cells[i]));
      }
    }
  }
  return answers;
}

for (const backend of backends()) {
  describe(`authorisation matrix on ${backend.name}`, { skip: backend.skip }, () => {
    // S-AC-1 S-AC-3
    it('matches the specification in every cell', async (t) => {
      const spec = sdk.matrixSpecification();
      if (spec === null) {
        const message = 'the library was built without the `testing` feature: no matrix specification';
        if (inCi()) throw new Error(message);
        t.skip(`SKIPPED: ${message}`);
        return;
      }
      const { clarity: c, close } = await open(backend.name);
      try {
        const answers = await runMatrix(c, spec);
        // scripts/test compares these with the C and Python answers: all identical.
        if (process.env.CLARITY_TEST_MATRIX_DIR) {
          const lines = [...answers].map(([cell, got]) => `${cell} ${got}`).sort();
          fs.writeFileSync(path.join(process.env.CLARITY_TEST_MATRIX_DIR, `node-${backend.name}.txt`), `${lines.join('\n')}\n`);
        }
        assert.equal(spec.cells.length, spec.roles.length * spec.operations.length * spec.relationships.length);
        assert.equal(answers.size, spec.cells.length, 'every cell of the specification was run');
        const mismatches = spec.cells
          .map((cell) => [cell, answers.get(`${cell.role} ${cell.operation} ${cell.relationship}`)])
          .filter(([cell, got]) => got !== cell.expected)
          .map(([cell, got]) => `${cell.role} ${cell.operation} with ${cell.relationship}: expected ${cell.expected}, got ${got}`);
        assert.deepEqual(mismatches, []);
      } finally {
        await close();
      }
    });
  });
}
