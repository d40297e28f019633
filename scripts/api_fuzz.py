#!/usr/bin/env python3
"""API fuzzing of the real server with schemathesis (docs/RELIABILITY.md).

    scripts/api_fuzz.py CLARITY_BINARY [MAX_EXAMPLES]

Starts `clarity serve` on loopback with a fresh data directory, creates the
first admin with the setup code it prints, then a user with the clinician,
auditor and researcher roles, and runs schemathesis against the served
OpenAPI document: with that user's token, then, as the admin, the user
create and update, and the other operations only an admin may call.
Checks: no 5xx for any generated input (`not_a_server_error`, S-IN-1) and
every response conforms to the document (`response_schema_conformance`,
plus status codes and content types it declares). Logout is left out and
the user update runs in a pass of its own, so the tokens keep working.
Then, from the calls made (HAR reports), it prints the statuses each
operation answered, and fails unless the update and delete operations whose
ids only a create makes answered a 2xx (their links worked), and unless
every operation schemathesis finds "mostly rejected generated data" is one
whose rejections no schema can state (REJECTED_FOR_WANT_OF_STATE): for any
other, the schema is looser than the server's validation. Exits non-zero on
any failure (API_FUZZ_KEEP=1 keeps the scratch directory, reports and log).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

PASSWORD = "schemathesis sends every operation"


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(request, data, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit("FAIL: %s %s: %s %s" % (method, path, e.code, e.read().decode()))


# Operations whose ids come only from a create: reached through its links.
REACHED_THROUGH_LINKS = ["PUT /v1/patients/{id}", "PUT /v1/records/{id}", "DELETE /v1/records/{id}", "PATCH /v1/users/{id}"]

# Operations schemathesis may find "mostly rejected generated data" for
# reasons no schema can state, each with the reason. Any other operation in
# that warning has a schema looser than the server's validation: a failure.
REJECTED_FOR_WANT_OF_STATE = {
    "POST /v1/setup": "one-time: the first admin exists before the run",
    "POST /v1/auth/mfa/confirm": "needs an enrolment in progress and the current TOTP code",
    "POST /v1/auth/oidc/backchannel-logout": "needs a logout token signed by a configured provider",
    "POST /v1/users": "the password must also pass zxcvbn (too easy to guess: 400)",
    "POST /v1/users/{id}/identities": "the issuer must be a provider configured under [[auth.oidc]]",
    "POST /v1/patients/{id}/care-team": "expires_at must be in the future: the schema can only bound its year",
    # Outside the stateful phase an update carries the parameter's example
    # version, stale once the run has updated that id: 412, which schemathesis
    # counts as a validation error. Its links bring the current ETag (the 2xx
    # checked for REACHED_THROUGH_LINKS).
    "PUT /v1/patients/{id}": "If-Match names a version the run has already moved past (412)",
    "PUT /v1/records/{id}": "If-Match names a version the run has already moved past (412)",
}


# Operations only an admin may call that cannot end the admin's session.
ADMIN_ONLY = [
    "listUsers", "getUser", "listIdentities", "linkIdentity", "unlinkIdentity", "getKeyStatus", "rotateKeys",
    "listGrants", "reviewGrant", "createServiceAccount", "rotateServiceSecret", "deleteServiceAccount",
    "erasePatient", "addCareTeamMember", "removeCareTeamMember",
]


def operations(document):
    """(method, template, regular expression of its paths) of every
    operation of the OpenAPI `document`."""
    found = []
    for template, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method in ("get", "put", "post", "patch", "delete"):
            if method in item:
                found.append((method.upper(), template, pattern))
    return found


def statuses(har, ops, answers):
    """Adds the status of every call in schemathesis's HAR report to
    `answers`, by documented operation ("METHOD /path/{template}"); calls no
    operation matches (methods a path does not have) are left out."""
    with open(har) as f:
        entries = json.load(f)["log"]["entries"]
    for entry in entries:
        path = urllib.parse.urlsplit(entry["request"]["url"]).path
        method = entry["request"]["method"]
        for op_method, template, pattern in ops:
            if op_method == method and pattern.match(path):
                answers.setdefault("%s %s" % (method, template), []).append(entry["response"]["status"])
                break


def warned(output, title):
    """The operations schemathesis lists under the warning that starts with `title`."""
    listed, inside = [], False
    for line in output.splitlines():
        if line.startswith(title):
            inside = True
        elif inside and line.startswith("\U0001f4a1"):
            inside = False
        elif inside and line.strip().startswith("- "):
            listed.append(line.strip()[2:])
    return listed


def summary(codes):
    counts = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return ", ".join("%d× %d" % (n, c) for c, n in sorted(counts.items())) or "no call"


def main():
    binary = sys.argv[1]
    max_examples = sys.argv[2] if len(sys.argv) > 2 else "20"
    st = os.path.join(os.path.dirname(sys.executable), "st")
    work = tempfile.mkdtemp(prefix="clarity-apifuzz-")
    if os.environ.get("API_FUZZ_KEEP"):
        print("kept: %s (HAR reports, server log)" % work)
    env = dict(os.environ, CLARITY_RATE_LIMIT_ENABLED="false", CLARITY_LOG_LEVEL="warn")
    server = subprocess.Popen(
        [binary, "--data-dir", os.path.join(work, "data"), "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(work, "server.log"), "w"),
        env=env,
        text=True,
    )
    try:
        code, base = None, None
        deadline = time.time() + 60
        while base is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            if line.startswith("setup code: "):
                code = line.split(": ", 1)[1].strip()
            match = re.match(r"Listening on (http://\S+)", line)
            if match:
                base = match.group(1)
        if base is None or code is None:
            sys.exit("FAIL: clarity did not start")
        call(base, "POST", "/v1/setup", {"setup_code": code, "email": "admin@api.example", "password": PASSWORD})
        admin = call(base, "POST", "/v1/auth/login", {"email": "admin@api.example", "password": PASSWORD})["access_token"]
        # Separation of duties (S-AC-8): no account is admin and clinician, so
        # the fuzzing account reads PHI, the audit log and the de-identified
        # research listing but manages nobody.
        roles = ["clinician", "auditor", "researcher"]
        call(base, "POST", "/v1/users", {"email": "tester@api.example", "password": PASSWORD, "roles": roles}, admin)
        token = call(base, "POST", "/v1/auth/login", {"email": "tester@api.example", "password": PASSWORD})["access_token"]
        # Something to find: a patient with a record.
        patient = call(base, "POST", "/v1/patients", {
            "mrn": "FUZZ-1", "given_name": "Fuzz", "family_name": "Example",
            "birth_date": "1990-01-01", "sex": "other"}, token)
        call(base, "POST", "/v1/patients/%s/records" % patient["id"], {"kind": "note", "data": {"n": 1}}, token)
        base_command = [
            st, "run", base + "/openapi.json", "--url", base,
            "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "--max-examples", max_examples,
            "--request-timeout", "30",
            "--seed", os.environ.get("CLARITY_TEST_SEED", "1"),
        ]
        # Three passes: everything but the user update first, then the user
        # update with the user create, as the admin (only an admin manages
        # users): the update may disable or re-role its user, which ends that
        # user's sessions (S-AC-5), so it runs apart from the rest and only
        # ever reaches users it made itself (through the create's links) or
        # random ids, never the admin. Last, the other operations only an
        # admin may call, as the admin, so that they get past the 403 the
        # first pass meets; the ones that could end the admin's own session
        # (password and MFA resets, reached with ids read from the user
        # list) stay out.
        passes = [
            ("main", token, ["--exclude-path", "/v1/auth/logout", "--exclude-method", "PATCH"]),
            ("users", admin, ["--include-operation-id", "createUser", "--include-operation-id", "updateUser"]),
            ("admin", admin, [arg for op in ADMIN_ONLY for arg in ("--include-operation-id", op)]),
        ]
        with urllib.request.urlopen(base + "/openapi.json", timeout=30) as response:
            ops = operations(json.load(response))
        returncode, cases, answers, mismatched = 0, 0, {}, []
        for name, bearer, selection in passes:
            har = os.path.join(work, name + ".har")
            # In the scratch directory: schemathesis keeps a cache in its working directory.
            result = subprocess.run(
                base_command + selection + ["-H", "Authorization: Bearer " + bearer,
                                            "--report", "har", "--report-har-path", har],
                env=dict(os.environ, NO_COLOR="1"), stdout=subprocess.PIPE, text=True, cwd=work)
            print(result.stdout)
            generated = re.findall(r"(\d+) generated", result.stdout)
            cases += int(generated[-1]) if generated else 0
            returncode = returncode or result.returncode
            statuses(har, ops, answers)
            mismatched += warned(result.stdout, "Schema validation mismatch")
        server.terminate()
        server.wait(timeout=20)
        with open(os.path.join(work, "server.log")) as log:
            panics = [l for l in log if "panicked" in l]
        if panics:
            print("FAIL: the server panicked:", panics[:3])
            return 1
        # The operations on ids that only a create makes: the links must have
        # brought them real ids (and versions), so at least one call succeeded.
        unreached = [op for op in REACHED_THROUGH_LINKS if not any(200 <= s < 300 for s in answers.get(op, ()))]
        print("answers per operation:")
        for method, template, _ in ops:
            op = "%s %s" % (method, template)
            print("  %-48s %s" % (op, summary(answers.get(op, []))))
        # Schemas as strict as the validation behind them: where the server
        # rejects what the schema allows, schemathesis says so.
        looser = sorted(set(op for op in mismatched if op not in REJECTED_FOR_WANT_OF_STATE))
        for op in sorted(set(mismatched) - set(looser)):
            print("  mostly rejected, as expected: %s (%s)" % (op, REJECTED_FOR_WANT_OF_STATE[op]))
        if looser:
            print("FAIL: the server mostly rejected data these schemas allow (make them as strict as its validation):", looser)
            return 1
        if unreached:
            print("FAIL: never answered 2xx (the links from the creates did not reach them):", unreached)
            return 1
        print("api fuzz: %d test cases, exit %d, no server panic; %s reached through links"
              % (cases, returncode, ", ".join(REACHED_THROUGH_LINKS)))
        return returncode
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if not os.environ.get("API_FUZZ_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
