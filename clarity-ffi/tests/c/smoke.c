/*
 * C smoke client of the Clarity ABI: first-admin setup, login, create a
 * patient, read it back, verify the audit trail, the patient's access log
 * and disclosures; plus the ABI's rules (NULL checks, error codes and
 * messages, _free accepting NULL, version macros).
 * scripts/test builds it against the cdylib and runs it plainly and under
 * valgrind (no leaks, no errors).
 *
 *   smoke 'CONFIG'    (TOML text for clarity_client_open)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clarity.h"

static int failures = 0;

#define CHECK(cond, what)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);   \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* Reports and frees an error; returns whether the call succeeded. */
static int ok(clarity_result result, clarity_error **err, const char *what) {
    if (result == CLARITY_RESULT_OK) {
        return 1;
    }
    fprintf(stderr, "FAIL %s: %s (%s)\n", what, clarity_result_name(result),
            *err ? clarity_error_message(*err) : "no message");
    clarity_error_free(*err);
    *err = NULL;
    failures++;
    return 0;
}

/* A copy of the string value of "field" in flat JSON (ids and tokens hold no
 * escapes), or NULL. Free with free(). */
static char *field(const char *json, const char *name) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", name);
    const char *start = json ? strstr(json, pattern) : NULL;
    if (!start) {
        return NULL;
    }
    start += strlen(pattern);
    const char *end = strchr(start, '"');
    if (!end) {
        return NULL;
    }
    size_t len = (size_t)(end - start);
    char *copy = malloc(len + 1);
    memcpy(copy, start, len);
    copy[len] = '\0';
    return copy;
}

