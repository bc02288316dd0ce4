"""Settings that reproduce a layout: a JSON-able dict, the layout it gives, and a Python snippet.

The Streamlit app describes every result it shows with a *settings* dict (see ``SETTINGS_KEYS``)
and computes it with ``layout_from_settings``; ``settings_snippet`` turns the same dict into a
ready-to-run script that makes the same calls to ``adapatch`` (tests exec the snippet and compare
layouts), so a result tuned in the app can be reproduced outside it.

Settings (``"format": "adapatch.settings/1"``)::

    image:       {"source": "sample:astronaut" | "<file name>", "resize": [h, w] | None}
    saliency:    {"method": "edges", "params": {...}}  (used by greedy, saliency importances, pruning)
    strategy:    "quadtree" | "greedy" | "multiscale" | "uniform" | "learned_selector" (``STRATEGIES`` +
                 ``MODEL_STRATEGIES``)
    params:      keyword arguments of the strategy (``make_layout``)
    solve_budget: None | int   -> ``layout_for_budget(image, strategy, solve_budget, ...)``
    prune:       None | {"keep_ratio": r, "scorer": "mean" | "max" | "learned" | "attention",
                         "model": None | "task" | "<checkpoint file>" | "<timm name>"}
                 mean/max: saliency per token (``token_scores`` + ``prune``); learned/attention: the
                 model's ``TokenPruner`` / EViT attentive pruning (``adapatch.model``) on a uniform grid.
                 Older settings ``{"keep_ratio", "reduce": "mean" | "max"}`` are read as ``scorer``.
    vit:         ViT preset for the FLOPs numbers;  device: "auto" | "cpu" | "cuda"
    relative_budget: None | {"unit": "fraction" | "tokens_per_mp", "value": v}  (``adapatch.budgets``)
                 the relative setting the budget came from (the app keeps the fraction of the 16 px
                 grid between images); a record only: the budget used is params.budget /
                 solve_budget (the relative budget of this image, kept within the strategy's range)
    query:       None | {"query": <adapatch.Query.to_dict()>, "weight": w in [0, 1]}  (``adapatch.query``)
                 query-aware patching: ``query_map(image, ...)`` of the image the result is computed
                 on (``frame_image``: region coordinates are in its pixels), mixed with weight ``w``
                 into the layout (``query=``, ``query_weight=``; uniform ignores it; the learned
                 selector ranks its cells by it) and into the pruning, if any. A class query names
                 its model (``query.model``), which counts as the settings' one model.

Model-based settings (``MODEL_STRATEGIES``: strategy ``"learned_selector"`` with params
``{"k", "model"}``; or a learned/attention ``prune``) work in the model's input frame: the image is
resized to the model's ``img_size`` square first (``frame_image``), and the layout refers to that
frame. Model calls run on the settings' ``device`` (``"auto"``: CUDA when present, else CPU;
``settings_device``): the model is loaded there and the snippet names the same device, so the app
and the snippet make the same calls. CPU and CUDA give the same kept tokens and predictions (scores
to ~1e-4; ``tests/test_model_device.py``).
The attention saliency names its model in ``saliency.params.model``. One settings dict refers to at
most one model (``settings_model``); ``"task"`` is the bundled cluttered-digits model.
"""

from __future__ import annotations

import json
import keyword
from typing import Any

import numpy as np

from .budgets import RelativeBudget
from .importance import SALIENCY_MEASURES
from .layout import PatchLayout
from .model_refs import CHECKPOINT_SUFFIXES
from .model_refs import TASK as TASK_MODEL
from .pruning import prune, token_scores
from .query import Query, check_query_weight, query_map
from .saliency import saliency as compute_saliency
from .strategies import STRATEGIES, layout_for_budget, make_layout
from .validation import check_choice

SETTINGS_FORMAT = "adapatch.settings/1"
SETTINGS_KEYS = ("format", "image", "saliency", "strategy", "params", "solve_budget", "prune", "vit", "device",
                 "relative_budget", "query")
