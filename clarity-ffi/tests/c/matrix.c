/*
 * S-AC-1 S-AC-3: the authorisation matrix through the C ABI, in C. Every
 * role x operation x relationship of the specification exported by the
 * library's test build (clarity_testing_matrix, the same spec the Rust and
 * HTTP tests use) is run and compared with it; the answers are also written
 * out, one "role operation relationship outcome" line per cell, so that
 * scripts/test can check C, Python and Node gave identical answers.
 *
 *   matrix 'CONFIG' ANSWERS_FILE     (build with -DCLARITY_TESTING)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clarity.h"

#define MAX 64
static clarity_client *c;
static char roles[MAX][32], ops[MAX][32], rels[MAX][32];
static int n_roles, n_ops, n_rels;
static const char *PASSWORD = "a test passphrase nobody would guess";

static void die(const char *what, clarity_result r, clarity_error *err) {
    fprintf(stderr, "matrix: %s failed: %s (%s)\n", what, clarity_result_name(r),
            err ? clarity_error_message(err) : "");
    exit(1);
}

/* Runs a call that must succeed; returns its output (caller frees with clarity_string_free). */
#define MUST(what, call)                                          \
    do {                                                          \
        clarity_error *err_ = NULL;                               \
        clarity_result r_ = (call);                               \
        if (r_ != CLARITY_RESULT_OK) die(what, r_, err_);         \
    } while (0)

/* A copy of the string value of "name" in json after `from`, or NULL. */
static char *field(const char *json, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *start = strstr(json, key);
    if (!start) return NULL;
    start += strlen(key);
    return strndup(start, (size_t)(strchr(start, '"') - start));
}

static long number(const char *json, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *at = strstr(json, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

/* Reads the JSON string array "name" into out; returns its length. */
static int array(const char *json, const char *name, char out[MAX][32]) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":[", name);
    const char *p = strstr(json, key) + strlen(key);
    int n = 0;
    while (*p == '"' && n < MAX) {
        const char *end = strchr(p + 1, '"');
        snprintf(out[n++], 32, "%.*s", (int)(end - p - 1), p + 1);
        p = end + 1;
        if (*p == ',') p++;
    }
    return n;
}

static char *uuid_v4(void) {
    static unsigned long counter;
    char *s = malloc(40);
    snprintf(s, 40, "%08lx%08lx%08lx", (unsigned long)time(NULL), (unsigned long)getpid(), ++counter);
    return s;
}

static void new_user(const char *role, char **id, char **token) {
    char *tag = uuid_v4(), body[512], *out = NULL;
    snprintf(body, sizeof body, "{\"email\":\"%s-%s@test.example\",\"password\":\"%s\",\"roles\":[\"%s\"]}",
             role, tag, PASSWORD, role);
    MUST("create user", clarity_user_create_as_operator(c, body, &out, &err_));
    *id = field(out, "id");
    clarity_string_free(out);
    snprintf(body, sizeof body, "{\"email\":\"%s-%s@test.example\",\"password\":\"%s\"}", role, tag, PASSWORD);
    MUST("login", clarity_login(c, body, &out, &err_));
    *token = field(out, "access_token");
    clarity_string_free(out);
    free(tag);
}

static char *profile(const char *mrn) {
    static char body[256];
    char *tag = uuid_v4();
    snprintf(body, sizeof body, "{\"mrn\":\"%s%s\",\"given_name\":\"Matrix\",\"family_name\":\"Cell\","
             "\"birth_date\":\"1970-01-01\",\"sex\":\"unknown\"}", mrn ? "" : "MX-C-", mrn ? mrn : tag);
    free(tag);
    return body;
}

/* The outcome of a call on a patient the caller may or may not see. */
static const char *outcome(clarity_result r, char **out) {
    if (out) clarity_string_free(*out);
    switch (r) {
    case CLARITY_RESULT_OK: return "Allowed";
    case CLARITY_RESULT_NOT_FOUND: return "Hidden";
    case CLARITY_RESULT_PERMISSION_DENIED: return "Denied";
    case CLARITY_RESULT_INVALID_INPUT: return "Refused";
    default: return clarity_result_name(r);
    }
}

static const char *listing(clarity_result r, char **out, const char *patient) {
    if (r == CLARITY_RESULT_PERMISSION_DENIED) return "Denied";
    if (r != CLARITY_RESULT_OK) return clarity_result_name(r);
    char key[64];
    snprintf(key, sizeof key, "\"id\":\"%s\"", patient);
    const char *answer = strstr(*out, key) ? "Listed" : "NotListed";
    clarity_string_free(*out);
    return answer;
}

/* The expected outcome of a cell, from the specification's "cells" objects
 * (whatever the order of their keys), or NULL. */
