"""adapatch: content-aware (adaptive) patching of images for Vision Transformers."""

from .errors import ImageError
from .layout import PatchLayout, uniform
from .patches import extract_patches, reconstruct
from .device import resolve_device

__all__ = ["ImageError", "PatchLayout", "uniform", "extract_patches", "reconstruct", "resolve_device"]
__version__ = "0.1.0"
