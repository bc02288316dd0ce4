"""Efficiency: tokens, MACs and speed-up for every loaded image at once, with a plain summary."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, model_caveats, recipes, state, ui
from adapatch.app_support.images import md_escape, sample_keys
from adapatch.report import (
    EfficiencySummary,
    efficiency_rows,
    efficiency_summary,
    mean_speedups,
)

STRATEGIES = ("multiscale", "quadtree", "greedy", "uniform 16 px")
"""The layouts compared per image: the Patch layout page's settings for each strategy (multiscale, its
default, first), and the grid."""


def _settings(name: str, entry) -> dict:
    """The settings of ``name`` for ``entry``: a budget is the Patch layout page's fraction of this
    image's 16 px grid, kept within the strategy's range on this image."""
    if name == "uniform 16 px":
        return {**recipes.layout_settings(strategy="uniform"), "params": {"patch_size": 16}}
    return recipes.layout_settings(strategy=name, entry=entry)


@st.fragment
def efficiency_view() -> None:
    with ui.guard():
        c1, c2, c3 = st.columns([1, 1, 2])
        include_samples = state.widget("eff_samples", c1.toggle, "Include the bundled samples",
                                       help="Uploaded images are always included.")
        with_fidelity = c2.toggle("Fidelity (slower)", value=True, key="w_eff_fid")
        c3.caption("Multiscale, quadtree and greedy use the settings of the Patch layout page (sizes, threshold, "
                   "importance, budget, multiscale's search). A budget is relative: the same share of each image's "
                   "16 px grid. Without a budget the quadtree and multiscale use the Patch layout λ (none set yet: "
                   "the one the budget implies on each image; multiscale: over each image's hull).")
        keys = [e.key for e in state.uploaded_entries()] + (sample_keys() if include_samples else [])
        if not keys:
            st.info("Upload images in the sidebar, or include the bundled samples.", icon=":material/info:")
            return
        items = []
        progress = st.progress(0.0, text="computing layouts…") if len(keys) > 3 else None
        entries = []
        for key in keys:
            try:
                entries.append(state.entry(key))
            except ap.ImageError:
                continue
        names = short_names(entries)
        warned = False
        uses: dict[str, dict[str, recipes.BudgetUse | None]] = {}  # strategy -> image -> how much budget it spent
        for j, entry in enumerate(entries):
            for sname in STRATEGIES:
                try:
                    settings = _settings(sname, entry)
                    if not warned:  # the digits model's attention on a photo: said once (one button)
                        warned = model_caveats.settings_caveat(settings, entry.key)
                    lay = compute.layout(entry, settings)
                except ValueError as e:  # e.g. settings the library refuses on this image: note it, keep going
                    st.caption(md_escape(f"{entry.name} · {sname}: {e}"))
                    continue
                fid = compute.fidelity(entry, settings, state.device()) if with_fidelity else None
                uses.setdefault(sname, {})[names[entry.key]] = recipes.budget_use(
                    settings, lay.num_tokens, lay.height, lay.width, lay.params, fid["psnr"] if fid else None)
                items.append((names[entry.key], sname, lay, fid))
            if progress is not None:
                progress.progress((j + 1) / len(entries), text=f"computed {j + 1} of {len(entries)} images")
        if progress is not None:
            progress.empty()
        if not items:
            st.info("No layout could be computed for these images with the current settings.", icon=":material/info:")
            return
        vits = list(ap.VIT_PRESETS)
        rows = efficiency_rows(items, vits)
        df = pd.DataFrame(rows)
        st.plotly_chart(_tokens_figure(df), config=ui.PLOT_CONFIG, key="eff_bars")
        notes = {s: n for s, n in ((s, recipes.strategy_unused_note(s, u)) for s, u in uses.items()) if n}
        for note in notes.values():  # next to the first numbers of such a strategy: the chart's bars
            st.warning(md_escape(note), icon=":material/data_usage:")
        budget_mode = any(u is not None for per in uses.values() for u in per.values())

        st.markdown("**Theoretical speed-up over the uniform 16 px grid, all images together**: ViT MACs of the "
                    "16 px grids / MACs of the layouts, ratio of totals (each image weighs by its compute, "
                    "not one vote each)")
        speedups = mean_speedups(rows, vits, exclude=["uniform 16 px"])
        if speedups:
            speed = pd.DataFrame(speedups).T[vits]
            st.dataframe(speed.style.format("×{:.2f}"), width="stretch")  # no "fastest" mark: see the caption
            st.caption(md_escape(speedup_caption(budget_mode, list(notes))))
        else:
            st.caption("No adaptive layout could be computed with the current settings (see the notes above).")
        summaries = [x for x in (efficiency_summary(rows, s, state.get("vit")) for s in dict.fromkeys(df["strategy"]))
                     if x is not None]
        st.markdown("**Per strategy, all images together**")
        summary_table = _summary_table(summaries, uses)
        st.dataframe(summary_table, width="stretch", height=ui.table_height(len(summary_table)),
                     column_config=_summary_config(summaries))
        with st.expander("Per-image numbers", icon=":material/table:"):
            vit = state.get("vit") if state.get("vit") in vits else vits[0]
            table, config = _per_image_table(df, vit)
            st.dataframe(table, width="stretch", hide_index=True, column_config=config,
                         height=ui.table_height(len(df), most=15))
            same = (" Every layout's finest patch is at least 16 px, so the 16 px grid is the finest grid to "
                    "compare with." if (df["min_size"] >= 16).all() else "")
            st.caption(f"GMACs and speed-up over the 16 px grid for {vit}, the Patch layout page's ViT preset.{same} "
                       "Hover a header for what it means."
                       + (f" Not at equal tokens (budget left unused, see the note above the speed-ups): "
                          f"{', '.join(notes)}." if notes else "") + " Every column and every ViT preset:")
            st.download_button("Per-image numbers (CSV)", data=_per_image_csv(df, vits), mime="text/csv",
                               file_name="adapatch_efficiency_per_image.csv", on_click="ignore",
                               icon=":material/download:", key="eff_csv")
        summary = next((x for x in summaries if x.strategy == "quadtree"), None)
        if summary is not None:
            budget = recipes.budget_fraction() if uses.get("quadtree") and all(
                u is not None for u in uses["quadtree"].values()) else None
            st.info(md_escape(_summary_text(summary, budget, df[df["strategy"] == "quadtree"])),
                    icon=":material/summarize:")


def short_names(entries) -> dict[str, str]:
    """A short, unique label per image key for the chart and the tables: a bundled sample's name
    ("astronaut"), an upload's file name; a repeated label gets " #2", " #3"..."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for e in entries:
        base = e.key[len("sample:"):] if e.key.startswith("sample:") else e.name
        seen[base] = seen.get(base, 0) + 1
        out[e.key] = base if seen[base] == 1 else f"{base} #{seen[base]}"
    return out


