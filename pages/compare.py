"""Compare: two to four strategies at the same token budget; where do the tokens go, which keeps more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, model_caveats, recipes, state, ui
from adapatch.app_support.images import ImageEntry, md_escape

STRATEGIES = list(ap.STRATEGIES)  # the library's layout strategies (model-based ones live on Model)


def _config_widgets(i: int, cfg: dict) -> dict:
    strategy = st.selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(cfg.get("strategy", "quadtree")),
                            key=f"w_cmp_{i}_strategy")
    importance = cfg.get("importance", "distortion")
    allocation = cfg.get("allocation", "saliency")
    if strategy == "quadtree":
        importance = st.selectbox("Importance", ap.IMPORTANCE_MEASURES,
                                  index=list(ap.IMPORTANCE_MEASURES).index(importance), key=f"w_cmp_{i}_importance")
    elif strategy == "greedy":
        allocation = st.selectbox("Allocation", ["saliency", "distortion"],
                                  index=["saliency", "distortion"].index(allocation), key=f"w_cmp_{i}_allocation")
    sizes = tuple(cfg.get("sizes", (16, 64)))
    scales = recipes.search_scales(cfg.get("scales", recipes.FAST_SCALES))
    if strategy == "multiscale":
        scales = st.selectbox("Search", list(recipes.SEARCH_LABELS), format_func=recipes.SEARCH_LABELS.__getitem__,
                              index=list(recipes.SEARCH_LABELS).index(scales), key=f"w_cmp_{i}_scales",
                              help="fast (the budget-mode default): the 16-64 px distortion quadtree against the "
                                   "equal-token uniform grid; thorough: quadtrees on 6 base patch sizes as well "
                                   "(30-300x slower).")
        st.caption("The layout of least error of what the model sees among its candidates; one of them is "
                   "the equal-token uniform grid, so it never keeps less.")
    elif strategy != "uniform":
        sizes = st.select_slider("Patch sizes (px)", options=list(recipes.SIZE_OPTIONS), value=sizes,
                                 key=f"w_cmp_{i}_sizes")
    else:
        st.caption("Square patches of one size (any integer), token count closest to the budget: "
                   "the equal-token baseline.")
    return {"strategy": strategy, "importance": importance, "allocation": allocation, "sizes": tuple(sizes),
            "scales": scales}


def _label(settings: dict, lay: ap.PatchLayout) -> str:
    """The settings' label, with the patch size the equal-token uniform grid or multiscale chose."""
    text = recipes.describe(settings)
    if lay.strategy == "uniform":
        return f"{text} · {lay.params['patch_size']} px"
    if lay.strategy == "multiscale":
        p = lay.params
        won = (f"uniform {p['base_size']} px won" if not p["levels_used"] else
               f"quadtree {p['base_size']}-{p['base_size'] << p['levels_used']} px won")
        return f"{text} · {won}"
    return text


def _verdict(df: pd.DataFrame, equal: list, tokens: int, uses: dict):
    """Which layout keeps the most of the image, among those at equal tokens (``equal``), in a
    sentence; the layouts left out are named, and a ranked one off the budget (the closest uniform
    grid) says by how much. Returns the best row (by PSNR; the first row when none can be ranked)."""
    at = f"At a budget of {tokens:,} tokens (each layout's own count is in the table)"
    left_out = [k.split(":")[0] for k in df.index if k not in equal]
    out_text = (f" {', '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} not at equal tokens (more than "
                f"{recipes.EQUAL_TOKENS:.0%} off the budget), so not ranked." if left_out else "")
    caveats = [c for c in (uses[k].caveat(k.split(":")[0]) for k in equal) if c]
    out_text += "".join(f" {c[0].upper()}{c[1:]}." for c in caveats)
    if len(equal) < 2:
        st.info(md_escape(f"{at}, fewer than two layouts are at equal tokens: none is ranked.{out_text}"),
                icon=":material/balance:")
        return equal[0] if equal else df.index[0]
    sel = df.loc[equal]
    by_psnr, by_ssim = sel["PSNR (dB)"].idxmax(), sel["SSIM"].idxmax()
    db = ui.fmt_db
    if by_psnr == by_ssim:
        text = (f"{at}, {by_psnr} keeps the most of the image by both measures (PSNR "
                f"{db(sel.loc[by_psnr, 'PSNR (dB)'])}, SSIM {sel.loc[by_psnr, 'SSIM']:.4f}).")
    else:
        text = (f"{at}, {by_psnr} keeps the most by PSNR ({db(sel.loc[by_psnr, 'PSNR (dB)'])}) and "
                f"{by_ssim} by SSIM ({sel.loc[by_ssim, 'SSIM']:.4f}): PSNR counts squared error, SSIM local "
                "structure, and they disagree here.")
    more = _more_tokens(sel["tokens"], by_psnr)
    st.success(md_escape(text + more + out_text), icon=":material/emoji_events:")
    return by_psnr


