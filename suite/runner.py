"""Run cases and sweeps: the measuring loop behind ``projunn-bench run``.

:func:`run_case` turns one :class:`~suite.cases.Case` into :class:`Measurement` rows
(timing via ``suite.timing.measure``, host peak RSS, CUDA peak memory, accuracy);
:func:`run_sweep` runs many with a progress bar and writes the results table and the
machine description atomically into a new run folder, also when interrupted.

>>> from suite.cases import Case
>>> rows = run_case(Case("update", "unconstrained", 8), Settings(repeat=3, warmup=0))
>>> [m.metric for m in rows]
['time', 'host_peak_rss']
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import machine, output
from .cases import Case, Grid
from .timing import cuda_peak_bytes, measure, reset_cuda_peak, synchronize
from .workloads import Measurement, accuracy, prepare

_CASE_FIELDS = ("workload", "method", "n", "k", "dtype", "device", "options")

__all__ = ["SweepResult", "Settings", "rows_for", "run_case", "run_sweep"]


@dataclass(frozen=True)
class Settings:
    """How each case is measured: ``repeat`` timed samples (fewer once ``max_time``
    seconds are spent, at least 3), ``warmup`` untimed calls, ``accuracy_steps`` training
    steps of the accuracy workload, ``batch`` rows per train step, ``seed``."""

    repeat: int = 10
    warmup: int = 1
    max_time: float | None = 0.5
    accuracy_steps: int = 10
    batch: int = 32
    seed: int = 0

    @classmethod
    def from_grid(cls, grid: Grid, **overrides: Any) -> Settings:
        """The grid's settings, with ``None``-valued overrides ignored."""
        base = {
            "repeat": grid.repeat,
            "warmup": grid.warmup,
            "max_time": grid.max_time,
            "accuracy_steps": grid.accuracy_steps,
            "batch": grid.batch,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def _release(device: str) -> None:
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_case(case: Case, settings: Settings = Settings()) -> list[Measurement]:
    """Measure ``case``; a skipped or failing case gives one row saying so (never raises,
    except ``KeyboardInterrupt``).

    update / train_step: ``time`` (s: median, IQR, repeat), ``host_peak_rss`` (bytes, RSS
    peak during one untimed step, measured apart so that no sampler disturbs the timing),
    ``cuda_peak_memory`` (bytes, CUDA devices: peak allocated during the steps, resident
    weight and gradient included). accuracy: see
    :func:`suite.workloads.accuracy`.
    """
    reason = case.skip_reason()
    if reason:
        return [Measurement("", None, "", status="skipped", reason=reason)]
    work = None
    try:
        if case.workload == "accuracy":
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
            repeat=settings.repeat,
            warmup=settings.warmup,
            device=work.device,
            max_time=settings.max_time,
        )
        out = [
            Measurement("time", t.median, "s", t.iqr, t.repeat),
            Measurement("host_peak_rss", float(mem.peak), "bytes"),
        ]
        peak = cuda_peak_bytes(work.device)
        if peak is not None:
            out.append(Measurement("cuda_peak_memory", float(peak), "bytes"))
        return out
    except NotImplementedError as e:
        return [Measurement("", None, "", status="skipped", reason=str(e))]
    except Exception as e:  # a failing case is a result, not the end of the sweep
        return [Measurement("", None, "", status="error", reason=f"{type(e).__name__}: {e}")]
    finally:
        del work
        _release(case.device)


def rows_for(case: Case, measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Table rows (:data:`suite.output.COLUMNS`) for the measurements of ``case``."""
    base = case.as_dict()
    return [{**base, **dataclasses.asdict(m)} for m in measurements]


@dataclass
class SweepResult:
    """Where a sweep wrote (``folder``, ``table``, ``machine``), its rows, whether it was
    ``interrupted``, and the number of cases done out of ``total``."""

    folder: Path
    table: Path
    machine: Path
    rows: list[dict[str, Any]]
    interrupted: bool
    done: int
    total: int

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
    """Run ``cases`` into a new folder under ``out``; returns a :class:`SweepResult`.

    The table is rewritten atomically at most every ``flush_every`` seconds and at the
    end; on ``KeyboardInterrupt`` the rows measured so far are written and the machine
    description records ``"interrupted": true`` (the interrupt is not re-raised).
    """
    from tqdm import tqdm

    if fmt == "parquet" and not output.have_parquet():
        raise RuntimeError("--format parquet needs pyarrow: pip install pyarrow")
    folder = output.new_run_dir(out)
    table = folder / f"results.{fmt}"
    machine_path = folder / "machine.json"
    desc = machine.describe()
    started = time.time()
    run_info: dict[str, Any] = {
        **(info or {}),
        "settings": dataclasses.asdict(settings),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cases_total": len(cases),
        "table": table.name,
        "status": "running",
    }
    output.write_json(machine_path, {**desc, "run": run_info})
    rows: list[dict[str, Any]] = []
    done = 0
    interrupted = False
    last_flush = time.monotonic()
    gpu = machine.GpuMonitor(0)
    bar = tqdm(cases, file=sys.stderr, disable=not progress, unit="case", dynamic_ncols=True)
    try:
        with gpu:
            for case in bar:
                bar.set_postfix_str(case.id, refresh=False)
                rows.extend(rows_for(case, run_case(case, settings)))
                done += 1
                if time.monotonic() - last_flush > flush_every:
                    output.write_table(rows, table, fmt)
                    last_flush = time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        output.write_table(rows, table, fmt)
        result = SweepResult(folder, table, machine_path, rows, interrupted, done, len(cases))
        run_info.update(
            {
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_s": round(time.time() - started, 3),
                "cases_done": done,
                "interrupted": interrupted,
                "status": "interrupted" if interrupted else "complete",
                "case_status": dict(result.counts),
                "peak_rss_bytes": machine.peak_rss(),
                **gpu.summary(),
            }
        )
        output.write_json(machine_path, {**desc, "run": run_info})
    return result
