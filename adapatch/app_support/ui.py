"""Small pieces of UI shared by the pages: error boundary, metric rows, charts, legend, export.

Numbers shown come from ``adapatch`` (``efficiency``, ``fidelity``, layout counts); this module only
formats them. User-provided strings are shown escaped (``md_escape``), never as HTML.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.errors import ImageError
from adapatch.export import settings_json, settings_snippet
from adapatch.fidelity import MAX_PSNR
from adapatch.messages import one_line

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
        msg = one_line(e)
        if not msg:  # no text to show: say so in words; the kind of failure goes to the log
            log.warning("%s without a message%s", type(e).__name__, f" ({what})" if what else "")
            msg = "these settings cannot be used on this image"
        st.error(md_escape(f"{what}: {msg}" if what else msg), icon=":material/error:")
    except Exception as e:
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
    from . import state
    notice = state.take_notice(title)  # what another page changed on the way here (e.g. the Demo's settings)
    if notice:
        st.info(notice, icon=":material/tune:")
        st.toast(notice, icon=":material/tune:")


def count_text(n: float, noun: str = "token") -> str:
    """A count and its noun, in the singular only for exactly one: "1 token", "0 tokens",
    "1,234 tokens" (thousands separated)."""
    return f"{fmt_int(n)} {noun}" + ("" if int(n) == 1 else "s")


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


RATIO_FROM = 10.0
"""From this many times the reference on, a change against it reads as a ratio ("×16.0"), not as a
percentage ("+1500.0%"): a shown percentage change stays within three digits (at most "+900.0%"). A
fewer-tokens change never needs it (at most -100%)."""


def _ratio(value: float) -> str:
    """``16`` -> "×16.0" (one decimal, like every ratio from ``RATIO_FROM`` on)."""
    return f"×{float(value):.1f}"


def fmt_delta_pct(fraction: float, digits: int = 1) -> str | None:
    """A metric delta (``value / reference - 1``) in percent with its sign ("+12.5%", "-3.0%"), rounded
    first; ``None`` (no delta shown) when it rounds to zero, so a delta never reads "-0.0%" or "+0.0%".
    From ``RATIO_FROM`` times the reference on, the ratio instead: ``15.0`` -> "×16.0", not "+1500.0%"."""
    if 1 + fraction >= RATIO_FROM:
        return _ratio(1 + fraction)
    r = _rounded(100 * fraction, digits)
    return None if r == 0 else f"{r:+.{digits}f}%"


def fmt_reduction(reduction: float, digits: int = 1) -> str:
    """A token reduction (``1 - tokens / reference tokens``) as the app shows it: "36.1%", "-250.0%"
    (more tokens than the reference; never "-0.0%"), and from ``RATIO_FROM`` times the reference's
    tokens on the ratio: ``-15.0`` -> "×16.0 the tokens", not "-1500.0%"."""
    if 1 - reduction >= RATIO_FROM:
        return f"{_ratio(1 - reduction)} the tokens"
    return fmt_pct(reduction, digits)


def efficiency_metrics(eff: Mapping[str, Any], layout: ap.PatchLayout, fid: dict | None = None, container=None,
                       show_fidelity: bool = True, against_finest: bool = False,
                       macs: tuple[str, str, str, str] | None = None):
    """The row of numbers every layout view shows (tokens, baselines, reduction, MACs, PSNR/SSIM).

    ``against_finest``: compare with the fixed grid of the layout's finest patch instead of the
    16 px grid (model-frame views, whose full grid is the model's own patch grid). ``macs``:
    ``(label, value, delta, help)`` shown in place of the preset's MACs ratio (a model's own MACs,
    so that a screen shows one MACs ratio).
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
                   help=("Tokens of the model's full patch grid." if against_finest
                         else "Tokens of the standard ViT grid."))
    if eff["min_size"] != 16 and not against_finest:
        cols[2].metric(f"Uniform {eff['min_size']} px", fmt_int(eff["uniform_min_tokens"]),
                       delta=fmt_delta_pct(-eff["token_reduction_vs_uniform_min"]), delta_color="inverse",
                       help="Tokens of a fixed grid at this layout's finest patch size (the same finest detail); "
                            "the change is this layout's tokens against it.")
    else:
        cols[2].metric("Dropped", fmt_int(len(layout.dropped)),
                       help="Boxes of the layout that get no token (pruned, or left over by a budget).")
    cols[3].metric("Reduction", fmt_reduction(red),
                   help=f"1 - tokens / {ref} tokens (from {RATIO_FROM:.0f}x its tokens on: the ratio).")
    if macs is not None:
        cols[4].metric(macs[0], macs[1], delta=macs[2], delta_color="off", delta_arrow="off", help=macs[3])
    else:
        cols[4].metric(f"MACs ratio {eff['vit']}", f"×{ratio:.3f}",
                       delta=fmt_gmacs(eff["flops"], 1), delta_color="off", delta_arrow="off",
                       help=f"{eff['vit']} MACs of this layout relative to the {ref} grid: "
                            f"{fmt_gmacs(eff['flops'])} vs {fmt_gmacs(ref_flops)}. {MACS_HELP}")
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
    slots[0].metric("PSNR dB", fmt_psnr(fid["psnr"]),
                    help="Reconstruction vs original (what the model sees); lossless: an exact copy.")
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
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      title=dict(text="Tokens per patch size", font_size=13), xaxis_title=None,
                      yaxis=dict(autorange="reversed"), showlegend=False)
    st.plotly_chart(fig, config=PLOT_CONFIG, key=key)


