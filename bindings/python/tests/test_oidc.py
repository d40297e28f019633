"""An OpenID Connect provider's access token through the Python package
(S-ID-1): the host passes on the token its caller already has; Clarity
authenticates it, maps its roles, decides and audits. Runs against the
loopback provider scripts/test starts (tests/oidc), whose `ehr-integration`
client holds the provider role `ehr-clinician`."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict

import pytest

import clarity

from conftest import PASSWORD, REPO, config_for, in_ci, profile

SECRET = "integration-secret-0123456789abcdef0123456789ab"


def issuer() -> str:
    value = os.environ.get("CLARITY_TEST_OIDC_ISSUER", "").strip()
    if not value:
        if in_ci():
            pytest.fail("CLARITY_TEST_OIDC_ISSUER is not set: CI runs every OIDC test")
        pytest.skip("SKIPPED: OIDC test not run: scripts/test starts the provider")
    return value


def provider_token(iss: str) -> str:
    out = subprocess.run(
        ["node", str(REPO / "tests/oidc/browser.mjs"), "client-credentials",
         "--issuer", iss, "--client", "ehr-integration", "--secret", SECRET],
        check=True, capture_output=True, text=True,
    )
    return str(json.loads(out.stdout)["access_token"])


def logout_token(iss: str, subject: str) -> str:
    """A back-channel logout token signed with the provider's key, as the
    provider would POST it to the host's logout endpoint."""
    keys = os.environ.get("CLARITY_TEST_OIDC_KEYS", "")
    assert keys, "scripts/test exports CLARITY_TEST_OIDC_KEYS with the provider"
    claims = {
        "iss": iss, "aud": "clarity-web", "sub": subject, "iat": int(time.time()),
        "jti": uuid.uuid4().hex,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    out = subprocess.run(
        ["node", str(REPO / "tests/oidc/mint.mjs"), "--keys", keys,
         "--claims", json.dumps(claims), "--typ", "logout+jwt"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def with_oidc(config: Dict[str, Any], iss: str) -> Dict[str, Any]:
    config["auth"] = {"oidc": [{
        "issuer": iss,
        "audience": "clarity",
        "provision": True,
        "logout_client_id": "clarity-web",
        "role_map": {"ehr-clinician": "clinician"},
    }]}
    return config


# S-ID-1
def test_a_provider_token_authenticates_and_acts_within_its_roles(backend: str, tmp_path: Path) -> None:
    iss = issuer()
    config, cleanup = config_for(backend, tmp_path / "data")
    c = clarity.Clarity(with_oidc(config, iss))
    try:
        token = provider_token(iss)
        me = c.authenticate(token)
        assert me["identity"] == {"issuer": iss, "subject": "ehr-integration"}
        assert me["roles"] == ["clinician"]

        patient = c.create_patient(token, profile())
        assert c.get_patient(token, patient["id"])["given_name"] == "Ada"

        auditor = f"auditor-{patient['id']}@test.example"
        c.create_user_as_operator(auditor, PASSWORD, ["auditor"])
        audit_token = c.login(auditor, PASSWORD)["access_token"]
        events = c.audit_events(audit_token, {"patient_id": patient["id"]})["items"]
        reads = [e for e in events if e["subtype"] == "patient.read"]
        assert reads and reads[0]["actor_issuer"] == iss
        assert reads[0]["actor_subject"] == "ehr-integration"

        forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        with pytest.raises(clarity.Unauthenticated):
            c.authenticate(forged)

        # Disabling the user in Clarity ends access at once; enabling restores it.
        admin_email = f"admin-{patient['id']}@test.example"
        c.create_user_as_operator(admin_email, PASSWORD, ["admin"])
        admin = c.login(admin_email, PASSWORD)["access_token"]
        c.update_user(admin, me["user_id"], disabled=True)
        with pytest.raises(clarity.Unauthenticated):
            c.authenticate(token)
        c.update_user(admin, me["user_id"], disabled=False)
        assert c.authenticate(token)["user_id"] == me["user_id"]

        # A back-channel logout passed on by the host ends the subject's
        # tokens at once; one that does not verify changes nothing.
        with pytest.raises(clarity.InvalidInput):
            c.backchannel_logout(forged)
        assert c.authenticate(token)["user_id"] == me["user_id"]
        c.backchannel_logout(logout_token(iss, "ehr-integration"))
        with pytest.raises(clarity.Unauthenticated):
            c.authenticate(token)
    finally:
        c.close()
        cleanup()
