"""Model-based views under AppTest: learned/attention pruning, the learned selector, attention
saliency with the model picker (bundled model, an uploaded checkpoint, timm when present).

Numbers on the page must be the model API's numbers, and the exported snippet, executed, must
give the same kept tokens.
"""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.model import (create_model, load_task_model, model_grid, prune_tokens_attention,  # noqa: E402
                            prune_tokens_learned, resize_for_model, save_model, selector_layout)
from adapatch.samples import load_sample  # noqa: E402
from tests.app_helpers import metric as _metric, ok as _ok, open_page, tokens as _tokens  # noqa: E402

DIGIT = "digit_3_label5"


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _snippet_layout(at: AppTest) -> ap.PatchLayout:
    code = [c.value for c in at.code if "import adapatch as ap" in c.value]
    assert len(code) == 1, "no export snippet on the page"
    ns: dict = {}
    exec(compile(code[0], "<snippet>", "exec"), ns)  # noqa: S102 - the point of the test
    return ns["layout"]


def _delta(at: AppTest, label: str) -> str:
    values = [m.proto.delta for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}"
    return values[0]


def _errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.error]


@pytest.fixture(scope="module")
def task():
    return load_task_model(device="cpu")[0]


@pytest.fixture(scope="module")
def digit(task) -> np.ndarray:
    return resize_for_model(load_sample(DIGIT), task)


def _open(page: str, image: str = f"sample:{DIGIT}") -> AppTest:
    """``page`` opened on ``image`` (the digit sample unless told), checked: where these tests start."""
    at = open_page(page, image=image, timeout=180)
    _ok(at)
    return at


def test_learned_and_attention_pruning_match_the_library(task, digit, capsys) -> None:
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("learned").run()
    _ok(at)
    res = prune_tokens_learned(digit, model_grid(task), task, keep_ratio=0.5, device="cpu")
    assert _tokens(at) == res.layout.num_tokens == ap.keep_count(64, 0.5)
    assert _metric(at, "Prediction") == f"class {res.prediction}"
    # the bundled model on its own digit sample: marked right or wrong against its true digit, as the Demo marks it
    assert _delta(at, "Prediction") == f"{'right' if res.prediction == 5 else 'wrong'} · true digit 5"
    assert _snippet_layout(at) == res.layout  # the exported snippet keeps exactly these tokens
    at.slider(key="w_keep_ratio").set_value(0.25).run()
    _ok(at)
    res = prune_tokens_learned(digit, model_grid(task), task, keep_ratio=0.25, device="cpu")
    assert _tokens(at) == res.layout.num_tokens == ap.keep_count(64, 0.25)
    assert _snippet_layout(at) == res.layout
    # the numbers compare with the model's own full grid (8 px on its 64x64 input), not a 16 px grid
    eff = ap.efficiency(res.layout, "ViT-B")
    assert _int(_metric(at, "Uniform 8 px")) == 64
    assert _metric(at, "Reduction") == f"{100 * eff['token_reduction_vs_uniform_min']:.1f}%" == "75.0%"

    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    _ok(at)
    res = prune_tokens_attention(digit, model_grid(task), task, keep_ratio=0.25, device="cpu")
    assert _tokens(at) == res.layout.num_tokens
    assert _snippet_layout(at) == res.layout
    assert any("Bundled task model" in m.value for m in at.markdown)
    patch = at.selectbox(key="w_prune_patch_model")  # model scorers use the model's own grid: its patch size shown
    assert patch.disabled and patch.value == task.config.patch_size == 8
    capsys.readouterr()


def test_bundled_model_on_a_photo_warns_and_offers_a_digit() -> None:
    at = _open("pages/pruning.py", image="sample:astronaut")
    at.selectbox(key="w_prune_scorer").set_value("learned").run()
    _ok(at)
    assert any("not a cluttered digit" in w.value for w in at.warning)
    at.button(key="w_model_use_digit").click().run()
    _ok(at)
    assert at.session_state["ap_current"].startswith("sample:digit_")
    assert at.selectbox(key="w_image").value == at.session_state["ap_current"]
    assert not any("not a cluttered digit" in w.value for w in at.warning)


def test_layout_page_learned_selector(task, digit) -> None:
    at = _open("pages/layout.py")
    at.selectbox(key="w_strategy").set_value("learned_selector").run()
    _ok(at)
    assert _tokens(at) == 16
    at.slider(key="w_selector_k").set_value(9).run()
    _ok(at)
    want = selector_layout(digit, task, k=9, device="cpu")
    assert _tokens(at) == 9
    assert _snippet_layout(at) == want
    assert _metric(at, "Reduction") == f"{100 * (1 - 9 / 64):.1f}%"
    assert at.slider(key="w_selector_k").max == 64
    assert any("64x64 input frame" in c.value for c in at.caption)
    at.selectbox(key="w_strategy").set_value("quadtree").run()  # back to the usual page
    _ok(at)
    assert [s for s in at.select_slider if s.label == "Importance threshold"]  # budget mode: the implied one, disabled


