"""Measuring: from a case to its rows.

Read it in this order; each module says what it holds:

1. :mod:`~suite.measure.methods` — the registry: every method measured (projUNN and the
   baselines), how to build it, its functional update, which options it takes (the one
   place options are merged, :meth:`~suite.measure.methods.Method.options_for`).
2. :mod:`~suite.measure.workloads` — the workload registry: what a case runs (``update``,
   ``train_step``, ``accuracy`` and their ``conv_`` forms), what each uses of a method.
3. :mod:`~suite.measure.cases` — a :class:`~suite.measure.cases.Case` (workload × method
   × N × k × dtype × device), the skip rules (:class:`~suite.measure.cases.Skip`) and the
   grids (``tiny``, ``quick``, ``gate``, ``full``); :mod:`~suite.measure.settings` — how a
   case is measured.
4. :mod:`~suite.measure.timing` (wall, CPU and CUDA-event clocks), :mod:`~suite.measure.machine`
   (host and GPU description, memory sampling) and :mod:`~suite.measure.profiling`
   (``torch.profiler`` per step) — the instruments, which :mod:`~suite.measure.probes`
   plugs into the runner.
5. :mod:`~suite.measure.runner` — the one guarded case runner and the sweep;
   :mod:`~suite.measure.rows` (the one row type), :mod:`~suite.measure.output` (atomic
   files, the table) and :mod:`~suite.measure.record` (one results folder, start to end).
"""
