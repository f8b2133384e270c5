"""``projunn-bench gate BASE [HEAD]``: the pull-request performance gate.

The gate itself is :mod:`suite.gate.run` (what it times: :mod:`suite.gate.asv`); this
module parses the options and maps the gate's problems to exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._args import add_factor_argument, add_threshold_argument, output_dir

NAME = "gate"

EPILOG = """\
examples:
  projunn-bench gate main                          # main vs HEAD, factor 1.6
  projunn-bench gate origin/main HEAD --factor 2 --out gate-results
  projunn-bench gate main --dry-run                # print the asv command only
  projunn-bench gate main --no-times               # instruction counts only (minutes)

It first counts instructions: each commit's cases (the gate grid's, projUNN also at
N = 1024) in one callgrind process (valgrind needed: apt-get install valgrind), with the
commit's projunn_core/baselines and this checkout's suite/; a case whose instructions
per step grew by more than --threshold percent (estimated cycles: twice it) fails, and so
does one whose step dispatches more compute operators; compare.md names the functions
whose inclusive counts changed most and the operators that changed. Then it times:
it runs `asv continuous --interleave-rounds` over the gate grid's timed benchmarks
(projunn-bench list --grid gate: float32, one CPU thread, CPU time) in the checkout
holding asv.conf.json, then `asv compare`, and writes OUT/gate.log (everything asv
printed) and OUT/compare.md (the verdict and the table: the pull-request comment).
A case fails when HEAD/BASE exceeds --factor and the 99% confidence intervals of the two
medians do not overlap. The gate's noise: projunn-bench gate-noise, results/gate.md.

exit status: 0 nothing slower, 1 PERFORMANCE DECREASED (or a benchmark failed in HEAD),
  2 bad usage or the gate could not run (no asv, no checkout, an unknown commit, BASE and
  HEAD the same commit, asv failed to build or import the suite: see gate.log)."""


HELP = "the pull-request gate: is HEAD slower than BASE? (instruction counts, asv)"
DESCRIPTION = (
    "Compare the gate's benchmarks of two commits with asv continuous and "
    "fail when a case got slower beyond a factor and the noise."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="commit, branch or tag to compare with")
    parser.add_argument("head", metavar="HEAD", nargs="?", default="HEAD", help="(HEAD)")
    add_factor_argument(parser, "a case slower by more than this ratio, beyond the noise, fails")
    parser.add_argument(
        "--out",
        type=output_dir,
        default=Path("gate-results"),
        metavar="DIR",
        help="folder for gate.log and compare.md (default: gate-results)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the asv command and stop")
    add_threshold_argument(parser)
    parser.add_argument(
        "--no-counts", action="store_true", help="do not count instructions (times only)"
    )
    parser.add_argument(
        "--no-times", action="store_true", help="do not time with asv (instruction counts only)"
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..gate.run import GateError, check_commits, project_root, run_gate

    try:  # usage errors: nothing runs
        root = project_root()
        check_commits(root, args.base, args.head)
    except GateError as e:
        parser.error(str(e))
    try:
        return run_gate(
            args.base,
            args.head,
            factor=args.factor,
            threshold=args.threshold,
            out=args.out,
            dry_run=args.dry_run,
            root=root,
            counts=not args.no_counts,
            times=not args.no_times,
        )
    except GateError as e:
        print(f"projunn-bench gate: error: {e}", file=sys.stderr)
        return 2
