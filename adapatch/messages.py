"""One-line error text: a failure said on one line, cut to one length (``LINE_CHARS``).

Every message the library raises for a user and every error line the app shows goes through
``one_line``: loading a checkpoint or a timm model can fail deep inside torch, safetensors, timm or
the hub client, a decoder or a query with multi-line messages of any length. Torch-free, so the
image loader and the app's pages use the same helper as the model package.
"""

from __future__ import annotations

LINE_CHARS = 300
"""The longest error line shown or raised."""


def one_line(text: object, limit: int = LINE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary (with an ellipsis)."""
    t = " ".join(str(text).split())
    if len(t) <= limit:
        return t
    cut = t[:limit - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else t[:limit - 1]) + "…"


def first_line(e: BaseException, named: bool = False) -> str:
    """The first non-empty line of ``e``'s message (its class name when it has none), at most 200
    characters; ``named``: prefixed with the class name (``"RuntimeError: ..."``)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    return one_line(f"{type(e).__name__}: {lines[0]}" if named else lines[0], 200)


def as_value_error(e: Exception, what: str) -> ValueError:
    """``e`` as a one-line ``ValueError``: a ValueError keeps its text, anything else (TypeError,
    RuntimeError, MemoryError...) is named and prefixed with ``what``."""
    if isinstance(e, ValueError):
        return ValueError(one_line(e))
    return ValueError(one_line(f"{what}: {first_line(e)}"))
