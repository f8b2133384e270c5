"""``projunn-bench gate BASE [HEAD]``: does HEAD make a benchmarked step slower than BASE?

Runs ``asv continuous --interleave-rounds --factor F BASE HEAD`` over the gate's
benchmarks (:mod:`suite.gate.asv`: the ``gate`` grid, float32 on one CPU thread, every
method, projUNN up to N = 1024) with OMP/MKL/OpenBLAS pinned to one thread, then
``asv compare`` of the two commits, in the project's checkout (the folder holding
``asv.conf.json``). Writes into ``out``:

* ``gate.log``: everything asv printed;
* ``compare.md``: the verdict and the comparison (the pull-request comment);
* ``contention.jsonl``: the CPU share of each timed case and commit (a case timed while
  other processes held the cores is listed, never called slower).

The verdict is the detector of ``projunn-bench compare`` (:mod:`suite.report.compare`) on
the two commits' asv results, with asv's 99 % confidence intervals: a case is slower when
HEAD/BASE exceeds the factor and the intervals do not overlap; asv's own verdict is not
used.

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
from ..measure.timing import CONTENTION_LOG
from ..report.contention import compact
from . import asv as gate_asv

__all__ = [
    "MARKER",
    "GateError",
    "asv_executable",
    "check_commits",
    "project_root",
    "result_file",
    "run_gate",
    "summary",
    "verdict",
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


def result_file(root: Path, commit: str) -> Path:
    """The newest asv result file of ``commit`` (a hash) under ``root/.asv/results``."""
    found = sorted(
        (root / ".asv" / "results").glob(f"*/{commit[:8]}-*.json"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise GateError(f"asv wrote no results of commit {commit[:8]} under {root / '.asv'}")
    return found[-1]


def verdict(base_file: Path, head_file: Path, factor: float, log: Path | None = None):
    """The gate's :class:`suite.report.compare.Comparison` of two asv result files, with
    the contention the benchmarks logged: the same detector as ``projunn-bench compare``."""
    from ..report.compare import compare_frames
    from ..report.contention import contention_marks, mark
    from ..report.load import load_one

    (sb, db), (sh, dh) = load_one(base_file), load_one(head_file)
    marks = contention_marks(log) if log is not None else {}
    db, dh = mark(db, sb.commit, marks), mark(dh, sh.commit, marks)
    return compare_frames(db, dh, factor=factor, base_label=sb.commit, new_label=sh.commit)


def summary(base: str, head: str, comparison, wall: float, failed: list[str] = ()) -> str:
    """The markdown of ``compare.md`` (the pull-request comment): the verdict, then the
    comparison of :func:`verdict`.

    >>> from suite.report.compare import Comparison
    >>> print(summary("main", "HEAD", Comparison([], 1.5), 61.0).splitlines()[2])
    **No benchmark is slower** by more than 1.5x beyond noise (main vs HEAD, 1.0 min).
    """
    bad = comparison.regressed or failed
    verdict_text = (
        "**PERFORMANCE DECREASED**: a benchmark is slower (or failed)"
        if bad
        else "**No benchmark is slower**"
    )
    text = (
        f"{MARKER}\n### projUNN bench gate\n"
        f"{verdict_text} by more than {comparison.factor:g}x beyond noise ({base} vs {head}, "
        f"{wall / 60:.1f} min).\n\n"
        "float32, one CPU thread, CPU time, asv continuous --interleave-rounds, judged by "
        "the detector of `projunn-bench compare` (ratio = HEAD / BASE).\n"
    )
    if failed:
        text += "\nFailed in HEAD: " + ", ".join(f"`{f}`" for f in failed) + "\n"
    body = comparison.markdown().split("\n", 1)[1]  # without its own title
    return text + body.replace("<", "&lt;").replace(">", "&gt;")


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
    log_path = out / "contention.jsonl"
    log_path.unlink(missing_ok=True)
    env[CONTENTION_LOG] = str(log_path.resolve())
    start = time.monotonic()
    with open(out / "gate.log", "w") as log:
        if not (Path.home() / ".asv-machine.json").exists():
            _run([asv, "machine", "--yes"], root, env, log)
        status, output = _run(cmd, root, env, log)
    wall = time.monotonic() - start
    compact(log_path)  # one line per case and commit instead of one per sample
    if status == 1 and "PERFORMANCE DECREASED" not in output:
        status = 2  # asv could not build, install or import the suite
    if status not in (0, 1):
        print(f"gate: asv failed (exit {status}); see {out / 'gate.log'}")
        return 2
    base_hash, head_hash = (_git_hash(root, name) for name in (base, head))
    comp = verdict(result_file(root, base_hash), result_file(root, head_hash), factor, log_path)
    failed = [c.case for c in comp.only_base]  # timed in BASE, not in HEAD: it failed
    atomic_write_text(out / "compare.md", summary(base, head, comp, wall, failed))
    bad = bool(comp.regressed or failed)
    print(f"gate: {'PERFORMANCE DECREASED' if bad else 'ok'} in {wall:.0f} s; {comp.counts()}")
    print(f"gate: wrote {out / 'compare.md'}")
    return 1 if bad else 0