def _more_tokens(tokens: pd.Series, best) -> str:
    """E.g. " C has 6% more tokens than A.": the best of the layouts at equal tokens has more than 1% more
    tokens than another of them (equal tokens allow 5% either way of the budget); "" otherwise."""
    fewer = [k for k in tokens.index if k != best and tokens[best] > 1.01 * tokens[k]]
    if not fewer:
        return ""
    least = min(fewer, key=lambda k: tokens[k])
    return f" {best.split(':')[0]} has {tokens[best] / tokens[least] - 1:.0%} more tokens than {least.split(':')[0]}."


GREEDY_POINTS = 10
"""Budgets at which Compare samples a greedy layout's quality curve (one layout and fidelity each)."""


def quality_chart(entry: ImageEntry, configs: list[dict], layouts: list, budget: recipes.Budget) -> None:
    """Quality (PSNR, SSIM) vs tokens over the whole budget range for the compared layouts and the
    equal-token uniform grid, each compared layout marked at the budget (``ui.quality_figure``).

    Quadtrees: their exact curve (PSNR at every budget, SSIM at ``quality.SSIM_POINTS``); greedy:
    sampled at ``GREEDY_POINTS`` budgets; multiscale: its point only (one search per budget).
    Every curve is cached per image and settings, so moving the budget only moves the marks.
    """
    from dataclasses import replace

    from adapatch.layout import uniform
    from adapatch.quality import SSIM_POINTS

    curves, index, marks, sampled, alone = [], {}, [], [], []
    uni = compute.uniform_quality(entry)
    for i, (cfg, (settings, lay)) in enumerate(zip(configs, layouts)):
        letter, p = chr(65 + i), settings["params"]
        if cfg["strategy"] == "quadtree":
            q = compute.quality_curves(entry, p["min_size"], p["max_size"], p["importance"], settings["saliency"])[0]
            curves.append(replace(q, label=f"{letter}: {q.label} · {p['min_size']}-{p['max_size']} px"))
            index[i] = len(curves) - 1
        elif cfg["strategy"] == "greedy":
            sizes = p["patch_sizes"]
            lo = uniform(entry.height, entry.width, max(sizes)).num_tokens
            hi = uniform(entry.height, entry.width, min(sizes)).num_tokens
            budgets = sorted({round(float(b)) for b in np.linspace(lo, max(lo, hi), GREEDY_POINTS)})
            curves.append(compute.sampled_quality(entry, settings, budgets, f"{letter}: {recipes.describe(settings)}"))
            index[i] = len(curves) - 1
            sampled.append(letter)
        elif cfg["strategy"] == "multiscale":
            alone.append(letter)
        fid = compute.fidelity(entry, settings, state.device())
        marks.append((letter, lay.num_tokens, fid["psnr"], fid["ssim"], index.get(i)))
    curves.append(uni)
    for i, cfg in enumerate(configs):  # uniform layouts take the uniform curve's colour
        if cfg["strategy"] == "uniform":
            marks[i] = (*marks[i][:4], len(curves) - 1)
    st.plotly_chart(ui.quality_figure(curves, marks=marks, budget=budget.tokens), config=ui.PLOT_CONFIG,
                    key="compare_quality")
    notes = [(f"Each layout marked at the budget ({budget.tokens:,} tokens, dashed); curves over the whole range, "
              "against the original image. Quadtrees: PSNR at every budget, SSIM exact at "
              f"{SSIM_POINTS} budgets spread over the range; uniform: {len(uni.tokens)} patch sizes from "
              f"{min(uni.extra['sizes'])} to {max(uni.extra['sizes'])} px (SSIM at {len(uni.ssim)} of them).")]
    if sampled:
        notes.append(f"Greedy ({', '.join(sampled)}): {GREEDY_POINTS} budgets over its range, one layout each.")
    same = ui.coincident_marks(marks, *ui.mark_tolerance(curves, marks))
    if same:
        notes.append("; ".join(f"{b} is at {a}'s point or next to it (drawn as a ring around it)" for b, a in same)
                     + ".")
    if alone:
        notes.append(f"Multiscale ({', '.join(alone)}): its point only (one search per budget; the fast search "
                     "keeps the better of the quadtree · distortion 16-64 px and the equal-token uniform grid).")
    st.caption(" ".join(notes))


BUDGET_KEY = "w_compare_budget_fraction"
"""Compare's budget slider. It shows and sets the one budget setting of the app (``budget_fraction``,
also Patch layout's and Efficiency's), so the pages compare at the same share of the 16 px grid."""


def budget_slider(container, top_f: float) -> float:
    """The budget slider, bound to the shared ``budget_fraction`` setting. Compare's range is wider (up
    to ``top_f`` of the 16 px grid); Patch layout shows a share beyond its own range at its end."""
    value = recipes.clamp_fraction(top_f)(state.get("budget_fraction"))  # seeds the slider after a page switch
    out = container.slider("Token budget (% of the 16 px grid, the same for every layout)", recipes.FRACTION_MIN,
                           top_f, value=value, step=recipes.FRACTION_STEP, format="percent", key=BUDGET_KEY,
                           help="A share of the tokens a ViT/16 spends on the image, so every image gets the same "
                                "relative compute; the same budget as on Patch layout and Efficiency. Every adaptive "
                                "layout uses at most that many tokens; uniform takes the grid of square patches (any "
                                "size) whose token count is closest to it (within 5% where possible).")
    state.put("budget_fraction", float(out))
    return float(out)


