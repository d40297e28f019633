// @clarity/sdk: Clarity embedded in a Node process over the C ABI.
//
// Every operation returns a promise; the call runs on a worker thread
// (koffi's async calls), never on the event loop. One Clarity instance is
// safe to use from many concurrent promises.
'use strict';

const { fns, takeString } = require('./lib/native');
const errors = require('./lib/errors');

const { ClarityError, errorFor } = errors;

function takeError(result, errOut) {
  let message = '';
  const err = errOut[0];
  if (err) {
    message = fns.clarity_error_message(err) || '';
    fns.clarity_error_free(err);
  }
  return errorFor(result, message);
}

/** Runs a blocking ABI function on a worker thread; resolves with its result code. */
function callAsync(fn, args) {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

function json(value) {
  return JSON.stringify(value);
}

function time(value) {
  return value instanceof Date ? value.toISOString() : value;
}

function noNul(value, what) {
  if (typeof value === 'string' && value.includes('\0')) {
    throw new errors.InvalidInputError(`${what} must not contain NUL characters`);
  }
  return value;
}

/** The version of the loaded native library, e.g. "0.1.0". */
function version() {
  return fns.clarity_version();
}

/**
 * An open Clarity instance (store, keys, audit writer) in this process.
 * Open with `await Clarity.open(config)`; close with `await clarity.close()`,
 * which waits for pending calls, writes the audit trail out and frees it.
 */
class Clarity {
  #handle;
  #pending = new Set();

  constructor(handle) {
    this.#handle = handle;
  }

  /**
   * Opens Clarity with `config`: an object, TOML text or JSON text with the
   * settings of docs/configuration.md. Environment variables are not read.
   */
  static async open(config = '') {
    const text = typeof config === 'string' ? config : json(config);
    const out = [null];
    const errOut = [null];
    const result = await callAsync(fns.clarity_client_open, [noNul(text, 'config'), out, errOut]);
    if (result !== 0) throw takeError(result, errOut);
    return new Clarity(out[0]);
  }

  /** Whether close() was called. */
  get closed() {
    return this.#handle === null;
  }

  /** Waits for pending calls, flushes the audit trail and frees the instance. Idempotent. */
  async close() {
    const handle = this.#handle;
    this.#handle = null;
    await Promise.allSettled([...this.#pending]);
    if (handle) {
      await callAsync(fns.clarity_client_close, [handle]);
    }
  }

  /** Calls an operation whose last parameters are `out, err_out` (out omitted when `withOut` is false). */
  #run(name, args, withOut) {
    if (this.#handle === null) {
      return Promise.reject(new ClarityError('the Clarity client is closed', 'closed', -1));
    }
    let promise;
    try {
      args.forEach((a, i) => noNul(a, `argument ${i + 1}`));
      const out = [null];
      const errOut = [null];
      const full = withOut ? [this.#handle, ...args, out, errOut] : [this.#handle, ...args, errOut];
      promise = callAsync(fns[name], full).then((result) => {
        if (result !== 0) throw takeError(result, errOut);
        return withOut ? out[0] : undefined;
      });
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#track(promise);
  }

  /** Keeps `promise` in the set close() waits for until it settles. */
  #track(promise) {
    const tracked = promise.finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
    return tracked;
  }

  async #json(name, ...args) {
    return JSON.parse(takeString(await this.#run(name, args, true)));
  }

  async #string(name, ...args) {
    return takeString(await this.#run(name, args, true));
  }

  async #do(name, ...args) {
    await this.#run(name, args, false);
  }

  /** Readiness: rejects unless the database answers and the keys are served. */
  check() { return this.#do('clarity_client_check'); }

  // -- setup and sessions ------------------------------------------------------

  /** A one-time code for the first admin (only while no user exists). */
  issueSetupCode() { return this.#string('clarity_setup_code_issue'); }
  /** Creates the first admin with the setup code. */
  setup(setupCode, email, password) {
    return this.#json('clarity_setup', json({ setup_code: setupCode, email, password }));
  }
  /** Logs in: `{access_token, refresh_token, expires_in, token_type, user}`. */
  login(email, password, totp) {
    const request = { email, password };
    if (totp !== undefined) request.totp = totp;
    return this.#json('clarity_login', json(request));
  }
  /** Exchanges a refresh token (once) for new tokens. */
  refresh(refreshToken) { return this.#json('clarity_refresh', refreshToken); }
  /** Ends the token's session now. */
  logout(token) { return this.#do('clarity_logout', token); }
  /**
   * Who the token belongs to. The token is Clarity's own, or the access token
   * of an OpenID Connect provider configured under `[[auth.oidc]]`
   * (docs/authentication.md); every method taking a token accepts either.
   */
  authenticate(token) { return this.#json('clarity_authenticate', token); }
  /**
   * Ends sessions at an OpenID Connect provider's request: pass on the
   * `logout_token` the provider POSTed to your back-channel logout endpoint.
   * Rejects with InvalidInputError for a token that does not verify.
   */
  backchannelLogout(logoutToken) { return this.#do('clarity_oidc_backchannel_logout', logoutToken); }
  /** Starts TOTP enrolment: `{secret, otpauth_url}` (show once). */
  mfaEnroll(token) { return this.#json('clarity_mfa_enroll', token); }
  /** Confirms TOTP enrolment with a current code. */
  mfaConfirm(token, code) { return this.#json('clarity_mfa_confirm', token, code); }
  /** Changes the caller's password; every session of the user ends. */
  changePassword(token, currentPassword, newPassword) {
    return this.#do('clarity_password_change', token,
      json({ current_password: currentPassword, new_password: newPassword }));
  }
  /**
   * Resets a user's password (admins, not their own): the old one stops
   * working, the user's sessions end, and the one-time `reset_code` (valid
   * 24 hours) lets the user set a new one with completePasswordReset. The
   * code never logs in.
   */
  resetPassword(token, userId) { return this.#json('clarity_password_reset', token, userId); }
  /**
   * Sets a new password with an admin's reset code (no token needed);
   * checked and throttled like a login, and usable once.
   */
  completePasswordReset(email, resetCode, newPassword, totp) {
    const request = { email, reset_code: resetCode, new_password: newPassword };
    if (totp !== undefined) request.totp = totp;
    return this.#do('clarity_password_reset_complete', json(request));
  }
  /** Removes a user's second factor (admins, not their own); the user's sessions end. */
  resetMfa(token, userId) { return this.#json('clarity_mfa_reset', token, userId); }

  // -- users -------------------------------------------------------------------

  /** Creates a user (admins): `{email, password, roles, display_name?, patient_id?}`. */
  createUser(token, user) { return this.#json('clarity_user_create', token, json(user)); }
  /** Creates a user as the local operator (like `clarity user create`). */
  createUserAsOperator(user) { return this.#json('clarity_user_create_as_operator', json(user)); }
  /** Reads a user (admins: anyone; others: themselves). */
  getUser(token, userId) { return this.#json('clarity_user_get', token, userId); }
  /** One page of users (admins). */
  listUsers(token, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_user_list', token, limit, cursor);
  }
  /** Changes `roles`, `disabled`, `display_name` or `patient_id` (admins). */
  updateUser(token, userId, changes) {
    return this.#json('clarity_user_update', token, userId, json(changes));
  }

  // -- service accounts --------------------------------------------------------

  /** Creates a service account (admins): `{name, roles, display_name?}`; the secret is shown once. */
  createServiceAccount(token, account) {
    return this.#json('clarity_service_account_create', token, json(account));
  }
  /** A new client secret (admins); the previous one works for `overlapSecs` (default one day). */
  rotateServiceSecret(token, accountId, { overlapSecs = null } = {}) {
    const rotation = overlapSecs === null ? null : json({ overlap_secs: overlapSecs });
    return this.#json('clarity_service_secret_rotate', token, accountId, rotation);
  }
  /** Deletes a service account (admins): its secrets go, its sessions end. */
  deleteServiceAccount(token, accountId) {
    return this.#do('clarity_service_account_delete', token, accountId);
  }
  /** The client-credentials grant: a service account's access token. */
  clientCredentials(clientId, clientSecret) {
    return this.#json('clarity_client_credentials', clientId, clientSecret);
  }

  // -- patients ----------------------------------------------------------------

  /** Creates a patient (clinicians); the creator joins its care team. */
  createPatient(token, profile) { return this.#json('clarity_patient_create', token, json(profile)); }
  /** Reads a patient (NotFoundError also when the caller may not see it). */
  getPatient(token, patientId) { return this.#json('clarity_patient_get', token, patientId); }
  /** Replaces the profile if its version is `expectedVersion` (else ConflictError). */
  updatePatient(token, patientId, expectedVersion, profile) {
    return this.#json('clarity_patient_update', token, patientId, expectedVersion, json(profile));
  }
  /** Erases a patient by destroying its data key (admins). */
  erasePatient(token, patientId) { return this.#do('clarity_patient_erase', token, patientId); }
  /** One page of the patients the caller may read. */
  listPatients(token, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_patient_list', token, limit, cursor);
  }
  /** Patients the caller may read by `{mrn}`, `{email}` or `{family_name, birth_date}`. */
  searchPatients(token, search) { return this.#json('clarity_patient_search', token, json(search)); }
  /** De-identified patients (researchers). */
  researchPatients(token, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_research_patients', token, limit, cursor);
  }

  // -- records -----------------------------------------------------------------

  /** Creates a record of `kind` for a patient. */
  createRecord(token, patientId, kind, data) {
    return this.#json('clarity_record_create', token, patientId, kind, json(data));
  }
  /** Reads a record. */
  getRecord(token, recordId) { return this.#json('clarity_record_get', token, recordId); }
  /** Replaces a record's body if its version is `expectedVersion`. */
  updateRecord(token, recordId, expectedVersion, data) {
    return this.#json('clarity_record_update', token, recordId, expectedVersion, json(data));
  }
  /** Deletes a record. */
  deleteRecord(token, recordId) { return this.#do('clarity_record_delete', token, recordId); }
  /** One page of a patient's records. */
  listRecords(token, patientId, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_record_list', token, patientId, limit, cursor);
  }

  // -- care teams and break-glass ------------------------------------------------

  /** Assigns a user to a patient's care team (admins). */
  addCareTeamMember(token, patientId, userId, { relationship, expiresAt } = {}) {
    const assignment = { user_id: userId };
    if (relationship !== undefined) assignment.relationship = relationship;
    if (expiresAt !== undefined) assignment.expires_at = time(expiresAt);
    return this.#do('clarity_care_team_add', token, patientId, json(assignment));
  }
  /** Removes a user from a patient's care team (admins). */
  removeCareTeamMember(token, patientId, userId) {
    return this.#do('clarity_care_team_remove', token, patientId, userId);
  }
  /** Emergency access to a patient (clinicians): time-boxed, alerted, reviewed. */
  breakGlass(token, patientId, reason, totp) {
    const request = { patient_id: patientId, reason };
    if (totp !== undefined) request.totp = totp;
    return this.#json('clarity_break_glass', token, json(request));
  }
  /** Break-glass grants for review (admins). */
  listGrants(token, { unreviewedOnly = false, limit = 0, cursor = null } = {}) {
    return this.#json('clarity_grant_list', token, unreviewedOnly, limit, cursor);
  }
  /** Marks a break-glass grant reviewed (admins). */
  reviewGrant(token, grantId) { return this.#do('clarity_grant_review', token, grantId); }

  // -- audit and keys --------------------------------------------------------------

  /** Audit events matching `filter` ({patient_id, actor_id, action, outcome, from, to}). */
  auditEvents(token, filter = null, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_audit_query', token, filter && json(filter), limit, cursor);
  }
  /** Verifies every audit chain: `{ok, chains}`. */
  verifyAudit(token) { return this.#json('clarity_audit_verify', token); }
  /** Matching events as FHIR R4 AuditEvent NDJSON. */
  exportAuditFhir(token, filter = null, { limit = 0 } = {}) {
    return this.#string('clarity_audit_export', token, filter && json(filter), limit);
  }
  /** Deletes events older than `before` and the retention period (admins); resolves with the count. */
  purgeAudit(token, before) {
    if (this.#handle === null) {
      return Promise.reject(new ClarityError('the Clarity client is closed', 'closed', -1));
    }
    const purged = [0];
    const errOut = [null];
    const call = callAsync(fns.clarity_audit_purge, [this.#handle, token, time(before), purged, errOut])
      .then((result) => {
        if (result !== 0) throw takeError(result, errOut);
        return Number(purged[0]);
      });
    return this.#track(call);
  }
  /** KEK versions and the data keys each wraps (admins). */
  keyStatus(token) { return this.#json('clarity_keys_status', token); }
  /** Rotates the key-encryption key and re-wraps every data key (admins). */
  rotateKeys(token) { return this.#json('clarity_keys_rotate', token); }

  // -- the patient's view and disclosures (S-AUD-9) --------------------------------

  /**
   * Who accessed a patient's record, oldest first: one page of
   * `{event_id, at, accessor_id, accessor_name, accessor_roles, action,
   * action_code, purpose, break_glass, entity_id}`, optionally from `from`
   * and before `to`. The patient its own; auditors any.
   */
  patientAccessLog(token, patientId, { from = null, to = null, limit = 0, cursor = null } = {}) {
    const range = {};
    if (from !== null && from !== undefined) range.from = time(from);
    if (to !== null && to !== undefined) range.to = time(to);
    const rangeJson = Object.keys(range).length ? json(range) : null;
    return this.#json('clarity_patient_access_log', token, patientId, rangeJson, limit, cursor);
  }
  /**
   * Records a disclosure of the patient's information to an outside recipient:
   * `{recipient, recipient_address?, purpose, description, legal_basis, disclosed_at?}`
   * (the care team, clinicians under break-glass, auditors).
   */
  recordDisclosure(token, patientId, disclosure) {
    return this.#json('clarity_disclosure_record', token, patientId, json(disclosure));
  }
  /** One page of a patient's disclosures, in the order they were recorded (the patient, auditors, the care team). */
  listDisclosures(token, patientId, { limit = 0, cursor = null } = {}) {
    return this.#json('clarity_disclosure_list', token, patientId, limit, cursor);
  }
  /**
   * The accounting of a patient's disclosures from `from` (at most six years
   * back; six years when null) until now, oldest first: an object with
   * `format: 'json'`, printable text with `format: 'text'`.
   */
  disclosureAccounting(token, patientId, { from = null, format = 'json' } = {}) {
    const start = from === null || from === undefined ? null : time(from);
    if (format === 'text') {
      return this.#string('clarity_disclosure_accounting', token, patientId, start, format);
    }
    return this.#json('clarity_disclosure_accounting', token, patientId, start, format);
  }
}

/** The authorisation matrix specification, from test builds of the library only (else null). */
function matrixSpecification() {
  const fn = fns.clarity_testing_matrix;
  if (!fn) return null;
  const out = [null];
  const errOut = [null];
  const result = fn(out, errOut);
  if (result !== 0) throw takeError(result, errOut);
  return JSON.parse(takeString(out[0]));
}

module.exports = { Clarity, version, matrixSpecification, ...errors };
delete module.exports.errorFor;
