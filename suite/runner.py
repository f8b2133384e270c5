"""Run cases and sweeps: the measuring loop behind ``projunn-bench run``.

:func:`run_case` turns one :class:`~suite.cases.Case` into :class:`Measurement` rows
(timing via ``suite.timing.measure``, host peak RSS, CUDA peak memory, accuracy);
:func:`run_sweep` runs many with a progress bar and writes the results table and the
machine description atomically into a new run folder, also when interrupted (Ctrl-C) or
terminated (SIGTERM, as CI time-outs send).

>>> from suite.cases import GRIDS, Case
>>> rows = run_case(Case("update", "unconstrained", 8), GRIDS["tiny"].settings)
>>> [m.metric for m in rows]
['time', 'host_peak_rss']
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import machine
from .cases import ACCURACY_WORKLOADS, Case, Settings
from .record import Recorder
from .timing import cuda_peak_bytes, measure, reset_cuda_peak, synchronize
from .workloads import Measurement, accuracy, prepare

_CASE_FIELDS = ("workload", "method", "n", "k", "dtype", "device", "options")  # + grid in options

__all__ = ["Settings", "SweepResult", "rows_for", "run_case", "run_sweep"]


def _release(device: str) -> None:
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_case(case: Case, settings: Settings | None = None) -> list[Measurement]:
    """Measure ``case``; a skipped or failing case gives one row saying so (never raises,
    except ``KeyboardInterrupt``).

    update / train_step: ``time`` (s: median, IQR, repeat), ``host_peak_rss`` (bytes, RSS
    peak during one untimed step, measured apart so that no sampler disturbs the timing),
    ``cuda_peak_memory`` (bytes, CUDA devices: peak allocated during the steps, resident
    weight and gradient included) and, with ``settings.profile_steps``, the per-step
    figures of :meth:`suite.profiling.StepProfile.measurements` (after the timing, so the
    profiler disturbs nothing else). accuracy and conv_accuracy: see
    :func:`suite.workloads.accuracy`.
    """
    settings = settings or Settings()
    work = None
    try:
        if case.workload in ACCURACY_WORKLOADS:
            return accuracy(
                case, steps=settings.accuracy_steps, batch=settings.batch, seed=settings.seed
            )
        work = prepare(case, batch=settings.batch, seed=settings.seed)
        reset_cuda_peak(work.device)
        with machine.HostMemorySampler() as mem:  # one untimed step, also a warm-up
            work.step()
            synchronize(work.device)
        t = measure(
            work.step,
            min_time=settings.min_time,
            max_time=settings.max_time,
            warmup=settings.warmup,
            num_threads=settings.threads,
            device=work.device,
            clock=settings.clock,
        )
        out = [
            Measurement.timing("time", t),
            Measurement("host_peak_rss", float(mem.peak), "bytes"),
        ]
        peak = cuda_peak_bytes(work.device)
        if peak is not None:
            out.append(Measurement("cuda_peak_memory", float(peak), "bytes"))
        if settings.profile_steps:
            out += _profile_figures(work, settings, t)
        return out
    except NotImplementedError as e:
        return [Measurement("", None, "", status="skipped", reason=str(e))]
    except Exception as e:  # a failing case is a result, not the end of the sweep
        return [Measurement("", None, "", status="error", reason=f"{type(e).__name__}: {e}")]
    finally:
        del work
        _release(case.device)


def _profile_figures(work, settings: Settings, t) -> list[Measurement]:
    """The per-step figures of :mod:`suite.profiling` (no operator rows) for a warm,
    timed step; a failure is one "error" row named ``profile``."""
    from .profiling import profile_work

    try:
        found = profile_work(
            work,
            steps=settings.profile_steps,
            settings=dataclasses.replace(settings, warmup=0),
            timing=t,
        )
    except Exception as e:
        reason = f"profiling failed: {type(e).__name__}: {e}"
        return [Measurement("profile", None, "", status="error", reason=reason)]
    return found.measurements(ops=False, timing=False)


def rows_for(case: Case, measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Table rows (:data:`suite.output.COLUMNS`) for the measurements of ``case``."""
    base = case.as_dict()
    return [{**base, **dataclasses.asdict(m)} for m in measurements]


@dataclass
class SweepResult:
    """Where a sweep wrote (``folder``, ``table``, ``machine``), its rows, its ``status``
    ("complete", "interrupted", "terminated"), the number of cases ``done`` out of
    ``total``, and the process ``exit_code`` it calls for."""

    folder: Path
    table: Path
    machine: Path
    rows: list[dict[str, Any]]
    status: str
    done: int
    total: int

    @property
    def interrupted(self) -> bool:
        return self.status != "complete"

    @property
    def exit_code(self) -> int:
        """0 complete, 1 a case errored, 130 interrupted (SIGINT), 143 terminated (SIGTERM)."""
        if self.status == "interrupted":
            return 128 + signal.SIGINT
        if self.status == "terminated":
            return 128 + signal.SIGTERM
        return 1 if self.counts.get("error", 0) else 0

    @property
    def counts(self) -> Counter:
        """Cases per status ("ok", "skipped", "error")."""
        seen: dict[tuple, str] = {}
        order = {"ok": 0, "skipped": 1, "error": 2}
        for r in self.rows:
            key = tuple(r[c] for c in _CASE_FIELDS)
            if order[r["status"]] >= order.get(seen.get(key, "ok"), 0):
                seen[key] = r["status"]
        return Counter(seen.values())


def run_sweep(
    cases: Sequence[Case],
    settings: Settings,
    out: str | Path = "results/runs",
    *,
    fmt: str = "csv",
    progress: bool = True,
    info: dict[str, Any] | None = None,
    flush_every: float = 5.0,
) -> SweepResult:
    """Run ``cases`` into a new folder under ``out`` (a :class:`suite.record.Recorder`);
    returns a :class:`SweepResult`.

    The table is rewritten atomically as cases finish and at the end; on Ctrl-C or
    SIGTERM the rows measured so far are written, ``machine.json`` records the run as
    "interrupted" / "terminated", and the sweep returns (the signal is not re-raised).
    """
    from tqdm import tqdm

    run_info = {**(info or {}), "settings": dataclasses.asdict(settings)}
    run_info["cases_total"] = len(cases)
    gpu = machine.GpuMonitor(0)
    done = 0

    def summary() -> dict[str, Any]:
        counts = SweepResult(rec.folder, rec.table, rec.machine, rec.rows, "", 0, 0).counts
        return {"cases_done": done, "case_status": dict(counts), **gpu.summary()}

    rec = Recorder(out, info=run_info, fmt=fmt, flush_every=flush_every, extra_summary=summary)
    with rec:
        bar = tqdm(cases, file=sys.stderr, disable=not progress, unit="case", dynamic_ncols=True)
        try:
            with gpu:
                for case in bar:
                    bar.set_postfix_str(case.id, refresh=False)
                    rec.add(rows_for(case, run_case(case, settings)))
                    done += 1
        finally:
            bar.close()
    return SweepResult(rec.folder, rec.table, rec.machine, rec.rows, rec.status, done, len(cases))
