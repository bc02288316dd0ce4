"""Patch layout's default strategy, multiscale, under ``AppTest`` (issue 21).

* The default is the library's budget-mode default (``ap.default_layout``: multiscale, ``scales=1``,
  the "fast" search): its layout, and at the default budget a PSNR at least the equal-token uniform
  grid's on a photo, a texture (scikit-image ``brick``) and text; the search setting "thorough" is
  ``scales=6``; the export carries ``scales`` and reproduces the page.
* Without a budget, multiscale's threshold mode: lambda over the image's ``RDHull`` (the slider's
  options are ``threshold_scale(hull)``'s, the tokens ``hull.tokens_at(lambda)``), the caption names
  the candidate taken, the export reproduces the page, the hull is built once per image.
* Budget hand-overs as for the quadtree: off starts at ``hull.threshold_for(budget)``, on starts the
  budget at the threshold layout's tokens.
* A query in multiscale's threshold mode: one line (the library refuses it), the session goes on.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.app_support import query_ui, ui  # noqa: E402
from adapatch.budgets import relative_budget  # noqa: E402
from adapatch.samples import load_sample  # noqa: E402
from adapatch.threshold_scale import threshold_scale  # noqa: E402
from tests.app_helpers import app as _app, metric as _metric, ok as _ok, tokens as _tokens  # noqa: E402

THRESHOLD = "w_threshold"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _psnr(at: AppTest) -> float:
    return float(_metric(at, "PSNR dB"))


def _snippet_layout(at: AppTest) -> ap.PatchLayout:
    ns: dict = {}
    exec(compile(at.code[0].value, "<snippet>", "exec"), ns)  # noqa: S102 - the app's own snippet
    return ns["layout"]


def _uniform_within(h: int, w: int, budget: int) -> ap.PatchLayout:
    """The equal-token uniform grid: the finest grid of square patches (any integer size) with at most
    ``budget`` tokens (the uniform candidate of the budget-mode default)."""
    for size in range(1, max(h, w) + 1):
        lay = ap.uniform(h, w, size)
        if lay.num_tokens <= budget:
            return lay
    raise AssertionError("no grid fits")


def _array(v) -> np.ndarray:
    """A Plotly data array from a figure's JSON: a list, or Plotly 7's typed array ``{"dtype", "bdata"}``."""
    if isinstance(v, dict):
        import base64
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def _skimage(name: str) -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    a = getattr(skdata, name)()
    a = np.stack([a] * 3, axis=-1) if a.ndim == 2 else a[..., :3]
    return np.ascontiguousarray(a, np.uint8)


def _upload(at: AppTest, name: str, array: np.ndarray) -> np.ndarray:
    data = _png(array)
    at.file_uploader(key="uploader").set_value((f"{name}.png", data, "image/png")).run()
    _ok(at)
    return ap.load_image(data)


def test_the_default_is_the_librarys_budget_default() -> None:
    at = _app().run()
    _ok(at)
    assert at.selectbox(key="w_strategy").value == "multiscale"
    search = at.selectbox(key="w_scales")
    assert search.value == 1 and search.options == ["fast: quadtree vs uniform grid", "thorough: 6 base sizes"]
    img = load_sample("astronaut")
    b = relative_budget(448, 448, fraction=0.3)
    want = ap.default_layout(img, b)
    assert _tokens(at) == want.num_tokens and _psnr(at) == pytest.approx(ap.fidelity(img, want)["psnr"], abs=0.005)
    snippet = at.code[0].value
    assert "ap.make_layout(image, 'multiscale', None, budget=" in snippet and "scales=1" in snippet
    assert _snippet_layout(at) == want
    assert any("multiscale · fast" in img_.caption for e in at.get("image") for img_ in e.proto.imgs)


@pytest.mark.parametrize("name", ["astronaut", "brick", "text", "camera"])
def test_default_keeps_at_least_the_equal_token_uniform_grid(name: str) -> None:
    """At the default budget (30% of the 16 px grid) the page's layout keeps at least what the uniform
    grid of at most as many tokens keeps: on a photo, a stationary texture and a text page (where the
    quadtree alone loses to the grid)."""
    at = _app().run()
    img = load_sample("astronaut") if name == "astronaut" else _upload(at, name, _skimage(name))
    h, w = img.shape[:2]
    b = relative_budget(h, w, fraction=0.3)
    grid = _uniform_within(h, w, b)
    page = _psnr(at)
    assert _tokens(at) <= b
    assert page >= ap.fidelity(img, grid)["psnr"] - 0.005, (name, page)  # shown to 2 decimals
    assert _tokens(at) == ap.default_layout(img, b).num_tokens


def test_thorough_search_is_six_scales_and_exports_them() -> None:
    at = _app().run()
    at.selectbox(key="w_scales").set_value(6).run()
    _ok(at)
    img = load_sample("astronaut")
    b = relative_budget(448, 448, fraction=0.3)
    want = ap.layout_for_budget(img, "multiscale", b, scales=6)
    assert _tokens(at) == want.num_tokens
    assert "scales=6" in at.code[0].value and _snippet_layout(at) == want
    assert any("multiscale · thorough" in c.value for c in at.caption)
    assert at.session_state["ap_settings"]["scales"] == 6
    at.toggle(key="w_use_budget").set_value(False).run()  # threshold mode: the search does not apply
    assert at.selectbox(key="w_scales").disabled


def _threshold_app():
    """The app in multiscale's threshold mode on astronaut, the image, and its hull (the library's)."""
    at = _app().run()
    at.toggle(key="w_use_budget").set_value(False).run()
    _ok(at)
    img = load_sample("astronaut")
    return at, img, ap.rd_hull(img, levels=2, token_size=16)


def test_threshold_mode_moves_lambda_over_the_hull() -> None:
    at, _, hull = _threshold_app()
    scale = threshold_scale(hull)
    slider = at.select_slider(key=THRESHOLD)
    labels = ui.threshold_labels(scale.including(slider.value), True)
    assert slider.options == list(labels.values()) and slider.options[0] == "λ = 0"
    seen = []
    for position in (0, 20, 80, 140, 190, scale.last):
        lam = float(scale.threshold_at(position))
        at.select_slider(key=THRESHOLD).set_value(lam).run()
        _ok(at)
        n = _tokens(at)
        assert n == hull.tokens_at(lam) == scale.tokens(hull)[position], position
        assert at.session_state["ap_settings"]["thresholds"]["distortion"] == lam  # lambda, shared with the quadtree
        lay = hull.layout(lam)
        k = hull.index(lam)
        word = (f"the uniform grid of {int(hull.values[k])} px patches" if hull.kinds[k] == "uniform"
                else "the distortion quadtree (16-64 px boxes)")
        assert any(f"this image takes {word}: {n:,} tokens" in c.value for c in at.caption), (position, word)
        exported = _snippet_layout(at)  # make_layout(image, 'multiscale', threshold=lam, levels=2, token_size=16)
        assert exported == lay and exported.num_tokens == n
        seen.append(n)
    assert seen == sorted(seen, reverse=True) and seen[0] == hull.tokens[-1] and seen[-1] == hull.tokens[0]
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if "multiscale" in str(json.loads(c.proto.spec)["layout"]["title"]["text"]))
    assert chart["layout"]["xaxis"]["type"] == "log"
    xs, ys = _array(chart["data"][0]["x"]), _array(chart["data"][0]["y"])
    assert np.array_equal(ys, hull.tokens_at(xs)) and np.all(np.diff(ys) <= 0)
    assert _array(chart["data"][1]["y"]).tolist() == [seen[-1]]  # the current point


def test_budget_hand_overs() -> None:
    """Off: threshold mode starts at the lambda the budget implies on the hull (the same or fewer
    tokens); on: the budget starts at the threshold layout's tokens."""
    at = _app().run()
    img = load_sample("astronaut")
    hull = ap.rd_hull(img)
    at.slider(key="w_budget_fraction").set_value(0.45).run()
    b = relative_budget(448, 448, fraction=0.45)
    at.toggle(key="w_use_budget").set_value(False).run()
    _ok(at)
    lam = at.select_slider(key=THRESHOLD).value
    assert lam == hull.threshold_for(b) and _tokens(at) == hull.tokens_at(lam) <= b
    scale = threshold_scale(hull)
    for position in (40, 120, 170):
        lam = float(scale.threshold_at(position))
        at.select_slider(key=THRESHOLD).set_value(lam).run()
        n = hull.tokens_at(lam)
        assert _tokens(at) == n
        at.toggle(key="w_use_budget").set_value(True).run()
        _ok(at)
        fraction = at.slider(key="w_budget_fraction").value
        assert relative_budget(448, 448, fraction=fraction) == n  # the budget is the layout's token count
        assert _tokens(at) == ap.default_layout(img, n).num_tokens <= n
        at.toggle(key="w_use_budget").set_value(False).run()
        _ok(at)
        assert at.select_slider(key=THRESHOLD).value == hull.threshold_for(n)
        assert _tokens(at) == hull.tokens_at(hull.threshold_for(n)) <= n


