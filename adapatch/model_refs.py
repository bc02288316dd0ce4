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
