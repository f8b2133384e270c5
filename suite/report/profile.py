"""The tables and the figure of ``projunn-bench profile``: markdown of the per-step
figures, of the time by operator group and of the top operators, side by side for the
profiled methods, and a seaborn bar chart of the time by group.

Each takes the :class:`~suite.measure.profiling.StepProfile` objects the profiler found
(``CaseResult.found["profile"]`` of :func:`suite.measure.runner.run_case`).
"""

from __future__ import annotations

from ..measure import cases as cases_mod

__all__ = ["plot_groups", "render"]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g} ms"


def _pct(part: float | None, whole: float | None) -> str:
    return "-" if part is None or not whole else f"{100 * part / whole:.1f}%"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def _count(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _figures_table(labels: list[str], profiles: list) -> str:
    cuda = profiles[0].on_cuda

    def row(title, fn):
        return [title] + [fn(p) for p in profiles]

    rows = [
        row(
            "wall time (unprofiled median)",
            lambda p: f"{_ms(p.time.median)} (IQR {_ms(p.time.iqr)}, {p.time.repeat} samples)",
        ),
        row("wall time under the profiler", lambda p: _ms(p.profiled_time)),
        row("aten operator calls", lambda p: _count(p.ops_per_step)),
        row("compute operators (views excluded)", lambda p: _count(p.compute_ops_per_step)),
    ]
    if cuda:
        rows += [
            row("device busy time", lambda p: _ms(p.device_busy_time)),
            row("device busy fraction", lambda p: _pct(p.device_busy_time, p.time.median)),
            row("CUDA kernels launched", lambda p: _count(p.kernels_per_step)),
            row("memcpy/memset", lambda p: _count(p.memcpy_per_step)),
            row("host syncs (lower bound)", lambda p: _count(p.host_syncs_per_step)),
        ]
    else:
        rows.append(row("kernels, device busy time, host syncs", lambda p: "n/a on CPU"))
    rows += [
        row("peak memory of the step", lambda p: _bytes(p.peak_memory)),
        row("resident (weight, gradient, state)", lambda p: _bytes(p.resident_memory)),
        row("temporaries beyond resident", lambda p: _bytes(p.temporary_memory)),
        row("host RSS high-water mark", lambda p: _bytes(p.host_peak_rss)),
    ]
    return _table(["per step"] + labels, rows)


def _groups_table(labels: list[str], profiles: list, device: bool) -> str:
    from ..measure.profiling import GROUPS, OUTSIDE

    rows = []
    for group in GROUPS + ((OUTSIDE,) if not device else ()):
        cells = []
        for p in profiles:
            if group == OUTSIDE:
                t = p.outside
            else:
                t = p.groups()[group][1 if device else 0]
            cells.append(f"{_ms(t)} ({_pct(t, p.profiled_time)})")
        if any(not c.startswith("0 ms") for c in cells):
            rows.append([group] + cells)
    rows.append(["wall time under the profiler"] + [_ms(p.profiled_time) for p in profiles])
    timeline = "self device (kernel) time" if device else "self CPU time"
    return _table([f"{timeline} by group"] + labels, rows)


def _ops_table(labels: list[str], profiles: list, top: int) -> str:
    cuda = profiles[0].on_cuda

    def share(op, p):
        return max(op.self_cpu, op.self_device) / p.profiled_time if p.profiled_time else 0

    best: dict[str, float] = {}
    for p in profiles:
        for op in p.ops:
            best[op.name] = max(best.get(op.name, 0.0), share(op, p))
    names = sorted(best, key=lambda n: -best[n])[:top]
    by_name = [{op.name: op for op in p.ops} for p in profiles]
    from ..measure.profiling import operator_group

    if len(profiles) == 1:
        (p,), (ops,) = profiles, by_name
        header = ["operator", "group", "calls", "self CPU", "CPU share"]
        header += ["self device", "device share"] if cuda else []
        rows = []
        for n in names:
            op = ops[n]
            r = [
                n,
                op.group,
                _count(op.calls),
                _ms(op.self_cpu),
                _pct(op.self_cpu, p.profiled_time),
            ]
            if cuda:
                r += [_ms(op.self_device), _pct(op.self_device, p.profiled_time)]
            rows.append(r)
        return _table(header, rows)
    rows = []
    for n in names:
        cells = []
        for p, ops in zip(profiles, by_name, strict=True):
            op = ops.get(n)
            if op is None:
                cells.append("-")
                continue
            cell = f"{_ms(op.self_cpu)} ({_pct(op.self_cpu, p.profiled_time)})"
            if cuda:
                cell = f"CPU {cell}, device {_ms(op.self_device)}"
            cells.append(f"{cell} ×{_count(op.calls)}")
        rows.append([n, operator_group(n)] + cells)
    what = "self CPU (share), device, calls" if cuda else "self time (share), calls"
    return _table(["operator", "group"] + [f"{lab}: {what}" for lab in labels], rows)


def render(cases: list, profiles: list, steps: int, top: int) -> str:
    """The markdown report printed by ``projunn-bench profile`` (and saved as profile.md)."""
    import torch

    from ..measure.profiling import SYNC_NOTE

    c = cases[0]
    labels = [cases_mod.method_label(x.method, x.k) for x in cases]
    cuda = profiles[0].on_cuda
    lines = [
        f"# Profile: {c.workload}, N={c.n}, {c.dtype}, {c.device}",
        "",
        f"{steps} profiled steps; {torch.get_num_threads()} torch thread(s). Times are "
        "per step; a share is the self time over the wall time of the step under the "
        "profiler.",
        "",
        _figures_table(labels, profiles),
        "",
        _groups_table(labels, profiles, device=False),
    ]
    if cuda:
        lines += ["", _groups_table(labels, profiles, device=True)]
    lines += ["", _ops_table(labels, profiles, top), ""]
    if cuda:
        lines.append(f"Host syncs: {SYNC_NOTE}.")
    else:
        lines.append(
            "CPU: kernels, device busy time and host-device synchronizations do not apply. "
            "Memory: tensors allocated during the step (torch's CPU allocator, from "
            "torch.profiler's memory events; library workspaces are not seen)."
        )
    return "\n".join(lines) + "\n"


def plot_groups(labels: list[str], profiles: list, path, title: str) -> bool:
    """Bar chart of the share of the step per operator group (PNG); ``False`` if seaborn
    is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd
        import seaborn as sns
    except ImportError:
        return False
    from ..measure import output
    from ..measure.profiling import GROUPS, OUTSIDE, RUNTIME

    records = []
    for label, p in zip(labels, profiles, strict=True):
        name = f"{label} ({_ms(p.profiled_time)}/step)"
        for group, (cpu, dev) in p.groups().items():
            if group == RUNTIME and not p.on_cuda:
                continue
            records.append((name, group, "host: self CPU time", 100 * cpu / p.profiled_time))
            if p.on_cuda:
                records.append((name, group, "device: kernel time", 100 * dev / p.profiled_time))
        records.append((name, OUTSIDE, "host: self CPU time", 100 * p.outside / p.profiled_time))
    df = pd.DataFrame(records, columns=["method", "group", "timeline", "share of the step (%)"])
    grid = sns.catplot(
        data=df,
        kind="bar",
        x="share of the step (%)",
        y="group",
        hue="method",
        col="timeline",
        order=[g for g in GROUPS if g in set(df.group)] + [OUTSIDE],
        height=4,
        aspect=1.8,
    )
    grid.set_titles("{col_name}")
    grid.figure.suptitle(title, y=1.03)
    output.atomic_write(
        path, lambda f: grid.figure.savefig(f, format="png", dpi=120, bbox_inches="tight")
    )
    plt.close(grid.figure)
    return True