SIZE_SCALE_TEXT = "Colour = patch side in pixels of the image the layout was computed on, the same on every page"
"""The first words under every overlay's colour scale (``size_scale_html``)."""


def size_scale_html(sizes=(), enlarged: int = 1, note: str | None = None) -> str:
    """The overlays' colour scale as HTML: a gradient through ``render.size_scale_stops`` with ticks at
    the powers of two in pixels (of the layout's frame), a ▼ over each of ``sizes`` (those in the
    pictures shown), and one line of text; ``enlarged`` > 1 adds that the pictures are drawn that
    many times larger for display (their colours stay those of the true sizes), ``note`` replaces it.
    HTML, not an image: crisp text at any zoom, in the theme's text colour."""
    pos = lambda v: f"{100 * render.size_scale_position(v):.2f}%"  # noqa: E731
    stops = ", ".join(f"rgb{c} {100 * p:.2f}%" for p, c in render.size_scale_stops())
    lo, hi = render.SIZE_SCALE_MIN, render.SIZE_SCALE_MAX
    ticks, v = [], lo
    while v <= hi:
        shift = "0" if v == lo else "-100%" if v == hi else "-50%"
        ticks.append(f'<span style="position:absolute;left:{pos(v)};transform:translateX({shift});white-space:nowrap">'
                     f'{v}{" px" if v == hi else ""}</span>')
        v *= 2
    marks, last = [], -1.0
    for size in sorted({int(x) for x in sizes}):
        at = render.size_scale_position(size)
        label = f"{size}" if at - last >= 0.045 else ""  # a label only where it clears the previous one
        last = at if label else last
        marks.append(f'<span title="{size} px" style="position:absolute;left:{pos(size)};bottom:0;'
                     f'transform:translateX(-50%);text-align:center;line-height:1.1">{label}<br>▼</span>')
    text = SIZE_SCALE_TEXT + ("; ▼ sizes in the pictures" if marks else "")
    if note:
        text += f"; {note}"
    elif int(enlarged) > 1:
        text += f"; pictures enlarged ×{int(enlarged)} for display (colours of the true sizes)"
    return ('<div class="ap-size-scale" style="max-width:560px;font-size:0.75rem;line-height:1.25;margin:0">'
            f'<div style="position:relative;height:{2.3 if marks else 0}em">{"".join(marks)}</div>'
            f'<div style="height:12px;border-radius:2px;background:linear-gradient(to right, {stops})"></div>'
            f'<div style="position:relative;height:1.35em">{"".join(ticks)}</div>'
            f'<div style="opacity:0.7">{text}.</div></div>')


