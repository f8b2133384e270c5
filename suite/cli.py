"""``projunn-bench``: one entry point, one module per command in :mod:`suite.commands`.

Each command module defines ``NAME``, ``HELP`` (one line), ``DESCRIPTION``, ``EPILOG``
(examples, outputs, exit status), ``add_arguments(parser)`` and ``main(args, parser) -> int``
(the exit status); :data:`COMMANDS` lists them in the order
``--help`` shows them. A command imports its heavy dependencies inside ``main`` so that
``--help`` stays fast.

>>> main(["list"])  # doctest: +ELLIPSIS
methods:
...
0
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import check_layout

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (
    "run",
    "profile",
    "task",
    "tune",
    "report",
    "compare",
    "listing",
    "gate",
    "gate_noise",
    "calibrate",
    "gpu_check",
    "drift",
    "asv_offline",
)
"""Modules of :mod:`suite.commands`, in the order ``projunn-bench --help`` lists them."""

WITH_METHODS = ("run", "profile", "task", "tune", "listing")
"""The commands that take methods: their ``--help`` says how to add one (:data:`PLUGINS_HELP`)."""

PLUGINS_HELP = """\
your own methods (plug-ins, suite.plugins; README: "Your own method"):
  PROJUNN_BENCH_PLUGINS=module[,module...]  modules on the path (PYTHONPATH), module:function
                                            or .py files, loaded before the options are read
  entry-point group projunn_bench.methods   the same, declared by an installed package
  each registers its methods with suite.register_method; one that fails to load is an
  error naming it (exit status 2) and nothing runs."""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``projunn-bench`` with every command's subparser."""
    parser = argparse.ArgumentParser(
        prog="projunn-bench",
        description="Benchmarks of unitary/orthogonal weight updates: projUNN and baselines.",
        epilog="run 'projunn-bench COMMAND --help' for the options and examples of each "
        "command.\n\n" + PLUGINS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"suite.commands.{name}")
        command = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.DESCRIPTION,
            epilog=module.EPILOG + (f"\n\n{PLUGINS_HELP}" if name in WITH_METHODS else ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.main, command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``projunn-bench`` (``argv`` defaults to ``sys.argv[1:]``); returns
    the exit status. Bad options raise ``SystemExit(2)`` with a message naming them. The
    plug-ins (:mod:`suite.plugins`: entry points, ``$PROJUNN_BENCH_PLUGINS``) load first;
    one that fails is an error naming it (status 2) before any command runs."""
    check_layout()
    from .plugins import PluginError, load_plugins

    try:  # before the parser: the plug-ins' methods are choices of --method(s)
        load_plugins()
    except PluginError as e:  # nothing has run and no results folder exists yet
        print(f"projunn-bench: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.handler(args, args.command_parser)  # its errors name the command
    except BrokenPipeError:  # e.g. `projunn-bench list | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
