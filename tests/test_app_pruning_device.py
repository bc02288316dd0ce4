"""Token pruning runs its model calls on the selected device (issue 12).

The sidebar's device ("auto", "cpu", "cuda" when present) reaches every model call the Token pruning
page makes: the learned and attention scorers (``prune_tokens_learned`` / ``prune_tokens_attention``,
through ``adapatch.export``), attention saliency (the picked model, loaded on that device) and the
agreement chart. The exported snippet names the same device. Spies wrap the library functions and
record the device argument and where the model lives; the calls still run (the page shows the
library's numbers). CPU/CUDA agreement of the same code path: ``tests/test_model_device.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
import streamlit as st
import torch

import adapatch as ap
import adapatch.model as am
from adapatch import export
from adapatch.model import agreement as agreement_mod
from adapatch.model import attention as attention_mod
from adapatch.model.task import as_vit
from tests.app_helpers import app, ok

DIGIT = "sample:digit_3_label5"
ON_CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                          reason="needs CUDA")])


def _model_device(model) -> str:
    return next(as_vit(model).parameters()).device.type


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Every spied model call: ``{"fn", "device", "model_device"}`` (the call itself still runs)."""
    seen: list[dict] = []

    def spy(owner, name: str, model_pos: int):
        real = getattr(owner, name)

        def wrapped(*args, **kwargs):
            model = kwargs.get("model", args[model_pos] if len(args) > model_pos else None)
            dev = kwargs.get("device")
            seen.append({"fn": name, "device": None if dev is None else str(dev),
                         "model_device": None if model is None else _model_device(model)})
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)

    spy(am, "prune_tokens_learned", 2)  # export imports these from adapatch.model at call time
    spy(am, "prune_tokens_attention", 2)
    spy(am, "selector_layout", 1)
    spy(attention_mod, "attention_saliency", 1)  # the "attention" saliency method calls it
    spy(agreement_mod, "prune_agreement", 0)
    st.cache_data.clear()  # results cached by earlier tests would skip the calls
    return seen


def _pruning_page(device: str):
    at = app().run()
    at.selectbox(key="w_image").set_value(DIGIT).run()
    at.selectbox(key="w_device").set_value(device).run()
    at.switch_page("pages/pruning.py").run()
    ok(at)
    assert at.selectbox(key="w_device").value == device
    return at


def _snippet(at) -> str:
    code = [c.value for c in at.code if "import adapatch as ap" in c.value]
    assert len(code) == 1, "no export snippet on the page"
    return code[0]


@pytest.mark.parametrize("device", ["cpu", "auto", ON_CUDA])
def test_model_scorers_and_agreement_run_on_the_selected_device(calls, device) -> None:
    want = str(ap.resolve_device(device))  # where the calls must run ("auto": CUDA when present)
    at = _pruning_page(device)
    for scorer, fn in (("learned", "prune_tokens_learned"), ("attention", "prune_tokens_attention")):
        at.selectbox(key="w_prune_scorer").set_value(scorer).run()
        ok(at)
        mine = [c for c in calls if c["fn"] == fn]
        assert mine, f"the {scorer} scorer made no {fn} call"
        # the settings' device as the user chose it (not a hard-wired "cpu"), the model already there
        assert all(c["device"] == device and c["model_device"] == want for c in mine), mine
        code = _snippet(at)
        assert f"load_task_model(device={device!r})" in code
        assert f"{fn}(image, layout, model, keep_ratio=" in code and f"device={device!r})" in code
        assert any(f"Model calls run on **{want.upper()}**" in c.value for c in at.caption)
    agree = [c for c in calls if c["fn"] == "prune_agreement"]
    assert agree, "the agreement chart made no model call"
    assert all(c["device"] == want and c["model_device"] == want for c in agree), agree


def test_attention_saliency_scorer_runs_the_model_on_the_selected_device(calls) -> None:
    at = _pruning_page("cpu")
    at.switch_page("pages/saliency.py").run()
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    ok(at)
    at.switch_page("pages/pruning.py").run()
    at.selectbox(key="w_prune_scorer").set_value("max").run()
    ok(at)
    sal = [c for c in calls if c["fn"] == "attention_saliency"]
    assert sal, "the attention saliency scorer made no model call"
    assert all(c["device"] == "cpu" and c["model_device"] == "cpu" for c in sal), sal


# ------------------------------------------------------------------ the library path the app uses
def _settings(device: str, **over) -> dict:
    base = {"strategy": "uniform", "params": {"patch_size": 8}, "vit": "ViT-S", "device": device,
            "prune": {"keep_ratio": 0.5, "scorer": "learned", "model": "task"},
            "image": {"source": DIGIT, "resize": None}}
    return {**base, **over}


def test_export_runs_model_settings_on_their_device(calls) -> None:
    from adapatch.samples import load_sample
    img = load_sample(DIGIT[len("sample:"):])
    for device in ("cpu", "auto"):
        want = str(ap.resolve_device(device))
        calls.clear()
        s = _settings(device)
        assert export.settings_device(s) == device
        assert _model_device(export.resolve_settings_model(s)) == want
        export.layout_from_settings(img, s)
        export.layout_from_settings(img, _settings(device, prune={"keep_ratio": 0.25, "scorer": "attention"}))
        sel = _settings(device, strategy="learned_selector", params={"k": 9}, prune=None)
        assert export.layout_from_settings(img, sel).num_tokens == 9
        assert [c["fn"] for c in calls] == ["prune_tokens_learned", "prune_tokens_attention", "selector_layout"]
        assert all(c["device"] == device and c["model_device"] == want for c in calls), calls
        assert f"selector_layout(image, model, k=9, device={device!r})" in export.settings_snippet(sel)
