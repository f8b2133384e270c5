"""Argument types and checks shared by the ``projunn-bench`` commands.

>>> positive_int("3")
3
>>> method_option("approx=column")
('approx', 'column')
>>> method_label_arg("projunn_t-k16"), method_label_arg("expm")
(('projunn_t', 16), ('expm', None))
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
from pathlib import Path
from typing import Any

from ..measure.cases import parse_method_label
from ..measure.methods import METHODS, check_option
from ..measure.output import FORMATS, require_format

__all__ = [
    "ALL",
    "FORMATS",
    "Extend",
    "add_factor_argument",
    "add_training_method_arguments",
    "chosen_methods",
    "add_option_argument",
    "add_out_argument",
    "add_threads_argument",
    "apply_threads",
    "factor",
    "method_label_arg",
    "method_option",
    "nonnegative_int",
    "output_dir",
    "positive_float",
    "positive_int",
    "table_format",
]


class Extend(argparse.Action):
    """A list option that accumulates: ``--m a b --m c`` gives ``[a, b, c]``, like
    ``action="extend"``, but the first use replaces the default instead of adding to it
    (plain ``extend`` would give ``[default..., a, b, c]``). ``nargs`` defaults to ``+``.

    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument("--m", action=Extend, default=["all"])
    >>> p.parse_args(["--m", "a", "b", "--m", "c"]).m, p.parse_args([]).m
    (['a', 'b', 'c'], ['all'])
    """

    def __init__(self, option_strings, dest, nargs="+", **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        if current is self.default or current is None:  # the first use: drop the default
            current = []
        setattr(namespace, self.dest, [*current, *values])


def _int_at_least(text: str, minimum: int, below: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is {below}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "not positive")


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a seed)."""
    return _int_at_least(text, 0, "negative")


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def factor(text: str) -> float:
    """An argparse type: a ratio above 1 (a slowdown factor: 1.5 = 50 % slower).

    >>> factor("1.5")
    1.5
    """
    value = positive_float(text)
    if not value > 1:
        raise argparse.ArgumentTypeError(f"{value} is not > 1 (1.5 = a 50% change)")
    return value


def method_option(text: str) -> tuple[str, Any]:
    """An argparse type: ``NAME=VALUE`` for a method option some registry method takes,
    with the value checked (:func:`suite.measure.methods.check_option`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    known = {k for m in METHODS.values() for k in (*m.defaults, *m.conv_defaults)}
    if key not in known:
        raise argparse.ArgumentTypeError(f"unknown option {key!r}; known: {sorted(known)}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    try:
        return key, check_option(key, value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def output_dir(text: str) -> Path:
    """An argparse type: a folder that can be written, checked by doing it before
    anything runs: the missing folders are created, a file is written in it and removed,
    and the folders made for the check are removed again (permission bits do not tell:
    root passes every access check, and /proc refuses folders whatever they say)."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    missing = [p for p in (path.absolute(), *path.absolute().parents) if not p.exists()]
    above = (missing[-1].parent if missing else path.absolute()).resolve()
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: {above} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".projunn-bench-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = e.strerror or str(e)
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: {why}") from None
    finally:
        for folder in missing:  # the deepest first
            try:
                folder.rmdir()
            except OSError:
                pass
    return path


def table_format(text: str) -> str:
    """An argparse type: a results table format this machine can write."""
    try:
        return require_format(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def method_label_arg(text: str) -> tuple[str, int | None]:
    """An argparse type: a registry method, optionally with its rank (``projunn_t-k16``);
    returns ``(name, k or None)``."""
    name, k = parse_method_label(text)
    if name not in METHODS:
        raise argparse.ArgumentTypeError(
            f"unknown method {text!r}; choose from {', '.join(METHODS)} "
            "(a ranked method may carry its rank, e.g. projunn_t-k16)"
        )
    return name, k


def add_option_argument(parser: argparse.ArgumentParser) -> None:
    """``--option NAME=VALUE`` (repeatable) into ``args.options``: method options for the
    methods that take them."""
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        type=method_option,
        default=[],
        metavar="NAME=VALUE",
        help="method option for the methods that take it, e.g. approx=column, "
        "capacity=8, orthogonal_map=cayley (repeatable)",
    )


