#!/usr/bin/env python3
"""API fuzzing of the real server with schemathesis (docs/RELIABILITY.md).

    scripts/api_fuzz.py CLARITY_BINARY [MAX_EXAMPLES]

Starts `clarity serve` on loopback with a fresh data directory, creates the
first admin with the setup code it prints, then a user holding every role
that can reach an operation (admin, clinician, auditor), and runs
schemathesis against the served OpenAPI document with that user's token.
Checks: no 5xx for any generated input (`not_a_server_error`, S-IN-1) and
every response conforms to the document (`response_schema_conformance`,
plus status codes and content types it declares). Logout is left out and
the user update runs in a pass of its own, so the token keeps working. Exits
non-zero on any failure.
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


def main():
    binary = sys.argv[1]
    max_examples = sys.argv[2] if len(sys.argv) > 2 else "20"
    st = os.path.join(os.path.dirname(sys.executable), "st")
    work = tempfile.mkdtemp(prefix="clarity-apifuzz-")
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
        # the fuzzing account reads PHI and the audit log but manages nobody.
        roles = ["clinician", "auditor"]
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
            "-H", "Authorization: Bearer " + token,
            "--max-examples", max_examples,
            "--request-timeout", "30",
            "--seed", os.environ.get("CLARITY_TEST_SEED", "1"),
        ]
        # Two passes: everything but the user update first, then the user
        # update on its own — it may disable or re-role the token's user,
        # which ends its session (S-AC-5) and would turn the rest into 401s.
        # The second pass has no stateful phase: the links that lead to the
        # user update start at operations it does not select (the first pass
        # follows them).
        passes = [
            ["--exclude-path", "/v1/auth/logout", "--exclude-method", "PATCH"],
            ["--include-method", "PATCH", "--phases", "examples,coverage,fuzzing"],
        ]
        returncode, cases = 0, 0
        for selection in passes:
            # In the scratch directory: schemathesis keeps a cache in its working directory.
            result = subprocess.run(base_command + selection, env=dict(os.environ, NO_COLOR="1"),
                                    stdout=subprocess.PIPE, text=True, cwd=work)
            print(result.stdout)
            generated = re.findall(r"(\d+) generated", result.stdout)
            cases += int(generated[-1]) if generated else 0
            returncode = returncode or result.returncode
        server.terminate()
        server.wait(timeout=20)
        with open(os.path.join(work, "server.log")) as log:
            panics = [l for l in log if "panicked" in l]
        if panics:
            print("FAIL: the server panicked:", panics[:3])
            return 1
        print("api fuzz: %d test cases, exit %d, no server panic" % (cases, returncode))
        return returncode
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
