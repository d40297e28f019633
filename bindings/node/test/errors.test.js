// Errors name this package's arguments, never the C ABI's parameters
// (issue 26, item 4): camelCase names, the argument a caller passed as an
// object, the argument names of documents the method builds itself, and no
// message saying `*_json`.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { it } = require('node:test');
const sdk = require('..');
const { C_PARAMETER_NAMES } = require('../lib/errors');
const { PASSWORD, REPO, open, newUser, profile } = require('./helpers');

it('names every differing parameter of the header', () => {
  const header = fs.readFileSync(path.join(REPO, 'clarity-ffi', 'include', 'clarity.h'), 'utf8');
  const params = new Set([...header.matchAll(/(?:const char \*|int64_t |uint32_t |bool )(\w+)[,)]/g)].map((m) => m[1]));
  assert.ok(params.size > 20, 'the header parsed');
  const unnamed = [...params].filter((p) => (p.includes('_')) && !(p in C_PARAMETER_NAMES));
  assert.deepEqual(unnamed, []);
});

it('messages name the Node arguments', async () => {
  const { clarity: c, close } = await open('sqlite');
  try {
    const admin = (await newUser(c, 'admin')).token;
    const doctor = (await newUser(c, 'clinician')).token;
    const caught = [];
    const reject = async (promise, check) => {
      const error = await promise.then(() => assert.fail('expected a rejection'), (e) => e);
      assert.ok(error instanceof sdk.InvalidInputError, `${error}`);
      check(error.message);
      caught.push(error.message);
    };

    await reject(c.createUser(admin, { email: `x-${Date.now()}@test.example`, password: PASSWORD, roles: ['surgeon'] }),
      (m) => assert.match(m, /^user: `roles` is invalid: unknown role; roles are /));
    await reject(c.createPatient(doctor, profile({ sex: 7 })), (m) => assert.match(m, /^profile: `sex`/));
    const patient = await c.createPatient(doctor, profile());
    await reject(c.getPatient(doctor, 'not-a-uuid'), (m) => assert.equal(m, 'patientId must be a UUID'));
    await reject(c.updatePatient(doctor, patient.id, 0, profile()),
      (m) => assert.equal(m, 'expectedVersion must be at least 1'));
    await reject(c.completePasswordReset('nobody@test.example', 7, PASSWORD),
      (m) => assert.match(m, /^`resetCode`/));
    // Neither a C parameter, nor the kind the class already says, nor a
    // position in JSON text the caller never wrote.
    for (const message of caught) assert.doesNotMatch(message, /_json|_id\b|expected_version|reset_code|invalid input|\(line /);
  } finally {
    await close();
  }
});