BAR_COLORS = {"multiscale": "#4b8bff", "quadtree": "#e8603c", "greedy": "#ffa421", "uniform 16 px": "#8a8d91"}
FINEST_COLOR = "#c5c8cc"


def _tokens_figure(df: pd.DataFrame):
    """Tokens per image, one bar per strategy, plus the fixed grid at the quadtree's finest patch size
    when that is not the 16 px grid already shown; a log axis with labelled 1-2-5 ticks."""
    images = list(dict.fromkeys(df["image"]))
    series = []
    for name in dict.fromkeys(df["strategy"]):
        sel = df[df["strategy"] == name].set_index("image")
        series.append((name, [sel["tokens"].get(i, float("nan")) for i in images], BAR_COLORS.get(name, "#4b8bff")))
    q = df[df["strategy"] == "quadtree"].set_index("image")
    if len(q):  # the fixed grid with the adaptive layout's finest detail, from efficiency()
        finest = f"uniform {int(q['min_size'].min())} px"
        if finest not in {n for n, _, _ in series}:
            series.append((finest, [q["uniform_min"].get(i, float("nan")) for i in images], FINEST_COLOR))
    return ui.grouped_bars_figure(images, series, y_title="tokens per image (log scale)",
                                  title="Tokens per image: fewer is cheaper")


