"""Query mixing in ``multiscale`` and the learned selector: weight 0 is the query-blind result
bit for bit, a box query pulls the finest tokens into the box at equal tokens, budgets and exact
tiling hold, and multiscale's winner is judged by the query-weighted error (each box's squared
error times ``(1 - w) + w * mean(query over the box)``), computed here independently from the
reconstructed pixels."""

from __future__ import annotations

import numpy as np
import pytest

import adapatch as ap
from adapatch.multiscale import box_means, box_sums
from adapatch.patches import reconstruct

BOX = (300, 300, 430, 430)  # astronaut: the lower-right quarter, away from the face


def _spent_on(lay: ap.PatchLayout, box=BOX) -> float:
    """Tokens spent on ``box``: each token counts by the share of its pixels inside the box."""
    b = lay.boxes.astype(np.float64)
    y0, x0, y1, x1 = box
    oy = np.clip(np.minimum(b[:, 0] + b[:, 2], y1) - np.maximum(b[:, 0], y0), 0, None)
    ox = np.clip(np.minimum(b[:, 1] + b[:, 2], x1) - np.maximum(b[:, 1], x0), 0, None)
    return float((oy * ox / b[:, 2] ** 2).sum())


def _weighted_error(img: np.ndarray, lay: ap.PatchLayout, qmap: np.ndarray, w: float) -> float:
    """The query-weighted squared error of what a 16 px embedding sees, from the pixels."""
    diff = img.astype(np.float64) - reconstruct(img, lay, 16, device="cpu")
    per_pixel = np.einsum("ijc,ijc->ij", diff, diff)
    weights = (1.0 - w) + w * box_means(qmap, lay.boxes)
    return float((box_sums(per_pixel, lay.boxes) * weights).sum())


def test_box_sums_and_means_against_a_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((37, 53))
    boxes = np.array([[0, 0, 16], [32, 48, 16], [20, 40, 23], [36, 52, 5], [40, 0, 8]])  # the last: in padding
    for (y, x0, s), total, mean in zip(boxes, box_sums(x, boxes), box_means(x, boxes)):
        part = x[y:y + s, x0:x0 + s]
        assert total == pytest.approx(part.sum(), abs=1e-9)
        assert mean == pytest.approx(part.mean() if part.size else 0.0, abs=1e-12)


def test_weight_zero_is_the_query_blind_layout(astronaut) -> None:
    q = ap.query_map(astronaut, box=BOX)
    blind = ap.multiscale(astronaut, 300)
    assert ap.multiscale(astronaut, 300, query=q, query_weight=0.0) == blind
    assert ap.layout_for_budget(astronaut, "multiscale", 300, query=q, query_weight=0) == blind
    assert "query" not in blind.params


@pytest.mark.parametrize("budget", [150, 400, 900])
def test_a_box_query_pulls_the_finest_tokens_into_the_box(astronaut, budget: int) -> None:
    q = ap.query_map(astronaut, box=BOX)
    blind = ap.multiscale(astronaut, budget)
    steered = ap.multiscale(astronaut, budget, query=q, query_weight=0.7)
    steered.validate()
    assert steered.num_tokens <= budget
    assert steered.params["query"] == "map" and steered.params["query_weight"] == 0.7
    # the query moves tokens into the box: more tokens spent on its pixels than without the query, at
    # the same scale (at 150 tokens the query-blind winner is a 29 px base, the steered one 35 px:
    # compare with the query-blind quadtree on the steered base)
    base = steered.params["base_size"]
    if blind.params["base_size"] != base:
        import importlib
        ms = importlib.import_module("adapatch.multiscale")
        blind = ms._candidate(ms.MultiscaleSource(astronaut, base << 2), budget, base, 2, 16).layout
    assert _spent_on(steered) > _spent_on(blind)


