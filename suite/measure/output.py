"""Result files: atomic writes, one new folder per run, the tidy results table.

Layout of one run (``projunn-bench run --out results/runs``)::

    results/runs/20261126-231502/        # new folder per run, never reused
        results.csv  (or results.parquet)  # COLUMNS, one row per measurement
        machine.json                       # suite.measure.machine.describe() + run info

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "x.txt", "hello")
>>> (d / "x.txt").read_text()
'hello'
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from .rows import COLUMNS, Row

__all__ = [
    "FORMATS",
    "atomic_write",
    "atomic_write_text",
    "have_parquet",
    "new_run_dir",
    "require_format",
    "write_json",
    "write_table",
]

FORMATS = ("csv", "parquet")


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then ``os.replace`` it.

    Readers see the old file or the complete new one, never a partial file: if ``write``
    raises (or the process is interrupted) ``path`` is left untouched and the temporary
    file is removed. The file gets the usual permissions of a new file (readable by
    others under the common umask 022), not the private 0600 of a temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path`` (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (non-JSON values via ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def new_run_dir(root: str | os.PathLike, now: _dt.datetime | None = None) -> Path:
    """Create and return a new folder ``root/YYYYmmdd-HHMMSS[-i]``; never an existing one.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> new_run_dir(root) != new_run_dir(root)
    True
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    for i in range(10_000):
        path = root / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()  # atomic: fails if it exists
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a new run folder under {root}")


def have_parquet() -> bool:
    """Whether ``pyarrow`` (needed for ``--format parquet``) can be imported."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def require_format(fmt: str) -> str:
    """Return ``fmt`` if this machine can write it, else raise ``ValueError`` saying why.

    >>> require_format("csv")
    'csv'
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    if fmt == "parquet" and not have_parquet():
        raise ValueError("parquet needs pyarrow: pip install 'projunn-bench[parquet]'")
    return fmt


def _cell(v: Any) -> Any:
    return "" if v is None else v


def write_table(rows: Iterable[Row], path: str | os.PathLike, fmt: str = "csv") -> Path:
    """Atomically write ``rows`` (:class:`~suite.measure.rows.Row`, columns
    :data:`~suite.measure.rows.COLUMNS`) as CSV or Parquet."""
    require_format(fmt)
    rows = [row.as_dict() for row in rows]
    path = Path(path)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({c: _cell(v) for c, v in row.items()})
        atomic_write_text(path, buf.getvalue())
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {
            "n": pa.int64(),
            "k": pa.int64(),
            "value": pa.float64(),
            "iqr": pa.float64(),
            "repeat": pa.int64(),
            "step": pa.int64(),
            "cpu_share": pa.float64(),
            "contended": pa.bool_(),
        }
        schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
        table = pa.Table.from_pylist(rows, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        atomic_write(path, lambda f: f.write(data))
    return path
