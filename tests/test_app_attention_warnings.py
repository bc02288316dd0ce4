"""The digits model's attention saliency on a photo: Compare and Efficiency warn once, as Patch
layout and Token pruning do (one warning and one "Use a digit sample" button per page)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.app_helpers import app, ok

CAVEAT = "not a cluttered digit"


def _caveats(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if CAVEAT in w.value]


def _with_attention_saliency() -> AppTest:
    at = app().run()  # astronaut: a photo
    at.switch_page("pages/saliency.py").run()
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    ok(at)
    return at


def test_compare_warns_once_when_its_layouts_use_the_attention_saliency() -> None:
    at = _with_attention_saliency()
    at.switch_page("pages/compare.py").run()
    ok(at)
    before = _caveats(at)
    for i in (0, 1):  # both layouts use the saliency: still one warning
        at.selectbox(key=f"w_cmp_{i}_strategy").set_value("quadtree").run()
        at.selectbox(key=f"w_cmp_{i}_importance").set_value("mean_saliency").run()
    ok(at)
    assert len(_caveats(at)) == 1 and "attention saliency" in _caveats(at)[0]
    for i in (0, 1):
        at.selectbox(key=f"w_cmp_{i}_importance").set_value("distortion").run()
    ok(at)
    assert len(_caveats(at)) == len([c for c in before if "attention saliency" not in c]) == 0


def test_efficiency_warns_once_when_a_strategy_uses_the_attention_saliency() -> None:
    at = _with_attention_saliency()
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    caveats = _caveats(at)  # greedy's saliency allocation (the default) reads the map, on every image
    assert len(caveats) == 1 and "attention saliency" in caveats[0], caveats
