"""``projunn-bench asv-offline HTML_DIR``: an asv dashboard that works without network.

The work is :mod:`suite.report.asv_offline`; this module parses and checks the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "asv-offline"

EPILOG = """\
examples:
  asv publish && projunn-bench asv-offline .asv/html && asv preview
  projunn-bench asv-offline .asv/html --cache ~/.cache/projunn-npm

asv's index.html loads jQuery, flot, bootstrap, stupidtable and md5 from CDNs; offline it
shows only "Can not determine continental origin of swallow". This copies the same
libraries from their npm packages (npm pack, once, into --cache) into HTML_DIR/vendor/
and points index.html at them. Run it after every asv publish (which rewrites index.html).
exit status: 0 done, 1 npm failed or asv's page loads a URL this does not know, 2 bad
  usage (no HTML_DIR/index.html: run asv publish first)."""


HELP = "serve an asv dashboard's JavaScript and CSS from the site itself"
DESCRIPTION = (
    "Make an asv publish dashboard work offline: vendor the libraries its "
    "index.html loads from CDNs, from their npm packages."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("html_dir", type=Path, metavar="HTML_DIR", help="asv's html_dir")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(".asv/npm-cache"),
        metavar="DIR",
        help="where the npm tarballs are kept (default .asv/npm-cache)",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..report.asv_offline import make_offline

    if not (args.html_dir / "index.html").is_file():
        parser.error(f"{args.html_dir / 'index.html'} does not exist: run asv publish first")
    return make_offline(args.html_dir, args.cache)
