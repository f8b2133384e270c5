"""One ``projunn-bench task`` run folder: methods one after another, rows written as they
come (atomically), ``machine.json``, and the learning-curve figure.

Layout::

    OUT/YYYYmmdd-HHMMSS/
        results.csv     # suite.measure.rows.COLUMNS; learning-curve rows carry their step
        machine.json    # suite.measure.machine.describe() + the run (task, preset, config, ...)
        curves.png      # loss against step and against seconds, one line per method

The folder is a :class:`suite.measure.record.Recorder`'s: Ctrl-C (or SIGTERM) stops the current
method, what was measured is written and ``machine.json`` says how the run ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..measure.record import Recorder
from ..measure.rows import Measurement, Row
from .base import Problem
from .train import Run, World, train

__all__ = ["BASELINE", "TaskResult", "run_tasks"]

BASELINE = "baseline"
"""``method`` of the rows holding the task's no-memory baseline metrics."""

FLUSH_EVERY = 5.0
"""Seconds between two rewrites of the table while a method trains."""


@dataclass
class TaskResult:
    """Where a run wrote (``folder``, ``table``, ``machine``, ``figure`` or ``None``), its
    rows, the status of each method label, how the run ended (``status``: complete,
    interrupted, terminated) and the conventional ``exit_code`` of that ending."""

    folder: Path
    table: Path
    machine: Path
    figure: Path | None
    rows: list[Row]
    statuses: dict[str, str]
    status: str
    exit_code: int

    @property
    def interrupted(self) -> bool:
        return self.status in ("interrupted", "terminated")


def _row(run: Run, metric: str, value, unit: str, step=None, status="ok", reason="") -> Row:
    m = Measurement(metric, value, unit, status=status, reason=reason, step=step)
    return Row.of(run.identity(), m)


def _train_all(
    runs: Sequence[Run],
    problem: Problem,
    add: Callable[[list[Row]], None],
    statuses: dict[str, str],
    world: World,
    progress: bool,
) -> None:
    """Train ``runs`` one after another, handing their rows to ``add``."""
    for run in runs:
        reason = run.skip_reason()
        if reason:
            add([_row(run, "", None, "", status="skipped", reason=reason)])
            statuses[run.label] = "skipped"
            continue

        def record(metric, value, unit, step=None, status="ok", reason="", run=run):
            add([_row(run, metric, value, unit, step, status, reason)])

        try:
            statuses[run.label] = train(run, problem, record, world=world, progress=progress).status
        except Exception as e:  # one failing method is a result, not the end of the run
            if world.size > 1:
                raise
            record("", None, "", status="error", reason=f"{type(e).__name__}: {e}")
            statuses[run.label] = "error"


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
    statuses: dict[str, str] = {}
    if not world.main:
        _train_all(runs, problem, lambda rows: None, statuses, world, progress)
        return None
    run_info = {
        **(info or {}),
        "task": task.name,
        "preset": first.preset,
        "config": dataclasses.asdict(config),
        "seed": first.seed,
        "methods": [r.label for r in runs],
        "world_size": world.size,
    }
    recorder = Recorder(
        out,
        info=run_info,
        flush_every=FLUSH_EVERY,
        extra_summary=lambda: {"method_status": dict(statuses)},
    )
    with recorder as rec:
        base = dataclasses.replace(first, method=BASELINE, rank=None)
        rec.add([_row(base, m, v, problem.unit(m)) for m, v in problem.baselines.items()])
        _train_all(runs, problem, rec.add, statuses, world, progress)
    picture = None
    if figure:
        from ..report.curves import learning_curves

        picture = learning_curves([r.as_dict() for r in rec.rows], rec.folder / "curves.png")
    return TaskResult(
        rec.folder, rec.table, rec.machine, picture, rec.rows, statuses, rec.status, rec.exit_code
    )
