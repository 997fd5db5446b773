"""ruff and mypy are part of the tests: a lint failure fails `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_is_clean():
    done = run_tool("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean():
    # The strict editable install's link tree is where ir/, lowering/... sit under xpuport/
    # (see the Makefile); mypy cannot follow package-dir mappings any other way.
    trees = sorted(ROOT.glob("build/__editable__.*/xpuport"))
    assert trees, "no link tree under build/: install with `make` (editable_mode=strict)"
    done = run_tool("mypy", str(trees[-1]), "plugins/npusim/src/xpuport_npusim")
    assert done.returncode == 0, done.stdout + done.stderr
