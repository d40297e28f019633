"""Fixtures: a fresh Clarity instance per test, on SQLite always and on
PostgreSQL when CLARITY_TEST_POSTGRES_URL is set (each test in its own
schema). Outside CI an unset variable skips loudly; in CI (CI=true) it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import clarity

POSTGRES_VAR = "CLARITY_TEST_POSTGRES_URL"
PASSWORD = "a test passphrase nobody would guess"
REPO = Path(__file__).resolve().parents[3]


def in_ci() -> bool:
    return os.environ.get("CI") in ("true", "1")


def config_for(backend: str, data_dir: Path) -> Tuple[Dict[str, Any], Callable[[], None]]:
    """A configuration on `backend`, and how to clean up after it."""
    if backend == "sqlite":
        return {"data_dir": str(data_dir)}, lambda: None
    url = os.environ.get(POSTGRES_VAR, "").strip()
    if not url:
        if in_ci():
            pytest.fail(f"{POSTGRES_VAR} is not set: CI runs every PostgreSQL test")
        pytest.skip(f"SKIPPED: PostgreSQL test not run: set {POSTGRES_VAR} to run it")
    schema = f"py_{uuid.uuid4().hex}"

    def drop() -> None:
        if shutil.which("psql"):
            subprocess.run(
                ["psql", url, "-qAtc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                check=False,
                capture_output=True,
            )

    config = {
        "data_dir": str(data_dir),
        "store": {"backend": "postgres", "postgres_url": url, "postgres_schema": schema},
    }
    return config, drop


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(backend: str, tmp_path: Path) -> Iterator[clarity.Clarity]:
    config, cleanup = config_for(backend, tmp_path / "data")
    c = clarity.Clarity(config)
    try:
        yield c
    finally:
        c.close()
        cleanup()


def new_user(c: clarity.Clarity, role: str) -> Tuple[str, str]:
    """A user holding `role` (operator path), logged in: (user id, access token)."""
    email = f"{role}-{uuid.uuid4().hex}@test.example"
    user = c.create_user_as_operator(email, PASSWORD, [role])
    return user["id"], c.login(email, PASSWORD)["access_token"]


def profile(**extra: Any) -> Dict[str, Any]:
    p: Dict[str, Any] = {
        "mrn": f"PY-{uuid.uuid4().hex}",
        "given_name": "Ada",
        "family_name": "Python",
        "birth_date": "1990-05-17",
        "sex": "female",
    }
    p.update(extra)
    return p


def all_items(fetch: Callable[[str | None], Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every item of a paged list."""
    items: List[Dict[str, Any]] = []
    cursor = None
    while True:
        page = fetch(cursor)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
