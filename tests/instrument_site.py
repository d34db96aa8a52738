"""Run ``opentelemetry-instrument python child.py`` against this checkout's package metadata.

``opentelemetry-instrument`` finds the distro, the configurator and the exporters by entry
point, in the installed package metadata. The test environment's metadata may come from another
checkout (an editable install elsewhere) and holds packages a user's install from the
``instrument`` extra does not (``opentelemetry-distro``, the OTLP exporters). So the child runs
with folders first on its ``PYTHONPATH`` that stand for the install being modelled:

- this checkout's metadata, made by setuptools from pyproject.toml (``egg_info``), so the entry
  points are the ones this commit declares;
- a stand-in with no entry points for each distribution to leave out: Python's metadata lookup
  keeps the first distribution of a name on the path, so the installed one is not seen;
- optionally, a copy of ``opentelemetry-distro``'s metadata listed before ours (the order in
  which OpenTelemetry would load the stock distro first).

The code imported is this checkout's (its root is on the path too); only metadata is arranged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

__all__ = ["OTLP_EXPORTERS", "ROOT", "STOCK_DISTRO", "Site", "run_instrumented"]

ROOT = Path(__file__).resolve().parents[1]
STOCK_DISTRO = "opentelemetry-distro"
#: The distributions that register the ``otlp`` exporters: absent from an ``instrument`` install.
OTLP_EXPORTERS = ("opentelemetry-exporter-otlp", "opentelemetry-exporter-otlp-proto-grpc", "opentelemetry-exporter-otlp-proto-http")


class Site:
    """The folders to put first on the child's ``PYTHONPATH``, in order."""

    def __init__(self, folder: Path, *, hide: Iterable[str] = (), stock_distro_first: bool = False) -> None:
        self.paths: list[Path] = []
        if stock_distro_first:
            first = folder / "stock-first"
            _write_dist(first, STOCK_DISTRO, metadata.distribution(STOCK_DISTRO).read_text("entry_points.txt") or "")
            self.paths.append(first)
        ours = folder / "checkout"
        ours.mkdir(parents=True)
        done = subprocess.run(
            [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info", "--egg-base", str(ours)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"setuptools egg_info failed: {done.stderr}"
        for name in hide:
            _write_dist(ours, name, None)
        self.paths.append(ours)
        self.paths.append(ROOT)


def _write_dist(folder: Path, name: str, entry_points: str | None) -> None:
    info = folder / f"{name.replace('-', '_')}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def run_instrumented(script: Path, site: Site, variables: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument python script`` with no ``OTEL_*`` variable but ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    env.update(variables)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in site.paths)
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    assert instrument.exists(), "opentelemetry-instrument comes with the instrument extra (pip install -e '.[test]')"
    return subprocess.run(
        [str(instrument), sys.executable, str(script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
