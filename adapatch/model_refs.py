"""Names that refer to models, without loading any: the bundled task model's source name, the
device model calls made from settings run on, and the checkpoint file suffixes.

Torch-free on purpose: the settings format (``adapatch.export``) and the app's model picker need
these names before (and often without) any model code runs.
"""

TASK = "task"
"""Source name of the bundled task model (in settings, snippets and ``resolve_model``)."""
MODEL_DEVICE = "cpu"
"""Device of model calls made from settings (app and exported snippets): the same kept tokens on
every machine, and a cached model shared between sessions is never moved between devices."""
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
"""Checkpoint file suffixes (compared lower-cased: ``X.SAFETENSORS`` is a safetensors file)."""
