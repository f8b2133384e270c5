"""asv benchmarks of what the methods learn: the final test loss of the quick copy and
pdigits presets (``projunn-bench task ... --preset quick``), one parameter per method, so
that an accuracy regression is caught like a slowdown.

About a minute per method on 2 CPU cores, so these belong in the nightly run; the
pull-request gate leaves them out by name (``--bench`` excluding ``Task``)::

    asv run --python=same --bench "TaskCopy|TaskPdigits"

They follow ``$PROJUNN_BENCH_GRID`` like the rest of the suite: under ``tiny`` each
method trains the quick preset shrunk by :data:`SMOKE` (under a second), so that
``PROJUNN_BENCH_GRID=tiny asv run --quick --python=same`` is a smoke test of minutes, not
half an hour; every other grid trains the quick preset.
"""

from __future__ import annotations

import importlib.util

import torch

from ..measure.cases import GRIDS, current_grid, method_labels, parse_method_label
from . import LSTM, TASKS
from .base import Config
from .train import Run, train

# asv's forkserver imports this module once and forks a process per method: what every
# process needs is imported here, not in each of them (scikit-learn's digits loader
# alone takes 1.5 s of CPU).
if importlib.util.find_spec("sklearn") is not None:
    import sklearn.datasets  # noqa: F401

__all__ = ["RANKS", "SMOKE", "TaskCopy", "TaskPdigits", "final_test_loss", "task_config"]

RANKS = (1,)
"""Ranks of the ranked methods (projUNN) among the parameters."""

PRESET = "quick"

GRID = current_grid()

SMOKE = {
    "copy": {"T": 5, "hidden": 8, "batch": 8, "steps": 20, "test_size": 100},
    "pdigits": {"hidden": 8, "batch": 8, "steps": 20, "test_size": 100},
}
"""Overrides of each task's ``PRESET`` under the ``tiny`` grid: a smoke test that every
method trains end to end, not a measure of what it learns."""

SMOKE_THREADS = 1
"""Torch threads of a method's process under the ``tiny`` grid: a second thread gains
nothing at these sizes and, on busy cores, its spin-waits took 5-10x the CPU time."""


def task_config(task: str, grid: str | None = None) -> Config:
    """The configuration ``task`` trains under ``grid`` (default: ``$PROJUNN_BENCH_GRID``,
    as the benchmarks do): the ``PRESET``, shrunk by :data:`SMOKE` under ``tiny``.

    >>> task_config("copy", "tiny").steps, task_config("copy", "quick").steps
    (20, 600)
    >>> task_config("copy", "huge")
    Traceback (most recent call last):
    ...
    ValueError: unknown grid 'huge'; choose from ['full', 'gate', 'quick', 'tiny']
    """
    name = GRID.name if grid is None else grid
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose from {sorted(GRIDS)}")
    config = TASKS[task].preset(PRESET)
    return config.replace(**SMOKE[task]) if name == "tiny" else config


def _labels() -> list[str]:
    """The methods that can be a recurrent matrix (the train_step ones; not the CUDA-graph
    replays, which a task trains eagerly anyway), and the LSTM reference."""
    return [*method_labels("train_step", RANKS, devices=("cpu",)), LSTM]


def final_test_loss(task: str, label: str, grid: str | None = None, **overrides) -> float:
    """The test loss after training ``label`` (a method label such as ``projunn_t-k1``)
    on ``task`` as configured for ``grid`` (:func:`task_config`; ``overrides`` change it).

    >>> final_test_loss("copy", "expm", T=2, hidden=4, steps=1, test_size=2) > 0
    True
    """
    method, rank = parse_method_label(label)
    spec = TASKS[task]
    config = task_config(task, grid).replace(**overrides)
    run = Run(spec, method, rank, config, PRESET)
    reason = run.skip_reason()
    if reason:
        raise NotImplementedError(reason)  # asv records the combination as skipped
    problem = spec.problem(config, seed=run.seed, device=run.device, data_dir=None)
    rows: list[tuple[str, float]] = []
    train(run, problem, lambda metric, value, *a, **k: rows.append((metric, value)))
    return [value for metric, value in rows if metric == "test_loss"][-1]


class _FinalLoss:
    task = ""
    params = [_labels()]
    param_names = ["method"]
    timeout = 900

    def setup(self, method):
        if GRID.name == "tiny":  # each method is its own forked process (forkserver)
            torch.set_num_threads(SMOKE_THREADS)

    def track_final_test_loss(self, method):
        return final_test_loss(self.task, method)

    track_final_test_loss.unit = "test loss"


class TaskCopy(_FinalLoss):
    """Copy task, quick preset (``tiny`` grid: :data:`SMOKE`): test cross-entropy after
    training (nats)."""

    task = "copy"


class TaskPdigits(_FinalLoss):
    """Permuted 8x8 digits, quick preset (``tiny`` grid: :data:`SMOKE`): test
    cross-entropy after training (nats)."""

    task = "pdigits"