SALIENCY_SCORERS = ("mean", "max")
MODEL_SCORERS = ("learned", "attention")
PRUNE_SCORERS = SALIENCY_SCORERS + MODEL_SCORERS
MODEL_STRATEGIES = ("learned_selector",)


def normalize_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A complete, JSON-able copy of ``settings`` with defaults filled in (raises ``ValueError``)."""
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
    unknown = set(settings) - set(SETTINGS_KEYS)
    if unknown:
        raise ValueError(f"unknown settings key(s) {sorted(unknown)}; allowed: {', '.join(SETTINGS_KEYS)}")
    s = json.loads(json.dumps(settings, default=_json_default))  # deep copy, plain types only
    fmt = s.get("format", SETTINGS_FORMAT)
    if fmt != SETTINGS_FORMAT:
        raise ValueError(f"settings format must be {SETTINGS_FORMAT!r}, got {fmt!r}")
    image = s.get("image") or {}
    sal = s.get("saliency") or {"method": "edges", "params": {}}
    prune_s = s.get("prune")
    out = {
        "format": SETTINGS_FORMAT,
        "image": {"source": str(image.get("source", "image.png")), "resize": image.get("resize")},
        "saliency": {"method": str(sal.get("method", "edges")), "params": dict(sal.get("params") or {})},
        "strategy": check_choice("strategy", s.get("strategy", "quadtree"), STRATEGIES + MODEL_STRATEGIES),
        "params": dict(s.get("params") or {}),
        "solve_budget": s.get("solve_budget"),
        "prune": _normalize_prune(prune_s),
        "vit": str(s.get("vit", "ViT-B")),
        "device": str(s.get("device", "auto")),
        "relative_budget": _normalize_relative(s.get("relative_budget")),
        "query": _normalize_query(s.get("query")),
    }
    for where in ("params", "saliency"):
        params = out[where]["params"] if where == "saliency" else out[where]
        bad = [k for k in params if not (isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k))]
        if bad:  # keys become keyword arguments in the snippet: only plain Python names
            raise ValueError(f"{where} parameter names must be Python identifiers, got {bad[:3]!r}")
    resize = out["image"]["resize"]
    if resize is not None and (len(resize) != 2 or min(int(v) for v in resize) < 1):
        raise ValueError(f"image.resize must be [height, width] or None, got {resize!r}")
    if out["strategy"] in MODEL_STRATEGIES:
        out["params"]["model"] = str(out["params"].get("model") or TASK_MODEL)
        if out["prune"] is not None or out["solve_budget"] is not None:
            raise ValueError("the learned selector takes its budget as params.k; prune and solve_budget must be None")
    if out["prune"] is not None and out["prune"]["scorer"] in MODEL_SCORERS and out["strategy"] != "uniform":
        raise ValueError("learned/attention pruning runs on a uniform grid: strategy must be 'uniform'")
    if out["relative_budget"] is not None and out["solve_budget"] is None and out["params"].get("budget") is None:
        raise ValueError("relative_budget records where a budget came from, but the settings have no budget")
    if {"query", "query_weight"} & set(out["params"]):
        raise ValueError("params must not hold query or query_weight: the settings record them under 'query'")
    settings_model(out)  # one model per settings dict
    return out


def _normalize_relative(r: Any) -> dict[str, Any] | None:
    """``{"unit", "value"}`` of ``adapatch.budgets.RelativeBudget`` (checked), or None."""
    if r is None:
        return None
    if not isinstance(r, dict) or "value" not in r:
        raise ValueError(f"relative_budget must be None or a dict with unit and value, got {r!r}")
    return RelativeBudget(str(r.get("unit", "fraction")), float(r["value"])).to_dict()


def _normalize_query(q: Any) -> dict[str, Any] | None:
    """``{"query": Query.to_dict(), "weight": w}`` (checked: one-line errors naming the field), or None."""
    if q is None:
        return None
    if not isinstance(q, dict) or "query" not in q or "weight" not in q or set(q) - {"query", "weight"}:
        got = sorted(map(str, q)) if isinstance(q, dict) else type(q).__name__
        raise ValueError(f"query must be None or a dict with keys query (an adapatch.Query dict) and weight, got {got}")
    try:
        query = Query.from_dict(q["query"])
        weight = check_query_weight(q["weight"])
        return {"query": query.to_dict(), "weight": weight}
    except ValueError as e:
        raise ValueError(f"settings query: {e}") from None


def _settings_query(s: dict[str, Any]) -> Query | None:
    """The settings' ``Query`` when it is mixed in (weight above 0), else None."""
    q = s["query"]
    return None if q is None or q["weight"] == 0 else Query.from_dict(q["query"])


def _query_map_for(image: np.ndarray, s: dict[str, Any], model: Any, qmap: np.ndarray | None = None
                   ) -> dict[str, Any]:
    """``{"query": map, "query_weight": w}`` keywords for the settings' query on ``image`` ({} if none);
    ``qmap``: its map when the caller has it; a class query runs on the loaded model the settings name."""
    q = _settings_query(s)
    if q is None:
        return {}
    if qmap is not None:
        return {"query": qmap, "query_weight": s["query"]["weight"]}
    if q.kind == "class":
        from dataclasses import replace
        q = replace(q, model=resolve_settings_model(s, model))
    return {"query": query_map(image, q, device=s["device"]), "query_weight": s["query"]["weight"]}


def _normalize_prune(p: Any) -> dict[str, Any] | None:
    """``{"keep_ratio", "scorer", "model"}``; the older ``{"keep_ratio", "reduce"}`` is accepted."""
    if p is None:
        return None
    if not isinstance(p, dict) or "keep_ratio" not in p:
        raise ValueError(f"prune must be None or a dict with keep_ratio and scorer, got {p!r}")
    scorer = str(p.get("scorer", p.get("reduce", "mean")))
    if "reduce" in p and "scorer" in p and p["reduce"] != p["scorer"]:
        raise ValueError(f"prune.reduce ({p['reduce']!r}) and prune.scorer ({p['scorer']!r}) disagree")
    check_choice("prune.scorer", scorer, PRUNE_SCORERS)
    model = str(p.get("model") or TASK_MODEL) if scorer in MODEL_SCORERS else None
    return {"keep_ratio": float(p["keep_ratio"]), "scorer": scorer, "model": model}


def settings_model(settings: dict[str, Any]) -> str | None:
    """The model the settings use (``"task"``, a checkpoint file name or a timm name), or None.

    Raises ``ValueError`` when the settings name two different models.
    """
    names = set()
    if settings["strategy"] in MODEL_STRATEGIES:
        names.add(settings["params"]["model"])
    if settings["prune"] is not None and settings["prune"]["model"] is not None:
        names.add(settings["prune"]["model"])
    if settings["saliency"]["method"] == "attention" and _uses_saliency(settings):
        names.add(str(settings["saliency"]["params"].get("model") or TASK_MODEL))
    q = settings.get("query")
    if q is not None and q["weight"] > 0 and q["query"]["kind"] == "class":
        names.add(q["query"]["model"])
    if len(names) > 1:
        raise ValueError(f"settings name more than one model ({', '.join(sorted(names))}); use one")
    return next(iter(names), None)


def in_model_frame(settings: dict[str, Any]) -> bool:
    """Whether the result is computed on the image resized to the model's input (``frame_image``)."""
    s = normalize_settings(settings)
    return s["strategy"] in MODEL_STRATEGIES or (s["prune"] is not None and s["prune"]["scorer"] in MODEL_SCORERS)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"settings value of type {type(x).__name__} is not JSON-serialisable")


def needs_saliency(settings: dict[str, Any]) -> bool:
    """Whether the settings' layout uses the saliency map."""
    return _uses_saliency(normalize_settings(settings))


