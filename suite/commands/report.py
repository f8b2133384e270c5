"""``projunn-bench report``: figures and tables from any number of result sets.

The work is done by :mod:`suite.report` (loading, analysis, figures, rendering); this
module parses the options and prints where the report went.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._args import positive_int

NAME = "report"

EPILOG = """\
RESULTS may be any mix of:
  a run folder (results.csv or results.parquet + machine.json) or a folder of them,
  a results table X.csv / X.parquet with X.machine.json beside it (results/data/),
  asv results: .asv/results, one machine's folder in it, or one result file,
  pytest-benchmark JSON (--benchmark-json).

examples:
  projunn-bench report results/runs/20261127-101500        # -> that folder's report/
  projunn-bench report results/runs results/data --out /tmp/all
  projunn-bench report .asv/results --out asv-report
  projunn-bench report results/data/*h100*.csv results/runs/LATEST --out results/report

output (the folder is replaced as a whole, never left half-written):
  OUT/report.md     the report: time vs N, scaling exponents, speed-ups and crossover N,
                    memory, accuracy, learning curves; every figure's numbers as a table
  OUT/report.html   the same, self-contained (figures embedded; no scripts, no network)
  OUT/fig*.png      the figures (seaborn)
  OUT/data.csv      every row read, with its run and platform
An input that cannot be read is named in a warning and left out; runs whose
machine.json still says "running" are skipped.
exit status: 0 report written, 1 report packages missing, 2 bad usage or no usable input."""


HELP = "write a report (markdown, HTML, PNG figures) from result sets"
DESCRIPTION = (
    "Read run folders, results tables, asv results and pytest-benchmark "
    "JSON (several machines, CPU and GPU) and write a report with figures."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="inputs (see below)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="report folder (default: RUN/report for a single run folder, ./report otherwise); "
        "an earlier report there is replaced, any other existing folder refused",
    )
    parser.add_argument(
        "--min-n",
        type=positive_int,
        default=256,
        metavar="N",
        help="fit scaling exponents over the sizes N >= this (default: 256)",
    )
    parser.add_argument("--title", default="projUNN bench report", help="report title")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a note shown at the top, e.g. how busy the machine was (repeatable)",
    )


def default_out(results: list[str]) -> Path:
    """``RUN/report`` for a single run folder, ``report`` otherwise."""
    if len(results) == 1:
        p = Path(results[0])
        if (p / "machine.json").is_file() and any(
            (p / t).is_file() for t in ("results.csv", "results.parquet")
        ):
            return p / "report"
    return Path("report")


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..report import missing_report_packages

    missing = missing_report_packages()
    if missing:
        print(f"projunn-bench report: {missing}", file=sys.stderr)
        return 1
    from ..report.build import ReportError, build_report

    out = Path(args.out) if args.out else default_out(args.results)
    try:
        result = build_report(
            args.results,
            out,
            min_n=args.min_n,
            title=args.title,
            log=lambda msg: print(msg, file=sys.stderr),
            command=shlex.join(["projunn-bench", *args.argv]),
            notes=args.note,
        )
    except ReportError as e:
        print(f"projunn-bench report: error: {e}", file=sys.stderr)
        return 2
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"report: {result.markdown}\n        {result.html}")
    return 0