def patch_size_scale(sizes=(), enlarged: int = 1, note: str | None = None, container=None) -> None:
    """Show ``size_scale_html`` (the legend of the layout overlays' colours) under the pictures."""
    (container or st).html(size_scale_html(sizes, enlarged, note))


def _figure(spec: dict) -> go.Figure:
    """A figure from a plain spec, without plotly's per-property validation (about 20-40 ms for the
    charts below, redrawn on every slider move); tests build each spec validated too. Margins are
    fixed (no ``automargin``: it makes the browser lay the chart out twice on every redraw)."""
    return go.Figure(spec, _validate=False)


LAMBDA_UNIT_TEXT = "error per token, levels² over 256 px"
"""The unit of ``lambda`` in words: squared error removed per added token, in 8-bit grey levels^2 of
MSE over 256 pixels (one 16 px token's area; ``adapatch.quadtree_engine.LAMBDA_UNIT``)."""


def fmt_sig(value: float, digits: int = 3) -> str:
    """``value`` (>= 0) to ``digits`` significant digits, plainly: 37.2, 0.0735, 3,040 (never an
    exponent; a number of ``10**digits`` or more shows all its integer digits)."""
    v = float(value)
    if v <= 0:
        return "0"
    e = int(np.floor(np.log10(v)))
    decimals = max(digits - 1 - e, 0)
    text = f"{round(v, decimals):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def threshold_labels(values, unbounded: bool, digits: int = 3) -> dict[float, str]:
    """A label per threshold (``"λ = 37.2"`` for ``lambda``, ``"0.0735"`` otherwise), each with the
    fewest significant digits (``digits`` or more) that tell it apart from every other: a select
    slider stores its value by label, so labels must be unique."""
    vals = [float(v) for v in values]
    d = [digits] * len(vals)
    for _ in range(16):
        texts = [fmt_sig(v, k) for v, k in zip(vals, d)]
        seen: dict[str, int] = {}
        for t in texts:
            seen[t] = seen.get(t, 0) + 1
        dup = [i for i, t in enumerate(texts) if seen[t] > 1]
        if not dup:
            break
        for i in dup:
            d[i] += 1
    else:
        texts = [repr(v) for v in vals]
    return {v: (f"λ = {t}" if unbounded else t) for v, t in zip(vals, texts)}


def fmt_threshold(value: float, unbounded: bool, digits: int = 4) -> str:
    """One threshold in running text: "λ = 37.18" or "0.07352"."""
    return f"λ = {fmt_sig(value, digits)}" if unbounded else fmt_sig(value, digits)


