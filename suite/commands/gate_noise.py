"""``projunn-bench gate-noise``: measure the gate's false alarms and what it catches.

The campaign is :mod:`suite.gate.noise`; this module parses and checks the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import add_factor_argument, positive_int

NAME = "gate-noise"

EPILOG = """\
examples:
  projunn-bench gate-noise --out results/gate_noise.md      # 3 A/A runs (~15 min, 2 cores)
  projunn-bench gate-noise --runs 1 --out /tmp/gate.md --data /tmp/gate-data
  projunn-bench gate-noise --counts --runs 5 --jobs 2   # count A/A pairs + reference plants
  projunn-bench gate-noise --from-data --data results/data/gate-noise-2026-11-27-quiet \\
      --out results/gate_noise.md                         # re-judge saved runs, run nothing

In a throwaway clone (the repository's branches are never touched) it commits an A/A
change (nothing) and a planted 2x slowdown of the projUNN step at N = --plant-n, then
runs the gate once HEAD vs planted and --runs times HEAD vs A/A. The report (rewritten
after every run, so a stopped campaign keeps what it found) gives per run the wall time,
exit status, load average, what was flagged and the largest ratio, and the same saved
asv results judged again at factors 1.25-2.

exit status: 0 done, 2 bad usage or a gate run could not run (nothing measured)."""


HELP = "measure the gate's noise: A/A false alarms and a planted 2x slowdown"
DESCRIPTION = (
    "Run the pull-request gate on A/A and planted-slowdown commits in a "
    "throwaway clone and report its false alarms and what it catches."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=positive_int, default=3, help="A/A runs (default 3)")
    add_factor_argument(parser, "the gate's factor in the A/A and planted runs")
    parser.add_argument(
        "--plant-n",
        type=positive_int,
        default=1024,
        metavar="N",
        help="N of the planted slowdown, one of the gate grid's sizes (default 1024)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the markdown report (default: results/gate_noise.md, with --counts "
        "results/gate_counts.md)",
    )
    parser.add_argument(
        "--counts",
        action="store_true",
        help="calibrate the instruction counts instead: --runs A/A pairs of whole count runs "
        "(HEAD and an empty commit, each its own callgrind process) and the reference plants "
        "(suite.gate.plants); report the A/A spread, the threshold it supports, what each "
        "plant moves and whether it is caught",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="with --counts: callgrind processes at once (default 1)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="folder for each run's tables (default: data/gate-noise-DATE beside --out)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help="clone and asv environments here (default: a temporary folder)",
    )
    parser.add_argument(
        "--from-data",
        action="store_true",
        help="run nothing: rewrite --out from the runs already in --data",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..gate.noise import campaign
    from ..measure.cases import GRIDS

    if args.counts:
        from ..gate import plants

        out = args.out or Path("results/gate_counts.md")
        if out.is_dir():
            parser.error(f"argument --out: {out} is a folder, not a file")
        today = __import__("datetime").date.today().isoformat()
        return plants.campaign(
            runs=args.runs,
            out=out,
            data=args.data or out.parent / "data" / f"gate-counts-{today}",
            work=args.work,
            from_data=args.from_data,
            jobs=args.jobs,
            argv=args.argv[1:],
        )
    args.out = args.out or Path("results/gate_noise.md")

    sizes = GRIDS["gate"].sizes
    if args.plant_n not in sizes:
        parser.error(f"argument --plant-n: {args.plant_n} is not one of the gate sizes {sizes}")
    if args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a folder, not a file")
    return campaign(
        runs=args.runs,
        factor=args.factor,
        plant_n=args.plant_n,
        out=args.out,
        data=args.data,
        work=args.work,
        from_data=args.from_data,
        argv=args.argv[1:],
    )
