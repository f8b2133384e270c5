"""``projunn-bench compare``: noise-aware comparison of two result sets' timings.

The detector is :mod:`suite.report.compare` (the gate's too); this module parses the
options, prints the markdown and sets the exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._args import add_factor_argument, add_threshold_argument

NAME = "compare"

EPILOG = """\
BASE and NEW are each a run folder, a results table (X.csv with X.machine.json), or
one asv result file (.asv/results/MACHINE/HASH-ENV.json). With --asv DIR they are
commit hashes (prefixes) looked up in that asv results folder.

A case counts as a regression (improvement) when its median time grew (shrank) by more
than --factor AND the 99% confidence intervals of the two medians do not overlap (asv's
interval for asv results; the order statistics of the stored samples, or their range
when fewer than 8; median +- IQR). No test between samples: the samples of one run share
its conditions, and runs, not samples, are independent; the factor covers the shifts
between runs (the default comes from measured A/A pairs: results/detector.md). A case
timed contended (other processes held the cores) on either side is listed, not judged.
This is the detector the pull-request gate uses (projunn-bench gate).
Instruction counts (rows of projunn-bench run --instructions) have no spread to test: a
count that grew by more than --threshold percent is a regression.

examples:
  projunn-bench compare results/runs/20261127-101500 results/runs/20261128-090000
  projunn-bench compare BASE_RUN NEW_RUN --factor 1.5 --out compare.md
  projunn-bench compare --asv .asv/results 9aec71c HEAD_HASH --machine ci
  projunn-bench compare .asv/results/vm/3e8c0269-venv.json .asv/results/vm/9aec71cd-venv.json

exit status: 0 nothing regressed, 1 something regressed, 2 unusable inputs (missing,
  corrupt, still "running", no common cases; the message names the file) or bad usage."""


HELP = "compare the timings of two runs (regressions, improvements)"
DESCRIPTION = (
    "Compare the median times of the cases two result sets share, "
    "counting only changes beyond a factor that the measured spread confirms."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="the reference results")
    parser.add_argument("new", metavar="NEW", help="the results to check")
    add_factor_argument(parser, "a ratio of medians above this, beyond the noise, counts")
    add_threshold_argument(parser)
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
            asv=args.asv,
            machine=args.machine,
            threshold=args.threshold,
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
    return 1 if comp.regressed or comp.count_regressed else 0
