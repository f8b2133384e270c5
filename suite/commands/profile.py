"""``projunn-bench profile``: where the time and memory of a step go, per method.

The measuring is :func:`suite.profiling.profile_work`; this module checks the options,
profiles each ``--method`` in turn and writes the results folder: the tidy table, the
markdown tables it prints, one trace per method, the group figure and machine.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .. import cases as cases_mod
from ..methods import METHODS
from ._args import (
    add_option_argument,
    add_out_argument,
    add_threads_argument,
    apply_threads,
    method_label_arg,
    positive_float,
    positive_int,
)

NAME = "profile"

SETTINGS = cases_mod.Settings(warmup=3, min_time=0.2, max_time=1.0)
"""Defaults of the wall-time pass (the profiled steps are ``--steps``)."""

EPILOG = """\
examples:
  projunn-bench profile --method projunn_t                    # N=1024, k=4, float32, CPU
  projunn-bench profile --method projunn_t --method expm --threads 1
  projunn-bench profile --method projunn_t-k1 --method projunn_t-k16 --n 4096
  projunn-bench profile --device cuda --method projunn_t --method projunn_d --method expm
  projunn-bench profile --workload train_step --method projunn_d --method cayley --batch 128

output (a new folder, never overwritten):
  OUT/YYYYmmdd-HHMMSS/results.csv        tidy table (suite.output.COLUMNS), one row per
                                         figure; metrics: time, profiled_time, ops_per_step,
                                         kernels_per_step, memcpy_per_step,
                                         device_busy_time, device_busy_fraction,
                                         host_syncs_per_step, step_peak_memory,
                                         step_resident_memory, step_temporary_memory,
                                         host_peak_rss, group_self_cpu_time:GROUP,
                                         op_calls:OP, op_self_cpu_time:OP (+ _device_ on CUDA)
  OUT/YYYYmmdd-HHMMSS/profile.md         the tables printed here
  OUT/YYYYmmdd-HHMMSS/trace-METHOD.json  Chrome/Perfetto trace of the profiled steps
                                         (chrome://tracing or https://ui.perfetto.dev)
  OUT/YYYYmmdd-HHMMSS/groups.png         time by operator group (needs seaborn)
  OUT/YYYYmmdd-HHMMSS/machine.json       machine, versions, settings, notes
Times are per step. share = self time / wall time of the step under the profiler.
Kernels, device busy time and host syncs are measured on CUDA only; host syncs are a
lower bound (torch.cuda.set_sync_debug_mode sees only the syncs torch checks).
exit status: 0 ok, 1 a method failed, 2 bad usage, 130 interrupted."""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        NAME,
        help="profile a step: top operators, kernels, syncs, memory, trace",
        description="Profile S steps of each method (after warm-up) with torch.profiler: "
        "the operators' calls and self CPU / device time per step, wall and device busy "
        "time, kernels and host synchronizations per step (CUDA), peak and temporary "
        "memory, a Chrome/Perfetto trace and a figure of the time by operator group. "
        "Several --method values are profiled side by side.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--method",
        dest="methods",
        action="append",
        required=True,
        type=method_label_arg,
        metavar="NAME",
        help="method to profile (repeatable); a ranked method may carry its rank, "
        "e.g. projunn_t-k16 (see 'projunn-bench list')",
    )
    parser.add_argument("--n", type=positive_int, default=1024, help="matrix size N (1024)")
    parser.add_argument(
        "--k", type=positive_int, default=4, help="rank k of the ranked methods (4)"
    )
    parser.add_argument(
        "--dtype", choices=list(cases_mod.DTYPES), default="float32", help="element type (float32)"
    )
    parser.add_argument(
        "--device", choices=cases_mod.DEVICES, default="cpu", help="where the step runs (cpu)"
    )
    parser.add_argument(
        "--workload",
        choices=("update", "train_step"),
        default="update",
        help="update: one unitary update of the weight from a gradient; train_step: "
        "forward, backward and optimizer step on a batch (update)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=20, metavar="S", help="profiled steps (20)"
    )
    for flag, kind, metavar, text in (
        ("--warmup", positive_int, "W", "warm-up steps"),
        ("--min-time", positive_float, "S", "least seconds of unprofiled wall-time samples"),
        ("--max-time", positive_float, "S", "most seconds of unprofiled wall-time samples"),
        ("--batch", positive_int, "B", "rows per train_step batch"),
    ):
        default = getattr(SETTINGS, flag[2:].replace("-", "_"))
        parser.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} ({default})"
        )
    add_option_argument(parser)
    add_threads_argument(parser)
    parser.add_argument(
        "--top", type=positive_int, default=15, help="operators in the printed table (15)"
    )
    add_out_argument(parser, "results/profiles")
    return parser


def _cases(args, parser) -> list[cases_mod.Case]:
    """One case per ``--method``; anything that cannot run here is a usage error."""
    out, labels = [], set()
    for name, k in args.methods:
        spec = METHODS[name]
        k = k if k is not None else (args.k if spec.ranked else None)
        opts = tuple((key, v) for key, v in args.options if key in spec.defaults)
        case = cases_mod.Case(args.workload, name, args.n, k, args.dtype, args.device, opts)
        label = cases_mod.method_label(name, k)
        if label in labels:
            parser.error(f"argument --method: {label} given twice")
        labels.add(label)
        reason = case.skip_reason()
        if reason:
            parser.error(f"argument --method {label}: cannot profile here: {reason}")
        out.append(case)
    return out


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
    from ..profiling import GROUPS, OUTSIDE

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
    from ..profiling import operator_group

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

    from ..profiling import SYNC_NOTE

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
    from .. import output
    from ..profiling import GROUPS, OUTSIDE, RUNTIME

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


def main(args, parser: argparse.ArgumentParser) -> int:

    from ..profiling import SYNC_NOTE, profile_work
    from ..record import Recorder
    from ..runner import rows_for
    from ..workloads import Measurement, prepare

    cases = _cases(args, parser)
    if args.min_time > args.max_time:
        parser.error(f"argument --min-time: {args.min_time} is above --max-time {args.max_time}")
    settings = SETTINGS.with_overrides(
        warmup=args.warmup,
        min_time=args.min_time,
        max_time=args.max_time,
        threads=apply_threads(args),
        batch=args.batch,
    )
    notes = [f"host_syncs_per_step: {SYNC_NOTE}"] if args.device == "cuda" else []
    info: dict[str, Any] = {
        "command": NAME,
        "argv": args.argv,
        "workload": args.workload,
        "steps": args.steps,
        "settings": dataclasses.asdict(settings),
        "cases": [c.id for c in cases],
        "notes": notes,
    }
    done: list[tuple[cases_mod.Case, Any]] = []
    failed = False
    with Recorder(args.out, info=info) as rec:
        for i, case in enumerate(cases, 1):
            label = cases_mod.method_label(case.method, case.k)
            print(f"[{i}/{len(cases)}] profiling {case.id} ...", file=sys.stderr, flush=True)
            try:
                work = prepare(case, batch=settings.batch)
                trace = rec.folder / f"trace-{label}.json"
                prof = profile_work(work, steps=args.steps, settings=settings, trace=trace)
            except Exception as e:  # one failing method does not lose the others
                failed = True
                reason = f"{type(e).__name__}: {e}"
                print(f"  {label} failed: {reason}", file=sys.stderr)
                rec.add(rows_for(case, [Measurement("", None, "", status="error", reason=reason)]))
                continue
            finally:
                work = None
            rec.add(rows_for(case, prof.measurements()))
            done.append((case, prof))
        if done:
            text = _write_reports(rec, done, args)
            print(text)
    for note in notes:
        print(f"note: {note}")
    print(f"results: {rec.folder}")
    if rec.status != "complete":
        print(f"{rec.status}: partial results written", file=sys.stderr)
        return rec.exit_code
    return 1 if failed else 0


def _write_reports(rec, done, args) -> str:
    """profile.md, the figure and the list of files (in machine.json); returns the text."""
    from .. import output

    done_cases = [c for c, _ in done]
    profiles = [p for _, p in done]
    labels = [cases_mod.method_label(c.method, c.k) for c in done_cases]
    text = render(done_cases, profiles, args.steps, args.top)
    output.atomic_write_text(rec.folder / "profile.md", text)
    files = {"markdown": "profile.md", "traces": [f"trace-{lab}.json" for lab in labels]}
    c = done_cases[0]
    title = f"time by operator group: {c.workload}, N={c.n}, {c.dtype}, {c.device}"
    if plot_groups(labels, profiles, rec.folder / "groups.png", title):
        files["figure"] = "groups.png"
    else:
        rec.info["notes"].append(
            "groups.png not drawn: seaborn is not installed (pip install '.[report]')"
        )
    rec.info["files"] = files
    return text
