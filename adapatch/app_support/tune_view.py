"""Glue of the Tune page: the images a search runs on, the run itself (``adapatch.tune.tune``, its
progress and how it stops), the runs kept in the session, the Pareto chart and table, the downloads,
and opening a configuration on the Patch layout page.

The library does the search; this module only turns the page's choices into its arguments and its
result into widgets. Every image is tuned as the model's input frame (``resize_for_model``), kept as
the PNG of that frame (8-bit, what an upload of it decodes to), so the frame the search scored and
the image Patch layout opens are the same pixels and the tuned settings give the same layout there.

Stopping a run: the progress callback updates an ``st.progress`` bar after every scored
configuration. Clicking Stop (or anything else) while the script runs makes Streamlit raise its
rerun exception at the next element update, i.e. inside that callback, which unwinds ``tune``: the
run ends within one configuration and nothing of it is kept. ``ACTIVE`` records how far it got, so
the next run of the page can say it stopped. The callback can also raise ``TuneStopped`` itself
(``stop`` predicate), for callers that decide to end a run.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from . import state
from .images import UPLOAD_TYPES, clean_name, decode_upload, md_escape

RUNS = "tune_runs"  # session: list of TuneRun, newest first, at most KEEP_RUNS
ACTIVE = "tune_active"  # session: {"done", "total", "what"} while a run is in progress (left behind when stopped)
STOPPED = "tune_stopped_text"  # session: the line saying the last run stopped, shown once
PICKED = "tune_picked_points"  # session: the chart selection last applied to the configuration box
KEEP_RUNS = 3
"""Runs kept per session (each holds its images' PNG frames: a few MB at most)."""
MAX_IMAGES = 300
"""Most images one run takes (uploads and held-out digits)."""
HELD_OUT_DIGITS = (20, 500, 60)
"""The held-out digits slider: least, most, default."""
SOURCES = {"samples": "Bundled digit samples (8, labelled)", "digits": "Held-out digits of the task (labelled)",
           "upload": "Upload images or a zip"}
TARGETS = {"macs": "MACs ratio at most", "drop": "Largest drop from the full grid"}
LEVEL_OPTIONS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75)
ZIP_TYPES = (*UPLOAD_TYPES, "zip")
ABOUT = """**How the search works**

Each configuration is a strategy (quadtree with an importance and a patch-size range, multiscale, greedy, the
learned selector, the uniform grid) at a compute level: a share of the MACs of the model's full patch grid. The
library (`adapatch.tune`) scores every configuration on a few images first and keeps the best third of each
level on three times as many (successive halving), until the survivors are scored on the whole search split
within the budget of forward passes.

- **Objective**: accuracy when the images have labels; otherwise how often the top-1 class equals the model's
  own on its full grid (label-free, works with any model and any images).
- **Pareto front**: no other configuration is both cheaper and better on the search split.
- **Honesty**: a share of the images is held out; the chosen configuration is re-scored there.

The same search runs from the command line: `python -m adapatch tune FOLDER --model task --out DIR`.
"""
DEFAULTS: dict[str, Any] = {"tune_source": "samples", "tune_digits": HELD_OUT_DIGITS[2], "tune_target": "macs",
                            "tune_macs": 0.4, "tune_drop": 0.02, "tune_budget": None, "tune_held_out": 0.3,
                            "tune_seed": 0, "tune_strategies": None, "tune_importances": None, "tune_levels": None}
"""The page's settings (in ``state.settings()``, so they survive page switches; None: the library's default)."""


class TuneStopped(Exception):
    """Raised by the progress callback when its ``stop`` predicate says the run should end."""


def init_settings() -> None:
    """Add the page's defaults to the session's settings once."""
    s = state.settings()
    for k, v in DEFAULTS.items():
        s.setdefault(k, v.copy() if isinstance(v, (list, dict)) else v)


