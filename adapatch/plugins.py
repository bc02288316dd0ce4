"""Plug-ins: model-backed saliency methods and query kinds, named by string, imported on first use.

The layers that ask for them (``saliency``, ``query``) sit below ``adapatch.model`` (torch), and the
model package imports them (``adapatch.model.attention`` registers with the saliency registry,
``adapatch.model.pruning`` mixes queries in through ``adapatch.pruning``). So they must not import
the model package, nor name it: a by-name import is an edge too (it hides a cycle, it does not
remove it; ``tests/test_imports.py`` counts it). Instead ``adapatch.model_plugins``, above every
layer and imported first by ``adapatch/__init__.py`` (so before any layer), fills this registry
with ``"module:function"`` strings, and ``load(kind, name)`` imports the module when that kind is
first asked for. This module names no other module of the package.

Kinds and what their functions take:

* ``"saliency"``: ``fn(image, **params) -> [H, W]``; importing the module registers the method's
  defaults and ranges with ``adapatch.saliency.register_saliency``.
* ``"query"``: ``"class"`` -> ``fn(image, model, target, device=)``; ``"text"`` ->
  ``fn(image, text, model=, device=)``; each returns an ``[H, W]`` map in [0, 1].

The references upward that these make (who asks, which module answers) are listed in
docs/architecture.md, and ``tests/test_imports.py`` compares that list with the code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("saliency", "query")


@dataclass(frozen=True)
class Plugin:
    """One entry: ``kind``, ``name`` within the kind, ``target`` ``"package.module:function"``."""

    kind: str
    name: str
    target: str
    description: str = ""

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def function(self) -> str:
        return self.target.partition(":")[2]


_PLUGINS: dict[tuple[str, str], Plugin] = {}


def register(kind: str, name: str, target: str, description: str = "") -> None:
    """Name ``target`` (``"package.module:function"``) as the ``kind`` plug-in ``name``; nothing is
    imported until ``load``. Registering a name again replaces its target (its place is kept)."""
    if kind not in KINDS:
        raise ValueError(f"plug-in kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    module, sep, fn = str(target).partition(":")
    if not sep or not all(p.isidentifier() for p in module.split(".")) or not fn.isidentifier():
        raise ValueError(f"plug-in target must be 'package.module:function', got {target!r}")
    _PLUGINS[(kind, name)] = Plugin(kind, name, str(target), description)


def registered(kind: str) -> list[Plugin]:
    """The ``kind`` plug-ins, in registration order."""
    return [p for (k, _), p in _PLUGINS.items() if k == kind]


def get(kind: str, name: str) -> Plugin | None:
    """The entry of ``kind`` ``name``, or None."""
    return _PLUGINS.get((kind, name))


def load(kind: str, name: str) -> Callable[..., Any]:
    """The function of plug-in ``kind`` ``name``, its module imported now (``sys.modules`` first, so
    an already imported or stand-in module is used as is). Import errors propagate unchanged."""
    p = _PLUGINS.get((kind, name))
    if p is None:
        known = ", ".join(repr(q.name) for q in registered(kind)) or "none"
        raise ValueError(f"no {kind} plug-in called {name!r} (registered: {known})")
    return getattr(importlib.import_module(p.module), p.function)