static char *expected(const char *spec, const char *role, const char *op, const char *rel) {
    const char *p = strstr(spec, "\"cells\":[");
    while (p && (p = strchr(p, '{'))) {
        const char *end = strchr(p, '}');
        char obj[256];
        snprintf(obj, sizeof obj, "%.*s", (int)(end - p + 1), p);
        char *a = field(obj, "role"), *b = field(obj, "operation"), *r = field(obj, "relationship");
        int hit = a && b && r && !strcmp(a, role) && !strcmp(b, op) && !strcmp(r, rel);
        free(a);
        free(b);
        free(r);
        if (hit) return field(obj, "expected");
        p = end;
    }
    return NULL;
}

struct cell { char *patient, *mrn, *record; };

static const char *perform(const char *t, const char *self_id, const char *owner, const char *owner_id,
                           const char *op, const struct cell *cell) {
    const char *p = cell->patient, *r = cell->record, *note = "{\"text\":\"seen today\"}";
    char *out = NULL, body[256];
    if (!strcmp(op, "CreatePatient")) return outcome(clarity_patient_create(c, t, profile(NULL), &out, NULL), &out);
    if (!strcmp(op, "ReadPatient")) return outcome(clarity_patient_get(c, t, p, &out, NULL), &out);
    if (!strcmp(op, "ListPatients")) return listing(clarity_patient_list(c, t, 1000, NULL, &out, NULL), &out, p);
    if (!strcmp(op, "LookupPatient")) {
        snprintf(body, sizeof body, "{\"mrn\":\"%s\"}", cell->mrn);
        return listing(clarity_patient_search(c, t, body, &out, NULL), &out, p);
    }
    if (!strcmp(op, "UpdatePatient")) {
        MUST("owner reads", clarity_patient_get(c, owner, p, &out, &err_));
        long version = number(out, "version");
        clarity_string_free(out);
        out = NULL;
        return outcome(clarity_patient_update(c, t, p, version, profile(cell->mrn), &out, NULL), &out);
    }
    if (!strcmp(op, "ReadRecord")) return outcome(clarity_record_get(c, t, r, &out, NULL), &out);
    if (!strcmp(op, "ListRecords")) return outcome(clarity_record_list(c, t, p, 0, NULL, &out, NULL), &out);
    if (!strcmp(op, "CreateNote")) return outcome(clarity_record_create(c, t, p, "note", note, &out, NULL), &out);
    if (!strcmp(op, "CreatePrescription"))
        return outcome(clarity_record_create(c, t, p, "prescription", note, &out, NULL), &out);
    if (!strcmp(op, "UpdateRecord")) {
        MUST("owner reads", clarity_record_get(c, owner, r, &out, &err_));
        long version = number(out, "version");
        clarity_string_free(out);
        out = NULL;
        return outcome(clarity_record_update(c, t, r, version, note, &out, NULL), &out);
    }
    if (!strcmp(op, "DeleteRecord")) {
        MUST("spare record", clarity_record_create(c, owner, p, "note", note, &out, &err_));
        char *spare = field(out, "id");
        clarity_string_free(out);
        const char *answer = outcome(clarity_record_delete(c, t, spare, NULL), NULL);
        free(spare);
        return answer;
    }
    if (!strcmp(op, "ManageCareTeam")) {
        snprintf(body, sizeof body, "{\"user_id\":\"%s\",\"relationship\":\"attending\"}", owner_id);
        return outcome(clarity_care_team_add(c, t, p, body, NULL), NULL);
    }
    if (!strcmp(op, "ManageUsers")) return outcome(clarity_user_list(c, t, 1000, NULL, &out, NULL), &out);
    if (!strcmp(op, "ReviewGrants")) return outcome(clarity_grant_list(c, t, false, 1000, NULL, &out, NULL), &out);
    if (!strcmp(op, "ResearchView")) return outcome(clarity_research_patients(c, t, 10, NULL, &out, NULL), &out);
    if (!strcmp(op, "BreakGlass")) {
        snprintf(body, sizeof body, "{\"patient_id\":\"%s\",\"reason\":\"matrix: emergency access check\"}", p);
        return outcome(clarity_break_glass(c, t, body, &out, NULL), &out);
    }
    if (!strcmp(op, "ChangeOwnRoles"))
        return outcome(clarity_user_update(c, t, self_id, "{\"roles\":[\"auditor\"]}", &out, NULL), &out);
    if (!strcmp(op, "AdminWithPhiRole")) {
        char *tag = uuid_v4();
        snprintf(body, sizeof body, "{\"email\":\"mixed-%s@test.example\",\"password\":\"%s\",\"roles\":[\"admin\",\"clinician\"]}",
                 tag, PASSWORD);
        free(tag);
        return outcome(clarity_user_create(c, t, body, &out, NULL), &out);
    }
    if (!strcmp(op, "ReadAccessLog"))
        return outcome(clarity_patient_access_log(c, t, p, NULL, 0, NULL, &out, NULL), &out);
    if (!strcmp(op, "ListDisclosures")) return outcome(clarity_disclosure_list(c, t, p, 0, NULL, &out, NULL), &out);
    if (!strcmp(op, "RecordDisclosure")) {
        const char *disclosure = "{\"recipient\":\"R\",\"purpose\":\"P\",\"description\":\"D\",\"legal_basis\":\"L\"}";
        return outcome(clarity_disclosure_record(c, t, p, disclosure, &out, NULL), &out);
    }
    if (!strcmp(op, "ErasePatient")) return outcome(clarity_patient_erase(c, t, p, NULL), NULL);
    fprintf(stderr, "matrix: the specification names an operation this test does not know: %s\n", op);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG ANSWERS_FILE\n", argv[0]);
        return 2;
    }
    char *spec = NULL;
    MUST("specification", clarity_testing_matrix(&spec, &err_));
    n_roles = array(spec, "roles", roles);
    n_ops = array(spec, "operations", ops);
    n_rels = array(spec, "relationships", rels);
    MUST("open", clarity_client_open(argv[1], &c, &err_));

    char *admin_id, *admin, *owner_id, *owner, *ids[MAX], *tokens[MAX];
    new_user("admin", &admin_id, &admin);
    new_user("clinician", &owner_id, &owner);
    for (int i = 0; i < n_roles; i++) new_user(roles[i], &ids[i], &tokens[i]);

    FILE *answers = fopen(argv[2], "w");
    int mismatches = 0, cells = 0;
    for (int k = 0; k < n_rels; k++) {
        const char *rel = rels[k];
        struct cell cell[MAX];
        for (int i = 0; i < n_roles; i++) {
            char *out = NULL, body[256];
            MUST("patient", clarity_patient_create(c, owner, profile(NULL), &out, &err_));
            cell[i].patient = field(out, "id");
            cell[i].mrn = field(out, "mrn");
            clarity_string_free(out);
            MUST("record", clarity_record_create(c, owner, cell[i].patient, "note", "{\"text\":\"x\"}", &out, &err_));
            cell[i].record = field(out, "id");
            clarity_string_free(out);
            if (!strcmp(rel, "Own") && !strcmp(roles[i], "patient")) {
                snprintf(body, sizeof body, "{\"patient_id\":\"%s\"}", cell[i].patient);
                MUST("link patient", clarity_user_update(c, admin, ids[i], body, &out, &err_));
                clarity_string_free(out);
            } else if (!strcmp(rel, "Assigned")) {
                snprintf(body, sizeof body, "{\"user_id\":\"%s\"}", ids[i]);
                MUST("assign", clarity_care_team_add(c, admin, cell[i].patient, body, &err_));
            } else if (!strcmp(rel, "ExpiredAssignment")) {
                /* Assignments cannot be made in the past: one that ends in two seconds. */
                char soon[32];
                time_t at = time(NULL) + 2;
                strftime(soon, sizeof soon, "%Y-%m-%dT%H:%M:%SZ", gmtime(&at));
                snprintf(body, sizeof body, "{\"user_id\":\"%s\",\"expires_at\":\"%s\"}", ids[i], soon);
                MUST("assign until soon", clarity_care_team_add(c, admin, cell[i].patient, body, &err_));
            } else if (!strcmp(rel, "BreakGlass") && !strcmp(roles[i], "clinician")) {
                snprintf(body, sizeof body, "{\"patient_id\":\"%s\",\"reason\":\"unconscious in the emergency room\"}",
                         cell[i].patient);
                MUST("break glass", clarity_break_glass(c, tokens[i], body, &out, &err_));
                clarity_string_free(out);
            }
        }
        if (!strcmp(rel, "ExpiredAssignment")) sleep(3);
        for (int i = 0; i < n_roles; i++) {
            for (int j = 0; j < n_ops; j++) {
                const char *got = perform(tokens[i], ids[i], owner, owner_id, ops[j], &cell[i]);
                fprintf(answers, "%s %s %s %s\n", roles[i], ops[j], rel, got);
                cells++;
                char *want = expected(spec, roles[i], ops[j], rel);
                if (!want || strcmp(want, got)) {
                    fprintf(stderr, "%s %s with %s: expected %s, got %s\n", roles[i], ops[j], rel,
                            want ? want : "(missing from the specification)", got);
                    mismatches++;
                }
                free(want);
            }
            free(cell[i].patient);
            free(cell[i].mrn);
            free(cell[i].record);
        }
    }
    fclose(answers);
    clarity_string_free(spec);
    clarity_client_close(c);
    if (mismatches) {
        fprintf(stderr, "matrix: %d of %d cells differ from the specification\n", mismatches, cells);
        return 1;
    }
    printf("matrix: %d cells match the specification\n", cells);
    return 0;
}
