"""Checkpoints from bytes (uploads), model sources and descriptions, model-based settings + snippets."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

import adapatch as ap
from adapatch.export import (frame_image, in_model_frame, layout_from_settings, model_prune_from_settings,
                             normalize_settings, settings_model, settings_snippet)
from adapatch.model import (TASK, create_model, describe_model, load_model_bytes, load_task_model,
                            prune_tokens_learned, read_state_dict_bytes, resize_for_model, resolve_model, save_model)
from adapatch.model.task import TaskModel
from adapatch.samples import list_task_samples, load_sample, sample_path


def _small_vit():
    torch.manual_seed(0)
    return create_model("ViT-Ti", device="cpu", img_size=32, depth=2, num_classes=10)


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_safetensors_bytes_load_the_same_model(tmp_path) -> None:
    vit = _small_vit()
    path = tmp_path / "small.safetensors"
    save_model(vit, path)
    sd = read_state_dict_bytes(path.read_bytes(), "small.safetensors")
    assert set(sd) == set(vit.state_dict())
    assert torch.equal(sd["pos_embed"], vit.state_dict()["pos_embed"])
    loaded = load_model_bytes(path.read_bytes(), "small.safetensors", device="cpu")
    assert loaded.config == vit.config  # save_model writes the config into the file's metadata
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().forward_fixed(_x()), vit.eval().forward_fixed(_x()))


def test_untrained_save_model_file_stays_random_and_its_attention_is_refused(tmp_path) -> None:
    from adapatch.model import attention_saliency, prune_tokens_attention

    vit = _small_vit()
    path = tmp_path / "random.safetensors"
    save_model(vit, path)
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    for loaded in (load_model_bytes(path.read_bytes(), "random.safetensors", device="cpu"),
                   resolve_model(str(path))):
        assert not loaded.pretrained and "random weights" in loaded.weights_source
        with pytest.raises(ValueError, match="random weights"):
            attention_saliency(img, loaded)
        with pytest.raises(ValueError, match="random weights"):
            prune_tokens_attention(img, ap.uniform(32, 32, 16), loaded)
    vit.pretrained = True  # a trained model, saved: loads as trained
    save_model(vit, path)
    assert load_model_bytes(path.read_bytes(), "random.safetensors", device="cpu").pretrained


def test_task_vit_saved_by_save_model_round_trips_with_its_heads(tmp_path) -> None:
    task, _ = load_task_model(device="cpu")
    path = tmp_path / "task_vit.safetensors"
    save_model(task.vit, path)
    loaded = load_model_bytes(path.read_bytes(), "task_vit.safetensors", device="cpu")
    assert loaded.config == task.vit.config and loaded.config.heads == 3 and loaded.pretrained
    assert loaded.weights_source == "file task_vit.safetensors"


def test_torch_save_bytes_with_weights_only(tmp_path) -> None:
    vit = _small_vit()
    buf = io.BytesIO()
    torch.save({"model": vit.state_dict()}, buf)
    sd = read_state_dict_bytes(buf.getvalue(), "small.pth")
    assert torch.equal(sd["cls_token"], vit.state_dict()["cls_token"])
    loaded = load_model_bytes(buf.getvalue(), "small.pt", device="cpu", preprocess="half")
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().forward_fixed(_x()), vit.eval().forward_fixed(_x()))


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_code_running_pickle_in_bytes_is_refused_and_does_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"x": _Evil(str(marker))}, buf)
    with pytest.raises(ValueError, match="refusing") as info:
        read_state_dict_bytes(buf.getvalue(), "evil.pth")
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("data,name,match", [
    (b"\x00" * 64, "bad.safetensors", "not a readable safetensors"),
    (b"not a pickle at all", "bad.pth", "not a readable PyTorch checkpoint"),
    (b"PK\x03\x04 truncated zip", "bad.pt", "not a readable PyTorch checkpoint"),
    (b"", "empty.safetensors", "empty"),
    (b"whatever", "weights.zip", "checkpoint must be"),
])
def test_bad_checkpoint_bytes_are_one_line_errors(data: bytes, name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        read_state_dict_bytes(data, name)
    assert "\n" not in str(info.value)


def test_non_vit_state_dict_is_refused(tmp_path) -> None:
    from safetensors.torch import save

    data = save({"conv.weight": torch.zeros(4, 3, 3, 3)})
    with pytest.raises(ValueError, match="not a timm ViT state dict"):
        load_model_bytes(data, "resnet.safetensors")


def test_resolve_and_describe_models(tmp_path) -> None:
    task = resolve_model(TASK)
    assert isinstance(task, TaskModel) and resolve_model(None) is task and resolve_model(task) is task
    d = describe_model(task)
    assert d["task_model"] and d["has_pruner"] and d["has_selector"] and d["pretrained"]
    assert (d["img_size"], d["patch_size"], d["grid_size"], d["num_classes"]) == (64, 8, 8, 10)
    path = tmp_path / "small.safetensors"
    save_model(_small_vit(), path)
    vit = resolve_model(str(path))
    d2 = describe_model(vit)
    assert not d2["task_model"] and not d2["has_pruner"] and d2["img_size"] == 32 and d2["patch_size"] == 16
    assert not d2["pretrained"]
    with pytest.raises(ValueError, match="timm"):
        resolve_model("vit_tiny_patch16_224_not_a_file")  # no timm here -> clear error, nothing downloaded
    with pytest.raises(ValueError, match="model must be"):
        resolve_model("   ")


def test_task_samples_are_samples() -> None:
    names = list_task_samples()
    assert "digit_3_label5" in names and len(names) == 8
    assert sample_path("digit_3_label5").name == "digit_3_label5.png"
    assert load_sample("digit_3_label5").shape == (64, 64, 3)


# ------------------------------------------------------------------ model-based settings and snippets
DIGIT = "digit_3_label5"
BASE = {"image": {"source": f"sample:{DIGIT}", "resize": None}, "saliency": {"method": "edges", "params": {}},
        "vit": "ViT-S", "device": "cpu"}
MODEL_CASES = [
    {"strategy": "uniform", "params": {"patch_size": 8}, "prune": {"keep_ratio": 0.3, "scorer": "learned"}},
    {"strategy": "uniform", "params": {"patch_size": 8},
     "prune": {"keep_ratio": 0.5, "scorer": "attention", "model": "task"}},
    {"strategy": "learned_selector", "params": {"k": 12, "model": "task"}},
    {"strategy": "quadtree", "params": {"threshold": 0.2, "min_size": 8, "max_size": 32, "importance": "mean_saliency"},
     "saliency": {"method": "attention", "params": {"model": "task", "mode": "cls", "head_fusion": "max",
                                                   "discard_ratio": 0.9}}},
]


def _run(snippet: str) -> dict:
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the point of the test
    return ns


@pytest.mark.parametrize("case", MODEL_CASES, ids=["learned", "attention", "selector", "attention-saliency"])
def test_model_snippet_reproduces_the_kept_tokens(case: dict, capsys) -> None:
    settings = {**BASE, **case}
    image = load_sample(DIGIT)
    expected = layout_from_settings(image, settings)
    ns = _run(settings_snippet(settings))
    assert ns["layout"] == expected
    np.testing.assert_array_equal(ns["image"], frame_image(image, settings))
    assert "tokens" in capsys.readouterr().out


def test_model_prune_settings_match_the_model_api() -> None:
    settings = {**BASE, **MODEL_CASES[0]}
    assert in_model_frame(settings) and settings_model(normalize_settings(settings)) == "task"
    model, _ = load_task_model(device="cpu")
    big = ap.load_image(sample_path("astronaut"))
    small = resize_for_model(big, model)
    res = model_prune_from_settings(big, settings, model)
    ref = prune_tokens_learned(small, ap.uniform(64, 64, 8), model, keep_ratio=0.3, device="cpu")
    np.testing.assert_array_equal(res.kept, ref.kept)
    assert res.layout.num_tokens == ap.keep_count(64, 0.3) and res.prediction == ref.prediction


def test_model_settings_validation_and_old_prune_format() -> None:
    old = normalize_settings({**BASE, "strategy": "uniform", "params": {"patch_size": 16},
                              "prune": {"keep_ratio": 0.5, "reduce": "max"}})
    assert old["prune"] == {"keep_ratio": 0.5, "scorer": "max", "model": None}
    with pytest.raises(ValueError, match="disagree"):
        normalize_settings({**BASE, "strategy": "uniform", "prune": {"keep_ratio": 0.5, "reduce": "max",
                                                                       "scorer": "mean"}})
    with pytest.raises(ValueError, match="uniform grid"):
        normalize_settings({**BASE, "strategy": "quadtree", "prune": {"keep_ratio": 0.5, "scorer": "learned"}})
    with pytest.raises(ValueError, match="prune and solve_budget must be None"):
        normalize_settings({**BASE, "strategy": "learned_selector", "params": {"k": 3}, "solve_budget": 10})
    evil = 'x.pth"); import os; os.system("echo pwned"); ("'
    snippet = settings_snippet({**BASE, "strategy": "learned_selector", "params": {"k": 4, "model": evil}})
    assert f"load_model({evil!r}" in snippet
    compile(snippet, "<snippet>", "exec")