# ------------------------------------------------------------------ images
@dataclass
class TuneImages:
    """What a run searches: names, each image's PNG (the model frame, 8-bit), class labels (or None:
    label-free) and the sidebar's key of a bundled sample (opened as itself), plus files skipped."""

    description: str
    names: list[str]
    pngs: list[bytes] = field(repr=False)
    labels: list[int] | None
    keys: list[str | None]
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def arrays(self) -> list[np.ndarray]:
        """The frames as the app decodes them (``decode_upload``: the pixels Patch layout gets)."""
        return [decode_upload(n, b).array for n, b in zip(self.names, self.pngs)]


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB float image in [0, 1] as 8-bit PNG bytes."""
    from PIL import Image
    a = (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def frame_png(image: np.ndarray, img_size: int) -> bytes:
    """The image resized to the model's ``img_size`` square (``resize_for_model``'s rule), as PNG."""
    import cv2
    a: np.ndarray = np.asarray(image, np.float32)
    if a.shape[:2] != (img_size, img_size):
        interp = cv2.INTER_AREA if a.shape[0] > img_size or a.shape[1] > img_size else cv2.INTER_LINEAR
        a = cv2.resize(a, (img_size, img_size), interpolation=interp)
    return png_bytes(a)


def sample_images(img_size: int, labelled: bool) -> TuneImages:
    """The bundled digit samples; their names carry the label (``digit_3_label5``)."""
    from adapatch.samples import list_task_samples, sample_path, task_sample_label
    names = list_task_samples()
    if len(names) < 2:
        raise ValueError("the bundled digit samples are missing from this installation")
    pngs, keys = [], []
    for n in names:
        entry = state.sample_entry(n)
        same = entry.array.shape[:2] == (img_size, img_size)
        pngs.append(sample_path(n).read_bytes() if same else frame_png(entry.array, img_size))
        keys.append(f"sample:{n}" if same else None)  # a sample at the model's size opens as itself
    found = [task_sample_label(n) for n in names]
    labels = [int(v) for v in found if v is not None] if labelled else None
    return TuneImages(f"the {len(names)} bundled digit samples", names, pngs, labels, keys)


@st.cache_resource(show_spinner="Making the task's held-out digits (once per server, a few seconds)…")
def _held_out_split() -> dict[str, np.ndarray]:
    """The bundled task's held-out split (``held_out_split`` of its dataset settings), shared read-only."""
    from adapatch.experiments.cluttered_digits import DatasetConfig, held_out_split
    from adapatch.model import load_task_model
    _, meta = load_task_model()
    return held_out_split(DatasetConfig(**meta["dataset"]))


def held_out_digits(n: int, img_size: int, labelled: bool) -> TuneImages:
    """The first ``n`` images of the task's held-out split (never trained on), with their digits."""
    from adapatch.experiments.cluttered_digits import to_rgb
    split = _held_out_split()
    n = int(min(max(n, 2), len(split["test_y"])))
    x = to_rgb(split["test_x"][:n])
    names = [f"held-out digit {i} (label {int(y)})" for i, y in enumerate(split["test_y"][:n])]
    labels = [int(v) for v in split["test_y"][:n]] if labelled else None
    return TuneImages(f"{n} held-out digits of the task", names, [frame_png(a, img_size) for a in x], labels,
                      [None] * n)


def upload_images(files: Sequence, img_size: int) -> TuneImages:
    """Uploaded images and zip files (their image members), each resized to the model frame; files
    that cannot be read are listed in ``skipped`` with the reason, at most ``MAX_IMAGES`` taken."""
    from adapatch.image_io import load_image
    names: list[str] = []
    pngs: list[bytes] = []
    skipped: list[dict] = []
    notes: list[str] = []
    left_out = 0

    def take(name: str, data: bytes) -> None:
        nonlocal left_out
        if len(names) >= MAX_IMAGES:
            left_out += 1
            return
        try:
            pngs.append(frame_png(load_image(data), img_size))
            names.append(name)
        except Exception as e:  # noqa: BLE001 - a bad file is listed and skipped, never stops the others
            msg = " ".join(str(e).split())
            skipped.append({"path": name, "reason": (msg.removeprefix("image: "))[:200]
                            or "cannot read this file"})

    for f in files:
        name = clean_name(getattr(f, "name", "upload"))
        data = bytes(f.getvalue())
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    members = [i.filename for i in zf.infolist() if not i.is_dir()
                               and PurePath(i.filename).suffix.lower().lstrip(".") in UPLOAD_TYPES
                               and not PurePath(i.filename).name.startswith("._")]
                    if not members:
                        skipped.append({"path": name, "reason": "the zip file holds no images"})
                    for m in members:
                        take(f"{name}/{m}", zf.read(m))
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                skipped.append({"path": name, "reason": "not a readable zip file: " + " ".join(str(e).split())[:120]})
        else:
            take(name, data)
    if left_out:
        notes.append(f"Only the first {MAX_IMAGES} images are used; {left_out} more left out "
                     "(tune larger sets with `python -m adapatch tune`).")
    return TuneImages(f"{len(names)} uploaded image{'s' if len(names) != 1 else ''}", names, pngs, None,
                      [None] * len(names), skipped, notes)


