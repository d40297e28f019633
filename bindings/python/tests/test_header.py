"""The ctypes declarations match clarity-ffi/include/clarity.h: every
function of the header is declared here with the same parameter and return
types, and nothing is declared that the header lacks."""

from __future__ import annotations

import ctypes
import re
from typing import Dict, List, Tuple

from clarity import _native
from conftest import REPO

HEADER = REPO / "clarity-ffi" / "include" / "clarity.h"

# C type (as cbindgen writes it) -> ctypes type used in _native.
C_TYPES = {
    "clarity_result": ctypes.c_uint32,
    "void": None,
    "const char *": ctypes.c_char_p,
    "char **": ctypes.POINTER(ctypes.c_void_p),
    "const struct clarity_client *": ctypes.c_void_p,
    "struct clarity_client *": ctypes.c_void_p,
    "struct clarity_client **": ctypes.POINTER(ctypes.c_void_p),
    "const struct clarity_error *": ctypes.c_void_p,
    "struct clarity_error *": ctypes.c_void_p,
    "struct clarity_error **": ctypes.POINTER(ctypes.c_void_p),
    "char *": ctypes.c_void_p,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t *": ctypes.POINTER(ctypes.c_uint64),
    "bool": ctypes.c_bool,
}


def prototypes() -> Dict[str, Tuple[object, List[object]]]:
    text = re.sub(r"//[^\n]*", "", HEADER.read_text())
    found = {}
    for ret, name, params in re.findall(
        r"^(clarity_result|void|const char \*)\s*(clarity_\w+)\(([^)]*)\);", text, re.M
    ):
        args = []
        for param in " ".join(params.split()).split(","):
            param = param.strip()
            if param in ("void", ""):
                continue
            ctype = re.sub(r"\s*\b\w+$", "", param).replace(" *", " *").strip()
            ctype = re.sub(r"\s+\*", " *", ctype).replace("* *", "**")
            assert ctype in C_TYPES, f"{name}: unknown C type {ctype!r}"
            args.append(C_TYPES[ctype])
        found[name] = (C_TYPES[ret.strip()], args)
    return found


def test_declarations_match_the_header() -> None:
    header = prototypes()
    declared = {**_native.SIGNATURES, **_native.TESTING_SIGNATURES}
    assert len(header) > 40, "the header parsed"
    assert sorted(header) == sorted(declared)
    for name, (ret, args) in header.items():
        assert declared[name] == (ret, args), f"{name} drifted from clarity.h"