@pytest.mark.parametrize("w", [0.3, 0.7, 1.0])
def test_the_winner_has_the_least_weighted_error_among_fair_rivals(astronaut, w: float) -> None:
    """Multiscale with a query is never worse, by the query-weighted error, than the equal-token
    uniform grid that fits or the quadtree with the query at the same budget (16 px base)."""
    q = ap.query_map(astronaut, box=BOX)
    budget = 400
    lay = ap.multiscale(astronaut, budget, query=q, query_weight=w)
    mine = _weighted_error(astronaut, lay, q, w)
    sizes = np.arange(1, 513)
    fit = int(sizes[np.argmax((-(-512 // sizes)) ** 2 <= budget)])  # the finest grid within the budget
    uni = ap.uniform(512, 512, fit)
    assert mine <= _weighted_error(astronaut, uni, q, w) * (1 + 1e-9)
    quad = ap.quadtree(astronaut, budget=budget, min_size=16, max_size=64, importance="distortion", query=q,
                       query_weight=w)
    assert mine <= _weighted_error(astronaut, quad, q, w) * (1 + 1e-9)


def test_weighted_errors_the_search_uses_are_exact(astronaut) -> None:
    """The candidate errors multiscale ranks by equal the weighted error from the pixels."""
    import sys

    ms = sys.modules["adapatch.multiscale"]  # the module (``adapatch.multiscale`` is the function)
    q = ap.query_map(astronaut[:300, :410], box=(40, 60, 200, 260))
    img = np.ascontiguousarray(astronaut[:300, :410])  # a canvas with padding
    qmix = ms._QueryMix(q, 0.6, "map")
    for base, levels in ((16, 2), (21, 2), (27, 0), (12, 0)):
        cand = ms._candidate(ms.MultiscaleSource(img, base << levels), 300, base, levels, 16, qmix)
        # rel 1e-6: the reference reconstructs in float32
        assert cand.error(img, 16) == pytest.approx(_weighted_error(img, cand.layout, q, 0.6), rel=1e-6)


def test_region_query_dict_and_export(astronaut) -> None:
    query = ap.Query.of(box=BOX)
    a = ap.multiscale(astronaut, 300, query=query, query_weight=0.5)
    b = ap.multiscale(astronaut, 300, query=ap.query_map(astronaut, query), query_weight=0.5)
    assert np.array_equal(a.boxes, b.boxes)
    assert a.params["query"] == query.to_dict()


# ----------------------------------------------------------------------------- learned selector
@pytest.fixture(scope="module")
def task():
    from adapatch.model import load_task_model
    return load_task_model(device="cpu")[0]


def _digit(model) -> np.ndarray:
    from adapatch.model import resize_for_model
    from adapatch.samples import load_sample
    return resize_for_model(load_sample("coffee"), model)


def test_selector_weight_zero_is_query_blind_and_a_box_steers_it(task) -> None:
    from adapatch.model import selector_layout

    model = task
    img = _digit(model)
    n = img.shape[0]
    box = (0, 0, n // 2, n // 2)  # the upper-left quarter of the model's input
    q = ap.query_map(img, box=box, falloff=0.0)
    blind = selector_layout(img, model, k=8, device="cpu")
    assert selector_layout(img, model, k=8, device="cpu", query=q, query_weight=0.0) == blind
    steered = selector_layout(img, model, k=8, device="cpu", query=q, query_weight=1.0)
    steered.validate()
    assert steered.num_tokens == 8 and steered.params["query_weight"] == 1.0
    b = steered.boxes
    assert np.all((b[:, 0] < n // 2) & (b[:, 1] < n // 2))  # w = 1: only cells the box touches
    half = selector_layout(img, model, k=8, device="cpu", query=q, query_weight=0.5)
    def inside(lay):
        return int(((lay.boxes[:, 0] < n // 2) & (lay.boxes[:, 1] < n // 2)).sum())
    assert inside(blind) <= inside(half) <= inside(steered)


def test_selector_query_map_of_another_size_is_resized_to_the_input(task) -> None:
    from adapatch.model import selector_layout

    model = task
    img = _digit(model)
    n = img.shape[0]
    big = np.kron(img, np.ones((3, 3, 1), np.float32))  # the same picture at 3x: prepare_image resizes it
    q_big = ap.query_map(big, box=(0, 0, 3 * n // 2, 3 * n // 2), falloff=0.0)
    lay = selector_layout(big, model, k=8, device="cpu", query=q_big, query_weight=1.0)
    assert np.all((lay.boxes[:, 0] < n // 2) & (lay.boxes[:, 1] < n // 2))


def test_selector_query_settings_export_and_reproduce(task, capsys) -> None:
    from adapatch.export import layout_from_settings, settings_snippet
    from adapatch.samples import load_sample

    settings = {"image": {"source": "sample:coffee", "resize": None}, "saliency": {"method": "edges", "params": {}},
                "vit": "ViT-S", "device": "cpu", "strategy": "learned_selector", "params": {"k": 6},
                "query": {"query": {"kind": "box", "box": [0, 0, 32, 32], "falloff": 0.0}, "weight": 0.9}}
    image = load_sample("coffee")
    lay = layout_from_settings(image, settings, model=task)
    blind = layout_from_settings(image, {**settings, "query": None}, model=task)
    assert lay.num_tokens == 6 and lay != blind
    assert np.all((lay.boxes[:, 0] < 32) & (lay.boxes[:, 1] < 32))
    snippet = settings_snippet(settings)
    assert "query=qmap, query_weight=0.9" in snippet
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the point of the test
    assert ns["layout"] == lay
    capsys.readouterr()


def test_selector_ties_of_a_flat_query_go_by_the_selector(task) -> None:
    """At w = 1 a hard box ties every cell inside it: the selector's own logits pick among them."""
    import torch

    from adapatch.model import selector_layout
    from adapatch.model.task import prepare_image

    model = task
    img = _digit(model)
    n = img.shape[0]
    q = ap.query_map(img, box=(0, 0, n // 2, n), falloff=0.0)  # the upper half: 32 tied cells
    lay = selector_layout(img, model, k=6, device="cpu", query=q, query_weight=1.0)
    with torch.no_grad():
        logit = model.selector(prepare_image(img, model.vit, "cpu"))[0].double().numpy()
    grid = model.config.grid_size
    upper = np.arange(grid * grid) < grid * grid // 2
    want = np.sort(np.flatnonzero(upper)[np.argsort(-logit[upper], kind="stable")[:6]])
    cells = (lay.boxes[:, 0] // model.config.patch_size) * grid + lay.boxes[:, 1] // model.config.patch_size
    assert np.array_equal(np.sort(cells), want)
