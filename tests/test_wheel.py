"""The built wheel works outside the repository: installed into a fresh venv and run from another
directory, it loads the bundled task model and a sample (package data via importlib.resources)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

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


def test_wheel_installs_and_finds_its_data(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True)
    wheel = next(dist.glob("adapatch-*.whl"))
    env_dir = tmp_path / "venv"
    # the dependencies (torch, numpy, ...) come from this interpreter's site-packages
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(py), "-c", SCRIPT.format(root=str(ROOT))], cwd=elsewhere, check=True,
                         capture_output=True, text=True)
    assert out.stdout.startswith("ok")
