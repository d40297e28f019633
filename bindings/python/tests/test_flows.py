"""The main flows through the Python package, as the Rust service tests run
them: setup, login/refresh/logout, users, patients, records, care team,
break-glass, audit and keys, the patient's access log and disclosures;
errors map to the exception hierarchy."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

import clarity
from conftest import PASSWORD, all_items, new_user, profile


def test_version_and_context_manager(tmp_path) -> None:
    assert clarity.version() == clarity.__version__
    with clarity.Clarity({"data_dir": str(tmp_path)}) as c:
        c.check()
        assert not c.closed
    assert c.closed
    with pytest.raises(clarity.ClarityError) as closed:
        c.check()
    assert closed.value.code == "closed"
    c.close()  # idempotent


def test_bad_configuration_raises_config_error(tmp_path) -> None:
    with pytest.raises(clarity.ConfigError):
        clarity.Clarity({"data_dir": str(tmp_path), "store": {"backend": "nosuch"}})
    with pytest.raises(clarity.ConfigError):
        clarity.Clarity("store = 3")


def test_setup_login_refresh_logout(client: clarity.Clarity) -> None:
    code = client.issue_setup_code()
    with pytest.raises(clarity.Unauthenticated):
        client.setup("wrong-code", "root@clinic.example", "violet lantern orbit under quiet rain")
    admin = client.setup(code, "root@clinic.example", "violet lantern orbit under quiet rain")
    assert admin["roles"] == ["admin"]
    with pytest.raises(clarity.AlreadyExists):
        client.issue_setup_code()

    tokens = client.login("root@clinic.example", "violet lantern orbit under quiet rain")
    assert tokens["token_type"] == "Bearer" and tokens["user"]["id"] == admin["id"]
    me = client.authenticate(tokens["access_token"])
    assert me["user_id"] == admin["id"]

    with pytest.raises(clarity.Unauthenticated):
        client.login("root@clinic.example", "not the password at all, sorry")

    renewed = client.refresh(tokens["refresh_token"])
    assert renewed["access_token"] != tokens["access_token"]
    # S-AUTH-4: a refresh token works once; reuse ends the session.
    with pytest.raises(clarity.Unauthenticated):
        client.refresh(tokens["refresh_token"])
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(renewed["access_token"])

    again = client.login("root@clinic.example", "violet lantern orbit under quiet rain")
    client.logout(again["access_token"])
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(again["access_token"])


def test_users(client: clarity.Clarity) -> None:
    admin_id, admin = new_user(client, "admin")
    user = client.create_user(
        admin, f"n-{uuid.uuid4().hex}@test.example", PASSWORD, ["nurse"], display_name="N"
    )
    assert user["roles"] == ["nurse"] and user["display_name"] == "N"
    assert client.get_user(admin, user["id"])["id"] == user["id"]
    ids = [u["id"] for u in all_items(lambda cur: client.list_users(admin, 1, cur))]
    assert admin_id in ids and user["id"] in ids
    with pytest.raises(clarity.InvalidInput):
        client.create_user(admin, "not-an-email", PASSWORD, ["nurse"])
    with pytest.raises(clarity.AlreadyExists):
        client.create_user(admin, user["email"], PASSWORD, ["nurse"])

    # S-AC-5: a role change ends the user's sessions at once.
    nurse = client.login(user["email"], PASSWORD)["access_token"]
    client.update_user(admin, user["id"], roles=["clinician"])
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(nurse)
    _, other = new_user(client, "clinician")
    with pytest.raises(clarity.PermissionDenied):
        client.list_users(other)


def test_patients_and_records(client: clarity.Clarity) -> None:
    _, doctor = new_user(client, "clinician")
    patient = client.create_patient(doctor, profile(email="ada@example.org"))
    assert patient["version"] == 1
    assert client.get_patient(doctor, patient["id"])["mrn"] == patient["mrn"]

    updated = client.update_patient(doctor, patient["id"], 1, profile(mrn=patient["mrn"], email="ada@example.org"))
    assert updated["version"] == 2
    # S-INT-2: a stale version is refused and nothing is lost.
    with pytest.raises(clarity.Conflict):
        client.update_patient(doctor, patient["id"], 1, profile(mrn=patient["mrn"], email="ada@example.org"))

    found = client.search_patients(doctor, mrn=patient["mrn"])
    assert [p["id"] for p in found["items"]] == [patient["id"]]
    assert client.search_patients(doctor, email="ada@example.org")["items"]
    with pytest.raises(clarity.InvalidInput):
        client.search_patients(doctor)
    assert patient["id"] in [p["id"] for p in client.list_patients(doctor)["items"]]

    record = client.create_record(doctor, patient["id"], "note", {"text": "seen today"})
    assert client.get_record(doctor, record["id"])["data"] == {"text": "seen today"}
    record = client.update_record(doctor, record["id"], 1, {"text": "seen twice"})
    assert record["version"] == 2
    assert [r["id"] for r in client.list_records(doctor, patient["id"])["items"]] == [record["id"]]
    client.delete_record(doctor, record["id"])
    with pytest.raises(clarity.NotFound):
        client.get_record(doctor, record["id"])

    # S-AC-3: a clinician off the care team cannot tell the patient exists.
    _, stranger = new_user(client, "clinician")
    with pytest.raises(clarity.NotFound):
        client.get_patient(stranger, patient["id"])
    with pytest.raises(clarity.NotFound):
        client.get_patient(doctor, str(uuid.uuid4()))
    with pytest.raises(clarity.InvalidInput):
        client.get_patient(doctor, "not-a-uuid")
    with pytest.raises(clarity.InvalidInput):
        client.create_patient(doctor, {"mrn": "x"})

    _, admin = new_user(client, "admin")
    client.erase_patient(admin, patient["id"])
    with pytest.raises(clarity.NotFound):
        client.get_patient(doctor, patient["id"])


def test_care_team_break_glass_and_review(client: clarity.Clarity) -> None:
    _, doctor = new_user(client, "clinician")
    _, admin = new_user(client, "admin")
    nurse_id, nurse = new_user(client, "nurse")
    patient = client.create_patient(doctor, profile())
    with pytest.raises(clarity.NotFound):
        client.get_patient(nurse, patient["id"])
    client.add_care_team_member(admin, patient["id"], nurse_id, relationship="nurse")
    assert client.get_patient(nurse, patient["id"])["id"] == patient["id"]
    with pytest.raises(clarity.PermissionDenied):
        client.create_record(nurse, patient["id"], "prescription", {"drug": "x"})
    client.remove_care_team_member(admin, patient["id"], nurse_id)
    with pytest.raises(clarity.NotFound):
        client.get_patient(nurse, patient["id"])

    _, er = new_user(client, "clinician")
    with pytest.raises(clarity.InvalidInput):
        client.break_glass(er, patient["id"], "short")
    grant = client.break_glass(er, patient["id"], "unconscious in the emergency room")
    assert grant["patient_id"] == patient["id"]
    assert client.get_patient(er, patient["id"])["id"] == patient["id"]
    pending = client.list_grants(admin, unreviewed_only=True)["items"]
    assert [g["grant_id"] for g in pending] == [grant["grant_id"]]
    client.review_grant(admin, grant["grant_id"])
    assert client.list_grants(admin, unreviewed_only=True)["items"] == []

    _, researcher = new_user(client, "researcher")
    view = client.research_patients(researcher)["items"]
    assert view and "given_name" not in view[0] and "id" not in view[0]


def test_audit_and_keys(client: clarity.Clarity) -> None:
    _, doctor = new_user(client, "clinician")
    patient = client.create_patient(doctor, profile())
    client.get_patient(doctor, patient["id"])
    _, auditor = new_user(client, "auditor")
    events = all_items(
        lambda cur: client.audit_events(auditor, {"patient_id": patient["id"]}, 100, cur)
    )
    actions = [e["subtype"] for e in events]
    assert "patient.create" in actions and "patient.read" in actions
    # S-AUD-4: identifiers only, no PHI.
    assert patient["family_name"] not in str(events)
    report = client.verify_audit(auditor)
    assert report["ok"] and report["chains"]
    ndjson = client.export_audit_fhir(auditor, {"patient_id": patient["id"]})
    lines = [line for line in ndjson.splitlines() if line]
    assert lines and all('"resourceType":"AuditEvent"' in line for line in lines)
    with pytest.raises(clarity.InvalidInput):
        client.audit_events(auditor, {"outcome": "9"})
    with pytest.raises(clarity.PermissionDenied):
        client.verify_audit(doctor)

    _, admin = new_user(client, "admin")
    with pytest.raises(clarity.InvalidInput):
        client.purge_audit(admin, "2999-01-01T00:00:00Z")
    assert client.purge_audit(admin, "2000-01-01T00:00:00Z") == 0
    status = client.key_status(admin)
    rotated = client.rotate_keys(admin)
    assert rotated["kek_version"] > status["current_kek_version"]
    assert client.get_patient(doctor, patient["id"])["id"] == patient["id"]


def test_mfa_and_password_change(client: clarity.Clarity) -> None:
    email = f"mfa-{uuid.uuid4().hex}@test.example"
    client.create_user_as_operator(email, PASSWORD, ["clinician"])
    token = client.login(email, PASSWORD)["access_token"]
    enrollment = client.mfa_enroll(token)
    assert enrollment["otpauth_url"].startswith("otpauth://")
    with pytest.raises(clarity.Unauthenticated):
        client.mfa_confirm(token, "000000")

    new = "a different passphrase, just as long"
    with pytest.raises(clarity.Unauthenticated):
        client.change_password(token, "not the current password", new)
    client.change_password(token, PASSWORD, new)
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(token)
    assert client.login(email, new)["user"]["email"] == email


def test_admin_password_and_mfa_reset(client: clarity.Clarity) -> None:
    email = f"acct-{uuid.uuid4().hex}@test.example"
    user = client.create_user_as_operator(email, PASSWORD, ["nurse"])
    token = client.login(email, PASSWORD)["access_token"]
    _, admin = new_user(client, "admin")
    _, nurse = new_user(client, "nurse")
    with pytest.raises(clarity.PermissionDenied):
        client.reset_password(nurse, user["id"])

    reset = client.reset_password(admin, user["id"])
    assert reset["user_id"] == user["id"] and reset["expires_at"]
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(token)
    with pytest.raises(clarity.Unauthenticated):
        client.login(email, PASSWORD)
    with pytest.raises(clarity.InvalidInput):
        client.login(email, reset["reset_code"])
    new = "chosen after the admin's reset"
    with pytest.raises(clarity.Unauthenticated):
        client.complete_password_reset(email, "0000-0000", new)
    client.complete_password_reset(email, reset["reset_code"], new)
    with pytest.raises(clarity.Unauthenticated):
        client.complete_password_reset(email, reset["reset_code"], new + " again")
    token = client.login(email, new)["access_token"]

    with pytest.raises(clarity.InvalidInput):
        client.reset_mfa(admin, user["id"])
    client.mfa_enroll(token)
    assert client.reset_mfa(admin, user["id"])["mfa_enabled"] is False
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(token)


def test_errors_carry_codes_and_no_phi(client: clarity.Clarity) -> None:
    _, doctor = new_user(client, "clinician")
    with pytest.raises(clarity.InvalidInput) as bad:
        client.create_patient(doctor, dict(profile(), secret_field="Zebediah"))
    assert bad.value.code == "invalid_input" and bad.value.result == 1
    assert "Zebediah" not in str(bad.value)
    assert isinstance(bad.value, ValueError)
    with pytest.raises(clarity.Unauthenticated) as unauth:
        client.get_patient("v4.local.forged", str(uuid.uuid4()))
    assert unauth.value.result == 8
    with pytest.raises(ValueError):
        client.get_patient("nul\x00byte", str(uuid.uuid4()))


# S-ID-2
def test_service_accounts_and_client_credentials(client: clarity.Clarity) -> None:
    _, admin = new_user(client, "admin")
    name = f"job-{uuid.uuid4().hex[:12]}"
    created = client.create_service_account(admin, name, ["auditor"], display_name="Nightly job")
    assert created["account"]["service_account"] is True
    client_id, secret = created["client_id"], created["client_secret"]
    token = client.client_credentials(client_id, secret)
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    me = client.authenticate(token["access_token"])
    assert me["user_id"] == client_id and me["roles"] == ["auditor"]
    with pytest.raises(clarity.Unauthenticated):
        client.client_credentials(client_id, secret + "x")
    with pytest.raises(clarity.InvalidInput):
        client.create_service_account(admin, f"{name}-mixed", ["admin", "clinician"])
    rotated = client.rotate_service_secret(admin, client_id, overlap_secs=0)
    with pytest.raises(clarity.Unauthenticated):
        client.client_credentials(client_id, secret)
    token = client.client_credentials(client_id, rotated["client_secret"])
    client.delete_service_account(admin, client_id)
    with pytest.raises(clarity.Unauthenticated):
        client.authenticate(token["access_token"])
    with pytest.raises(clarity.Unauthenticated):
        client.client_credentials(client_id, rotated["client_secret"])


# S-AUD-9: a patient sees who accessed its record; disclosures to outside
# recipients are recorded by the care team and accounted for to the patient.
def test_patient_access_log_and_disclosures(client: clarity.Clarity) -> None:
    def person(role: str, name: str, patient_id: str | None = None) -> tuple[str, str]:
        email = f"{role}-{uuid.uuid4().hex}@test.example"
        user = client.create_user_as_operator(
            email, PASSWORD, [role], display_name=name, patient_id=patient_id
        )
        return user["id"], client.login(email, PASSWORD)["access_token"]

    doctor_id, doctor = person("clinician", "Dr Meredith Grey")
    patient = client.create_patient(doctor, profile())
    other = client.create_patient(doctor, profile())
    record = client.create_record(doctor, patient["id"], "note", {"text": "seen in clinic"})
    _, ada = person("patient", "Ada", patient["id"])
    _, auditor = person("auditor", "Privacy Office")
    _, outsider = person("clinician", "Dr Nobody")
    client.get_record(doctor, record["id"])

    # The patient lists who accessed its own record, with names and roles.
    log = all_items(
        lambda cur: client.patient_access_log(ada, patient["id"], limit=2, cursor=cur)
    )
    read = next(
        e for e in log if e["action"] == "record.read" and e["accessor_id"] == doctor_id
    )
    assert read["accessor_name"] == "Dr Meredith Grey"
    assert read["accessor_roles"] == ["clinician"]
    assert read["entity_id"] == record["id"] and read["action_code"] == "R"
    assert read["purpose"] == "TREAT" and read["break_glass"] is False
    assert any(e["action"] == "patient.create" for e in log)
    # A range narrows it; the auditor sees any patient's log.
    old = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert client.patient_access_log(ada, patient["id"], to=old)["items"] == []
    with pytest.raises(clarity.InvalidInput):
        client.patient_access_log(ada, patient["id"], from_=old, to=old)
    audited = client.patient_access_log(auditor, patient["id"], from_=old, limit=100)["items"]
    assert any(e["event_id"] == read["event_id"] for e in audited)
    # The care team does not read the access log; others cannot tell the patient exists.
    with pytest.raises(clarity.PermissionDenied):
        client.patient_access_log(doctor, patient["id"])
    with pytest.raises(clarity.NotFound):
        client.patient_access_log(ada, other["id"])
    with pytest.raises(clarity.NotFound):
        client.patient_access_log(outsider, patient["id"])

    # The care team records disclosures (now, or backdated).
    details = {
        "recipient": "County Health Department",
        "recipient_address": "1 Public Health Way",
        "purpose": "notifiable disease report",
        "description": "laboratory result",
        "legal_basis": "state public health reporting statute",
    }
    recent = client.record_disclosure(doctor, patient["id"], details)
    assert recent["patient_id"] == patient["id"] and recent["recorded_by"] == doctor_id
    assert recent["recipient"] == "County Health Department"
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    backdated = client.record_disclosure(
        doctor, patient["id"], dict(details, recipient="State Registry", disclosed_at=month_ago)
    )
    with pytest.raises(clarity.PermissionDenied):
        client.record_disclosure(ada, patient["id"], details)
    with pytest.raises(clarity.NotFound):
        client.record_disclosure(outsider, patient["id"], details)
    with pytest.raises(clarity.InvalidInput):
        client.record_disclosure(doctor, patient["id"], dict(details, legal_basis=" "))

    listed = all_items(lambda cur: client.list_disclosures(ada, patient["id"], 1, cur))
    assert [d["id"] for d in listed] == [recent["id"], backdated["id"]]
    with pytest.raises(clarity.NotFound):
        client.list_disclosures(outsider, patient["id"])

    # The accounting, as the patient: oldest first, as JSON and as text.
    accounting = client.disclosure_accounting(ada, patient["id"])
    assert accounting["patient_id"] == patient["id"]
    assert [d["id"] for d in accounting["disclosures"]] == [backdated["id"], recent["id"]]
    assert accounting["disclosures"][1]["legal_basis"] == details["legal_basis"]
    text = client.disclosure_accounting(ada, patient["id"], format="text")
    assert text.startswith("ACCOUNTING OF DISCLOSURES")
    assert "County Health Department" in text and "State Registry" in text
    since = datetime.now(timezone.utc) - timedelta(days=1)
    narrower = client.disclosure_accounting(auditor, patient["id"], from_=since)
    assert [d["id"] for d in narrower["disclosures"]] == [recent["id"]]
    seven_years = datetime.now(timezone.utc) - timedelta(days=7 * 365)
    with pytest.raises(clarity.InvalidInput):
        client.disclosure_accounting(ada, patient["id"], from_=seven_years)
    with pytest.raises(clarity.InvalidInput):
        client.disclosure_accounting(ada, patient["id"], format="xml")
    with pytest.raises(clarity.NotFound) as hidden:
        client.disclosure_accounting(outsider, patient["id"])
    assert "County" not in str(hidden.value) and patient["family_name"] not in str(hidden.value)
