// An OpenID Connect provider's access token through the Node package
// (S-ID-1): the host passes on the token its caller already has; Clarity
// authenticates it, maps its roles, decides and audits. Runs against the
// loopback provider scripts/test starts (tests/oidc), whose `ehr-integration`
// client holds the provider role `ehr-clinician`.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');
const sdk = require('..');
const { PASSWORD, REPO, profile, inCi } = require('./helpers');

const issuer = (process.env.CLARITY_TEST_OIDC_ISSUER || '').trim();
if (!issuer && inCi()) throw new Error('CLARITY_TEST_OIDC_ISSUER is not set: CI runs every OIDC test');
const skip = issuer ? false : 'SKIPPED: OIDC test not run: scripts/test starts the provider';

/** A back-channel logout token signed with the provider's key, as the
 * provider would POST it to the host's logout endpoint. */
function logoutToken(subject) {
  const keys = process.env.CLARITY_TEST_OIDC_KEYS;
  assert.ok(keys, 'scripts/test exports CLARITY_TEST_OIDC_KEYS with the provider');
  const claims = {
    iss: issuer, aud: 'clarity-web', sub: subject, iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(), events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  };
  return execFileSync('node', [
    path.join(REPO, 'tests/oidc/mint.mjs'), '--keys', keys, '--claims', JSON.stringify(claims), '--typ', 'logout+jwt',
  ]).toString().trim();
}

function providerToken() {
  const out = execFileSync('node', [
    path.join(REPO, 'tests/oidc/browser.mjs'), 'client-credentials', '--issuer', issuer,
    '--client', 'ehr-integration', '--secret', 'integration-secret-0123456789abcdef0123456789ab',
  ]);
  return JSON.parse(out).access_token;
}

// S-ID-1
describe('OpenID Connect provider tokens', { skip }, () => {
  it('authenticate, act within the mapped role and are audited by issuer and subject', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clarity-node-oidc-'));
    const c = await sdk.Clarity.open({
      data_dir: dir,
      auth: { oidc: [{ issuer, audience: 'clarity', provision: true, role_map: { 'ehr-clinician': 'clinician' }, logout_client_id: 'clarity-web' }] },
    });
    try {
      const token = providerToken();
      const me = await c.authenticate(token);
      assert.deepEqual(me.identity, { issuer, subject: 'ehr-integration' });
      assert.deepEqual(me.roles, ['clinician']);

      const patient = await c.createPatient(token, profile());
      assert.equal((await c.getPatient(token, patient.id)).given_name, 'Ada');

      const email = `auditor-${patient.id}@test.example`;
      await c.createUserAsOperator({ email, password: PASSWORD, roles: ['auditor'] });
      const auditor = (await c.login(email, PASSWORD)).access_token;
      const events = (await c.auditEvents(auditor, { patient_id: patient.id })).items;
      const read = events.find((e) => e.subtype === 'patient.read');
      assert.ok(read, 'a read event');
      assert.equal(read.actor_issuer, issuer);
      assert.equal(read.actor_subject, 'ehr-integration');

      const forged = `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.at(-1)}`;
      await assert.rejects(c.authenticate(forged), sdk.UnauthenticatedError);

      // Disabling the user in Clarity ends access at once; enabling restores it.
      const adminEmail = `admin-${patient.id}@test.example`;
      await c.createUserAsOperator({ email: adminEmail, password: PASSWORD, roles: ['admin'] });
      const admin = (await c.login(adminEmail, PASSWORD)).access_token;
      await c.updateUser(admin, me.user_id, { disabled: true });
      await assert.rejects(c.authenticate(token), sdk.UnauthenticatedError);
      await c.updateUser(admin, me.user_id, { disabled: false });
      assert.equal((await c.authenticate(token)).user_id, me.user_id);

      // A back-channel logout passed on by the host ends the subject's
      // tokens at once; one that does not verify changes nothing.
      await assert.rejects(c.backchannelLogout(forged), sdk.InvalidInputError);
      assert.equal((await c.authenticate(token)).user_id, me.user_id);
      await c.backchannelLogout(logoutToken('ehr-integration'));
      await assert.rejects(c.authenticate(token), sdk.UnauthenticatedError);
    } finally {
      await c.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