def _uses_saliency(s: dict[str, Any]) -> bool:
    if s["strategy"] in MODEL_STRATEGIES:
        return False
    if s["prune"] is not None:
        return s["prune"]["scorer"] in SALIENCY_SCORERS
    if s["strategy"] == "greedy":
        return s["params"].get("allocation", "saliency") == "saliency"
    return s["strategy"] == "quadtree" and s["params"].get("importance") in SALIENCY_MEASURES


def settings_device(settings: dict[str, Any]) -> str:
    """The device the settings' model calls run on, as the settings name it (``"auto"``, ``"cpu"``,
    ``"cuda[:i]"``; ``"auto"`` is CUDA when present, resolved by ``adapatch.resolve_device``)."""
    return normalize_settings(settings)["device"]


def resolve_settings_model(settings: dict[str, Any], model: Any = None) -> Any:
    """``model`` if given, else the model the settings name, loaded on the settings' device
    (``adapatch.model.resolve_model``). A given model is run on the settings' device: pass one that
    lives there (a model elsewhere is moved by the model calls)."""
    s = normalize_settings(settings)
    name = settings_model(s)
    if name is None or model is not None:
        return model
    from .model.sources import resolve_model
    return resolve_model(name, device=s["device"])


def frame_image(image: np.ndarray, settings: dict[str, Any], model: Any = None) -> np.ndarray:
    """The image the settings' layout refers to: ``image`` itself, or for model-based settings the
    image resized to the model's input (``adapatch.model.resize_for_model``)."""
    if not in_model_frame(settings):
        return image
    from .model import resize_for_model
    return resize_for_model(image, resolve_settings_model(settings, model))


def model_prune_from_settings(image: np.ndarray, settings: dict[str, Any], model: Any = None,
                              qmap: np.ndarray | None = None):
    """``adapatch.model.PruneResult`` of learned/attention prune settings on ``frame_image``.

    The grid is ``make_layout(frame, "uniform", **params)`` (the app uses the model's patch size).
    ``qmap``: the settings' query map on the frame when the caller has it (else computed).
    """
    s = normalize_settings(settings)
    if s["prune"] is None or s["prune"]["scorer"] not in MODEL_SCORERS:
        raise ValueError("settings do not describe learned or attention pruning")
    from .model import prune_tokens_attention, prune_tokens_learned
    model = resolve_settings_model(s, model)
    img = frame_image(image, s, model)
    grid = make_layout(img, "uniform", None, **s["params"])
    fn = prune_tokens_learned if s["prune"]["scorer"] == "learned" else prune_tokens_attention
    return fn(img, grid, model, keep_ratio=s["prune"]["keep_ratio"], device=s["device"],
              **_query_map_for(img, s, model, qmap))


