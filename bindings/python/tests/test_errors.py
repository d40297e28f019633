"""Errors name this package's parameters, never the C ABI's (issue 26,
item 4): a message about a JSON document the method builds from its keyword
arguments names the field, one about a mapping the caller passed names that
argument, and no message says `*_json`."""

from __future__ import annotations

import re
import uuid

import pytest

import clarity
from clarity.errors import C_PARAMETER_NAMES
from conftest import REPO, new_user, profile


def test_every_json_parameter_of_the_header_has_a_python_name() -> None:
    header = (REPO / "clarity-ffi" / "include" / "clarity.h").read_text()
    json_params = set(re.findall(r"const char \*(\w+_json)\b", header))
    assert json_params, "the header parsed"
    assert json_params <= set(C_PARAMETER_NAMES), json_params - set(C_PARAMETER_NAMES)


def test_messages_name_python_arguments(client: clarity.Clarity) -> None:
    _, admin = new_user(client, "admin")
    _, doctor = new_user(client, "clinician")

    with pytest.raises(clarity.InvalidInput) as bad_role:
        client.create_user(admin, f"x-{uuid.uuid4().hex}@test.example", "a long enough passphrase", ["surgeon"])
    assert bad_role.value.message.startswith("`roles"), bad_role.value.message

    with pytest.raises(clarity.InvalidInput) as bad_profile:
        client.create_patient(doctor, profile(sex=7))
    assert bad_profile.value.message.startswith("profile: `sex`"), bad_profile.value.message

    patient = client.create_patient(doctor, profile())
    with pytest.raises(clarity.InvalidInput) as bad_version:
        client.update_patient(doctor, patient["id"], 0, profile())
    assert bad_version.value.message == "expected_version must be at least 1"

    with pytest.raises(clarity.InvalidInput) as bad_id:
        client.get_patient(doctor, "not-a-uuid")
    assert bad_id.value.message == "patient_id must be a UUID"

    with pytest.raises(clarity.InvalidInput) as bad_search:
        client.search_patients(doctor, mrn=7)  # type: ignore[arg-type]
    assert bad_search.value.message.startswith("`mrn`"), bad_search.value.message

    for error in (bad_role, bad_profile, bad_version, bad_id, bad_search):
        # Neither the C parameter, nor the kind the class already says, nor a
        # position in JSON text the caller never wrote.
        assert "_json" not in error.value.message
        assert "invalid input" not in error.value.message
        assert "(line " not in error.value.message
