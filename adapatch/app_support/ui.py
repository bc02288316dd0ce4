"""Small pieces of UI shared by the pages: error boundary, metric rows, charts, legend, export.

Numbers shown come from ``adapatch`` (``efficiency``, ``fidelity``, layout counts); this module only
formats them. User-provided strings are shown escaped (``md_escape``), never as HTML.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.errors import ImageError
from adapatch.export import settings_json, settings_snippet
from adapatch.fidelity import MAX_PSNR

from . import compute
from .images import ImageEntry, md_escape

log = logging.getLogger("adapatch.app")

PLOT_CONFIG = compute.PLOT_CONFIG


@contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Page boundary: a bad image or setting becomes one ``st.error`` line, never a traceback."""
    try:
        yield
    except (ImageError, ValueError) as e:
        msg = " ".join(str(e).split())[:300]
        if not msg:  # no text to show: say so in words; the kind of failure goes to the log
            log.warning("%s without a message%s", type(e).__name__, f" ({what})" if what else "")
            msg = "these settings cannot be used on this image"
        st.error(md_escape(f"{what}: {msg}" if what else msg), icon=":material/error:")
    except Exception as e:  # noqa: BLE001 - last line of defence; details go to the server log
        from streamlit.errors import FragmentHandledException
        if isinstance(e, FragmentHandledException):
            raise
        log.exception("unexpected error in the app%s", f" ({what})" if what else "")
        st.error(md_escape(f"{what + ': ' if what else ''}something went wrong inside the app (the details are in "
                           "the server log); try other settings or another image"), icon=":material/error:")


def page_header(title: str, caption: str, entry: ImageEntry | None = None) -> None:
    st.title(title)
    line = caption
    if entry is not None:
        line += f"  \nImage: **{md_escape(entry.name)}** · {md_escape(entry.describe())}"
    st.caption(line)


def fmt_int(n: float) -> str:
    return f"{int(n):,}"


MACS_HELP = "MACs: multiply-accumulates, what ViT papers report as FLOPs."
"""The one sentence stating the convention (a help tooltip where MACs are shown)."""
MACS_RATIO = "MACs ratio vs uniform 16 px"
"""The label of a layout's MACs over the 16 px grid's (``flops_ratio_vs_uniform16``)."""


def fmt_gmacs(macs: float, digits: int = 2) -> str:
    """``4.74e10`` -> "47.40 GMACs" (multiply-accumulates, what ViT papers call FLOPs)."""
    return f"{macs / 1e9:.{digits}f} GMACs"