def ranked(df: pd.DataFrame, uses: dict) -> list:
    """The rows of ``df`` compared at equal tokens (``recipes.BudgetUse.equal``): only these are ranked
    and highlighted; the others use the budget too little (or too much) to be compared with them."""
    return [k for k in df.index if uses.get(k) is not None and uses[k].equal]


def _highlight(df: pd.DataFrame, rows: list, vit: str):
    """Styler of the results table: the best PSNR and SSIM and the fewest MACs highlighted among ``rows``
    (those at equal tokens), nothing when fewer than two are."""
    styled = df.style.format({f"{vit} GMACs": "{:.2f}", ui.MACS_RATIO: "×{:.3f}", "PSNR (dB)": ui.fmt_psnr,
                              "SSIM": "{:.4f}", "tokens": "{:,}"})
    if len(rows) < 2:
        return styled
    green = "rgba(33, 195, 84, 0.35)"
    return (styled.highlight_max(subset=(rows, ["PSNR (dB)", "SSIM"]), color=green)
            .highlight_min(subset=(rows, [f"{vit} GMACs"]), color=green))


@st.fragment
def compare_view(entry: ImageEntry) -> None:
    with ui.guard():
        configs = state.get("compare_configs")
        c1, c2 = st.columns([1, 3])
        n = c1.segmented_control("Layouts", [2, 3, 4], default=state.get("compare_n"), key="w_compare_n") or 2
        state.put("compare_n", n)
        top_f = recipes.COMPARE_FRACTION_MAX
        budget_slider(c2, top_f)
        caption = c2.empty()
        cols = st.columns(n, gap="small")
        boxes = []
        for i in range(n):  # the layouts' settings first: the budget's range depends on their patch sizes
            with cols[i]:
                box = st.container(border=True)
                with box:
                    st.markdown(f"**Layout {chr(65 + i)}**")
                    configs[i] = _config_widgets(i, configs[i])
                boxes.append(box)
        budget = recipes.compare_budget(entry, configs[:n])
        caption.caption(budget.caption())
        rows, layouts = [], []
        warned = False
        for i, box in enumerate(boxes):
            with box:
                settings = recipes.budget_settings(configs[i], budget)
                if not warned:  # the digits model's attention on a photo: said once (one button)
                    warned = model_caveats.settings_caveat(settings, state.current_key())
                lay = compute.layout(entry, settings)
                layouts.append((settings, lay))
                st.image(compute.overlay_png(entry, settings, max_side=768), output_format="PNG", width="stretch",
                         caption=f"{chr(65 + i)}: {ui.count_text(lay.num_tokens)} · {_label(settings, lay)}")
        ui.patch_size_scale({s for _, lay in layouts for s in lay.sizes},
                            max(compute.display_factor(entry, s) for s, _ in layouts))
        vit = state.get("vit")
        uses = {}
        for i, (settings, lay) in enumerate(layouts):
            eff = ap.efficiency(lay, vit)
            fid = compute.fidelity(entry, settings, state.device())
            name = f"{chr(65 + i)}: {_label(settings, lay)}"
            uses[name] = recipes.budget_use(settings, lay.num_tokens, lay.height, lay.width, lay.params, fid["psnr"])
            rows.append({"layout": name, "tokens": eff["tokens"],
                         f"{vit} GMACs": eff["flops"] / 1e9, ui.MACS_RATIO: eff["flops_ratio_vs_uniform16"],
                         "PSNR (dB)": fid["psnr"], "SSIM": fid["ssim"]})
        df = pd.DataFrame(rows).set_index("layout")
        equal = ranked(df, uses)
        styled = _highlight(df, equal, vit)
        st.dataframe(styled, width="stretch", column_config={
            f"{vit} GMACs": st.column_config.Column(help=f"{vit} multiply-accumulates per image, in billions. "
                                                         + ui.MACS_HELP),
            ui.MACS_RATIO: st.column_config.Column(help=f"{vit} MACs of the layout / MACs of the uniform 16 px grid "
                                                        "of this image. " + ui.MACS_HELP)})
        for note in recipes.unused_notes(uses):
            st.warning(md_escape(note), icon=":material/data_usage:")
        best = _verdict(df, equal, budget.tokens, uses)
        state.put("compare_configs", configs)
        quality_chart(entry, configs[:n], layouts, budget)  # quality vs tokens, the budget marked
        best_i = list(df.index).index(best)
        ui.export_section(entry, layouts[best_i][0], layouts[best_i][1], key="compare_export")


with ui.guard("image"):
    _entry = state.current()
    ui.page_header("Compare at the same budget", "Same number of tokens for every layout: where does each one "
                   "spend them, and which keeps more of the image? Best values highlighted among the layouts at "
                   "equal tokens.", _entry)
    compare_view(_entry)
