"""The :class:`Clarity` client: one open Clarity instance in this process."""

from __future__ import annotations

import ctypes
import json
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Union, cast, overload

from . import _native
from ._native import encode, lib, take_string
from .errors import ClarityError, error_for
from .types import (
    AccessToken,
    Accounting,
    AuditReport,
    ClientSecret,
    Disclosure,
    Grant,
    Page,
    PasswordReset,
    Patient,
    Principal,
    Record,
    Tokens,
    User,
)

Config = Union[str, Mapping[str, Any]]


def version() -> str:
    """The version of the loaded native library, e.g. ``"0.1.0"``."""
    return cast(bytes, lib.clarity_version()).decode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=str).encode("utf-8")


def _time(value: Union[str, datetime, None]) -> Optional[str]:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Clarity:
    """An open Clarity instance (the store, the keys, the audit writer), in process.

    ``config`` is the configuration as TOML text, a JSON text, or a mapping
    (the keys of docs/configuration.md, e.g. ``{"data_dir": "..."}`` or
    ``{"store": {"backend": "postgres", "postgres_url": "..."}}``). Environment
    variables are not read.

    Thread-safe: share one instance between threads; calls run in parallel
    (the GIL is released while the library works). Use it as a context
    manager, or call :meth:`close`, which waits for running calls, writes the
    audit trail out and frees the instance.

    Operations on behalf of a user take that user's access token (from
    :meth:`login`); it is checked on every call, so a logout or a role change
    takes effect at once.

    Errors raise subclasses of :class:`clarity.ClarityError`.
    """

    def __init__(self, config: Config = "") -> None:
        self._lock = threading.Condition()
        self._active = 0
        self._handle: Optional[int] = None
        text = config if isinstance(config, str) else json.dumps(dict(config), default=str)
        handle = ctypes.c_void_p()
        err = ctypes.c_void_p()
        result = lib.clarity_client_open(encode(text), ctypes.byref(handle), ctypes.byref(err))
        if result != 0:
            raise _take_error(result, err)
        self._handle = handle.value

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Waits for running calls, flushes the audit trail and frees the
        instance. Idempotent; later calls raise :class:`ClarityError`."""
        with self._lock:
            handle, self._handle = self._handle, None
            while self._active:
                self._lock.wait()
        if handle:
            lib.clarity_client_close(handle)

    def __enter__(self) -> "Clarity":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a backstop: close explicitly
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    @contextmanager
    def _using(self) -> Iterator[int]:
        with self._lock:
            if not self._handle:
                raise ClarityError("the Clarity client is closed", code="closed")
            self._active += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._lock:
                self._active -= 1
                if not self._active:
                    self._lock.notify_all()

    def _call(self, name: str, *args: Any) -> str:
        """Calls a function whose last parameters are `char **out, clarity_error **err`."""
        with self._using() as handle:
            out = ctypes.c_void_p()
            err = ctypes.c_void_p()
            result = getattr(lib, name)(handle, *args, ctypes.byref(out), ctypes.byref(err))
            if result != 0:
                raise _take_error(result, err)
            return take_string(out.value)

    def _json(self, name: str, *args: Any) -> Any:
        return json.loads(self._call(name, *args))

    def _do(self, name: str, *args: Any) -> None:
        """Calls a function whose last parameter is `clarity_error **err`."""
        with self._using() as handle:
            err = ctypes.c_void_p()
            result = getattr(lib, name)(handle, *args, ctypes.byref(err))
            if result != 0:
                raise _take_error(result, err)

    def check(self) -> None:
        """Readiness: raises unless the database answers and the keys are served."""
        self._do("clarity_client_check")

    # -- setup and sessions ----------------------------------------------------

    def issue_setup_code(self) -> str:
        """A new one-time code for the first admin (only while no user exists)."""
        return self._call("clarity_setup_code_issue")

    def setup(self, setup_code: str, email: str, password: str) -> User:
        """Creates the first admin with the one-time setup code."""
        request = {"setup_code": setup_code, "email": email, "password": password}
        return cast(User, self._json("clarity_setup", _dumps(request)))

    def login(self, email: str, password: str, totp: Optional[str] = None) -> Tokens:
        """Logs in; returns access and refresh tokens and the user."""
        request: Dict[str, Any] = {"email": email, "password": password}
        if totp is not None:
            request["totp"] = totp
        return cast(Tokens, self._json("clarity_login", _dumps(request)))

    def refresh(self, refresh_token: str) -> Tokens:
        """Exchanges a refresh token (once) for new tokens."""
        return cast(Tokens, self._json("clarity_refresh", encode(refresh_token)))

    def logout(self, token: str) -> None:
        """Ends the token's session now."""
        self._do("clarity_logout", encode(token))

    def authenticate(self, token: str) -> Principal:
        """Who the token belongs to (raises :class:`Unauthenticated` if it is not live).

        The token is Clarity's own, or the access token of an OpenID Connect
        provider configured under ``[[auth.oidc]]`` (docs/authentication.md):
        a host application passes on the token its user already has. Every
        method taking a ``token`` accepts either kind."""
        return cast(Principal, self._json("clarity_authenticate", encode(token)))

    def backchannel_logout(self, logout_token: str) -> None:
        """Ends sessions at an OpenID Connect provider's request: pass on the
        ``logout_token`` the provider POSTed to your back-channel logout
        endpoint. The subject's tokens issued until then, and the provider
        session's tokens, stop working at once. Raises :class:`InvalidInput`
        for a token that does not verify."""
        self._do("clarity_oidc_backchannel_logout", encode(logout_token))

    def mfa_enroll(self, token: str) -> Dict[str, str]:
        """Starts TOTP enrolment: ``{"secret", "otpauth_url"}`` (show once)."""
        return cast(Dict[str, str], self._json("clarity_mfa_enroll", encode(token)))

    def mfa_confirm(self, token: str, code: str) -> User:
        """Confirms TOTP enrolment with a current code."""
        return cast(User, self._json("clarity_mfa_confirm", encode(token), encode(code)))

    def change_password(self, token: str, current_password: str, new_password: str) -> None:
        """Changes the caller's password; every session of the user ends."""
        request = {"current_password": current_password, "new_password": new_password}
        self._do("clarity_password_change", encode(token), _dumps(request))

    def reset_password(self, token: str, user_id: str) -> PasswordReset:
        """Resets a user's password (admins, not their own): the old one stops
        working, the user's sessions end, and the returned one-time
        ``reset_code`` (valid 24 hours) lets the user set a new password with
        :meth:`complete_password_reset`. The code never logs in."""
        return cast(
            PasswordReset, self._json("clarity_password_reset", encode(token), encode(user_id))
        )

    def complete_password_reset(
        self, email: str, reset_code: str, new_password: str, totp: Optional[str] = None
    ) -> None:
        """Sets a new password with an admin's reset code (no token needed);
        checked and throttled like a login, and usable once."""
        request: Dict[str, Any] = {
            "email": email,
            "reset_code": reset_code,
            "new_password": new_password,
        }
        if totp is not None:
            request["totp"] = totp
        self._do("clarity_password_reset_complete", _dumps(request))

    def reset_mfa(self, token: str, user_id: str) -> User:
        """Removes a user's second factor (admins, not their own), for a lost
        authenticator; the user's sessions end."""
        return cast(User, self._json("clarity_mfa_reset", encode(token), encode(user_id)))

    # -- users -----------------------------------------------------------------

    def create_user(
        self,
        token: str,
        email: str,
        password: str,
        roles: List[str],
        display_name: Optional[str] = None,
        patient_id: Optional[str] = None,
    ) -> User:
        """Creates a user (admins)."""
        user = _new_user(email, password, roles, display_name, patient_id)
        return cast(User, self._json("clarity_user_create", encode(token), _dumps(user)))

    def create_user_as_operator(
        self,
        email: str,
        password: str,
        roles: List[str],
        display_name: Optional[str] = None,
        patient_id: Optional[str] = None,
    ) -> User:
        """Creates a user as the local operator (like ``clarity user create``):
        whoever holds this instance holds the data directory and keys already."""
        user = _new_user(email, password, roles, display_name, patient_id)
        return cast(User, self._json("clarity_user_create_as_operator", _dumps(user)))

    def get_user(self, token: str, user_id: str) -> User:
        """Reads a user (admins: anyone; others: themselves)."""
        return cast(User, self._json("clarity_user_get", encode(token), encode(user_id)))

    def list_users(self, token: str, limit: int = 0, cursor: Optional[str] = None) -> Page:
        """One page of users (admins)."""
        return cast(Page, self._json("clarity_user_list", encode(token), limit, encode(cursor)))

    def update_user(self, token: str, user_id: str, **changes: Any) -> User:
        """Changes ``roles``, ``disabled``, ``display_name`` or ``patient_id`` (admins)."""
        return cast(
            User,
            self._json("clarity_user_update", encode(token), encode(user_id), _dumps(changes)),
        )

    # -- service accounts ------------------------------------------------------

    def create_service_account(
        self,
        token: str,
        name: str,
        roles: List[str],
        display_name: Optional[str] = None,
    ) -> ClientSecret:
        """Creates a service account (admins); its client secret is shown this once."""
        account: Dict[str, Any] = {"name": name, "roles": roles}
        if display_name is not None:
            account["display_name"] = display_name
        return cast(
            ClientSecret,
            self._json("clarity_service_account_create", encode(token), _dumps(account)),
        )

    def rotate_service_secret(
        self, token: str, account_id: str, overlap_secs: Optional[int] = None
    ) -> ClientSecret:
        """A new client secret (admins); the previous one works for ``overlap_secs``
        (default one day, at most seven; 0 ends it at once)."""
        rotation = None if overlap_secs is None else _dumps({"overlap_secs": overlap_secs})
        return cast(
            ClientSecret,
            self._json(
                "clarity_service_secret_rotate", encode(token), encode(account_id), rotation
            ),
        )

    def delete_service_account(self, token: str, account_id: str) -> None:
        """Deletes a service account (admins): its secrets go, its sessions end."""
        self._do("clarity_service_account_delete", encode(token), encode(account_id))

    def client_credentials(self, client_id: str, client_secret: str) -> AccessToken:
        """The client-credentials grant: a service account's access token."""
        return cast(
            AccessToken,
            self._json(
                "clarity_client_credentials", encode(client_id), encode(client_secret)
            ),
        )

    # -- patients --------------------------------------------------------------

    def create_patient(self, token: str, profile: Mapping[str, Any]) -> Patient:
        """Creates a patient (clinicians); the creator joins its care team."""
        return cast(Patient, self._json("clarity_patient_create", encode(token), _dumps(profile)))

    def get_patient(self, token: str, patient_id: str) -> Patient:
        """Reads a patient (:class:`NotFound` also when the caller may not see it)."""
        return cast(Patient, self._json("clarity_patient_get", encode(token), encode(patient_id)))

    def update_patient(
        self, token: str, patient_id: str, expected_version: int, profile: Mapping[str, Any]
    ) -> Patient:
        """Replaces the profile if its version is ``expected_version`` (else :class:`Conflict`)."""
        return cast(
            Patient,
            self._json(
                "clarity_patient_update",
                encode(token),
                encode(patient_id),
                expected_version,
                _dumps(profile),
            ),
        )

    def erase_patient(self, token: str, patient_id: str) -> None:
        """Erases a patient by destroying its data key (admins)."""
        self._do("clarity_patient_erase", encode(token), encode(patient_id))

    def list_patients(self, token: str, limit: int = 0, cursor: Optional[str] = None) -> Page:
        """One page of the patients the caller may read."""
        return cast(Page, self._json("clarity_patient_list", encode(token), limit, encode(cursor)))

    def search_patients(
        self,
        token: str,
        *,
        mrn: Optional[str] = None,
        email: Optional[str] = None,
        family_name: Optional[str] = None,
        birth_date: Optional[str] = None,
    ) -> Page:
        """Patients the caller may read with an exact MRN, email, or family
        name and birth date."""
        search = {
            k: v
            for k, v in (
                ("mrn", mrn),
                ("email", email),
                ("family_name", family_name),
                ("birth_date", birth_date),
            )
            if v is not None
        }
        return cast(Page, self._json("clarity_patient_search", encode(token), _dumps(search)))

    def research_patients(self, token: str, limit: int = 0, cursor: Optional[str] = None) -> Page:
        """De-identified patients (researchers)."""
        return cast(
            Page, self._json("clarity_research_patients", encode(token), limit, encode(cursor))
        )

    # -- records ---------------------------------------------------------------

    def create_record(
        self, token: str, patient_id: str, kind: str, data: Mapping[str, Any]
    ) -> Record:
        """Creates a record of ``kind`` (e.g. ``"note"``) for a patient."""
        return cast(
            Record,
            self._json(
                "clarity_record_create", encode(token), encode(patient_id), encode(kind), _dumps(data)
            ),
        )

    def get_record(self, token: str, record_id: str) -> Record:
        """Reads a record."""
        return cast(Record, self._json("clarity_record_get", encode(token), encode(record_id)))

    def update_record(
        self, token: str, record_id: str, expected_version: int, data: Mapping[str, Any]
    ) -> Record:
        """Replaces a record's body if its version is ``expected_version``."""
        return cast(
            Record,
            self._json(
                "clarity_record_update",
                encode(token),
                encode(record_id),
                expected_version,
                _dumps(data),
            ),
        )

    def delete_record(self, token: str, record_id: str) -> None:
        """Deletes a record."""
        self._do("clarity_record_delete", encode(token), encode(record_id))

    def list_records(
        self, token: str, patient_id: str, limit: int = 0, cursor: Optional[str] = None
    ) -> Page:
        """One page of a patient's records."""
        return cast(
            Page,
            self._json(
                "clarity_record_list", encode(token), encode(patient_id), limit, encode(cursor)
            ),
        )

    # -- care teams and break-glass ----------------------------------------------

    def add_care_team_member(
        self,
        token: str,
        patient_id: str,
        user_id: str,
        relationship: Optional[str] = None,
        expires_at: Union[str, datetime, None] = None,
    ) -> None:
        """Assigns a user to a patient's care team (admins)."""
        assignment: Dict[str, Any] = {"user_id": user_id}
        if relationship is not None:
            assignment["relationship"] = relationship
        if expires_at is not None:
            assignment["expires_at"] = _time(expires_at)
        self._do("clarity_care_team_add", encode(token), encode(patient_id), _dumps(assignment))

    def remove_care_team_member(self, token: str, patient_id: str, user_id: str) -> None:
        """Removes a user from a patient's care team (admins)."""
        self._do("clarity_care_team_remove", encode(token), encode(patient_id), encode(user_id))

    def break_glass(
        self, token: str, patient_id: str, reason: str, totp: Optional[str] = None
    ) -> Grant:
        """Emergency access to a patient (clinicians): time-boxed, alerted, reviewed."""
        request: Dict[str, Any] = {"patient_id": patient_id, "reason": reason}
        if totp is not None:
            request["totp"] = totp
        return cast(Grant, self._json("clarity_break_glass", encode(token), _dumps(request)))

    def list_grants(
        self,
        token: str,
        unreviewed_only: bool = False,
        limit: int = 0,
        cursor: Optional[str] = None,
    ) -> Page:
        """Break-glass grants for review (admins)."""
        return cast(
            Page,
            self._json(
                "clarity_grant_list", encode(token), unreviewed_only, limit, encode(cursor)
            ),
        )

    def review_grant(self, token: str, grant_id: str) -> None:
        """Marks a break-glass grant reviewed (admins)."""
        self._do("clarity_grant_review", encode(token), encode(grant_id))

    # -- audit and keys ----------------------------------------------------------

    def audit_events(
        self,
        token: str,
        filter: Optional[Mapping[str, Any]] = None,
        limit: int = 0,
        cursor: Optional[str] = None,
    ) -> Page:
        """Audit events matching ``filter`` (``patient_id``, ``actor_id``,
        ``action``, ``outcome``, ``from``, ``to``), oldest first."""
        return cast(
            Page,
            self._json(
                "clarity_audit_query",
                encode(token),
                _dumps(filter) if filter is not None else None,
                limit,
                encode(cursor),
            ),
        )

    def verify_audit(self, token: str) -> AuditReport:
        """Verifies every audit chain: ``{"ok": bool, "chains": [...]}``."""
        return cast(AuditReport, self._json("clarity_audit_verify", encode(token)))

    def export_audit_fhir(
        self, token: str, filter: Optional[Mapping[str, Any]] = None, limit: int = 0
    ) -> str:
        """Matching events as FHIR R4 AuditEvent NDJSON."""
        return self._call(
            "clarity_audit_export",
            encode(token),
            _dumps(filter) if filter is not None else None,
            limit,
        )

    def purge_audit(self, token: str, before: Union[str, datetime]) -> int:
        """Deletes events older than ``before`` and the retention period (admins)."""
        with self._using() as handle:
            purged = ctypes.c_uint64()
            err = ctypes.c_void_p()
            result = lib.clarity_audit_purge(
                handle, encode(token), encode(_time(before)), ctypes.byref(purged), ctypes.byref(err)
            )
            if result != 0:
                raise _take_error(result, err)
            return purged.value

    def key_status(self, token: str) -> Dict[str, Any]:
        """KEK versions and the data keys each wraps (admins)."""
        return cast(Dict[str, Any], self._json("clarity_keys_status", encode(token)))

    def rotate_keys(self, token: str) -> Dict[str, Any]:
        """Rotates the key-encryption key and re-wraps every data key (admins)."""
        return cast(Dict[str, Any], self._json("clarity_keys_rotate", encode(token)))

    # -- the patient's view and disclosures (S-AUD-9) ----------------------------

    def patient_access_log(
        self,
        token: str,
        patient_id: str,
        *,
        from_: Union[str, datetime, None] = None,
        to: Union[str, datetime, None] = None,
        limit: int = 0,
        cursor: Optional[str] = None,
    ) -> Page:
        """Who accessed a patient's record, oldest first: one page of
        :class:`~clarity.types.AccessLogEntry` (when, the accessor's name and
        roles, the action, the purpose of use, break-glass), optionally from
        ``from_`` and before ``to``. The patient its own; auditors any."""
        bounds = {k: _time(v) for k, v in (("from", from_), ("to", to)) if v is not None}
        return cast(
            Page,
            self._json(
                "clarity_patient_access_log",
                encode(token),
                encode(patient_id),
                _dumps(bounds) if bounds else None,
                limit,
                encode(cursor),
            ),
        )

    def record_disclosure(
        self, token: str, patient_id: str, disclosure: Mapping[str, Any]
    ) -> Disclosure:
        """Records a disclosure of the patient's information to an outside
        recipient: ``{"recipient", "recipient_address"?, "purpose",
        "description", "legal_basis", "disclosed_at"?}`` (the care team,
        clinicians under break-glass, auditors)."""
        details = dict(disclosure)
        if "disclosed_at" in details:
            details["disclosed_at"] = _time(details["disclosed_at"])
        return cast(
            Disclosure,
            self._json(
                "clarity_disclosure_record", encode(token), encode(patient_id), _dumps(details)
            ),
        )

    def list_disclosures(
        self, token: str, patient_id: str, limit: int = 0, cursor: Optional[str] = None
    ) -> Page:
        """One page of a patient's disclosures, in the order they were recorded
        (the patient, auditors, the care team)."""
        return cast(
            Page,
            self._json(
                "clarity_disclosure_list", encode(token), encode(patient_id), limit, encode(cursor)
            ),
        )

    @overload
    def disclosure_accounting(
        self,
        token: str,
        patient_id: str,
        *,
        from_: Union[str, datetime, None] = ...,
        format: Literal["json"] = ...,
    ) -> Accounting: ...

    @overload
    def disclosure_accounting(
        self,
        token: str,
        patient_id: str,
        *,
        from_: Union[str, datetime, None] = ...,
        format: Literal["text"],
    ) -> str: ...

    def disclosure_accounting(
        self,
        token: str,
        patient_id: str,
        *,
        from_: Union[str, datetime, None] = None,
        format: str = "json",
    ) -> Union[Accounting, str]:
        """The accounting of a patient's disclosures from ``from_`` (at most six
        years back; six years when None) until now, oldest first: a dict with
        ``format="json"``, printable text with ``format="text"`` (the patient,
        auditors, the care team)."""
        text = self._call(
            "clarity_disclosure_accounting",
            encode(token),
            encode(patient_id),
            encode(_time(from_)),
            encode(format),
        )
        if format == "text":
            return text
        return cast(Accounting, json.loads(text))


def _new_user(
    email: str,
    password: str,
    roles: List[str],
    display_name: Optional[str],
    patient_id: Optional[str],
) -> Dict[str, Any]:
    user: Dict[str, Any] = {"email": email, "password": password, "roles": list(roles)}
    if display_name is not None:
        user["display_name"] = display_name
    if patient_id is not None:
        user["patient_id"] = patient_id
    return user


def _take_error(result: int, err: ctypes.c_void_p) -> ClarityError:
    message = ""
    if err.value:
        raw = lib.clarity_error_message(err.value)
        message = raw.decode("utf-8", "replace") if raw else ""
        lib.clarity_error_free(err.value)
    return error_for(result, message)


def matrix_specification() -> Optional[Dict[str, Any]]:
    """The authorisation matrix specification, from test builds of the
    library only (``None`` otherwise). For the test suite."""
    if not _native.has("clarity_testing_matrix"):
        return None
    out = ctypes.c_void_p()
    err = ctypes.c_void_p()
    result = lib.clarity_testing_matrix(ctypes.byref(out), ctypes.byref(err))
    if result != 0:
        raise _take_error(result, err)
    return cast(Dict[str, Any], json.loads(take_string(out.value)))
