"""`opentelemetry-bootstrap` works with what the ``instrument`` extra brings (issue 20, section 2).

Bootstrap installs ``opentelemetry-instrumentation-<library>==`` its own version for each library
it finds. With ``opentelemetry-distro`` resolved to 0.66b2 while most instrumentations stopped at
0.66b1 on the index, ``bootstrap -a install`` failed ("No matching distribution found for
opentelemetry-instrumentation-flask==0.66b2"). The extra now pins one release of the family.

- Offline: the pins are one release; ``bootstrap -a requirements`` (it only reads what is
  installed) names every instrumentation at that release.
- Under CI=true (the network is there): a fresh virtualenv with the ``instrument`` extra, where
  ``bootstrap -a install`` succeeds and ``pip check`` is clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import required_in_ci
from .instrument_site import ROOT, Site

FAMILY = "opentelemetry-instrumentation"  # bootstrap's own distribution, and the prefix of what it names
CORE = ("opentelemetry-api", "opentelemetry-sdk")


def instrument_pins(tmp_path: Path) -> dict[str, str]:
    """The ``instrument`` extra's requirements as pyproject.toml declares them: name -> pinned version."""
    [info] = list(Site(tmp_path / "site").paths[0].glob("*.egg-info"))
    pins = {}
    for line in metadata.PathDistribution(info).requires or []:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": "instrument"}):
            continue
        [spec] = list(req.specifier) or [None]
        assert spec is not None and spec.operator == "==", f"the instrument extra's {line!r} is not pinned to one version (==)"
        pins[req.name] = spec.version
    return pins


def bootstrap(python: Path, action: str, *, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    command = [str(python.with_name("opentelemetry-bootstrap")), "-a", action]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def named_requirements(stdout: str) -> list[Requirement]:
    return [Requirement(line) for line in stdout.splitlines() if line.strip()]


def test_the_extra_pins_one_release_of_the_family(tmp_path: Path) -> None:
    pins = instrument_pins(tmp_path)
    assert FAMILY in pins and set(CORE) <= set(pins), pins
    # Contrib 0.<N>b<M> is released with core 1.<N-21>.<M> (0.66b1 with 1.45.1, 0.48b0 with
    # 1.27.0): opentelemetry-semantic-conventions 0.<N>b<M> requires that API exactly. A
    # convention, checked here so that one pin is not moved without the others; the next test
    # reads the real requirement from the installed metadata.
    minor, _, patch = pins[FAMILY].removeprefix("0.").partition("b")
    assert {pins[name] for name in CORE} == {f"1.{int(minor) - 21}.{patch}"}, pins


def test_bootstrap_names_every_instrumentation_at_the_pinned_release(tmp_path: Path) -> None:
    pins = instrument_pins(tmp_path)
    installed = {name: metadata.version(name) for name in (FAMILY, *CORE)}
    if any(installed[name] != pins[name] for name in installed):
        required_in_ci(f"this environment has {installed}, the instrument extra pins {pins}: reinstall with pip install -e '.[test]'")
    # The installed set holds together: the instrumentation's semantic conventions are the API's.
    conventions = _pinned(metadata.requires(FAMILY) or [], "opentelemetry-semantic-conventions")
    assert _pinned(metadata.requires("opentelemetry-semantic-conventions") or [], "opentelemetry-api") == pins["opentelemetry-api"]
    assert metadata.version("opentelemetry-semantic-conventions") == conventions
    done = bootstrap(Path(sys.executable), "requirements")
    assert done.returncode == 0, done.stderr
    named = named_requirements(done.stdout)
    # sqlite3, threading, urllib, ... are in the standard library: bootstrap always names some.
    assert named, done.stdout
    wrong = [str(req) for req in named if not req.name.startswith(FAMILY + "-") or str(req.specifier) != f"=={pins[FAMILY]}"]
    assert not wrong, f"bootstrap names requirements outside the pinned release {pins[FAMILY]}: {wrong}"


def _pinned(requires: list[str], name: str) -> str:
    [req] = [Requirement(line) for line in requires if Requirement(line).name == name and Requirement(line).marker is None]
    [spec] = list(req.specifier)
    return spec.version


def _copy_checkout(target: Path) -> Path:
    # pip builds in the source folder (build/, *.egg-info): build a copy, not the checkout.
    ignore = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".venv", "benchmarks")
    return Path(shutil.copytree(ROOT, target, ignore=ignore))


@pytest.mark.slow
def test_bootstrap_install_succeeds_in_a_fresh_virtualenv_with_the_extra(tmp_path: Path) -> None:
    if os.environ.get("CI", "").lower() != "true":
        pytest.skip("needs the package index: runs under CI=true (.ci/run), where it must pass")
    source = _copy_checkout(tmp_path / "checkout")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"

    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{source}[instrument]"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"installing the instrument extra failed: {done.stderr[-2000:]}"
    requirements = bootstrap(python, "requirements")
    assert requirements.returncode == 0, requirements.stderr
    pins = instrument_pins(tmp_path)
    assert {str(req.specifier) for req in named_requirements(requirements.stdout)} == {f"=={pins[FAMILY]}"}, requirements.stdout
    installed = bootstrap(python, "install", timeout_s=900)
    assert installed.returncode == 0, f"opentelemetry-bootstrap -a install failed:\n{installed.stdout}\n{installed.stderr}"
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout
