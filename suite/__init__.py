"""projUNN bench's measurement suite: one registry of cases behind three front ends.

Read it in this order; each module says what it holds:

1. :mod:`suite.methods` — the registry: every method measured (projUNN and baselines),
   how to build it, its functional update, which options it takes.
2. :mod:`suite.cases` — a :class:`~suite.cases.Case` (workload × method × N × k × dtype
   × device), the one place for skip rules, and the grids (``tiny``, ``quick``, ``full``)
   with the :class:`~suite.cases.Settings` they are measured with.
3. :mod:`suite.workloads` — what a case runs: ``update``, ``train_step``, ``accuracy``.
4. :mod:`suite.timing` — timing with ``torch.utils.benchmark`` (CUDA-correct), CUDA
   peak memory; :mod:`suite.machine` — host/GPU description and memory sampling.
5. Front ends: :mod:`suite.runner` (the sweep behind ``projunn-bench run``, writing
   through :mod:`suite.record` and :mod:`suite.output`), :mod:`suite.cli` with one module
   per command in :mod:`suite.commands`, the asv benchmarks :mod:`suite.benchmarks`
   (``asv.conf.json``: ``benchmark_dir: suite``) and pytest-benchmark
   (``tests/test_benchmarks.py``).
6. :mod:`suite.tasks` — what the methods learn: training tasks (copy, adding, pdigits,
   pmnist; one module each) behind ``projunn-bench task``, their learning curves, and
   the asv ``Task*`` benchmarks of :mod:`suite.task_benchmarks`.

Start with ``projunn-bench list`` and ``projunn-bench run --help``.

The import names ``suite`` and ``baselines`` are generic (PyPI has unrelated packages
called so); :func:`check_layout` fails clearly when another installed package shadows
ours, and ``projunn-bench`` calls it first.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["check_layout"]

_SIBLINGS = ("projunn_core", "baselines", "suite")


def check_layout() -> None:
    """Raise ``ImportError`` unless ``projunn_core``, ``baselines`` and ``suite`` are
    imported from one projunn-bench tree (not a same-named package from PyPI).

    >>> check_layout()
    """
    root = Path(__file__).resolve().parent.parent
    for name in _SIBLINGS:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or origin.parent.parent != root:
            raise ImportError(
                f"the package {name!r} imported from {origin} is not projunn-bench's "
                f"(expected {root / name}): another installed package of the same name "
                "shadows it. Uninstall it (pip uninstall " + name + ") or use a separate "
                "virtual environment for projunn-bench."
            )