def test_saliency_page_attention_with_the_bundled_model() -> None:
    at = _open("pages/saliency.py")
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    _ok(at)
    assert any("Bundled task model" in m.value for m in at.markdown)
    at.selectbox(key="w_sal_attention_mode").set_value("cls").run()
    _ok(at)
    assert at.session_state["ap_settings"]["saliency_params"]["attention"]["mode"] == "cls"
    assert any("digits" in c.value for c in at.caption)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, task) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    save_model(task.vit, d / "task_vit.safetensors")  # trained: a real, local checkpoint
    torch.manual_seed(0)
    save_model(create_model("ViT-Ti", device="cpu", img_size=32, depth=2, num_classes=10), d / "random.safetensors")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    (d / "evil.pth").write_bytes(buf.getvalue())
    return d


def _upload(at: AppTest, path: Path) -> None:
    at.file_uploader(key="w_model_file").set_value((path.name, path.read_bytes(), "application/octet-stream")).run()


def test_uploaded_checkpoint_through_the_picker(task, digit, checkpoints, monkeypatch, capsys) -> None:
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_model_source").set_value("file").run()
    assert not at.exception
    assert any("Upload a checkpoint" in i.value for i in at.info)

    _upload(at, checkpoints / "evil.pth")  # a code-running pickle: one line, nothing runs
    assert not at.exception
    assert any("refusing to load evil.pth" in e for e in _errors(at)), _errors(at)
    assert "pwned" not in capsys.readouterr().out

    _upload(at, checkpoints / "task_vit.safetensors")
    _ok(at)
    assert at.session_state["ap_model_file"]["name"] == "task_vit.safetensors"
    assert any("Local checkpoint file · task_vit.safetensors" in m.value.replace("\\", "") for m in at.markdown)
    res = prune_tokens_attention(digit, model_grid(task), task.vit, keep_ratio=0.5, device="cpu")
    assert _tokens(at) == res.layout.num_tokens
    assert "true digit" not in _delta(at, "Prediction")  # a file's classes are not the task's digits
    monkeypatch.chdir(checkpoints)  # the snippet loads the checkpoint by its file name
    assert _snippet_layout(at) == res.layout

    at.selectbox(key="w_prune_scorer").set_value("learned").run()  # a plain ViT has no trained pruner
    _ok(at)
    assert any("only the bundled task model" in w.value for w in at.warning)

    at.switch_page("pages/saliency.py").run()  # the picked file survives the page switch
    at.selectbox(key="w_saliency_method").set_value("attention").run()
    _ok(at)
    assert at.radio(key="w_model_source").value == "file"
    assert any("task_vit.safetensors" in c.value.replace("\\", "") for c in at.caption)

    _upload(at, checkpoints / "random.safetensors")  # untrained: its attention is refused, plainly
    assert not at.exception
    assert any("Random weights" in w.value for w in at.warning)
    assert any("random weights" in e for e in _errors(at)), _errors(at)

    at.button(key="w_model_forget").click().run()  # forgotten, and not read back from the uploader
    assert not at.exception
    assert "ap_model_file" not in at.session_state
    assert any("Upload a checkpoint" in i.value for i in at.info)
    capsys.readouterr()