def _per_image_columns(vits: list[str]) -> dict[str, tuple[str, str, object, str | None]]:
    """``efficiency_rows`` key -> (column name a reader understands, the short header shown, its
    format, its help). The names are the CSV's headers; the table shows the short headers, with the
    name and the help as the header's tooltip."""
    cols: dict[str, tuple[str, str, object, str | None]] = {
        "image": ("image", "Image", None, None), "strategy": ("strategy", "Strategy", None, None),
        "tokens": ("tokens", "Tokens", "{:,}", "Tokens of this layout (what the ViT processes)."),
        "pixels": ("pixels", "Pixels", "{:,}", "Height x width of the image."),
        "uniform16": ("tokens, uniform 16 px", "16 px grid", "{:,}",
                      "Tokens of the standard ViT grid of 16 px patches."),
        "reduction": ("fewer tokens than uniform 16 px", "Saved vs 16 px", ui.fmt_reduction,
                      "1 - tokens / tokens of the 16 px grid (negative: more tokens; from 10x its tokens on, "
                      "the ratio)."),
        "min_size": ("finest patch (px)", "Finest px", "{:,}", "The layout's smallest patch size."),
        "uniform_min": ("tokens, uniform finest patch", "Finest grid", "{:,}",
                        "Tokens of a fixed grid at the layout's finest patch size (the same finest detail)."),
        "reduction_min": ("fewer tokens than uniform finest patch", "Saved vs finest", ui.fmt_reduction,
                          "1 - tokens / tokens of the finest patch's grid."),
    }
    for v in vits:
        cols[f"{v} GMACs"] = (f"{v} GMACs", f"{v} GMACs", "{:.2f}",
                              f"{v} multiply-accumulates, in billions. {ui.MACS_HELP}")
        cols[f"{v} uniform16 GMACs"] = (f"{v} GMACs, uniform 16 px", f"{v} GMACs, 16 px", "{:.2f}",
                                        f"{v} GMACs of the 16 px grid of the same image.")
        cols[f"{v} speedup"] = (f"{v} speed-up vs uniform 16 px", f"{v} speed-up", "×{:.2f}",
                                f"{v} MACs of the 16 px grid / MACs of this layout (theoretical, this image).")
    cols["psnr"] = ("PSNR (dB)", "PSNR (dB)", ui.fmt_psnr,
                    "What the model sees against the original; lossless: an exact copy.")
    cols["ssim"] = ("SSIM", "SSIM", "{:.3f}", "Structural similarity of what the model sees (luminance).")
    return cols


PER_IMAGE_SHOWN = ("image", "strategy", "tokens", "uniform16", "reduction", "min_size", "reduction_min", "{vit} GMACs",
                   "{vit} speedup", "psnr", "ssim")
"""The per-image table's columns (``{vit}``: the Patch layout page's ViT preset); the CSV has them all."""
SHORT_HEADERS = {"{vit} speedup": "Speed-up"}
"""Headers shorter than ``_per_image_columns`` gives, where the caption under the table names the ViT."""


def _px(text: str) -> int:
    """About how many pixels a header or cell of ``text`` takes in the table (14 px sans serif + padding)."""
    return round(6.2 * len(text)) + 20


def _per_image_table(df: pd.DataFrame, vit: str):
    """The per-image rows of one ViT preset (``vit``), human names, fractions as percentages, and short
    headers sized to their text, so every column reads in full on a 1440 px wide page: (Styler,
    column_config). The finest-patch columns are left out when every layout's finest patch is 16 px or
    more (the 16 px grid is then the finest reference); the CSV has every column."""
    all_cols = _per_image_columns([vit])
    keys = [c.format(vit=vit) for c in PER_IMAGE_SHOWN]
    if "min_size" in df.columns and (df["min_size"] >= 16).all():  # e.g. multiscale's uniform grid of 30 px
        keys = [k for k in keys if k not in ("min_size", "reduction_min")]
    cols = {k: all_cols[k] for k in keys if k in df.columns}
    out = df[list(cols)].rename(columns={k: c[0] for k, c in cols.items()})
    fmt = {name: f for name, _, f, _ in cols.values() if f is not None}
    styler = out.style.format(fmt, na_rep="–")
    shown = styler.to_string(delimiter="\t").splitlines()  # the display values, to size each column
    cells = list(zip(*(line.split("\t")[1:] for line in shown[1:]))) if len(shown) > 1 else []
    config = {}
    for j, (key, (name, short, _, help_)) in enumerate(cols.items()):
        short = next((v.format(vit=vit) for k, v in SHORT_HEADERS.items() if k.format(vit=vit) == key), short)
        tip = help_ if name == short or not help_ else f"{name[0].upper()}{name[1:]}. {help_}"
        width = max([_px(short)] + [_px(str(v)) for v in (cells[j] if j < len(cells) else [])])
        config[name] = st.column_config.Column(short, help=tip, width=min(width, 220))
    return styler, config


def _per_image_csv(df: pd.DataFrame, vits: list[str]) -> str:
    """Every per-image column of every ViT preset, with the human names, as CSV (fractions stay fractions)."""
    cols = {k: c for k, c in _per_image_columns(vits).items() if k in df.columns}
    names = {k: c[0] + (" (fraction)" if k in ("reduction", "reduction_min") else "") for k, c in cols.items()}
    return df[list(cols)].rename(columns=names).to_csv(index=False)


