"""Names that refer to models, without loading any: the bundled task model's source name, the
default device of model calls made from settings, and the checkpoint file suffixes.

Torch-free on purpose: the settings format (``adapatch.export``) and the app's model picker need
these names before (and often without) any model code runs.
"""

TASK = "task"
"""Source name of the bundled task model (in settings, snippets and ``resolve_model``)."""
MODEL_DEVICE = "cpu"
"""Default device of model calls made from settings (``adapatch.export`` and the snippets it writes,
``resolve_model``): the same kept tokens on every machine. The app's ``model_view`` calls (the Model
page, the selector map, the pruning agreement chart) run on the sidebar's device instead ("auto"
resolved by ``adapatch.resolve_device``: CUDA when present; ``model_view.model_device``), each on a
model kept for that device, so a cached model shared between sessions is never moved; CPU and CUDA
agree to ~1e-4 (``tests/test_model_device.py``)."""
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
"""Checkpoint file suffixes (compared lower-cased: ``X.SAFETENSORS`` is a safetensors file)."""