UPLOADS = "tune_upload_images"  # session: ((file ids, img_size), TuneImages) of the last uploads read


def session_upload_images(files: Sequence, img_size: int) -> TuneImages:
    """``upload_images``, read once per set of files and model size (kept in the session, one entry),
    so a rerun does not decode and resize every upload again."""
    ids = tuple(getattr(f, "file_id", None) or f"{getattr(f, 'name', '')}:{i}" for i, f in enumerate(files))
    key = (ids, int(img_size))
    kept = st.session_state.get(UPLOADS)
    if kept is None or kept[0] != key:
        kept = (key, upload_images(files, img_size))
        st.session_state[UPLOADS] = kept
    images = kept[1]
    return TuneImages(images.description, list(images.names), images.pngs, None, list(images.keys),
                      list(images.skipped), list(images.notes))


def csv_labels(data: bytes, names: Sequence[str], num_classes: int, class_names: list[str] | None) -> list[int]:
    """One class index per image from a CSV of ``path,label`` (a header row is allowed; a path matches
    an image's name in full, or its file name; a label is a class index or one of the model's class
    names). ``ValueError`` naming the first image without a label."""
    from adapatch.tune.cli import label_index
    rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"))) if len(r) >= 2]
    if rows and not rows[0][1].strip().lstrip("-").isdigit() and rows[0][0].strip().lower() in ("path", "file",
                                                                                                   "filename"):
        rows = rows[1:]
    table = {r[0].strip(): r[1] for r in rows}
    by_file = {PurePath(k).name: v for k, v in table.items()}
    out = []
    for n in names:
        v = table.get(n, by_file.get(PurePath(n).name))
        if v is None:
            raise ValueError(f"the labels CSV has no label for {n}")
        out.append(label_index(v, num_classes, class_names))
    return out


# ------------------------------------------------------------------ runs
@dataclass
class TuneRun:
    """One finished search, kept in the session: the library's result and report, the images it ran
    on (PNG frames), the model it tuned for and when."""

    id: int
    result: Any  # adapatch.tune.TuneResult
    report: dict[str, Any]
    images: TuneImages
    model_name: str
    model_label: str
    img_size: int
    patch: int
    device: str
    finished: str

    @property
    def final(self) -> list:
        """The configurations scored on the whole search split (the last rung), cheapest first."""
        last = len(self.result.rungs) - 1
        return [e for e in self.result.evaluated if e.rung == last]

    def by_key(self, key: str):
        return next(e for e in self.final if e.config.key == key)

    def settings(self, e) -> dict[str, Any]:
        """``e`` as app settings (``settings_for``: ``layout_from_settings`` loads them as they are)."""
        from adapatch.tune import settings_for
        return settings_for(e, self.model_name, self.img_size, self.patch, self.device,
                            source=f"Tune: {self.images.description}")

    @property
    def label(self) -> str:
        c = self.result.chosen
        return (f"Run {self.id} · {self.finished} · {len(self.images.names)} images · {self.model_label} · "
                + (f"chosen {c.config.key}" if c is not None else "nothing meets the target"))


def runs() -> list[TuneRun]:
    return list(st.session_state.get(RUNS, []))


def keep(run: TuneRun) -> None:
    """Put ``run`` first in the session's runs, keeping at most ``KEEP_RUNS``."""
    st.session_state[RUNS] = [run, *runs()[:KEEP_RUNS - 1]]


def next_id() -> int:
    return max((r.id for r in runs()), default=0) + 1


def progress_callback(bar, stop: Callable[[], bool] | None = None) -> Callable[[int, int, str], None]:
    """``tune``'s progress: the bar and ``ACTIVE`` follow each scored configuration; ``stop()`` true
    raises ``TuneStopped``. (A click while the run goes on makes Streamlit raise from ``bar.progress``.)"""
    marker = st.session_state.setdefault(ACTIVE, {"done": 0, "total": 0, "what": ""})

    def cb(done: int, total: int, what: str) -> None:
        marker.update(done=int(done), total=int(total), what=str(what))
        if stop is not None and stop():
            raise TuneStopped(what)
        bar.progress(min(1.0, done / max(total, 1)), text=f"{done} of {total} configurations scored · {what}")
    return cb


