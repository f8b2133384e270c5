"""``projunn-bench calibrate``: choose the regression detector's default factor from A/A runs.

The study is :mod:`suite.studies.calibrate`; this module parses and checks the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import Extend, add_threads_argument, output_dir, positive_int

NAME = "calibrate"
HELP = "choose compare's and the gate's default factor from A/A runs"
DESCRIPTION = (
    "Run the same grid several times (A/A runs), judge every consecutive pair with the "
    "regression detector of compare and the gate at candidate factors, plant slowdowns of "
    "one case, and report the smallest factor with no false alarm that catches them."
)
EPILOG = """\
examples:
  projunn-bench calibrate --runs 6 --gate-data results/data/gate-noise-2026-12-04 \\
      --out results/data/calibration-2026-12-04 --report results/detector.md
  projunn-bench calibrate --from RUN1 RUN2 RUN3 --out /tmp/cal    # judge runs already made
  projunn-bench gate-noise --runs 5 --data DIR                      # the gate grid's pairs

The sweeps (the timed workloads of --grid) run one after another into OUT/runs/; a
stopped campaign keeps its finished runs (judge them with --from). --gate-data takes the
data folder of projunn-bench gate-noise (its aa-* runs: asv results of both commits).
Candidate factors 1.1-1.45 (and 1.5-2.5, to show what the noise alone needs); planted
slowdowns 1.5x, 2x, 3x of every case in turn. Run it on a quiet machine: contended cases
are not judged, and the report counts them.
output: OUT/detector.md (also printed, and written to --report), OUT/runs/*.
exit status: 0 done, 2 bad usage or nothing to judge, 130 interrupted."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..measure.cases import GRIDS

    parser.add_argument("--runs", type=positive_int, default=6, help="A/A sweeps (default 6)")
    parser.add_argument(
        "--grid", choices=sorted(GRIDS), default="quick", help="grid of the sweeps (quick)"
    )
    parser.add_argument(
        "--from",
        dest="from_runs",
        action=Extend,
        type=Path,
        default=[],
        metavar="RUN",
        help="judge these run folders (in order) instead of running sweeps",
    )
    parser.add_argument(
        "--gate-data",
        action=Extend,
        type=Path,
        default=[],
        metavar="DIR",
        help="gate-noise data folders whose aa-* runs are the gate grid's A/A pairs",
    )
    add_threads_argument(parser, default="the grid's")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR", help="folder")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the report here")


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..studies.calibrate import calibrate

    for folder in [*args.from_runs, *args.gate_data]:
        if not folder.exists():
            parser.error(f"{folder} does not exist")
    if len(args.from_runs) == 1:
        parser.error("argument --from: an A/A pair needs two runs at least")
    if args.report is not None and args.report.is_dir():
        parser.error(f"argument --report: {args.report} is a folder")
    return calibrate(
        runs=args.runs,
        grid=args.grid,
        out=args.out,
        from_runs=args.from_runs,
        gate_data=args.gate_data,
        threads=args.threads,
        report_path=args.report,
        command="projunn-bench " + " ".join(args.argv),
    )
