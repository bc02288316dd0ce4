"""The linter and the type checker pass: ``ruff check`` and ``mypy`` over ``adapatch/``, ``pages/`` and
``app.py``, with the configuration in pyproject.toml (rules, strictness and the reasons for what is off).

Both run as the README's test command runs them (requirements-dev.txt installs them). ruff takes well
under a second; mypy about a minute of CPU on a cold cache and a second or two once ``.mypy_cache``
(gitignored) holds the last run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["adapatch", "pages", "app.py"]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: pip install -r requirements-dev.txt")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def test_ruff_passes() -> None:
    res = _run("ruff", "check", "--no-fix", *TARGETS)
    assert res.returncode == 0, f"ruff check {' '.join(TARGETS)} failed:\n{res.stdout}{res.stderr}"


def test_mypy_passes() -> None:
    # the files and options come from [tool.mypy] in pyproject.toml
    res = _run("mypy")
    assert res.returncode == 0, f"mypy failed:\n{res.stdout}{res.stderr}"
