"""The training loop of ``projunn-bench task``: one method on one task, rows as it goes.

:func:`train` trains one :class:`Run` and hands each measurement to a ``record``
callback (so an interrupted run keeps what it measured). Every ``config.log_interval``
steps (and at step 0, before training) it records ``train_loss`` (mean over the steps
since the last row), the test metrics of the problem (``test_loss``, ``test_accuracy``)
and ``wall_time``: seconds of training since the start, test evaluation excluded. At the
end: ``parameters`` and, for a unitary RNN, ``unitarity`` of the recurrent matrix.

Determinism: the model is initialised from ``torch.manual_seed(seed)``, batches come from
a CPU generator seeded by ``seed`` (and the process rank), and the projUNN sketches from
a generator seeded by ``seed`` alone, the same in every process. Under
``torch.distributed`` (:class:`World`) the model is wrapped in DistributedDataParallel,
each process draws ``batch / world size`` examples per step, gradients are averaged, and
the replicas stay bit-identical.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..measure.cases import method_label
from ..measure.methods import METHODS
from ..measure.timing import timer
from .base import Config, Problem, Task, count_parameters, optimizer_name

__all__ = ["DIVERGED_ABOVE", "Run", "Trained", "World", "divergence", "evaluate", "train"]

EVAL_CHUNK = 500
"""Test examples per forward of the evaluation."""
DIVERGED_ABOVE = 100
"""A training loss above this multiple of the initial test loss (the untrained model's)
is a divergence: the run stops with an error row that says so, as a non-finite loss does."""


@dataclass(frozen=True)
class World:
    """This process in a ``torch.distributed`` job: ``rank`` of ``size`` processes
    (``size`` 1: no job), ``local_rank`` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes results and shows progress (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """The job torchrun describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.

        >>> World.from_env().size >= 1
        True
        """
        env = os.environ
        return cls(
            int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
        )

    def start(self, device: str) -> str:
        """Join the process group (gloo on CPU, nccl on CUDA); returns this process's
        device (``cuda:LOCAL_RANK`` for CUDA)."""
        if self.size == 1:
            return device
        import torch.distributed as dist

        cuda = torch.device(device).type == "cuda"
        if cuda:
            device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return device

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the processes (itself when alone)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        return value / self.size


@dataclass(frozen=True)
class Run:
    """One method (``rank`` for ranked methods, ``None`` otherwise) on one task."""

    task: Task
    method: str
    rank: int | None
    config: Config
    preset: str = ""
    seed: int = 0
    device: str = "cpu"

    @property
    def label(self) -> str:
        """``projunn_t-k1``, ``expm``, ``lstm``."""
        return method_label(self.method, self.rank)

    def skip_reason(self) -> str | None:
        """Why this method cannot run with this configuration here (the suite's skip
        rules: rank, size, power of two, device, O(N^3) cap), or ``None``."""
        if self.method in METHODS and METHODS[self.method].graphed:
            eager = self.method.removesuffix("_graphed")
            return f"{self.method} is a CUDA graph replay of one step; task runs train {eager}"
        try:
            optimizer_name(self.method, self.config)
        except ValueError as e:  # its layer has not that optimizer, and no substitute
            return f"{e} (choose one with --optimizer)"
        return self.task.skip_reason(self.method, self.rank, self.config, self.device)

    @property
    def optimizer(self) -> str:
        """The optimizer this run trains with: ``config.optimizer``, or the method's own
        where its layer has not that one (geoopt: adam for rmsprop)."""
        try:
            return optimizer_name(self.method, self.config)
        except ValueError:  # skipped with that reason (skip_reason)
            return self.config.optimizer

    def identity(self) -> dict[str, Any]:
        """The case columns every row of this run shares (:data:`suite.measure.rows.IDENTITY`)."""
        return {
            "workload": self.task.name,
            "method": self.method,
            "n": self.config.hidden,
            "k": self.rank,
            "dtype": self.config.dtype,
            "device": str(self.device),
            # the optimizer that really trains (geoopt: adam where rmsprop is asked)
            "options": f"preset={self.preset};seed={self.seed};"
            + self.config.replace(optimizer=self.optimizer).describe(),
        }


Record = Callable[..., None]
"""``record(metric, value, unit, step=None, status="ok", reason="")``."""


@torch.no_grad()
def evaluate(model: torch.nn.Module, problem: Problem) -> dict[str, float]:
    """The problem's test metrics of ``model`` over its whole test set."""
    x, y = problem.test
    totals: dict[str, float] = {}
    for start in range(0, len(y), EVAL_CHUNK):
        xs, ys = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
        for name, value in problem.metrics(model(xs), ys).items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(ys)
    return {name: total / len(y) for name, total in totals.items()}


def _progress(run: Run, world: World, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=run.config.steps,
        desc=run.label,
        unit="step",
        file=sys.stderr,
        disable=not (enabled and world.main),
        dynamic_ncols=True,
    )


@dataclass
class Trained:
    """The outcome of :func:`train`: ``status`` ("ok", or "error" when the training loss
    stopped being finite) and the trained ``model``."""

    status: str
    model: torch.nn.Module


def train(
    run: Run,
    problem: Problem,
    record: Record,
    *,
    world: World | None = None,
    progress: bool = False,
    time_limit: float | None = None,
) -> Trained:
    """Train ``run`` on ``problem``, handing rows to ``record`` (in process rank 0).

    ``time_limit``: seconds of training after which the run evaluates once more, at the
    step that went past it, and stops (checked after every step, not only at evaluations,
    so a slow method overshoots a time budget by one step, not by one evaluation interval).
    """
    world = world or World()
    cfg, task = run.config, run.task
    device = torch.device(run.device)
    if cfg.batch % world.size:
        raise ValueError(f"batch {cfg.batch} is not divisible by {world.size} processes")
    torch.manual_seed(run.seed)
    model = task.build(run.method, run.rank, problem, cfg, device)
    sketches = torch.Generator(device).manual_seed(run.seed)  # the same on every rank
    opt = task.optimizer(model, run.method, run.rank, cfg, sketches)
    net = model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    batches = torch.Generator().manual_seed(1_000_003 * (run.seed + 1) + world.rank)
    per_process = cfg.batch // world.size

    def log(step: int, seconds: float, train_loss: float | None) -> dict[str, float]:
        found = evaluate(model, problem)
        if not world.main:
            return found
        if train_loss is not None:
            record("train_loss", train_loss, problem.loss_unit, step)
        for name, value in found.items():
            record(name, value, problem.unit(name), step)
        record("wall_time", seconds, "s", step)
        return found

    initial = log(0, 0.0, None).get("test_loss")
    status = "ok"
    clock, running, count = 0.0, torch.zeros((), device=device), 0
    bar = _progress(run, world, progress)
    try:
        start = timer(device)
        for step in range(1, cfg.steps + 1):
            x, y = problem.sample(per_process, batches)
            opt.zero_grad(set_to_none=True)
            loss = problem.loss(net(x), y)
            loss.backward()
            opt.step()
            running += loss.detach()
            count += 1
            bar.update(1)
            out_of_time = (
                time_limit is not None and clock + time.perf_counter() - start > time_limit
            )
            if step % cfg.log_interval and step != cfg.steps and not out_of_time:
                continue
            clock += timer(device) - start
            train_loss = float(world.mean(running)) / count
            reason = divergence(train_loss, initial, step)
            if reason:
                if world.main:
                    record("train_loss", None, problem.loss_unit, step, "error", reason)
                status = "error"
                break
            log(step, clock, train_loss)
            bar.set_postfix(loss=f"{train_loss:.4g}", refresh=False)
            running.zero_()
            count = 0
            if out_of_time:
                break
            start = timer(device)
    finally:
        bar.close()
    if world.main:
        record("parameters", float(count_parameters(model)), "count")
        for name, value in task.final_metrics(model).items():
            record(name, value, "1")
    return Trained(status, model)


def divergence(loss: float, initial: float | None, step: int) -> str | None:
    """Why a training ``loss`` (mean since the last logged step) means the run diverged:
    not finite, or above :data:`DIVERGED_ABOVE` times the ``initial`` test loss; ``None``
    when it did not.

    >>> divergence(8e15, 2.1, 40)
    'the training loss 8e+15 is above 100 x the initial test loss 2.1 by step 40: diverged'
    >>> divergence(float("nan"), 2.1, 2), divergence(1.9, 2.1, 2)
    ('the training loss became non-finite by step 2: diverged', None)
    """
    if not math.isfinite(loss):
        return f"the training loss became non-finite by step {step}: diverged"
    if initial is not None and initial > 0 and loss > DIVERGED_ABOVE * initial:
        return (
            f"the training loss {loss:.3g} is above {DIVERGED_ABOVE} x the initial test loss "
            f"{initial:.3g} by step {step}: diverged"
        )
    return None


def ranked(method: str) -> bool:
    """Whether ``method`` takes a rank (projUNN).

    >>> ranked("projunn_t"), ranked("lstm")
    (True, False)
    """
    return method in METHODS and METHODS[method].ranked
