"""The Demo page's guided story: a few preset scenes, each a layout with settings that make a point.

A ``Scene`` is plain data: the image (a bundled sample, a task digit or an image of the bundled
dataset), the strategy and its settings, and what to show beside it (the equal-token uniform grid,
the adaptive layout that lost, or the task model's own grids). ``build_step`` computes everything a
step shows with ``adapatch`` calls only (``layout_from_settings``, ``layout_for_budget``,
``fidelity``, ``efficiency``, the task model); ``step_view`` is its cached wrapper. The main
layout of a step is made from its *settings* (``adapatch.export`` format, the Patch layout page's
recipe), so the exported JSON gives exactly the layout the step shows, and ``open_step`` puts the
same settings on the Patch layout page, with the step's image selected (a dataset image is added to
the session's image list as an upload of its file would be).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.budgets import relative_budget, uniform16_tokens
from adapatch.export import layout_from_settings, settings_json
from adapatch.fidelity import MAX_PSNR
from adapatch.layout import uniform
from adapatch.samples import DATASET_DIR, task_sample_label

from . import state
from .compute import DISPLAY_SIDE, full_settings, saliency_spec
from .images import (
    ImageEntry,
    decode_upload,
    digest_of,
    fit_for_compute,
    load_sample_entry,
)
from .recipes import Budget, describe, search_word
from .ui import count_text, fmt_psnr

VIT = "ViT-B"
"""ViT preset of the GMACs numbers (the Patch layout page's default)."""
SMALL_SIDE = 512
"""Images smaller than this are enlarged (nearest neighbour, an integer factor) to draw their overlay."""
STEP = "demo_step"
"""Setting: index of the current step (``state.put``/``state.get``)."""
STEP_WIDGET = "w_demo_step"


@dataclass(frozen=True)
class Scene:
    """One step of the story.

    ``image``: ``"sample:<name>"`` (a bundled sample or task digit, in the sidebar's list) or
    ``"dataset:<file>"`` (an image of the bundled sample dataset, ``adapatch.samples.DATASET_DIR``).
    ``strategy``/``importance``/``sizes``/``fraction``: the Patch layout page's settings (budget as a
    share of the image's 16 px grid). ``beside``: ``"uniform"`` (the equal-token uniform grid),
    ``"quadtree"`` (the distortion quadtree at the same budget: what multiscale turned down) or
    ``"model"`` (the task model's equal-token and full grids, and its predictions).
    ``token_size``: the token side the PSNR is measured for (16, or the task model's 8 px).
    ``scales``: multiscale's search (1: fast, the budget-mode default; 6: thorough).
    """

    key: str
    title: str
    story: str
    image: str
    strategy: str = "quadtree"
    importance: str = "distortion"
    sizes: tuple[int, int] = (16, 64)
    fraction: float = 0.30
    beside: str = "uniform"
    token_size: int = 16
    scales: int = 1
    stacked: bool = False  # wide images: panels one above the other
    budget_table: bool = False  # the same relative budget on every scene's image

    @property
    def label(self) -> str:
        return self.title.split(":")[0]

    @property
    def any_image(self) -> bool:
        """Whether the scene runs on any image (the sidebar's); the digit scene needs the task model's
        own 64x64 digits."""
        return self.beside != "model"


SCENES: tuple[Scene, ...] = (
    Scene("flat_sky", "Flat sky: large patches where little happens",
          "A vision transformer cuts every image into the same small squares (tokens), so a calm area costs as "
          "much compute as the detail. The adaptive layout covers the calmest parts with large patches and spends "
          "its small ones where a large patch would lose the most. Beside it, the uniform grid with the closest "
          "token count (about the same compute); the line under the pictures says which keeps more of this image.",
          "sample:rocket", fraction=0.30),
    Scene("text_page", "Text page: where the tokens go on a page",
          "On a page, the detail is in the letters; margins and blank paper need little. The quadtree gives its "
          "smallest patches to the lines of text and covers the paper with large ones. Whether that keeps more than "
          "a uniform grid with the same tokens depends on the page: on dense, even text a plain grid can do as well "
          "or better. The line under the pictures says which it is here.",
          "sample:page", fraction=0.50),
    Scene("dense_texture", "Dense texture: when the uniform grid is the honest answer",
          "An image with detail everywhere has little to save: every large patch blurs something. The multiscale "
          "strategy measures a plain grid against adaptive layouts with the same tokens and keeps whichever keeps "
          "more. Beside it, the distortion quadtree at the same budget; the line under the pictures says which "
          "one multiscale kept.",
          "dataset:photo_gravel.jpg", strategy="multiscale", fraction=0.50, beside="quadtree"),
    Scene("task_digit", "The task's digit: what the model reads from 16 tokens",
          "The bundled model is a small ViT trained to read one digit among clutter, on 64x64 images cut into 64 "
          "tokens of 8 px. A quadtree of 16 tokens keeps the small patches on the digit; a plain grid of 16 tokens "
          "(16 px patches) blurs it. The model reads all three layouts below.",
          "sample:digit_3_label5", importance="std", sizes=(8, 32), fraction=1.0, beside="model", token_size=8),
    Scene("panorama", "Panorama: a relative budget means the same on every image",
          "Budgets are a share of what a standard ViT/16 spends on the image, not a fixed number of tokens. The "
          "same 30% gives a wide panorama and every other image about the same tokens per megapixel (a tiny image "
          "still gets at least one token), where a fixed count would be generous on a small image and starve a "
          "large one (the table below).",
          "dataset:photo_rocket_panorama.jpg", fraction=0.30, stacked=True, budget_table=True),
)
SCENE_KEYS = tuple(s.key for s in SCENES)


def scene(key: str) -> Scene:
    for s in SCENES:
        if s.key == key:
            return s
    raise ValueError(f"scene must be one of {', '.join(SCENE_KEYS)}; got {key!r}")


# ------------------------------------------------------------------ images
def load_dataset_entry(file: str) -> ImageEntry:
    """An image of the bundled sample dataset as an ``ImageEntry`` (settings name it by file name)."""
    path = DATASET_DIR / file
    if not path.is_file() or path.parent != DATASET_DIR:
        raise ValueError(f"no bundled dataset image {file!r}")
    data = path.read_bytes()
    loaded = ap.open_image(data)
    array, resize = fit_for_compute(loaded.array)
    return ImageEntry(key=f"dataset:{file}", name=f"{file} (bundled dataset)", digest=digest_of(data), array=array,
                      source=file, original_size=loaded.shape, resize=resize, notes=list(loaded.notes),
                      format=loaded.format)


def load_entry(image: str) -> ImageEntry:
    """The scene image: ``sample:<name>`` or ``dataset:<file>``."""
    if image.startswith("sample:"):
        return load_sample_entry(image[len("sample:"):])
    if image.startswith("dataset:"):
        return load_dataset_entry(image[len("dataset:"):])
    raise ValueError(f"scene image must start with sample: or dataset:, got {image!r}")


def image_bytes(scene_: Scene) -> bytes:
    """The file of a dataset scene's image (to download and upload it in the sidebar)."""
    if not scene_.image.startswith("dataset:"):
        raise ValueError("only dataset images are downloaded")
    return (DATASET_DIR / scene_.image[len("dataset:"):]).read_bytes()


# ------------------------------------------------------------------ settings
def scene_budget(scene_: Scene, image: np.ndarray) -> Budget:
    """The budget the Patch layout page gives this image at ``scene.fraction`` (the same range:
    the quadtree's base/fully split tokens, else the grids of the largest and smallest size)."""
    h, w = image.shape[:2]
    lo_size, hi_size = scene_.sizes
    if scene_.strategy == "quadtree":
        curve = ap.threshold_curve(image, None, min_size=lo_size, max_size=hi_size, importance=scene_.importance)
        lo, hi = curve.base_tokens, curve.max_tokens
    elif scene_.strategy == "multiscale":  # as recipes.layout_budget: any budget down to 1 token
        lo, hi = 1, uniform(h, w, lo_size).num_tokens
    else:
        lo, hi = uniform(h, w, hi_size).num_tokens, uniform(h, w, lo_size).num_tokens
    return Budget(float(scene_.fraction), h, w, lo, max(lo, hi))


def scene_settings(scene_: Scene, image: np.ndarray, device: str = "auto") -> dict[str, Any]:
    """The step's settings in the Patch layout page's format (``recipes.layout_settings``)."""
    b = scene_budget(scene_, image)
    lo_size, hi_size = scene_.sizes
    if scene_.strategy == "quadtree":
        params: dict[str, Any] = {"threshold": None, "min_size": lo_size, "max_size": hi_size, "budget": b.tokens,
                                  "importance": scene_.importance}
    elif scene_.strategy == "multiscale":
        params = {"budget": b.tokens, "scales": int(scene_.scales)}
    else:
        raise ValueError(f"demo scenes use quadtree or multiscale, not {scene_.strategy!r}")
    return {"saliency": saliency_spec("edges"), "strategy": scene_.strategy, "params": params, "solve_budget": None,
            "prune": None, "vit": VIT, "device": device, "relative_budget": b.record()}


# ------------------------------------------------------------------ results
@dataclass
class Panel:
    """One layout of a step, with its numbers and picture."""

    label: str
    short: str  # "adaptive", "uniform", "multiscale", "quadtree", "full grid"
    layout: ap.PatchLayout
    psnr: float
    ssim: float
    macs: float  # ViT-B MACs (task model MACs for the digit)
    macs_ratio: float  # against the reference grid (16 px, or the model's full grid)
    png: bytes
    prediction: int | None = None
    confidence: float | None = None

    @property
    def tokens(self) -> int:
        return int(self.layout.num_tokens)


@dataclass
class StepView:
    """Everything one step shows: the main layout's settings (exported) and its panels (main first)."""

    scene: Scene
    entry_name: str
    digest: str  # of the image file (a dataset image counts as opened once an upload has the same digest)
    size: str  # "480x320"
    settings: dict  # full, normalised settings of the main layout (image source included)
    budget: int
    reference: str  # what macs_ratio is against
    panels: list[Panel]
    truth: int | None = None
    held_out: list[dict] = field(default_factory=list)  # bundled accuracy of the digit's layouts
    budget_rows: list[dict] = field(default_factory=list)
    own_image: bool = False  # computed on the sidebar's image, not the scene's own

    @property
    def main(self) -> Panel:
        return self.panels[0]

    def settings_json(self) -> str:
        return settings_json(self.settings)

    def takeaway(self) -> str:
        """One line of the step's result, from its numbers."""
        m = self.main
        if self.scene.beside == "model":
            u, full = self.panels[1], self.panels[2]

            def says(p: Panel) -> str:
                mark = "right" if p.prediction == self.truth else "wrong"
                return f"**{p.prediction}** ({mark}, {p.confidence:.0%} sure)"
            return (f"True digit **{self.truth}**. The quadtree's {count_text(m.tokens)}: {says(m)}; "
                    f"the {u.tokens}-token "
                    f"grid: {says(u)}; the full {full.tokens}-token grid: {says(full)}. The quadtree costs "
                    f"×{m.macs_ratio:.2f} the full grid's MACs.")
        o = self.panels[1]
        if self.scene.beside == "quadtree":
            lp = m.layout.params
            won = ("the uniform grid" if lp.get("levels_used") == 0 else "an adaptive layout")
            return (f"Here multiscale kept **{won}** ({count_text(m.tokens)}, {psnr_words(m.psnr)}); the quadtree at "
                    f"the same budget ({count_text(o.tokens)}) reaches {psnr_words(o.psnr)}: "
                    f"{compare_text(m.psnr, o.psnr, 'multiscale', 'the quadtree')}.")
        versus = compare_text(m.psnr, o.psnr, "the adaptive layout", "the grid")
        return (f"Here the adaptive layout ({count_text(m.tokens)}, {psnr_words(m.psnr)}) against the closest uniform "
                f"grid ({count_text(o.tokens)}, {psnr_words(o.psnr)}): {versus}{_token_gap(m.tokens, o.tokens)}, at "
                f"×{m.macs_ratio:.3f} the 16 px grid's {VIT} GMACs.")


def psnr_words(psnr: float) -> str:
    """PSNR with its unit ("31.55 dB"), or "lossless"."""
    text = fmt_psnr(psnr)
    return text if text == "lossless" else f"{text} dB"


def _versus(gain: float, first: str, second: str) -> str:
    """Which of two layouts keeps more, the sign taken from the numbers (``gain`` = first - second, dB):
    "the adaptive layout keeps **0.45 dB more**", "... **0.45 dB less**", or "**the same**" (< 0.005 dB)."""
    if abs(gain) < 0.005:
        return f"{first} and {second} keep **the same** (within 0.01 dB)"
    return f"{first} keeps **{abs(gain):.2f} dB {'more' if gain > 0 else 'less'}** than {second}"


def compare_text(a: float, b: float, first: str, second: str) -> str:
    """``_versus`` of two PSNRs; a lossless (capped) one is said in words, not as a dB difference
    against the cap."""
    if max(a, b) >= MAX_PSNR:
        if min(a, b) >= MAX_PSNR:
            return "both are **lossless**"
        return f"{first if a > b else second} is **lossless**, {second if a > b else first} is not"
    return _versus(a - b, first, second)


def _token_gap(a: int, b: int) -> str:
    """A note when two "equal-token" layouts differ in tokens by more than 5%."""
    if b and abs(a - b) > 0.05 * b:
        return f" (the grid closest in tokens has {abs(a - b) / b:.0%} {'fewer' if a > b else 'more'} tokens)"
    return ""


def enlarge_factor(layout: ap.PatchLayout) -> int:
    """How many times larger a step's overlay is drawn than its image (small images, so lines stay thin)."""
    return max(1, SMALL_SIDE // max(layout.height, layout.width))


def _step_overlay_png(image: np.ndarray, layout: ap.PatchLayout) -> bytes:
    """The layout overlay at display size; small images drawn larger, colours of the true sizes."""
    return render.to_png_bytes(render.layout_overlay(image, layout, max_side=DISPLAY_SIDE,
                                                     enlarge=enlarge_factor(layout)))


def _panel(label: str, short: str, image: np.ndarray, layout: ap.PatchLayout, token_size: int, device: str) -> Panel:
    fid = ap.fidelity(image, layout, size=token_size, device=device)
    eff = ap.efficiency(layout, VIT)
    return Panel(label, short, layout, float(fid["psnr"]), float(fid["ssim"]), float(eff["flops"]),
                 float(eff["flops_ratio_vs_uniform16"]), _step_overlay_png(image, layout))


def _uniform_label(layout: ap.PatchLayout) -> str:
    """E.g. "Closest uniform grid · 30 px": the equal-token baseline, the grid of square patches whose
    token count is the closest to the adaptive layout's (``layout_for_budget(image, "uniform", n)``)."""
    return f"Closest uniform grid · {layout.params['patch_size']} px"


def _main_label(settings: dict, layout: ap.PatchLayout) -> str:
    if layout.strategy == "multiscale":
        p = layout.params
        search = search_word(p["scales"])
        if p["levels_used"] == 0:
            return f"Multiscale · {search}, its choice: uniform grid · {p['base_size']} px"
        return f"Multiscale · {search}, its choice: quadtree · {p['base_size']}-{p['base_size'] << p['levels_used']} px"
    return f"Adaptive: {describe(settings)}"


def _model_predict(image: np.ndarray, layout: ap.PatchLayout, device: str) -> tuple[int, float]:
    """The task model's class and its probability for ``image`` tokenised by ``layout``, on ``device``."""
    import torch

    from adapatch.model import prepare_image, resolve_model
    from adapatch.model.task import as_vit

    vit = as_vit(resolve_model("task", device=device))
    with torch.no_grad():
        x = prepare_image(image, vit, device, resize=False)
        p = torch.softmax(vit.forward_tokens(vit.tokenize(x, [layout])), dim=-1)[0]
    return int(p.argmax()), float(p.max())


def _held_out(tokens_quadtree: int, importance: str) -> list[dict]:
    """The bundled results table's accuracy of the digit's three layouts on the held-out split
    (``python -m adapatch.experiments``); rows that are not there are left out."""
    try:
        from adapatch.model.results import task_results
        rows = task_results()
    except (ValueError, OSError):
        return []
    want = {f"quadtree budget {tokens_quadtree} ({importance}, 8-32 px)": "quadtree",
            "uniform 16 px (coarse)": "uniform 16 px", "uniform 8 px (full)": "full grid"}
    found = {r["method"]: r for r in rows if r["method"] in want}
    return [{"layout": label, "tokens": int(found[m]["tokens"]), "accuracy": float(found[m]["accuracy"])}
            for m, label in want.items() if m in found]


def _budget_rows(fraction: float, fixed: int, extra: ImageEntry | None = None) -> list[dict]:
    """The same relative budget on each photo-like scene image (not the 64x64 digit, whose model has
    its own grid), and first on ``extra`` (the sidebar's image) when given, against one fixed token count."""
    rows = []
    entries = ([extra] if extra is not None else []) + [load_entry(s.image) for s in SCENES if s.beside != "model"]
    for e in entries:
        h, w = e.height, e.width
        n16 = uniform16_tokens(h, w)
        b = relative_budget(h, w, fraction=fraction)
        share = fixed / n16
        rows.append({"Image": e.name.split(" (")[0], "Size": f"{w}x{h}", "16 px grid (tokens)": n16,
                     f"{fraction:.0%} budget (tokens)": b, "Tokens per megapixel": round(b / (h * w / 1e6)),
                     f"A fixed {fixed} tokens": f"{share:.0%} of its grid" if share <= 1 else f"{share:.1f}x its grid"})
    return rows


def build_step(scene_: Scene, device: str = "auto", entry: ImageEntry | None = None) -> StepView:
    """Compute one step (no Streamlit): the main layout from the step's settings, what goes beside it,
    PSNR/SSIM against the original, MACs, and for the digit the task model's predictions. ``entry``:
    another image to run the step on (the sidebar's); the digit scene always uses its own digit."""
    own = entry is not None and scene_.any_image
    entry = entry if entry is not None and own else load_entry(scene_.image)
    image = entry.array
    settings = full_settings(entry, scene_settings(scene_, image, device))
    main_layout = layout_from_settings(image, settings)
    short = "multiscale" if scene_.strategy == "multiscale" else "adaptive"
    main = _panel(_main_label(settings, main_layout), short, image, main_layout, scene_.token_size, device)
    panels = [main]
    reference = f"the uniform 16 px grid ({VIT} GMACs)"
    truth = held = None
    if scene_.beside == "uniform":
        u = ap.layout_for_budget(image, "uniform", main.tokens)
        panels.append(_panel(_uniform_label(u), "uniform", image, u, scene_.token_size, device))
    elif scene_.beside == "quadtree":
        q = ap.layout_for_budget(image, "quadtree", settings["params"]["budget"], None, min_size=scene_.sizes[0],
                                 max_size=scene_.sizes[1], importance="distortion")
        label = f"Same budget: quadtree · distortion · {scene_.sizes[0]}-{scene_.sizes[1]} px"
        panels.append(_panel(label, "quadtree", image, q, scene_.token_size, device))
    elif scene_.beside == "model":
        from adapatch.model import model_grid, resolve_model
        from adapatch.model.latency import model_macs
        from adapatch.model.task import as_vit

        cfg = as_vit(resolve_model("task", device=device)).config
        full = model_grid(resolve_model("task", device=device))
        u = ap.layout_for_budget(image, "uniform", main.tokens)
        panels.append(_panel(_uniform_label(u), "uniform", image, u, scene_.token_size, device))
        panels.append(_panel(f"Full grid: the model's {cfg.patch_size} px patches", "full grid", image, full,
                             scene_.token_size, device))
        full_macs = model_macs(cfg, full.num_tokens)
        for p in panels:
            p.macs = float(model_macs(cfg, p.tokens))
            p.macs_ratio = p.macs / full_macs
            p.prediction, p.confidence = _model_predict(image, p.layout, device)
        reference = f"the model's full {cfg.patch_size} px grid (task model MACs)"
        truth = task_sample_label(scene_.image[len("sample:"):])
        held = _held_out(main.tokens, scene_.importance)
    rows = []
    if scene_.budget_table:  # against the first scene's budget as a fixed count
        rows = _budget_rows(scene_.fraction, scene_budget(SCENES[0], load_entry(SCENES[0].image).array).tokens,
                            entry if own else None)
    return StepView(scene_, entry.name, entry.digest, f"{entry.width}x{entry.height}", settings,
                    settings["params"]["budget"], reference, panels, truth, held or [], rows, own)


@st.cache_data(max_entries=2 * len(SCENES), show_spinner=False)
def step_view(key: str, device: str) -> StepView:
    """``build_step`` of the scene ``key``, cached (the scenes are fixed: one computation per server)."""
    return build_step(scene(key), device)


@st.cache_data(max_entries=2 * len(SCENES), show_spinner=False)
def _own_step_view(key: str, device: str, digest: str, _entry: ImageEntry) -> StepView:
    return build_step(scene(key), device, _entry)


def own_step_view(key: str, device: str, entry: ImageEntry) -> StepView:
    """``build_step`` of the scene ``key`` on ``entry`` (the sidebar's image), cached by the image's digest."""
    return _own_step_view(key, device, entry.digest, entry)


SOURCE = "demo_source"
"""Setting: "scene" (each scene's own image) or "sidebar" (the sidebar's current image)."""
SOURCE_WIDGET = "w_demo_source"


# ------------------------------------------------------------------ session
def current_step() -> int:
    """The step in session state (0 when unset or out of range)."""
    v = state.get(STEP)
    return int(v) if isinstance(v, int) and 0 <= v < len(SCENES) else 0


def go_to(index: int) -> None:
    """Callback: make ``index`` the current step (the step selector follows)."""
    index = int(min(max(index, 0), len(SCENES) - 1))
    state.put(STEP, index)
    st.session_state[STEP_WIDGET] = index


def picked() -> None:
    """Callback of the step selector: keep its choice."""
    v = st.session_state.get(STEP_WIDGET)
    if v is not None:
        state.put(STEP, int(v))


def layout_key(scene_: Scene, digest: str) -> str | None:
    """The sidebar's key of the scene's image, or None when the image is not in the sidebar's list
    (a dataset image is there once the same file is uploaded, or once ``ensure_image`` added it)."""
    if scene_.image.startswith("sample:"):
        return scene_.image if scene_.image in state.image_options() else None
    for e in state.uploaded_entries():
        if e.digest == digest:
            return e.key
    return None


def dataset_upload(scene_: Scene) -> ImageEntry:
    """A dataset scene's image as the upload of its file would be (``images.decode_upload`` of the
    same bytes: the same key, digest, array and settings source), named as a bundled dataset image."""
    file = scene_.image[len("dataset:"):]
    entry = decode_upload(file, image_bytes(scene_))
    return replace(entry, name=f"{entry.name} (bundled dataset)")


SAMPLE_LABEL = "Sample"
"""How the sidebar's list labels a bundled dataset file the Demo opened (it is no upload of the user's)."""


def ensure_image(scene_: Scene) -> str:
    """The sidebar's key of the scene's image, putting a dataset image in the session's image list
    first (``state.add_image``, as if its file had been uploaded) when it is not there yet."""
    if scene_.image.startswith("sample:"):
        return scene_.image
    data = image_bytes(scene_)
    key = layout_key(scene_, digest_of(data))
    return key if key is not None else state.add_image(dataset_upload(scene_), label=SAMPLE_LABEL)


def open_step(scene_: Scene, image_key: str | None = None) -> None:
    """Callback of the Demo's "Open in Patch layout", for every step: the step's image (or ``image_key``,
    the sidebar's image the step ran on) in the sidebar's list and selected, and the step's settings on
    the Patch layout page (``open_on_layout``)."""
    open_on_layout(scene_, image_key if image_key is not None else ensure_image(scene_))


_SETTING_WORDS = {"strategy": "strategy", "importance": "importance", "scales": "multiscale search",
                  "sizes": "patch sizes", "use_budget": "budget mode", "budget_fraction": "budget", "vit": "ViT preset",
                  "thresholds": "threshold", "selector_k": "tokens kept (top-k)", "greedy_allocation": "allocation",
                  "saliency_method": "saliency"}


def _setting_text(name: str, value: Any) -> str:
    if name == "sizes":
        return f"{value[0]}-{value[1]} px"
    if name == "budget_fraction":
        return f"{float(value):.0%} of the 16 px grid"
    if name == "use_budget":
        return "on" if value else "off"
    if name == "scales":
        return search_word(int(value))
    return str(value)


def step_settings(scene_: Scene) -> dict[str, Any]:
    """The Patch layout page's settings a step puts in place (``open_on_layout``)."""
    out: dict[str, Any] = {"strategy": scene_.strategy}
    if scene_.strategy == "quadtree":
        out["importance"] = scene_.importance
    if scene_.strategy == "multiscale":
        out["scales"] = int(scene_.scales)
    out.update(sizes=tuple(scene_.sizes), use_budget=True, budget_fraction=float(scene_.fraction), vit=VIT)
    return out


def changes_text(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """The settings that ``after`` changes, in words ("strategy: quadtree (was multiscale)"), or None."""
    parts = []
    for name, value in after.items():
        old = before.get(name)
        if isinstance(value, dict):  # per-kind values (thresholds): only the kinds that change, each by name
            parts += [f"{_SETTING_WORDS.get(name, name)} ({k}) {v:.6g}" + ("" if (old or {}).get(k) is None
                                                                          else f" (was {(old or {})[k]:.6g})")
                      for k, v in value.items() if (old or {}).get(k) != v]
            continue
        if old is None or (tuple(old) if isinstance(old, (list, tuple)) else old) != value:
            was = "" if old is None else f" (was {_setting_text(name, old)})"
            parts.append(f"{_SETTING_WORDS.get(name, name)} {_setting_text(name, value)}{was}")
    return "; ".join(parts) or None


def open_on_layout(scene_: Scene, image_key: str) -> None:
    """Callback: the Patch layout page's settings of this step, and its image as the current image. What
    this changes in the user's settings is said on the page that opens (``state.notify``)."""
    apply_on_layout(step_settings(scene_), f"the Demo's step \"{scene_.label}\"", image_key)


def apply_on_layout(after: dict[str, Any], what: str, image_key: str) -> str:
    """Put the Patch layout page's settings ``after`` in place and make ``image_key`` the current image:
    the one path every "Open in Patch layout" takes (the Demo's steps, the Tune page's configurations).
    The page that opens says what changed (``state.notify``); returns that line."""
    before = {name: state.get(name) for name in after}
    for name, value in after.items():
        state.put(name, value)
    changed = changes_text(before, after)
    text = f"Opened {what}: " + (f"your settings changed: {changed}." if changed
                                 else "your settings already matched it.")
    state.notify(text, page="Patch layout")
    state.set_current(image_key)
    st.session_state.pop("w_image", None)  # the sidebar re-seeds its image box from the current image
    return text


def export_name(index: int, scene_: Scene) -> str:
    return f"adapatch_demo_{index + 1}_{scene_.key}_settings.json"


def settings_from_json(text: str) -> dict:
    """Settings read back from an exported step (``layout_from_settings`` takes them as they are)."""
    return json.loads(text)
