"""The one row type of every results table: :class:`Row`, and the :class:`Measurement`
that a workload, a probe or a training loop produces before it knows which case it
belongs to.

A results table (``results.csv``, written by :mod:`suite.measure.output`) has one
:class:`Row` per measurement; its columns are :data:`COLUMNS`, the fields of
:class:`Row` in order: the case (``workload`` … ``options``) followed by the
measurement (``metric`` … ``samples``). Every writer builds its rows here: the sweep, the
profiler, the GPU check, the drift study and the task runs.

>>> m = Measurement("time", 1.5e-3, "s", iqr=1e-4, repeat=9)
>>> row = Row.of({"workload": "update", "method": "svd", "n": 64}, m)
>>> row.metric, row.value, row.status, COLUMNS[:3]
('time', 0.0015, 'ok', ('workload', 'method', 'n'))
>>> Row.of({"workload": "update", "method": "svd", "n": 64}, Measurement.skipped("no CUDA")).reason
'no CUDA'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "IDENTITY", "STATUSES", "Measurement", "Row"]

STATUSES = ("ok", "skipped", "error")
"""``ok``: measured; ``skipped``: cannot run here (``reason`` says why); ``error``: failed
while running (``reason`` holds the exception)."""

REASON_LIMIT = 1000
"""Longest ``reason`` kept (an exception message can be a whole tensor dump)."""


@dataclass(frozen=True)
class _Measured:
    """The measurement fields that :class:`Measurement` and :class:`Row` share."""

    metric: str = ""
    value: float | None = None
    unit: str = ""
    iqr: float | None = None
    repeat: int | None = None
    status: str = "ok"
    reason: str = ""
    step: int | None = None
    samples: str = ""
    cpu_share: float | None = None
    contended: bool | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Measurement(_Measured):
    """One metric: ``value`` in ``unit``; ``iqr``/``repeat``/``samples`` for timings
    (seconds; ``samples`` ``;``-separated); ``status`` (:data:`STATUSES`) with its
    ``reason``; ``step`` for a learning-curve row; for a timing, the ``cpu_share`` of its
    sampling and whether that makes it ``contended``
    (:data:`suite.measure.timing.CONTENDED_BELOW`)."""

    @classmethod
    def timing(cls, metric: str, t) -> Measurement:
        """A timing from a :class:`suite.measure.timing.Timing`: median seconds, IQR,
        sample count, the samples and the CPU share (contended or not)."""
        samples = ";".join(map(repr, t.samples))
        return cls(
            metric,
            t.median,
            "s",
            t.iqr,
            t.repeat,
            samples=samples,
            cpu_share=None if t.cpu_share is None else round(t.cpu_share, 4),
            contended=t.contended,
        )

    @classmethod
    def skipped(cls, reason: str, metric: str = "") -> Measurement:
        """What cannot be measured here, and why."""
        return cls(metric, None, "", status="skipped", reason=str(reason)[:REASON_LIMIT])

    @classmethod
    def error(cls, problem: BaseException | str, metric: str = "") -> Measurement:
        """A measurement that failed: the exception's type and message."""
        text = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        return cls(metric, None, "", status="error", reason=text[:REASON_LIMIT])


@dataclass(frozen=True)
class _Case:
    """The fields that say which case a :class:`Row` belongs to (:data:`IDENTITY`)."""

    workload: str
    method: str
    n: int
    k: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    options: str = ""


@dataclass(frozen=True)
class Row(_Measured, _Case):
    """One line of a results table: which case (``workload``, ``method``, ``n``, ``k``,
    ``dtype``, ``device``, ``options`` as ``name=value;...``) and what was measured (the
    fields of :class:`Measurement`). For a timing, ``value`` is the median in seconds,
    ``iqr`` the interquartile range of the samples, ``repeat`` their number and
    ``samples`` the samples themselves."""

    @classmethod
    def of(cls, identity: Mapping[str, Any], m: Measurement) -> Row:
        """The row of measurement ``m`` for the case described by ``identity`` (the
        :data:`IDENTITY` fields; :meth:`suite.measure.cases.Case.identity` gives them)."""
        unknown = set(identity) - set(IDENTITY)
        if unknown:
            raise ValueError(f"not case fields: {sorted(unknown)}; the case fields are {IDENTITY}")
        return cls(**identity, **dataclasses.asdict(m))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Row:
        """A row read back from a table (a CSV reader's strings; empty cells are ``None``).

        >>> Row.from_record({"workload": "update", "method": "svd", "n": "64", "k": "",
        ...                  "value": "0.5", "metric": "time", "status": "ok"}).n
        64
        """
        numbers = {"n": int, "k": int, "repeat": int, "step": int}
        numbers.update(value=float, iqr=float, cpu_share=float)
        fields = {}
        for name in COLUMNS:
            v = record.get(name)
            if name == "contended":
                fields[name] = None if v in (None, "") else str(v).lower() == "true"
            elif name in numbers:
                fields[name] = None if v in (None, "") else numbers[name](float(v))
            elif v is not None:
                fields[name] = str(v)
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        """The row as ``{column: value}`` (:data:`COLUMNS` order)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Row:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


COLUMNS = tuple(f.name for f in dataclasses.fields(Row))
"""The columns of a results table, in order (the fields of :class:`Row`)."""
IDENTITY = COLUMNS[: COLUMNS.index("metric")]
"""The columns that say which case a row belongs to."""
