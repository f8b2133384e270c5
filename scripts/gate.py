#!/usr/bin/env python3
"""The pull-request gate: does HEAD make a benchmarked step slower than BASE?

Runs ``asv continuous --interleave-rounds --factor F BASE HEAD`` over the
gate's benchmarks (``suite/gate.py``: the ``gate`` grid, float32 on one CPU thread, every
method, projUNN up to N = 1024) with OMP/MKL/OpenBLAS pinned to one thread, then
``asv compare`` of the two commits. Writes into ``--out``:

* ``gate.log``: everything asv printed;
* ``compare.md``: the verdict and the comparison table (the pull-request comment).

Exit status: 0 nothing slower, 1 "PERFORMANCE DECREASED" (or a benchmark failed in
HEAD), 2 bad usage or asv could not run.

Examples::

    python scripts/gate.py main                 # main vs HEAD, factor 1.5
    python scripts/gate.py origin/main HEAD --factor 2 --out gate-results
    python scripts/gate.py main --dry-run       # print the asv command only

asv builds one virtual environment (``asv.conf.json``: torch pinned to 2.13.0; set
``PIP_INDEX_URL`` to PyTorch's CPU index where pip would otherwise take a CUDA build) and
installs BASE and HEAD into it in turn. The benchmark code is the working tree's
``suite/``; the measured code (``projunn_core``, ``baselines``) is each commit's.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suite import gate  # noqa: E402
from suite.commands._args import output_dir, positive_float  # noqa: E402
from suite.output import atomic_write_text  # noqa: E402

MARKER = "<!-- projunn-bench-gate -->"
"""First line of ``compare.md``: the pull-request comment updated in place carries it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/gate.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("Examples::")[1].split("asv builds")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base", metavar="BASE", help="commit, branch or tag to compare with")
    parser.add_argument("head", metavar="HEAD", nargs="?", default="HEAD", help="(HEAD)")
    parser.add_argument(
        "--factor",
        type=positive_float,
        default=gate.FACTOR,
        help=f"slower by more than this ratio (and beyond noise) fails (default {gate.FACTOR})",
    )
    parser.add_argument(
        "--out", type=output_dir, default="gate-results", help="folder for gate.log, compare.md"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the asv command and stop")
    return parser


def _git_hash(name: str) -> str | None:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or None


def asv_executable() -> str | None:
    """The ``asv`` of this Python's environment (also when it is not activated), else
    the one on PATH, else ``None``."""
    beside = Path(sys.executable).with_name("asv")
    return str(beside) if beside.exists() else shutil.which("asv")


def _run(cmd: list[str], env: dict[str, str], log) -> tuple[int, str]:
    """Run ``cmd``, echoing and logging its output as it comes; (exit status, output)."""
    print("$", shlex.join(cmd), file=log, flush=True)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
    return proc.wait(), "".join(lines)


def sections(table: str) -> list[tuple[str, str]]:
    r"""``asv compare --split`` output as (title, markdown table) pairs.

    >>> sections("Benchmarks that have got worse:\n\n| a |\n|---|\n| 1 |\n")
    [('Benchmarks that have got worse:', '| a |\n|---|\n| 1 |')]
    """
    out: list[tuple[str, str]] = []
    for block in table.strip().split("\n\n"):
        block = block.strip()
        if block.startswith("|") and out and not out[-1][1]:
            out[-1] = (out[-1][0], block)
        elif block.startswith("|"):
            out.append(("Benchmarks:", block))
        elif block:
            out.append((block, ""))
    return [(title, rows) for title, rows in out if rows]


def summary(base: str, head: str, factor: float, status: int, table: str, wall: float) -> str:
    """The markdown of ``compare.md``: the verdict, the slower and faster benchmarks, the
    unchanged ones folded away.

    >>> print(summary("main", "HEAD", 1.5, 0, "| x |", 61.0).splitlines()[2])
    **No benchmark is slower** by more than 1.5x beyond noise (main vs HEAD, 1.0 min).
    """
    verdict = (
        "**No benchmark is slower**"
        if status == 0
        else "**PERFORMANCE DECREASED**: a benchmark is slower (or failed)"
    )
    text = (
        f"{MARKER}\n### projUNN bench gate\n"
        f"{verdict} by more than {factor}x beyond noise ({base} vs {head}, "
        f"{wall / 60:.1f} min).\n\n"
        "float32, one CPU thread, CPU time, asv continuous --interleave-rounds "
        "(`python scripts/gate.py`; ratio = HEAD / BASE; `+` slower, `-` faster, "
        "`!` failed in HEAD, `~` beyond the factor but within noise).\n"
    )
    for title, rows in sections(table):
        rows = rows.replace("<", "&lt;").replace(">", "&gt;")  # <branch> names are not tags
        if "worse" in title or "improved" in title:
            text += f"\n{title}\n\n{rows}\n"
        else:
            text += f"\n<details><summary>{title}</summary>\n\n{rows}\n\n</details>\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.factor > 1:
        parser.error(f"--factor must be > 1, got {args.factor}")
    for name in (args.base, args.head):
        if _git_hash(name) is None:
            parser.error(f"{name!r} is not a commit of this repository")
    cmd = gate.command(args.base, args.head, factor=args.factor, extra=["--show-stderr"])
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    asv = asv_executable()
    if asv is None:
        print(
            "gate: asv is not installed here; install the test extra "
            '(pip install -e ".[test]") or asv itself',
            file=sys.stderr,
        )
        return 2
    cmd[0] = asv
    args.out.mkdir(parents=True, exist_ok=True)
    env = gate.environment()
    start = time.monotonic()
    with open(args.out / "gate.log", "w") as log:
        if not (Path.home() / ".asv-machine.json").exists():
            _run([asv, "machine", "--yes"], env, log)
        status, output = _run(cmd, env, log)
        compare = [
            asv, "compare", "--factor", str(args.factor), "--split", "--sort", "ratio",
            args.base, args.head,
        ]  # fmt: skip
        cstatus, table = _run(compare, env, log)
    wall = time.monotonic() - start
    if status == 1 and "PERFORMANCE DECREASED" not in output:
        status = 2  # asv could not build, install or import the suite
    if status not in (0, 1) or cstatus != 0:
        print(f"gate: asv failed (exit {status}/{cstatus}); see {args.out / 'gate.log'}")
        return 2
    text = summary(args.base, args.head, args.factor, status, table, wall)
    atomic_write_text(args.out / "compare.md", text)
    verdict = "PERFORMANCE DECREASED" if status else "ok"
    print(f"gate: {verdict} in {wall:.0f} s; wrote {args.out / 'compare.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