def stopped_text(marker: dict) -> str:
    """The line a stopped run leaves for the page."""
    return (f"The run stopped after {marker.get('done', 0)} of {marker.get('total') or '?'} configurations "
            "(Stop, or any other click while it ran, ends it); nothing of it is kept.")


def take_stopped() -> str | None:
    """The line saying the last run stopped (a run left ``ACTIVE`` behind), once; None otherwise."""
    ss = st.session_state
    if ACTIVE in ss:
        ss[STOPPED] = stopped_text(ss.pop(ACTIVE))
    return ss.pop(STOPPED, None)


def execute(images: TuneImages, model: Any, model_name: str, model_label: str, *, target: str, macs: float,
            drop: float, budget: int | None, held_out: float, seed: int, strategies: Sequence[str] | None,
            importances: Sequence[str] | None, levels: Sequence[float] | None, device: str,
            progress: Callable[[int, int, str], None] | None = None) -> TuneRun:
    """Run ``adapatch.tune.tune`` on ``images`` and build its report (``build_report``) and settings."""
    from adapatch.model.task import as_vit
    from adapatch.tune import DEFAULT_LEVELS, QUADTREE_IMPORTANCES, STRATEGIES, tune
    from adapatch.tune.report import build_report
    cfg = as_vit(model).config
    t0 = time.perf_counter()
    kw: dict[str, Any] = {"target_macs_ratio": float(macs)} if target == "macs" else {"max_drop": float(drop)}
    res = tune(images.arrays(), model, images.labels, budget_evals=budget, held_out=held_out, seed=seed,
               strategies=tuple(strategies or STRATEGIES), importances=tuple(importances or QUADTREE_IMPORTANCES),
               levels=tuple(levels or DEFAULT_LEVELS), device=device, progress=progress, **kw)
    run = TuneRun(next_id(), res, {}, images, model_name, model_label, int(cfg.img_size), int(cfg.patch_size),
                  device, time.strftime("%H:%M:%S"))
    settings = None if res.chosen is None else run.settings(res.chosen)
    command = (f"app Tune page: {images.description}; model {model_name}; "
               + (f"target MACs ratio <= {macs:g}" if target == "macs" else f"max drop {drop:g}")
               + f"; budget {res.budget_evals:,} forward passes; held out {held_out:g}; seed {seed}")
    run.report = build_report(res, model_name, command, settings, images.skipped)
    run.report["seconds"] = time.perf_counter() - t0
    return run


# ------------------------------------------------------------------ what the page shows
def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def hover_rows(run: TuneRun, evaluated: Sequence) -> list[list]:
    """customdata of each point: key, strategy, importance, sizes, level, objective, MACs ratio, tokens."""
    out = []
    for e in evaluated:
        f = e.config.family
        sizes = f"{f.min_size}-{f.max_size} px" if f.min_size is not None else "-"
        out.append([e.config.key, f.strategy, f.importance or "-", sizes, f"{e.config.level:.2f}", pct(e.objective),
                    f"{e.macs_ratio:.3f}", f"{e.mean_tokens:.1f}"])
    return out


