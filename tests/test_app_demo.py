"""The Demo page (AppTest) and its scenes: every step renders, Next/Back move the step, the exported
settings reproduce each step's layout, and "Open in Patch layout" puts the step's settings in place."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.app_support import demo, ui  # noqa: E402
from adapatch.export import layout_from_settings, settings_snippet  # noqa: E402
from adapatch.samples import DATASET_DIR, sample_path  # noqa: E402
from tests.app_helpers import ok as _ok, open_page  # noqa: E402

PAGE = "pages/demo.py"
N = len(demo.SCENES)


def _metrics(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def _step(at: AppTest) -> int:
    return at.session_state["ap_settings"].get("demo_step", 0)


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _scene_image(sc: demo.Scene) -> np.ndarray:
    kind, name = sc.image.split(":", 1)
    return ap.load_image(sample_path(name) if kind == "sample" else DATASET_DIR / name)


@pytest.fixture(scope="module")
def views() -> dict[str, demo.StepView]:
    return {sc.key: demo.build_step(sc, "cpu") for sc in demo.SCENES}


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = open_page(PAGE, timeout=180)
    _ok(app)
    return app


def test_every_step_renders_and_next_back_move_the_step(at: AppTest, views) -> None:
    assert at.title[0].value == "Demo"
    seen = []
    for i, sc in enumerate(demo.SCENES):
        if i:
            at.button(key="demo_next").click().run()
        _ok(at)
        assert _step(at) == i
        assert at.segmented_control(key="w_demo_step").value == i
        assert at.subheader[0].value.startswith(f"{i + 1}. ")
        view = views[sc.key]
        assert _metrics(at, "Tokens") == [str(p.tokens) for p in view.panels]  # every panel's tokens, main first
        assert _metrics(at, "PSNR (dB)") == [ui.fmt_psnr(p.psnr) for p in view.panels]
        assert len(at.image) == len(view.panels)
        seen.append(at.subheader[0].value)
    assert at.button(key="demo_next").disabled and not at.button(key="demo_back").disabled
    assert len(set(seen)) == N
    at.button(key="demo_back").click().run()
    _ok(at)
    assert _step(at) == N - 2 and at.subheader[0].value == seen[N - 2]
    at.segmented_control(key="w_demo_step").set_value(0).run()
    _ok(at)
    assert _step(at) == 0 and at.button(key="demo_back").disabled


def test_the_step_survives_a_page_switch(at: AppTest) -> None:
    at.segmented_control(key="w_demo_step").set_value(2).run()
    at.switch_page("pages/saliency.py").run()
    at.switch_page(PAGE).run()
    _ok(at)
    assert _step(at) == 2 and at.subheader[0].value.startswith("3. ")


def test_scenes_make_their_point(views) -> None:
    """The story's claims hold for the bundled images (the numbers the page shows)."""
    sky, page, texture, digit, pano = (views[k] for k in demo.SCENE_KEYS)
    for v in (sky, page, pano):  # adaptive beats the equal-token uniform grid without more tokens than 10% over it
        m, u = v.panels
        assert u.layout.strategy == "uniform" and m.tokens <= 1.1 * u.tokens
        assert m.psnr > u.psnr + 1.0
    assert sky.main.layout.counts_per_size().get(64, 0) > 0  # large patches on the sky
    m, q = texture.panels  # multiscale keeps the uniform grid, which beats the quadtree at the same budget
    assert m.layout.params["levels_used"] == 0 and m.psnr > q.psnr and q.tokens <= texture.budget
    assert m.layout.params["scales"] == 1 and m.label.startswith("Multiscale · fast")  # the budget-mode default
    quad, grid16, full = digit.panels
    assert (quad.tokens, grid16.tokens, full.tokens) == (16, 16, 64)
    assert quad.prediction == digit.truth == 5 and full.prediction == digit.truth and grid16.prediction != digit.truth
    assert quad.macs_ratio == pytest.approx(grid16.macs_ratio) and quad.macs_ratio < 0.3
    assert [r["layout"] for r in digit.held_out] == ["quadtree", "uniform 16 px", "full grid"]
    assert len({r["Tokens per megapixel"] for r in pano.budget_rows}) <= 2  # the same density on every image


@pytest.mark.parametrize("key", demo.SCENE_KEYS)
def test_exported_settings_reproduce_the_layout(views, key: str) -> None:
    view = views[key]
    settings = json.loads(view.settings_json())  # exactly what "Export this step" downloads
    assert settings["format"] == "adapatch.settings/1"
    assert settings["relative_budget"] == {"unit": "fraction", "value": view.scene.fraction}
    image = _scene_image(view.scene)
    again = layout_from_settings(image, settings)
    assert np.array_equal(again.boxes, view.main.layout.boxes)
    assert again.to_json() == view.main.layout.to_json()
    if settings["image"]["source"].startswith("sample:"):  # the Python snippet makes the same layout
        ns: dict = {}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(settings_snippet(settings), "<snippet>", "exec"), ns)
        assert np.array_equal(ns["layout"].boxes, view.main.layout.boxes)