def threshold_curve_figure(curve, threshold: float, tokens: int, budget: int | None,
                 label: str = "current", scale=None, title: str | None = None) -> go.Figure:
    """Tokens vs threshold (exact step curve from the library), the point ``(threshold, tokens)``
    marked (``label``: "current", or in budget mode the threshold the budget implies), budget line.
    ``curve``: a quadtree's ``ThresholdCurve`` or multiscale's ``RDHull`` (with ``scale`` only: tokens
    vs lambda over the image's rate-distortion hull). ``title`` replaces the default title.

    With ``scale`` (``adapatch.threshold_scale.ThresholdScale``, what the slider moves through) the
    threshold axis is logarithmic over the scale's range (``lambda`` for ``distortion``: no [0, 1]
    clamp), the curve traced by ``threshold_scale.curve_points``; threshold 0 (the slider's first
    position, the finest layout) sits at the left end. Without it: the linear [0, 1] axis."""
    t = float(threshold)
    if scale is not None:
        from adapatch.threshold_scale import curve_points
        xs, ys = curve_points(curve, scale, max_points=300)
        lo, hi = scale.log_range
        x_mark = min(max(t, lo), hi)
        name = "λ" if scale.unbounded else "threshold"
        shown = fmt_threshold(t, scale.unbounded)
        ticks = log_ticks(lo, hi)
        xaxis = {"type": "log", "range": [float(np.log10(lo)), float(np.log10(hi))],
                 "tickvals": ticks, "ticktext": [fmt_tick(v) for v in ticks],
                 "title": {"text": (f"λ ({LAMBDA_UNIT_TEXT}), log scale" if scale.unbounded
                                    else "threshold (importance in [0, 1]), log scale")}}
        title = title or "Tokens vs threshold" + (" λ" if scale.unbounded else "") + " (the slider's range)"
        hover = f"{name} %{{x:.4g}}: %{{y}} tokens<extra></extra>"
    else:
        xs, ys = curve.as_xy(max_points=300)
        x_mark = min(max(t, 0.0), 1.0)
        shown = f"threshold {t:.4f}"
        xaxis = {"title": {"text": "threshold"}, "range": [0, 1]}
        title = title or "Tokens vs threshold"
        hover = "threshold %{x:.3f}: %{y} tokens<extra></extra>"
    data = [
        {"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"shape": "hv"}, "name": "tokens",
         "hovertemplate": hover},
        {"type": "scatter", "x": [x_mark], "y": [int(tokens)], "mode": "markers",
         "name": label, "marker": {"size": 12, "color": "#ff4b4b", "line": {"width": 2, "color": "white"}},
         "hovertemplate": f"{label}: {shown}, %{{y}} tokens<extra></extra>"},
    ]
    layout: dict[str, Any] = {
        "height": 300, "margin": {"l": 55, "r": 10, "t": 30, "b": 40}, "showlegend": False,
        "title": {"text": title, "font": {"size": 13}},
        "xaxis": xaxis, "yaxis": {"title": {"text": "tokens"}}}
    if budget is not None:
        layout["shapes"] = [{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": budget,
                             "y1": budget, "line": {"dash": "dash", "color": "#ffa421"}}]
        layout["annotations"] = [{"text": f"budget {budget}", "xref": "x domain", "x": 1, "yref": "y", "y": budget,
                                  "xanchor": "right", "yanchor": "bottom", "showarrow": False}]
    return _figure({"data": data, "layout": layout})


