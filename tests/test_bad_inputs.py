"""Every kind of bad or unusual input loads correctly or raises a one-line ImageError."""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapatch as ap
from tests.bad_inputs import bomb_png, corpus

CORPUS = corpus()


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_through_load_image(name):
    data, expect = CORPUS[name]
    if expect == "error":
        with pytest.raises(ap.ImageError) as e:
            ap.load_image(data)
        msg = str(e.value)
        assert msg and "\n" not in msg and len(msg) < 240
    else:
        loaded = ap.open_image(data)
        a = loaded.array
        assert a.dtype == np.float32 and a.ndim == 3 and a.shape[2] == 3
        assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
        lay = ap.quadtree(a, threshold=0.1).validate()  # and it is usable end to end
        ap.render.layout_overlay(a, lay, max_side=256)
        if "animated" in name or "multi-page" in name:
            assert any("first is used" in n for n in loaded.notes)
        if "exif" in name:
            assert a.shape[:2] == (64, 48)


def test_corpus_has_at_least_20_kinds():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("name", ["random bytes", "truncated jpeg", "decompression bomb", "1x1 png"])
def test_corpus_through_cli(name, tmp_path):
    data, expect = CORPUS[name]
    p = tmp_path / "upload.png"
    p.write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "adapatch", str(p)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr
    assert r.returncode == (0 if expect == "ok" else 2), r.stderr


def test_refusing_100mp_keeps_memory_bounded():
    data = bomb_png(10000, 10000)
    tracemalloc.start()
    with pytest.raises(ap.ImageError, match="megapixels"):
        ap.load_image(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while refusing a 100 MP file"


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048) | st.builds(lambda b, cut: b[:cut], st.sampled_from(
    [v[0] for v in CORPUS.values() if isinstance(v[0], bytes) and v[1] == "ok"]), st.integers(0, 4096)))
def test_byte_fuzz_only_image_error(data):
    try:
        a = ap.load_image(data, max_pixels=4_000_000)
    except ap.ImageError:
        return
    assert a.ndim == 3 and a.shape[2] == 3 and np.isfinite(a).all()


_any = st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.lists(st.integers(-4, 128), max_size=4))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(fn=st.sampled_from(["quadtree", "greedy", "saliency", "threshold_curve", "prune", "efficiency", "render",
                           "uniform", "extract"]),
       a=_any, b=_any, c=_any, h=st.integers(1, 40), w=st.integers(1, 40))
def test_parameter_fuzz_only_value_error(fn, a, b, c, h, w):
    img = np.random.default_rng(h * 41 + w).random((h, w, 3)).astype(np.float32)
    try:
        if fn == "quadtree":
            ap.quadtree(img, threshold=a, min_size=b, max_size=c).validate()
        elif fn == "greedy":
            ap.greedy(img, "edges", patch_sizes=a if isinstance(a, list) else [b], budget=c).validate()
        elif fn == "saliency":
            ap.saliency(img, a if isinstance(a, str) else "variance", window=b)
        elif fn == "threshold_curve":
            ap.threshold_curve(img, min_size=a, max_size=b).threshold_for(c)
        elif fn == "prune":
            lay = ap.uniform(h, w, 8)
            ap.prune(lay, np.ones(lay.num_tokens), a)
        elif fn == "efficiency":
            ap.vit_flops(a, vit=b if isinstance(b, str) else "ViT-B", patch_size=c)
        elif fn == "render":
            ap.render.heatmap(img, np.zeros((h, w), np.float32), alpha=a, max_side=b)
        elif fn == "uniform":
            ap.uniform(a, b, c)
        elif fn == "extract":
            ap.extract_patches(img, ap.uniform(h, w, 8), size=a, device="cpu")
    except ValueError:
        pass


@pytest.mark.parametrize("name", [n for n, (d, _) in CORPUS.items() if isinstance(d, bytes)])
def test_whole_corpus_through_cli_main(name, tmp_path, capsys):
    """Every file of the corpus through the CLI's entry point (in-process: fast enough for all)."""
    from adapatch.cli import main
    data, expect = CORPUS[name]
    p = tmp_path / "upload.png"
    p.write_bytes(data)
    rc = main([str(p), "--threshold", "0.2"])
    out, err = capsys.readouterr()
    assert rc == (0 if expect == "ok" else 2), err
    if expect == "ok":
        assert "tokens:" in out
    else:
        assert err.startswith("error: ") and err.count("\n") == 1
