// The main flows through the Node package, as the Rust service tests run
// them (the patient's access log and disclosures too); errors are Error
// subclasses with codes.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, it } = require('node:test');
const sdk = require('..');
const { PASSWORD, backends, open, newUser, profile, allItems } = require('./helpers');

const ROOT = ['root@clinic.example', 'violet lantern orbit under quiet rain'];

describe('version and errors', () => {
  it('reports the library version and maps unknown codes', () => {
    assert.equal(sdk.version(), require('../package.json').version);
    const e = new sdk.NotFoundError('patient not found');
    assert.ok(e instanceof sdk.ClarityError && e instanceof Error);
    assert.equal(e.code, 'not_found');
    assert.equal(e.result, 3);
  });

  it('rejects a bad configuration with ConfigError', async () => {
    await assert.rejects(sdk.Clarity.open('store = 3'), sdk.ConfigError);
  });
});

for (const backend of backends()) {
  describe(`flows on ${backend.name}`, { skip: backend.skip }, () => {
    it('setup, login, refresh, logout', async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const code = await c.issueSetupCode();
        await assert.rejects(c.setup('wrong', ...ROOT), sdk.UnauthenticatedError);
        const admin = await c.setup(code, ...ROOT);
        assert.deepEqual(admin.roles, ['admin']);
        await assert.rejects(c.issueSetupCode(), sdk.AlreadyExistsError);
        const tokens = await c.login(...ROOT);
        assert.equal((await c.authenticate(tokens.access_token)).user_id, admin.id);
        await assert.rejects(c.login(ROOT[0], 'not the password at all, sorry'), sdk.UnauthenticatedError);
        const renewed = await c.refresh(tokens.refresh_token);
        // S-AUTH-4: reuse of a used refresh token ends the session.
        await assert.rejects(c.refresh(tokens.refresh_token), sdk.UnauthenticatedError);
        await assert.rejects(c.authenticate(renewed.access_token), sdk.UnauthenticatedError);
        const again = await c.login(...ROOT);
        await c.logout(again.access_token);
        await assert.rejects(c.authenticate(again.access_token), sdk.UnauthenticatedError);
      } finally {
        await close();
      }
      await assert.rejects(c.check(), (e) => e.code === 'closed');
    });

    it('users, patients, records, care team, break-glass', async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const admin = await newUser(c, 'admin');
        const doctor = await newUser(c, 'clinician');
        const nurse = await newUser(c, 'nurse');
        const users = await allItems((cursor) => c.listUsers(admin.token, { limit: 1, cursor }));
        assert.ok(users.some((u) => u.id === nurse.id));
        await assert.rejects(c.listUsers(doctor.token), sdk.PermissionDeniedError);

        const patient = await c.createPatient(doctor.token, profile());
        assert.equal((await c.getPatient(doctor.token, patient.id)).mrn, patient.mrn);
        const updated = await c.updatePatient(doctor.token, patient.id, 1, profile({ mrn: patient.mrn }));
        assert.equal(updated.version, 2);
        // S-INT-2: a stale version is refused.
        await assert.rejects(c.updatePatient(doctor.token, patient.id, 1, profile({ mrn: patient.mrn })), sdk.ConflictError);
        const found = await c.searchPatients(doctor.token, { mrn: patient.mrn });
        assert.deepEqual(found.items.map((p) => p.id), [patient.id]);

        const record = await c.createRecord(doctor.token, patient.id, 'note', { text: 'seen today' });
        assert.deepEqual((await c.getRecord(doctor.token, record.id)).data, { text: 'seen today' });
        const changed = await c.updateRecord(doctor.token, record.id, 1, { text: 'seen twice' });
        assert.equal(changed.version, 2);
        assert.deepEqual((await c.listRecords(doctor.token, patient.id)).items.map((r) => r.id), [record.id]);
        await c.deleteRecord(doctor.token, record.id);
        await assert.rejects(c.getRecord(doctor.token, record.id), sdk.NotFoundError);

        // S-AC-3: off the care team, the patient does not exist.
        await assert.rejects(c.getPatient(nurse.token, patient.id), sdk.NotFoundError);
        await c.addCareTeamMember(admin.token, patient.id, nurse.id, { relationship: 'nurse' });
        assert.equal((await c.getPatient(nurse.token, patient.id)).id, patient.id);
        await assert.rejects(c.createRecord(nurse.token, patient.id, 'prescription', { drug: 'x' }), sdk.PermissionDeniedError);
        await c.removeCareTeamMember(admin.token, patient.id, nurse.id);
        await assert.rejects(c.getPatient(nurse.token, patient.id), sdk.NotFoundError);

        const er = await newUser(c, 'clinician');
        await assert.rejects(c.breakGlass(er.token, patient.id, 'short'), sdk.InvalidInputError);
        const grant = await c.breakGlass(er.token, patient.id, 'unconscious in the emergency room');
        assert.equal((await c.getPatient(er.token, patient.id)).id, patient.id);
        const pending = await c.listGrants(admin.token, { unreviewedOnly: true });
        assert.deepEqual(pending.items.map((g) => g.grant_id), [grant.grant_id]);
        await c.reviewGrant(admin.token, grant.grant_id);
        assert.deepEqual((await c.listGrants(admin.token, { unreviewedOnly: true })).items, []);

        const researcher = await newUser(c, 'researcher');
        const view = (await c.researchPatients(researcher.token)).items;
        assert.ok(view.length > 0 && !('given_name' in view[0]));

        await assert.rejects(c.getPatient(doctor.token, 'not-a-uuid'), sdk.InvalidInputError);
        await assert.rejects(c.getPatient(doctor.token, crypto.randomUUID()), sdk.NotFoundError);
        await assert.rejects(c.getPatient('v4.local.forged', patient.id), sdk.UnauthenticatedError);
        await c.erasePatient(admin.token, patient.id);
        await assert.rejects(c.getPatient(doctor.token, patient.id), sdk.NotFoundError);
      } finally {
        await close();
      }
    });

    it('audit trail and keys', async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const doctor = await newUser(c, 'clinician');
        const patient = await c.createPatient(doctor.token, profile());
        await c.getPatient(doctor.token, patient.id);
        const auditor = await newUser(c, 'auditor');
        const events = await allItems((cursor) =>
          c.auditEvents(auditor.token, { patient_id: patient.id }, { limit: 100, cursor }));
        const kinds = events.map((e) => e.subtype);
        assert.ok(kinds.includes('patient.create') && kinds.includes('patient.read'));
        assert.ok(!JSON.stringify(events).includes(patient.family_name), 'S-AUD-4: no PHI in events');
        assert.equal((await c.verifyAudit(auditor.token)).ok, true);
        const ndjson = await c.exportAuditFhir(auditor.token, { patient_id: patient.id });
        assert.ok(ndjson.trim().split('\n').every((l) => JSON.parse(l).resourceType === 'AuditEvent'));
        await assert.rejects(c.verifyAudit(doctor.token), sdk.PermissionDeniedError);

        const admin = await newUser(c, 'admin');
        await assert.rejects(c.purgeAudit(admin.token, '2999-01-01T00:00:00Z'), sdk.InvalidInputError);
        assert.equal(await c.purgeAudit(admin.token, new Date('2000-01-01T00:00:00Z')), 0);
        const status = await c.keyStatus(admin.token);
        const rotated = await c.rotateKeys(admin.token);
        assert.ok(rotated.kek_version > status.current_kek_version);
        assert.equal((await c.getPatient(doctor.token, patient.id)).id, patient.id);

        const email = `pw-${crypto.randomUUID()}@test.example`;
        await c.createUserAsOperator({ email, password: PASSWORD, roles: ['nurse'] });
        const token = (await c.login(email, PASSWORD)).access_token;
        const enrollment = await c.mfaEnroll(token);
        assert.ok(enrollment.otpauth_url.startsWith('otpauth://'));
        await assert.rejects(c.mfaConfirm(token, '000000'), sdk.UnauthenticatedError);
        await c.changePassword(token, PASSWORD, 'a different passphrase, just as long');
        await assert.rejects(c.authenticate(token), sdk.UnauthenticatedError);

        // An admin's reset: a one-time code that only sets a new password;
        // then the removal of a second factor.
        const user = await c.login(email, 'a different passphrase, just as long');
        await assert.rejects(c.resetPassword(doctor.token, user.user.id), sdk.PermissionDeniedError);
        const reset = await c.resetPassword(admin.token, user.user.id);
        assert.equal(reset.user_id, user.user.id);
        await assert.rejects(c.authenticate(user.access_token), sdk.UnauthenticatedError);
        await assert.rejects(c.login(email, reset.reset_code), sdk.InvalidInputError);
        await assert.rejects(c.completePasswordReset(email, '0000-0000', 'chosen after the reset'),
          sdk.UnauthenticatedError);
        await c.completePasswordReset(email, reset.reset_code, 'chosen after the reset');
        await assert.rejects(c.completePasswordReset(email, reset.reset_code, 'chosen once more'),
          sdk.UnauthenticatedError);
        const again = (await c.login(email, 'chosen after the reset')).access_token;
        await c.mfaEnroll(again);
        assert.equal((await c.resetMfa(admin.token, user.user.id)).mfa_enabled, false);
        await assert.rejects(c.authenticate(again), sdk.UnauthenticatedError);
      } finally {
        await close();
      }
    });

    // S-AUD-9: a patient sees who accessed its record; disclosures to outside
    // recipients are recorded by the care team and accounted for to the patient.
    it("the patient's access log and disclosures", async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const person = async (role, name, patientId) => {
          const email = `${role}-${crypto.randomUUID()}@test.example`;
          const user = { email, password: PASSWORD, roles: [role], display_name: name };
          if (patientId) user.patient_id = patientId;
          const created = await c.createUserAsOperator(user);
          return { id: created.id, token: (await c.login(email, PASSWORD)).access_token };
        };
        const doctor = await person('clinician', 'Dr Meredith Grey');
        const patient = await c.createPatient(doctor.token, profile());
        const other = await c.createPatient(doctor.token, profile());
        const record = await c.createRecord(doctor.token, patient.id, 'note', { text: 'seen in clinic' });
        const ada = await person('patient', 'Ada', patient.id);
        const auditor = await person('auditor', 'Privacy Office');
        const outsider = await person('clinician', 'Dr Nobody');
        await c.getRecord(doctor.token, record.id);

        // The patient lists who accessed its own record, with names and roles.
        const log = await allItems((cursor) => c.patientAccessLog(ada.token, patient.id, { limit: 2, cursor }));
        const read = log.find((e) => e.action === 'record.read' && e.accessor_id === doctor.id);
        assert.ok(read, "the clinician's read is listed");
        assert.equal(read.accessor_name, 'Dr Meredith Grey');
        assert.deepEqual(read.accessor_roles, ['clinician']);
        assert.equal(read.entity_id, record.id);
        assert.equal(read.action_code, 'R');
        assert.equal(read.purpose, 'TREAT');
        assert.equal(read.break_glass, false);
        assert.ok(log.some((e) => e.action === 'patient.create'));
        // A range narrows it; the auditor sees any patient's log.
        const old = new Date('2000-01-01T00:00:00Z');
        assert.deepEqual((await c.patientAccessLog(ada.token, patient.id, { to: old })).items, []);
        await assert.rejects(c.patientAccessLog(ada.token, patient.id, { from: old, to: old }), sdk.InvalidInputError);
        const audited = await c.patientAccessLog(auditor.token, patient.id, { from: old, limit: 100 });
        assert.ok(audited.items.some((e) => e.event_id === read.event_id));
        // The care team does not read the access log; others cannot tell the patient exists.
        await assert.rejects(c.patientAccessLog(doctor.token, patient.id), sdk.PermissionDeniedError);
        await assert.rejects(c.patientAccessLog(ada.token, other.id), sdk.NotFoundError);
        await assert.rejects(c.patientAccessLog(outsider.token, patient.id), sdk.NotFoundError);

        // The care team records disclosures (now, or backdated).
        const details = {
          recipient: 'County Health Department', recipient_address: '1 Public Health Way',
          purpose: 'notifiable disease report', description: 'laboratory result',
          legal_basis: 'state public health reporting statute',
        };
        const recent = await c.recordDisclosure(doctor.token, patient.id, details);
        assert.equal(recent.patient_id, patient.id);
        assert.equal(recent.recorded_by, doctor.id);
        assert.equal(recent.recipient, 'County Health Department');
        const monthAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
        const backdated = await c.recordDisclosure(doctor.token, patient.id,
          { ...details, recipient: 'State Registry', disclosed_at: monthAgo });
        await assert.rejects(c.recordDisclosure(ada.token, patient.id, details), sdk.PermissionDeniedError);
        await assert.rejects(c.recordDisclosure(outsider.token, patient.id, details), sdk.NotFoundError);
        await assert.rejects(c.recordDisclosure(doctor.token, patient.id, { ...details, legal_basis: ' ' }),
          sdk.InvalidInputError);

        const listed = await allItems((cursor) => c.listDisclosures(ada.token, patient.id, { limit: 1, cursor }));
        assert.deepEqual(listed.map((d) => d.id), [recent.id, backdated.id]);
        await assert.rejects(c.listDisclosures(outsider.token, patient.id), sdk.NotFoundError);

        // The accounting, as the patient: oldest first, as JSON and as text.
        const accounting = await c.disclosureAccounting(ada.token, patient.id);
        assert.equal(accounting.patient_id, patient.id);
        assert.deepEqual(accounting.disclosures.map((d) => d.id), [backdated.id, recent.id]);
        assert.equal(accounting.disclosures[1].legal_basis, details.legal_basis);
        const text = await c.disclosureAccounting(ada.token, patient.id, { format: 'text' });
        assert.ok(text.startsWith('ACCOUNTING OF DISCLOSURES'));
        assert.ok(text.includes('County Health Department') && text.includes('State Registry'));
        const since = new Date(Date.now() - 24 * 3600 * 1000);
        const narrower = await c.disclosureAccounting(auditor.token, patient.id, { from: since });
        assert.deepEqual(narrower.disclosures.map((d) => d.id), [recent.id]);
        const sevenYears = new Date(Date.now() - 7 * 365 * 24 * 3600 * 1000);
        await assert.rejects(c.disclosureAccounting(ada.token, patient.id, { from: sevenYears }), sdk.InvalidInputError);
        await assert.rejects(c.disclosureAccounting(ada.token, patient.id, { format: 'xml' }), sdk.InvalidInputError);
        await assert.rejects(c.disclosureAccounting(outsider.token, patient.id), (e) =>
          e instanceof sdk.NotFoundError && !e.message.includes('County') && !e.message.includes(patient.family_name));
      } finally {
        await close();
      }
    });

    // S-ID-2
    it('service accounts and the client-credentials grant', async () => {
      const { clarity: c, close } = await open(backend.name);
      try {
        const admin = await newUser(c, 'admin');
        const name = `job-${crypto.randomUUID().slice(0, 12)}`;
        const created = await c.createServiceAccount(admin.token, { name, roles: ['auditor'] });
        assert.equal(created.account.service_account, true);
        const token = await c.clientCredentials(created.client_id, created.client_secret);
        assert.equal(token.token_type, 'Bearer');
        const me = await c.authenticate(token.access_token);
        assert.equal(me.user_id, created.client_id);
        assert.deepEqual(me.roles, ['auditor']);
        await assert.rejects(c.clientCredentials(created.client_id, `${created.client_secret}x`),
          sdk.UnauthenticatedError);
        await assert.rejects(c.createServiceAccount(admin.token, { name: `${name}-x`, roles: ['admin', 'nurse'] }),
          sdk.InvalidInputError);
        const rotated = await c.rotateServiceSecret(admin.token, created.client_id, { overlapSecs: 0 });
        await assert.rejects(c.clientCredentials(created.client_id, created.client_secret),
          sdk.UnauthenticatedError);
        const again = await c.clientCredentials(created.client_id, rotated.client_secret);
        await c.deleteServiceAccount(admin.token, created.client_id);
        await assert.rejects(c.authenticate(again.access_token), sdk.UnauthenticatedError);
      } finally {
        await close();
      }
    });
  });
}
