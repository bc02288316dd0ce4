"""Warnings above model-based results on images the bundled model was not trained for, with the
"Use a digit sample" button.

Apart from ``model_source`` (which holds the rule, ``not_trained_for``) because the button opens the
sample ``model_view.default_sample`` picks, and ``model_view`` sits above ``model_source``.
"""

from __future__ import annotations

import streamlit as st

from . import state
from .model_source import ModelRef, not_trained_for, run_device
from .model_view import default_sample


def image_caveat(ref: ModelRef | str, image_key: str, what: str = "what it shows here") -> bool:
    """Above a model-based result: with the bundled model on an image that is not one of its digits
    (``not_trained_for``), say plainly that ``what`` is not meaningful, and offer a digit sample.
    Returns whether it warned."""
    if not not_trained_for(ref, image_key):
        return False
    c1, c2 = st.columns([2.6, 1], vertical_alignment="center")
    c1.warning(f"This image is not a cluttered digit: the bundled model was trained on digits only, so {what} is "
               "not meaningful.", icon=":material/warning:")
    c2.button("Use a digit sample", key="w_model_use_digit", on_click=use_digit_sample, icon=":material/pin:",
              help="Open the digit sample the bundled model classifies best (right on its full grid and after "
                   "pruning at the Token pruning page's keep ratio, the one it is most sure of).")
    return True


def settings_caveat(settings: dict, image_key: str) -> bool:
    """``image_caveat`` for a result whose settings use the attention saliency (the Saliency page's
    method, as an importance or a token score) of the bundled model, on an image that is not one of
    its digits. Returns whether it warned."""
    from adapatch.export import needs_saliency
    sal = settings.get("saliency") or {}
    if sal.get("method") != "attention" or not needs_saliency(settings):
        return False
    return image_caveat(str((sal.get("params") or {}).get("model") or "task"), image_key,
                        what="its attention saliency (the Saliency page's method, which this result uses)")


def use_digit_sample() -> None:
    """Button callback: make a digit sample the current image (sidebar included): the one that
    shows the model at its best (``model_view.default_sample`` at the Token pruning keep ratio: right
    on the full grid and after pruning), never simply the first, which the model may get wrong."""
    try:
        key = "sample:" + default_sample(float(state.get("keep_ratio")), run_device())
    except (ValueError, IndexError):  # no task samples installed
        return
    state.set_current(key)
    st.session_state["w_image"] = key
    st.rerun()  # from a callback: the whole app reruns (not just the fragment), so the sidebar follows