def pareto_figure(run: TuneRun, selected: str | None = None) -> go.Figure:
    """Objective against MACs ratio: every configuration scored on the whole search split, the Pareto
    front (line), the full grid, the chosen configuration (star) and the selected one (ring). Hover
    shows each configuration; points carry their key (``customdata[0]``) for selection."""
    r, obj = run.result, run.result.objective
    front_keys = {e.config.key for e in r.front}
    others = [e for e in run.final if e.config.key not in front_keys]
    hover = ("<b>%{customdata[0]}</b><br>strategy %{customdata[1]} · importance %{customdata[2]}<br>"
             "sizes %{customdata[3]} · level %{customdata[4]}<br>" + obj + " %{customdata[5]} · "
             "MACs ratio %{customdata[6]} · tokens %{customdata[7]}<extra></extra>")
    fig = go.Figure()
    fig.add_scatter(x=[e.macs_ratio for e in others], y=[e.objective for e in others], mode="markers",
                    name="Other configurations", marker={"color": "#9aa0a6", "size": 8},
                    customdata=hover_rows(run, others), hovertemplate=hover)
    fig.add_scatter(x=[e.macs_ratio for e in r.front], y=[e.objective for e in r.front], mode="lines+markers",
                    name="Pareto front", marker={"color": "#1f77b4", "size": 10}, line={"color": "#1f77b4"},
                    customdata=hover_rows(run, r.front), hovertemplate=hover)
    fig.add_scatter(x=[1.0], y=[r.full_grid["objective"]], mode="markers", name="Full grid",
                    marker={"color": "black", "symbol": "square", "size": 10},
                    hovertemplate=f"<b>full grid</b><br>{obj} {pct(r.full_grid['objective'])} · "
                                  f"{r.full_grid['mean_tokens']:.0f} tokens<extra></extra>")
    if r.chosen is not None:
        fig.add_scatter(x=[r.chosen.macs_ratio], y=[r.chosen.objective], mode="markers", name="Chosen",
                        marker={"color": "#d62728", "symbol": "star", "size": 18,
                                "line": {"width": 1, "color": "white"}},
                        customdata=hover_rows(run, [r.chosen]), hovertemplate=hover)
    if selected is not None and any(e.config.key == selected for e in run.final):
        e = run.by_key(selected)
        fig.add_scatter(x=[e.macs_ratio], y=[e.objective], mode="markers", name="Selected", hoverinfo="skip",
                        marker={"color": "rgba(0,0,0,0)", "size": 24, "line": {"width": 2, "color": "#ff7f0e"}})
    t = r.target
    if t.get("macs_ratio") is not None:
        fig.add_vline(x=float(t["macs_ratio"]), line_dash="dot", line_color="#d62728",
                      annotation_text=f"target ≤ {t['macs_ratio']:.2f}", annotation_position="top left")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, clickmode="event+select",
                      title=f"{obj.capitalize()} against MACs on the {len(r.search_images)} search images",
                      xaxis={"title": "MACs / the full grid's MACs", "range": [0, 1.05]},
                      yaxis={"title": obj, "tickformat": ".0%", "rangemode": "tozero"},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def front_rows(run: TuneRun) -> list[dict[str, Any]]:
    """The front as table rows, cheapest first (the chosen one marked)."""
    c = run.result.chosen
    out = []
    for e in run.result.front:  # the key names strategy, importance, sizes and level
        out.append({"": "★" if c is not None and e.config.key == c.config.key else "",
                    "configuration": e.config.key, f"{run.result.objective} %": round(100 * e.objective, 1),
                    "agreement %": round(100 * e.agreement, 1), "KL": round(e.kl, 4),
                    "MACs ratio": round(e.macs_ratio, 3), "tokens": round(e.mean_tokens, 1)})
    return out


def held_out_text(run: TuneRun) -> tuple[str, bool] | None:
    """The held-out re-score in words, saying plainly when it is lower than the search's number, and
    whether it is lower; None without a chosen configuration or held-out images."""
    r = run.result
    h = r.held_out.get("chosen")
    if r.chosen is None or not h:
        return None
    obj, n = r.objective, r.held_out["images"]
    s, o = r.chosen.objective, h["objective"]
    full = r.held_out["full_grid"]["objective"]
    base = (f"Re-scored on the {n} held-out image{'s' if n != 1 else ''} the search never saw: {obj} {pct(o)} "
            f"(full grid there: {pct(full)}), against {pct(s)} on the search split.")
    if o < s:
        return base + (f" **The held-out number is lower** by {100 * (s - o):.1f} points: the search's own number "
                       "flatters the choice; expect the held-out one on new images."), True
    return base + " The held-out number is not lower." + (f" With {n} held-out images it is a rough check."
                                                          if n < 30 else ""), False


def downloads(run: TuneRun, selected) -> list[tuple[str, bytes, str, str]]:
    """``(label, data, file name, mime)`` of report.json, report.md, the chosen settings.json and the
    selected configuration's settings."""
    from adapatch.tune.report import report_markdown
    out = [("report.json", json.dumps(run.report, indent=1).encode(), "report.json", "application/json"),
           ("report.md", report_markdown(run.report).encode(), "report.md", "text/markdown")]
    if run.report.get("settings") is not None:
        out.append(("settings.json (chosen)", json.dumps(run.report["settings"], indent=1).encode(), "settings.json",
                    "application/json"))
    if selected is not None:
        name = "settings_" + "".join(ch if ch.isalnum() else "_" for ch in selected.config.key).strip("_") + ".json"
        out.append(("settings of the selected configuration", json.dumps(run.settings(selected), indent=1).encode(),
                    name, "application/json"))
    return out


def selection_keys(event: Any) -> list[str]:
    """Configuration keys of the points a Plotly selection event holds (full grid and rings: none)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    out = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)) and cd and isinstance(cd[0], str):
            out.append(cd[0])
    return out


# ------------------------------------------------------------------ opening on Patch layout
NOT_ON_LAYOUT = {"uniform": "Patch layout has no uniform strategy (the uniform grid is the baseline on Compare); "
                            "download this configuration's settings to use it"}


def image_key(run: TuneRun, index: int) -> str:
    """The sidebar's key of tuned image ``index``: a bundled sample as itself, else its model frame added
    to the sidebar's image list (``state.add_image``, labelled "Tuned")."""
    k = run.images.keys[index]
    if k is not None:
        return k
    name = run.images.names[index]
    entry = decode_upload(f"{name} ({run.img_size}x{run.img_size} model frame)", run.images.pngs[index])
    return state.add_image(entry, label="Tuned")


def layout_changes(run: TuneRun, e, entry) -> dict[str, Any]:
    """The Patch layout page's settings that show configuration ``e`` on ``entry`` (a tuned image)."""
    from .recipes import fraction_for_tokens, fraction_max, threshold_kind
    f = e.config.family
    if f.strategy in NOT_ON_LAYOUT:
        raise ValueError(NOT_ON_LAYOUT[f.strategy])
    if f.strategy == "quadtree":
        kind = threshold_kind(f.importance)
        return {"strategy": "quadtree", "importance": f.importance, "sizes": (int(f.min_size), int(f.max_size)),
                "use_budget": False, "thresholds": {**(state.get("thresholds") or {}), kind: float(e.threshold)}}
    if f.strategy == "learned_selector":
        return {"strategy": "learned_selector", "selector_k": int(e.budget)}
    sizes = (int(f.min_size), int(f.max_size)) if f.min_size is not None else tuple(state.get("sizes"))
    out: dict[str, Any] = {"strategy": f.strategy, "sizes": sizes, "use_budget": True,
                           "budget_fraction": fraction_for_tokens(entry, int(e.budget), fraction_max(sizes[0]))}
    if f.strategy == "multiscale":
        out["scales"] = 1
    if f.strategy == "greedy":
        from adapatch.tune.evaluate import SELECTOR_SALIENCY
        out.update(greedy_allocation="saliency", saliency_method=SELECTOR_SALIENCY)
    return out


def same_layout(a, b) -> bool:
    return a.num_tokens == b.num_tokens and np.array_equal(np.asarray(a.boxes), np.asarray(b.boxes))


def layout_check(run: TuneRun, e, entry) -> str:
    """Whether the Patch layout page's layout on ``entry`` (its settings as they are now) is the tuner's."""
    from adapatch.export import layout_from_settings

    from . import compute, model_source, recipes
    tuned = layout_from_settings(entry.array, run.settings(e), model=model_source.current_model()[1]
                                 if e.config.family.strategy == "learned_selector" else None)
    page = compute.layout(entry, recipes.layout_settings(
        strategy="learned_selector" if e.config.family.strategy == "learned_selector" else None, entry=entry))
    macs = (f" Its MACs ratio is against the 16 px grid of its ViT preset; the Tune page's against the model's "
            f"full {run.patch} px grid.")
    if same_layout(tuned, page):
        return f"Patch layout shows the tuner's layout of this image ({page.num_tokens} tokens)." + macs
    return (f"Patch layout's layout of this image has {page.num_tokens} tokens where the tuner's has "
            f"{tuned.num_tokens} (the page measures distortion and multiscale with 16 px tokens, the tuner with the "
            f"model's {run.patch} px patches; its settings.json reproduces the tuner's exactly)." + macs)


def open_config(run_id: int, key: str, index: int) -> None:
    """Callback of "Open on Patch layout": the configuration's settings become the Patch layout page's
    (``demo.apply_on_layout``, the Demo's path) on tuned image ``index``, which becomes the current image."""
    from . import demo
    run = next(r for r in runs() if r.id == run_id)
    e = run.by_key(key)
    img = image_key(run, index)
    entry = state.entry(img)
    what = f"the Tune result's configuration \"{key}\" on {md_escape(run.images.names[index])}"
    text = demo.apply_on_layout(layout_changes(run, e, entry), what, img)
    try:
        check = layout_check(run, e, entry)
    except (ValueError, RuntimeError) as err:  # the check is a courtesy: never a reason not to open
        check = f"(The layout could not be compared with the tuner's: {' '.join(str(err).split())[:120]}.)"
    state.notify(text + " " + check, page="Patch layout")
