"""The layout's own rules, checked on the source: no private reaches, modules small enough to read.

- A module never reads or writes another module's private attribute (``thing._name`` where
  ``_name`` is not defined in the module doing it): each such reach is a missing public member,
  or code in the wrong module.
- No module is longer than about 400 lines unless it says why at its top ("Why this module is
  long:" in its docstring).
- The public paths users rely on still import.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "otel_recursive_metrics"
MAX_LINES = 420


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


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
    long = []
    for path in modules():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES and "Why this module is long:" not in text[:4000]:
            long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert not long, "modules over ~400 lines without a reason at their top:\n" + "\n".join(long)


def test_the_public_paths_users_rely_on_still_import() -> None:
    for module, name in [
        ("otel_recursive_metrics", "RecursiveMetricExporter"),
        ("otel_recursive_metrics", "configure"),
        ("otel_recursive_metrics", "TrainingMetrics"),
        ("otel_recursive_metrics.exporter", "RecursiveMetricExporter"),
        ("otel_recursive_metrics.training", "TrainingMetrics"),
        ("otel_recursive_metrics.async_metrics_collector", "AsyncMetricsCollector"),
        ("otel_recursive_metrics.async_metrics_collector", "get_async_metrics_collector"),
        ("otel_recursive_metrics.metrics_store", "MetricsStore"),
        ("otel_recursive_metrics.metrics_store", "get_metrics_store"),
        ("otel_recursive_metrics.cli", "main"),
        ("otel_recursive_metrics.store", "PointStore"),
    ]:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    for integration in ("hf", "lightning", "keras"):
        assert (PACKAGE / "integrations" / f"{integration}.py").exists()
