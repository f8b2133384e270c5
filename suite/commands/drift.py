"""``projunn-bench drift``: float32 drift of projUNN updates and the cost of repairing it.

The study is :mod:`suite.studies.drift`; this module parses and checks the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import Extend, add_out_argument, positive_float, positive_int

NAME = "drift"

EPILOG = """\
examples:
  projunn-bench drift --report results/drift.md    # N = 64: 10^6 steps, N = 1024: 10^5 (~7 min)
  projunn-bench drift --quick                      # 10^4 and 10^3 steps (about a minute)
  projunn-bench drift --sizes 256:20000 --every 100 --variants T

Each run applies STEPS in-place projUNN updates (check=False, as the optimizers call
them) to a Haar-random float32 A from random rank-k factor pairs, and records
||A^H A - I||_F / sqrt(N) at 1, 2, 5 x 10^j steps, without repair and with
pc.reorthogonalize every --every steps (measured just before it). It then times one
kernel update, one projunn_step and one repair side by side.
output: a new folder under --out with results.csv (step = update count) and
  machine.json; the markdown report on stdout (and in --report).
exit status: 0 done, 2 bad usage, 130/143 interrupted/terminated (the partial table is
  kept)."""


def size_steps(text: str) -> tuple[int, int]:
    """An argparse type: ``N:STEPS``."""
    n, sep, steps = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not N:STEPS")
    return positive_int(n), positive_int(steps)


HELP = "float32 drift of projUNN updates, with and without reorthogonalize"
DESCRIPTION = (
    "Measure how far float32 projUNN updates drift from unitary over many "
    "steps, with and without pc.reorthogonalize, and what the repair costs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=size_steps,
        action=Extend,
        metavar="N:STEPS",
        help="sizes and update counts (default 64:1000000 1024:100000)",
    )
    parser.add_argument("--quick", action="store_true", help="64:10000 1024:1000")
    parser.add_argument("--variants", action=Extend, choices=("T", "D"), default=["T", "D"])
    parser.add_argument(
        "--every",
        type=positive_int,
        default=1000,
        metavar="M",
        help="repair period M of the repaired runs (default 1000)",
    )
    parser.add_argument("--k", type=positive_int, default=4, help="rank of the updates (4)")
    parser.add_argument(
        "--scale", type=positive_float, default=0.1, help="norm of each factor column (0.1)"
    )
    parser.add_argument(
        "--pool", type=positive_int, default=256, help="precomputed factor pairs (256)"
    )
    parser.add_argument(
        "--max-time", type=positive_float, default=2.0, help="seconds to time each call (2)"
    )
    parser.add_argument("--jobs", type=positive_int, default=2, help="worker processes (2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    add_out_argument(parser)
    parser.add_argument(
        "--report", type=Path, metavar="FILE", help="also write the markdown report here"
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from dataclasses import fields

    from ..studies.drift import DEFAULT_SIZES, QUICK_SIZES, Drift, study

    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    if any(args.k > n for n, _ in sizes):
        parser.error(f"argument --k: {args.k} exceeds a size N")
    if args.seed < 0:
        parser.error(f"argument --seed: must be >= 0, got {args.seed}")
    if args.report is not None and args.report.is_dir():
        parser.error(f"argument --report: {args.report} is a folder")
    given = {f.name: getattr(args, f.name) for f in fields(Drift)} | {"sizes": sizes}
    setup = Drift(**{**given, "variants": tuple(args.variants)})
    command = "projunn-bench " + " ".join(args.argv)
    return study(setup, args.out, report_path=args.report, command=command)
