"""The end-of-run summary of ``projunn-bench run``: plain Python over the result rows, so
that it needs neither pandas nor the ``report`` extra.

What was not run and why comes first (skipped cases folded, one line per missing package),
then the methods absent from each workload, and last, for each workload, device and dtype,
the median time of every method at every size, the fastest at each N marked with ``*``.

>>> from suite.measure.rows import Row
>>> rows = [
...     Row("update", m, n, metric="time", value=t, unit="s")
...     for m, n, t in [("svd", 64, 2e-4), ("svd", 256, 5e-3), ("expm", 64, 1e-4)]
... ]
>>> text = run_summary(rows)
>>> print(text[text.index("update, cpu"):])  # doctest: +NORMALIZE_WHITESPACE
update, cpu, float32: median time per call (* = fastest at that N)
  method    N=64        N=256
  svd       200 µs      5.00 ms*
  expm      100 µs*     –
>>> "torch_orthogonal, geotorch_expm, geotorch_cayley: has no functional update" in " ".join(
...     text.split()
... )
True
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping

from ..measure.rows import Row
from . import label_order, series_label
from .render import fmt_seconds

__all__ = ["absent_methods", "run_summary"]


def _label(row: Row) -> str:
    return series_label(row.method, row.k, row.options)


def _time_tables(rows: list[Row]) -> list[str]:
    timed = [r for r in rows if r.status == "ok" and r.metric == "time" and r.step is None]
    groups: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    contended = {(r.workload, r.device, r.dtype, _label(r), r.n) for r in timed if r.contended}
    for r in timed:
        groups[(r.workload, r.device, r.dtype)][_label(r)][r.n] = float(r.value)
    lines = []
    for (wl, device, dtype), series in groups.items():
        sizes = sorted({n for s in series.values() for n in s})
        best = {n: min(s[n] for s in series.values() if n in s) for n in sizes}
        width = max(len("method"), *(len(label) for label in series)) + 2
        lines.append(f"{wl}, {device}, {dtype}: median time per call (* = fastest at that N)")
        header = "method".ljust(width) + "".join(f"{'N=' + str(n):<12}" for n in sizes)
        lines.append("  " + header.rstrip())
        for label in sorted(series, key=label_order):
            cells = []
            for n in sizes:
                t = series[label].get(n)
                mark = "*" if t is not None and t == best[n] else ""
                mark += "†" if (wl, device, dtype, label, n) in contended else ""
                cells.append(f"{fmt_seconds(t) + mark:<12}")
            lines.append("  " + label.ljust(width) + "".join(cells).rstrip())
    return lines


def absent_methods(
    rows: Iterable[Row], planned: Mapping[str, set[str]] | None = None
) -> dict[str, dict[str, list[str]]]:
    """Per workload of ``rows``, the registry methods with no row in it, grouped by why:
    ``{workload: {reason: [methods]}}``. The reason is the skip rule's (e.g. "no
    functional update"), "runs on CUDA only" for the CUDA-graph methods of a run without
    CUDA rows, "not reached (interrupted)" for methods the run had cases of (``planned``:
    workload -> methods) but stopped before, or "not selected" (left out by
    ``--methods``)."""
    from ..measure.cases import Case
    from ..measure.methods import METHODS
    from ..measure.workloads import WORKLOADS

    rows = list(rows)
    out: dict[str, dict[str, list[str]]] = {}
    for wl in dict.fromkeys(r.workload for r in rows if r.workload in WORKLOADS):
        present = {r.method for r in rows if r.workload == wl}
        on_cuda = any(r.device.startswith("cuda") for r in rows if r.workload == wl)
        why: dict[str, list[str]] = defaultdict(list)
        for name, spec in METHODS.items():
            if name in present:
                continue
            reason = "not selected"
            if planned is not None and name in planned.get(wl, ()):
                reason = "not reached (interrupted)"
            elif wl not in spec.workloads:
                case = Case(wl, name, 16, 1 if spec.ranked else None)
                reason = case.skip_reason().removeprefix(f"{name} ")
            elif spec.graphed and not on_cuda:
                reason = "runs on CUDA only (a CUDA graph replay)"
            why[reason].append(name)
        if why:
            out[wl] = dict(why)
    return out


_UNAVAILABLE = re.compile(r"^(?P<method>\S+) cannot be built here: (?P<why>.+)$")


def _workloads(rows: list[Row]) -> str:
    return ", ".join(dict.fromkeys(r.workload for r in rows))


def _not_run(rows: list[Row]) -> list[str]:
    """Skipped cases folded: one line per missing package (the install line once, its
    methods and workloads), one per other skip rule (the method's name taken out of the
    reason, so methods sharing a rule share the line); failed cases one line per workload
    and reason, with the cases."""
    missing: dict[str, list[Row]] = defaultdict(list)
    skipped: dict[str, list[Row]] = defaultdict(list)
    failed: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        if r.status == "skipped":
            found = _UNAVAILABLE.match(r.reason)
            if found and found["method"] == r.method:
                missing[found["why"]].append(r)
            else:
                skipped[r.reason.removeprefix(f"{r.method} ")].append(r)
        elif r.status == "error":
            failed[(r.workload, r.reason)].append(f"{_label(r)} N={r.n} {r.dtype} {r.device}")
    lines = []
    for why, group in sorted(missing.items()):
        methods = ", ".join(sorted({r.method for r in group}))
        lines.append(f"skipped, {why}: {methods} ({len(group)} cases in {_workloads(group)})")
    for why, group in sorted(skipped.items()):
        methods = ", ".join(sorted({r.method for r in group}))
        lines.append(f"skipped: {methods}: {why} ({len(group)} cases in {_workloads(group)})")
    for (wl, reason), cases in sorted(failed.items()):
        shown = ", ".join(cases[:4]) + (f", ... ({len(cases)} cases)" if len(cases) > 4 else "")
        lines.append(f"error in {wl}: {reason}: {shown}")
    return [part for line in lines for part in textwrap.wrap(line, 88, subsequent_indent="  ")]


def run_summary(rows: Iterable[Row], planned: Mapping[str, set[str]] | None = None) -> str:
    """The text summary of a run's rows (``planned``: workload -> the methods the run had
    cases of, see :func:`absent_methods`): what was not run and why, folded (one line per
    missing package), then the methods absent from each workload, and last the time
    tables. Contended timings are marked †.

    >>> why = "cannot be built here: geoopt is not installed: pip install geoopt"
    >>> rows = [Row(w, m, 16, status="skipped", reason=f"{m} {why}")
    ...         for w in ("update", "train_step") for m in ("geoopt_stiefel", "geoopt_canonical")]
    >>> rows.append(Row("update", "svd", 16, metric="time", value=1e-4, unit="s"))
    >>> for line in run_summary(rows).splitlines()[:2]:
    ...     print(line)
    skipped, geoopt is not installed: pip install geoopt: geoopt_canonical, geoopt_stiefel
      (4 cases in update, train_step)
    >>> run_summary(rows).splitlines()[-1].split()
    ['svd', '100', 'µs*']
    """
    rows = list(rows)
    lines = _not_run(rows)
    for wl, why in absent_methods(rows, planned).items():
        parts = [f"{', '.join(names)}: {reason}" for reason, names in why.items()]
        text = f"absent from {wl}: " + "; ".join(parts)
        lines += textwrap.wrap(text, 88, subsequent_indent="  ")
    tables = _time_tables(rows)
    if tables and lines:
        lines.append("")
    lines += tables
    if any(r.contended for r in rows):
        lines.append("  † contended: timed while other processes held the cores")
    return "\n".join(lines)