def layout_from_settings(image: np.ndarray, settings: dict[str, Any],
                         saliency_map: np.ndarray | None = None, model: Any = None,
                         qmap: np.ndarray | None = None, multiscale_source: Any = None) -> PatchLayout:
    """The layout the settings describe, for ``image`` already loaded (and resized, if they say so).

    ``saliency_map`` may be given when the caller has it already (the app caches it); otherwise it
    is computed from ``settings["saliency"]`` when the layout needs it. ``model`` is the loaded
    model the settings name (else it is loaded by name). Model-based settings give a layout of
    ``frame_image(image, settings)``. ``qmap``: the settings' query map (``query_map`` of that image)
    when the caller has it already; otherwise it is computed. ``multiscale_source``: a
    ``multiscale.MultiscaleSource`` of ``image`` the caller keeps across budgets (same layout, faster).
    """
    s = normalize_settings(settings)
    if s["strategy"] in MODEL_STRATEGIES:
        from .model import selector_layout
        model = resolve_settings_model(s, model)
        frame = frame_image(image, s, model)
        return selector_layout(frame, model, k=s["params"].get("k"), device=s["device"],
                               **_query_map_for(frame, s, model, qmap))
    if s["prune"] is not None and s["prune"]["scorer"] in MODEL_SCORERS:
        return model_prune_from_settings(image, s, model, qmap).layout
    sal = saliency_map
    if sal is None and needs_saliency(s):
        params = dict(s["saliency"]["params"])
        if s["saliency"]["method"] == "attention":
            params["model"] = resolve_settings_model(s, model)
        sal = compute_saliency(image, s["saliency"]["method"], **params)
    query = _query_map_for(image, s, model, qmap)
    params = {**s["params"], **query}
    if s["strategy"] == "multiscale" and multiscale_source is not None:
        params["source"] = multiscale_source
    if s["solve_budget"] is not None:
        params = _without_budget(params)  # solve_budget sets the budget: a stored budget/threshold does not apply
        layout = layout_for_budget(image, s["strategy"], int(s["solve_budget"]), sal, **params)
    else:
        layout = make_layout(image, s["strategy"], sal, **params)
    if s["prune"] is not None:
        assert sal is not None  # a saliency scorer (model scorers returned above): needs_saliency held
        scores = token_scores(sal, layout, s["prune"]["scorer"])
        layout = prune(layout, scores, s["prune"]["keep_ratio"], **query)
    return layout