static char *login(clarity_client *client, const char *email, const char *password) {
    char request[256];
    snprintf(request, sizeof request, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    char *tokens = NULL;
    clarity_error *err = NULL;
    if (!ok(clarity_login(client, request, &tokens, &err), &err, "login")) {
        return NULL;
    }
    char *access = field(tokens, "access_token");
    clarity_string_free(tokens);
    return access;
}

static void abi_rules(void) {
    CHECK(strcmp(clarity_version(), CLARITY_VERSION) == 0, "header and library versions match");

    /* NULL where a pointer is required: a code and a message, never a crash. */
    clarity_client *client = NULL;
    clarity_error *err = NULL;
    CHECK(clarity_client_open(NULL, &client, &err) == CLARITY_RESULT_NULL_PARAMETER,
          "NULL config is refused");
    CHECK(client == NULL, "no handle is written on failure");
    CHECK(err != NULL && clarity_error_code(err) == CLARITY_RESULT_NULL_PARAMETER,
          "the error carries its code");
    CHECK(err != NULL && strstr(clarity_error_message(err), "config") != NULL,
          "the message names the argument");
    clarity_error_free(err);
    CHECK(clarity_client_open("", NULL, NULL) == CLARITY_RESULT_NULL_PARAMETER,
          "NULL out-parameter is refused, without an error out-parameter");
    CHECK(clarity_patient_get(NULL, "t", "p", NULL, NULL) == CLARITY_RESULT_NULL_PARAMETER,
          "NULL handle is refused");

    err = NULL;
    CHECK(clarity_client_open("store = 3", &client, &err) == CLARITY_RESULT_CONFIG,
          "a bad configuration is a config error");
    clarity_error_free(err);

    /* _free functions accept NULL. */
    clarity_string_free(NULL);
    clarity_error_free(NULL);
    clarity_client_close(NULL);

    CHECK(strcmp(clarity_result_name(CLARITY_RESULT_NOT_FOUND), "not_found") == 0,
          "result names are stable");
    CHECK(strcmp(clarity_result_name(12345), "unknown") == 0, "unknown codes have a name");
    CHECK(clarity_error_message(NULL) == NULL, "no message without an error");
}

static const char *ADMIN_PW = "violet lantern orbit under quiet rain";
static const char *DOCTOR_PW = "copper meadow whistle beyond seven hills";
static const char *PATIENT_PW = "amber harbour lantern drifting past nine reefs";

/* S-AUD-9: the patient sees who accessed its record; the clinician records a
 * disclosure, which the patient lists and finds in its accounting. */
static void patient_view(clarity_client *client, const char *admin_token, const char *token,
                         const char *patient_id) {
    char request[512];
    snprintf(request, sizeof request,
             "{\"email\":\"patient@clinic.example\",\"password\":\"%s\",\"roles\":[\"patient\"],"
             "\"display_name\":\"Ada\",\"patient_id\":\"%s\"}",
             PATIENT_PW, patient_id);
    char *user = NULL;
    clarity_error *err = NULL;
    if (!ok(clarity_user_create(client, admin_token, request, &user, &err), &err,
            "create patient user")) {
        return;
    }
    clarity_string_free(user);
    char *own = login(client, "patient@clinic.example", PATIENT_PW);
    if (!own) {
        return;
    }

    /* Who accessed the record: the clinician's read, with its roles. */
    char *page = NULL;
    err = NULL;
    if (ok(clarity_patient_access_log(client, own, patient_id, NULL, 0, NULL, &page, &err), &err,
           "access log")) {
        CHECK(strstr(page, "\"accessor_roles\":[\"clinician\"],\"action\":\"patient.read\"") != NULL,
              "the clinician's read is in the patient's access log");
        clarity_string_free(page);
    }
    page = NULL;
    err = NULL;
    if (ok(clarity_patient_access_log(client, own, patient_id, "{\"to\":\"2000-01-01T00:00:00Z\"}",
                                      10, NULL, &page, &err),
           &err, "access log in a range")) {
        CHECK(strstr(page, "\"items\":[]") != NULL, "a range narrows the access log");
        clarity_string_free(page);
    }
    page = NULL;
    CHECK(clarity_patient_access_log(client, admin_token, patient_id, NULL, 0, NULL, &page, NULL) ==
              CLARITY_RESULT_NOT_FOUND,
          "an admin cannot tell the patient exists");
    CHECK(clarity_patient_access_log(client, own, patient_id, "{\"when\":1}", 0, NULL, &page, NULL) ==
              CLARITY_RESULT_INVALID_INPUT,
          "an unknown range field is invalid input");
    CHECK(clarity_patient_access_log(client, own, patient_id, NULL, 0, NULL, NULL, NULL) ==
              CLARITY_RESULT_NULL_PARAMETER,
          "a NULL page_out is refused");
    CHECK(page == NULL, "no output on failure");

    /* The clinician records a disclosure; the patient may not. */
    const char *disclosure_json =
        "{\"recipient\":\"County Health Department\",\"purpose\":\"notifiable disease report\","
        "\"description\":\"laboratory result\",\"legal_basis\":\"state reporting statute\"}";
    char *disclosure = NULL;
    char *disclosure_id = NULL;
    err = NULL;
    if (ok(clarity_disclosure_record(client, token, patient_id, disclosure_json, &disclosure, &err),
           &err, "record disclosure")) {
        disclosure_id = field(disclosure, "id");
        CHECK(strstr(disclosure, "\"recipient\":\"County Health Department\"") != NULL,
              "the recorded disclosure reads back");
        clarity_string_free(disclosure);
    }
    disclosure = NULL;
    err = NULL;
    CHECK(clarity_disclosure_record(client, own, patient_id, disclosure_json, &disclosure, &err) ==
              CLARITY_RESULT_PERMISSION_DENIED,
          "a patient does not record disclosures");
    CHECK(disclosure == NULL, "no output on failure");
    CHECK(err != NULL && strstr(clarity_error_message(err), "County") == NULL,
          "the message holds no PHI");
    clarity_error_free(err);

    /* The patient lists it, and finds it in the accounting (JSON and text). */
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"id\":\"%s\"", disclosure_id ? disclosure_id : "-");
    page = NULL;
    err = NULL;
    if (ok(clarity_disclosure_list(client, own, patient_id, 0, NULL, &page, &err), &err,
           "list disclosures")) {
        CHECK(strstr(page, pattern) != NULL, "the patient lists the disclosure");
        clarity_string_free(page);
    }
    char *accounting = NULL;
    err = NULL;
    if (ok(clarity_disclosure_accounting(client, own, patient_id, NULL, NULL, &accounting, &err),
           &err, "accounting")) {
        CHECK(strstr(accounting, "\"disclosures\":[{") != NULL && strstr(accounting, pattern) != NULL,
              "the accounting lists the disclosure");
        clarity_string_free(accounting);
    }
    accounting = NULL;
    err = NULL;
    if (ok(clarity_disclosure_accounting(client, own, patient_id, NULL, "text", &accounting, &err),
           &err, "printable accounting")) {
        CHECK(strncmp(accounting, "ACCOUNTING OF DISCLOSURES", 25) == 0 &&
                  strstr(accounting, "County Health Department") != NULL,
              "the printable accounting lists the disclosure");
        clarity_string_free(accounting);
    }
    accounting = NULL;
    CHECK(clarity_disclosure_accounting(client, own, patient_id, "2000-01-01T00:00:00Z", NULL,
                                        &accounting, NULL) == CLARITY_RESULT_INVALID_INPUT,
          "an accounting reaches at most six years back");
    CHECK(clarity_disclosure_accounting(client, own, patient_id, NULL, "xml", &accounting, NULL) ==
              CLARITY_RESULT_INVALID_INPUT,
          "an unknown format is invalid input");
    CHECK(accounting == NULL, "no output on failure");

    free(disclosure_id);
    free(own);
}

