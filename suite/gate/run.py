"""``projunn-bench gate BASE [HEAD]``: does HEAD make a benchmarked step slower than BASE?

Runs ``asv continuous --interleave-rounds --factor F BASE HEAD`` over the gate's
benchmarks (:mod:`suite.gate.asv`: the ``gate`` grid, float32 on one CPU thread, every
method, projUNN up to N = 1024) with OMP/MKL/OpenBLAS pinned to one thread, then
``asv compare`` of the two commits, in the project's checkout (the folder holding
``asv.conf.json``). Writes into ``out``:

* ``gate.log``: everything asv printed;
* ``compare.md``: the verdict and the comparison table (the pull-request comment).

asv builds one virtual environment (``asv.conf.json``: torch 2.13.0 from PyTorch's CPU
index) and installs BASE and HEAD into it in turn. The benchmark code is the working
tree's ``suite/``; the measured code (``projunn_core``, ``baselines``) is each commit's.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..measure.output import atomic_write_text
from . import asv as gate_asv

__all__ = [
    "MARKER",
    "GateError",
    "asv_executable",
    "check_commits",
    "project_root",
    "run_gate",
    "sections",
    "summary",
]

MARKER = "<!-- projunn-bench-gate -->"
"""First line of ``compare.md``: the pull-request comment updated in place carries it."""


class GateError(RuntimeError):
    """The gate cannot run here (no asv, no checkout, an unknown commit)."""


def project_root(start: Path | None = None) -> Path:
    """The checkout the gate runs in: the nearest folder at or above ``start`` (default:
    the current folder) holding ``asv.conf.json``, else the one this package lives in;
    :class:`GateError` when neither has one."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[2]):
        if (folder / "asv.conf.json").is_file():
            return folder
    raise GateError(
        f"no asv.conf.json in {start} or above: the gate runs in a checkout of projunn-bench"
    )


def _git_hash(root: Path, name: str) -> str | None:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or None


def check_commits(root: Path, *names: str) -> None:
    """Raise :class:`GateError` unless every one of ``names`` is a commit in ``root``."""
    for name in names:
        if _git_hash(root, name) is None:
            raise GateError(f"{name!r} is not a commit of the repository in {root}")


def asv_executable() -> str | None:
    """The ``asv`` of this Python's environment (also when it is not activated), else
    the one on PATH, else ``None``."""
    beside = Path(sys.executable).with_name("asv")
    return str(beside) if beside.exists() else shutil.which("asv")


def _run(cmd: list[str], root: Path, env: dict[str, str], log) -> tuple[int, str]:
    """Run ``cmd`` in ``root``, echoing and logging its output as it comes; (exit status,
    output)."""
    print("$", shlex.join(cmd), file=log, flush=True)
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
        "(`projunn-bench gate`; ratio = HEAD / BASE; `+` slower, `-` faster, "
        "`!` failed in HEAD, `~` beyond the factor but within noise).\n"
    )
    for title, rows in sections(table):
        rows = rows.replace("<", "&lt;").replace(">", "&gt;")  # <branch> names are not tags
        if "worse" in title or "improved" in title:
            text += f"\n{title}\n\n{rows}\n"
        else:
            text += f"\n<details><summary>{title}</summary>\n\n{rows}\n\n</details>\n"
    return text


def run_gate(
    base: str,
    head: str = "HEAD",
    *,
    factor: float = gate_asv.FACTOR,
    out: Path = Path("gate-results"),
    dry_run: bool = False,
    root: Path | None = None,
) -> int:
    """Run the gate (see the module docstring); returns the exit status: 0 nothing slower,
    1 "PERFORMANCE DECREASED" (or a benchmark failed in HEAD), 2 asv could not run.
    Raises :class:`GateError` before anything runs when the gate cannot run here."""
    root = root or project_root()
    check_commits(root, base, head)
    cmd = gate_asv.command(base, head, factor=factor, extra=["--show-stderr"])
    if dry_run:
        print(shlex.join(cmd))
        return 0
    asv = asv_executable()
    if asv is None:
        raise GateError(
            'asv is not installed here; install the test extra (pip install -e ".[test]") '
            "or asv itself"
        )
    cmd[0] = asv
    out.mkdir(parents=True, exist_ok=True)
    env = gate_asv.environment()
    start = time.monotonic()
    with open(out / "gate.log", "w") as log:
        if not (Path.home() / ".asv-machine.json").exists():
            _run([asv, "machine", "--yes"], root, env, log)
        status, output = _run(cmd, root, env, log)
        compare = [
            asv, "compare", "--factor", str(factor), "--split", "--sort", "ratio", base, head,
        ]  # fmt: skip
        cstatus, table = _run(compare, root, env, log)
    wall = time.monotonic() - start
    if status == 1 and "PERFORMANCE DECREASED" not in output:
        status = 2  # asv could not build, install or import the suite
    if status not in (0, 1) or cstatus != 0:
        print(f"gate: asv failed (exit {status}/{cstatus}); see {out / 'gate.log'}")
        return 2
    text = summary(base, head, factor, status, table, wall)
    atomic_write_text(out / "compare.md", text)
    verdict = "PERFORMANCE DECREASED" if status else "ok"
    print(f"gate: {verdict} in {wall:.0f} s; wrote {out / 'compare.md'}")
    return status
