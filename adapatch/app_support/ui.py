"""Small pieces of UI shared by the pages: error boundary, metric rows, charts, legend, export.

Numbers shown come from ``adapatch`` (``efficiency``, ``fidelity``, layout counts); this module only
formats them. User-provided strings are shown escaped (``md_escape``), never as HTML.
"""

from __future__ import annotations

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
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        st.error(md_escape(f"{what}: {msg}" if what else msg), icon=":material/error:")
    except Exception as e:  # noqa: BLE001 - last line of defence; details go to the server log
        from streamlit.errors import FragmentHandledException
        if isinstance(e, FragmentHandledException):
            raise
        log.exception("unexpected error in the app%s", f" ({what})" if what else "")
        st.error(md_escape(f"{what + ': ' if what else ''}something went wrong ({type(e).__name__}); "
                           "try other settings or another image"), icon=":material/error:")


def page_header(title: str, caption: str, entry: ImageEntry | None = None) -> None:
    st.title(title)
    line = caption
    if entry is not None:
        line += f"  \nImage: **{md_escape(entry.name)}** · {md_escape(entry.describe())}"
    st.caption(line)


def fmt_int(n: float) -> str:
    return f"{int(n):,}"


def fmt_flops(macs: float) -> str:
    return f"{macs / 1e9:.2f} G"


def efficiency_metrics(eff: dict, layout: ap.PatchLayout, fid: dict | None = None, container=None,
                       show_fidelity: bool = True, against_finest: bool = False):
    """The row of numbers every layout view shows (tokens, baselines, reduction, FLOPs, PSNR/SSIM).

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
    cols[0].metric("Tokens", fmt_int(eff["tokens"]), delta=f"{-100 * red:+.1f}%", delta_color="inverse",
                   help=f"Tokens of this layout (what the ViT processes); the change is against {ref}.")
    cols[1].metric(ref.capitalize(), fmt_int(ref_tokens),
                   help="Tokens of the model's full patch grid." if against_finest else "Tokens of the standard ViT grid.")
    if eff["min_size"] != 16 and not against_finest:
        cols[2].metric(f"Uniform {eff['min_size']} px", fmt_int(eff["uniform_min_tokens"]),
                       delta=f"{-100 * eff['token_reduction_vs_uniform_min']:+.1f}%", delta_color="inverse",
                       help="Tokens of a fixed grid at this layout's finest patch size (the same finest detail); "
                            "the change is this layout's tokens against it.")
    else:
        cols[2].metric("Dropped", fmt_int(len(layout.dropped)),
                       help="Boxes of the layout that get no token (pruned, or left over by a budget).")
    cols[3].metric("Reduction", f"{100 * red:.1f}%", help=f"1 - tokens / {ref} tokens.")
    cols[4].metric(f"FLOPs {eff['vit']}", f"×{ratio:.3f}",
                   delta=f"{eff['flops'] / 1e9:.1f} G", delta_color="off", delta_arrow="off",
                   help=f"FLOPs relative to the {ref} grid: {fmt_flops(eff['flops'])}MAC vs "
                        f"{fmt_flops(ref_flops)}MAC (ViT papers' convention: multiply-accumulates).")
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


def _full_overlay(image: np.ndarray, layout: ap.PatchLayout, kind: str) -> bytes:
    """Full-resolution overlay, drawn only when the download button is clicked."""
    if kind == "tokens":
        return render.to_png_bytes(render.token_map(image, layout, max_side=None))
    return render.to_png_bytes(render.layout_overlay(image, layout, max_side=None))


def fewer_phrase(reduction: float) -> str:
    """``0.36`` -> "36% fewer", ``-0.2`` -> "20% more"."""
    return f"{abs(100 * reduction):.0f}% {'fewer' if reduction >= 0 else 'more'}"


def speedup_phrase(speedup: float) -> str:
    """``1.8`` -> "×1.80 faster", ``0.5`` -> "×2.00 slower" (theoretical, from FLOPs)."""
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