def _without_budget(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without ``budget``/``threshold``: with ``solve_budget`` the library solves the budget."""
    return {k: v for k, v in params.items() if k not in ("budget", "threshold")}


def _kwargs(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _model_lines(name: str, device: str) -> list[str]:
    """Lines that load the model called ``name`` into ``model`` (on ``device``, the settings' one)."""
    if name == TASK_MODEL:
        return [f"model = load_task_model(device={device!r})[0]  # the bundled cluttered-digits task model"]
    what = ("the checkpoint file you used in the app" if name.lower().endswith(CHECKPOINT_SUFFIXES)
            else "timm weights by name (needs timm and its model hub)")
    return [f"model = load_model({name!r}, device={device!r})  # {what}"]


def _query_kwargs(q: Query, device: str) -> str:
    """``query_map`` keywords of ``q`` as code (a class query uses the loaded ``model``)."""
    d = q.to_dict()
    if q.kind == "class":
        return f"model=model, target={q.target!r}, device={device!r}"
    if q.kind == "text":
        return f"text={q.text!r}, model={q.model!r}, device={device!r}"
    parts = [f"{q.kind}={tuple(d[q.kind]) if q.kind == 'box' else d[q.kind]!r}"]
    if q.falloff is not None:
        parts.append(f"falloff={q.falloff!r}")
    return ", ".join(parts)


def settings_snippet(settings: dict[str, Any]) -> str:
    """A runnable Python script reproducing ``layout_from_settings`` with plain ``adapatch`` calls.

    The script defines ``image``, ``layout`` (and ``sal`` / ``model`` when used) and prints the
    token count, efficiency and fidelity numbers. User-provided strings (file names, model names)
    appear only as Python string literals (``repr``), never as code.
    """
    s = normalize_settings(settings)
    src = s["image"]["source"]
    model_name = settings_model(s)
    frame = in_model_frame(s)
    imports = ["import adapatch as ap"]
    resize = s["image"]["resize"]
    body: list[str] = []
    if src.startswith("sample:"):
        imports.append("from adapatch.samples import sample_path")
        body.append(f"image = ap.load_image(sample_path({src[len('sample:'):]!r}))")
    else:
        body.append(f"image = ap.load_image({src!r})  # the image file you used in the app")
    if resize is not None:
        h, w = int(resize[0]), int(resize[1])
        body.append("# the app computes on images of at most a few megapixels: same downscale here")
        body.append(f"image = ap.resize_image(image, ({h}, {w}))")
    model_imports = []
    if model_name is not None:
        model_imports.append("load_task_model" if model_name == TASK_MODEL else "load_model")
        body += _model_lines(model_name, s["device"])
    if frame:
        model_imports.append("resize_for_model")
        body.append("image = resize_for_model(image, model)  # model-based results live in the model's input frame")
    q_args = ""
    query = _settings_query(s)
    if query is not None:
        body.append(f"qmap = ap.query_map(image, {_query_kwargs(query, s['device'])})  # where to spend tokens")
        q_args = f", query=qmap, query_weight={s['query']['weight']!r}"
    params = s["params"]
    if s["strategy"] in MODEL_STRATEGIES:
        model_imports.append("selector_layout")
        body.append(f"layout = selector_layout(image, model, k={params.get('k')!r}, device={s['device']!r}{q_args})")
    else:
        sal_arg = "None"
        if needs_saliency(s):
            m, p = s["saliency"]["method"], dict(s["saliency"]["params"])
            args = [repr(m)] + [f"{k}=model" if (m == "attention" and k == "model") else f"{k}={v!r}"
                                for k, v in p.items()]
            body.append(f"sal = ap.saliency(image, {', '.join(args)})")
            sal_arg = "sal"
        if s["solve_budget"] is not None:
            params = _without_budget(params)
        extra = f", {_kwargs(params)}" if params else ""
        rel = s["relative_budget"]
        if rel is not None:
            rule = (f"{100 * rel['value']:g}% of the image's 16 px grid" if rel["unit"] == "fraction"
                    else f"{rel['value']:g} tokens per megapixel")
            body.append(f"# the budget below: {rule} (adapatch.budgets.relative_budget(h, w, "
                        f"{rel['unit']}={rel['value']!r})), kept within what the strategy can use on this image")
        if s["solve_budget"] is not None:
            body.append(f"layout = ap.layout_for_budget(image, {s['strategy']!r}, {int(s['solve_budget'])}, "
                        f"{sal_arg}{extra}{q_args})")
        else:
            body.append(f"layout = ap.make_layout(image, {s['strategy']!r}, {sal_arg}{extra}{q_args})")
        pr = s["prune"]
        if pr is not None and pr["scorer"] in MODEL_SCORERS:
            fn = "prune_tokens_learned" if pr["scorer"] == "learned" else "prune_tokens_attention"
            model_imports.append(fn)
            body.append(f"result = {fn}(image, layout, model, keep_ratio={pr['keep_ratio']!r}, "
                        f"device={s['device']!r}{q_args})")
            body.append("layout = result.layout")
            body.append("print('prediction from the kept tokens:', result.prediction)")
        elif pr is not None:
            body.append(f"scores = ap.token_scores(sal, layout, {pr['scorer']!r})")
            body.append(f"layout = ap.prune(layout, scores, keep_ratio={pr['keep_ratio']!r}{q_args})")
    if model_imports:
        imports.append(f"from adapatch.model import {', '.join(sorted(set(model_imports)))}")
    lines = ["# Reproduces a layout tuned in the adapatch app.  pip install adapatch (this repo)", *imports, "", *body]
    lines += [
        "",
        f"eff = ap.efficiency(layout, vit={s['vit']!r})",
        f"fid = ap.fidelity(image, layout, device={s['device']!r})",
        "print(layout)",
        "print(f\"tokens {eff['tokens']} vs uniform-16 {eff['uniform16_tokens']} \"",
        "      f\"({100 * eff['token_reduction_vs_uniform16']:.1f}% fewer), FLOPs x{eff['flops_ratio_vs_uniform16']:.3f}, \"",  # noqa: E501 - one line of the snippet, kept whole
        "      f\"PSNR {fid['psnr']:.2f} dB, SSIM {fid['ssim']:.4f}\")",
        "# layout.to_json() gives the boxes (y, x, size); ap.render.layout_overlay(image, layout) draws them",
    ]
    return "\n".join(lines) + "\n"


def settings_json(settings: dict[str, Any], indent: int = 2) -> str:
    """The normalised settings as JSON text."""
    return json.dumps(normalize_settings(settings), indent=indent)
