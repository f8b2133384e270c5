"""``projunn-bench run``: run a benchmark sweep into a new results folder.

The sweep itself is :func:`suite.measure.runner.run_sweep`; this module parses the options,
builds the case list, prints the summary (:func:`suite.report.summary.run_summary`) and
writes the run's report (:mod:`suite.report`) into the run folder.
"""

from __future__ import annotations

import argparse
import sys

from ..measure import cases as cases_mod
from ..measure.methods import METHODS
from ..measure.workloads import WORKLOADS
from ..report.summary import run_summary
from ._args import (
    FORMATS,
    Extend,
    add_option_argument,
    add_out_argument,
    add_threads_argument,
    apply_threads,
    positive_float,
    positive_int,
    table_format,
)

NAME = "run"

EPILOG = """\
examples:
  projunn-bench run                          # the quick CPU grid (projunn-bench list: its time)
  projunn-bench run --full --device cuda     # the GPU grid, N up to 16384
  projunn-bench run --workloads update --methods projunn_t svd --sizes 1024 --ranks 1 16
  projunn-bench run --grid tiny --out /tmp/bench --no-progress
  projunn-bench run --workloads conv_update conv_train_step --channels 64 --spatial 16
  projunn-bench run --workloads update --sizes 1024 --profile   # + per-step profile figures
  PROJUNN_BENCH_GRID=full projunn-bench run --device all

output (never overwritten; one new folder per run):
  OUT/YYYYmmdd-HHMMSS/results.csv    one row per measurement: workload, method, n, k,
                                     dtype, device, options, metric, value, unit, iqr,
                                     repeat, status (ok|skipped|error), reason, step,
                                     samples, cpu_share, contended
  OUT/YYYYmmdd-HHMMSS/machine.json   CPU/GPU/RAM, versions, git commit, run settings,
                                     peak RSS, GPU power/clock samples, run status
                                     (running|complete|interrupted|terminated)
  OUT/YYYYmmdd-HHMMSS/report/        report.html, report.md, figures (projunn-bench
                                     report; needs the report extra; --no-report: none)
metrics: time [s] (median of the samples, each the mean of a block of calls timed by
  torch.utils.benchmark; iqr = interquartile range; samples = the samples),
  host_peak_rss [bytes], cuda_peak_memory [bytes], unitarity_* [1] (||W^H W - I||_F /
  sqrt(N)), dist_to_exact [1] (rank-k step vs exact full-gradient step, relative),
  orthogonality_* [1] (conv: max |sigma - 1| over the frequency matrices),
  norm_error_* [1] (conv: max | ||m(x)|| / ||x|| - 1 | on random inputs).
  with --instructions: instructions [instructions] and estimated_cycles [cycles] per step
  (callgrind, 3 steps, one thread; cycles = L1 hits + 5 LL hits + 35 memory accesses)
  and operations [operations] (compute operators one step dispatches).
  with --profile: profiled_time, ops_per_step, step_peak_memory, step_resident_memory,
  step_temporary_memory, group_self_cpu_time:GROUP and, on CUDA, kernels_per_step,
  memcpy_per_step, device_busy_time, device_busy_fraction, host_syncs_per_step (a lower
  bound), group_self_device_time:GROUP (see 'projunn-bench profile --help').
convolutions (conv_* workloads): n = channels C, the grid side H = W is written first in
  options (height=H;width=W), dtype = the layer's real dtype.
contention: every timed case records cpu_share, the CPU time its threads got over the time
  they were ready to run (1 on a quiet machine); below 0.9 it is marked contended=True,
  the run ends with a warning, and the report leaves it out of exponents and speed-ups.
  machine.json records the load average and involuntary context switches at the start
  and the end ("load").
exit status: 0 ok, 1 some case failed (status "error"), 2 bad usage (nothing ran),
  3 with --strict: a case was timed contended, 130 interrupted (Ctrl-C) or 143
  terminated (SIGTERM): what was measured is written."""


