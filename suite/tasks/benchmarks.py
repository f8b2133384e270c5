"""asv benchmarks of what the methods learn: the final test loss of the quick copy and
pdigits presets (``projunn-bench task ... --preset quick``), one parameter per method, so
that an accuracy regression is caught like a slowdown.

About a minute per method on 2 CPU cores, so these belong in the nightly run; the
pull-request gate leaves them out by name (``--bench`` excluding ``Task``)::

    asv run --python=same --bench "TaskCopy|TaskPdigits"
"""

from __future__ import annotations

from ..measure.cases import method_labels
from . import LSTM, TASKS

__all__ = ["RANKS", "TaskCopy", "TaskPdigits", "final_test_loss"]

RANKS = (1,)
"""Ranks of the ranked methods (projUNN) among the parameters."""

PRESET = "quick"


def _labels() -> list[str]:
    """The methods that can be a recurrent matrix (the train_step ones; not the CUDA-graph
    replays, which a task trains eagerly anyway), and the LSTM reference."""
    return [*method_labels("train_step", RANKS, devices=("cpu",)), LSTM]


def final_test_loss(task: str, label: str, **overrides) -> float:
    """The test loss after training ``label`` (a method label such as ``projunn_t-k1``)
    on the ``PRESET`` of ``task`` (``overrides`` change its configuration).

    >>> final_test_loss("copy", "expm", T=2, hidden=4, steps=1, test_size=2) > 0
    True
    """
    from ..measure.cases import parse_method_label
    from .train import Run, train

    method, rank = parse_method_label(label)
    spec = TASKS[task]
    config = spec.preset(PRESET).replace(**overrides)
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

    def track_final_test_loss(self, method):
        return final_test_loss(self.task, method)

    track_final_test_loss.unit = "test loss"


class TaskCopy(_FinalLoss):
    """Copy task, quick preset: test cross-entropy after training (nats)."""

    task = "copy"


class TaskPdigits(_FinalLoss):
    """Permuted 8x8 digits, quick preset: test cross-entropy after training (nats)."""

    task = "pdigits"
