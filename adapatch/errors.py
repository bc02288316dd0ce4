"""Exceptions raised by adapatch."""

from __future__ import annotations


class ImageError(ValueError):
    """An image could not be loaded or is unusable; the message is one human-readable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
