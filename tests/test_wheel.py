"""The built wheel works outside the repository: installed into a fresh venv and run from another
directory, it loads the bundled task model and a sample (package data via importlib.resources)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel in a new venv: outside the fast loop

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, pathlib, numpy as np
import adapatch as ap
from adapatch.model import load_task_model
from adapatch.samples import list_samples, load_sample
here = pathlib.Path(ap.__file__).resolve()
assert "site-packages" in here.parts and {root!r} not in str(here), here  # the wheel, not the checkout
task, cfg = load_task_model(device="cpu")
img = load_sample("astronaut")
lay = ap.quadtree(img, budget=300, min_size=16, max_size=64)
assert lay.num_tokens <= 300 and task.pretrained and "astronaut" in list_samples()
print("ok", here, lay.num_tokens)
"""


def _running_site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running the tests, in its search order: a
    virtualenv's own (plus its base's when it was made with system site packages), or the base
    interpreter's, and the user site when it is on."""
    dirs = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    dirs += [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    out: list[str] = []
    for d in dirs:
        if os.path.isdir(d) and os.path.realpath(d) not in map(os.path.realpath, out):
            out.append(d)
    return out


def _borrow_site_packages(py: Path) -> None:
    """The new venv finds the dependencies (torch, numpy, ...) in this interpreter's site-packages.

    ``system_site_packages=True`` would give the *base* interpreter's packages, which inside a
    virtualenv are not the ones installed for the tests. A ``.pth`` file in the new venv's own
    site-packages appends this interpreter's folders instead, after the venv's own, so the installed
    wheel wins over anything there (an editable checkout included: only plain paths are added, the
    ``.pth`` files in those folders do not run). Written after the wheel is installed, so that pip
    sees an empty environment."""
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "_adapatch_test_deps.pth").write_text("".join(d + "\n" for d in _running_site_dirs()))


def test_wheel_installs_and_finds_its_data(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True)
    wheel = next(dist.glob("adapatch-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True)
    _borrow_site_packages(py)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(py), "-c", SCRIPT.format(root=str(ROOT))], cwd=elsewhere, check=True,
                         capture_output=True, text=True)
    assert out.stdout.startswith("ok")