HELP = "run a benchmark sweep and write a results table"
DESCRIPTION = (
    "Run the benchmark sweep (update, train_step and accuracy workloads, "
    "and their conv_* forms for orthogonal convolutions) over a grid of methods, "
    "sizes N (conv: channels C x grid side H = W), ranks k, dtypes and devices. Cases "
    "that cannot run here are written as 'skipped' rows with the reason."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument(
        "--grid",
        choices=sorted(cases_mod.GRIDS),
        help=f"parameter grid (default: ${cases_mod.GRID_ENV} or 'quick')",
    )
    grid.add_argument(
        "--quick",
        dest="grid",
        action="store_const",
        const="quick",
        help="the quick grid (2 CPU cores, minutes)",
    )
    grid.add_argument(
        "--full",
        dest="grid",
        action="store_const",
        const="full",
        help="the full grid (GPUs, N up to 16384)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="cpu",
        help="device(s) to run on; cuda cases are skipped without CUDA (default: cpu)",
    )
    parser.add_argument(
        "--workloads",
        action=Extend,
        choices=list(WORKLOADS),
        metavar="W",
        help=f"workloads, from {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--methods",
        action=Extend,
        choices=list(METHODS),
        metavar="M",
        help=f"methods, from {', '.join(METHODS)} (default: every method "
        "that applies to the workload)",
    )
    parser.add_argument(
        "--sizes",
        action=Extend,
        type=positive_int,
        metavar="N",
        help="matrix sizes N (default: the grid's)",
    )
    parser.add_argument(
        "--channels",
        action=Extend,
        type=positive_int,
        metavar="C",
        help="channels C of the conv_* workloads (default: the grid's)",
    )
    parser.add_argument(
        "--spatial",
        action=Extend,
        type=positive_int,
        metavar="HW",
        help="grid side H = W of the conv_* workloads (default: the grid's)",
    )
    parser.add_argument(
        "--ranks",
        action=Extend,
        type=positive_int,
        metavar="K",
        help="projUNN ranks k (default: the grid's)",
    )
    parser.add_argument(
        "--dtypes",
        action=Extend,
        choices=list(cases_mod.DTYPES),
        metavar="D",
        help=f"dtypes, from {', '.join(cases_mod.DTYPES)} (default: the grid's, "
        "float32 complex64; conv workloads take the real ones)",
    )
    add_option_argument(parser)
    parser.add_argument(
        "--min-time",
        type=positive_float,
        metavar="S",
        help="seconds of timed samples per case before sampling may stop (once the "
        "IQR is below 10%% of the median; default: the grid's)",
    )
    parser.add_argument(
        "--max-time",
        type=positive_float,
        metavar="S",
        help="most seconds of timed samples per case (default: the grid's)",
    )
    add_threads_argument(parser, default="the grid's (1 for the gate grid), else torch's")
    parser.add_argument(
        "--accuracy-steps",
        type=positive_int,
        metavar="S",
        help="training steps of the accuracy workload (default: the grid's)",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        metavar="B",
        help="rows per training batch of train_step and accuracy (default: the grid's)",
    )
    add_out_argument(parser)
    parser.add_argument(
        "--format",
        type=table_format,
        default="csv",
        metavar="{" + ",".join(FORMATS) + "}",
        help="table format (parquet needs pyarrow: pip install 'projunn-bench[parquet]'; "
        "default: csv)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const=5,
        type=positive_int,
        metavar="S",
        help="also profile S steps (default 5) of each update / train_step case after its "
        "timing and add the per-step figures of 'projunn-bench profile' (ops, kernels, "
        "syncs, busy fraction, temporaries, time by operator group) to the table",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when a case was timed contended (other processes held the cores: "
        "cpu_share below 0.9), so that a busy machine cannot pass off its timings",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count, for every timed CPU case, the instructions and estimated cycles "
        "per step under callgrind and the compute operators of a step (one valgrind "
        "process for all cases; rows instructions, estimated_cycles and operations; "
        "skipped with the install line without valgrind)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not write the report (RUN/report/; needs the report extra)",
    )


def _write_report(folder) -> None:
    """Write the run's report into ``folder/report`` and say where, or say why not."""
    from ..report import missing_report_packages

    missing = missing_report_packages()
    if missing:
        print(f"report: not written ({missing})")
        return
    try:
        from ..report.build import build_report

        command = f"projunn-bench report {folder}"
        report = build_report([folder], folder / "report", command=command)
    except Exception as e:  # the measurements are written; a report problem must not hide them
        print(f"report: not written ({type(e).__name__}: {e})")
        return
    print(f"report: {report.html}\n        {report.markdown}")


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..measure import runner

    try:
        grid_name = args.grid or cases_mod.grid_name()
    except ValueError as e:
        parser.error(str(e))
    grid = cases_mod.GRIDS[grid_name]
    devices = ("cpu", "cuda") if args.device == "all" else (args.device,)
    cases = cases_mod.iter_cases(
        grid,
        workloads=args.workloads,
        methods=args.methods,
        sizes=args.sizes,
        ranks=args.ranks,
        dtypes=args.dtypes,
        devices=devices,
        options=args.options,
        channels=args.channels,
        spatial=args.spatial,
    )
    apply_threads(args)
    settings = grid.settings.with_overrides(
        min_time=args.min_time,
        max_time=args.max_time,
        threads=args.threads,  # None keeps the grid's own (the gate grid: 1)
        accuracy_steps=args.accuracy_steps,
        batch=args.batch,
        profile_steps=args.profile,
    )
    info = {"grid": grid_name, "argv": args.argv}
    print(
        f"projunn-bench: {len(cases)} cases, grid {grid_name!r}, device {args.device}",
        file=sys.stderr,
    )
    result = runner.run_sweep(
        cases,
        settings,
        args.out,
        fmt=args.format,
        progress=not args.no_progress,
        info=info,
        instructions=args.instructions,
    )
    planned: dict[str, set[str]] = {}
    for case in cases:
        planned.setdefault(case.workload, set()).add(case.method)
    summary = run_summary(result.rows, planned)
    if summary:
        print(summary)
    counts = result.counts
    print(
        f"\ncases: {counts.get('ok', 0)} ok, {counts.get('skipped', 0)} skipped, "
        f"{counts.get('error', 0)} error, {result.done}/{result.total} done"
    )
    print(f"results: {result.table}\nmachine: {result.machine}")
    if not args.no_report:
        _write_report(result.folder)
    if result.contended:
        print(contention_warning(len(result.contended), result.total), file=sys.stderr)
    if result.interrupted:
        print(f"{result.status}: partial results written", file=sys.stderr)
    if result.stop_code or counts.get("error"):
        return result.stop_code or 1
    return 3 if args.strict and result.contended else 0


def contention_warning(contended: int, total: int) -> str:
    """What the end of a run says about its contended cases, and what to do."""
    from ..measure.timing import CONTENDED_BELOW

    return (
        f"warning: {contended} of {total} cases were timed contended: other processes held "
        f"the cores (cpu_share below {CONTENDED_BELOW}), so those times measure the load as "
        "much as the code. They are marked in the contended column and left out of the "
        "report's exponents and speed-ups. Rerun them on a quiet machine (uptime shows the "
        "load), or with --threads 1 on shared cores; --strict makes such a run exit 3."
    )
