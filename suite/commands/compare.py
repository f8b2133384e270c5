"""``projunn-bench compare``: noise-aware comparison of two result sets' timings.

The statistics are :mod:`suite.report.compare`; this module parses the options, prints
the markdown and sets the exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._args import factor, positive_float

NAME = "compare"

EPILOG = """\
BASE and NEW are each a run folder, a results table (X.csv with X.machine.json), or
one asv result file (.asv/results/MACHINE/HASH-ENV.json). With --asv DIR they are
commit hashes (prefixes) looked up in that asv results folder.

A case counts as a regression (improvement) when its median time grew (shrank) by more
than --factor AND the spread says it is not noise: a two-sided Mann-Whitney U test on the
stored samples (p < --alpha) when there are enough samples for the test to reach alpha,
else non-overlapping intervals (sample ranges; asv's 99% CI; median +- IQR).

examples:
  projunn-bench compare results/runs/20261127-101500 results/runs/20261128-090000
  projunn-bench compare BASE_RUN NEW_RUN --factor 1.5 --out compare.md
  projunn-bench compare --asv .asv/results 9aec71c HEAD_HASH --machine ci
  projunn-bench compare .asv/results/vm/3e8c0269-venv.json .asv/results/vm/9aec71cd-venv.json

exit status: 0 nothing regressed, 1 something regressed, 2 unusable inputs (missing,
  corrupt, still "running", no common cases; the message names the file) or bad usage."""


def _alpha(text: str) -> float:
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not below 1")
    return value


HELP = "compare the timings of two runs (regressions, improvements)"
DESCRIPTION = (
    "Compare the median times of the cases two result sets share, "
    "counting only changes beyond a factor that the measured spread confirms."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="the reference results")
    parser.add_argument("new", metavar="NEW", help="the results to check")
    parser.add_argument(
        "--factor",
        type=factor,
        default=1.1,
        metavar="F",
        help="smallest ratio of medians that counts (default: 1.1, as asv)",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=0.01,
        metavar="A",
        help="significance level of the rank test (default: 0.01)",
    )
    parser.add_argument("--out", metavar="FILE", help="also write the markdown to FILE")
    parser.add_argument(
        "--asv", metavar="DIR", help="BASE and NEW are commit hashes in this asv results folder"
    )
    parser.add_argument("--machine", help="with --asv: the asv machine name")


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..report import missing_report_packages

    missing = missing_report_packages(("pandas",))
    if missing:
        print(f"projunn-bench compare: {missing}", file=sys.stderr)
        return 2
    if args.machine and not args.asv:
        parser.error("--machine needs --asv")
    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        parser.error(f"--out {out}: not a file in an existing folder")
    from ..report.compare import compare
    from ..report.load import InputError

    try:
        comp = compare(
            args.base,
            args.new,
            factor=args.factor,
            alpha=args.alpha,
            asv=args.asv,
            machine=args.machine,
        )
    except InputError as e:
        print(f"projunn-bench compare: error: {e}", file=sys.stderr)
        return 2
    text = comp.markdown()
    print(text, end="")
    if out is not None:
        from ..measure.output import atomic_write_text

        try:
            atomic_write_text(out, text)
        except OSError as e:
            print(f"projunn-bench compare: error: --out {out}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"written: {out}", file=sys.stderr)
    print(comp.counts(), file=sys.stderr)
    return 1 if comp.regressed else 0