static void flows(const char *config) {
    clarity_client *client = NULL;
    clarity_error *err = NULL;
    if (!ok(clarity_client_open(config, &client, &err), &err, "open")) {
        return;
    }
    CHECK(clarity_client_check(client, NULL) == CLARITY_RESULT_OK, "the store is ready");

    /* The first admin, from the one-time setup code. */
    char *code = NULL;
    err = NULL;
    if (ok(clarity_setup_code_issue(client, &code, &err), &err, "setup code")) {
        char request[512];
        snprintf(request, sizeof request,
                 "{\"setup_code\":\"%s\",\"email\":\"root@clinic.example\",\"password\":\"%s\"}",
                 code, ADMIN_PW);
        clarity_string_free(code);
        char *admin = NULL;
        err = NULL;
        ok(clarity_setup(client, request, &admin, &err), &err, "setup");
        clarity_string_free(admin);
    }
    char *admin_token = login(client, "root@clinic.example", ADMIN_PW);

    /* A clinician, created by the admin. */
    char request[512];
    snprintf(request, sizeof request,
             "{\"email\":\"ada@clinic.example\",\"password\":\"%s\",\"roles\":[\"clinician\"]}",
             DOCTOR_PW);
    char *user = NULL;
    err = NULL;
    ok(clarity_user_create(client, admin_token, request, &user, &err), &err, "create user");
    clarity_string_free(user);
    char *token = login(client, "ada@clinic.example", DOCTOR_PW);

    /* Create a patient and read it back. */
    const char *profile = "{\"mrn\":\"SMOKE-1\",\"given_name\":\"Ada\",\"family_name\":\"Smoke\","
                          "\"birth_date\":\"1990-05-17\",\"sex\":\"female\"}";
    char *patient = NULL;
    err = NULL;
    char *patient_id = NULL;
    if (ok(clarity_patient_create(client, token, profile, &patient, &err), &err, "create patient")) {
        patient_id = field(patient, "id");
        clarity_string_free(patient);
    }
    char *read = NULL;
    err = NULL;
    if (ok(clarity_patient_get(client, token, patient_id, &read, &err), &err, "read patient")) {
        CHECK(strstr(read, "\"mrn\":\"SMOKE-1\"") != NULL, "the patient reads back");
        clarity_string_free(read);
    }

    /* Errors: a code, a message without PHI, no output written. */
    read = NULL;
    err = NULL;
    CHECK(clarity_patient_get(client, token, "not-a-uuid", &read, &err) ==
              CLARITY_RESULT_INVALID_INPUT,
          "a malformed id is invalid input");
    CHECK(read == NULL, "no output on failure");
    clarity_error_free(err);
    err = NULL;
    CHECK(clarity_patient_get(client, admin_token, patient_id, &read, &err) ==
              CLARITY_RESULT_NOT_FOUND,
          "admins read no PHI: the patient is hidden");
    CHECK(err != NULL && strstr(clarity_error_message(err), "Smoke") == NULL,
          "the message holds no PHI");
    clarity_error_free(err);
    CHECK(clarity_patient_get(client, "v4.local.forged", patient_id, &read, NULL) ==
              CLARITY_RESULT_UNAUTHENTICATED,
          "a forged token is unauthenticated");

    /* The audit trail verifies. */
    char *report = NULL;
    err = NULL;
    if (ok(clarity_audit_verify(client, admin_token, &report, &err), &err, "audit verify")) {
        CHECK(strstr(report, "\"ok\":true") != NULL, "every audit chain verifies");
        clarity_string_free(report);
    }

    if (patient_id) {
        patient_view(client, admin_token, token, patient_id);
    }

    /* S-ID-2: a service account, and its token by the client-credentials grant. */
    char *secret_json = NULL;
    err = NULL;
    if (ok(clarity_service_account_create(client, admin_token,
                                          "{\"name\":\"smoke-job\",\"roles\":[\"auditor\"]}",
                                          &secret_json, &err),
           &err, "service account create")) {
        char *client_id = field(secret_json, "client_id");
        char *client_secret = field(secret_json, "client_secret");
        char *grant = NULL;
        err = NULL;
        if (ok(clarity_client_credentials(client, client_id, client_secret, &grant, &err), &err,
               "client credentials")) {
            char *machine = field(grant, "access_token");
            char *again = NULL;
            err = NULL;
            CHECK(machine != NULL && ok(clarity_audit_verify(client, machine, &again, &err), &err,
                                        "audit verify as the service account"),
                  "the service account's token works within its roles");
            clarity_string_free(again);
            CHECK(clarity_client_credentials(client, client_id, "ccs_wrong", &grant, NULL) ==
                      CLARITY_RESULT_UNAUTHENTICATED,
                  "a wrong client secret is unauthenticated");
            err = NULL;
            ok(clarity_service_account_delete(client, admin_token, client_id, &err), &err,
               "service account delete");
            CHECK(clarity_audit_verify(client, machine, &again, NULL) ==
                      CLARITY_RESULT_UNAUTHENTICATED,
                  "a deleted service account's token ends at once");
            free(machine);
            clarity_string_free(grant);
        }
        free(client_id);
        free(client_secret);
        clarity_string_free(secret_json);
    }

    free(patient_id);
    free(token);
    free(admin_token);
    clarity_client_close(client);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG_TOML\n", argv[0]);
        return 2;
    }
    abi_rules();
    flows(argv[1]);
    if (failures) {
        fprintf(stderr, "smoke: %d check(s) failed\n", failures);
        return 1;
    }
    printf("smoke: all checks passed\n");
    return 0;
}
