"""The whole bad-input corpus through the app's uploader in one batch (issue 5): each bad file
gets one error line beside its name, each good one loads, and every page keeps working."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from tests.app_helpers import app  # noqa: E402
from tests.bad_inputs import corpus  # noqa: E402

PAGES = ["pages/layout.py", "pages/saliency.py", "pages/pruning.py", "pages/compare.py", "pages/efficiency.py"]


def test_corpus_batch_through_uploader() -> None:
    files = [(f"{name.replace(' ', '_').replace('/', '_')}.png", data, "image/png")
             for name, (data, _) in corpus().items() if isinstance(data, bytes)]
    bad = {f[0] for f, (_, (_, expect)) in zip(files, [(n, v) for n, v in corpus().items() if isinstance(v[0], bytes)])
           if expect == "error"}
    at = app(timeout=180).run()
    at.file_uploader(key="uploader").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert len(errors) == len(bad), errors
    for name in bad:
        assert sum(name in e for e in errors) == 1, (name, errors)
    assert all("\n" not in e and "Traceback" not in e for e in errors)
    assert at.session_state["ap_current"].startswith("upload:")
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.main.error, (page, [e.value for e in at.main.error])
