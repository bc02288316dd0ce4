"""Names that refer to models, without loading any: the bundled task model's source name and the
checkpoint file suffixes.

Torch-free on purpose: the settings format (``adapatch.export``) and the app's model picker need
these names before (and often without) any model code runs.
"""

TASK = "task"
"""Source name of the bundled task model (in settings, snippets and ``resolve_model``)."""
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
"""Checkpoint file suffixes (compared lower-cased: ``X.SAFETENSORS`` is a safetensors file)."""

OPEN_CLIP_HINT = "text queries need open_clip (pip install open_clip_torch)"
"""The first half of every "text queries cannot run here" line."""


def open_clip_missing() -> str | None:
    """The one-line reason when open_clip is not installed at all, else None. A file-system lookup
    only: the app's query controls ask on every first paint, and importing open_clip (or
    ``adapatch.model``) would load torch for an answer that needs neither."""
    import importlib.util

    return f"{OPEN_CLIP_HINT}; it is not installed" if importlib.util.find_spec("open_clip") is None else None
