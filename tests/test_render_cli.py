import subprocess
import sys

import numpy as np
import pytest

import adapatch as ap
from adapatch import render


def test_overlay_shapes_and_colours(astronaut):
    lay = ap.quadtree(astronaut, threshold=0.3)
    ov = render.layout_overlay(astronaut, lay, max_side=256)
    assert ov.shape == (256, 256, 3) and ov.dtype == np.uint8
    full = render.layout_overlay(astronaut, lay, max_side=None)
    # outlines of a box drawn in its size's colour
    y, x, s = lay.boxes[lay.boxes[:, 2] == 32][0]
    assert tuple(full[y + s // 2, x]) == render.size_color(32) or tuple(full[y, x + s // 2]) == render.size_color(32)
    hm = render.heatmap(astronaut, ap.saliency(astronaut), 0.5, max_side=100)
    assert hm.shape == (100, 100, 3)
    assert render.to_png_bytes(ov)[:8] == b"\x89PNG\r\n\x1a\n"


def test_token_map_dims_dropped(astronaut):
    lay = ap.uniform(512, 512, 16)
    pr = ap.prune(lay, np.arange(lay.num_tokens, dtype=float), 0.5)  # keeps the bottom half
    tm = render.token_map(astronaut, pr, dim=0.3, max_side=None)
    assert tm[:256].mean() < 0.5 * astronaut[:256].mean() * 255
    assert abs(tm[300:, 5:10].astype(float).mean() - astronaut[300:, 5:10].mean() * 255) < 30


SAMPLES = ["astronaut", "coffee", "page", "text", "rocket", "chelsea"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLES)
def test_cli_on_real_photos(name, tmp_path):
    from skimage import data
    from PIL import Image
    p = tmp_path / f"{name}.png"
    Image.fromarray(getattr(data, name)()).save(p)
    out_json, out_png = tmp_path / "l.json", tmp_path / "o.png"
    r = subprocess.run([sys.executable, "-m", "adapatch", str(p), "--threshold", "0.2", "--json", str(out_json),
                        "--overlay", str(out_png)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lay = ap.PatchLayout.from_json(out_json.read_text()).validate()
    assert f"tokens: {lay.num_tokens}" in r.stdout and "PSNR" in r.stdout
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    ref = ap.quadtree(ap.load_image(p), threshold=0.2)
    assert ref == lay


@pytest.mark.slow
def test_cli_budget_greedy_and_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "adapatch", "sample:coffee", "--strategy", "greedy", "--budget", "300"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "tokens: 300" in r.stdout or "tokens: 29" in r.stdout, r.stdout + r.stderr
    bad = tmp_path / "bad.png"
    bad.write_text("<html>not an image</html>")
    r = subprocess.run([sys.executable, "-m", "adapatch", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not an image" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "adapatch", "sample:coffee", "--min-size", "64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "min_size" in r.stderr


def test_samples_bundled():
    from adapatch import samples
    names = samples.list_samples()
    assert {"astronaut", "page", "diagram", "rocket"} <= set(names)
    for n in names:
        img = samples.load_sample(n)
        assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] * img.shape[1] <= 600 * 600
