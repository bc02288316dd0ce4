"""Dataset calibration (adapatch.dataset): exact curves, an exact solver, sources, engines, outputs."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

import adapatch as ap
from adapatch.budgets import RelativeBudget, relative_budget, uniform16_tokens
from adapatch.cli import main as cli_main
from adapatch.dataset import (InfeasibleTarget, Objectives, SourceError, Targets, calibrate, dataset_curve,
                              layouts_from_arrow, layouts_to_arrow, read_layouts, scan, solve_threshold)
from adapatch.dataset import curve as curve_mod
from adapatch.dataset.records import CurveSettings


def _photos() -> list[np.ndarray]:
    import skimage.data as sd
    rng = np.random.default_rng(0)
    srcs = [sd.astronaut(), sd.chelsea(), sd.coffee(), np.stack([sd.text()] * 3, -1), np.stack([sd.coins()] * 3, -1)]
    out = []
    for i, (h, w) in enumerate([(120, 160), (97, 211), (64, 64), (150, 90), (33, 250), (1, 1), (17, 5), (200, 200)]):
        p = srcs[i % len(srcs)]
        y, x = rng.integers(0, p.shape[0] - h + 1), rng.integers(0, p.shape[1] - w + 1)
        out.append(np.ascontiguousarray(p[y:y + h, x:x + w]))
    out.append(np.full((90, 130, 3), 128, np.uint8))  # flat: never splits
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("ds")
    for i, a in enumerate(_photos()):
        sub = d / ("sub" if i % 3 == 0 else "")
        sub.mkdir(exist_ok=True)
        Image.fromarray(a).save(sub / f"im{i:02d}.png")
    return str(d)


@pytest.fixture(scope="module")
def images(folder) -> dict[str, np.ndarray]:
    from adapatch.dataset import open_source
    return {ref.path: ap.load_image(ref.container) for ref in open_source(folder).items}


@pytest.mark.parametrize("importance", ["distortion", "std"])
def test_curve_is_exact_sum_of_quadtrees(folder, images, importance):
    settings = CurveSettings(min_size=8, max_size=64, importance=importance)
    with scan(folder, settings, workers=1) as store:
        assert store.paths == list(images)
        rng = np.random.default_rng(1)
        vals = np.concatenate([store.values_of(i) for i in range(store.n_images)])
        ts = np.sort(np.concatenate([rng.uniform(0, max(vals.max(), 1e-3), 6), rng.choice(vals, 4), [0.0, 1.0]]))
        tok = store.tokens_at(ts)
        for j, t in enumerate(ts):
            want = [ap.quadtree(img, threshold=float(t), min_size=8, max_size=64, importance=importance)
                    for img in images.values()]
            assert tok[:, j].tolist() == [w.num_tokens for w in want]
            for i, w in enumerate(want):
                assert store.layout(i, float(t)) == w
        curve = dataset_curve(store)
        assert curve.mean_tokens == sorted(curve.mean_tokens, reverse=True)  # non-increasing in t
        assert curve.max_tokens[0] == max(ap.quadtree(img, threshold=0.0, min_size=8, max_size=64,
                                                      importance=importance).num_tokens for img in images.values())


def _brute(store, objective, target, vit="ViT-B") -> float:
    vals = np.unique(np.concatenate([store.values_of(i) for i in range(store.n_images)]))
    top = curve_mod.top_threshold(store)  # no split: 1, or distortion's largest lambda
    cand = np.unique(np.concatenate([[0.0], vals[(vals > 0) & (vals < top)], [top]]))
    f = Objectives(store, vit).value(objective, store.tokens_at(cand))
    return float(cand[np.argmax(f <= target)])


@pytest.mark.parametrize("small_rounds", [False, True])
def test_solver_hits_each_target_exactly(folder, monkeypatch, small_rounds):
    if small_rounds:  # force several narrowing rounds with sampling
        monkeypatch.setattr(curve_mod, "GRID_POINTS", 5)
        monkeypatch.setattr(curve_mod, "SAMPLE_CAP", 40)
    with scan(folder, CurveSettings(), workers=1) as store:
        obj = Objectives(store)
        top = curve_mod.top_threshold(store)
        lo_hi = {k: obj.value(k, store.tokens_at(np.array([0.0, top]))) for k in curve_mod.OBJECTIVES}
        for name, (top, bottom) in lo_hi.items():
            for frac in (0.03, 0.2, 0.5, 0.9):
                target = bottom + frac * (top - bottom)
                t = solve_threshold(store, name, target)
                assert t == _brute(store, name, target), (name, frac)
                assert obj.value(name, store.tokens_at(np.array([t])))[0] <= target
            assert solve_threshold(store, name, top) == 0.0
            with pytest.raises(InfeasibleTarget):
                solve_threshold(store, name, bottom * 0.99)


def test_targets_combine_as_caps(folder):
    with calibrate(folder, Targets(mean_tokens=60, p95_tokens=80), workers=1) as cal:
        assert cal.threshold == max(cal.per_target.values())
        assert cal.stats.mean_tokens <= 60 and cal.stats.p95_tokens <= 80
    with pytest.raises(ValueError, match="one of"):
        Targets(mean_tokens=1, flops_ratio=0.5)
    with pytest.raises(ValueError, match="positive"):
        Targets(mean_tokens=-3)


def test_ratio_of_totals_not_mean_of_ratios(tmp_path):
    big = np.zeros((64, 2048, 3), np.uint8)
    big[:, ::2] = 255  # a detailed panorama
    Image.fromarray(big).save(tmp_path / "pano.png")
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"flat{i}.png")
    with scan(str(tmp_path), CurveSettings(min_size=16, max_size=64), workers=1) as store:
        tok = store.tokens_at(np.array([0.0]))[:, 0]
        from adapatch.efficiency import vit_macs
        want = vit_macs(tok).sum() / vit_macs(store.uniform16).sum()
        got = Objectives(store).value("flops_ratio", tok[:, None])[0]
        assert got == pytest.approx(want)
        assert got != pytest.approx(np.mean(vit_macs(tok) / vit_macs(store.uniform16)))
        assert Objectives(store).value("tokens_per_mp", tok[:, None])[0] == pytest.approx(
            tok.sum() / (store.heights * store.widths / 1e6).sum())


def _make_bad_folder(root) -> list[str]:
    good = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    Image.fromarray(good).save(root / "good.png")
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (root / "notes.txt").write_text("not an image, not listed")
    (root / "text.jpg").write_text("a text file with an image name")
    Image.new("L", (3000, 2000), 0).save(root / "huge.png")  # 6 MP, over the limit below
    return ["corrupt.png", "empty.png", "huge.png", "text.jpg", "truncated.jpg"]


def test_bad_files_are_listed_and_skipped(tmp_path):
    bad = _make_bad_folder(tmp_path)
    with calibrate(str(tmp_path), Targets(mean_tokens=50), max_pixels=5_000_000, workers=2) as cal:
        r = cal.report()
        assert r["images"] == 1
        assert [s["path"] for s in r["skipped"]] == bad
        reasons = {s["path"]: s["reason"] for s in r["skipped"]}
        assert "megapixels" in reasons["huge.png"] and "empty" in reasons["empty.png"]
        assert all("\n" not in s and len(s) < 200 for s in reasons.values())


def test_empty_and_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        scan(str(tmp_path), workers=1)
    with pytest.raises(SourceError, match="no such"):
        scan(str(tmp_path / "missing"), workers=1)
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could be used"):
        scan(str(tmp_path), workers=1)


def test_zip_parquet_list_and_glob_sources_agree(folder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from adapatch.dataset import open_source
    refs = open_source(folder).items
    zpath = tmp_path / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for r in refs:
            zf.write(r.container, r.path)
    table = pa.table({"path": [r.path for r in refs],
                      "image": [open(r.container, "rb").read() for r in refs]})
    ppath = tmp_path / "ds.parquet"
    pq.write_table(table, ppath, row_group_size=3)
    reports = []
    for src in (folder, str(zpath), str(ppath), [r.container for r in refs], os.path.join(folder, "**", "*.png")):
        with calibrate(src, Targets(mean_tokens=70), workers=1) as cal:
            r = cal.report()
            reports.append((r["threshold"], r["mean_tokens"], r["p95_tokens"], r["images"], cal.curve.mean_tokens))
    assert all(x == reports[0] for x in reports)


def test_local_engine_pool_equals_in_process(folder):
    with calibrate(folder, Targets(flops_ratio=0.3), workers=1) as a, \
            calibrate(folder, Targets(flops_ratio=0.3), workers=2) as b:
        ra, rb = a.report(), b.report()
    for k in ra:
        if k not in ("seconds", "workers"):
            assert ra[k] == rb[k], k


@pytest.mark.slow
def test_ray_engine_gives_identical_report(folder):
    if os.environ.get("CI"):
        import ray  # noqa: F401  (CI installs Ray: this test must run there)
    else:
        pytest.importorskip("ray")
    from adapatch.dataset.engines import start_ray
    start_ray(None, 2)
    with calibrate(folder, Targets(mean_tokens=70), workers=2) as a, \
            calibrate(folder, Targets(mean_tokens=70), workers=2, engine="ray") as b:
        ra, rb = a.report(), b.report()
    assert rb["engine"] == "ray"
    for k in ra:
        if k not in ("seconds", "engine"):
            assert ra[k] == rb[k], k
    bad = _make_bad_folder_in(folder + "_bad")
    with calibrate(bad, Targets(mean_tokens=50), max_pixels=5_000_000, workers=2, engine="ray") as c:
        assert [s["path"] for s in c.report()["skipped"]] == ["corrupt.png", "empty.png", "huge.png", "text.jpg",
                                                               "truncated.jpg"]


def _make_bad_folder_in(path: str) -> str:
    from pathlib import Path
    p = Path(path)
    p.mkdir(exist_ok=True)
    _make_bad_folder(p)
    return str(p)


def test_arrow_round_trip():
    img = ap.load_image(_photos()[0])
    lays = [ap.quadtree(img, threshold=0.05), ap.uniform(37, 53, 23),
            ap.quadtree(img, budget=40).with_tokens(np.arange(10), strategy="pruned", note="x")]
    table = layouts_to_arrow(lays, ["a", "b", "c"])
    back = layouts_from_arrow(table)
    assert back == lays
    for b in back:
        b.validate()


def test_cli_calibrate_and_layouts(folder, tmp_path, capsys):
    out = tmp_path / "calib"
    rc = cli_main(["calibrate", folder, "--out", str(out), "--target-mean-tokens", "80", "--workers", "1", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "threshold:" in text
    r = json.loads((out / "report.json").read_text())
    for key in ("threshold", "images", "skipped", "mean_tokens", "p50_tokens", "p95_tokens", "max_tokens",
                "tokens_per_mp", "flops_ratio_vs_uniform16", "min_size", "max_size", "importance", "engine", "seconds"):
        assert key in r, key
    assert r["mean_tokens"] <= 80 and r["min_size"] == 8 and r["max_size"] == 64 and r["engine"] == "local"
    assert (out / "report.md").read_text().startswith("# adapatch calibration report")
    assert not [p for p in os.listdir(out) if p.startswith(".partial")]
    import pandas as pd
    df = pd.read_parquet(out / "layouts.parquet")
    assert list(df.columns[:5]) == ["path", "height", "width", "tokens", "boxes"]
    assert df["tokens"].mean() == pytest.approx(r["mean_tokens"])
    assert all(len(b) == t for b, t in zip(df["boxes"], df["tokens"]))
    paths, lays = read_layouts(out / "layouts.parquet")
    imgs = {p: ap.load_image(os.path.join(folder, p)) for p in paths}
    for p, lay in zip(paths, lays):
        lay.validate()
        assert lay == ap.quadtree(imgs[p], threshold=r["threshold"], min_size=8, max_size=64, importance="distortion")

    lp = tmp_path / "at.parquet"
    assert cli_main(["layouts", folder, "--threshold", str(r["threshold"]), "--out", str(lp), "--workers", "1",
                     "--quiet"]) == 0
    assert read_layouts(lp)[1] == lays
    assert cli_main(["calibrate", str(tmp_path / "nope"), "--out", str(out), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli_main(["calibrate", folder, "--out", str(out), "--target-mean-tokens", "1", "--quiet",
                     "--workers", "1"]) == 2


def test_interrupted_write_leaves_no_complete_looking_report(folder, tmp_path, monkeypatch):
    import sys
    cal_mod = sys.modules["adapatch.dataset.calibrate"]  # the package re-exports the function of that name

    def boom(path, items):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(cal_mod, "_write_layouts", boom)
    with pytest.raises(KeyboardInterrupt):
        calibrate(folder, Targets(mean_tokens=80), workers=1, out=tmp_path / "o")
    assert os.listdir(tmp_path / "o") == []


def test_relative_budgets():
    assert uniform16_tokens(1, 1) == 1 and uniform16_tokens(17, 33) == 6
    assert relative_budget(512, 384, fraction=0.25) == round(0.25 * 768)
    assert relative_budget(1000, 1000, tokens_per_mp=250) == 250
    assert relative_budget(20, 20, fraction=0.01) == 1
    assert RelativeBudget("fraction", 0.5).tokens(800, 4000) == relative_budget(800, 4000, fraction=0.5)
    with pytest.raises(ValueError):
        relative_budget(10, 10)
    with pytest.raises(ValueError):
        relative_budget(10, 10, fraction=0.0)
    with pytest.raises(ValueError):
        RelativeBudget("tokens", 1.0)


def test_extremes_and_bounds(folder):
    from adapatch.dataset import extremes
    with scan(folder, CurveSettings(), workers=1) as store:
        tok = store.tokens_at(np.array([0.05]))[:, 0]
        ext = extremes(store, 0.05, k=3)
        assert [r["tokens"] for r in ext["fewest"]] == sorted(tok)[:3]
        assert [r["tokens"] for r in ext["most"]] == sorted(tok, reverse=True)[:3]
        small = extremes(store, 0.05, k=100)  # a small set is split, never listed twice
        ids = [r["index"] for r in small["fewest"] + small["most"]]
        assert sorted(ids) == list(range(store.n_images))
        lo, hi = Objectives(store).bounds("mean_tokens")
        assert lo == store.base_tokens.mean() and hi == store.tokens_at(np.array([0.0])).mean()


@pytest.mark.slow
def test_ray_engine_with_a_list_naming_a_file_twice(folder):
    if not os.environ.get("CI"):
        pytest.importorskip("ray")
    from adapatch.dataset import open_source
    refs = open_source(folder).items
    listing = [refs[0].container, refs[1].container, refs[0].container]
    with scan(listing, CurveSettings(), workers=2, engine="ray") as a, scan(listing, CurveSettings(), workers=1) as b:
        assert a.n_images == b.n_images == 3 and not a.skipped
        assert a.tokens_at(np.array([0.05])).tolist() == b.tokens_at(np.array([0.05])).tolist()