def _psnr_cell(s: EfficiencySummary) -> str:
    """The summary's PSNR (of the mean MSE), with how many images were lossless."""
    if s.psnr is None:
        return "–"
    if s.lossless_images == s.psnr_images:
        return "lossless"
    text = f"{s.psnr:.2f}"
    return text + f" ({s.lossless_images} of {s.psnr_images} images lossless)" if s.lossless_images else text


def speedup_caption(budget_mode: bool, short: list[str]) -> str:
    """What the speed-ups compare, in words: none of them is marked fastest, because a speed-up over
    the 16 px grid is fewer tokens, and only layouts at equal tokens compare where they put them."""
    if not budget_mode:
        return ("Threshold mode: each strategy's token count follows its own threshold, so these are not at equal "
                "tokens and none is marked fastest: a larger speed-up is fewer tokens, usually with less of the "
                "image kept (PSNR in the summary below).")
    text = ("Equal compute: every strategy gets the same budget (a share of each image's 16 px grid), so those that "
            "spend it have the same speed-up and none is marked fastest; which keeps more of the image is the PSNR "
            "row of the summary below.")
    if short:
        text += (f" {', '.join(short)} {'leaves' if len(short) == 1 else 'leave'} part of the budget unused (note "
                 "above): a larger speed-up there is tokens not spent, not at equal tokens.")
    return text


def _budget_cell(uses: dict | None) -> str:
    """The share of the budget a strategy spent over its images (a ratio of totals), or why there is none."""
    if not uses or any(u is None for u in uses.values()):
        return "– (no budget)"
    tokens, budget = sum(u.tokens for u in uses.values()), sum(u.budget for u in uses.values())
    short = sum(u.short for u in uses.values())
    text = ui.fmt_pct(tokens / budget)
    return text + (f" ({short} of {len(uses)})" if short else "")


def _summary_table(summaries: list[EfficiencySummary], uses: dict | None = None) -> pd.DataFrame:
    """One column per strategy, one row per measure: token statistics per image and the ratios of
    totals, labelled as such (a row per measure keeps every column readable at any page width).
    ``uses``: strategy -> image -> ``recipes.BudgetUse``, for the share of the budget each spent."""
    rows: dict[str, dict[str, str]] = {}
    for s in summaries:
        for measure, value in (
            ("images", f"{s.images}"), ("total tokens", f"{s.total_tokens:,}"),
            ("mean tokens / image", f"{s.tokens:,.0f}"), ("p50 tokens / image", f"{s.p50_tokens:,}"),
            ("p95 tokens / image", f"{s.p95_tokens:,}"), ("max tokens / image", f"{s.max_tokens:,}"),
            ("tokens / MP", f"{s.tokens_per_mp:,.0f}"),
            (f"budget used, ratio of totals (images under {1 - recipes.EQUAL_TOKENS:.0%})",
             _budget_cell((uses or {}).get(s.strategy))),
            ("fewer tokens than uniform 16 px (ratio of totals)", ui.fmt_reduction(s.reduction_vs_uniform16)),
            ("fewer tokens than the finest patch's grid (ratio of totals)",
             ui.fmt_reduction(s.reduction_vs_uniform_min)),
            (f"{s.vit} MACs vs uniform 16 px, ratio of totals", ui.speedup_phrase(s.speedup_vs_uniform16)),
            ("PSNR dB (of the mean MSE)", _psnr_cell(s)),
            ("mean SSIM", "–" if s.ssim is None else f"{s.ssim:.3f}"),
        ):
            rows.setdefault(measure, {})[s.strategy] = value
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "all images together"
    return out


def _summary_config(summaries: list[EfficiencySummary]) -> dict:
    """Headers of the summary table: the strategies, each with what it is."""
    what = {"multiscale": "Multiscale (the Patch layout page's default) with its settings: with a budget its search "
                          "(fast: the better of the distortion quadtree and the equal-token uniform grid), without "
                          "one λ over each image's rate-distortion hull.",
            "quadtree": "The quadtree with the Patch layout page's settings.",
            "greedy": "The greedy layout with the Patch layout page's settings.",
            "uniform 16 px": "The standard ViT grid of 16 px patches (the reference)."}
    config = {"_index": st.column_config.Column("all images together", width=390)}  # the measures, never cut
    return config | {s.strategy: st.column_config.Column(s.strategy, help=what.get(s.strategy)) for s in summaries}


