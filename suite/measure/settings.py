"""How a case is measured: :class:`Settings` (warm-up, time budget, threads, clock, batch,
seed, accuracy steps, profiled steps). Grids carry their own (:mod:`suite.measure.cases`);
commands override single fields with :meth:`Settings.with_overrides`.

>>> s = Settings(max_time=0.1).with_overrides(min_time=None, batch=8)
>>> s.min_time, s.max_time, s.batch
(0.05, 0.1, 8)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .timing import CLOCKS

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """How each case is measured (see :func:`suite.measure.timing.measure`): ``warmup``
    untimed calls; sampling for at least ``min_time`` and at most ``max_time`` seconds;
    ``threads`` torch threads (``None``: torch's current count); ``clock`` "wall" or
    "cpu" (see :data:`suite.measure.timing.CLOCKS`; "cpu" only for CPU cases);
    ``accuracy_steps`` training steps of the accuracy workloads; ``batch`` rows per
    training batch; ``seed``; ``profile_steps`` steps profiled per timed case for the
    per-step figures of :mod:`suite.measure.profiling` (0: none;
    ``projunn-bench run --profile``)."""

    warmup: int = 1
    min_time: float = 0.05
    max_time: float = 0.25
    threads: int | None = None
    clock: str = "wall"
    accuracy_steps: int = 5
    batch: int = 32
    seed: int = 0
    profile_steps: int = 0

    def __post_init__(self):
        if not 0 < self.min_time <= self.max_time:
            raise ValueError(
                f"need 0 < min_time <= max_time, got {self.min_time} and {self.max_time}"
            )
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the ``None``-valued overrides ignored; ``min_time`` shrinks to a
        smaller ``max_time``.

        >>> Settings().with_overrides(batch=8, seed=None).batch
        8
        """
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "max_time" in changes and "min_time" not in changes:
            changes["min_time"] = min(self.min_time, changes["max_time"])
        return replace(self, **changes)
