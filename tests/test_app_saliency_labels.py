"""The Saliency page names each method's parameters in words (with help), while the settings keep the
library's parameter names, so exports and code still match."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import adapatch as ap  # noqa: E402
from tests.app_helpers import app, ok  # noqa: E402


def test_edge_parameters_have_readable_labels_and_keep_library_names() -> None:
    at = app()
    at.run()
    at.switch_page("pages/saliency.py").run()
    ok(at)
    names = list(ap.saliency_methods()["edges"].defaults)
    widgets = {n: (at.slider(key=f"w_sal_edges_{n}") if n != "ksize" else at.selectbox(key="w_sal_edges_ksize"))
               for n in names}
    for name, w in widgets.items():
        assert w.label != name and len(w.label) > len(name), w.label  # words, not the raw name
        assert f"`{name}`" in w.help  # the library's name is still given
    assert widgets["ksize"].options[0] == "0 (use the blur radius)"
    at.slider(key="w_sal_edges_low").set_value(40).run()
    ok(at)
    stored = at.session_state["ap_settings"]["saliency_params"]["edges"]
    assert stored["low"] == 40 and set(stored) == set(names)  # settings keep the library's names
    at.selectbox(key="w_saliency_method").set_value("entropy").run()
    ok(at)
    assert {at.slider(key="w_sal_entropy_window").label, at.slider(key="w_sal_entropy_bins").label} == \
        {"Window (px)", "Grey-level bins"}
