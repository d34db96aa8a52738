"""Programs the fault tests run as child processes (and kill)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

LOG_LOOP = Path(__file__).with_name("log_loop.py")


def start_log_loop(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``log_loop.py`` (see its docstring) with no OTEL_* variables of the test's own."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, str(LOG_LOOP), "--dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )


def wait_ready(child: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """Block until the child printed READY (its first step is logged)."""
    import select

    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    assert ready, "the child did not start within the deadline"
    line = child.stdout.readline()
    assert line.strip() == "READY", f"unexpected first line {line!r}; stderr: {child.stderr.read() if child.stderr else ''}"


def read_reports(path: Path) -> list[dict[str, Any]]:
    """Every report the child appended (one JSON object a line), oldest first."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the line being written when the child was killed
    return out
