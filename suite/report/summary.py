"""The end-of-run summary of ``projunn-bench run``: plain Python over the result rows, so
that it needs neither pandas nor the ``report`` extra.

For each workload, device and dtype: the median time of every method at every size, the
fastest at each N marked with ``*``; then the methods absent from a workload and why, and
the reasons of skipped and failed cases.

>>> from suite.measure.rows import Row
>>> rows = [
...     Row("update", m, n, metric="time", value=t, unit="s")
...     for m, n, t in [("svd", 64, 2e-4), ("svd", 256, 5e-3), ("expm", 64, 1e-4)]
... ]
>>> text = run_summary(rows)
>>> print(text[: text.index("absent")])  # doctest: +NORMALIZE_WHITESPACE
update, cpu, float32: median time per call (* = fastest at that N)
  method    N=64        N=256
  svd       200 µs      5.00 ms*
  expm      100 µs*     –
<BLANKLINE>
>>> "torch_orthogonal, geotorch_expm, geotorch_cayley: has no functional update" in " ".join(
...     text.split()
... )
True
"""

from __future__ import annotations

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


def _not_run(rows: list[Row]) -> list[str]:
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in rows:
        if r.status in ("skipped", "error"):
            case = f"{_label(r)} N={r.n} {r.dtype} {r.device}"
            groups[(r.status, r.workload, r.reason)].append(case)
    lines = []
    for (status, wl, reason), cases in sorted(groups.items()):
        shown = ", ".join(cases[:4]) + (f", ... ({len(cases)} cases)" if len(cases) > 4 else "")
        lines.append(f"{status} in {wl}: {reason}: {shown}")
    return lines


def run_summary(rows: Iterable[Row], planned: Mapping[str, set[str]] | None = None) -> str:
    """The text summary of a run's rows (``planned``: workload -> the methods the run had
    cases of, see :func:`absent_methods`). Contended timings are marked †."""
    rows = list(rows)
    lines = _time_tables(rows)
    if any(r.contended for r in rows):
        lines.append("  † contended: timed while other processes held the cores")
    for wl, why in absent_methods(rows, planned).items():
        parts = [f"{', '.join(names)}: {reason}" for reason, names in why.items()]
        text = f"absent from {wl}: " + "; ".join(parts)
        lines += textwrap.wrap(text, 88, subsequent_indent="  ")
    lines += _not_run(rows)
    return "\n".join(lines)
