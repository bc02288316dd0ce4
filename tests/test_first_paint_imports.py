"""What the app's opening view calls must not import torch (3-5 s on a cold server): the saliency
spec of a non-model method, the text-query check without open_clip, and "auto" fidelity."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import numpy as np
import adapatch as ap
from adapatch.app_support import compute, query_ui
img = np.random.default_rng(0).random((64, 48, 3)).astype(np.float32)
assert compute.saliency_spec("edges")["method"] == "edges"
from adapatch.saliency import saliency_method_names
assert "attention" in saliency_method_names()
import importlib.util
if importlib.util.find_spec("open_clip") is None:  # installed, the check must import it: fine
    assert "not installed" in query_ui.text_reason()
lay = ap.quadtree(img, budget=6, min_size=8, max_size=32)
fid = ap.fidelity(img, lay, device="auto")
assert fid == ap.fidelity(img, lay, device="cpu")
assert "torch" not in sys.modules, "torch was imported"
"""


def test_opening_view_calls_do_not_import_torch() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
