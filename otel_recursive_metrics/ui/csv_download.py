"""``GET /api/csv?run=R[&run=...]&metric=M``: a chart's data as CSV, every point, full precision.

The chart shows what fits on it (min and max per bucket); the download has every point the store
holds up to the snapshot (``until_id``, default the newest point), streamed a chunk at a time.
Columns::

    run,metric,unit,rank,restart,attributes,step,time_utc,time_unix_nano,value

one row a point, per run, rank and metric description in the order written; ``attributes`` is the
point's attribute set as JSON, ``value`` a histogram's mean. Numbers are written with ``repr``, the
shortest text that reads back as the same float (``0.1`` stays ``0.1``, ``2/3`` keeps 17 digits).

Cells a spreadsheet could take for a formula: a run id, metric name, unit or attribute set is
the user's text, and Excel, LibreOffice and Google Sheets run a cell that starts with ``=``,
``+``, ``-`` or ``@`` (a tab or carriage return too) as a formula (``=HYPERLINK(...)``,
``=cmd|...``). Such a text cell gets a leading ``'``, which those programs read as "this is
text" and hide (OWASP's advice for CSV injection). Numeric cells are never touched: ``-0.5``
stays a number. The cost: a program that reads the CSV as data sees the quote in those few
cells, which is why it is the text cells alone.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..model.resource import RANK_KEY, RESTART_COUNT_KEY
from ..store import PointStore
from ..store.series import RunCatalog, series_rows
from .api import RequestError, run_param, snapshot

__all__ = ["CSV_COLUMNS", "FORMULA_STARTS", "MAX_RUNS_PER_DOWNLOAD", "SeriesDownload", "text_cell"]

CSV_COLUMNS = ("run", "metric", "unit", "rank", "restart", "attributes", "step", "time_utc", "time_unix_nano", "value")
#: What a spreadsheet reads as the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_RUNS_PER_DOWNLOAD = 400
_ROW_ID, _RESOURCE, _ATTRIBUTES, _STEP, _TIME, _VALUE = range(6)


def text_cell(value: Any) -> str:
    """A user's text for a CSV cell: with a leading ``'`` where a spreadsheet would see a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _number_cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _time_utc(time_unix_nano: int) -> str:
    seconds, nanos = divmod(int(time_unix_nano), 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass
class SeriesDownload:
    """A checked request for a CSV: which runs and metric, up to which point id, and its file name."""

    runs: list[str]
    metric: str
    until_id: int
    filename: str

    @classmethod
    def from_params(cls, store: PointStore, params: Mapping[str, Sequence[str]]) -> SeriesDownload:
        """Check the query (RequestError names what is wrong) and take the snapshot."""
        runs = list(dict.fromkeys(params.get("run") or []))
        metrics = params.get("metric") or []
        if not runs or len(metrics) != 1:
            raise RequestError(f"give run (once per run) and exactly one metric (got {len(runs)} runs, {len(metrics)} metrics)")
        if len(runs) > MAX_RUNS_PER_DOWNLOAD:
            raise RequestError(f"{len(runs)} runs: at most {MAX_RUNS_PER_DOWNLOAD} a download")
        _, until_id = snapshot(store, params)
        stem = (runs[0] + "-" if len(runs) == 1 else "") + metrics[0]
        # ASCII letters, digits, dot, dash and underscore only: the name goes into a header.
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:100] or "series"
        return cls(runs, metrics[0], until_id, f"{safe}.csv")

    def lines(self, store: PointStore) -> Iterator[str]:
        """The CSV text, a chunk at a time; closes ``store`` at the end (it is the download's own)."""
        try:
            catalog = RunCatalog(store)
            unit = text_cell(catalog.units.get(self.metric, ""))
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            attribute_texts: dict[int, str] = {}
            for run_text in self.runs:
                run_cell, metric_cell = text_cell(run_text), text_cell(self.metric)
                for rows in series_rows(store, catalog, run_param(run_text), self.metric, until_id=self.until_id):
                    missing = {row[_ATTRIBUTES] for row in rows} - attribute_texts.keys()
                    for attributes_id, attributes in catalog.attribute_sets(missing).items():
                        attribute_texts[attributes_id] = text_cell(json.dumps(attributes, sort_keys=True, ensure_ascii=False))
                    for row in rows:
                        resource = catalog.resources.get(row[_RESOURCE], {})
                        writer.writerow(
                            (
                                run_cell,
                                metric_cell,
                                unit,
                                _resource_cell(resource.get(RANK_KEY)),
                                _resource_cell(resource.get(RESTART_COUNT_KEY)),
                                attribute_texts.get(row[_ATTRIBUTES], ""),
                                _number_cell(row[_STEP]),
                                _time_utc(row[_TIME]),
                                str(row[_TIME]),
                                _number_cell(row[_VALUE]),
                            )
                        )
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()
        finally:
            store.close()


def _resource_cell(value: Any) -> str:
    """A rank or restart count: a number as it is, anything else as the user's text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_cell(value)
    return text_cell(value)
