"""What the pull-request gate times: which asv benchmarks, on how many threads, and how.

The gate is ``asv continuous --interleave-rounds --factor F BASE HEAD`` restricted to the
timed benchmarks of the ``gate`` grid (:data:`suite.measure.cases.GRIDS`): float32 on the CPU,
N = 64, 256, 1024, projUNN at k = 1 and 16 — every method of the update and train_step
workloads but the peer libraries' (geoopt, geotorch: the gate guards the project's own
code), O(N^3) baselines only up to :data:`CUBIC_MAX_N` (above it one of their steps
costs more than the rest of a combination together), and the conv_train_step of every
convolution method (SOC included) at 16 channels, 8 x 8. N = 1024 is where projUNN's O(kN^2)
shows (log-log slope 1.8 from N = 1024 on, ``results/core_speed.md``).

Threads: every BLAS/OpenMP pool is pinned to one thread (:data:`THREAD_VARIABLES`, as the
asv suites of numpy, scipy and scikit-learn are run, see asv's "tuning" notes) and the
grid's ``Settings(threads=1)`` sets torch's count in each forked combination. One thread
makes the time proportional to the work, so small cases are not hit by idle OpenMP
workers spinning against other processes (the 10-25x outliers at N = 16 on 16 cores).

Clock: the grid's ``Settings(clock="cpu")`` makes asv time the process's CPU time, which
does not grow while other jobs hold the cores: on this shared 2-core machine (load 17) a
projUNN-T update at N = 1024, k = 16 took 44.6 ms wall (IQR/median 0.34) but 5.8 ms CPU
(IQR/median 0.08). A slower kernel costs more CPU time; the gate is CPU-only.

Noise test: the gate judges asv's results with the detector of ``projunn-bench
compare`` (:mod:`suite.report.compare`): a case is slower when its ratio exceeds the
factor and asv's 99% confidence intervals of the two medians do not overlap. The samples
are not recorded (no ``--record-samples``) and no rank test is made on them: the samples
of one round are not independent, and a round-long load change would pass as a
difference (``results/gate.md``).

``projunn-bench gate`` (:mod:`suite.gate.run`) runs the command below;
``.github/workflows/pr.yml`` calls it.

>>> cmd = command("main", "HEAD", factor=1.5)
>>> cmd[:5]
['asv', 'continuous', '--interleave-rounds', '--factor', '1.5']
>>> environment({})["OMP_NUM_THREADS"], environment({})["PROJUNN_BENCH_GRID"]
('1', 'gate')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from ..measure.cases import GRID_ENV, GRIDS, method_labels, parse_method_label
from ..measure.methods import METHODS
from ..report.compare import FACTOR as DETECTOR_FACTOR

__all__ = [
    "CUBIC_MAX_N",
    "FACTOR",
    "GRID",
    "THREAD_VARIABLES",
    "TIMED",
    "bench_regexes",
    "command",
    "environment",
    "selected",
]

GRID = "gate"
"""The grid the gate's asv benchmarks are parametrized with (``$PROJUNN_BENCH_GRID``)."""

CUBIC_MAX_N = 256
"""Largest N at which the gate times the O(N^3) baselines."""

FACTOR = DETECTOR_FACTOR
"""Default ``--factor``: a case fails the gate when it is this much slower and the
confidence intervals of the medians do not overlap; the detector's default, shared with
``projunn-bench compare`` (:data:`suite.report.compare.FACTOR`)."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Thread-pool sizes read by OpenMP, MKL and OpenBLAS when they load: all ``"1"``."""

TIMED = {
    "update": "Update.time_update",
    "train_step": "TrainStep.time_train_step",
    "conv_train_step": "ConvTrainStep.time_train_step",
}
"""Workload -> the asv benchmark (in ``suite/benchmarks.py``) that times it."""


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the gate's grid and one-thread pools."""
    env = dict(os.environ if base is None else base)
    env[GRID_ENV] = GRID
    env.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    return env


def _alternation(values) -> str:
    return "(" + "|".join(re.escape(str(v)) for v in values) + ")"


def bench_regexes(device: str = "cpu") -> list[str]:
    """asv ``--bench`` regular expressions selecting the gate's parameter combinations.

    asv matches them against ``benchmarks.Update.time_update('projunn_t-k1', 64,
    'float32', 'cpu')`` (the benchmark name with its parameters' reprs).
    """
    grid = GRIDS[GRID]
    out = []
    for workload in grid.workloads:
        conv = workload.startswith("conv_")
        labels = method_labels(workload, grid.ranks, devices=[device])  # as asv lists them
        for sizes, cubic_too in (
            ([n for n in (grid.channels if conv else grid.sizes) if n <= CUBIC_MAX_N], True),
            ([n for n in (grid.channels if conv else grid.sizes) if n > CUBIC_MAX_N], False),
        ):
            methods = []
            for lab in labels:
                spec = METHODS[parse_method_label(lab)[0]]
                if (cubic_too or not spec.cubic) and spec.requires is None:
                    methods.append(lab)  # the project's code: a peer library's is not gated
            if not sizes or not methods:
                continue
            shape = _alternation(sizes) + (f", {_alternation(grid.spatial)}" if conv else "")
            out.append(
                rf"^benchmarks\.{re.escape(TIMED[workload])}\('{_alternation(methods)}', {shape}, "
                rf"{_alternation(repr(d) for d in grid.dtypes)}, '{re.escape(device)}'\)$"
            )
    return out


def selected(names: Sequence[str], device: str = "cpu") -> list[str]:
    """The asv parameter-combination names among ``names`` that the gate runs.

    >>> selected(["benchmarks.Update.time_update('svd', 1024, 'float32', 'cpu')",
    ...           "benchmarks.Update.time_update('svd', 256, 'float32', 'cpu')"])
    ["benchmarks.Update.time_update('svd', 256, 'float32', 'cpu')"]
    """
    regexes = [re.compile(r) for r in bench_regexes(device)]
    return [n for n in names if any(r.search(n) for r in regexes)]


def command(base: str, head: str, *, factor: float = FACTOR, extra: Sequence[str] = ()):
    """The ``asv continuous`` command line of the gate comparing commit ``base`` with
    ``head`` (run it with :func:`environment`)."""
    cmd = ["asv", "continuous", "--interleave-rounds", "--factor", str(factor), "--split"]
    for regex in bench_regexes():
        cmd += ["--bench", regex]
    return [*cmd, *extra, base, head]