DENSE_POINTS = 150
"""At most this many points of a curve are drawn (the quadtree's has one per budget: ~1,300 at 1 MP)."""


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of ``n`` points, at most ``most`` of them evenly spread, both ends kept."""
    return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).round().astype(int))


QUALITY_COLORS = ("#4b8bff", "#21c354", "#a35cff", "#ff6cb5", "#00b3b3")
"""Colours of the adaptive curves of ``quality_figure`` in order (the uniform grid is always orange)."""
UNIFORM_COLOR = "#ffa421"
PSNR_AXIS_TOP = 50.0
"""The PSNR axis of ``quality_figure`` ends here (a few dB above the highest marked layout when that is
higher): above it a reconstruction is visually exact, and the last splits of a quadtree run to 60-90 dB
before the lossless end, which would squeeze the 20-40 dB where layouts differ into a thin band."""
_PANELS: tuple[dict[str, Any], dict[str, Any]] = ({"x": "x", "y": "y", "domain": [0.0, 0.43]},
                                                  {"x": "x2", "y": "y2", "domain": [0.57, 1.0]})


def quality_figure(curves, tokens: int | None = None, psnr: float | None = None, ssim: float | None = None, *,
                   marks=(), budget: int | None = None, height: int = 330) -> go.Figure:
    """Quality vs tokens of each curve (``adapatch.quality.QualityCurve``), against the original: PSNR
    (left, every point of the curve) and SSIM (right, at the curve's ``ssim_tokens``), side by side.

    ``tokens, psnr, ssim``: the current layout, marked in both panels. ``marks``: further layouts as
    ``(label, tokens, psnr, ssim, curve_index | None)`` (coloured as that curve), e.g. Compare's
    layouts at its budget. ``budget``: a dashed vertical line in both panels. Capped (lossless)
    PSNR values stay off the PSNR axis's range, and so do values above ``PSNR_AXIS_TOP`` (or above the
    highest mark + 3 dB), with a note saying so. A mark at the same point as an earlier one
    or close enough to hide it (``coincident_marks``, ``mark_tolerance``) is drawn as a larger open ring
    around it, so both stay visible.
    """
    left, right = _PANELS
    colors, k = [], 0
    for c in curves:
        colors.append(UNIFORM_COLOR if c.label == "uniform" else QUALITY_COLORS[k % len(QUALITY_COLORS)])
        k += c.label != "uniform"
    data: list[dict] = []
    psnr_seen, ssim_seen = [np.zeros(0)], [np.ones(1)]
    for c, color in zip(curves, colors):
        keep = _thin(len(c.tokens), DENSE_POINTS)  # every point drawn is exact; a dense curve is thinned
        ys = np.asarray(c.psnr, float)[keep]
        data.append({"type": "scatter", "x": np.asarray(c.tokens)[keep], "y": ys,
                     "mode": "lines" if len(c.tokens) > 40 else "lines+markers", "name": c.label,
                     "legendgroup": c.label, "line": {"color": color}, "marker": {"size": 5},
                     "xaxis": left["x"], "yaxis": left["y"], "text": [fmt_db(v) for v in ys],
                     "hovertemplate": c.label + ": %{x} tokens, %{text}<extra></extra>"})
        psnr_seen.append(np.asarray(c.psnr, float))
        if len(c.ssim):
            data.append({"type": "scatter", "x": np.asarray(c.ssim_tokens), "y": np.asarray(c.ssim, float),
                         "mode": "lines+markers", "name": c.label, "legendgroup": c.label, "showlegend": False,
                         "line": {"color": color}, "marker": {"size": 6}, "xaxis": right["x"], "yaxis": right["y"],
                         "hovertemplate": c.label + ": %{x} tokens, SSIM %{y:.4f}<extra></extra>"})
            ssim_seen.append(np.asarray(c.ssim, float))
    points = [("current", tokens, psnr, ssim, None)] if tokens is not None and psnr is not None else []
    rings = [b for b, _ in coincident_marks(points + list(marks), *mark_tolerance(curves, points + list(marks)))]
    for i, (label, n, p, q, ci) in enumerate(points + list(marks)):
        marker: dict[str, Any] = {"size": 12, "color": "#ff4b4b" if ci is None else colors[ci],
                  "symbol": "circle" if label == "current" else "diamond", "line": {"width": 2, "color": "white"}}
        if label in rings:  # on an earlier mark's point: a ring around it, both visible
            size = 20 + 8 * rings.index(label)  # rings on one point: each larger than the last
            marker = {**marker, "size": size, "symbol": marker["symbol"] + "-open", "line": {"width": 3}}
        data.append({"type": "scatter", "x": [int(n)], "y": [float(p)], "mode": "markers", "name": label,
                     "legendgroup": f"mark{i}", "marker": marker, "xaxis": left["x"], "yaxis": left["y"],
                     "hovertemplate": f"{label}: %{{x}} tokens, {fmt_db(p)}<extra></extra>"})
        psnr_seen.append(np.array([p], float))
        if q is not None:
            data.append({"type": "scatter", "x": [int(n)], "y": [float(q)], "mode": "markers", "name": label,
                         "legendgroup": f"mark{i}", "showlegend": False, "marker": marker,
                         "xaxis": right["x"], "yaxis": right["y"],
                         "hovertemplate": f"{label}: %{{x}} tokens, SSIM %{{y:.4f}}<extra></extra>"})
            ssim_seen.append(np.array([q], float))
    finite = np.concatenate(psnr_seen)
    finite = finite[finite < MAX_PSNR]  # lossless points (MAX_PSNR) stay off scale
    lossless = np.concatenate(psnr_seen).size > finite.size
    marked = [float(m[2]) for m in points + list(marks) if m[2] is not None and m[2] < MAX_PSNR]
    top = max([PSNR_AXIS_TOP] + [v + 3 for v in marked])
    y_range = None
    if finite.size:
        lo, hi = float(finite.min()) - 1, float(finite.max()) + 3
        y_range = [lo, min(hi, top)] if lo + 2 < top else [lo, hi]  # a range above the top: kept whole
    clipped = y_range is not None and y_range[1] < float(finite.max())
    low = float(np.concatenate(ssim_seen).min())
    layout: dict[str, Any] = {
        "height": height, "margin": {"l": 45, "r": 10, "t": 48, "b": 40},
        "legend": {"orientation": "h", "y": -0.3},
        "title": {"text": "Quality vs tokens, against the original (equal tokens)", "font": {"size": 13}, "y": 0.99},
        "xaxis": {"domain": left["domain"], "anchor": "y", "title": {"text": "tokens"}},
        "xaxis2": {"domain": right["domain"], "anchor": "y2", "title": {"text": "tokens"}},
        "yaxis": {"anchor": "x",
                  **({"range": y_range} if y_range is not None else {})},
        "yaxis2": {"anchor": "x2", "range": [max(0.0, low - 0.02), 1.005]},
        "annotations": [{"text": text, "x": sum(pan["domain"]) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                         "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}}
                        for text, pan in (("PSNR vs tokens (dB)", left), ("SSIM vs tokens (luminance)", right))],
        "shapes": [],
    }
    if clipped or lossless:  # say where the rest of the curve went
        text = (f"above {y_range[1]:.0f} dB off scale (up to lossless)" if clipped and y_range is not None
                else "lossless points off scale")
        layout["annotations"].append({"text": text, "x": left["domain"][1],
                                      "xref": "paper", "y": 1.0, "yref": "y domain", "xanchor": "right",
                                      "yanchor": "top", "showarrow": False, "font": {"size": 10, "color": "#888"}})
    if budget is not None:
        for pan in (left, right):
            layout["shapes"].append({"type": "line", "xref": pan["x"], "x0": budget, "x1": budget,
                                     "yref": f"{pan['y']} domain", "y0": 0, "y1": 1,
                                     "line": {"dash": "dash", "color": "#888"}})
        layout["annotations"].append({"text": f"budget {budget:,}", "x": budget, "xref": "x", "y": 1.0,
                                      "yref": "y domain", "xanchor": "left", "yanchor": "top", "showarrow": False,
                                      "font": {"size": 11, "color": "#888"}})
    return _figure({"data": data, "layout": layout})


def fmt_db(psnr: float) -> str:
    """A PSNR in running text or a chart's hover: "31.42 dB", or "lossless" (``fmt_psnr``)."""
    text = fmt_psnr(float(psnr))
    return text if text == "lossless" else f"{text} dB"


