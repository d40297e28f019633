"""Exceptions raised by the Clarity client, one per result code of the C ABI.

Every exception is a :class:`ClarityError` carrying ``code`` (the stable
name, e.g. ``"not_found"``, the same as the HTTP API's error codes) and
``result`` (the numeric ``clarity_result``). Messages never hold PHI,
tokens or keys.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type


class ClarityError(Exception):
    """Base class of every error from Clarity."""

    #: Stable machine-readable name of the error.
    code: str = "unknown"
    #: The C ABI's numeric result code.
    result: int = 199

    def __init__(self, message: str, *, code: str = "", result: int = -1) -> None:
        super().__init__(message)
        if code:
            self.code = code
        if result >= 0:
            self.result = result

    @property
    def message(self) -> str:
        """The error message (never PHI or secrets)."""
        return str(self.args[0]) if self.args else ""


class InvalidInput(ClarityError, ValueError):
    """Bad input: malformed JSON, a bad id, a broken rule (e.g. password policy)."""

    code, result = "invalid_input", 1


class ConfigError(ClarityError):
    """The configuration is invalid."""

    code, result = "config", 2


class NotFound(ClarityError, LookupError):
    """No such object, or one the caller may not know exists."""

    code, result = "not_found", 3


class AlreadyExists(ClarityError):
    """An object with the same identity exists already."""

    code, result = "already_exists", 4


class Conflict(ClarityError):
    """An update named a stale version; nothing was written."""

    code, result = "conflict", 5


class IntegrityError(ClarityError):
    """Stored data failed its integrity check."""

    code, result = "integrity", 6


class KeyMaterialError(ClarityError):
    """Key material is missing, unreadable or not this store's."""

    code, result = "key", 7


class Unauthenticated(ClarityError):
    """The token is missing or invalid, or its session has ended."""

    code, result = "unauthenticated", 8


class PermissionDenied(ClarityError):
    """The caller may not do this."""

    code, result = "permission_denied", 9


class MfaRequired(ClarityError):
    """A TOTP code is required."""

    code, result = "mfa_required", 10


class RateLimited(ClarityError):
    """Too many attempts; retry later."""

    code, result = "rate_limited", 11


class BackendError(ClarityError):
    """The storage backend failed."""

    code, result = "backend", 12


class Unavailable(ClarityError):
    """A dependency is unavailable right now; retrying later may succeed."""

    code, result = "unavailable", 13


class InternalError(ClarityError):
    """A bug inside Clarity."""

    code, result = "internal", 14


class NullParameter(ClarityError):
    """A required argument was missing at the C ABI (a bug in this package)."""

    code, result = "null_parameter", 100


class PanicError(ClarityError):
    """A panic was caught inside the library (a bug)."""

    code, result = "panic", 101


class UnknownError(ClarityError):
    """A result code this version of the package does not know."""

    code, result = "unknown", 199


#: Result code -> exception class.
BY_RESULT: Dict[int, Type[ClarityError]] = {
    cls.result: cls
    for cls in (
        InvalidInput,
        ConfigError,
        NotFound,
        AlreadyExists,
        Conflict,
        IntegrityError,
        KeyMaterialError,
        Unauthenticated,
        PermissionDenied,
        MfaRequired,
        RateLimited,
        BackendError,
        Unavailable,
        InternalError,
        NullParameter,
        PanicError,
        UnknownError,
    )
}


#: The C ABI's parameter names that differ from this package's: the argument
#: a message should name instead, or None where the C function's JSON document
#: is built from the method's keyword arguments, whose names its field paths
#: already use (the prefix is dropped). Every `*_json` parameter of
#: clarity.h is listed (tests/test_errors.py).
C_PARAMETER_NAMES: Dict[str, Optional[str]] = {
    "request_json": None,
    "user_json": None,
    "update_json": None,
    "account_json": None,
    "rotation_json": None,
    "search_json": None,
    "assignment_json": None,
    "filter_json": None,
    "range_json": None,
    "profile_json": "profile",
    "data_json": "data",
    "disclosure_json": "disclosure",
    "from": "from_",
}

_LEADING_NAME = re.compile(r"^([a-z][a-z0-9_]*)(: | must | is )")
#: What the C ABI's message about a JSON document adds that means nothing
#: here: the kind (the exception's class says it) and the position in the
#: JSON text this package wrote itself.
_KIND_PREFIX = "invalid input: "
_JSON_POSITION = re.compile(r" \(line \d+, column \d+\)$")


def binding_message(message: str) -> str:
    """`message` with a leading C parameter name replaced by this package's
    name for it (``profile_json: ...`` -> ``profile: ...``), and without the
    kind and JSON position the C ABI adds about a document this package
    encoded."""
    match = _LEADING_NAME.match(message)
    if not match or match.group(1) not in C_PARAMETER_NAMES:
        return message
    name = C_PARAMETER_NAMES[match.group(1)]
    rest = message[match.end(1) :]
    if rest.startswith(": "):
        detail = _JSON_POSITION.sub("", rest[2:])
        detail = detail[len(_KIND_PREFIX) :] if detail.startswith(_KIND_PREFIX) else detail
        return detail if name is None else f"{name}: {detail}"
    return ("the request" if name is None else name) + rest


def error_for(result: int, message: str) -> ClarityError:
    """The exception for a result code (unknown codes: :class:`UnknownError`),
    its message naming this package's parameters."""
    cls = BY_RESULT.get(result, UnknownError)
    message = binding_message(message)
    return cls(message or cls.code, code=cls.code if result in BY_RESULT else "unknown", result=result)
