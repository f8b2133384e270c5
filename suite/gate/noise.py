"""``projunn-bench gate-noise``: the gate's A/A false alarms and a planted 2x slowdown.

In a throwaway clone of this repository (never touching its branches) it makes two
commits on top of HEAD:

* ``A/A``: an empty commit, the same code as HEAD;
* ``planted``: ``projunn_core/step.py`` runs every projUNN step twice at N = ``plant_n``
  (once on a copy of A, thrown away): the update there costs 2x, elsewhere nothing changes.

Then it runs the gate (``projunn-bench gate``, in the clone) once HEAD vs planted and
``runs`` times HEAD vs A/A, and writes (after every run) a markdown report: per run the
wall time, exit status, load average, the cases flagged slower, the largest ratio; the
planted cases' ratios; and the A/A pairs judged again at other factors, with planted
slowdowns of one case (:mod:`suite.report.calibration`). Each run's compare.md, asv's
results of both commits (samples included), the contention log and run.json (exit
status, wall time, load) are kept in the data folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..measure.output import atomic_write_text
from ..report.contention import asv_pair
from .run import project_root, verdict

__all__ = ["GateRun", "campaign", "judge", "load_run", "report"]

PLANT = """

_update_once = _update


def _update(A, *args):  # planted by projunn-bench gate-noise: 2x the step at N = {n}
    if A.shape[-1] == {n}:
        _update_once(A.clone(), *args)
    return _update_once(A, *args)
"""
"""Appended to projunn_core/step.py: ``projunn_step`` and the optimizers call ``_update``."""


@dataclass
class GateRun:
    """One gate run of the campaign: its ``label``, exit ``status``, ``wall`` seconds, the
    load average (1, 5 min) and, when asv got that far, the saved results judged by the
    gate's detector (``comparison``)."""

    label: str
    status: int
    wall: float
    load: tuple[float, float]
    comparison: object | None = None

    @property
    def flagged(self) -> list:
        """The cases the detector calls slower."""
        return list(self.comparison.regressed) if self.comparison is not None else []

    @property
    def max_ratio(self) -> float:
        changes = self.comparison.changes if self.comparison is not None else []
        return max((c.ratio for c in changes), default=float("nan"))


def git(repo: Path, *args: str, who: str = "gate noise") -> str:
    """``git ARGS`` in ``repo`` as ``who`` (commits of a throwaway clone); its stdout."""
    env = dict(os.environ, GIT_AUTHOR_NAME=who, GIT_COMMITTER_NAME=who)
    env.update(GIT_AUTHOR_EMAIL="gate@localhost", GIT_COMMITTER_EMAIL="gate@localhost")
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_clone(work: Path, plant_n: int) -> tuple[Path, str]:
    """Clone HEAD into ``work/repo`` with branches ``aa`` and ``planted``; its HEAD hash."""
    repo = work / "repo"
    root = project_root()
    head = git(root, "rev-parse", "HEAD")
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(root), str(repo)], check=True)
    git(repo, "fetch", "-q", str(root), head)
    git(repo, "checkout", "-q", "-B", "base", head)
    git(repo, "checkout", "-q", "-B", "aa", head)
    git(repo, "commit", "-q", "--allow-empty", "-m", "gate noise: A/A (no change)")
    git(repo, "checkout", "-q", "-B", "planted", head)
    step = repo / "projunn_core" / "step.py"
    step.write_text(step.read_text() + PLANT.format(n=plant_n))
    git(repo, "commit", "-q", "-am", f"gate noise: projUNN step 2x slower at N={plant_n}")
    git(repo, "checkout", "-q", "base")
    return repo, head


def run_gate(repo: Path, head: str, label: str, factor: float, data: Path) -> GateRun:
    """``projunn-bench gate base HEAD`` in the clone (its own code); its files, asv's
    results of both commits and the contention log land in ``data/label``."""
    out = data / label
    out.mkdir(parents=True, exist_ok=True)  # the gate may exit before making it
    start = time.monotonic()
    cmd = [sys.executable, "-m", "suite.cli", "gate", "base", head, "--factor", str(factor)]
    status = subprocess.run([*cmd, "--out", str(out)], cwd=repo).returncode
    wall, load = time.monotonic() - start, os.getloadavg()[:2]
    info = {"status": status, "wall_s": wall, "loadavg_1_5": load}
    for side, name in (("base", "base"), ("head", head)):  # asv's results, samples included
        sha = git(repo, "rev-parse", name)[:8]
        for found in (repo / ".asv" / "results").glob(f"*/{sha}-*.json"):
            (out / "asv").mkdir(exist_ok=True)
            atomic_write_text(out / "asv" / f"{side}.json", found.read_text())
    meta = repo / ".asv" / "results" / "benchmarks.json"  # the parameter names
    if meta.is_file():
        atomic_write_text(out / "benchmarks.json", meta.read_text())
    atomic_write_text(out / "run.json", json.dumps(info) + "\n")
    return load_run(out, factor)


def load_run(folder: Path, factor: float) -> GateRun:
    """A finished run from its folder (``run.json`` and, if asv got that far, the saved
    results, judged at ``factor``)."""
    info = json.loads((folder / "run.json").read_text())
    run = GateRun(folder.name, info["status"], info["wall_s"], tuple(info["loadavg_1_5"]))
    run.comparison = judge(folder, factor)
    return run


