"""The Model page's "Agreement vs tokens" chart under AppTest (issue 13): top-1 agreement and KL of
adaptive layouts and pruning against the full grid, at equal tokens, for the bundled task model and
for an uploaded 1000-class checkpoint (ImageNet class names shown, attention refused when its weights
are random), on the bundled image set and on the current image. The chart's numbers are the
library's (``adapatch.model.agreement.token_agreement``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from adapatch.model import create_model, load_model, load_task_model, save_model
from adapatch.model.agreement import METHOD_LABELS, token_agreement
from adapatch.model.classes import class_label, class_names
from adapatch.samples import list_samples, list_task_samples, load_sample
from tests.app_helpers import app, metric, ok

FIRST = METHOD_LABELS["quadtree"]


def _figure(at: AppTest) -> dict:
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    figs = [f for f in figs if f["data"] and f["data"][0].get("name") == FIRST]
    assert len(figs) == 1, "no agreement-vs-tokens chart on the page"
    return figs[0]


def _series(fig: dict) -> dict[str, tuple[dict, dict]]:
    """``{name: (agreement trace, KL trace)}``: the left and the right panel of each method."""
    out: dict[str, list[dict]] = {}
    for d in fig["data"]:
        out.setdefault(d["name"], []).append(d)
    assert all(len(v) == 2 for v in out.values()), {k: len(v) for k, v in out.items()}
    return {k: (v[0] if v[0].get("xaxis", "x") == "x" else v[1], v[1] if v[0].get("xaxis", "x") == "x" else v[0])
            for k, v in out.items()}


def _captions(at: AppTest) -> str:
    return " ".join(c.value.replace("\\", "") for c in at.caption)


def _model_page() -> AppTest:
    at = app().run()
    at.switch_page("pages/model.py").run()
    ok(at)
    return at


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("agree_ckpt")
    for name, trained in (("imagenet_trained.safetensors", True), ("imagenet_random.safetensors", False)):
        torch.manual_seed(0)
        m = create_model("ViT-Ti", device="cpu", img_size=64, depth=2)  # 1000 classes, a 4x4 grid of 16 px
        m.pretrained = trained
        save_model(m, d / name)
    return d


def _upload(at: AppTest, path: Path) -> None:
    at.radio(key="w_model_source").set_value("file").run()
    at.file_uploader(key="w_model_file").set_value((path.name, path.read_bytes(), "application/octet-stream")).run()


def test_task_model_chart_is_the_librarys_numbers_on_the_digit_samples() -> None:
    at = _model_page()
    series = _series(_figure(at))
    want = token_agreement(load_task_model(device="cpu")[0], [load_sample(n) for n in list_task_samples()],
                           device="cpu")
    assert list(series) == [METHOD_LABELS[m] for m in want.methods]  # every scorer: the task model has them all
    for m in want.methods:
        agree, kl = series[METHOD_LABELS[m]]
        assert agree["x"] == want.tokens[m] and kl["x"] == want.tokens[m]
        assert agree["y"] == pytest.approx(want.agreement[m]) and kl["y"] == pytest.approx(want.kl[m], abs=1e-9)
        assert agree["y"][-1] == 1.0
    text = _captions(at)
    assert "At equal tokens" in text and "full grid of 64 tokens" in text
    assert f"the {len(list_task_samples())} bundled digit samples" in text
    assert "Not run" not in text


def test_current_image_with_the_task_model() -> None:
    at = _model_page()
    at.segmented_control(key="m_agree_images").set_value("current").run()
    ok(at)
    fig = _figure(at)
    assert all(len(d["y"]) == len(d["x"]) for d in fig["data"])
    assert all(y in (0.0, 1.0) for d in fig["data"][::2] for y in d["y"])  # one image: same class or not
    text = _captions(at)
    assert "one image: 0% or 100%" in text and "The full grid predicts" in text
    assert any("not a cluttered digit" in w.value for w in at.warning)  # the default image is a photo


def test_uploaded_1000_class_checkpoint_shows_imagenet_names(checkpoints) -> None:
    at = _model_page()
    _upload(at, checkpoints / "imagenet_trained.safetensors")
    ok(at)
    series = _series(_figure(at))
    assert METHOD_LABELS["prune_attention"] in series  # trained weights: attention pruning runs
    assert METHOD_LABELS["prune_learned"] not in series
    model = load_model(str(checkpoints / "imagenet_trained.safetensors"), device="cpu")
    want = token_agreement(model, [load_sample(n) for n in list_samples()], device="cpu")
    agree, _ = series[METHOD_LABELS["uniform"]]
    assert agree["y"] == pytest.approx(want.agreement["uniform"])
    text = _captions(at)
    assert f"the {len(list_samples())} bundled photo samples" in text and "full grid of 16 tokens" in text
    assert "Not run: pruning · learned scorer (needs a trained TokenPruner" in text

    at.segmented_control(key="m_agree_images").set_value("current").run()
    ok(at)
    cur = token_agreement(model, [load_sample("astronaut")], device="cpu")
    label = class_label(cur.full_predictions[0], 1000)
    assert " · " in label and label.split(" · ")[1] in class_names(1000)
    assert f"The full grid predicts {label}" in _captions(at).replace("*", "")
    hover = [c for d in _figure(at)["data"] for c in d["customdata"]]
    assert hover and all(" · " in c for c in hover)  # each method's predicted class, by name


def test_random_weights_still_chart_but_refuse_attention(checkpoints) -> None:
    at = _model_page()
    _upload(at, checkpoints / "imagenet_random.safetensors")
    ok(at)
    assert any("Random weights" in w.value for w in at.warning)
    series = _series(_figure(at))
    assert METHOD_LABELS["prune_attention"] not in series
    assert {METHOD_LABELS[m] for m in ("quadtree", "uniform", "prune_mean", "prune_max")} <= set(series)
    text = _captions(at)
    assert "pruning · EViT attention (model has random weights" in text
    assert "This model has random weights" in text


def test_pruning_page_names_the_imagenet_class(checkpoints) -> None:
    at = app().run()
    at.switch_page("pages/pruning.py").run()
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    _upload(at, checkpoints / "imagenet_trained.safetensors")
    ok(at)
    value = metric(at, "Prediction")  # the index as the value (it fits), "index · name" under it
    named = next(m.proto.delta for m in at.metric if m.label == "Prediction")
    assert value == f"class {named.split(' · ')[0]}"
    assert named.split(" · ", 1)[1] in class_names(1000)
