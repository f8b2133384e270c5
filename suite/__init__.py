"""projUNN bench's suite: measuring, reporting, training tasks and the tools built on them,
one sub-package per job (``docs/architecture.md`` draws the map):

* :mod:`suite.measure` — from a case to its rows: the method and workload registries,
  cases and grids, the instruments (timing, memory, profiler), the one guarded case
  runner, the one row type and the results folder;
* :mod:`suite.report` — from rows to conclusions: loading any results, the report
  (markdown, HTML, figures), ``compare``, the end-of-run summary, the profile tables, the
  offline asv dashboard;
* :mod:`suite.tasks` — what the methods learn: the training tasks (copy, adding, pdigits,
  pmnist, digits-conv), their models and the asv ``Task*`` benchmarks;
* :mod:`suite.gate` — the pull-request performance gate and its noise campaign;
* :mod:`suite.studies` — campaigns on :mod:`suite.measure`: the GPU check, the drift study;
* :mod:`suite.commands` — ``projunn-bench``, one module per command (:mod:`suite.cli`);
* :mod:`suite.benchmarks` — the asv benchmarks (``asv.conf.json``: ``benchmark_dir: suite``).

Imports run one way: ``measure`` uses none of the others; ``report`` uses ``measure``;
``tasks`` uses both; ``gate`` and ``studies`` use ``measure`` and ``report``; only the
commands and the asv modules use everything (``tests/test_layout.py`` checks it).

Start with ``projunn-bench list`` and ``projunn-bench --help``.

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