def judge(folder: Path, factor: float):
    """The gate's verdict (:func:`suite.gate.run.verdict`) on a run's saved results, or
    ``None`` when the run saved none."""
    base, head = folder / "asv" / "base.json", folder / "asv" / "head.json"
    if not (base.is_file() and head.is_file()):
        return None
    return verdict(base, head, factor, folder / "contention.jsonl")


def report(aa: list[GateRun], planted: GateRun, factor: float, plant_n: int, data: Path) -> str:
    """The campaign's markdown: each run, the planted cases, the A/A pairs judged again
    at other factors with planted slowdowns of one case (:mod:`suite.report.calibration`)."""

    def fmt(x):
        return "–" if x is None or x != x else f"{x:.2f}"

    lines = [
        "| run | exit | wall (min) | load avg (1, 5 min) | timed | flagged slower | "
        "largest ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in [*aa, planted]:
        changes = r.comparison.changes if r.comparison is not None else []
        flagged = ", ".join(f"`{x.case}` {fmt(x.ratio)}" for x in r.flagged) or "none"
        lines.append(
            f"| {r.label} | {r.status} | {r.wall / 60:.1f} | {r.load[0]:.1f}, {r.load[1]:.1f} "
            f"| {len(changes)} | {flagged} | {fmt(r.max_ratio)} |"
        )
    changes = planted.comparison.changes if planted.comparison is not None else []
    target = [c for c in changes if f" N={plant_n} " in c.case and "projunn" in c.case]
    lines += ["", f"Planted cases (projUNN at N = {plant_n}), HEAD vs planted:", ""]
    lines += ["| case | ratio | flagged |", "|---|---|---|"]
    lines += [f"| `{c.case}` | {fmt(c.ratio)} | {c.kind == 'regressed'} |" for c in target]
    aa_max = max((r.max_ratio for r in aa if r.comparison is not None), default=float("nan"))
    update = [c.ratio for c in target if c.case.startswith("update ")]
    lines += [
        "",
        f"- A/A false alarms at factor {factor}: {sum(len(r.flagged) for r in aa)} in "
        f"{len(aa)} runs; largest A/A ratio {fmt(aa_max)}.",
        f"- Planted 2x at N = {plant_n}: {sum(c.kind == 'regressed' for c in target)} of "
        f"{len(target)} projUNN cases flagged; update ratios "
        f"{', '.join(fmt(x) for x in update) or '–'}.",
    ]
    pairs = [p for p in (asv_pair(data / r.label) for r in aa) if p is not None]
    if pairs:
        from ..report.calibration import evaluate, render

        lines += ["", render(evaluate(pairs), "The A/A pairs judged at other factors")]
    return "\n".join(lines) + "\n"


def campaign(
    *,
    runs: int,
    factor: float,
    plant_n: int,
    out: Path,
    data: Path | None,
    work: Path | None,
    from_data: bool,
    argv: list[str],
) -> int:
    """Run the campaign (or, with ``from_data``, rewrite ``out`` from the runs already in
    ``data``); returns the exit status (2: a gate run could not run, nothing measured).
    ``argv`` is quoted in the report as how to reproduce it."""
    today = _dt.date.today().isoformat()
    data = (data or out.parent / "data" / f"gate-noise-{today}").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    root = project_root()

    def write(planted: GateRun, done: list[GateRun], head: str) -> None:
        shown = data.relative_to(root) if data.is_relative_to(root) else data
        header = (
            f"# The pull-request gate's noise ({today})\n\n"
            f"Commit {head[:10]}, {platform.node()}: {os.cpu_count()} cores (the load "
            f"average of each run is beside it; the gate itself keeps one core busy), "
            f"factor {factor}. Reproduce: `projunn-bench gate-noise {' '.join(argv)}`. "
            f"Each run's table: `{shown}/`.\n\n"
        )
        atomic_write_text(out, header + report(done, planted, factor, plant_n, data))

    if from_data:
        if not (data / "planted" / "run.json").exists():
            print(f"gate-noise: {data} holds no finished planted run", file=sys.stderr)
            return 2
        planted = load_run(data / "planted", factor)
        done = [load_run(p.parent, factor) for p in sorted(data.glob("aa-[0-9]*/run.json"))]
        commit = planted.comparison.base_label if planted.comparison is not None else "?"
        write(planted, done, commit)
    else:
        repo, head = make_clone(work or Path(tempfile.mkdtemp(prefix="gate-noise-")), plant_n)
        # The planted run first; the file is rewritten after every run, so a stopped
        # measurement still leaves what it found.
        planted = run_gate(repo, "planted", "planted", factor, data)
        done: list[GateRun] = []
        for i in range(runs + 1):
            last = done[-1] if done else planted
            if last.status not in (0, 1):  # the gate could not run: nothing was measured
                print(
                    f"gate-noise: the gate run {last.label!r} failed (exit {last.status}); "
                    f"see {data / last.label / 'gate.log'}",
                    file=sys.stderr,
                )
                return 2
            write(planted, done, head)
            if i < runs:
                done.append(run_gate(repo, "aa", f"aa-{i + 1}", factor, data))
    print(f"gate-noise: wrote {out}")
    return 0
