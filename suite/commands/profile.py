"""``projunn-bench profile``: where the time and memory of a step go, per method.

The measuring is :func:`suite.measure.profiling.profile_work`; this module checks the options,
profiles each ``--method`` in turn and writes the results folder: the tidy table, the
markdown tables it prints, one trace per method, the group figure and machine.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..measure import cases as cases_mod
from ..measure.methods import METHODS
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
  OUT/YYYYmmdd-HHMMSS/results.csv        tidy table (suite.measure.rows.COLUMNS), one row per
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


HELP = "profile a step: top operators, kernels, syncs, memory, trace"
DESCRIPTION = (
    "Profile S steps of each method (after warm-up) with torch.profiler: "
    "the operators' calls and self CPU / device time per step, wall and device busy "
    "time, kernels and host synchronizations per step (CUDA), peak and temporary "
    "memory, a Chrome/Perfetto trace and a figure of the time by operator group. "
    "Several --method values are profiled side by side."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def _cases(args, parser) -> list[cases_mod.Case]:
    """One case per ``--method``; anything that cannot run here is a usage error."""
    out, labels = [], set()
    for name, k in args.methods:
        spec = METHODS[name]
        k = k if k is not None else (args.k if spec.ranked else None)
        opts = cases_mod.case_options(name, args.workload, args.options)
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


def main(args, parser: argparse.ArgumentParser) -> int:

    from ..measure.probes import Profile
    from ..measure.profiling import SYNC_NOTE
    from ..measure.record import Recorder
    from ..measure.runner import frozen_heap, run_case

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
    with Recorder(args.out, info=info) as rec, frozen_heap():
        for i, case in enumerate(cases, 1):
            label = cases_mod.method_label(case.method, case.k)
            print(f"[{i}/{len(cases)}] profiling {case.id} ...", file=sys.stderr, flush=True)
            probe = Profile(args.steps, ops=True, trace=rec.folder / f"trace-{label}.json")
            result = run_case(case, settings, probes=[probe])
            rec.add(result.rows)
            if "profile" not in result.found:  # one failing method does not lose the others
                failed = True
                print(f"  {label} failed: {result.rows[-1].reason}", file=sys.stderr)
                continue
            done.append((case, result.found["profile"]))
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
    from ..measure import output
    from ..report.profile import plot_groups, render

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
