"""The Model page under AppTest: renders, and its numbers are the model API's numbers."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import adapatch as ap  # noqa: E402
from tests.app_helpers import open_page  # noqa: E402


def test_model_page_renders_and_prunes_exactly_k() -> None:
    from adapatch.model import load_task_model, prune_tokens_learned, resize_for_model
    from adapatch.model.results import load_task_sample, task_samples

    at = open_page("pages/model.py", timeout=180)
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    at.slider(key="m_keep").set_value(0.25).run()
    assert not at.exception
    name = task_samples()[0]["name"]
    img, _ = load_task_sample(name)
    model, _ = load_task_model(device="cpu")
    small = resize_for_model(img, model)
    grid = ap.uniform(small.shape[0], small.shape[1], model.config.patch_size)
    res = prune_tokens_learned(small, grid, model, keep_ratio=0.25, device="cpu")
    assert res.layout.num_tokens == ap.keep_count(grid.num_tokens, 0.25)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 14  # rows of adapatch/assets/model/results.json


def test_attention_saliency_with_choices_on_the_saliency_page() -> None:
    at = open_page("pages/saliency.py", timeout=180)
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    assert not at.exception and not at.main.error
    assert sorted(at.selectbox(key="w_sal_attention_mode").options) == ["cls", "rollout"]
    at.selectbox(key="w_sal_attention_mode").set_value("cls").run()
    assert not at.exception and not at.main.error
    assert any("digits" in c.value for c in at.caption)
