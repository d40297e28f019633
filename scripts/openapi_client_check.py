#!/usr/bin/env python3
"""The OpenAPI document as the ecosystem's tools meet it.

    openapi_client_check.py CLARITY_BINARY

Starts `clarity serve` on a fresh data directory, fetches the document it
serves (/openapi.json), generates a typed Python client from it with
openapi-python-client (PyPI), and then:
  - every operation of the document must have its function in the client,
    and the generator may warn only about the two responses that are not
    JSON (the FHIR NDJSON export and the OpenMetrics text), which it cannot
    type;
  - the README's walk-through runs through the generated client: the first
    admin from the setup code, a clinician, a patient, a record, read back,
    updated with If-Match; and every list operation (users, patients,
    search, records, grants, de-identified patients, audit events) answers a
    typed page whose items are typed models.
Exit status 0 when all of it holds.
"""

import contextlib
import importlib
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Operations whose responses are not JSON: the generator skips typing them.
NOT_JSON = {"exportAudit", "getMetrics"}


def fail(message):
    print(f"openapi client: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, data_dir):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--data-dir", str(data_dir), "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    code = None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("setup code: "):
            code = line.split(": ", 1)[1].strip()
        if line.startswith("Listening on "):
            break
        if time.monotonic() > deadline:
            break
    if code is None:
        proc.kill()
        fail("the server printed no setup code")
    return proc, f"http://127.0.0.1:{port}", code


@contextlib.contextmanager
def serving(binary, tmp, document):
    """A fresh server on a scratch store under `tmp`, its served OpenAPI
    document written to `document`: yields (base URL, setup code), and
    stops the server on leaving."""
    proc, base, code = start_server(binary, tmp / "data")
    try:
        document.write_bytes(urllib.request.urlopen(f"{base}/openapi.json", timeout=10).read())
        yield base, code
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def generate(document, out_dir):
    tool = pathlib.Path(sys.executable).parent / "openapi-python-client"
    if not tool.exists():
        fail(f"{tool} is missing (scripts/requirements-test.txt installs openapi-python-client)")
    result = subprocess.run(
        [str(tool), "generate", "--path", str(document), "--output-path", str(out_dir), "--meta", "none"],
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        fail(f"openapi-python-client failed:\n{output}")
    removed = re.findall(r"resulted in the removal of:\s*\n(\S+)", output)
    if removed:
        fail(f"the generator dropped these schemas: {removed}\n{output}")
    warned = set(re.findall(r"WARNING parsing (\w+) (\S+) within", output))
    spec_ops = {}
    import json  # noqa: PLC0415

    doc = json.loads(pathlib.Path(document).read_text())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op:
                spec_ops[(method.upper(), path)] = op["operationId"]
    unexpected = {w for w in warned if spec_ops.get(w) not in NOT_JSON}
    if unexpected:
        fail(f"the generator could not use these operations: {sorted(unexpected)}\n{output}")
    modules = {p.stem for p in (out_dir / "api").rglob("*.py")}
    missing = sorted(op for op in spec_ops.values() if snake(op) not in modules)
    if missing:
        fail(f"no generated function for {missing}")
    return len(spec_ops)


def walk_through(base, code):
    clarity = importlib.import_module("clarity_client")
    api = "clarity_client.api"
    models = importlib.import_module("clarity_client.models")

    def op(tag, name):
        return importlib.import_module(f"{api}.{tag}.{name}")

    def ok(answer, kind):
        if not isinstance(answer, getattr(models, kind)):
            fail(f"expected a {kind}, got {answer!r}")
        return answer

    anonymous = clarity.Client(base_url=base, raise_on_unexpected_status=True)
    # Passwords may not contain the account's email or name.
    admin_pw = "a long passphrase for the very first account"
    dr_pw = "kept by the ward for its second account"
    study_pw = "a third phrase, for the study account"
    ok(op("setup", "setup").sync(client=anonymous, body=models.SetupRequest(
        setup_code=code, email="admin@example.org", password=admin_pw)), "User")

    def login(email, password):
        tokens = op("auth", "login").sync(client=anonymous, body=models.LoginRequest(email=email, password=password))
        return clarity.AuthenticatedClient(base_url=base, token=ok(tokens, "Tokens").access_token,
                                           raise_on_unexpected_status=True)

    admin = login("admin@example.org", admin_pw)
    ok(op("users", "create_user").sync(client=admin, body=models.NewUser(
        email="dr@example.org", password=dr_pw, roles=[models.Role.CLINICIAN])), "User")
    ok(op("users", "create_user").sync(client=admin, body=models.NewUser(
        email="research@example.org", password=study_pw, roles=[models.Role.RESEARCHER])), "User")
    dr = login("dr@example.org", dr_pw)

    patient = ok(op("patients", "create_patient").sync(client=dr, body=models.PatientProfile(
        mrn="MRN-1", given_name="Ada", family_name="Example",
        birth_date=__import__("datetime").date(1990, 5, 17), sex=models.PatientProfileSex.FEMALE)), "Patient")
    read = ok(op("patients", "get_patient").sync(client=dr, id=patient.id), "Patient")
    if read.given_name != "Ada":
        fail("the patient does not read back")
    record = ok(op("records", "create_record").sync(client=dr, id=patient.id, body=models.NewRecord(
        kind="note", data=models.NewRecordData.from_dict({"text": "first visit"}))), "Record")
    updated = ok(op("records", "update_record").sync(client=dr, id=record.id, if_match=f'"{record.version}"',
                                                     body=models.RecordUpdate.from_dict({"data": {"text": "amended"}})), "Record")
    if updated.version != record.version + 1:
        fail("the update did not make a new version")

    pages = {
        "UserPage": op("users", "list_users").sync(client=admin),
        "PatientPage": op("patients", "list_patients").sync(client=dr),
        "RecordPage": op("records", "list_records").sync(client=dr, id=patient.id),
        "GrantPage": op("break_glass", "list_grants").sync(client=admin),
        "AuditEventPage": op("audit", "list_audit_events").sync(client=admin),
        "DeidentifiedPatientPage": op("research", "list_research_patients").sync(
            client=login("research@example.org", study_pw)),
    }
    found = op("patients", "search_patients").sync(client=dr, body=models.PatientSearch(mrn="MRN-1"))
    pages["PatientPage (search)"] = found
    for kind, page in pages.items():
        ok(page, kind.split(" ")[0])
    expect_items = {"UserPage": "User", "PatientPage": "Patient", "RecordPage": "Record",
                    "PatientPage (search)": "Patient", "AuditEventPage": "AuditEvent"}
    for kind, item in expect_items.items():
        items = pages[kind].items
        if not items or not all(isinstance(i, getattr(models, item)) for i in items):
            fail(f"{kind} items are not typed {item} models: {items!r}")
    return len(pages)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        document = tmp / "openapi.json"
        try:
            with serving(sys.argv[1], tmp, document) as (base, code):
                out = tmp / "gen" / "clarity_client"
                operations = generate(document, out)
                sys.path.insert(0, str(out.parent))
                lists = walk_through(base, code)
        finally:
            shutil.rmtree(tmp / "gen", ignore_errors=True)
    print(f"openapi client: generated for all {operations} operations; the walk-through and {lists} typed list answers ran through it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
