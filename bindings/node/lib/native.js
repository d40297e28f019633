// The C ABI of libclarity, declared for koffi from the prototypes of
// clarity-ffi/include/clarity.h (test/header.test.js fails when one drifts).
// Only this module and index.js's call helper touch raw pointers.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const koffi = require('koffi');

// Koffi runs async calls on its own stacks, 128 KiB by default: too small
// for the library's calls (which poll the core's futures on the calling
// thread, above all in debug builds). Ask for 1 MiB; the setting is global
// and frozen once any library is loaded, so say so if it is too late.
const STACK = 1024 * 1024;
if (koffi.config().async_stack_size < STACK) {
  try {
    koffi.config({ ...koffi.config(), async_stack_size: STACK });
  } catch (e) {
    throw new Error('@clarity/sdk needs koffi async_stack_size >= 1 MiB; load @clarity/sdk ' +
      `before other koffi libraries, or set it yourself (${e.message})`);
  }
}

koffi.opaque('clarity_client');
koffi.opaque('clarity_error');
koffi.alias('clarity_result', 'uint32_t');

// `char **` results are declared `void **` so the pointer stays ours to free
// with clarity_string_free (which zeroizes it) after decoding.
const PROTOTYPES = [
  'const char *clarity_version(void)',
  'const char *clarity_result_name(uint32_t result)',
  'const char *clarity_error_message(const clarity_error *err)',
  'clarity_result clarity_error_code(const clarity_error *err)',
  'void clarity_error_free(clarity_error *err)',
  'void clarity_string_free(void *string)',
  'clarity_result clarity_client_open(const char *config, _Out_ clarity_client **client_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_client_check(const clarity_client *client, _Out_ clarity_error **err_out)',
  'void clarity_client_close(clarity_client *client)',
  'clarity_result clarity_setup_code_issue(const clarity_client *client, _Out_ void **code_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_setup(const clarity_client *client, const char *request_json, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_login(const clarity_client *client, const char *request_json, _Out_ void **tokens_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_refresh(const clarity_client *client, const char *refresh_token, _Out_ void **tokens_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_logout(const clarity_client *client, const char *token, _Out_ clarity_error **err_out)',
  'clarity_result clarity_oidc_backchannel_logout(const clarity_client *client, const char *logout_token, _Out_ clarity_error **err_out)',
  'clarity_result clarity_authenticate(const clarity_client *client, const char *token, _Out_ void **principal_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_mfa_enroll(const clarity_client *client, const char *token, _Out_ void **enrollment_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_mfa_confirm(const clarity_client *client, const char *token, const char *code, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_password_change(const clarity_client *client, const char *token, const char *request_json, _Out_ clarity_error **err_out)',
  'clarity_result clarity_password_reset(const clarity_client *client, const char *token, const char *user_id, _Out_ void **reset_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_password_reset_complete(const clarity_client *client, const char *request_json, _Out_ clarity_error **err_out)',
  'clarity_result clarity_mfa_reset(const clarity_client *client, const char *token, const char *user_id, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_user_create(const clarity_client *client, const char *token, const char *user_json, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_user_create_as_operator(const clarity_client *client, const char *user_json, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_user_get(const clarity_client *client, const char *token, const char *user_id, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_user_list(const clarity_client *client, const char *token, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_user_update(const clarity_client *client, const char *token, const char *user_id, const char *update_json, _Out_ void **user_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_service_account_create(const clarity_client *client, const char *token, const char *account_json, _Out_ void **secret_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_service_secret_rotate(const clarity_client *client, const char *token, const char *account_id, const char *rotation_json, _Out_ void **secret_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_service_account_delete(const clarity_client *client, const char *token, const char *account_id, _Out_ clarity_error **err_out)',
  'clarity_result clarity_client_credentials(const clarity_client *client, const char *client_id, const char *client_secret, _Out_ void **token_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_create(const clarity_client *client, const char *token, const char *profile_json, _Out_ void **patient_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_get(const clarity_client *client, const char *token, const char *patient_id, _Out_ void **patient_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_update(const clarity_client *client, const char *token, const char *patient_id, int64_t expected_version, const char *profile_json, _Out_ void **patient_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_erase(const clarity_client *client, const char *token, const char *patient_id, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_list(const clarity_client *client, const char *token, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_search(const clarity_client *client, const char *token, const char *search_json, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_research_patients(const clarity_client *client, const char *token, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_record_create(const clarity_client *client, const char *token, const char *patient_id, const char *kind, const char *data_json, _Out_ void **record_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_record_get(const clarity_client *client, const char *token, const char *record_id, _Out_ void **record_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_record_update(const clarity_client *client, const char *token, const char *record_id, int64_t expected_version, const char *data_json, _Out_ void **record_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_record_delete(const clarity_client *client, const char *token, const char *record_id, _Out_ clarity_error **err_out)',
  'clarity_result clarity_record_list(const clarity_client *client, const char *token, const char *patient_id, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_care_team_add(const clarity_client *client, const char *token, const char *patient_id, const char *assignment_json, _Out_ clarity_error **err_out)',
  'clarity_result clarity_care_team_remove(const clarity_client *client, const char *token, const char *patient_id, const char *user_id, _Out_ clarity_error **err_out)',
  'clarity_result clarity_break_glass(const clarity_client *client, const char *token, const char *request_json, _Out_ void **grant_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_grant_list(const clarity_client *client, const char *token, bool unreviewed_only, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_grant_review(const clarity_client *client, const char *token, const char *grant_id, _Out_ clarity_error **err_out)',
  'clarity_result clarity_audit_query(const clarity_client *client, const char *token, const char *filter_json, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_audit_verify(const clarity_client *client, const char *token, _Out_ void **report_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_audit_export(const clarity_client *client, const char *token, const char *filter_json, uint32_t limit, _Out_ void **ndjson_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_audit_purge(const clarity_client *client, const char *token, const char *before, _Out_ uint64_t *purged_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_patient_access_log(const clarity_client *client, const char *token, const char *patient_id, const char *range_json, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_disclosure_record(const clarity_client *client, const char *token, const char *patient_id, const char *disclosure_json, _Out_ void **disclosure_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_disclosure_list(const clarity_client *client, const char *token, const char *patient_id, uint32_t limit, const char *cursor, _Out_ void **page_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_disclosure_accounting(const clarity_client *client, const char *token, const char *patient_id, const char *from, const char *format, _Out_ void **accounting_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_keys_status(const clarity_client *client, const char *token, _Out_ void **status_out, _Out_ clarity_error **err_out)',
  'clarity_result clarity_keys_rotate(const clarity_client *client, const char *token, _Out_ void **report_out, _Out_ clarity_error **err_out)',
];

