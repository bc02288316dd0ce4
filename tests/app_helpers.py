"""What the AppTest tests share: the app (and a page opened in it), the no-error check, reading a metric
by its label and the Plotly charts on a page (parsed, never searched as JSON text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def app(timeout: float = 120) -> AppTest:
    """A new session of the app, not run yet; ``timeout`` is the seconds one run may take."""
    return AppTest.from_file(APP, default_timeout=timeout)


def open_page(page: str, image: str | None = None, timeout: float = 120) -> AppTest:
    """A new session run once on its first page (with ``image`` picked in the sidebar), then switched to
    ``page``, as a user arrives there. Nothing is checked: each test asserts what it expects."""
    at = app(timeout).run()
    if image is not None:
        at.selectbox(key="w_image").set_value(image).run()
    return at.switch_page(page).run()


def ok(at: AppTest) -> None:
    """No exception and no error element on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    """The value of the metric labelled ``label`` (fails, listing the labels, when there is none)."""
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def tokens(at: AppTest) -> int:
    """The "Tokens" metric as a number (the page writes it with thousands separators)."""
    return int(metric(at, "Tokens").replace(",", ""))


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def figures(at: AppTest) -> list[dict]:
    """The Plotly figures on the page, each parsed from its JSON spec (``data``, ``layout``)."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart_texts(at: AppTest) -> list[list[str]]:
    """Every string value (titles, trace names, annotations, hover templates) of each Plotly chart on
    the page, one list per chart. The chart's JSON is parsed first: Plotly may write non-ASCII
    characters as ``\\uXXXX`` escapes (7.x does), so the JSON text is no place to look for them."""
    return [list(_strings(fig)) for fig in figures(at)]


def use_quadtree(at: AppTest) -> AppTest:
    """Pick the quadtree on Patch layout (the default strategy is multiscale, the library's budget-mode
    default) and rerun: for tests about the quadtree's threshold, curve and importances."""
    at.selectbox(key="w_strategy").set_value("quadtree").run()
    return at
