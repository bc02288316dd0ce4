"""Model calls on the selected device (issue 12): the app's model views (``app_support.model_view``)
run on the sidebar's device, each on a model kept for that device, so a model shared between
sessions never moves; CPU and CUDA give the same maps, scores and predictions (to ~1e-4).

The CUDA tests are marked ``gpu`` and skipped without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")

from adapatch.app_support import model_view as mv  # noqa: E402
from adapatch.model import create_model, selector_importance  # noqa: E402
from adapatch.model.results import task_samples  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CPU/GPU agreement)")
ATOL = 1e-4


def _device_of(model) -> torch.device:
    from adapatch.model.task import as_vit
    return next(as_vit(model).parameters()).device


def test_on_device_keeps_a_model_that_is_there_and_the_task_model_per_device() -> None:
    vit = create_model("ViT-Ti", device="cpu", depth=1)
    assert mv.on_device("file:abc", vit, "cpu") is vit
    assert mv.on_device("task", mv.task_model("cpu"), "cpu") is mv.task_model("cpu")
    assert _device_of(mv.task_model("cpu")).type == "cpu"


def _close_kept(kept_a: np.ndarray, kept_b: np.ndarray, scores: np.ndarray, k: int) -> None:
    """Same kept tokens, unless two scores at the cut are within the tolerance (a near-tie)."""
    if set(kept_a.tolist()) == set(kept_b.tolist()):
        return
    s = np.sort(scores)[::-1]
    assert k < len(s) and abs(s[k - 1] - s[k]) < ATOL, "kept tokens differ without a near-tie"


@pytest.mark.gpu
@CUDA
def test_model_page_views_agree_on_cpu_and_cuda() -> None:
    for s in task_samples()[:4]:
        name = s["name"]
        for mode in ("rollout", "cls"):
            a = mv.attention_map(name, mode, "mean", 0.9, "cpu")
            b = mv.attention_map(name, mode, "mean", 0.9, "cuda")
            np.testing.assert_allclose(a, b, atol=ATOL)
        imp_c, lay_c = mv.selector_result(name, 16, "cpu")
        imp_g, lay_g = mv.selector_result(name, 16, "cuda")
        np.testing.assert_allclose(imp_c, imp_g, atol=ATOL)
        assert lay_c.num_tokens == lay_g.num_tokens == 16
        for method in ("learned", "attention"):
            for keep in (0.25, 0.5, 1.0):
                rc = mv.prune_result(name, method, keep, "cpu")
                rg = mv.prune_result(name, method, keep, "cuda")
                np.testing.assert_allclose(rc.scores, rg.scores, atol=ATOL)
                assert rc.layout.num_tokens == rg.layout.num_tokens
                _close_kept(rc.kept, rg.kept, rc.scores, rc.layout.num_tokens)
                assert rc.prediction == rg.prediction
    # the shared per-device models never moved
    assert _device_of(mv.task_model("cpu")).type == "cpu"
    assert _device_of(mv.task_model("cuda")).type == "cuda"


@pytest.mark.gpu
@CUDA
def test_agreement_curve_is_the_same_on_cpu_and_cuda() -> None:
    spec = '{"method": "edges", "params": {}}'
    a, b = mv.agreement(spec, "cpu"), mv.agreement(spec, "cuda")
    assert a["full_predictions"] == b["full_predictions"]
    for scorer in a["agreement"]:
        np.testing.assert_allclose(a["agreement"][scorer], b["agreement"][scorer], atol=1 / len(a["full_predictions"]))
        assert b["agreement"][scorer][-1] == 1.0


@pytest.mark.gpu
@CUDA
def test_a_picked_model_is_copied_to_cuda_and_the_shared_one_stays() -> None:
    from adapatch.model.results import load_task_sample
    cpu_model = mv.task_model("cpu")
    img, _ = load_task_sample(task_samples()[0]["name"])
    on_gpu = mv.on_device("file:copy-test", cpu_model, "cuda")  # any key but "task": a cached deep copy
    assert on_gpu is not cpu_model and _device_of(on_gpu).type == "cuda"
    assert _device_of(cpu_model).type == "cpu"
    assert mv.on_device("file:copy-test", cpu_model, "cuda") is on_gpu  # cached
    np.testing.assert_allclose(selector_importance(img, cpu_model, device="cpu"),
                               selector_importance(img, on_gpu, device="cuda"), atol=ATOL)
    assert _device_of(cpu_model).type == "cpu"


@pytest.mark.gpu
@CUDA
def test_live_latency_runs_on_cuda_and_says_so() -> None:
    from adapatch.model.latency import measure_latency
    res = measure_latency("ViT-Ti", token_counts=(8, 16), batch_sizes=(1,), repeats=1, warmup=1, device="cuda")
    assert res["environment"]["device"] == "cuda" and res["environment"]["cuda"]
    assert mv.live_note(res).startswith("Measured on this machine just now (CUDA, ")


# ------------------------------------------------------------------ the app's settings path (Token pruning, selector)
CONV_ATOL = 2e-3
"""Maps that go through a Conv2d (the selector, attention's fixed-grid patch embedding): cuDNN may use
TF32 on recent GPUs (torch's default), about 1e-3 relative; kept tokens still match unless two
scores at the cut are within this tolerance."""


def _on(device: str):
    """The bundled model as the app loads it for ``device`` (``model_source.load``)."""
    from adapatch.model import resolve_model
    return resolve_model("task", device=device)


def _app_settings(device: str, **over) -> dict:
    """Settings as ``recipes.prune_settings`` / ``layout_settings`` give them on the sidebar's ``device``."""
    base = {"strategy": "uniform", "params": {"patch_size": 8}, "vit": "ViT-B", "device": device,
            "saliency": {"method": "edges", "params": {}}, "prune": None}
    return {**base, **over}


def _boxes(layout) -> set[tuple[int, ...]]:
    return set(map(tuple, layout.boxes.tolist()))


def _same_kept_layouts(a, b, scores: np.ndarray, atol: float) -> None:
    """Two layouts of one grid keep the same boxes, unless the two scores at the cut are a near-tie."""
    assert a.num_tokens == b.num_tokens
    if _boxes(a) == _boxes(b):
        return
    s = np.sort(np.ravel(scores))[::-1]
    k = a.num_tokens
    assert k < len(s) and abs(s[k - 1] - s[k]) < atol, "kept tokens differ without a near-tie"


@pytest.mark.gpu
@CUDA
def test_pruning_scorers_agree_on_cpu_and_cuda_through_the_settings_path() -> None:
    """``export.model_prune_from_settings`` (what ``compute.model_prune`` caches) on each device's model."""
    from adapatch.export import model_prune_from_settings
    from adapatch.model.results import load_task_sample
    cpu, gpu = _on("cpu"), _on("cuda")
    for s in task_samples()[:4]:
        img, _ = load_task_sample(s["name"])
        for scorer in ("learned", "attention"):
            for keep in (0.25, 0.5, 1.0):
                prune = {"keep_ratio": keep, "scorer": scorer, "model": "task"}
                rc = model_prune_from_settings(img, _app_settings("cpu", prune=prune), cpu)
                rg = model_prune_from_settings(img, _app_settings("cuda", prune=prune), gpu)
                np.testing.assert_allclose(rc.scores, rg.scores, atol=ATOL)
                assert rc.layout.num_tokens == rg.layout.num_tokens
                _close_kept(rc.kept, rg.kept, rc.scores, rc.layout.num_tokens)
                assert rc.prediction == rg.prediction
    assert _device_of(cpu).type == "cpu" and _device_of(gpu).type == "cuda"  # neither shared model moved


@pytest.mark.gpu
@CUDA
def test_selector_and_attention_saliency_agree_on_cpu_and_cuda_through_the_settings_path() -> None:
    """The learned selector (``export.layout_from_settings``, what ``compute.layout`` caches) and the
    attention saliency scorer (``ap.saliency`` with the picked model, then the settings' pruning)."""
    import adapatch as ap
    from adapatch.export import layout_from_settings
    from adapatch.model.results import load_task_sample
    cpu, gpu = _on("cpu"), _on("cuda")
    for s in task_samples()[:4]:
        img, _ = load_task_sample(s["name"])
        for k in (4, 16, 32):
            sel = {"strategy": "learned_selector", "params": {"k": k, "model": "task"}}
            lc = layout_from_settings(img, _app_settings("cpu", **sel), model=cpu)
            lg = layout_from_settings(img, _app_settings("cuda", **sel), model=gpu)
            probs = selector_importance(img, cpu, device="cpu")
            np.testing.assert_allclose(probs, selector_importance(img, gpu, device="cuda"), atol=CONV_ATOL)
            _same_kept_layouts(lc, lg, probs, CONV_ATOL)
        sal_c = ap.saliency(img, "attention", model=cpu)  # runs where the model lives (compute._saliency)
        sal_g = ap.saliency(img, "attention", model=gpu)
        np.testing.assert_allclose(sal_c, sal_g, atol=CONV_ATOL)
        spec = {"method": "attention", "params": {"model": "task"}}
        for reduce in ("mean", "max"):
            prune = {"keep_ratio": 0.5, "scorer": reduce}
            lc = layout_from_settings(img, _app_settings("cpu", saliency=spec, prune=prune), sal_c, model=cpu)
            lg = layout_from_settings(img, _app_settings("cuda", saliency=spec, prune=prune), sal_g, model=gpu)
            grid = ap.uniform(img.shape[0], img.shape[1], 8)
            _same_kept_layouts(lc, lg, ap.token_scores(sal_c, grid, reduce), CONV_ATOL)
    assert _device_of(cpu).type == "cpu" and _device_of(gpu).type == "cuda"
