"""Converting a version-3 store (a row a point) to version 4 (chunks): time, peak RSS and file sizes (issue 21).

    python benchmarks/bench_migrate.py                  # 20 series x 500,000 steps = 10 M points: minutes
    python benchmarks/bench_migrate.py --steps 50000    # 1 M points
    python benchmarks/bench_migrate.py --out FILE       # default: results/<date>-<commit>-migrate.md

The store is made by ``tests/legacy_stores.py`` (``write_training_store``): version 3's own schema
text, its rows written in batches of 400 steps grouped by series, as version 3 wrote them; 2 ranks
(resources) x (9 float gauges, a noisy random walk, and an integer counter) = 20 series, with steps
and epochs. Each row of the table runs in a fresh child process on a fresh copy of that file:

- ``read-only open``: ``PointStore(path, readonly=True)``, which reads the rows as TEMP chunks
  (``migrate.readable_rows``); the file is checked unchanged;
- ``convert``: ``PointStore(path)``, which converts the file (``migrate.convert_rows``), VACUUM
  included;
- ``convert, no VACUUM``: the same with the VACUUM left out (what the file keeps as free pages).

Peak RSS is the child's own: ``VmHWM`` of ``/proc/self/status`` at its end (imports count: the
interpreter with NumPy, pcodec and the package is about 40 MB before any row is read), and, beside
it, ``os.wait4``'s ``ru_maxrss``, which Linux makes at least the parent's RSS at the fork (so this
parent stays small: it never reads a store whole). The issue's bound: 10 M points under 300 MB.
``CPU s`` is the child's user and system time: on a shared machine, the steadier figure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import REPO, RESULTS, commit, machine, markdown_table, say, versions_line
from tests.legacy_stores import write_training_store

__all__ = ["main"]

_CHILD = """
import sys
from otel_recursive_metrics.store import migrate
from otel_recursive_metrics import PointStore
mode = sys.argv[2]
if mode == "novacuum":
    migrate._vacuum = lambda conn, path: False
store = PointStore(sys.argv[1], readonly=mode == "readonly")
print(store.count())
store.close()
# The peak of this process since its exec (ru_maxrss would include the parent's pages before the exec).
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def _child(path: Path, mode: str) -> dict[str, Any]:
    """Open ``path`` in a child process; its wall time, peak RSS and the points it found."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    out = child.stdout.read().split()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"the {mode} child failed with exit code {child.returncode}")
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "hwm_mb": int(out[1]) / 1024,
        "rss_mb": usage.ru_maxrss / 1024,
        "points": int(out[0]),
    }


def _digest(path: Path) -> str:
    """The file's SHA-256, read a MiB at a time (reading it whole would grow this process, and ru_maxrss of its children)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 1e6


def run(steps: int, workdir: Path) -> list[dict[str, Any]]:
    original = workdir / "v3.db"
    say(f"writing a version-3 store of 20 series x {steps:,} steps")
    total = write_training_store(original, 3, steps, ranks=2, metrics=9)
    before_mb = _size_mb(original)
    rows = []
    for label, mode in (("read-only open", "readonly"), ("convert", "convert"), ("convert, no VACUUM", "novacuum")):
        copy = workdir / f"{mode}.db"
        shutil.copy(original, copy)
        digest = _digest(copy) if mode == "readonly" else ""
        say(f"{label}: {total:,} points")
        measured = _child(copy, mode)
        if measured["points"] != total:
            raise SystemExit(f"{label}: {measured['points']} points read back, {total} written")
        if digest and _digest(copy) != digest:
            raise SystemExit("the read-only open changed the file")
        rows.append(
            {
                "step": label,
                "points": f"{total:,}",
                "wall s": f"{measured['wall_s']:.1f}",
                "points/s": f"{total / measured['wall_s']:,.0f}",
                "CPU s": f"{measured['cpu_s']:.1f}",
                "points / CPU s": f"{total / measured['cpu_s']:,.0f}",
                "peak RSS MB": f"{measured['hwm_mb']:.0f}",
                "ru_maxrss MB": f"{measured['rss_mb']:.0f}",
                "file before MB": f"{before_mb:.1f}",
                "file after MB": f"{_size_mb(copy):.1f}",
                "after / before": f"{_size_mb(copy) / before_mb:.3f}",
            }
        )
        copy.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000, help="steps per series (20 series); default 500,000 = 10 M points")
    parser.add_argument("--out", type=Path, default=None, help="results file (default: results/<date>-<commit>-migrate.md)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        rows = run(args.steps, Path(folder))
    columns = [
        "step",
        "points",
        "wall s",
        "points/s",
        "CPU s",
        "points / CPU s",
        "peak RSS MB",
        "ru_maxrss MB",
        "file before MB",
        "file after MB",
        "after / before",
    ]
    text = (
        "# Converting a version-3 store to version 4\n\n"
        f"Machine: {machine()}. Commit {commit()}. {versions_line('python', 'sqlite', 'numpy', 'pcodec')}\n\n"
        + markdown_table(rows, columns)
    )
    print(text)
    out = args.out or RESULTS / f"{time.strftime('%Y-%m-%d')}-{commit().replace('+', '-')}-migrate.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