def add_out_argument(parser: argparse.ArgumentParser, default: str = "results/runs") -> None:
    """``--out DIR``: the parent folder of the command's new timestamped output folder."""
    parser.add_argument(
        "--out",
        type=output_dir,
        default=default,
        metavar="DIR",
        help=f"parent folder; each run makes a new timestamped subfolder (default: {default})",
    )


def add_factor_argument(parser: argparse.ArgumentParser, counts: str) -> None:
    """``--factor F``: the detector's ratio (:data:`suite.report.compare.FACTOR` by default);
    ``counts`` says what a ratio above it does in this command."""
    from ..report.compare import FACTOR

    parser.add_argument(
        "--factor",
        type=factor,
        default=FACTOR,
        metavar="F",
        help=f"{counts} (default: {FACTOR}, calibrated on A/A runs: results/detector.md)",
    )


def count_threshold(text: str) -> float:
    """A ``--threshold`` in percent, > 0 and < 100, as a fraction.

    >>> count_threshold("1.5")
    0.015
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"must be a percentage between 0 and 100, got {text}")
    return value / 100


def add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    """``--threshold PCT``: how much an instruction count (or estimated cycles) may grow
    (:data:`suite.report.compare.COUNT_THRESHOLD` by default)."""
    from ..report.compare import COUNT_THRESHOLD

    parser.add_argument(
        "--threshold",
        type=count_threshold,
        default=COUNT_THRESHOLD,
        metavar="PCT",
        help=f"an instruction count per step that grew by more than PCT percent regresses, "
        f"estimated cycles at twice it (default: {100 * COUNT_THRESHOLD:g}, calibrated on A/A "
        "runs and on the cases a code change does not touch: results/gate_counts.md); a step "
        "that dispatches more compute operators regresses whatever PCT",
    )


ALL = "all"
"""The ``--method`` value that stands for every method (:func:`chosen_methods`)."""


def add_training_method_arguments(parser: argparse.ArgumentParser, methods_help: str) -> None:
    """``--method M [M ...]`` (default :data:`ALL`) and ``--rank K [K ...]`` (default 1)
    of the commands that train (``task``, ``tune``); read ``--method`` with
    :func:`chosen_methods`."""
    parser.add_argument("--method", action=Extend, default=[ALL], metavar="M", help=methods_help)
    parser.add_argument(
        "--rank",
        action=Extend,
        type=positive_int,
        default=[1],
        metavar="K",
        help="ranks k of the ranked methods (projunn_t, projunn_d; default: 1)",
    )


def chosen_methods(names, choices, every, parser) -> tuple[list[str], bool]:
    """``--method``'s ``names`` in order, once each, all of them ``choices``, and whether
    they were named; :data:`ALL` alone stands for ``every`` (exits with status 2 otherwise).

    >>> chosen_methods(["b", "a", "b"], ["a", "b"], ["a"], argparse.ArgumentParser())
    (['b', 'a'], True)
    >>> chosen_methods([ALL], ["a", "b"], ["a"], argparse.ArgumentParser())
    (['a'], False)
    """
    names = list(dict.fromkeys(names))
    if ALL in names:
        if len(names) > 1:
            parser.error(f"argument --method: {ALL!r} cannot be combined with other methods")
        return list(every), False
    unknown = [n for n in names if n not in choices]
    if unknown:
        parser.error(
            f"argument --method: unknown {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(choices)} or {ALL}"
        )
    return names, True


def add_threads_argument(parser: argparse.ArgumentParser, default: str = "torch's") -> None:
    """``--threads T``: torch's thread count for the whole command (see :func:`apply_threads`);
    ``default`` says what holds without it."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="T",
        help=f"torch CPU threads for the whole command (default: {default}, i.e. "
        "$OMP_NUM_THREADS or the core count; 1 avoids thread-pool stalls on busy shared "
        "cores). machine.json records the count used",
    )


def apply_threads(args) -> int:
    """Set torch's thread count from ``args.threads`` (if given); return the count in use."""
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return torch.get_num_threads()