def test_switching_strategy_keeps_lambda() -> None:
    """The quadtree's lambda and multiscale's are one threshold (error per added token): switching
    strategy in threshold mode keeps it, each strategy giving its own layout at it."""
    at, img, hull = _threshold_app()
    lam = float(threshold_scale(hull).threshold_at(100))
    at.select_slider(key=THRESHOLD).set_value(lam).run()
    at.selectbox(key="w_strategy").set_value("quadtree").run()
    _ok(at)
    assert at.select_slider(key=THRESHOLD).value == lam
    assert _tokens(at) == ap.quadtree(img, threshold=lam, min_size=16, max_size=64, importance="distortion").num_tokens
    at.selectbox(key="w_strategy").set_value("multiscale").run()
    assert at.select_slider(key=THRESHOLD).value == lam and _tokens(at) == hull.tokens_at(lam)


def test_the_hull_is_built_once_per_image(monkeypatch) -> None:
    import importlib

    rd = importlib.import_module("adapatch.rd_hull")  # the module (``adapatch.rd_hull`` is also the function)
    calls = []
    real = rd.rd_hull
    monkeypatch.setattr(rd, "rd_hull", lambda *a, **k: calls.append(1) or real(*a, **k))
    noise = (np.random.default_rng(2121).random((200, 260, 3)) * 255).astype(np.uint8)  # an image no test cached
    at = _app().run()
    img = _upload(at, "noise", noise)
    at.toggle(key="w_use_budget").set_value(False).run()
    hull = real(img)
    scale = threshold_scale(hull)
    for position in (10, 60, 110, 160, 200):
        at.select_slider(key=THRESHOLD).set_value(float(scale.threshold_at(position))).run()
        _ok(at)
        assert _tokens(at) == scale.tokens(hull)[position]
    assert len(calls) == 1