def overlapping_series(series: dict[str, list[dict]], x: str = "tokens", y: str = "accuracy", x_rel: float = 0.03,
                       y_abs: float = 0.01) -> dict[str, str]:
    """``{later: earlier}`` for each series (name -> points ``{x: .., y: ..}``) whose every point lies
    on a point of an earlier series (``x`` within ``x_rel`` of it, ``y`` within ``y_abs``): a chart
    would draw it on top of that series and hide it (e.g. multiscale that kept the distortion quadtree).
    Draw such a series dashed with larger open markers, and say so."""
    names = list(series)
    out: dict[str, str] = {}
    for j, name in enumerate(names):
        pts = series[name]
        for prev in names[:j]:
            ref = series[prev]
            if pts and len(pts) == len(ref) and all(
                    abs(float(p[x]) - float(r[x])) <= x_rel * max(abs(float(r[x])), 1e-9)
                    and abs(float(p[y]) - float(r[y])) <= y_abs for p, r in zip(pts, ref)):
                out[name] = prev
                break
    return out


MARK_OVERLAP = 0.02
"""Two marks of ``quality_figure`` closer than this share of the chart's token span and of its PSNR
span (about a marker's size) would hide one another."""


def mark_tolerance(curves, marks) -> tuple[float, float]:
    """``(tokens, dB)`` within which two marks of ``quality_figure`` overlap on screen: ``MARK_OVERLAP``
    of the token span and of the PSNR span shown (at most ``PSNR_AXIS_TOP``; lossless off scale)."""
    xs = [float(v) for c in curves for v in np.asarray(c.tokens)] + [float(m[1]) for m in marks]
    ys = [float(v) for c in curves for v in np.asarray(c.psnr, float)] + [float(m[2]) for m in marks]
    top = max([PSNR_AXIS_TOP] + [float(m[2]) + 3 for m in marks if float(m[2]) < MAX_PSNR])
    ys = [y for y in ys if y <= top] or [0.0]
    return MARK_OVERLAP * (max(xs, default=1.0) - min(xs, default=0.0)), MARK_OVERLAP * (max(ys) - min(ys))


