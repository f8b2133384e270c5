"""The guarded case runner and the sweep behind ``projunn-bench run``.

:func:`run_case` is the one place where a case is measured: it checks the skip rules,
builds the workload, runs the probes (:mod:`suite.measure.probes`: time, CUDA events,
memory, host syncs, profile) and frees memory afterwards. It never raises (but for
``KeyboardInterrupt`` and the recorder's SIGTERM): a case that cannot run here
(:class:`~suite.measure.cases.Skip`) gives a "skipped" row with the reason, anything else
that fails an "error" row; a probe that fails gives its own error row and the others
still run. The sweep, the GPU check (:mod:`suite.studies.gpu_check`) and the profiler
(``projunn-bench profile``) all call it.

:func:`run_sweep` runs many cases with a progress bar and writes the results table and
the machine description atomically into a new run folder, also when interrupted (Ctrl-C)
or terminated (SIGTERM, as CI time-outs send).

>>> from suite.measure.cases import GRIDS, Case
>>> found = run_case(Case("update", "unconstrained", 8), GRIDS["tiny"].settings)
>>> [r.metric for r in found.rows], found.status
(['time', 'host_peak_rss'], 'ok')
>>> run_case(Case("update", "eunn", 8)).rows[0].status
'skipped'
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import machine
from .cases import Case, Skip
from .probes import Probe, sweep_probes
from .record import Recorder
from .rows import IDENTITY, Measurement, Row
from .settings import Settings
from .workloads import WORKLOADS

__all__ = [
    "CaseResult",
    "SweepResult",
    "case_statuses",
    "contended_cases",
    "count_rows",
    "frozen_heap",
    "release",
    "run_case",
    "run_sweep",
]


@contextlib.contextmanager
def frozen_heap():
    """Leave what exists now (the imported libraries: torch, scipy, the peers, ...) out of
    the garbage collections :func:`release` runs after every case: they would scan it each
    time (0.1-0.17 s a case once the optional libraries are imported). For loops of
    :func:`run_case`; what the loop leaves behind is still collected.

    >>> with frozen_heap():
    ...     gc.get_freeze_count() > 0
    True
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release(device: str) -> None:
    """Free what a finished case left: Python garbage and, on CUDA, the cached blocks."""
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class CaseResult:
    """What :func:`run_case` measured: the ``rows`` of ``case`` and what the probes
    ``found`` (``"timing"``: the :class:`~suite.measure.timing.Timing`, ``"profile"``:
    the :class:`~suite.measure.profiling.StepProfile`)."""

    case: Case
    rows: list[Row]
    found: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """ "error" if any row failed, "skipped" if the case was skipped, else "ok"."""
        statuses = {r.status for r in self.rows}
        return "error" if "error" in statuses else "skipped" if "skipped" in statuses else "ok"


def run_case(
    case: Case, settings: Settings | None = None, probes: Sequence[Probe] | None = None
) -> CaseResult:
    """Measure ``case`` with ``probes`` (default :func:`~suite.measure.probes.sweep_probes`)
    under ``settings``; see the module docstring for how failures become rows.

    Evaluated workloads (accuracy) take no probes: their measurements are the rows.
    """
    settings = settings or Settings()
    probes = sweep_probes(settings) if probes is None else tuple(probes)
    found: dict[str, Any] = {}
    work = None
    try:
        workload = WORKLOADS[case.workload]
        if not workload.timed:
            return CaseResult(case, case.rows(workload.evaluate(case, settings)))
        work = workload.prepare(case, settings)
        measured: list[Measurement] = []
        for probe in probes:
            try:
                measured += probe(work, settings, found)
            except Skip as e:
                measured.append(Measurement.skipped(str(e), probe.name))
            except Exception as e:  # one instrument failing does not lose the others
                measured.append(Measurement.error(e, probe.name))
        return CaseResult(case, case.rows(measured), found)
    except Skip as e:
        return CaseResult(case, case.rows([Measurement.skipped(str(e))]))
    except Exception as e:  # a failing case is a result, not the end of the sweep
        return CaseResult(case, case.rows([Measurement.error(e)]))
    finally:
        del work
        release(case.device)