// Exported only by test builds of the library (cargo feature `testing`).
const TESTING_PROTOTYPES = [
  'clarity_result clarity_testing_matrix(_Out_ void **json_out, _Out_ clarity_error **err_out)',
];

// The library built into native/ by the package's build script, or another
// build named by CLARITY_LIBRARY (the test suite's, which exports the
// test-only functions).
const NAMES = { darwin: 'libclarity.dylib', win32: 'clarity.dll' };
const libraryPath = process.env.CLARITY_LIBRARY ||
  path.join(__dirname, '..', 'native', NAMES[process.platform] || 'libclarity.so');
if (!fs.existsSync(libraryPath)) {
  throw new Error(process.env.CLARITY_LIBRARY
    ? `CLARITY_LIBRARY names no file: ${libraryPath}`
    : `${libraryPath} is missing: build the package first with ` +
      `npm run build --prefix ${path.join(__dirname, '..')} (docs/bindings-node.md)`);
}
const lib = koffi.load(libraryPath);

const fns = {};
for (const prototype of PROTOTYPES) {
  const fn = lib.func(prototype);
  fns[fn.info.name] = fn;
}
for (const prototype of TESTING_PROTOTYPES) {
  try {
    const fn = lib.func(prototype);
    fns[fn.info.name] = fn;
  } catch {
    // Not a test build of the library.
  }
}

/** Copies a library-owned string out and frees (zeroizes) the original. */
function takeString(ptr) {
  if (!ptr) return '';
  try {
    return koffi.decode(ptr, 'char', -1);
  } finally {
    fns.clarity_string_free(ptr);
  }
}

module.exports = { fns, takeString, PROTOTYPES, TESTING_PROTOTYPES };