def coincident_marks(marks, tokens: float = 0.0, db: float = 0.005) -> list[tuple[str, str]]:
    """``(later, earlier)`` labels of marks (``(label, tokens, psnr, ...)``) on an earlier one's point:
    token counts within ``tokens`` and PSNR within ``db`` (the defaults: the same point; with
    ``mark_tolerance``: close enough to hide it on screen), e.g. multiscale that kept the quadtree, and
    that quadtree. A chart would otherwise draw one on top of the other."""
    out = []
    for j, (label, n, p, *_) in enumerate(marks):
        same = next((m[0] for m in marks[:j] if abs(float(m[1]) - float(n)) <= tokens
                     and abs(float(m[2]) - float(p)) <= db), None)
        if same is not None:
            out.append((str(label), str(same)))
    return out


def saliency_histogram_figure(counts: np.ndarray, edges: np.ndarray, title: str) -> go.Figure:
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color="#4b8bff",
                           hovertemplate="%{x:.2f}: %{y} px<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title=dict(text=title, font_size=13),
                      xaxis_title="saliency", yaxis_title="pixels", bargap=0)
    return fig


def table_height(rows: int, most: int = 20) -> int:
    """Pixel height of an ``st.dataframe`` that shows ``rows`` rows and its header without a scroll bar
    (up to ``most`` rows; longer tables scroll)."""
    return 35 * (min(int(rows), most) + 1) + 3


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values of a log axis from ``lo`` to ``hi`` (0 < lo <= hi): 1, 2 and 5 x 10^k over up to three
    decades, 1 and 3 x 10^k up to five, else only the powers of ten; one tick at or below ``lo``
    and one at or above ``hi``, so both ends are labelled."""
    if not (lo > 0 and hi >= lo):
        raise ValueError(f"log ticks need 0 < lo <= hi; got {lo}, {hi}")
    decades = np.log10(hi) - np.log10(lo)
    steps = (1, 2, 5) if decades <= 3 else (1, 3) if decades <= 5 else (1,)
    k0, k1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    ticks = [float(m * 10.0 ** k) for k in range(k0, k1 + 1) for m in steps]
    below = max([t for t in ticks if t <= lo * (1 + 1e-9)], default=ticks[0])
    above = min([t for t in ticks if t >= hi * (1 - 1e-9)], default=ticks[-1])
    out = [t for t in ticks if below <= t <= above]
    if len(out) < 2:  # one value only: a tick either side of it
        i = ticks.index(out[0])
        out = ticks[max(i - 1, 0):i + 2]
    return out


def fmt_tick(v: float) -> str:
    """A tick label: 20, 1,000, 0.5 (thousands separated, no trailing zeros)."""
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


def log_axis(values, title: str) -> dict[str, Any]:
    """A Plotly log axis for positive ``values``: labelled ticks at 1, 2, 5 x 10^k (``log_ticks``) in
    plain numbers (no "2k" or "1e3"), a grid line at each, no minor ticks, and ``title``. The range
    starts a little below the lowest tick, so a bar of the smallest value still has a height."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (1.0, 10.0)
    ticks = log_ticks(lo, hi)
    return {"type": "log", "title": {"text": title}, "tickmode": "array", "tickvals": ticks,
            "ticktext": [fmt_tick(t) for t in ticks], "minor": {"showgrid": False, "ticks": ""},
            "range": [float(np.log10(ticks[0])) - 0.12, float(np.log10(ticks[-1])) + 0.08]}  # the lowest bar shows


