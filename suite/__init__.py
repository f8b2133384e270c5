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

Your own method beside the built-in ones (:mod:`suite.plugins`; the README has a complete
example): build a layer that follows ``projunn_core/protocol.py`` and register it,

>>> from suite import Method, register_method
>>> Method.__module__, register_method.__module__
('suite.measure.methods', 'suite.measure.methods')

then name its module in ``PROJUNN_BENCH_PLUGINS`` or in the entry-point group
``projunn_bench.methods`` of your package.

The import names ``suite`` and ``baselines`` are generic (PyPI has unrelated packages
called so); :func:`check_layout` fails clearly when another installed package shadows
ours, and ``projunn-bench`` calls it first.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

__all__ = ["Method", "PluginError", "check_layout", "load_plugins", "register_method"]

_LAZY = {
    "Method": "suite.measure.methods",
    "register_method": "suite.measure.methods",
    "load_plugins": "suite.plugins",
    "PluginError": "suite.plugins",
}
"""Public names imported on first use (torch is heavy; ``projunn-bench --help`` stays fast)."""


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'suite' has no attribute {name!r}")


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
