"""The README and the docs pages document every setting, and the installed version matches the metadata."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import otel_recursive_metrics
from otel_recursive_metrics.config import SEED_KEYS, SETTINGS, env_names

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The reference parts of the README live in docs/, one page each.
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
GUARANTEES_PAGE = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in SETTINGS_PAGE]
    missing += [name for s in SETTINGS for name in env_names(s) if f"`{name}`" not in SETTINGS_PAGE]
    missing += [key for key in SEED_KEYS if f"`{key}`" not in SETTINGS_PAGE]
    assert not missing, f"docs/settings.md's table lacks: {missing}"


def test_installed_version_matches_metadata() -> None:
    assert otel_recursive_metrics.__version__ == version("otel-recursive-metrics")


def test_readme_commands_name_real_files() -> None:
    for path in ("examples/train_numpy.py", ".ci/run"):
        if path in README or path == ".ci/run":
            assert (ROOT / path).exists(), path


def test_the_settings_table_is_made_from_the_settings() -> None:
    from otel_recursive_metrics.config import settings_markdown

    assert settings_markdown() in SETTINGS_PAGE, "regenerate docs/settings.md's table from config.settings_markdown()"


def test_every_drop_reason_is_in_the_guarantees() -> None:
    from otel_recursive_metrics.pipeline.telemetry import DropReason

    missing = [r.value for r in DropReason if f"`{r.value}`" not in GUARANTEES_PAGE]
    assert not missing, f"docs/guarantees.md does not explain the drop reasons {missing}"


def test_every_test_file_the_reliability_table_names_exists() -> None:
    table = GUARANTEES_PAGE[GUARANTEES_PAGE.index("## Reliability: faults and what you get") :]
    import re

    for path in set(re.findall(r"`(tests/[a-z_]+\.py)`", table)):
        assert (ROOT / path).exists(), path
