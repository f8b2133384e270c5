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
from . import counts as gate_counts

__all__ = [
    "MARKER",
    "GateError",
    "asv_executable",
    "check_commits",
    "project_root",
    "result_file",
    "run_gate",
    "same_commit_text",
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


def summary(
    base: str,
    head: str,
    comparison,
    wall: float,
    failed: list[str] = (),
    counts=None,
    times_note: str = "",
) -> str:
    """The markdown of ``compare.md`` (the pull-request comment): the verdict, which
    measure flagged what, the counts (a :class:`suite.gate.counts.CountVerdict`, with
    where the instructions went), then the time comparison of :func:`verdict`
    (``comparison``; ``None`` with ``times_note`` saying why there is none).

    >>> from suite.report.compare import Comparison
    >>> print(summary("main", "HEAD", Comparison([], 1.5), 61.0).splitlines()[2])
    **No benchmark is slower** by more than 1.5x beyond noise (main vs HEAD, 1.0 min).
    """
    from ..report.compare import count_limits_text

    timed_bad = list(comparison.regressed) if comparison is not None else []
    counted_bad = list(counts.regressed) if counts is not None else []
    failed = [*failed, *(counts.failed if counts is not None else [])]
    bad = timed_bad or counted_bad or failed
    verdict_text = (
        "**PERFORMANCE DECREASED**: a benchmark is slower (or failed)"
        if bad
        else "**No benchmark is slower**"
    )
    limits = []
    if counts is not None:
        limits.append(count_limits_text(counts.threshold))
    if comparison is not None:
        limits.append(f"a time {comparison.factor:g}x beyond noise")
    if counts is None and comparison is not None:
        head_line = f"{verdict_text} by more than {comparison.factor:g}x beyond noise"
    else:
        head_line = f"{verdict_text} (limits: {' or '.join(limits)})"
    text = (
        f"{MARKER}\n### projUNN bench gate\n"
        f"{head_line} ({base} vs {head}, {wall / 60:.1f} min).\n\n"
        "float32, one CPU thread. Counts: callgrind, one process per commit; times: CPU "
        "time, asv continuous --interleave-rounds, judged by the detector of `projunn-bench "
        "compare` (ratio = HEAD / BASE).\n"
    )
    if counts is not None or comparison is not None:
        flagged: dict[str, list[str]] = {}
        for c in counted_bad:
            flagged.setdefault(c.case, []).append(
                f"operators {c.base:.0f} → {c.new:.0f}"
                if c.test == "operations"
                else f"{c.test} {100 * (c.ratio - 1):+.2f} %"
            )
        for c in timed_bad:
            flagged.setdefault(c.case, []).append(f"time {c.ratio:.2f}x")
        text += (
            "\n**Flagged by**: "
            + (
                "; ".join(f"`{case}`: {', '.join(what)}" for case, what in sorted(flagged.items()))
                or "nothing"
            )
            + "\n"
        )
    if failed:
        text += "\nFailed in HEAD: " + ", ".join(f"`{f}`" for f in failed) + "\n"
    if counts is not None:
        text += "\n" + counts.markdown().replace("<", "&lt;").replace(">", "&gt;")
    if comparison is None:
        return text + (f"\n#### Times\n\nNot measured: {times_note}\n" if times_note else "")
    body = comparison.markdown().split("\n", 1)[1]  # without its own title
    return text + "\n#### Times\n" + body.replace("<", "&lt;").replace(">", "&gt;")


def same_commit_text(base: str, head: str, sha: str) -> str:
    """What the gate says when BASE and HEAD are one commit (it then exits 2).

    >>> same_commit_text("main", "HEAD", "0123456789abcdef")
    'gate: BASE (main) and HEAD (HEAD) are the same commit 0123456789: nothing to compare'
    """
    return (
        f"gate: BASE ({base}) and HEAD ({head}) are the same commit {sha[:10]}: nothing to compare"
    )


def run_gate(
    base: str,
    head: str = "HEAD",
    *,
    factor: float = gate_asv.FACTOR,
    threshold: float | None = None,
    out: Path = Path("gate-results"),
    dry_run: bool = False,
    root: Path | None = None,
    counts: bool = True,
    times: bool = True,
) -> int:
    """Run the gate (see the module docstring); returns the exit status: 0 nothing slower,
    1 "PERFORMANCE DECREASED" (or a benchmark failed in HEAD), 2 the gate could not run
    (asv failed, BASE and HEAD are the same commit). ``counts``: count instructions
    (:mod:`suite.gate.counts`, judged at ``threshold``); ``times``: time with asv.
    Raises :class:`GateError` before anything runs when the gate cannot run here."""
    from ..measure.callgrind import missing_reason
    from ..report.compare import COUNT_THRESHOLD

    threshold = COUNT_THRESHOLD if threshold is None else threshold
    if not (counts or times):
        raise GateError("nothing to measure: counts and times are both off")
    root = root or project_root()
    check_commits(root, base, head)
    cmd = gate_asv.command(base, head, factor=factor, extra=["--show-stderr"])
    if dry_run:
        if times:
            print(shlex.join(cmd))
        if counts:
            print(
                f"count: {len(gate_counts.cases())} cases of {base} and of {head}, one "
                "callgrind process each",
                file=sys.stderr,
            )
        return 0
    asv = asv_executable() if times else None
    if times and asv is None:
        raise GateError(
            'asv is not installed here; install the test extra (pip install -e ".[test]") '
            "or asv itself (or gate the counts alone: --no-times)"
        )
    if counts and missing_reason() and not times:
        raise GateError(missing_reason())
    base_hash, head_hash = (_git_hash(root, name) for name in (base, head))
    out.mkdir(parents=True, exist_ok=True)
    if base_hash == head_hash:
        text = same_commit_text(base, head, base_hash)
        atomic_write_text(out / "compare.md", f"{MARKER}\n### projUNN bench gate\n{text[6:]}.\n")
        print(text)
        return 2
    start = time.monotonic()
    count_verdict, count_note = None, ""
    if counts and missing_reason():
        count_note = missing_reason()
        print(f"gate: instructions not counted: {count_note}")
    elif counts:
        count_verdict = _count(root, base_hash, head_hash, out, threshold)
        print(
            f"gate: counted in {time.monotonic() - start:.0f} s; "
            f"{len(count_verdict.regressed)} count(s) beyond their thresholds"
        )
    comp, failed, times_note = None, [], "--no-times" if not times else ""
    if times:
        cmd[0] = asv
        env = gate_asv.environment()
        log_path = out / "contention.jsonl"
        log_path.unlink(missing_ok=True)
        env[CONTENTION_LOG] = str(log_path.resolve())
        with open(out / "gate.log", "w") as log:
            if not (Path.home() / ".asv-machine.json").exists():
                _run([asv, "machine", "--yes"], root, env, log)
            status, output = _run(cmd, root, env, log)
        compact(log_path)  # one line per case and commit instead of one per sample
        if status == 1 and "PERFORMANCE DECREASED" not in output:
            status = 2  # asv could not build, install or import the suite
        if status not in (0, 1):
            print(f"gate: asv failed (exit {status}); see {out / 'gate.log'}")
            if count_verdict is None:
                return 2
            times_note = f"asv failed (exit {status}); see gate.log"
        else:
            comp = verdict(
                result_file(root, base_hash), result_file(root, head_hash), factor, log_path
            )
            failed = [c.case for c in comp.only_base]  # timed in BASE, not in HEAD: it failed
    wall = time.monotonic() - start
    text = summary(base, head, comp, wall, failed, count_verdict, times_note)
    if count_note:
        text += f"\nInstructions not counted: {count_note}\n"
    atomic_write_text(out / "compare.md", text)
    bad = bool(
        (comp is not None and comp.regressed)
        or failed
        or (count_verdict is not None and (count_verdict.regressed or count_verdict.failed))
    )
    told = comp.counts() if comp is not None else "times not judged"
    print(f"gate: {'PERFORMANCE DECREASED' if bad else 'ok'} in {wall:.0f} s; {told}")
    print(f"gate: wrote {out / 'compare.md'}")
    return 1 if bad else 0


def _count(root: Path, base: str, head: str, out: Path, threshold: float):
    """Count both commits at once (two callgrind processes: the 2 cores of a CI runner;
    a count does not move with the load), keeping callgrind's files under
    ``out/counts/{base,head}`` and each process's output in ``counts-SIDE.log``."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    counted = gate_counts.cases()

    def one(side: str, commit: str):
        folder = out / "counts" / side
        shutil.rmtree(folder, ignore_errors=True)
        print(f"gate: counting {len(counted)} cases of {commit[:10]} under callgrind")
        with open(out / f"counts-{side}.log", "w") as log:
            return gate_counts.count_commit(root, commit, folder, counted, log=log)

    with ThreadPoolExecutor(max_workers=2) as pool:
        found = {s: pool.submit(one, s, c) for s, c in (("base", base), ("head", head))}
        runs = {s: f.result() for s, f in found.items()}
    return gate_counts.CountVerdict(runs["base"], runs["head"], counted, threshold)
