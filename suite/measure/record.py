"""One results folder from start to end: what ``run`` (and every command that measures)
writes, kept consistent whatever happens.

:class:`Recorder` makes a new folder, writes ``machine.json`` with ``"status":
"running"``, rewrites the table atomically as rows arrive (at most every few seconds) and,
on exit, writes the final table and marks the run ``complete``, ``interrupted`` (Ctrl-C)
or ``terminated`` (SIGTERM, which CI time-outs send). Stop signals end the ``with`` block
quietly; :attr:`Recorder.exit_code` gives the conventional status (130 / 143).
A folder whose ``machine.json`` still says ``running`` was left by a killed process.

>>> import tempfile
>>> from suite.measure.rows import Row
>>> with Recorder(tempfile.mkdtemp(), info={"command": "demo"}) as rec:
...     rec.add([Row("update", "svd", 64, metric="time", value=1.0, unit="s")])
>>> rec.status, rec.exit_code, rec.table.name
('complete', 0, 'results.csv')
"""

from __future__ import annotations

import datetime as _dt
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import machine, output
from .rows import Row

__all__ = ["Recorder", "Terminated"]


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM during a recording."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Recorder:
    """Context manager owning one new folder under ``out`` (see the module docstring).

    ``info`` goes into ``machine.json["run"]`` (settings, argv, grid ...); ``fmt`` is the
    table format (:data:`suite.measure.output.FORMATS`); ``flush_every`` seconds between periodic
    table writes. ``extra_summary()`` (optional) adds fields to the final run info (e.g. a
    GPU monitor's summary).
    """

    def __init__(
        self,
        out: str | Path,
        *,
        info: dict[str, Any] | None = None,
        fmt: str = "csv",
        flush_every: float = 5.0,
        extra_summary=None,
    ):
        output.require_format(fmt)
        self.out, self.fmt, self.flush_every = Path(out), fmt, flush_every
        self.info = dict(info or {})
        self.extra_summary = extra_summary
        self.rows: list[Row] = []
        self.status = "running"
        self.folder: Path | None = None
        self._last_flush = 0.0
        self._old_handler = None

    @property
    def table(self) -> Path:
        return self.folder / f"results.{self.fmt}"

    @property
    def machine(self) -> Path:
        return self.folder / "machine.json"

    @property
    def exit_code(self) -> int:
        """0 when complete, 128 + the signal number when stopped (130 SIGINT, 143 SIGTERM)."""
        return {"interrupted": 128 + signal.SIGINT, "terminated": 128 + signal.SIGTERM}.get(
            self.status, 0
        )

    def add(self, rows: Iterable[Row]) -> None:
        """Append ``rows``; rewrite the table if ``flush_every`` seconds have passed."""
        rows = list(rows)
        bad = [r for r in rows if not isinstance(r, Row)]
        if bad:
            raise TypeError(f"Recorder.add takes Row objects, got {type(bad[0]).__name__}")
        self.rows.extend(rows)
        if time.monotonic() - self._last_flush > self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Atomically rewrite the table with every row so far."""
        output.write_table(self.rows, self.table, self.fmt)
        self._last_flush = time.monotonic()

    def _write_machine(self) -> None:
        output.write_json(self.machine, {**self._desc, "run": self.info})

    def __enter__(self) -> Recorder:
        self.folder = output.new_run_dir(self.out)
        self._desc = machine.describe()
        self._started = time.time()
        self.info.update(started=_now(), table=self.table.name, status="running")
        self.info["load"] = {"start": machine.load()}
        self._write_machine()
        self._last_flush = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    @staticmethod
    def _on_sigterm(signum, frame):
        raise Terminated(signum)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None
        if exc_type is None:
            self.status = "complete"
        elif issubclass(exc_type, KeyboardInterrupt):
            self.status = "interrupted"
        elif issubclass(exc_type, Terminated):
            self.status = "terminated"
        else:
            self.status = "failed"
        self.flush()
        self.info.update(
            finished=_now(),
            wall_s=round(time.time() - self._started, 3),
            status=self.status,
            interrupted=self.status in ("interrupted", "terminated"),
            peak_rss_bytes=machine.peak_rss(),
        )
        self.info["load"]["end"] = machine.load()
        if self.extra_summary is not None:
            self.info.update(self.extra_summary())
        self._write_machine()
        return self.status in ("interrupted", "terminated")  # swallow stop signals only
