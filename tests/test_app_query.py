"""The Query control (query-aware patching) under ``AppTest``, and the geometry behind the drawing surface.

AppTest cannot drag on a Plotly chart, so a box is given through the exact-region inputs (the same
path the drawing takes: a region stored per image digest); ``tests/e2e/test_query_browser.py``
drags one in Chromium. Checked here:

* a box query puts more of the finest tokens in the box than the query-blind layout at the same
  budget, and the numbers shown are the library's (``ap.quadtree(..., query=, query_weight=)``);
* weight 0 is the query-blind layout exactly; the query map heatmap is shown;
* the export snippet calls ``ap.query_map`` and reproduces the layout;
* a box drawn on one image does not reach another image; a box without area gives one line;
* a class query with the bundled task model on a digit sample (Token pruning);
* the text option is hidden here, with its one-line reason;
* drag ranges and lassos to pixel boxes and polygons (clipped, refused in one line), scaling to a
  model frame, typed and clicked points; multiscale and the learned selector with a query.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

import adapatch as ap
from adapatch.app_support import query_ui
from adapatch.app_support.images import task_sample_keys
from adapatch.budgets import relative_budget
from adapatch.samples import load_sample
from tests.app_helpers import app as _app
from tests.app_helpers import metric as _metric
from tests.app_helpers import ok as _ok
from tests.app_helpers import use_quadtree

BOX = (250, 250, 400, 400)  # astronaut is 448x448: the lower-right quarter (helmet, badge)
WEIGHT = 0.5


def _captions(at: AppTest) -> list[str]:
    """Image captions as shown (Markdown escapes removed)."""
    return [img.caption.replace("\\", "") for e in at.get("image") for img in e.proto.imgs]


def _set_box(at: AppTest, box=BOX) -> AppTest:
    for key, v in zip(query_ui.BOX_KEYS, box):
        at.number_input(key=key).set_value(int(v))
    return at.button(key="w_qbox_apply").click().run()


def _region_app(box=BOX) -> AppTest:
    """The quadtree (``_expected``'s layouts) with a box query at ``WEIGHT``."""
    at = use_quadtree(_app().run())
    at.radio(key="w_query_kind").set_value("region").run()
    _ok(at)
    return _set_box(at, box)


def _finest_in_box(layout: ap.PatchLayout, box) -> tuple[int, int]:
    inside, total, _ = query_ui.finest_in_region(layout, {"kind": "box", "box": list(box)})
    return inside, total


def _expected(img: np.ndarray, weight: float, box=BOX) -> ap.PatchLayout:
    h, w = img.shape[:2]
    budget = relative_budget(h, w, fraction=0.30)  # the app's default budget: 30% of the 16 px grid
    falloff = round(0.10 * min(h, w), 2)  # the default soft edge: 10% of the shorter side
    qmap = ap.query_map(img, box=box, falloff=falloff)
    return ap.quadtree(img, budget=budget, min_size=16, max_size=64, importance="distortion", query=qmap,
                       query_weight=weight)


def test_box_query_concentrates_the_finest_tokens_in_the_box() -> None:
    at = _region_app()
    _ok(at)
    img = load_sample("astronaut")
    with_q, without = _expected(img, WEIGHT), _expected(img, 0.0)
    assert with_q.num_tokens == without.num_tokens  # the same budget
    # the page shows the library's layout with the query (the top row) and both sides of the comparison
    assert _metric(at, "Tokens") == f"{with_q.num_tokens:,}"
    fid = ap.fidelity(img, with_q)
    assert _metric(at, "PSNR dB") == f"{fid['psnr']:.2f}"
    a, n = _finest_in_box(with_q, BOX)
    b, m = _finest_in_box(without, BOX)
    assert _metric(at, "In region · with") == f"{a}/{n}"
    assert _metric(at, "In region · without") == f"{b}/{m}"
    assert _metric(at, "Tokens · with") == _metric(at, "Tokens · without") == f"{with_q.num_tokens:,}"
    assert a / n > b / m + 0.2, (a, n, b, m)  # concentrated in the box
    assert any("box query, weight 0.50" in c for c in _captions(at))


def test_weight_zero_is_the_query_blind_layout() -> None:
    at = _app().run()
    plain = (_metric(at, "Tokens"), _metric(at, "PSNR dB"), _metric(at, "SSIM"))
    at.radio(key="w_query_kind").set_value("region").run()
    _set_box(at)
    at.slider(key="w_query_weight").set_value(0.0).run()
    _ok(at)
    assert (_metric(at, "Tokens"), _metric(at, "PSNR dB"), _metric(at, "SSIM")) == plain
    for what in ("Tokens", "PSNR dB", "SSIM", "In region"):
        assert _metric(at, f"{what} · with") == _metric(at, f"{what} · without")
    snippet = at.code[0].value
    assert "query_map" not in snippet  # weight 0: nothing is mixed in, so the snippet has no query


def test_query_map_heatmap_is_shown_next_to_the_content_saliency() -> None:
    at = _app().run()
    at.radio(key="w_query_kind").set_value("region").run()
    assert not any(c.startswith("Query map") for c in _captions(at))  # no region yet
    assert any("Drag a box or lasso" in i.value for i in at.info)
    _set_box(at)
    caps = _captions(at)
    assert any(c.startswith("Query map: box (y0, x0, y1, x1) = (250, 250, 400, 400)") for c in caps), caps
    assert any(c.startswith("Content saliency") for c in caps), caps
    assert any(c.startswith("Colour bar") and "query map" in c for c in caps), caps


def test_export_reproduces_the_query() -> None:
    at = _region_app()
    snippet = at.code[0].value
    falloff = round(0.10 * 448, 2)
    assert f"qmap = ap.query_map(image, box={BOX}, falloff={falloff!r})" in snippet
    assert f"query=qmap, query_weight={WEIGHT!r}" in snippet
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the app's own snippet
    want = _expected(load_sample("astronaut"), WEIGHT)
    assert np.array_equal(ns["layout"].boxes, want.boxes)


@pytest.mark.parametrize("page", ["pages/saliency.py", "pages/pruning.py"])
def test_the_query_is_on_saliency_and_pruning_too(page: str) -> None:
    at = _region_app()
    at.switch_page(page).run()
    _ok(at)
    caps = _captions(at)
    assert any(c.startswith("Query map: box") for c in caps), caps
    if page.endswith("saliency.py"):
        assert any(c.startswith("Mixed importance") for c in caps), caps
    else:  # the same grid and keep ratio with and without; the query's kept tokens sit in the box more
        assert _metric(at, "Tokens · with") == _metric(at, "Tokens · without")
        a, n = (int(v) for v in _metric(at, "In region · with").split("/"))
        b, m = (int(v) for v in _metric(at, "In region · without").split("/"))
        assert n == m and a > b
        assert "ap.prune(layout, scores, keep_ratio=0.5, query=qmap, query_weight=0.5)" in at.code[0].value


def test_a_box_stays_with_its_image() -> None:
    at = _region_app()
    assert any(c.startswith("Query map: box") for c in _captions(at))
    at.selectbox(key="w_image").set_value("sample:coffee").run()  # another size
    _ok(at)
    assert not any(c.startswith("Query map") for c in _captions(at))
    assert any("Drag a box or lasso" in i.value for i in at.info)
    assert "query_map" not in at.code[0].value
    h, w = load_sample("coffee").shape[:2]
    seeded = [at.number_input(key=k).value for k in query_ui.BOX_KEYS]  # the inputs fit this image
    assert 0 <= seeded[0] < seeded[2] <= h and 0 <= seeded[1] < seeded[3] <= w
    at.selectbox(key="w_image").set_value("sample:astronaut").run()
    _ok(at)
    assert any(c.startswith("Query map: box (y0, x0, y1, x1) = (250, 250, 400, 400)") for c in _captions(at))


def test_a_box_without_area_gives_one_line() -> None:
    at = _region_app()
    _set_box(at, (300, 100, 300, 200))  # y0 == y1
    assert not at.exception
    assert not at.error
    assert len(at.warning) == 1 and "box" in at.warning[0].value and "\n" not in at.warning[0].value
    # the region drawn before stays in use
    assert any(c.startswith("Query map: box (y0, x0, y1, x1) = (250, 250, 400, 400)") for c in _captions(at))
    at.text_input(key=query_ui.POINTS_KEY).set_value("12, x")
    at.button(key="w_qpoints_apply").click().run()
    assert not at.exception and not at.error
    assert "points" in at.warning[0].value
    at.text_input(key=query_ui.POINTS_KEY).set_value("100, 120; 300, 310")
    at.button(key="w_qpoints_apply").click().run()
    _ok(at)
    assert any(c.startswith("Query map: 2 points") for c in _captions(at))
    at.button(key="w_qclear").click().run()
    _ok(at)
    assert any("Drag a box or lasso" in i.value for i in at.info)


def test_class_query_with_the_task_model_on_a_digit() -> None:
    at = _app().run()
    at.selectbox(key="w_image").set_value(task_sample_keys()[0]).run()
    at.switch_page("pages/pruning.py").run()
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_query_kind").set_value("class").run()
    _ok(at)
    classes = at.selectbox(key="w_query_class")
    assert classes.options == [str(k) for k in range(10)]  # the digits model's 10 classes
    classes.set_value(3).run()
    _ok(at)
    caps = _captions(at)
    assert any(c.startswith("Query map: class 3 of task") for c in caps), caps
    assert _metric(at, "Tokens · with") == _metric(at, "Tokens · without")
    snippet = at.code[0].value
    assert "qmap = ap.query_map(image, model=model, target=3" in snippet
    assert "query=qmap, query_weight=0.5" in snippet
    # the page's kept tokens are the library's: the snippet makes the same calls
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the app's own snippet
    assert f"{ns['layout'].num_tokens:,}" == _metric(at, "Tokens")
    assert f"{ap.fidelity(ns['image'], ns['layout'])['psnr']:.2f}" == _metric(at, "PSNR dB")


def test_text_queries_are_hidden_with_their_reason() -> None:
    from adapatch.model.query_maps import text_available

    reason = text_available()
    at = _app().run()
    options = at.radio(key="w_query_kind").options
    if reason is None:
        assert "Text" in options
        return
    assert "Text" not in options and options == ["None", "Region", "Class"]
    notes = [c.value for c in at.caption if c.value.startswith("Text queries: unavailable here")]
    assert len(notes) == 1 and "open" in notes[0] and "\n" not in notes[0]


def test_threshold_mode_compares_at_the_layouts_token_count() -> None:
    at = use_quadtree(_app().run())
    at.toggle(key="w_use_budget").set_value(False).run()
    at.radio(key="w_query_kind").set_value("region").run()
    _set_box(at)
    _ok(at)
    tokens = _metric(at, "Tokens")
    assert _metric(at, "Tokens · with") == _metric(at, "Tokens · without")
    assert int(_metric(at, "Tokens · with").replace(",", "")) <= int(tokens.replace(",", ""))
    assert any(f"Both solved for {tokens} tokens" in c.value for c in at.caption)


# ------------------------------------------------------------------ geometry (no app)
def test_drag_range_to_pixel_box() -> None:
    # plot coordinates: pixel i centred at i; a range covering centres 10..19 and 5..7
    assert query_ui.box_from_range([9.6, 19.4], [4.5, 7.2], (50, 60)) == (5, 10, 8, 20)
    # a drawn image half the size: each drawn pixel is 2 image pixels
    assert query_ui.box_from_range([-0.5, 4.5], [-0.5, 2.5], (50, 60), scale=(2.0, 2.0)) == (0, 0, 6, 10)
    # dragged past the edge: clipped to the image
    assert query_ui.box_from_range([50.0, 99.0], [-20.0, 10.0], (50, 60)) == (0, 50, 11, 60)
    with pytest.raises(ValueError, match="outside the image"):
        query_ui.box_from_range([70.0, 80.0], [1.0, 5.0], (50, 60))
    with pytest.raises(ValueError, match="no area"):
        query_ui.box_from_range([10.1, 10.4], [1.0, 5.0], (50, 60))


def test_lasso_to_polygon() -> None:
    poly = query_ui.polygon_from_lasso([0, 20, 20], [0, 0, 20], (50, 60))
    assert poly == [[0.0, 0.0], [0.0, 20.0], [20.0, 20.0]]
    assert ap.query_map(np.zeros((50, 60, 3), np.float32), polygon=poly, falloff=0).sum() > 100
    with pytest.raises(ValueError, match="covers no pixel"):
        query_ui.polygon_from_lasso([100, 120, 120], [100, 100, 120], (50, 60))
    with pytest.raises(ValueError, match="at least 3 points"):
        query_ui.polygon_from_lasso([1, 2], [1, 2], (50, 60))
    many = query_ui.polygon_from_lasso(np.linspace(0, 40, 1000), 20 + 10 * np.sin(np.linspace(0, 6, 1000)), (50, 60))
    assert 3 <= len(many) <= query_ui.MAX_POLYGON_VERTICES


def test_region_scaled_to_a_model_frame() -> None:
    q = {"kind": "box", "box": [100, 50, 200, 150], "falloff": 20.0}
    f = query_ui.to_frame(q, (400, 200), (64, 64))
    assert f["box"] == [16, 16, 32, 48] and f["falloff"] == pytest.approx(20.0 * 64 / 400)
    ap.query_map(np.zeros((64, 64, 3), np.float32), f)  # valid in the frame
    tiny = query_ui.to_frame({"kind": "box", "box": [0, 0, 1, 1]}, (400, 400), (64, 64))
    assert tiny["box"] == [0, 0, 1, 1]  # never without area
    pts = query_ui.to_frame({"kind": "points", "points": [[199.5, 99.5]]}, (400, 200), (64, 64))
    assert pts["points"] == [[31.5, 31.5]]  # the image centre is the frame centre
    assert query_ui.to_frame({"kind": "class", "target": 3, "model": "task"}, (400, 200), (64, 64))["target"] == 3


def test_typed_points() -> None:
    assert query_ui.parse_points("120, 200; 140 260\n5,6") == [[120.0, 200.0], [140.0, 260.0], [5.0, 6.0]]
    for bad in ("", "1", "1, 2, 3", "a, b", "nan, 1"):
        with pytest.raises(ValueError, match="points"):
            query_ui.parse_points(bad)


def test_clicked_points() -> None:
    # a drawn image half the size: display pixel i covers image pixels 2i, 2i + 1 (centre 2i + 0.5)
    assert query_ui.point_from_click(10.0, 4.0, (50, 60), (2.0, 2.0)) == [8.5, 20.5]
    assert query_ui.point_from_click(-3.0, 99.0, (50, 60), (1.0, 1.0)) == [49.0, 0.0]  # clipped to the image
    # and back: draw_figure puts a stored point at the display pixel it came from
    y, x = query_ui.point_from_click(31.0, 17.0, (448, 448), (448 / 384, 448 / 384))
    assert (x + 0.5) / (448 / 384) - 0.5 == pytest.approx(31.0, abs=0.05)
    assert (y + 0.5) / (448 / 384) - 0.5 == pytest.approx(17.0, abs=0.05)
    assert query_ui.describe({"kind": "points", "points": [[8.5, 20.5], [3, 4]]}) == \
        "2 points (y, x): (8.5, 20.5); (3, 4)"
    assert query_ui.describe({"kind": "points", "points": [[1, 1]] * 5}) == "5 points"


def test_multiscale_takes_the_query() -> None:
    """Multiscale mixes the query: the page shows the library's layout with the query (its search
    setting: fast, ``scales=1``, by default), and the comparison holds the same budget on both sides."""
    at = _region_app()
    at.selectbox(key="w_strategy").set_value("multiscale").run()
    _ok(at)
    img = load_sample("astronaut")
    h, w = img.shape[:2]
    budget = relative_budget(h, w, fraction=0.30)
    qmap = ap.query_map(img, box=BOX, falloff=round(0.10 * min(h, w), 2))
    want = ap.multiscale(img, budget, scales=1, query=qmap, query_weight=WEIGHT)
    blind = ap.multiscale(img, budget, scales=1)
    assert want != blind
    assert _metric(at, "Tokens") == _metric(at, "Tokens · with") == f"{want.num_tokens:,}"
    assert _metric(at, "Tokens · without") == f"{blind.num_tokens:,}"
    assert _metric(at, "PSNR dB") == f"{ap.fidelity(img, want)['psnr']:.2f}"
    assert not any("does not take a query" in i.value for i in at.info)
    ns: dict = {}
    exec(compile(at.code[0].value, "<snippet>", "exec"), ns)  # noqa: S102 - the app's own snippet
    assert np.array_equal(ns["layout"].boxes, want.boxes)


def test_learned_selector_takes_the_query_in_its_frame() -> None:
    """The selector ranks its cells by the selector mixed with the query; a box on the image is
    scaled to the model's input frame (64x64) and the kept cells move into it."""
    at = _app().run()
    at.selectbox(key="w_image").set_value(task_sample_keys()[0]).run()
    at.selectbox(key="w_strategy").set_value("learned_selector").run()
    _ok(at)
    at.radio(key="w_query_kind").set_value("region").run()
    entry_h = at.number_input(key=query_ui.BOX_KEYS[2]).max
    entry_w = at.number_input(key=query_ui.BOX_KEYS[3]).max
    _set_box(at, (0, 0, entry_h // 2, entry_w // 2))  # the upper-left quarter
    at.slider(key="w_query_weight").set_value(1.0).run()
    _ok(at)
    assert _metric(at, "Tokens · with") == _metric(at, "Tokens · without") == _metric(at, "Tokens")
    caps = _captions(at)
    assert any("ranked by the selector mixed with the box query (weight 1.00)" in c for c in caps), caps
    inside, total = (int(v) for v in _metric(at, "In region · with").split("/"))
    assert total > 0 and inside == total  # weight 1: only cells the box touches, centres in the box
    ns: dict = {}
    exec(compile(at.code[0].value, "<snippet>", "exec"), ns)  # noqa: S102 - the app's own snippet
    assert "query=qmap" in at.code[0].value
    assert f"{ns['layout'].num_tokens:,}" == _metric(at, "Tokens")