def test_a_query_in_threshold_mode_is_one_line_and_the_session_goes_on() -> None:
    at, img, hull = _threshold_app()
    at.radio(key="w_query_kind").set_value("region").run()
    for key, v in zip(query_ui.BOX_KEYS, (250, 250, 400, 400)):
        at.number_input(key=key).set_value(v)
    at.button(key="w_qbox_apply").click().run()
    assert not at.exception and not at.error
    warnings = [w.value for w in at.warning if "does not take a query" in w.value]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    lam = at.select_slider(key=THRESHOLD).value
    assert _tokens(at) == hull.tokens_at(lam)  # the layout without the query
    assert "query_map" not in at.code[0].value  # the export is what the page shows
    at.toggle(key="w_use_budget").set_value(True).run()  # with a budget multiscale takes the query
    _ok(at)
    assert not [w for w in at.warning if "does not take a query" in w.value]
    b = at.session_state["ap_settings"]["budget_fraction"]
    n = relative_budget(448, 448, fraction=b)
    qmap = ap.query_map(img, box=(250, 250, 400, 400), falloff=round(0.10 * 448, 2))
    assert _tokens(at) == ap.multiscale(img, n, scales=1, query=qmap, query_weight=0.5).num_tokens
    at.toggle(key="w_use_budget").set_value(False).run()
    at.slider(key="w_query_weight").set_value(0.0).run()  # weight 0: nothing mixed in, nothing refused
    _ok(at)
    assert not [w for w in at.warning if "does not take a query" in w.value]


def test_compare_starts_with_the_budget_default() -> None:
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    _ok(at)
    assert at.selectbox(key="w_cmp_0_strategy").value == "multiscale" and at.selectbox(key="w_cmp_0_scales").value == 1
    index = list(at.dataframe[0].value.index)
    assert index[0].startswith("A: multiscale · fast · ") and index[1].startswith("B: quadtree · distortion")
    assert index[2].startswith("C: uniform grid")
