"""The C ABI of libclarity, declared for ctypes.

Declarations mirror `clarity-ffi/include/clarity.h`; the test suite parses
that header and fails when a declaration here drifts from it
(tests/test_header.py). Only this module and `_call` touch raw pointers.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from ctypes import POINTER, c_bool, c_char_p, c_int64, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_OUT = POINTER(c_void_p)  # char ** / struct ** out-parameters
_HANDLE = c_void_p  # const struct clarity_client *
_STR = c_char_p  # const char *
_RESULT = c_uint32  # clarity_result

#: name -> (return type, argument types); the trailing `clarity_error **` included.
SIGNATURES: Dict[str, Tuple[object, List[object]]] = {
    "clarity_version": (c_char_p, []),
    "clarity_result_name": (c_char_p, [c_uint32]),
    "clarity_error_message": (c_char_p, [c_void_p]),
    "clarity_error_code": (_RESULT, [c_void_p]),
    "clarity_error_free": (None, [c_void_p]),
    "clarity_string_free": (None, [c_void_p]),
    "clarity_client_open": (_RESULT, [_STR, _OUT, _OUT]),
    "clarity_client_check": (_RESULT, [_HANDLE, _OUT]),
    "clarity_client_close": (None, [_HANDLE]),
    "clarity_setup_code_issue": (_RESULT, [_HANDLE, _OUT, _OUT]),
    "clarity_setup": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_login": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_refresh": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_logout": (_RESULT, [_HANDLE, _STR, _OUT]),
    "clarity_oidc_backchannel_logout": (_RESULT, [_HANDLE, _STR, _OUT]),
    "clarity_authenticate": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_mfa_enroll": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_mfa_confirm": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_password_change": (_RESULT, [_HANDLE, _STR, _STR, _OUT]),
    "clarity_password_reset": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_password_reset_complete": (_RESULT, [_HANDLE, _STR, _OUT]),
    "clarity_mfa_reset": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_user_create": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_user_create_as_operator": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_user_get": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_user_list": (_RESULT, [_HANDLE, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_user_update": (_RESULT, [_HANDLE, _STR, _STR, _STR, _OUT, _OUT]),
    "clarity_service_account_create": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_service_secret_rotate": (_RESULT, [_HANDLE, _STR, _STR, _STR, _OUT, _OUT]),
    "clarity_service_account_delete": (_RESULT, [_HANDLE, _STR, _STR, _OUT]),
    "clarity_client_credentials": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_patient_create": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_patient_get": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_patient_update": (_RESULT, [_HANDLE, _STR, _STR, c_int64, _STR, _OUT, _OUT]),
    "clarity_patient_erase": (_RESULT, [_HANDLE, _STR, _STR, _OUT]),
    "clarity_patient_list": (_RESULT, [_HANDLE, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_patient_search": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_research_patients": (_RESULT, [_HANDLE, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_record_create": (_RESULT, [_HANDLE, _STR, _STR, _STR, _STR, _OUT, _OUT]),
    "clarity_record_get": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_record_update": (_RESULT, [_HANDLE, _STR, _STR, c_int64, _STR, _OUT, _OUT]),
    "clarity_record_delete": (_RESULT, [_HANDLE, _STR, _STR, _OUT]),
    "clarity_record_list": (_RESULT, [_HANDLE, _STR, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_care_team_add": (_RESULT, [_HANDLE, _STR, _STR, _STR, _OUT]),
    "clarity_care_team_remove": (_RESULT, [_HANDLE, _STR, _STR, _STR, _OUT]),
    "clarity_break_glass": (_RESULT, [_HANDLE, _STR, _STR, _OUT, _OUT]),
    "clarity_grant_list": (_RESULT, [_HANDLE, _STR, c_bool, c_uint32, _STR, _OUT, _OUT]),
    "clarity_grant_review": (_RESULT, [_HANDLE, _STR, _STR, _OUT]),
    "clarity_audit_query": (_RESULT, [_HANDLE, _STR, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_audit_verify": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_audit_export": (_RESULT, [_HANDLE, _STR, _STR, c_uint32, _OUT, _OUT]),
    "clarity_audit_purge": (_RESULT, [_HANDLE, _STR, _STR, POINTER(c_uint64), _OUT]),
    "clarity_patient_access_log": (_RESULT, [_HANDLE, _STR, _STR, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_disclosure_record": (_RESULT, [_HANDLE, _STR, _STR, _STR, _OUT, _OUT]),
    "clarity_disclosure_list": (_RESULT, [_HANDLE, _STR, _STR, c_uint32, _STR, _OUT, _OUT]),
    "clarity_disclosure_accounting": (_RESULT, [_HANDLE, _STR, _STR, _STR, _STR, _OUT, _OUT]),
    "clarity_keys_status": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
    "clarity_keys_rotate": (_RESULT, [_HANDLE, _STR, _OUT, _OUT]),
}

#: Exported only by test builds of the library (cargo feature `testing`).
TESTING_SIGNATURES: Dict[str, Tuple[object, List[object]]] = {
    "clarity_testing_matrix": (_RESULT, [_OUT, _OUT]),
}


def _library_path() -> Path:
    """The native library: `CLARITY_LIBRARY` if set (another build of
    libclarity, such as the test suite's), else the one built into the package
    (`_libclarity` with this platform's extension suffix)."""
    override = os.environ.get("CLARITY_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ImportError(f"CLARITY_LIBRARY names no file: {override}")
        return path
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_libclarity{suffix}"
        if candidate.is_file():
            return candidate
    raise ImportError(
        f"the native library is missing from {here}: reinstall the package "
        "(pip install <path>/bindings/python builds it)"
    )


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    for name, (restype, argtypes) in TESTING_SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            fn.argtypes = argtypes
    return lib


lib = _load()


def has(name: str) -> bool:
    """Whether the loaded library exports `name` (test-only exports may be absent)."""
    return getattr(lib, name, None) is not None


def take_string(ptr: Optional[int]) -> str:
    """Copies a library-owned string out and frees (zeroizes) the original."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.clarity_string_free(ptr)


def encode(value: Optional[str]) -> Optional[bytes]:
    """A Python string as a NUL-terminated UTF-8 argument (None stays NULL)."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("strings passed to Clarity must not contain NUL characters")
    return value.encode("utf-8")


__all__ = ["lib", "has", "take_string", "encode", "SIGNATURES", "TESTING_SIGNATURES"]
