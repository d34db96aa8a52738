"""Long series the web view has read, kept so that showing them again costs only what is new.

A long trace's first load decodes its chunks and cuts them to what a chart shows (a tenth of a
second or so a million points on a small machine; see :mod:`otel_recursive_metrics.store.downsample`).
Opening the same run again, another tab, or the comparison page after the run page would pay
that again. :class:`SeriesCache` keeps the downsampled answer with the snapshot row id it was
read up to; the next first load of that series reads only the points after that id (the newest
chunks, as a live update reads them) and merges them in. The store only ever appends, so held + new is exactly
what a fresh read would cover. A request for an older snapshot than the one held (a series
added to a page that loaded earlier) is read afresh and not kept.

Only downsampled series are kept (a short one is as cheap to read again), at most
``max_entries`` of them, the least recently used dropped first: a few thousand points each, so
64 entries stay under a few megabytes.

Thread-safe: a lock guards the entries; reading the store happens outside it (two first loads
of one series at once both read, and the later one is kept).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..store import PointStore
from ..store.series import RunCatalog, Series, merge_series, read_series

__all__ = ["SeriesCache"]


class SeriesCache:
    """First loads of long series, by run, metric and ``max_points``; see the module docstring."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str | None, str, int], tuple[int, Series]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def read(self, store: PointStore, catalog: RunCatalog, run: str | None, metric: str, *, until_id: int, max_points: int) -> Series:
        """Like :func:`read_series` without ``after_id``, from the entry held where there is one."""
        key = (run, metric, max_points)
        with self._lock:
            held = self._entries.get(key)
            if held is not None:
                self._entries.move_to_end(key)
        if held is not None and held[0] <= until_id:
            self.hits += 1
            news = read_series(store, catalog, run, metric, until_id=until_id, after_id=held[0], max_points=max_points)
            series = merge_series(held[1], news, max_points) if news.traces else held[1]
        else:
            self.misses += 1
            series = read_series(store, catalog, run, metric, until_id=until_id, max_points=max_points)
        if series.downsampled and (held is None or held[0] <= until_id):
            with self._lock:
                self._entries[key] = (until_id, series)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return series
