"""One ``projunn-bench task`` run folder: methods one after another, rows written as they
come (atomically), ``machine.json``, and the learning-curve figure.

Layout::

    OUT/YYYYmmdd-HHMMSS/
        results.csv     # suite.output.COLUMNS; learning-curve rows carry their step
        machine.json    # suite.machine.describe() + the run (task, preset, config, ...)
        curves.png      # loss against step and against seconds, one line per method

Ctrl-C stops the current method; what was measured is written and ``machine.json``
says ``"interrupted": true``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import machine, output
from .train import Run, World, train

__all__ = ["BASELINE", "TaskResult", "run_tasks"]

BASELINE = "baseline"
"""``method`` of the rows holding the task's no-memory baseline metrics."""

FLUSH_EVERY = 5.0
"""Seconds between two rewrites of the table while a method trains."""


@dataclass
class TaskResult:
    """Where a run wrote (``folder``, ``table``, ``machine``, ``figure`` or ``None``), its
    rows, the status of each method label and whether it was ``interrupted``."""

    folder: Path
    table: Path
    machine: Path
    figure: Path | None
    rows: list[dict[str, Any]]
    statuses: dict[str, str]
    interrupted: bool


def _row(run: Run, metric: str, value, unit: str, step=None, status="ok", reason=""):
    return {
        **run.row(),
        "metric": metric,
        "value": value,
        "unit": unit,
        "step": step,
        "status": status,
        "reason": reason,
    }


def run_tasks(
    runs: Sequence[Run],
    out: str | Path,
    *,
    data_dir: Path | None = None,
    world: World | None = None,
    progress: bool = True,
    figure: bool = True,
    info: dict[str, Any] | None = None,
) -> TaskResult | None:
    """Train ``runs`` (one task, configuration, seed and device) into a new folder under
    ``out``; returns the :class:`TaskResult` (``None`` in the processes other than rank 0
    of a distributed job, which write nothing)."""
    world = world or World()
    first = runs[0]
    task, config = first.task, first.config
    problem = task.problem(config, seed=first.seed, device=first.device, data_dir=data_dir)
    rows: list[dict[str, Any]] = []
    statuses: dict[str, str] = {}
    folder = table = machine_path = None
    if world.main:
        folder = output.new_run_dir(out)
        table, machine_path = folder / "results.csv", folder / "machine.json"
        desc = machine.describe()
        run_info: dict[str, Any] = {
            **(info or {}),
            "task": task.name,
            "preset": first.preset,
            "config": dataclasses.asdict(config),
            "seed": first.seed,
            "methods": [r.label for r in runs],
            "world_size": world.size,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "table": table.name,
            "status": "running",
        }
        output.write_json(machine_path, {**desc, "run": run_info})
        base = dataclasses.replace(first, method=BASELINE, rank=None)
        for metric, value in problem.baselines.items():
            rows.append(_row(base, metric, value, problem.unit(metric)))
    started = time.time()
    last_flush = [time.monotonic()]

    def flush(force: bool = False) -> None:
        if world.main and (force or time.monotonic() - last_flush[0] > FLUSH_EVERY):
            output.write_table(rows, table)
            last_flush[0] = time.monotonic()

    interrupted = False
    try:
        for run in runs:
            reason = run.skip_reason()
            if reason:
                rows.append(_row(run, "", None, "", status="skipped", reason=reason))
                statuses[run.label] = "skipped"
                continue

            def record(metric, value, unit, step=None, status="ok", reason="", run=run):
                rows.append(_row(run, metric, value, unit, step, status, reason))
                flush()

            try:
                statuses[run.label] = train(
                    run, problem, record, world=world, progress=progress
                ).status
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # one failing method is a result, not the end of the run
                if world.size > 1:
                    raise
                record("", None, "", status="error", reason=f"{type(e).__name__}: {e}")
                statuses[run.label] = "error"
            flush(force=True)
    except KeyboardInterrupt:
        interrupted = True
    if not world.main:
        return None
    output.write_table(rows, table)
    picture = None
    if figure:
        from .figure import learning_curves

        picture = learning_curves(rows, folder / "curves.png")
    run_info.update(
        {
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.time() - started, 3),
            "interrupted": interrupted,
            "status": "interrupted" if interrupted else "complete",
            "method_status": statuses,
            "peak_rss_bytes": machine.peak_rss(),
        }
    )
    output.write_json(machine_path, {**desc, "run": run_info})
    return TaskResult(folder, table, machine_path, picture, rows, statuses, interrupted)