def test_timm_option_is_absent_without_timm(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    _ok(at)
    assert list(at.radio(key="w_model_source").options) == ["Bundled task model (cluttered digits)",
                                                            "Local checkpoint file"]
    assert any("timm model name: unavailable" in c.value for c in at.caption)


def _fake_timm(fail: bool) -> types.ModuleType:
    mod = types.ModuleType("timm")

    def create_model_(name: str, pretrained: bool = False, **kw):
        if fail and pretrained:  # the architecture builds (on meta, before any download); the weights fail
            raise RuntimeError("Hub unreachable\nsecond line of a long trace")
        torch.manual_seed(0)
        from adapatch.model import ViTConfig, VisionTransformer  # built where torch's default device says (meta first)
        return VisionTransformer(ViTConfig(img_size=32, patch_size=16, dim=192, depth=2, heads=3, num_classes=10))

    mod.create_model = create_model_
    return mod


def test_timm_name_failure_is_one_line_and_success_loads(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(fail=True))
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_model_source").set_value("timm").run()
    assert not at.exception
    assert any("Enter a timm model name" in i.value for i in at.info)
    at.text_input(key="w_model_timm_name").set_value("vit_offline_test").run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "timm could not provide pretrained weights" in errors[0]
    assert "second line" not in errors[0] and "\n" not in errors[0]

    monkeypatch.setitem(sys.modules, "timm", _fake_timm(fail=False))
    at.text_input(key="w_model_timm_name").set_value("vit_fake_tiny_32").run()
    _ok(at)
    assert any("timm model name · vit_fake_tiny_32" in m.value.replace("\\", "") for m in at.markdown)
    assert _tokens(at) == ap.keep_count(4, 0.5)  # the fake model's own 2x2 grid


def test_malformed_upload_is_one_line_and_not_parsed_on_every_rerun(tmp_path, monkeypatch) -> None:
    import json

    import adapatch.model as am
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vit = create_model("ViT-Ti", device="cpu", img_size=32, depth=2, num_classes=10)
    path = tmp_path / "bad_meta.safetensors"
    save_file(dict(vit.state_dict()), str(path),
              metadata={"adapatch.config": json.dumps({**vit.config.to_dict(), "mean": 5})})
    calls = []
    real = am.load_model_bytes
    monkeypatch.setattr(am, "load_model_bytes", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_model_source").set_value("file").run()
    _upload(at, path)
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "mean must be 3 numbers" in errors[0] and "\n" not in errors[0], errors
    at.run()
    at.run()
    assert not at.exception and calls == ["bad_meta.safetensors"]  # read once, remembered
    assert "ap_model_file" not in at.session_state
    assert any(k.startswith("file:") for k in at.session_state["ap_model_errors"])


def test_timm_box_refuses_other_families_and_remembers_non_vit_models(monkeypatch) -> None:
    calls: list[str] = []
    mod = types.ModuleType("timm")

    def create_model_(name: str, pretrained: bool = False):
        calls.append(name)
        return torch.nn.Linear(2, 2)  # a timm model that is not a ViT: no blocks, no cls_token
    mod.create_model = create_model_
    monkeypatch.setitem(sys.modules, "timm", mod)
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_model_source").set_value("timm").run()
    at.text_input(key="w_model_timm_name").set_value("resnet50").run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "vit_*/deit_*" in errors[0], errors
    assert calls == []  # refused before timm is asked
    at.text_input(key="w_model_timm_name").set_value("vit_not_a_vit").run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "vit_not_a_vit" in errors[0] and "\n" not in errors[0], errors
    at.run()
    assert not at.exception and calls == ["vit_not_a_vit"]  # remembered, not retried on a rerun
    assert "timm:vit_not_a_vit" in at.session_state["ap_model_errors"]


def test_model_frame_token_maps_are_tinted_without_enlargement(monkeypatch) -> None:
    """A model with a 272 px input is not enlarged for display, but its dropped tokens are still
    tinted blue, as the pruning page's caption says."""
    import cv2

    from adapatch.app_support import compute

    img = np.full((272, 272, 3), 0.5, np.float32)
    grid = ap.uniform(272, 272, 16)
    lay = grid.with_tokens(np.arange(grid.num_tokens) < 10)
    for name, fn in {"full_settings": lambda e, s: s, "in_model_frame": lambda s: True,
                     "display_factor": lambda e, s: 1, "frame": lambda e, s: img, "layout": lambda e, s: lay,
                     "settings_key": lambda s: "tint-test"}.items():
        monkeypatch.setattr(compute, name, fn)
    png = compute.overlay_png(types.SimpleNamespace(digest="tint-test-272"), {}, kind="tokens", max_side=None)
    b, g, r = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[264, 264].astype(int)  # a dropped token
    assert b > r + 30, (b, g, r)


def test_bare_state_dict_upload_asks_for_its_normalisation(tmp_path, monkeypatch) -> None:
    """A bare state dict does not say how inputs were normalised: the picker offers ImageNet / CLIP /
    0.5 (ImageNet by default, said in the help), loads with the pick, and reloads when it changes."""
    import adapatch.model as am
    from adapatch.app_support import model_source as ms
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vit = create_model("ViT-Ti", device="cpu", img_size=32, depth=2, num_classes=10)
    vit.pretrained = True
    path = tmp_path / "bare.safetensors"
    save_file(dict(vit.state_dict()), str(path))  # no adapatch metadata
    seen = []
    real = am.load_model_bytes
    monkeypatch.setattr(am, "load_model_bytes", lambda *a, **k: seen.append(k.get("preprocess")) or real(*a, **k))
    at = _open("pages/pruning.py")
    at.selectbox(key="w_prune_scorer").set_value("attention").run()
    at.radio(key="w_model_source").set_value("file").run()
    _upload(at, path)
    _ok(at)
    box = at.selectbox(key="w_model_preprocess")
    assert box.value == "imagenet" and "default: ImageNet" in box.help
    assert set(box.options) == {ms.PREPROCESS_LABELS[k] for k in ms.PREPROCESS_LABELS}
    assert seen and seen[-1] == "imagenet"
    box.set_value("half").run()
    _ok(at)
    assert seen[-1] == "half"
