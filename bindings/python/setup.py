"""Builds the native library into the package.

`pip install ./bindings/python` runs `cargo build --release -p clarity-ffi`
in the repository this directory belongs to and ships the resulting
`libclarity` inside the package. To package a library built already (the
test suite builds it once for C, Python and Node), set LIBCLARITY_PATH to
its path.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def library_name() -> str:
    if sys.platform == "darwin":
        return "libclarity.dylib"
    if sys.platform == "win32":
        return "clarity.dll"
    return "libclarity.so"


def workspace_root() -> Path:
    for parent in HERE.parents:
        manifest = parent / "Cargo.toml"
        if manifest.is_file() and "[workspace]" in manifest.read_text():
            return parent
    raise RuntimeError(
        "the clarity repository was not found above bindings/python: build from a "
        "checkout, or set LIBCLARITY_PATH to a built libclarity"
    )


def native_library() -> Path:
    prebuilt = os.environ.get("LIBCLARITY_PATH")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise RuntimeError(f"LIBCLARITY_PATH={prebuilt} is not a file")
        return path
    root = workspace_root()
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "clarity-ffi"], cwd=root, check=True
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return target / "release" / library_name()


class BuildWithLibrary(build_py):
    """build_py, plus the native library copied into clarity/_lib/."""

    def run(self) -> None:
        super().run()
        destination = Path(self.build_lib) / "clarity" / "_lib"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(native_library(), destination / library_name())


class NativeDistribution(Distribution):
    """The wheel holds a native library: it is platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=NativeDistribution)