def _summary_text(s: EfficiencySummary, budget: float | None = None, rows: pd.DataFrame | None = None) -> str:
    """The summary as sentences for a slide (ratios over several images are ratios of totals).

    ``budget``: the budget fraction when every layout was solved for one (budget mode): then every
    image saves about the same share of tokens by construction, and what differs between images is
    how much of each the tokens keep (``rows``: the strategy's per-image rows, with ``psnr``)."""
    n = s.images
    if n == 1:
        text = (f"On this image the quadtree layout uses {s.total_tokens:,} tokens ({s.tokens_per_mp:,.0f} per "
                "megapixel). ")
    else:
        text = (f"Across {n} images the quadtree layout uses {s.total_tokens:,} tokens in all: {s.tokens:,.0f} per "
                f"image on average (median {s.p50_tokens:,}, p95 {s.p95_tokens:,}, max {s.max_tokens:,}), "
                f"{s.tokens_per_mp:,.0f} per megapixel. ")
    every = "all these images" if n > 1 else "this image"
    same_share = budget is not None and s.best_reduction - s.worst_reduction < 0.01
    if s.finest_size != 16:  # the finest patch's grid is another grid than the 16 px one: both
        text += (f"Against a fixed grid with the same finest detail ({s.finest_size} px) that is "
                 f"{ui.fewer_phrase(s.reduction_vs_uniform_min)} tokens; against the standard 16 px ViT grid "
                 f"{ui.fewer_phrase(s.reduction_vs_uniform16)}")
    else:
        text += f"That is {ui.fewer_phrase(s.reduction_vs_uniform16)} tokens than the standard 16 px ViT grid"
    if same_share and budget is not None and n > 1:
        text += f" on every image (the budget is {ui.fmt_pct(budget, 0)} of each image's 16 px grid)"
    text += (f", and for {s.vit} {ui.speedup_phrase(s.speedup_vs_uniform16)} in theory (MACs of {every} "
             "together). ")
    if s.psnr is not None and s.lossless_images == s.psnr_images:
        text += f"What the model sees is the original itself (lossless on {every}). "
    elif s.psnr is not None:
        text += f"What the model sees stays close to the original: PSNR {s.psnr:.1f} dB"
        if n > 1:
            text += " (of the mean squared error over the images"
            text += f"; {s.lossless_images} of them lossless)" if s.lossless_images else ")"
        text += f", SSIM {s.ssim:.3f}{' on average' if n > 1 else ''}. "
    if n > 1 and same_share:
        spread = _quality_spread(rows)
        if spread:
            text += spread
        text += "Lower the budget on the Patch layout page to trade detail for tokens."
    elif n > 1:
        text += (f"Biggest saving against 16 px: {s.best_image} ({ui.fewer_phrase(s.best_reduction)} tokens); "
                 f"smallest: {s.worst_image} ({ui.fewer_phrase(s.worst_reduction)})."
                 + (" At one threshold, flatter images get fewer tokens;" if budget is None else "")
                 + " raise the threshold or lower the budget on the Patch layout page to trade detail for tokens.")
    return text


def _quality_spread(rows: pd.DataFrame | None) -> str:
    """At one budget every image saves the same share of tokens: what differs is how much of each image
    those tokens keep. The images of the highest and lowest PSNR, in a sentence ("" without PSNR)."""
    if rows is None or "psnr" not in rows or rows["psnr"].isna().all() or len(rows) < 2:
        return ""
    by = rows.set_index("image")["psnr"].dropna()
    hi, lo = by.idxmax(), by.idxmin()
    if by[hi] - by[lo] < 0.005:
        return "Every image keeps the same PSNR. "
    db = ui.fmt_db
    return (f"What differs is how much of each image those tokens keep: most on {hi} (PSNR {db(by[hi])}), least on "
            f"{lo} ({db(by[lo])}). ")


st.title("Efficiency")
st.caption("Every loaded image at once: tokens per strategy, MACs (in GMACs) and theoretical speed-up for the ViT "
           f"presets, and a summary you can paste into a slide. {ui.MACS_HELP}")
efficiency_view()

st.subheader("Measured, not just predicted")
st.caption("MACs are a prediction. Below: wall-clock forward latency of ViT-Ti/S/B against the token count, and "
           "the bundled task model's accuracy and measured speed-up per method, both bundled measurements (each "
           "caption says where they were made; details, and a live measurement, on the Model page).")
with ui.guard("model results"):
    from adapatch.app_support import model_view

    model_view.latency_chart("eff_latency")  # each captioned with where and when it was measured
    model_view.results_table()
