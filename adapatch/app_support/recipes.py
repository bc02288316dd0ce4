"""From the app's settings to the ``adapatch.export`` settings dict each page computes with.

One function per page, so pages, tests and the exported snippet agree on what a view means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapatch.budgets import RelativeBudget, relative_budget, uniform16_tokens
from adapatch.export import MODEL_SCORERS, MODEL_STRATEGIES, PRUNE_SCORERS
from adapatch.fidelity import MAX_PSNR
from adapatch.layout import uniform
from adapatch.multiscale import DEFAULT_SCALES, FAST_SCALES
from adapatch.quadtree import default_threshold
from adapatch.strategies import BUDGET_DEFAULT, STRATEGIES

from . import compute, state
from .compute import saliency_spec
from .images import ImageEntry

SIZE_OPTIONS = (2, 4, 8, 16, 32, 64, 128)
_SCORER_LABELS = {"mean": "saliency mean per token", "max": "saliency max per token",
                  "learned": "learned (model's TokenPruner)",
                  "attention": "attention (EViT: CLS attention, rest fused)"}
SCORER_LABELS = {s: _SCORER_LABELS[s] for s in PRUNE_SCORERS}  # the export format's scorers, with labels
LAYOUT_STRATEGY_LABELS = {s: "selector" if s == "learned_selector" else s
                          for s in STRATEGIES + MODEL_STRATEGIES if s != "uniform"}
"""Strategies of the Patch layout page (the library's names; uniform is the baseline, on Compare)."""

DEFAULT_STRATEGY = BUDGET_DEFAULT["strategy"]
"""The Patch layout page's default strategy: the library's budget-mode default (``ap.default_layout``),
``multiscale`` with ``BUDGET_DEFAULT["scales"]`` (1): the better of the ``distortion`` quadtree and the
equal-token uniform grid by exact error, so the default never keeps less than the uniform grid."""
SEARCH_LABELS = {FAST_SCALES: "fast: quadtree vs uniform grid",
                 DEFAULT_SCALES: f"thorough: {DEFAULT_SCALES} base sizes"}
"""multiscale's search in budget mode (``scales``): fast (the budget-mode default, ``BUDGET_DEFAULT``:
the 16-64 px distortion quadtree and the equal-token uniform grid; ~20 ms at 1 MP) or thorough
(quadtrees on ``DEFAULT_SCALES`` base sizes and two refinements; 30-300x slower, ~0.2 dB more on
average)."""
SEARCH_SHORT = {FAST_SCALES: "fast", DEFAULT_SCALES: "thorough"}
"""The search as a label's word ("multiscale · fast")."""


def search_word(scales: int) -> str:
    """``1`` -> "fast", ``6`` -> "thorough", any other count (a loaded settings file) -> "7 base sizes"."""
    return SEARCH_SHORT.get(int(scales), f"{int(scales)} base sizes")


def search_scales(value) -> int:
    """A stored search setting fitted to the options (an unknown value: the fast default)."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return FAST_SCALES
    return v if v in SEARCH_LABELS else FAST_SCALES


def powers_between(min_size: int, max_size: int) -> list[int]:
    """Every power of two in ``[min_size, max_size]`` (1 px included: the fitted range of a 1 px wide image)."""
    return [1 << k for k in range(max(1, int(min_size)).bit_length() - 1, int(max_size).bit_length())
            if min_size <= 1 << k <= max_size]


def covering_power(side: int) -> int:
    """The smallest power of two ``>= side``."""
    return 1 << max(0, int(side) - 1).bit_length()


SMALL_IMAGE_TOKENS = 8
"""On a small image (``is_small_image``), the finest grid of the patch range keeps at most this many
times the tokens of the image's 16 px grid (``fit_sizes``)."""

SMALL_IMAGE_PIXELS = 16 * 16 * 16
"""An image of at most this many pixels, 16 tokens' worth of 16 px patches (a 64x64 image, a 10x10
icon, a 3x200 strip), is small: ``fit_sizes`` may raise the smallest patch on it."""


def is_small_image(height: int, width: int) -> bool:
    """Whether the image holds at most 16 tokens' worth of 16 px patches (``SMALL_IMAGE_PIXELS``).

    Its own pixels are counted, not its padded 16 px grid, so a strip 1-3 px thin is small however it
    pads (a 1x500 line is 500 px, two tokens' worth, though its 16 px grid has 32 tokens), and any
    image larger than 64x64 px is not (a 512x512 photo is 1024 tokens' worth)."""
    return int(height) * int(width) <= SMALL_IMAGE_PIXELS


def _finest_tokens(height: int, width: int, min_size: int, max_size: int) -> int:
    """Tokens of the ``min_size`` grid over the canvas the quadtree pads the image to (a multiple of ``max_size``)."""
    ch, cw = -(-height // max_size) * max_size, -(-width // max_size) * max_size
    return (ch // min_size) * (cw // min_size)


def fit_sizes(height: int, width: int, sizes) -> tuple[int, int]:
    """The patch-size range used on a ``height`` x ``width`` image: ``sizes``, unless

    * the largest patch is larger than the image needs (an image smaller than the range): then
      ``max_size`` drops to the smallest power of two covering the image's longer side (the quadtree
      pads the image to a multiple of ``max_size``: a 20x20 icon under 64 px patches would be a
      64x64 canvas of mostly padding), and ``min_size`` to at most that;
    * the image is small (``is_small_image``: at most 16 tokens' worth of 16 px patches, 64x64 px)
      and the finest grid (``min_size`` patches over that padded canvas) would have more than
      ``SMALL_IMAGE_TOKENS`` times the tokens of its 16 px grid: then ``min_size`` is doubled until
      it does not (and ``max_size`` follows it when they meet). A 10x10 image with 2-8 px patches
      gets 8 px patches (4 tokens on its 16x16 canvas), not 64 tokens of 2 px for its 100 pixels.

    On any larger image the smallest patch is the user's: a 512x512 photo keeps 2 or 4 px patches
    (64x or 16x its 16 px grid at the finest, which the app shows as a ratio, ``ui.RATIO_FROM``).
    The setting itself is kept (other images use it as it fits them); ``sizes_note`` says what changed."""
    lo, hi = int(sizes[0]), int(sizes[1])
    h, w = int(height), int(width)
    cap = covering_power(max(h, w))
    hi = min(hi, cap)
    lo = min(lo, hi)
    if not is_small_image(h, w):
        return lo, hi
    limit = SMALL_IMAGE_TOKENS * uniform16_tokens(h, w)
    while lo < cap and _finest_tokens(h, w, lo, hi) > limit:
        lo *= 2
        hi = max(hi, lo)
    return lo, hi


def sizes_note(height: int, width: int, sizes) -> str | None:
    """A line saying how the range was fitted to the image (``fit_sizes``), or None when it was not."""
    lo, hi = int(sizes[0]), int(sizes[1])
    fitted = fit_sizes(height, width, sizes)
    if fitted == (lo, hi):
        return None
    used = f"{fitted[0]}-{fitted[1]} px" if fitted[0] != fitted[1] else f"{fitted[0]} px"
    raised = fitted[0] > min(lo, hi, covering_power(max(int(height), int(width))))  # above the clamped min
    why_min = (f"patches below {fitted[0]} px would give more than {SMALL_IMAGE_TOKENS}x the tokens of its "
               "16 px grid")
    if fitted[1] < hi:  # the image is smaller than the largest patch
        text = (f"This {width}x{height} image is smaller than the {hi} px patches: sizes {used} are used here (the "
                "largest patch is the smallest power of two covering the image")
        return text + (f"; {why_min})" if raised else ")") + ". Your setting is kept for other images."
    # only the smallest patch was raised (a small image: at most 64x64 px worth of pixels)
    return (f"This {width}x{height} image is small (at most {SMALL_IMAGE_PIXELS:,} pixels, a 64x64 image's worth): "
            f"{why_min}, so sizes {used} are used here. Your setting is kept for larger images.")


# ------------------------------------------------------------------ budgets
BUDGET_STRATEGIES = ("quadtree", "greedy", "multiscale")
"""Strategies of the Patch layout page that take a token budget."""
FRACTION_MIN = FRACTION_STEP = 0.01
COMPARE_FRACTION_MAX = 4.0
"""Compare's slider: up to 4x the 16 px grid's tokens (the 8 px grid's density)."""


def fraction_max(min_size: int) -> float:
    """Largest budget fraction the Patch layout slider offers: the ``min_size`` grid's density
    relative to the 16 px grid (at least 100%), at most ``SMALL_IMAGE_TOKENS`` (800%). The slider reads
    in percent (a four-digit percentage at 2 or 4 px otherwise) and its range depends on the sizes, not
    the image: on a small image ``fit_sizes`` keeps the finest grid within that anyway; on a larger one
    the budget goes up to 8x the 16 px grid, and threshold mode reaches the finest grid itself."""
    return float(min(max(1.0, (16 / int(min_size)) ** 2), SMALL_IMAGE_TOKENS))


FRACTION_DIGITS = 6
"""Decimals a stored budget fraction keeps: the slider sets whole percents, but a budget started at a
layout's token count (``fraction_for_tokens``) keeps that count exactly on any image under 10^6
tokens of the 16 px grid (256 MP)."""


def clamp_fraction(hi: float):
    """Fit a stored fraction into the slider's range (the range depends on the sizes, not the image)."""
    return lambda v: float(min(max(round(float(v), FRACTION_DIGITS), FRACTION_MIN), hi))


def fraction_for_tokens(entry: ImageEntry, tokens: int, hi: float) -> float:
    """The budget fraction (of ``entry``'s 16 px grid) whose budget is ``tokens`` on this image, within
    the slider's range ``[FRACTION_MIN, hi]`` (``relative_budget`` of it gives ``tokens`` back)."""
    return clamp_fraction(hi)(int(tokens) / uniform16_tokens(entry.height, entry.width))


@dataclass(frozen=True)
class Budget:
    """The token budget one image gets: ``fraction`` of its 16 px grid (``adapatch.budgets``),
    kept within ``[lo, hi]``, what the strategy can use on this image (its coarsest grid / every split)."""

    fraction: float
    height: int
    width: int
    lo: int
    hi: int

    @property
    def relative(self) -> int:
        """``relative_budget(h, w, fraction=...)``: the budget before it is kept within range."""
        return relative_budget(self.height, self.width, fraction=self.fraction)

    @property
    def tokens(self) -> int:
        """The absolute budget passed to the library."""
        return int(min(max(self.relative, self.lo), self.hi))

    @property
    def clamped(self) -> bool:
        return self.tokens != self.relative

    def record(self) -> dict[str, Any]:
        """The relative setting, as the exported settings record it (``relative_budget``)."""
        return RelativeBudget("fraction", self.fraction).to_dict()

    def caption(self) -> str:
        """E.g. "= 183 tokens for this 512x384 image", saying so when the budget was kept within range."""
        text = f"= {self.tokens:,} token{'s' if self.tokens != 1 else ''} for this {self.width}x{self.height} image"
        if self.relative < self.lo:
            text += f" (raised from {self.relative:,}: the fewest tokens these patch sizes allow here)"
        elif self.relative > self.hi:
            text += f" (lowered from {self.relative:,}: the most tokens these patch sizes allow here)"
        return text


def budget_fraction(name: str = "budget_fraction") -> float:
    """The stored budget fraction (of the 16 px grid), rounded to ``FRACTION_DIGITS`` decimals (the
    slider's floats, e.g. 0.30000000000000004, read as 0.3)."""
    return round(float(state.get(name)), FRACTION_DIGITS)


def layout_budget(entry: ImageEntry, strategy: str | None = None, sizes=None, importance: str | None = None,
                  fraction: float | None = None) -> Budget:
    """The Patch layout page's budget for ``entry`` (arguments override the stored settings).

    The range is the library's: for the quadtree, the base and the fully split token counts of its
    threshold curve; for greedy, the grids of the largest and smallest patch size; for multiscale, 1
    token (one of its candidates is always the uniform grid that fits any budget, patches of any size)
    up to the grid of the smallest patch size.
    """
    strategy = strategy or state.get("strategy")
    h, w = entry.height, entry.width
    min_size, max_size = fit_sizes(h, w, sizes or state.get("sizes"))
    if strategy == "quadtree":
        curve = compute.threshold_curve(entry, current_saliency(), int(min_size), int(max_size),
                                        importance or state.get("importance"))
        lo, hi = curve.base_tokens, curve.max_tokens
    elif strategy == "multiscale":
        lo, hi = 1, uniform(h, w, int(min_size)).num_tokens
    else:
        lo, hi = uniform(h, w, int(max_size)).num_tokens, uniform(h, w, int(min_size)).num_tokens
    return Budget(budget_fraction() if fraction is None else float(fraction), h, w, lo, max(lo, hi))


def compare_budget(entry: ImageEntry, configs: list[dict], fraction: float | None = None) -> Budget:
    """Compare's budget for ``entry``: at least every layout's coarsest grid, at most the 4 px grid."""
    h, w = entry.height, entry.width
    lo = max(uniform(h, w, int(max(c["sizes"]))).num_tokens for c in configs)
    hi = max(lo, uniform(h, w, 4).num_tokens)
    return Budget(budget_fraction() if fraction is None else float(fraction), h, w, lo, hi)


# ------------------------------------------------------------------ budget use (equal compute)
EQUAL_TOKENS = 0.05
"""Layouts within this share of their budget are at equal tokens (the tolerance of the equal-token
uniform grid, ``uniform_for_budget``). A budget-mode layout that leaves more of it unused says so next
to its numbers, and no page ranks it against layouts that spend the budget: its speed-up comes from
tokens it did not spend, not from where it put them."""


def settings_budget(settings: dict[str, Any]) -> int | None:
    """The token budget ``settings`` are solved for: Compare's ``solve_budget`` or the budget mode's
    ``params["budget"]``; None without one (threshold mode, a fixed grid, pruning)."""
    budget = settings.get("solve_budget")
    if budget is None:
        budget = (settings.get("params") or {}).get("budget")
    return None if budget is None else int(budget)


@dataclass(frozen=True)
class BudgetUse:
    """How much of its token budget a layout spends: ``tokens`` of ``budget``; ``cap``: the most
    tokens its patch sizes allow on the image (its finest grid), None when unknown; ``closest``: the
    layout is the equal-token uniform grid, the grid of square patches closest to the budget (as
    equal as a grid can be, even where none is within ``EQUAL_TOKENS``); ``grid``: the patch size of the
    uniform grid multiscale kept (the finest within the budget), None otherwise; ``lossless``: what
    the model sees is already the original (more tokens would keep nothing more)."""

    tokens: int
    budget: int
    strategy: str = ""
    allocation: str | None = None
    cap: int | None = None
    closest: bool = False
    grid: int | None = None
    lossless: bool = False

    @property
    def unused(self) -> float:
        """The share of the budget left unused (0 when it is spent or exceeded)."""
        return max(0.0, 1.0 - self.tokens / self.budget) if self.budget > 0 else 0.0

    @property
    def within(self) -> bool:
        """Within ``EQUAL_TOKENS`` of the budget, either way."""
        return self.budget > 0 and abs(self.tokens / self.budget - 1.0) <= EQUAL_TOKENS

    @property
    def equal(self) -> bool:
        """Compared at equal tokens: ``within`` the budget's tolerance, or the closest uniform grid
        (then ``caveat`` says how far off it is)."""
        return self.within or self.closest

    def caveat(self, name: str) -> str | None:
        """For a layout compared at equal tokens that is not within ``EQUAL_TOKENS``: how far off it is."""
        if self.within or not self.equal:
            return None
        off = self.tokens / self.budget - 1.0
        return (f"{name} has {self.tokens:,} tokens, {abs(off):.0%} {'over' if off > 0 else 'under'} the budget: no "
                "grid of square patches is closer on this image")

    @property
    def short(self) -> bool:
        """Leaves more than ``EQUAL_TOKENS`` of the budget unused (then says so)."""
        return self.unused > EQUAL_TOKENS

    def reason(self) -> str:
        """Why the budget is not spent, from what the strategy does."""
        if self.lossless:
            return "what the model sees is already the original (lossless): more tokens would keep nothing more"
        if self.cap is not None and self.tokens >= self.cap:
            return f"its patch sizes allow at most {self.cap:,} tokens on this image"
        if self.grid is not None:
            return (f"it kept the uniform grid of {self.grid} px patches, the finest square grid within the budget "
                    "(no grid has a token count in between)")
        if self.strategy == "greedy" and self.allocation != "distortion":
            return ("its saliency rule gives each cell the patch size the saliency inside it asks for and stops "
                    "there; cells it finds flat keep the largest patch, whatever budget is left")
        if self.strategy in ("quadtree", "multiscale"):
            return "it stops where no split left removes error, or where the next one does not fit in the budget"
        return "its next refinement does not fit in the budget"

    def note(self, name: str | None = None) -> str:
        """E.g. "greedy uses 1,288 of its 4,915-token budget (74% unused): not at equal tokens ..."."""
        pct = min(99, round(100 * self.unused))
        return (f"{name or self.strategy} uses {self.tokens:,} of its {self.budget:,}-token budget ({pct}% unused), "
                f"so it is not at equal tokens with layouts that spend it (fewer MACs, but not for where it puts its "
                f"tokens): {self.reason()}.")


def budget_use(settings: dict[str, Any], tokens: int, height: int, width: int,
               layout_params: dict[str, Any] | None = None, psnr: float | None = None) -> BudgetUse | None:
    """``BudgetUse`` of a layout of ``tokens`` solved with ``settings`` on an image of ``height`` x
    ``width`` (``layout_params``: the layout's own params, which say what multiscale kept; ``psnr``: its
    fidelity, when known, which says whether it is lossless); None when the settings have no budget."""
    budget = settings_budget(settings)
    if budget is None:
        return None
    p = settings.get("params") or {}
    sizes = p.get("patch_sizes") or [p.get("min_size")]
    finest = min((int(v) for v in sizes if v), default=None)
    cap = (uniform(height, width, finest).num_tokens if finest and settings["strategy"] in ("quadtree", "greedy")
           else None)
    lp = layout_params or {}
    grid = int(lp["base_size"]) if settings["strategy"] == "multiscale" and lp.get("levels_used") == 0 else None
    return BudgetUse(int(tokens), budget, settings["strategy"], p.get("allocation"), cap,
                     closest=settings["strategy"] == "uniform", grid=grid,
                     lossless=psnr is not None and psnr >= MAX_PSNR)


def strategy_unused_note(strategy: str, uses: dict[str, BudgetUse | None], most: int = 4) -> str | None:
    """One note for ``strategy`` over several images (``uses``: image label -> its ``BudgetUse``):
    on which images it leaves more than ``EQUAL_TOKENS`` of its budget unused (the first ``most`` of
    them named, the largest share first), and why; None when it spends its budget on every image."""
    short = sorted(((k, u) for k, u in uses.items() if u is not None and u.short), key=lambda ku: -ku[1].unused)
    if not short:
        return None
    if len(uses) == 1:
        return short[0][1].note(f"{strategy} ({short[0][0]})")
    named = ", ".join(f"{k}: {u.tokens:,} of {u.budget:,} tokens, {min(99, round(100 * u.unused))}% unused"
                      for k, u in short[:most])
    more = f" and {len(short) - most} more" if len(short) > most else ""
    return (f"{strategy} leaves more than {EQUAL_TOKENS:.0%} of its budget unused on {len(short)} of {len(uses)} "
            f"images ({named}{more}), so there it is not at equal tokens with layouts that spend it (fewer MACs, "
            f"but not for where it puts its tokens): {short[0][1].reason()}.")


def unused_notes(uses: dict[str, BudgetUse | None]) -> list[str]:
    """A note for every layout in ``uses`` (label -> its ``BudgetUse``) that leaves more than
    ``EQUAL_TOKENS`` of its budget unused."""
    return [u.note(name) for name, u in uses.items() if u is not None and u.short]


# ------------------------------------------------------------------ thresholds
def threshold_kind(importance: str, mixing: bool = False) -> str:
    """What a stored threshold is a threshold of: the importance, with ``+query`` when it is mixed with
    a query (then in [0, 1] for every importance; ``distortion`` alone is ``lambda``, unbounded).
    Each kind keeps its own threshold (``state``'s ``thresholds``): a ``lambda`` never becomes a
    ``std`` threshold when the importance changes, and coming back finds the old value."""
    return f"{importance}+query" if mixing else str(importance)


def curve_kind(curve) -> str:
    """``threshold_kind`` of an ``adapatch.ThresholdCurve`` (its params name the importance and query),
    or of an ``RDHull`` (``multiscale``'s threshold mode): ``distortion``, the same ``lambda`` as the
    quadtree's (one unit, one meaning: switching between the two keeps it)."""
    from adapatch.threshold_scale import is_hull
    if is_hull(curve):
        return MULTISCALE_KIND
    return threshold_kind(str(curve.params.get("importance", "")), "query" in curve.params)


MULTISCALE_KIND = "distortion"
"""The threshold kind of ``multiscale``'s threshold mode: ``lambda``, shared with the ``distortion``
quadtree (the same unit; the hull's layout at a lambda never has a larger ``error + lambda * tokens``
than the quadtree's own)."""


def stored_threshold(kind: str) -> float | None:
    """The user's threshold of ``kind``, or None when none was set yet."""
    value = (state.get("thresholds") or {}).get(kind)
    return None if value is None else float(value)


def set_threshold(kind: str, value: float) -> None:
    """Store the threshold of ``kind`` (exactly: a solved threshold is not rounded to a slider step)."""
    thresholds = state.settings().setdefault("thresholds", {})
    thresholds[kind] = float(value)


def implied_threshold(entry: ImageEntry, importance: str, sizes=None) -> float:
    """The threshold the stored budget fraction implies on ``entry`` (query-blind): the smallest whose
    threshold-mode quadtree has at most the budget's tokens (``ThresholdCurve.threshold_for``). The
    start of threshold mode for a kind without a threshold of its own."""
    min_size, max_size = fit_sizes(entry.height, entry.width, sizes or state.get("sizes"))
    b = layout_budget(entry, "quadtree", (min_size, max_size), importance)
    curve = compute.threshold_curve(entry, current_saliency(), int(min_size), int(max_size), importance)
    return curve.threshold_for(b.tokens)


def hull_threshold_for(hull, tokens: int) -> float:
    """``hull.threshold_for(tokens)``, a budget below the hull's coarsest layout taken as that layout's
    tokens (multiscale's budget mode reaches below it: its uniform candidate has patches of any size)."""
    return float(hull.threshold_for(max(int(tokens), int(hull.tokens[0]))))


def multiscale_implied_threshold(entry: ImageEntry, sizes=None) -> float:
    """The lambda the stored budget fraction implies on ``entry`` for ``multiscale``'s threshold mode:
    the smallest whose hull layout has at most the budget's tokens (``RDHull.threshold_for``)."""
    b = layout_budget(entry, "multiscale", sizes)
    return hull_threshold_for(compute.rd_hull(entry), b.tokens)


def model_name() -> str:
    """The picked model as settings name it ("task", the checkpoint's file name or the timm name)."""
    from .model_source import current_ref
    return current_ref().name


def current_saliency() -> dict:
    """The saliency method and parameters chosen on the Saliency page (defaults filled in; the
    attention method names the picked model)."""
    method = state.get("saliency_method")
    spec = saliency_spec(method, state.get("saliency_params").get(method, {}))
    if method == "attention":
        spec["params"]["model"] = model_name()
    return spec


def layout_settings(strategy: str | None = None, importance: str | None = None, sizes=None,
                    threshold: float | None = None, budget: int | str | None = "setting", vit: str | None = None,
                    device: str | None = None, entry: ImageEntry | None = None) -> dict[str, Any]:
    """Settings of the Patch layout page (arguments override the stored settings).

    ``budget="setting"``: the stored budget fraction made absolute for ``entry`` (``layout_budget``;
    needed when a budget is in use), recorded as ``relative_budget`` next to the tokens it gave.
    """
    strategy = strategy or state.get("strategy")
    min_size, max_size = sizes or state.get("sizes")
    if entry is not None:  # a range larger than the image is fitted to it (``fit_sizes``)
        min_size, max_size = fit_sizes(entry.height, entry.width, (min_size, max_size))
    relative = None
    if budget == "setting":
        budget = None
        if strategy in BUDGET_STRATEGIES and state.get("use_budget"):
            if entry is None:
                raise ValueError("a relative budget needs the image it applies to")
            b = layout_budget(entry, strategy, (min_size, max_size), importance)
            budget, relative = b.tokens, b.record()
    if strategy == "quadtree":  # with a budget the threshold is not used: best-first until the budget is spent
        importance = importance or state.get("importance")
        thr = None
        if budget is None:  # the given threshold, else the stored one of this importance (query-blind), else
            thr = threshold if threshold is not None else stored_threshold(threshold_kind(importance))
            if thr is None:  # the one the budget implies on this image (the library's default without one)
                thr = (implied_threshold(entry, importance, (min_size, max_size)) if entry is not None
                       else default_threshold(importance))
            thr = float(thr)
        params = {"threshold": thr, "min_size": int(min_size), "max_size": int(max_size), "budget": budget,
                  "importance": importance}
    elif strategy == "greedy":
        params = {"patch_sizes": powers_between(min_size, max_size), "budget": budget, "uncovered": "fill",
                  "allocation": state.get("greedy_allocation")}
    elif strategy == "learned_selector":
        params = {"k": int(state.get("selector_k")), "model": model_name()}
    elif strategy == "multiscale":
        if budget is not None:  # budget mode: the search setting (scales) makes the same call as the page
            params = {"budget": int(budget), "scales": search_scales(state.get("scales"))}
        else:  # threshold mode: lambda over the image's hull (the export's make_layout builds the same hull)
            thr = threshold if threshold is not None else stored_threshold(MULTISCALE_KIND)
            if thr is None:
                if entry is None:
                    raise ValueError("multiscale's threshold mode needs the image (the threshold its budget implies)")
                thr = multiscale_implied_threshold(entry, (min_size, max_size))
            params = {"threshold": float(thr), "levels": compute.HULL_LEVELS, "token_size": compute.HULL_TOKEN_SIZE}
    else:
        params = {"patch_size": int(min_size)}
    return {"saliency": current_saliency(), "strategy": strategy, "params": params, "solve_budget": None,
            "prune": None, "vit": vit or state.get("vit"), "device": device or state.device(),
            "relative_budget": relative}


def budget_settings(config: dict, budget: int | Budget) -> dict[str, Any]:
    """Settings of one Compare column: the strategy's layout solved for ``budget`` tokens (a
    ``Budget`` also records the relative setting it came from)."""
    relative = budget.record() if isinstance(budget, Budget) else None
    min_size, max_size = config["sizes"]
    if isinstance(budget, Budget):  # the image is known: a range larger than it is fitted to it
        min_size, max_size = fit_sizes(budget.height, budget.width, (min_size, max_size))
    budget = budget.tokens if isinstance(budget, Budget) else budget
    strategy = config["strategy"]
    if strategy == "quadtree":
        params: dict[str, Any] = {"min_size": int(min_size), "max_size": int(max_size),
                                  "importance": config.get("importance", "distortion")}
    elif strategy == "greedy":
        params = {"patch_sizes": powers_between(min_size, max_size), "uncovered": "fill",
                  "allocation": config.get("allocation", "saliency")}
    elif strategy == "multiscale":  # the budget and the search
        params = {"scales": search_scales(config.get("scales", FAST_SCALES))}
    else:  # uniform (the equal-token grid) needs only the budget
        params = {}
    return {"saliency": current_saliency(), "strategy": strategy, "params": params, "solve_budget": int(budget),
            "prune": None, "vit": state.get("vit"), "device": state.device(), "relative_budget": relative}


def prune_settings(keep_ratio: float | None = None, patch_size: int | None = None,
                   scorer: str | None = None) -> dict[str, Any]:
    """Settings of the Token pruning page: a uniform grid, scored per token, top fraction kept.

    Model scorers (learned, attention) name the picked model; pass its ``patch_size`` (they run on
    the model's own grid, on the image resized to the model's input).
    """
    scorer = scorer or state.get("prune_scorer")
    prune: dict[str, Any] = {"keep_ratio": float(state.get("keep_ratio") if keep_ratio is None else keep_ratio),
                             "scorer": scorer}
    if scorer in MODEL_SCORERS:
        prune["model"] = model_name()
    return {"saliency": current_saliency(), "strategy": "uniform",
            "params": {"patch_size": int(patch_size or state.get("prune_patch"))}, "solve_budget": None,
            "prune": prune, "vit": state.get("vit"), "device": state.device()}


def with_query(settings: dict[str, Any], query: dict[str, Any] | None) -> dict[str, Any]:
    """``settings`` with the export format's ``query`` record (``{"query": Query dict, "weight": w}``,
    or None): the query becomes part of what is computed, cached and exported."""
    return {**settings, "query": query}


def query_pair(settings: dict[str, Any], tokens: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(with the query, without it)`` at equal tokens. A budget strategy without a budget (the
    quadtree's threshold mode) is solved for ``tokens`` on both sides (``solve_budget``: the library's
    budget mode); a layout with a budget keeps it; pruning keeps the same ratio of the same grid."""
    with_q = dict(settings)
    if (tokens is not None and settings["strategy"] in BUDGET_STRATEGIES
            and settings["params"].get("budget") is None and settings.get("solve_budget") is None):
        with_q["solve_budget"] = int(tokens)  # budget mode: the threshold / budget params do not apply
        with_q["params"] = {k: v for k, v in settings["params"].items() if k not in ("budget", "threshold")}
        if settings["strategy"] == "multiscale":  # budget mode's own params: the search, not the hull's
            with_q["params"] = {"scales": search_scales(state.get("scales"))}
    return with_q, {**with_q, "query": None}


def describe(settings: dict) -> str:
    """A short label of a settings dict, e.g. ``quadtree · std · 8-64 px``."""
    p = settings["params"]
    if settings["strategy"] == "quadtree":
        text = f"quadtree · {p.get('importance', 'std')} · {p.get('min_size')}-{p.get('max_size')} px"
    elif settings["strategy"] == "multiscale":
        if p.get("threshold") is not None and p.get("budget") is None and settings.get("solve_budget") is None:
            text = "multiscale · λ over the quadtree and uniform grids"
        else:
            text = f"multiscale · {search_word(p.get('scales', DEFAULT_SCALES))}"
    elif settings["strategy"] == "learned_selector":
        text = f"learned selector · top-{p.get('k')} cells · model input frame"
    elif settings["strategy"] == "greedy":
        sizes = p.get("patch_sizes") or []
        rule = "distortion" if p.get("allocation") == "distortion" else settings["saliency"]["method"]
        text = f"greedy · {rule} · {min(sizes)}-{max(sizes)} px" if sizes else "greedy"
    else:
        text = "uniform grid" + (f" · {p['patch_size']} px" if "patch_size" in p else "")
    if settings.get("prune"):
        text += f" · keep {settings['prune']['keep_ratio']:.0%}"
        scorer = settings["prune"].get("scorer", settings["prune"].get("reduce"))
        if scorer in MODEL_SCORERS:
            text += f" · {scorer} scorer · model input frame"
    q = settings.get("query")
    if q is not None and q.get("weight", 0) > 0:
        text += f" · {q['query'].get('kind', 'query')} query, weight {float(q['weight']):.2f}"
    return text