def _rounded(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` decimals, with -0.0 made 0.0 (no "-0.0" ever)."""
    r = round(float(value), digits)
    return 0.0 if r == 0 else r


def fmt_psnr(psnr: float) -> str:
    """PSNR in dB with 2 decimals, or "lossless" for the cap (``MAX_PSNR`` is not a measurement)."""
    return "lossless" if psnr >= MAX_PSNR else f"{psnr:.2f}"


def fmt_pct(fraction: float, digits: int = 1) -> str:
    """``0.3612`` -> "36.1%"; rounded first, so a tiny negative fraction reads "0.0%", never "-0.0%"."""
    return f"{_rounded(100 * fraction, digits):.{digits}f}%"


def fmt_delta_pct(fraction: float, digits: int = 1) -> str | None:
    """A metric delta in percent with its sign ("+12.5%", "-3.0%"), rounded first; ``None`` (no delta
    shown) when it rounds to zero, so a delta never reads "-0.0%" or "+0.0%"."""
    r = _rounded(100 * fraction, digits)
    return None if r == 0 else f"{r:+.{digits}f}%"


def efficiency_metrics(eff: dict, layout: ap.PatchLayout, fid: dict | None = None, container=None,
                       show_fidelity: bool = True, against_finest: bool = False):
    """The row of numbers every layout view shows (tokens, baselines, reduction, MACs, PSNR/SSIM).

    ``against_finest``: compare with the fixed grid of the layout's finest patch instead of the
    16 px grid (model-frame views, whose full grid is the model's own patch grid).
    """
    c = container or st
    cols = c.columns(7 if show_fidelity else 5)
    if against_finest:
        ref = f"uniform {eff['min_size']} px"
        red, ref_tokens = eff["token_reduction_vs_uniform_min"], eff["uniform_min_tokens"]
        ratio, ref_flops = eff["flops_ratio_vs_uniform_min"], eff["uniform_min_flops"]
    else:
        ref = "uniform 16 px"
        red, ref_tokens = eff["token_reduction_vs_uniform16"], eff["uniform16_tokens"]
        ratio, ref_flops = eff["flops_ratio_vs_uniform16"], eff["uniform16_flops"]
    cols[0].metric("Tokens", fmt_int(eff["tokens"]), delta=fmt_delta_pct(-red), delta_color="inverse",
                   help=f"Tokens of this layout (what the ViT processes); the change is against {ref}.")
    cols[1].metric(ref.capitalize(), fmt_int(ref_tokens),
                   help="Tokens of the model's full patch grid." if against_finest else "Tokens of the standard ViT grid.")
    if eff["min_size"] != 16 and not against_finest:
        cols[2].metric(f"Uniform {eff['min_size']} px", fmt_int(eff["uniform_min_tokens"]),
                       delta=fmt_delta_pct(-eff["token_reduction_vs_uniform_min"]), delta_color="inverse",
                       help="Tokens of a fixed grid at this layout's finest patch size (the same finest detail); "
                            "the change is this layout's tokens against it.")
    else:
        cols[2].metric("Dropped", fmt_int(len(layout.dropped)),
                       help="Boxes of the layout that get no token (pruned, or left over by a budget).")
    cols[3].metric("Reduction", fmt_pct(red), help=f"1 - tokens / {ref} tokens.")
    cols[4].metric(f"MACs ratio {eff['vit']}", f"×{ratio:.3f}",
                   delta=fmt_gmacs(eff["flops"], 1), delta_color="off", delta_arrow="off",
                   help=f"{eff['vit']} MACs of this layout relative to the {ref} grid: {fmt_gmacs(eff['flops'])} vs "
                        f"{fmt_gmacs(ref_flops)}. {MACS_HELP}")
    if show_fidelity:
        slots = (cols[5].empty(), cols[6].empty())
        fidelity_metrics(slots, fid)
        return slots
    return None


def fidelity_metrics(slots, fid: dict | None) -> None:
    """Fill the PSNR/SSIM slots of ``efficiency_metrics`` (``fid=None``: still computing)."""
    if fid is None:
        slots[0].metric("PSNR dB", "…", help="computing")
        slots[1].metric("SSIM", "…", help="computing")
        return
    slots[0].metric("PSNR dB", f"{fid['psnr']:.2f}", help="Reconstruction vs original (what the model sees).")
    slots[1].metric("SSIM", f"{fid['ssim']:.4f}", help="Structural similarity of the reconstruction (luminance).")


def size_legend(layout: ap.PatchLayout, key: str | None = None, height: int = 190) -> None:
    """Legend of the overlay colours: a bar per patch size, coloured as drawn, with token counts."""
    counts = layout.counts_per_size()
    if not counts:
        st.caption("no tokens")
        return
    colors = render.size_colors(counts)
    labels = [f"{s} px" for s in counts]
    fig = go.Figure(go.Bar(
        x=list(counts.values()), y=labels, orientation="h", text=[fmt_int(v) for v in counts.values()],
        textposition="auto", marker_color=[f"rgb{colors[s]}" for s in counts],
        marker_line_color="rgba(0,0,0,0.4)", marker_line_width=1, hovertemplate="%{y}: %{x} tokens<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="Tokens per patch size", font_size=13),
                      xaxis_title=None, yaxis=dict(autorange="reversed"), showlegend=False)
    st.plotly_chart(fig, config=PLOT_CONFIG, key=key)


def curve_figure(curve: ap.ThresholdCurve, threshold: float, tokens: int, budget: int | None) -> go.Figure:
    """Tokens vs threshold (exact step curve from the library), current point, budget line."""
    xs, ys = curve.as_xy(max_points=300)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv", name="tokens",
                             hovertemplate="threshold %{x:.3f}: %{y} tokens<extra></extra>"))
    fig.add_trace(go.Scatter(x=[threshold], y=[tokens], mode="markers", name="current",
                             marker=dict(size=12, color="#ff4b4b", line=dict(width=2, color="white")),
                             hovertemplate="current: %{y} tokens<extra></extra>"))
    if budget is not None:
        fig.add_hline(y=budget, line_dash="dash", line_color="#ffa421",
                      annotation_text=f"budget {budget}", annotation_position="top right")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      title=dict(text="Tokens vs threshold", font_size=13),
                      xaxis_title="threshold", yaxis_title="tokens", xaxis_range=[0, 1])
    return fig


def quality_figure(curves, tokens: int, psnr: float | None) -> go.Figure:
    """PSNR vs tokens of each curve (``adapatch.quality.QualityCurve``), the current layout marked."""
    fig = go.Figure()
    for c, color in zip(curves, ("#4b8bff", "#ffa421")):
        fig.add_trace(go.Scatter(x=c.tokens, y=c.psnr, mode="lines" if len(c.tokens) > 40 else "lines+markers",
                                 name=c.label, line=dict(color=color),
                                 hovertemplate=c.label + ": %{x} tokens, %{y:.2f} dB<extra></extra>"))
    if psnr is not None:
        fig.add_trace(go.Scatter(x=[tokens], y=[psnr], mode="markers", name="current",
                                 marker=dict(size=12, color="#ff4b4b", line=dict(width=2, color="white")),
                                 hovertemplate="current: %{x} tokens, %{y:.2f} dB<extra></extra>"))
    finite = np.concatenate([c.psnr[c.psnr < 100.0] for c in curves] + [np.zeros(0)])
    yrange = [float(finite.min()) - 1, float(finite.max()) + 3] if finite.size else None  # lossless: off scale
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      title=dict(text="PSNR vs tokens, against the original (equal tokens)", font_size=13),
                      xaxis_title="tokens", yaxis_title="PSNR (dB)", yaxis_range=yrange)
    return fig


def histogram_figure(counts: np.ndarray, edges: np.ndarray, title: str) -> go.Figure:
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color="#4b8bff",
                           hovertemplate="%{x:.2f}: %{y} px<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title=dict(text=title, font_size=13),
                      xaxis_title="saliency", yaxis_title="pixels", bargap=0)
    return fig


def colorbar_png(colormap: str, labels: tuple[str, ...] = ("0", "1"), width: int = 512) -> bytes:
    """The PNG of ``render.colorbar`` (cached: a handful of colour maps and label sets)."""
    return _colorbar_png(colormap, tuple(str(t) for t in labels), int(width))


@st.cache_data(max_entries=32, show_spinner=False)
def _colorbar_png(colormap: str, labels: tuple[str, ...], width: int) -> bytes:
    return render.to_png_bytes(render.colorbar(colormap, width, 14, labels))


def colorbar(colormap: str, caption: str, labels: tuple[str, ...] = ("0", "1"), container=None) -> None:
    """A colour bar under a heatmap drawn with ``colormap``: the map's colours from 0 to 1, labelled,
    with ``caption`` saying what the values are."""
    (container or st).image(colorbar_png(colormap, labels), output_format="PNG", width="stretch",
                            caption=f"Colour bar ({colormap}): {caption}")


def _env_words(env: dict) -> str:
    """A measurement's recorded environment in words: "an x86_64 CPU, 2 threads, torch 2.13.0+cpu"."""
    gpu = env.get("cuda") or env.get("gpu")
    where = f"a {gpu} GPU" if gpu else f"an {env['machine']} CPU" if env.get("machine") else "a CPU"
    parts = [where]
    if env.get("threads"):
        parts.append(f"{env['threads']} threads")
    if env.get("torch"):
        parts.append(f"torch {env['torch']}")
    if env.get("python"):
        parts.append(f"Python {env['python']}")
    return ", ".join(parts)


@functools.lru_cache(maxsize=8)
def measurement_note(file: str, command: str | None = None) -> str:
    """Where and when a bundled measurement (``adapatch/assets/model/<file>``) was made, in words,
    from the JSON's own metadata (``environment``, ``command``, a date if the file records one);
    ``command`` names the command when the file does not. Never "this machine": it was not."""
    import json

    from adapatch.samples import ASSETS_DIR

    meta = json.loads((ASSETS_DIR / "model" / file).read_text())
    meta = meta if isinstance(meta, dict) else {}
    cmd = meta.get("command") or command
    env = meta.get("environment")
    env = json.loads(env) if isinstance(env, str) else env
    date = next((meta[k] for k in ("date", "measured_at", "timestamp", "created") if meta.get(k)), None)
    text = f"bundled measurement from `adapatch/assets/model/{file}`"
    if cmd:
        text += f", made with `{cmd}`"
    redo = (meta.get("eval_only") or {}).get("command") if meta.get("rows_source") == "eval-only" else None
    if redo:
        text += f" (rows re-evaluated with `{redo}`)"
    if isinstance(env, dict) and env:
        text += f" on {_env_words(env)}"
    text += f", {date}" if date else "; the file records no date"
    return text + " (not a live measurement on the machine running this app)"


def _full_overlay(image: np.ndarray, layout: ap.PatchLayout, kind: str) -> bytes:
    """Full-resolution overlay, drawn only when the download button is clicked."""
    if kind == "tokens":
        return render.to_png_bytes(render.token_map(image, layout, max_side=None))
    return render.to_png_bytes(render.layout_overlay(image, layout, max_side=None))


def fewer_phrase(reduction: float) -> str:
    """``0.36`` -> "36% fewer", ``-0.2`` -> "20% more"; rounded first, then the word ("0% fewer")."""
    r = _rounded(100 * reduction, 0)
    return f"{abs(r):.0f}% {'fewer' if r >= 0 else 'more'}"


def speedup_phrase(speedup: float) -> str:
    """``1.8`` -> "×1.80 faster", ``0.5`` -> "×2.00 slower" (theoretical, from MACs)."""
    if speedup >= 1:
        return f"×{speedup:.2f} faster"
    return f"×{1 / speedup:.2f} slower" if speedup > 0 else "no estimate"


def safe_filename(stem: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:40].strip("_")
    return keep or "image"


def export_section(entry: ImageEntry, settings: dict[str, Any], layout: ap.PatchLayout, kind: str = "layout",
                   key: str = "export") -> None:
    """Downloads: full-size overlay PNG, layout JSON, settings JSON, and the Python snippet.

    Model-based results are drawn on (and describe) the image resized to the model's input.
    """
    full = compute.full_settings(entry, settings)
    image = compute.frame(entry, settings)
    stem = safe_filename(entry.source.replace("sample:", "").rsplit(".", 1)[0]) + f"_{layout.strategy}"
    with st.expander("Export: overlay, layout, settings, Python", icon=":material/download:"):
        c1, c2, c3 = st.columns(3)
        c1.download_button("Overlay PNG (full size)", data=lambda: _full_overlay(image, layout, kind),
                           file_name=f"{stem}_overlay.png", mime="image/png", on_click="ignore",
                           key=f"{key}_png", icon=":material/image:")
        c2.download_button("Layout JSON", data=lambda: layout.to_json(), file_name=f"{stem}_layout.json",
                           mime="application/json", on_click="ignore", key=f"{key}_layout",
                           icon=":material/data_object:")
        c3.download_button("Settings JSON", data=settings_json(full), file_name=f"{stem}_settings.json",
                           mime="application/json", on_click="ignore", key=f"{key}_settings",
                           icon=":material/tune:")
        if image is not entry.array:
            st.caption(f"Model-based result: the layout is in the model's {image.shape[1]}x{image.shape[0]} input "
                       "frame (the image resized by `resize_for_model`); the snippet does the same, on the CPU.")
        st.caption("Reproduce this result with adapatch (the settings JSON says the same):")
        st.code(settings_snippet(full), language="python")
