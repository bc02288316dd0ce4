"""Layering: ``import adapatch`` stays light, and no module imports its way back to itself
(imports inside functions count: they hide cycles, they do not remove them; so do imports by
name: an ``importlib.import_module("...")`` literal or a plug-in target ``"package.module:function"``
is an edge like an import statement). The references upward, where a lower layer calls a plug-in of
a higher one through ``adapatch.plugins``, are exactly the ones docs/architecture.md lists."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "adapatch"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
UPWARD_HEADING = "## References upward"
_TARGET = re.compile(r"adapatch(?:\.\w+)*:\w+")
"""A plug-in registry string: ``"package.module:function"`` (``adapatch.plugins.register``)."""


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


def _owner(t: str, mods: dict[str, Path]) -> str | None:
    """The package module that dotted name ``t`` is or lies in (``a.b.c`` -> ``a.b`` if only that is
    a module), or None outside the package."""
    while t not in mods and "." in t:
        t = t.rsplit(".", 1)[0]
    return t if t in mods else None


def _called(node: ast.Call) -> str:
    """The called name: ``f`` of ``f(...)`` and of ``x.f(...)``."""
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _by_name(name: str, tree: ast.AST, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` names in strings: ``import_module("...")`` literals
    (relative ones resolved against ``__name__`` / ``__package__``) and plug-in targets."""
    pkg = name if mods[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and _called(node) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            target = node.args[0].value
            if target.startswith("."):
                anchor = node.args[1] if len(node.args) > 1 else None
                base = name if isinstance(anchor, ast.Name) and anchor.id == "__name__" else pkg
                target = importlib.util.resolve_name(target, base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _TARGET.fullmatch(node.value):
            target = node.value.partition(":")[0]
        owner = _owner(target, mods) if target else None
        if owner is not None and owner != name:
            found.add(owner)
    return found


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its source (any depth), by an
    import statement or by name (``_by_name``)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found: set[str] = _by_name(name, tree, mods)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            owner = _owner(t, mods)
            if owner is not None and owner != name:
                found.add(owner)
    return found


def _plugin_references(mods: dict[str, Path]) -> set[tuple[str, str]]:
    """``(asker, plug-in module)``: a module that calls ``plugins.load("<kind>", ...)``, and a module
    registered for that kind (``plugins.register("<kind>", name, "package.module:function")``)."""
    askers: dict[str, set[str]] = {}
    answers: dict[str, set[str]] = {}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "plugins"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            kind = node.args[0].value
            if node.func.attr == "load":
                askers.setdefault(kind, set()).add(name)
            elif node.func.attr == "register" and len(node.args) > 2 and isinstance(node.args[2], ast.Constant):
                owner = _owner(str(node.args[2].value).partition(":")[0], mods)
                if owner is not None:
                    answers.setdefault(kind, set()).add(owner)
    return {(a, b) for kind, who in askers.items() for a in who for b in answers.get(kind, ())}


def _documented_upward() -> set[tuple[str, str]]:
    """The ``- `asker` -> `module` `` lines of docs/architecture.md's references-upward section."""
    text = ARCHITECTURE.read_text()
    assert UPWARD_HEADING in text, f"docs/architecture.md has no {UPWARD_HEADING!r} section"
    section = text.split(UPWARD_HEADING, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `(adapatch[\w.]*)` -> `(adapatch[\w.]*)`", section, re.M))


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for w in graph[todo.pop()]:
            if w == goal:
                return True
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_counting_function_level_imports():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert "adapatch.app_support.compute" in graph["adapatch.app_support.ui"]  # the walk sees imports
    assert "adapatch.model.query_maps" in graph["adapatch.model_plugins"]  # ... and the plug-ins, named
    assert _cycles(graph) == []


def test_a_cycle_is_detected():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_by_name_are_edges():
    mods = {m: Path(f"{m.replace('.', '/')}.py") for m in ("adapatch.query", "adapatch.model.query_maps",
                                                             "adapatch.model.attention")}
    mods["adapatch"] = Path("adapatch/__init__.py")
    src = ('import importlib\n'
           'def f():\n    return importlib.import_module("adapatch.model.query_maps")\n'
           'plugins.register("saliency", "attention", "adapatch.model.attention:attention_method")\n'
           '"""adapatch.model.attention is named in a docstring: not an edge"""\n')
    assert _by_name("adapatch.query", ast.parse(src), mods) == {"adapatch.model.query_maps",
                                                                "adapatch.model.attention"}
    rel = 'import importlib\nimportlib.import_module(".query", __name__)\n'
    assert _by_name("adapatch", ast.parse(rel), mods) == {"adapatch.query"}


def test_the_plugin_registry_names_no_module_of_the_package():
    mods = _modules()
    assert _imports("adapatch.plugins", mods["adapatch.plugins"], mods) == set()


def test_every_reference_upward_is_a_documented_plugin():
    """What docs/architecture.md lists is what the code does, and each entry really points upward:
    the plug-in's module reaches the module that asks for it (so an import would be a cycle)."""
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    found = _plugin_references(mods)
    assert found == _documented_upward()
    assert ("adapatch.query", "adapatch.model.query_maps") in found  # the walk sees the plug-ins
    for asker, module in sorted(found):
        assert asker not in {m for m in graph if m.startswith("adapatch.model")}, asker
        assert _reaches(graph, module, asker), f"{module} does not depend on {asker}: not a reference upward"


def test_import_adapatch_loads_neither_torch_nor_streamlit():
    code = ("import adapatch, sys; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'streamlit' not in sys.modules, 'streamlit'; "
            "adapatch.quadtree(__import__('numpy').zeros((32, 32, 3), 'float32'), budget=4); "
            "assert 'torch' not in sys.modules, 'torch after a layout'; "
            "adapatch.reconstruct; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_settings_format_does_not_load_the_model_stack():
    code = ("import sys, adapatch.export as e; "
            "e.normalize_settings({'strategy': 'quadtree', 'prune': {'keep_ratio': 0.5, 'scorer': 'learned'}, "
            "'params': {}} | {'strategy': 'uniform'}); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