CHART_WIDTH_PX = 1000
"""About how wide a full-width chart's plot area is on a 1440 px wide window (the x labels are wrapped
to fit their share of it)."""
LABEL_CHAR_PX = 7.0
"""About how wide a character of a 12 px axis label is."""


def wrap_label(text: str, chars: int, lines: int = 3) -> str:
    """``text`` broken into lines of at most ``chars`` characters (``<br>`` between them) after ``_``,
    ``-``, ``.`` or a space where it can, inside a word where it cannot; at most ``lines`` lines, the
    last cut with "…". An x label that fits its group never runs into its neighbour's."""
    import re

    chars = max(int(chars), 4)
    parts = [p for p in re.split(r"(?<=[_\-. ])", str(text)) if p]
    out: list[str] = []
    line = ""
    for part in parts:
        while len(part) > chars:  # a word longer than a line: cut inside it
            if line:
                out.append(line)
                line = ""
            out.append(part[:chars])
            part = part[chars:]
        if len(line) + len(part) > chars and line:
            out.append(line)
            line = ""
        line += part
    if line:
        out.append(line)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:chars - 1] + "…"
    return "<br>".join(out)


def grouped_bars_figure(categories: list[str], series: list[tuple[str, list[float], str]], *, title: str,
                        y_title: str, log: bool = True, height: int = 400) -> go.Figure:
    """Grouped bars: one group per category (e.g. an image), one bar per series ``(name, values,
    colour)``, each bar labelled with its value. ``log``: a log y axis with labelled 1-2-5 ticks
    (``log_axis``), for values that span orders of magnitude. The category labels are wrapped to
    their group's width (``wrap_label``); the hover names each category in full."""
    data = [{"type": "bar", "x": list(categories), "y": [float(v) for v in values], "name": name,
             "marker": {"color": color}, "texttemplate": "%{y:,}", "textposition": "outside",
             "textfont": {"size": 11}, "cliponaxis": False,
             "hovertemplate": f"%{{x}} · {name}: %{{y:,}} tokens<extra></extra>"} for name, values, color in series]
    values = [float(v) for _, vals, _ in series for v in vals]
    yaxis = log_axis(values, y_title) if log else {"title": {"text": y_title}}
    chars = int(CHART_WIDTH_PX / max(len(categories), 1) / LABEL_CHAR_PX)
    ticks = [wrap_label(c, chars) for c in categories]
    lines = max((t.count("<br>") + 1 for t in ticks), default=1)
    layout: dict[str, Any] = {
        "height": height + 16 * (lines - 1), "barmode": "group", "bargap": 0.25, "bargroupgap": 0.05,
        "margin": {"l": 70, "r": 10, "t": 40, "b": 24 + 16 * lines},
        "title": {"text": title, "font": {"size": 14}, "x": 0, "xanchor": "left"},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        "uniformtext": {"minsize": 9, "mode": "hide"},
        "xaxis": {"type": "category", "tickangle": 0, "tickmode": "array", "tickvals": list(categories),
                  "ticktext": ticks},
        "yaxis": yaxis}
    return _figure({"data": data, "layout": layout})


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
    """``0.36`` -> "36% fewer", ``-0.2`` -> "20% more"; rounded first, then the word ("0% fewer"). From
    ``RATIO_FROM`` times the reference's tokens on, the ratio: ``-15.0`` -> "×16.0 as many", not "1500% more"."""
    if 1 - reduction >= RATIO_FROM:
        return f"{_ratio(1 - reduction)} as many"
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
