"""The Dataset page under ``streamlit.testing.v1.AppTest``: the threshold it shows is the one
``adapatch.dataset.solve`` finds on the same images, a target slider re-solves, uploads with bad
files list them as skipped, and "Apply on Patch layout" hands over exactly that threshold."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.app_support import dataset_view as dv  # noqa: E402
from adapatch.app_support.images import digest_of  # noqa: E402
from adapatch.dataset import CurveSettings, InfeasibleTarget, Objectives, Targets, scan, solve  # noqa: E402
from adapatch.samples import dataset_sample_paths, load_sample  # noqa: E402
from tests.app_helpers import app as _app, ok as _ok  # noqa: E402

PAGE = "pages/dataset.py"


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _png(seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[size // 4: size // 2, size // 4: 3 * size // 4] = rng.integers(0, 255, (size // 4, size // 2, 3))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def store():
    """The bundled set scanned by the library itself, named as the page names it (in this process, as
    the page scans: the app's warm-up thread may be running here, and a fork beside it can hang)."""
    s = scan({p.name: p.read_bytes() for p in dataset_sample_paths()}, CurveSettings(16, 64, "distortion"), workers=1)
    yield s
    s.close()


def _dataset_app() -> AppTest:
    """A new session opened on the Dataset page (its first run is that page: no Patch layout work)."""
    return _app().switch_page(PAGE).run()


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = _dataset_app()
    _ok(app)
    return app


def test_page_renders_with_the_library_threshold(at: AppTest, store) -> None:
    assert at.title[0].value == "Dataset calibration"
    target = at.slider(key="w_ds_target_mean_tokens").value
    assert target == round(store.uniform16.mean() / 2)  # default: half the uniform 16 px tokens
    t, _ = solve(store, Targets(mean_tokens=target), "ViT-B")
    shown = _metrics(at)
    assert shown == dv.metric_values(Objectives(store, "ViT-B").stats(t))
    assert shown["Threshold"] == f"{t:.6g}"
    assert len(at.get("plotly_chart")) == 2  # the dataset curve and the histogram
    assert len(at.image) == 2 * dv.GALLERY  # fewest and most tokens, with overlays
    assert len(dataset_sample_paths()) >= 44 and "56 images in 5 categories" in " ".join(c.value for c in at.caption)


def test_moving_the_target_re_solves(at: AppTest, store) -> None:
    before = _metrics(at)["Threshold"]
    at.slider(key="w_ds_target_mean_tokens").set_value(60).run()
    _ok(at)
    t, _ = solve(store, Targets(mean_tokens=60), "ViT-B")
    assert _metrics(at)["Threshold"] == f"{t:.6g}" != before
    assert float(_metrics(at)["Mean tokens"].replace(",", "")) <= 60

    at.selectbox(key="w_ds_target_kind").set_value("flops_ratio").run()
    at.slider(key="w_ds_target_flops_ratio").set_value(0.3).run()
    _ok(at)
    t, _ = solve(store, Targets(flops_ratio=0.3), "ViT-B")
    assert _metrics(at)["Threshold"] == f"{t:.6g}"
    assert float(_metrics(at)["MACs ratio ViT-B"].lstrip("×")) <= 0.3


def test_p95_cap_and_an_infeasible_one(at: AppTest, store) -> None:
    at.toggle(key="w_ds_use_p95").set_value(True).run()
    at.number_input(key="w_ds_p95").set_value(150).run()
    _ok(at)
    t, _ = solve(store, Targets(flops_ratio=0.3, p95_tokens=150), "ViT-B")
    assert _metrics(at)["Threshold"] == f"{t:.6g}"
    at.number_input(key="w_ds_p95").set_value(3).run()  # below what max-size squares alone cost
    assert not at.exception and not at.error
    with pytest.raises(InfeasibleTarget):
        solve(store, Targets(flops_ratio=0.3, p95_tokens=3), "ViT-B")
    assert any("out of reach" in w.value for w in at.warning)
    assert not [m for m in at.metric if m.label == "Threshold"]
    at.toggle(key="w_ds_use_p95").set_value(False).run()  # and the page is usable again
    _ok(at)
    assert "Threshold" in _metrics(at)


def test_apply_sets_the_exact_threshold_on_patch_layout(store) -> None:
    app = _dataset_app()
    app.slider(key="w_ds_target_mean_tokens").set_value(75).run()
    t, _ = solve(store, Targets(mean_tokens=75), "ViT-B")
    app.button(key="ds_apply").click().run()
    _ok(app)
    s = app.session_state["ap_settings"]
    assert s["thresholds"]["distortion"] == t  # exactly, not rounded to the slider's scale
    assert (s["strategy"], s["use_budget"], s["importance"], tuple(s["sizes"])) == ("quadtree", False, "distortion",
                                                                                    (16, 64))
    assert app.title[0].value == "Patch layout"
    assert app.select_slider(key="w_threshold").value == t  # inserted in the scale as it is
    expected = ap.quadtree(load_sample("astronaut"), threshold=t, min_size=16, max_size=64, importance="distortion")
    assert int(_metrics(app)["Tokens"].replace(",", "")) == expected.num_tokens


def test_applied_threshold_gives_the_dataset_pages_tokens_for_its_images(store) -> None:
    """Issue 21: the threshold the Dataset page solves, applied on Patch layout, gives the Dataset
    page's token count for every image (three of the set, opened in the sidebar)."""
    names = ("photo_chelsea.jpg", "document_letter.png", "flat_soft_blobs.png")
    paths = {p.name: p for p in dataset_sample_paths()}
    app = _app().run()
    app.file_uploader(key="uploader").set_value([(n, paths[n].read_bytes(), "image/png") for n in names]).run()
    _ok(app)
    keys = [k for k in app.selectbox(key="w_image").options if k.startswith("Upload")]
    assert len(keys) == 3, app.selectbox(key="w_image").options
    app.switch_page(PAGE).run()
    app.slider(key="w_ds_target_mean_tokens").set_value(75).run()
    t, _ = solve(store, Targets(mean_tokens=75), "ViT-B")
    app.button(key="ds_apply").click().run()
    _ok(app)
    app.switch_page("pages/layout.py").run()  # AppTest's own page (a plain run() would go back to Dataset)
    tokens = store.tokens_at(np.array([t]))[:, 0]
    stored = [Path(p).name for p in store.paths]
    for name in names:
        app.selectbox(key="w_image").set_value(f"upload:{digest_of(paths[name].read_bytes())}").run()
        _ok(app)
        assert name in app.selectbox(key="w_image").format_func(app.selectbox(key="w_image").value)
        assert app.select_slider(key="w_threshold").value == t
        assert int(_metrics(app)["Tokens"].replace(",", "")) == tokens[stored.index(name)], name


def test_uploads_with_bad_files_are_listed_as_skipped() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/a.png", _png(1))
        zf.writestr("set/b.png", _png(2, 128))
        zf.writestr("set/broken.png", b"\x89PNG\r\n\x1a\n not really")
        zf.writestr("set/notes.txt", b"ignored: not an image")
    files = [("set.zip", buf.getvalue(), "application/zip"), ("c.png", _png(3, 64), "image/png"),
             ("bad.zip", b"PK\x03\x04 truncated", "application/zip")]
    app = _dataset_app()
    app.segmented_control(key="w_ds_source").set_value("uploads").run()
    _ok(app)
    assert not [m for m in app.metric if m.label == "Threshold"]  # nothing uploaded yet: a hint, no error
    app.file_uploader(key="ds_uploader").set_value(files).run()
    _ok(app)
    assert "4 image files from 3 uploads" in " ".join(c.value for c in app.caption)
    skipped = app.dataframe[0].value
    assert sorted(skipped["file"]) == ["bad.zip", "set.zip/set/broken.png"]
    assert all("\n" not in r and "Traceback" not in r for r in skipped["reason"])
    good = {"set.zip/set/a.png": _png(1), "set.zip/set/b.png": _png(2, 128), "c.png": _png(3, 64)}
    with scan(good, CurveSettings(16, 64, "distortion"), workers=1) as s:
        target = app.slider(key="w_ds_target_mean_tokens").value
        t, _ = solve(s, Targets(mean_tokens=target), "ViT-B")
    assert _metrics(app)["Threshold"] == f"{t:.6g}"


def test_uploads_with_no_usable_image_give_one_short_error() -> None:
    app = _dataset_app()
    app.segmented_control(key="w_ds_source").set_value("uploads").run()
    app.file_uploader(key="ds_uploader").set_value([("x.png", b"not an image", "image/png"),
                                                     ("y.jpg", b"\xff\xd8\xff junk", "image/jpeg")]).run()
    assert not app.exception
    assert len(app.error) == 1 and "\n" not in app.error[0].value
    assert "could be used" in app.error[0].value


def test_upload_limits() -> None:
    class F:
        def __init__(self, name: str, data: bytes) -> None:
            self.name, self.file_id, self._d = name, name, data

        def getvalue(self) -> bytes:
            return self._d

    files = [F(f"{i}.png", b"x" * 10) for i in range(dv.MAX_UPLOAD_FILES + 3)]
    src = dv.upload_source(files)
    assert len(src.names) == dv.MAX_UPLOAD_FILES and src.notes and "3 more left out" in src.notes[0]
    dup = dv.upload_source([F("a.png", b"1"), type("G", (F,), {})("a.png", b"2")])
    assert dup is not None and len(dup.names) == 2


def test_downloads_are_the_library_report_and_layouts(at: AppTest, store, tmp_path) -> None:
    """What the two download buttons hand out (built by the same helpers the page calls)."""
    import json

    from adapatch.dataset import read_layouts

    assert {b.label for b in at.get("download_button")} >= {"report.json", "layouts.parquet"}
    src = dv.bundled_source()
    settings = dv.curve_settings("distortion", (16, 64))
    scanned = dv.scan_source(src, settings)
    solved = dv.solve_targets(scanned.store, Targets(mean_tokens=80), "ViT-B")
    cal = dv.calibration(scanned, solved, settings, dv.curve(src, settings, "ViT-B"))
    report = json.loads(dv.report_json(cal, src))
    t, _ = solve(store, Targets(mean_tokens=80), "ViT-B")
    assert report["threshold"] == t and report["images"] == store.n_images and report["skipped"] == []
    assert report["mean_tokens"] <= 80
    (tmp_path / "layouts.parquet").write_bytes(dv.layouts_parquet(cal))
    paths, layouts = read_layouts(tmp_path / "layouts.parquet")
    assert paths == store.paths
    assert [lay.num_tokens for lay in layouts] == store.tokens_at(np.array([t]))[:, 0].tolist()


def test_apply_keeps_the_uploaded_image_current() -> None:
    """st.switch_page empties the sidebar uploader for the next run; the session must not read that
    as "the upload was removed" (state.switch_page)."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)).save(buf, "PNG")
    at = _app(timeout=180).run()
    at.file_uploader(key="uploader").set_value([("mine.png", buf.getvalue(), "image/png")]).run()
    key = at.session_state["ap_current"]
    assert key.startswith("upload:")
    at.switch_page("pages/dataset.py").run()
    next(b for b in at.button if "Apply" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.run()
    assert at.session_state["ap_current"] == key


# ------------------------------------------------------------------ uploads kept, relative target, Apply's images
def _photo(seed: int, h: int, w: int) -> bytes:
    """A PNG with structure at several scales (a smooth ramp, a few blocks, fine noise in one corner)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full((h, w), 90)], -1)
    for _ in range(4):
        y, x = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        img[y: y + h // 5, x: x + w // 5] = rng.integers(0, 255, 3)
    img[: h // 3, : w // 3] = rng.integers(0, 255, (h // 3, w // 3, 3))
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload_app(files: list[tuple[str, bytes, str]]) -> AppTest:
    """A session that starts on Patch layout (as a user arrives), opens Dataset and uploads ``files``."""
    app = _app().run()
    app.switch_page(PAGE).run()
    app.segmented_control(key="w_ds_source").set_value("uploads").run()
    app.file_uploader(key="ds_uploader").set_value(files).run()
    _ok(app)
    return app


def test_uploads_and_their_result_are_kept_across_a_page_switch() -> None:
    """Streamlit's uploader comes back empty when its page is left: the page keeps the files itself
    (with the target), so the same calibration is there on return, until "Clear kept uploads"."""
    files = [("a.png", _photo(1, 200, 300), "image/png"), ("b.png", _photo(2, 333, 250), "image/png"),
             ("c.png", _photo(3, 97, 131), "image/png")]
    app = _upload_app(files)
    before = _metrics(app)
    assert "Threshold" in before and "3 image files from 3 uploads" in " ".join(c.value for c in app.caption)
    app.switch_page("pages/layout.py").run()
    assert app.title[0].value == "Patch layout"
    app.switch_page(PAGE).run()
    _ok(app)
    assert not app.file_uploader(key="ds_uploader").value  # the widget itself lost them
    assert _metrics(app) == before
    captions = " ".join(c.value for c in app.caption)
    assert "Kept: 3 files" in captions and "3 of them from before you left this page" in captions
    assert not [i for i in app.info if "Upload images" in i.value]

    # a file added on return joins the kept ones; removing it in the uploader removes it again
    extra = ("d.png", _photo(4, 160, 160), "image/png")
    app.file_uploader(key="ds_uploader").set_value([extra]).run()
    _ok(app)
    assert "4 image files from 4 uploads" in " ".join(c.value for c in app.caption)
    app.file_uploader(key="ds_uploader").set_value([]).run()
    _ok(app)
    assert "3 image files from 3 uploads" in " ".join(c.value for c in app.caption)
    assert _metrics(app) == before

    app.button(key="ds_clear_kept").click().run()
    _ok(app)
    assert not [m for m in app.metric if m.label == "Threshold"]
    assert [i for i in app.info if "Upload images" in i.value]
    app.switch_page("pages/layout.py").run()
    app.switch_page(PAGE).run()
    assert not [m for m in app.metric if m.label == "Threshold"]  # cleared stays cleared


def test_keep_uploads_is_bounded_and_takes_a_file_once(monkeypatch) -> None:
    class F:
        def __init__(self, fid: str, name: str, data: bytes) -> None:
            self.file_id, self.name, self._d = fid, name, data

        def getvalue(self) -> bytes:
            return self._d

    monkeypatch.setattr(dv, "KEEP_MAX_BYTES", 25)
    kept: dict = {}
    notes = dv.keep_uploads(kept, [F("1", "a.png", b"x" * 10), F("2", "a.png", b"x" * 10), F("3", "b.png", b"y" * 10),
                                   F("4", "c.png", b"z" * 10)])
    assert list(kept) == ["1", "3"]  # "2" is "1" again; "4" would pass 25 bytes
    assert len(notes) == 1 and "c.png" in notes[0] and "Not kept" in notes[0]
    assert dv.keep_uploads(kept, [], removed=["1"]) == [] and list(kept) == ["3"]
    assert dv.keep_uploads(kept, [F("4", "c.png", b"z" * 10)]) == [] and list(kept) == ["3", "4"]


def test_the_target_carries_as_a_share_of_the_grid_to_new_images(store) -> None:
    """The mean-tokens target is kept as a share of the uniform 16 px grid: a folder of 800x600 photos
    (1,900 tokens each at 16 px, 130 as 64 px squares) starts at 50% of its grid, not at the bundled
    set's 102 tokens clamped up to the slider's minimum (the coarsest layout); a share the user sets
    carries over too, and back."""
    u16 = 50 * 38  # ceil(600/16) * ceil(800/16)
    files = [(f"p{i}.png", _photo(10 + i, 600, 800), "image/png") for i in range(3)]
    app = _upload_app(files)
    slider = app.slider(key="w_ds_target_mean_tokens")
    assert slider.value == round(0.5 * u16) > slider.min == 130
    assert "= 50.0% of the uniform 16 px grid" in " ".join(c.value for c in app.caption)
    with scan({n: d for n, d, _ in files}, CurveSettings(16, 64, "distortion"), workers=1) as s:
        t, _ = solve(s, Targets(mean_tokens=round(0.5 * u16)), "ViT-B")
    assert _metrics(app)["Threshold"] == f"{t:.6g}"
    assert 0.45 * u16 < float(_metrics(app)["Mean tokens"].replace(",", "")) <= 0.5 * u16

    # the bundled set, moved to 60 tokens, then the uploads: the same share of their grid
    app.segmented_control(key="w_ds_source").set_value("samples").run()
    assert app.slider(key="w_ds_target_mean_tokens").value == round(0.5 * store.uniform16.mean())
    app.slider(key="w_ds_target_mean_tokens").set_value(60).run()
    share = 60 / store.uniform16.mean()
    app.segmented_control(key="w_ds_source").set_value("uploads").run()
    _ok(app)
    assert app.slider(key="w_ds_target_mean_tokens").value == round(share * u16)
    app.segmented_control(key="w_ds_source").set_value("samples").run()
    assert app.slider(key="w_ds_target_mean_tokens").value == 60


def test_apply_makes_the_datasets_images_openable_in_the_sidebar() -> None:
    """"Apply on Patch layout" on uploads opens Patch layout on the set's median image, and the set's
    images (median and gallery) are in the sidebar's picker with the Dataset page's token counts; a
    second Apply on other images takes the first set's out again (the list stays bounded)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/z1.png", _photo(21, 180, 260))
        zf.writestr("set/z2.png", _photo(22, 300, 200))
    files = [("set.zip", buf.getvalue(), "application/zip"), ("a.png", _photo(23, 240, 320), "image/png"),
             ("b.png", _photo(24, 150, 150), "image/png")]
    app = _upload_app(files)
    app.slider(key="w_ds_target_mean_tokens").set_value(app.slider(key="w_ds_target_mean_tokens").min + 20).run()
    data = {"set.zip/set/z1.png": _photo(21, 180, 260), "set.zip/set/z2.png": _photo(22, 300, 200),
            "a.png": _photo(23, 240, 320), "b.png": _photo(24, 150, 150)}
    with scan(data, CurveSettings(16, 64, "distortion"), workers=1) as s:
        t, _ = solve(s, Targets(mean_tokens=app.slider(key="w_ds_target_mean_tokens").value), "ViT-B")
        tokens = dict(zip(s.paths, s.tokens_at(np.array([t]))[:, 0].tolist()))
    assert _metrics(app)["Threshold"] == f"{t:.6g}"
    app.button(key="ds_apply").click().run()
    _ok(app)
    assert app.title[0].value == "Patch layout"
    app.switch_page("pages/layout.py").run()  # AppTest's own page (a plain run() would go back to Dataset)
    picker = app.selectbox(key="w_image")
    keys = {f"upload:{digest_of(d)}": n for n, d in data.items()}
    assert {f"Upload · {n}" for n in data} <= set(picker.options)  # (AppTest lists the labels)
    median = sorted(data, key=lambda n: (tokens[n], list(data).index(n)))[(len(data) - 1) // 2]
    assert picker.value == f"upload:{digest_of(data[median])}"
    assert int(_metrics(app)["Tokens"].replace(",", "")) == tokens[median]
    for key, name in keys.items():
        app.selectbox(key="w_image").set_value(key).run()
        _ok(app)
        assert app.selectbox(key="w_image").format_func(key) == f"Upload · {name}"
        assert int(_metrics(app)["Tokens"].replace(",", "")) == tokens[name], name

    app.switch_page(PAGE).run()  # back after Apply: the same uploads and calibration
    _ok(app)
    assert _metrics(app)["Threshold"] == f"{t:.6g}" and "Kept: 3 files" in " ".join(c.value for c in app.caption)
    app.button(key="ds_clear_kept").click().run()
    other = _photo(25, 128, 192)
    app.file_uploader(key="ds_uploader_1").set_value([("other.png", other, "image/png")]).run()
    _ok(app)
    app.button(key="ds_apply").click().run()
    _ok(app)
    options = app.selectbox(key="w_image").options
    assert "Upload · other.png" in options and not {f"Upload · {n}" for n in data} & set(options)
    assert app.selectbox(key="w_image").value == f"upload:{digest_of(other)}"


def test_the_log_lambda_axis_spans_the_thresholds_only(store) -> None:
    """On the log λ axis the solved-threshold line (a shape, whose extent Plotly takes in log10 units)
    must not stretch the axis to 10^λ: the range is set to the curve's thresholds."""
    c = dv.curve(dv.bundled_source(), dv.curve_settings("distortion", (16, 64)), "ViT-B")
    t, _ = solve(store, Targets(mean_tokens=102), "ViT-B")
    fig = dv.dataset_curve_figure(c, t, Objectives(store, "ViT-B").stats(t), "mean_tokens", 102.0, None, log_x=True)
    lo, hi = fig.layout.xaxis.range
    positive = [v for v in c.thresholds if v > 0]
    assert fig.layout.xaxis.type == "log"
    assert 10**lo <= min(positive) and max(positive) <= 10**hi <= 2 * max(positive)
    assert 10**lo <= t <= 10**hi
