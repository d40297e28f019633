"""The shapes of the values Clarity returns: plain dicts decoded from the C
ABI's JSON (the HTTP API's shapes), typed here for editors and type checkers.
Ids are UUID strings; times are RFC 3339 strings in UTC."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover
    from typing_extensions import NotRequired, TypedDict


class User(TypedDict):
    """A user account."""

    id: str
    email: str
    roles: List[str]
    display_name: Optional[str]
    disabled: bool
    mfa_enabled: bool
    patient_id: Optional[str]
    version: int
    created_at: str
    service_account: bool


class ClientSecret(TypedDict):
    """A service account's client secret, shown this once."""

    client_id: str
    client_secret: str
    previous_secret_expires_at: Optional[str]
    account: User


class AccessToken(TypedDict):
    """What the client-credentials grant returns. The token is a secret."""

    access_token: str
    token_type: str
    expires_in: int


class Tokens(TypedDict):
    """What a login or refresh returns. The tokens are secrets."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str
    user: User


class PasswordReset(TypedDict):
    """An admin's password reset: a one-time code, shown once. A secret."""

    user_id: str
    reset_code: str
    expires_at: str


class ExternalIdentity(TypedDict):
    """The OpenID Connect provider and subject a caller came with."""

    issuer: str
    subject: str


class Principal(TypedDict):
    """Who a token belongs to."""

    user_id: str
    session_id: str
    roles: List[str]
    patient_id: Optional[str]
    mfa: bool
    #: For a provider's access token (``[[auth.oidc]]``): issuer and subject.
    identity: Optional[ExternalIdentity]


class Patient(TypedDict):
    """A patient profile (PHI) with its id and version."""

    id: str
    version: int
    created_at: str
    updated_at: str
    mrn: str
    given_name: str
    family_name: str
    birth_date: str
    sex: str
    email: NotRequired[str]
    phone: NotRequired[str]
    address: NotRequired[Dict[str, Any]]
    data: NotRequired[Dict[str, Any]]


class Record(TypedDict):
    """A clinical record (its `data` is PHI)."""

    id: str
    patient_id: str
    kind: str
    data: Dict[str, Any]
    version: int
    created_by: str
    created_at: str
    updated_at: str


class Page(TypedDict):
    """One page of a list; pass `next_cursor` back for the next page."""

    items: List[Dict[str, Any]]
    next_cursor: Optional[str]


class Grant(TypedDict):
    """A break-glass grant."""

    grant_id: str
    patient_id: str
    expires_at: str


class AuditReport(TypedDict):
    """The result of verifying every audit chain."""

    ok: bool
    chains: List[Dict[str, Any]]


class AccessLogEntry(TypedDict):
    """One access to a patient's record (S-AUD-9), as the patient sees it:
    an audited operation on the patient that went ahead. The items of
    :meth:`Clarity.patient_access_log`'s pages."""

    event_id: str
    at: str
    #: The user or service account; None for the local operator's maintenance.
    accessor_id: Optional[str]
    #: The accessor's display name now, if the account has one.
    accessor_name: Optional[str]
    #: The accessor's roles at the time.
    accessor_roles: List[str]
    #: What was done, e.g. ``"record.read"``, ``"patient.update"``.
    action: str
    #: The FHIR action code: C, R, U, D or E.
    action_code: str
    #: The purpose of use the accessor declared, if any.
    purpose: Optional[str]
    #: Whether the access went through a break-glass grant.
    break_glass: bool
    #: The record, grant or user the access concerned, if any.
    entity_id: Optional[str]


class NewDisclosure(TypedDict):
    """A disclosure to record: what was disclosed, to whom, why and under
    which legal basis (PHI), and when (now when absent; not in the future)."""

    recipient: str
    recipient_address: NotRequired[str]
    purpose: str
    description: str
    legal_basis: str
    disclosed_at: NotRequired[str]


class Disclosure(TypedDict):
    """A recorded disclosure of a patient's information (its details are PHI)."""

    id: str
    patient_id: str
    disclosed_at: str
    recipient: str
    recipient_address: NotRequired[str]
    purpose: str
    description: str
    legal_basis: str
    recorded_by: str
    recorded_at: str


#: An accounting of a patient's disclosures (45 CFR 164.528) from ``from``
#: (at most six years back) to ``to`` (when it was produced), oldest
#: disclosure first. The functional form, since ``from`` is a Python keyword.
Accounting = TypedDict(
    "Accounting",
    {"patient_id": str, "from": str, "to": str, "disclosures": List[Disclosure]},
)
