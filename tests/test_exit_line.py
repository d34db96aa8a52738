"""The line a pipeline leaves at shutdown reads as sentences: what was lost and why, where the dead letters are, what to run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from .helpers import ScriptedSink
from .test_delivery import make_pipeline, record


def test_the_exit_line_says_where_the_dead_letters_are_and_how_to_see_them(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = make_pipeline(data_dir, ScriptedSink("otlp", default="permanent"))
    for i in range(10):
        assert pipeline.offer(record(i))
    caplog.set_level(logging.WARNING, logger="otel_recursive_metrics")
    assert pipeline.shutdown(30.0) is False  # ten points were dead-lettered
    [line] = [r.getMessage() for r in caplog.records if "in this process" in r.getMessage()]
    assert "10 point(s) dead-lettered, kept in " + str(data_dir / "dead-letter") in line, line
    assert f"otel-recursive-metrics dlq list --dir {data_dir}" in line, line
    assert "dead-lettered 10 into" not in line  # the old wording, which did not read as a sentence
    assert line.endswith("docs/guarantees.md says what each reason means."), line
