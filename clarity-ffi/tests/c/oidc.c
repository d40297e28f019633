/*
 * An OpenID Connect provider's access token through the C ABI (S-ID-1): a
 * host application passes on the token its caller already has, and Clarity
 * authenticates it, maps its roles, decides and audits. scripts/test runs it
 * against the loopback provider of tests/oidc with a client-credentials
 * token of the provider's `ehr-integration` client (roles: ehr-clinician).
 *
 *   oidc 'CONFIG' ISSUER TOKEN LOGOUT_TOKEN
 *
 * CONFIG: TOML with an [[auth.oidc]] entry; LOGOUT_TOKEN: a back-channel
 * logout token for TOKEN's subject, signed with the provider's key.
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

/* A copy of the string value of "field" in flat JSON, or NULL. Free with free(). */
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

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: oidc CONFIG ISSUER TOKEN LOGOUT_TOKEN\n");
        return 2;
    }
    const char *issuer = argv[2];
    const char *token = argv[3];
    clarity_client *client = NULL;
    clarity_error *err = NULL;
    if (!ok(clarity_client_open(argv[1], &client, &err), &err, "open")) {
        return 1;
    }

    /* The provider's token authenticates: the caller is provisioned with the
     * mapped role and named by issuer and subject. */
    char *principal = NULL;
    if (ok(clarity_authenticate(client, token, &principal, &err), &err, "authenticate")) {
        char *iss = field(principal, "issuer");
        char *sub = field(principal, "subject");
        CHECK(iss && strcmp(iss, issuer) == 0, "the principal names the issuer");
        CHECK(sub && strcmp(sub, "ehr-integration") == 0, "the principal names the subject");
        CHECK(strstr(principal, "\"roles\":[\"clinician\"]") != NULL, "the mapped role");
        free(iss);
        free(sub);
        clarity_string_free(principal);
    }

    /* It works within its roles: a clinician creates and reads a patient. */
    const char *profile =
        "{\"mrn\":\"C-OIDC-1\",\"given_name\":\"Ada\",\"family_name\":\"Byron\","
        "\"birth_date\":\"1915-12-10\",\"sex\":\"female\"}";
    char *patient = NULL;
    if (ok(clarity_patient_create(client, token, profile, &patient, &err), &err, "create patient")) {
        char *id = field(patient, "id");
        char *read = NULL;
        if (id && ok(clarity_patient_get(client, token, id, &read, &err), &err, "read patient")) {
            CHECK(strstr(read, "\"Ada\"") != NULL, "the patient reads back");
            clarity_string_free(read);
        }
        free(id);
        clarity_string_free(patient);
    }

    /* A token with a broken signature is refused as unauthenticated. */
    size_t len = strlen(token);
    char *forged = malloc(len + 1);
    memcpy(forged, token, len + 1);
    forged[len - 2] = forged[len - 2] == 'A' ? 'B' : 'A';
    principal = NULL;
    CHECK(clarity_authenticate(client, forged, &principal, &err) == CLARITY_RESULT_UNAUTHENTICATED,
          "a forged token is refused");
    CHECK(principal == NULL, "no principal for a forged token");
    clarity_error_free(err);
    err = NULL;

    /* A back-channel logout the host passes on: a forged one is refused and
     * changes nothing; the provider's ends the subject's tokens at once. */
    CHECK(clarity_oidc_backchannel_logout(client, forged, &err) == CLARITY_RESULT_INVALID_INPUT,
          "a forged logout token is refused");
    clarity_error_free(err);
    err = NULL;
    free(forged);
    principal = NULL;
    if (ok(clarity_authenticate(client, token, &principal, &err), &err, "still live")) {
        clarity_string_free(principal);
    }
    ok(clarity_oidc_backchannel_logout(client, argv[4], &err), &err, "back-channel logout");
    principal = NULL;
    CHECK(clarity_authenticate(client, token, &principal, &err) == CLARITY_RESULT_UNAUTHENTICATED,
          "the token no longer works after the logout");
    clarity_error_free(err);
    err = NULL;

    clarity_client_close(client);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("C OIDC: ok\n");
    return 0;
}
