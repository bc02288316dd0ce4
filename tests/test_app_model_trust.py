"""Model-based views say when they are not meaningful, and their numbers read plainly (AppTest).

* A class query of the bundled digits model on a photo warns, with the words and the rule
  (``model_source.not_trained_for``) of the other model views; on a digit sample it does not; a
  page that already warns about its model does not warn twice.
* "Use a digit sample" opens the sample ``model_view.default_sample`` picks (one the model gets
  right on its full grid), checked against the model itself.
* Token pruning with a model scorer: the prediction is marked right / wrong as the Demo marks it,
  one MACs ratio (the model's own, from ``pruned_macs``), and the model's patch size in place of
  the saliency grid's.
* A points query counts the finest tokens near its points (the query map above 0), not the
  tokens whose centre hits a point's single pixel.
* The Model page: colour bars under its heatmaps, mean token counts in the results table to one
  decimal.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest

import adapatch as ap
from adapatch.app_support import model_source, query_ui
from adapatch.app_support import model_view as mv
from adapatch.samples import list_task_samples, load_sample, task_sample_label
from tests.app_helpers import app, metric, ok

CAVEAT = "not a cluttered digit"


def _on(page: str, image: str | None = None) -> AppTest:
    at = app().run()
    if image is not None:
        at.selectbox(key="w_image").set_value(image).run()
    at.switch_page(page).run()
    ok(at)
    return at


def _caveats(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if CAVEAT in w.value]


def _class_query(at: AppTest, target: int = 3) -> AppTest:
    at.radio(key="w_query_kind").set_value("class").run()
    ok(at)
    at.selectbox(key="w_query_class").set_value(target).run()
    ok(at)
    return at


def test_the_rule_is_the_bundled_model_off_its_digits() -> None:
    digit = f"sample:{list_task_samples()[0]}"
    assert model_source.not_trained_for("task", "sample:astronaut")
    assert model_source.not_trained_for(model_source.ModelRef("task", "task"), "upload:abc")
    assert not model_source.not_trained_for("task", digit)
    assert not model_source.not_trained_for(model_source.ModelRef("timm", "vit_tiny_patch16_224"), "sample:astronaut")
    assert not model_source.not_trained_for("vit_tiny_patch16_224", "sample:astronaut")


def test_class_query_of_the_digits_model_on_a_photo_warns_on_patch_layout() -> None:
    at = _class_query(_on("pages/layout.py"))  # astronaut, the default image
    assert any(c.startswith("Query map: class 3 of task") for e in at.get("image") for c in
               (i.caption for i in e.proto.imgs))
    caveats = _caveats(at)
    assert len(caveats) == 1, caveats
    assert "class query" in caveats[0] and "not meaningful" in caveats[0]
    at.button(key="w_model_use_digit")  # the same offer of a digit sample as the other views


def test_class_query_on_a_digit_sample_does_not_warn() -> None:
    at = _class_query(_on("pages/layout.py", image=f"sample:{list_task_samples()[2]}"))
    assert _caveats(at) == []


def test_class_query_on_token_pruning_warns_once() -> None:
    at = _class_query(_on("pages/pruning.py"))  # saliency scorer: the query's own model picker
    assert len(_caveats(at)) == 1
    at.selectbox(key="w_prune_scorer").set_value("learned").run()  # the page warns about its model itself
    ok(at)
    assert len(_caveats(at)) == 1, _caveats(at)


def test_use_a_digit_sample_opens_one_the_model_gets_right() -> None:
    at = _on("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("learned").run()
    ok(at)
    at.button(key="w_model_use_digit").click().run()
    ok(at)
    key = at.session_state["ap_current"]
    name = key[len("sample:"):]
    assert name == mv.default_sample(0.5, "cpu")  # the rule, at the page's keep ratio
    _, _, full_pred, _ = mv.full_grid(name, "cpu")
    assert full_pred == task_sample_label(name)  # right on the model's full grid
    assert metric(at, "Prediction") == f"class {mv.prune_result(name, 'learned', 0.5, 'cpu').prediction}"
    m = next(m for m in at.metric if m.label == "Prediction")
    assert m.delta == f"right · true digit {task_sample_label(name)}"
    assert m.proto.color == Metric.MetricColor.Value("GREEN")


def test_a_wrong_prediction_is_marked_red() -> None:
    """A sample the model gets wrong on its full grid (keep ratio 1: every token kept) reads "wrong",
    in the colour the Demo gives a wrong prediction."""
    wrong = [n for n in list_task_samples() if mv.full_grid(n, "cpu")[2] != task_sample_label(n)]
    if not wrong:
        pytest.skip("the bundled model gets every digit sample right")
    at = _on("pages/pruning.py", image=f"sample:{wrong[0]}")
    at.selectbox(key="w_prune_scorer").set_value("learned").run()
    at.slider(key="w_keep_ratio").set_value(1.0).run()
    ok(at)
    m = next(m for m in at.metric if m.label == "Prediction")
    assert m.value == f"class {mv.full_grid(wrong[0], 'cpu')[2]}"
    assert m.delta == f"wrong · true digit {task_sample_label(wrong[0])}"
    assert m.proto.color == Metric.MetricColor.Value("RED")


def test_model_scorer_shows_one_macs_ratio_and_the_models_patch() -> None:
    from adapatch.model import pruned_macs, resolve_model

    name = list_task_samples()[2]
    at = _on("pages/pruning.py", image=f"sample:{name}")
    assert any("MACs ratio" in m.label for m in at.metric)  # saliency scorers: the preset's ratio
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    ok(at)
    macs = [m for m in at.metric if "MACs" in m.label]
    assert [m.label for m in macs] == ["Model MACs ratio"], [m.label for m in at.metric]
    res = mv.prune_result(name, "attention", 0.5, "cpu")
    full, pruned = pruned_macs(resolve_model("task", device="cpu"), res)
    assert macs[0].value == f"×{pruned / full:.3f}"
    assert all(s.label != "ViT preset (for MACs)" for s in at.selectbox)  # no preset to pick: not used
    patch = at.selectbox(key="w_prune_patch_model")
    assert patch.disabled and patch.value == 8
    # back to a saliency scorer: the user's own grid size and preset come back unchanged
    at.selectbox(key="w_prune_scorer").set_value("mean").run()
    ok(at)
    assert at.selectbox(key="w_prune_patch").value == 16
    assert any(m.label == "MACs ratio ViT-B" for m in at.metric)


def _near_points_brute(layout: ap.PatchLayout, query: dict) -> int:
    """Finest tokens with a point inside, or their centre closer to one than the soft edge (where the
    query map is above 0): box by box."""
    q = ap.Query.from_dict(query)
    boxes = np.asarray(layout.boxes).reshape(-1, 3)
    size = int(boxes[:, 2].min())
    n = 0
    for y, x, s in boxes[boxes[:, 2] == size]:
        c = (y + (s - 1) / 2, x + (s - 1) / 2)
        inside = any(y <= round(py) < y + s and x <= round(px) < x + s for py, px in q.points)
        near = min(np.hypot(py - c[0], px - c[1]) for py, px in q.points) < q.falloff
        n += inside or near
    return n


@pytest.mark.parametrize("falloff", [0.0, 20.0, 44.8])
def test_points_count_the_tokens_near_them(falloff: float) -> None:
    img = load_sample("astronaut")
    query = {"kind": "points", "points": [[120.0, 200.0], [300.4, 60.6], [447.0, 0.0]], "falloff": falloff}
    lay = ap.quadtree(img, budget=300, min_size=16, max_size=64, query=ap.query_map(img, ap.Query.from_dict(query)),
                      query_weight=0.5)
    inside, _, _ = query_ui.finest_in_region(lay, query)
    assert inside == _near_points_brute(lay, query)
    assert inside >= 1  # every point lies in some finest token near it: never "0 of N" with points on the image
    if falloff:
        assert inside > 3  # the neighbourhood, not the three pixels


def test_points_query_metric_on_patch_layout() -> None:
    at = app().run()
    at.radio(key="w_query_kind").set_value("region").run()
    at.text_input(key=query_ui.POINTS_KEY).set_value("120, 200; 300, 60")
    at.button(key="w_qpoints_apply").click().run()
    ok(at)
    labels = [m.label for m in at.metric]
    assert "Near points · with" in labels and "In region · with" not in labels, labels
    near, total = (int(v) for v in metric(at, "Near points · with").split("/"))
    assert 0 < near <= total


def test_model_page_colour_bars_and_mean_tokens() -> None:
    at = _on("pages/model.py")
    captions = [i.caption for e in at.get("image") for i in e.proto.imgs]
    assert sum(c.startswith("Colour bar (turbo)") for c in captions) == 2, captions
    tokens = list(at.dataframe[0].value["tokens"])
    assert all(t.replace(" → ", "").replace(" mean", "").replace(".", "").isdigit() for t in tokens), tokens
    assert all(len(part.split(".")[1].split()[0]) == 1 for t in tokens for part in t.split(" → ") if "." in part)
    assert any(t.endswith(" mean") for t in tokens)  # multiscale's tokens are a mean over the split
    assert mv.tokens_text(27.982) == "28.0 mean" and mv.tokens_text(64.0) == "64"


def test_model_page_marks_a_wrong_prediction_red() -> None:
    wrong = [n for n in list_task_samples() if mv.full_grid(n, "cpu")[2] != task_sample_label(n)]
    if not wrong:
        pytest.skip("the bundled model gets every digit sample right")
    at = _on("pages/model.py")
    at.selectbox(key="m_sample").set_value(wrong[0]).run()
    ok(at)
    captions = [i.caption for e in at.get("image") for i in e.proto.imgs]
    full = next(c for c in captions if c.startswith("full grid:"))
    assert f":red[**wrong**, true {task_sample_label(wrong[0])}]" in full, full


def _attention_saliency(at: AppTest) -> AppTest:
    """Pick the attention saliency (the bundled digits model's) on the Saliency page."""
    at.switch_page("pages/saliency.py").run()
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    ok(at)
    return at


def test_attention_saliency_of_the_digits_model_warns_where_a_result_uses_it() -> None:
    at = _attention_saliency(app().run())  # astronaut
    at.switch_page("pages/layout.py").run()
    at.selectbox(key="w_strategy").set_value("quadtree").run()
    at.selectbox(key="w_importance").set_value("distortion").run()
    ok(at)
    assert _caveats(at) == []  # the layout does not use the saliency: nothing to warn about
    at.selectbox(key="w_importance").set_value("mean_saliency").run()
    ok(at)
    assert len(_caveats(at)) == 1 and "attention saliency" in _caveats(at)[0]
    _class_query(at)  # a class query of the same model: still one warning (and one "Use a digit sample")
    assert len(_caveats(at)) == 1
    at.switch_page("pages/pruning.py").run()  # saliency scorers score tokens with it
    ok(at)
    assert len(_caveats(at)) == 1 and "attention saliency" in _caveats(at)[0]