@pytest.mark.parametrize("index", range(N))
def test_open_in_patch_layout_puts_the_settings_in_place(views, index: int) -> None:
    """Every step's "Open in Patch layout" leads to Patch layout with the step's image selected and its
    settings in place: the page computes the same layout (the same token count) as the step shows. A
    dataset image, which is not a bundled sample, is added to the session's image list as an upload of
    its file would be."""
    sc = demo.SCENES[index]
    view = views[sc.key]
    app = open_page(PAGE, timeout=180)
    app.segmented_control(key="w_demo_step").set_value(index).run()
    _ok(app)
    assert not app.button(key="demo_open").disabled
    app.button(key="demo_open").click().run()
    _ok(app)
    assert app.title[0].value == "Patch layout"
    key = app.session_state["ap_current"]
    if sc.image.startswith("sample:"):
        assert key == sc.image
    else:  # the dataset file, as its upload: same key, digest and pixels
        entry = app.session_state["ap_images"][key]
        assert key == f"upload:{view.digest}" and entry.digest == view.digest
        assert entry.source == sc.image.split(":", 1)[1] and "bundled dataset" in entry.name
        assert np.array_equal(entry.array, demo.load_entry(sc.image).array)
    assert app.selectbox(key="w_image").value == key
    s = app.session_state["ap_settings"]
    assert (s["strategy"], tuple(s["sizes"]), s["use_budget"], s["budget_fraction"]) == \
        (sc.strategy, sc.sizes, True, sc.fraction)
    if sc.strategy == "quadtree":
        assert s["importance"] == sc.importance
    assert _metrics(app, "Tokens")[0] == f"{view.main.tokens:,}"  # the page computes the same layout
    assert app.slider(key="w_budget_fraction").value == pytest.approx(sc.fraction)


def _uploads(app: AppTest) -> list[str]:
    """The sidebar's image list, less the bundled samples it always lists (labels as shown)."""
    keys = set(app.session_state["ap_images"])
    return [o for k, o in zip(_image_keys(app), app.selectbox(key="w_image").options) if k in keys]


def _image_keys(app: AppTest) -> list[str]:
    """The keys behind the sidebar's image list, in its order (uploads first)."""
    from adapatch.app_support.images import sample_keys, task_sample_keys
    ups = list(dict.fromkeys(r["key"] for r in app.session_state["ap_uploads"].values() if r["key"]))
    return ups + sample_keys() + task_sample_keys()


def _dataset_index() -> int:
    return next(i for i, s in enumerate(demo.SCENES) if s.image.startswith("dataset:"))


def test_a_dataset_image_opened_from_the_demo_stays_in_the_image_list() -> None:
    """The image the demo added survives page switches, the uploader's own changes (another file added and
    removed) and a second click (no duplicate entry), and never counts as the user's upload."""
    index = _dataset_index()
    sc = demo.SCENES[index]
    label = f"Sample · {sc.image.split(':', 1)[1]} (bundled dataset)"  # as the sidebar lists it: no upload of the user's
    app = open_page(PAGE, timeout=180)
    app.segmented_control(key="w_demo_step").set_value(index).run()
    assert any("bundled dataset" in c.value and "adds it" in c.value for c in app.caption)
    app.button(key="demo_open").click().run()
    _ok(app)
    key = app.session_state["ap_current"]
    assert app.title[0].value == "Patch layout" and key.startswith("upload:")
    app.switch_page("pages/saliency.py").run()
    app.switch_page(PAGE).run()
    _ok(app)
    assert _uploads(app) == [label]  # in the sidebar's list
    assert not any("adds it" in c.value for c in app.caption)  # in the list now: nothing to add
    app.button(key="demo_open").click().run()
    _ok(app)
    assert app.session_state["ap_current"] == key
    assert _uploads(app) == [label]  # no second copy
    rng = np.random.default_rng(0)
    app.file_uploader(key="uploader").set_value(("noise.png", _png(rng.random((40, 40, 3))), "image/png")).run()
    _ok(app)
    app.file_uploader(key="uploader").set_value(None).run()  # the user's upload removed again
    _ok(app)
    assert _uploads(app) == [label]  # the noise upload gone, ours kept
    assert key in app.session_state["ap_images"]
    assert not app.session_state["ap_uploads_detached"]  # the uploader's removals count again


def test_a_dataset_scene_opens_on_the_users_upload_of_the_same_file() -> None:
    """When the user has uploaded the same file, the step opens on that upload (no second copy)."""
    index = _dataset_index()
    sc = demo.SCENES[index]
    app = open_page(PAGE, timeout=180)
    app.segmented_control(key="w_demo_step").set_value(index).run()
    app.file_uploader(key="uploader").set_value((sc.image.split(":", 1)[1], demo.image_bytes(sc), "image/jpeg")).run()
    _ok(app)
    upload = app.session_state["ap_current"]
    assert upload.startswith("upload:") and _step(app) == index
    app.button(key="demo_open").click().run()
    _ok(app)
    assert app.title[0].value == "Patch layout" and app.session_state["ap_current"] == upload
    records = app.session_state["ap_uploads"].values()
    assert [r["key"] for r in records] == [upload] and not any(r.get("kept") for r in records)