def count_rows(cases: Sequence[Case], settings: Settings, **options: Any) -> list[Row]:
    """The ``instructions``, ``estimated_cycles`` and ``operations`` rows of the timed CPU
    cases among ``cases``, all counted in one callgrind process
    (:func:`suite.measure.callgrind.count_cases`, ``options`` go there); skipped rows with
    the install line when valgrind is missing, error rows when the process fails.

    >>> count_rows([Case("accuracy", "svd", 8), Case("update", "svd", 8, device="cuda")],
    ...            Settings())
    []
    """
    from . import callgrind

    counted = [c for c in cases if callgrind.countable(c)]
    if not counted:
        return []
    missing = callgrind.missing_reason()
    if missing:
        return [r for c in counted for r in c.rows([Measurement.skipped(missing, "instructions")])]
    try:
        found = callgrind.count_cases(counted, settings, **options)
    except Exception as e:  # the timings are kept; the counts say what failed
        return [r for c in counted for r in c.rows([Measurement.error(e, "instructions")])]
    return [r for c in counted for r in c.rows(found.measurements(c.id))]


def case_statuses(rows: Sequence[Row]) -> Counter:
    """Cases per status ("ok", "skipped", "error") among ``rows``: a case counts as its
    worst row (error > skipped > ok).

    >>> rows = [Row("update", "svd", 8, metric="time", value=1.0), Row("update", "svd", 16,
    ...         status="error", reason="boom")]
    >>> dict(case_statuses(rows))
    {'ok': 1, 'error': 1}
    """
    worst: dict[tuple, str] = {}
    order = {"ok": 0, "skipped": 1, "error": 2}
    for r in rows:
        key = tuple(getattr(r, c) for c in IDENTITY)
        if order[r.status] >= order[worst.get(key, "ok")]:
            worst[key] = r.status
    return Counter(worst.values())


def contended_cases(rows: Sequence[Row]) -> list[Row]:
    """The timing rows among ``rows`` marked contended (one per timed case and metric)."""
    return [r for r in rows if r.status == "ok" and r.unit == "s" and r.contended]


@dataclass
class SweepResult:
    """Where a sweep wrote (``folder``, ``table``, ``machine``), its rows, its ``status``
    ("complete", "interrupted", "terminated"), the number of cases ``done`` out of
    ``total`` and the recorder's ``stop_code`` (130 / 143 when stopped, else 0)."""

    folder: Path
    table: Path
    machine: Path
    rows: list[Row]
    status: str
    done: int
    total: int
    stop_code: int = 0

    @property
    def interrupted(self) -> bool:
        return self.status != "complete"

    @property
    def counts(self) -> Counter:
        """Cases per status (:func:`case_statuses`)."""
        return case_statuses(self.rows)

    @property
    def contended(self) -> list[Row]:
        """The contended timing rows (:func:`contended_cases`)."""
        return contended_cases(self.rows)


def run_sweep(
    cases: Sequence[Case],
    settings: Settings,
    out: str | Path = "results/runs",
    *,
    fmt: str = "csv",
    progress: bool = True,
    info: dict[str, Any] | None = None,
    flush_every: float = 5.0,
    instructions: bool = False,
) -> SweepResult:
    """Run ``cases`` (:func:`run_case`) into a new folder under ``out`` (a
    :class:`suite.measure.record.Recorder`); returns a :class:`SweepResult`.

    The table is rewritten atomically as cases finish and at the end; on Ctrl-C or
    SIGTERM the rows measured so far are written, ``machine.json`` records the run as
    "interrupted" / "terminated", and the sweep returns (the signal is not re-raised).

    With ``instructions``, after the timings one callgrind process counts every timed CPU
    case (:func:`count_rows`): rows ``instructions``, ``estimated_cycles`` and
    ``operations``.
    """
    from tqdm import tqdm

    run_info = {**(info or {}), "settings": dataclasses.asdict(settings)}
    run_info["cases_total"] = len(cases)
    gpu = machine.GpuMonitor(0)
    done = 0

    def summary() -> dict[str, Any]:
        return {
            "cases_done": done,
            "case_status": dict(case_statuses(rec.rows)),
            "cases_contended": len(contended_cases(rec.rows)),
            **gpu.summary(),
        }

    rec = Recorder(out, info=run_info, fmt=fmt, flush_every=flush_every, extra_summary=summary)
    with rec:
        bar = tqdm(cases, file=sys.stderr, disable=not progress, unit="case", dynamic_ncols=True)
        try:
            with gpu, frozen_heap():
                for case in bar:
                    bar.set_postfix_str(case.id, refresh=False)
                    rec.add(run_case(case, settings).rows)
                    done += 1
        finally:
            bar.close()
        if instructions and done == len(cases):
            rec.add(count_rows(cases, settings))
    return SweepResult(
        rec.folder, rec.table, rec.machine, rec.rows, rec.status, done, len(cases), rec.exit_code
    )
