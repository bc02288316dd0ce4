"""One-line error text for the model package: a failure said on one line, cut to a length.

Loading a checkpoint or a timm model can fail deep inside torch, safetensors, timm or the hub
client, with multi-line messages of any length; every such failure reaches the caller as a
one-line ``ValueError`` built with these helpers.
"""

from __future__ import annotations


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary (with an ellipsis)."""
    t = " ".join(str(text).split())
    if len(t) <= limit:
        return t
    cut = t[:limit - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else t[:limit - 1]) + "…"


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message (its class name when it has none), at most 200 characters."""
    return one_line((str(e).strip().splitlines() or [type(e).__name__])[0], 200)


def as_value_error(e: Exception, what: str) -> ValueError:
    """``e`` as a one-line ``ValueError``: a ValueError keeps its text, anything else (TypeError,
    RuntimeError, MemoryError...) is named and prefixed with ``what``."""
    if isinstance(e, ValueError):
        return ValueError(one_line(e))
    return ValueError(one_line(f"{what}: {first_line(e)}"))
