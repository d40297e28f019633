"""The example of docs/bindings-python.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_the_documented_example_runs(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "bindings-python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/bindings-python.md has a python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "admin: not_found" in run.stdout
    assert "audit ok: True" in run.stdout
