"""Clarity for Python: encrypted PHI storage, authentication, access control
and a tamper-evident audit trail, embedded in-process over the C ABI.

    import clarity

    with clarity.Clarity({"data_dir": "/var/lib/myapp/clarity"}) as c:
        tokens = c.login("dr@example.org", "a long passphrase")
        patient = c.get_patient(tokens["access_token"], patient_id)

See docs/bindings-python.md in the repository.
"""

from .client import Clarity, version
from .errors import (
    AlreadyExists,
    BackendError,
    ClarityError,
    ConfigError,
    Conflict,
    IntegrityError,
    InternalError,
    InvalidInput,
    KeyMaterialError,
    MfaRequired,
    NotFound,
    NullParameter,
    PanicError,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnknownError,
)

__version__ = "0.1.0"

__all__ = [
    "Clarity",
    "version",
    "ClarityError",
    "InvalidInput",
    "ConfigError",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "IntegrityError",
    "KeyMaterialError",
    "Unauthenticated",
    "PermissionDenied",
    "MfaRequired",
    "RateLimited",
    "BackendError",
    "Unavailable",
    "InternalError",
    "NullParameter",
    "PanicError",
    "UnknownError",
]
