"""The layout's own rules, checked on the source: layers, no cycles, no private reaches, short modules.

- **Layers.** ``LAYERS`` below is the order of docs/architecture.md, bottom first. A unit (a
  sub-package, or a top-level module) imports only units of its own layer or of a lower one, and
  that holds for every import in the file: at the top, inside a function (lazy), or guarded by
  ``try``. Only imports under ``if TYPE_CHECKING:`` are left out: they never run.
- **No cycles between units**, within a layer too: two units that import each other are one unit
  in disguise.
- A module never reads or writes another module's private attribute (``thing._name`` where
  ``_name`` is not defined in the module doing it): each such reach is a missing public member,
  or code in the wrong module.
- No module is longer than 400 lines: a module's length is a fact to fix, not to excuse.
- The public paths users rely on still import.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "otel_recursive_metrics"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
MAX_LINES = 400
ROOT = "__init__"  # the package's face: importing the root package itself

# Bottom first. A unit is a sub-package (``store``) or a top-level module (``config``).
LAYERS: list[tuple[str, ...]] = [
    ("_version", "errors", "_files", "_process"),
    ("config", "model", "metric_set", "sdk_preferences"),
    ("store",),
    ("sinks", "queue"),
    ("pipeline",),
    ("training", "system", "exporter"),
    (ROOT, "meter_provider", "distro", "async_metrics_collector", "metrics_store", "integrations"),
    ("ui",),
    ("cli", "__main__"),
]
LAYER_OF = {unit: index for index, layer in enumerate(LAYERS) for unit in layer}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def unit_of(module: str) -> str:
    """The unit a dotted module path inside the package belongs to (``store.scan`` -> ``store``)."""
    return module.split(".", 1)[0] if module else ROOT


def _module_path(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run, lazy ones included; ``if TYPE_CHECKING:`` bodies are skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (imp for child in node.orelse for imp in _runtime_imports_of(child))
            continue
        yield from _runtime_imports_of(node)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _runtime_imports(node)


def imported_units(path: Path) -> Iterator[tuple[int, str]]:
    """(line, unit) for every unit of the package that ``path`` imports at run time."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_path(path)
    package = here if path.name == "__init__.py" else here[:-1]
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "otel_recursive_metrics" or alias.name.startswith("otel_recursive_metrics."):
                    yield node.lineno, unit_of(alias.name.partition(".")[2])
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.level - 1 > len(package):
                continue
            target = [*base, *(node.module.split(".") if node.module else [])]
        elif node.module and (node.module == "otel_recursive_metrics" or node.module.startswith("otel_recursive_metrics.")):
            target = node.module.split(".")[1:]
        else:
            continue
        if target:
            yield node.lineno, target[0]
            continue
        # ``from .. import x`` at the root: x is a unit if it is a module, else a name of the face.
        for alias in node.names:
            is_unit = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()
            yield node.lineno, alias.name if is_unit else ROOT


def unit_imports() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the places (file:line) that import it."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in modules():
        here = _module_path(path)
        unit = here[0] if here else ROOT
        for line, other in imported_units(path):
            if other != unit:
                graph.setdefault(unit, {}).setdefault(other, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {(_module_path(p) or [ROOT])[0] for p in modules()}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"units with no place in LAYERS (add them, and to docs/architecture.md): {missing}"


def test_no_import_runs_against_the_layer_order() -> None:
    wrong = []
    for unit, targets in sorted(unit_imports().items()):
        for other, places in sorted(targets.items()):
            if LAYER_OF.get(other, -1) > LAYER_OF.get(unit, -1):
                wrong += [f"{place}: {unit} (layer {LAYER_OF.get(unit)}) imports {other} (layer {LAYER_OF.get(other)})" for place in places]
    order = " -> ".join("/".join(layer) for layer in LAYERS)
    assert not wrong, f"imports against the layer order (bottom first: {order}):\n" + "\n".join(wrong)


def test_no_cycle_between_units() -> None:
    graph = {unit: set(targets) for unit, targets in unit_imports().items()}
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "cycles between units:\n" + "\n".join(sorted(set(cycles)))


def test_the_checker_sees_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    """The scan itself can fail: a lazy upward import is found, a TYPE_CHECKING one is not."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..cli import main\n"
        "def f():\n    try:\n        from ..pipeline import worker\n    except ImportError:\n        pass\n"
    )
    found = [node.module for node in _runtime_imports(tree) if isinstance(node, ast.ImportFrom)]
    assert found == ["typing", "pipeline"]


def test_docs_state_the_same_layer_order() -> None:
    """docs/architecture.md carries the order as one line a layer, bottom first: ``N. unit, unit``."""
    text = DOCS.read_text()
    stated = [tuple(u.strip(" `") for u in m.group(1).split(",")) for m in re.finditer(r"^\s*\d+\.\s+layer:\s*(.+)$", text, re.M)]
    assert stated == LAYERS, f"docs/architecture.md lists {stated}, the test enforces {LAYERS}"


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: attributes it assigns, functions, classes, globals."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_"):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id.startswith("_"):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
            names.add(node.target.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return names


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    reaches = []
    for path in modules():
        tree = ast.parse(path.read_text(), str(path))
        own = _private_names_defined(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                name = node.attr
                if not name.startswith("_") or name.startswith("__"):
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if name in own:
                    continue
                reaches.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: .{name}")
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level
                and any(a.name.startswith("_") and not a.name.startswith("__") for a in node.names)
            ):
                module = node.module or ""
                if not module.startswith("_") and not module.endswith("._files") and module != "_files":
                    names = [a.name for a in node.names if a.name.startswith("_")]
                    reaches.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: imports private {names} from {module}")
    assert not reaches, "private reaches across modules:\n" + "\n".join(reaches)


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    long = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in modules() if (n := p.read_text().count("\n")) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them by concept):\n" + "\n".join(long)


def test_the_public_paths_users_rely_on_still_import() -> None:
    for module, name in [
        ("otel_recursive_metrics", "RecursiveMetricExporter"),
        ("otel_recursive_metrics", "configure"),
        ("otel_recursive_metrics", "TrainingMetrics"),
        ("otel_recursive_metrics", "PointStore"),
        ("otel_recursive_metrics", "StoredPoint"),
        ("otel_recursive_metrics.exporter", "RecursiveMetricExporter"),
        ("otel_recursive_metrics.training", "TrainingMetrics"),
        ("otel_recursive_metrics.async_metrics_collector", "AsyncMetricsCollector"),
        ("otel_recursive_metrics.async_metrics_collector", "get_async_metrics_collector"),
        ("otel_recursive_metrics.metrics_store", "MetricsStore"),
        ("otel_recursive_metrics.metrics_store", "get_metrics_store"),
        ("otel_recursive_metrics.cli", "main"),
        ("otel_recursive_metrics.store", "PointStore"),
        ("otel_recursive_metrics.store", "StoredPoint"),
    ]:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    for integration in ("hf", "lightning", "keras"):  # importing them needs the frameworks
        assert (PACKAGE / "integrations" / f"{integration}.py").exists()
