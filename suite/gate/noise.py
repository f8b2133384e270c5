"""``projunn-bench gate-noise``: the gate's A/A false alarms and a planted 2x slowdown.

In a throwaway clone of this repository (never touching its branches) it makes two
commits on top of HEAD:

* ``A/A``: an empty commit, the same code as HEAD;
* ``planted``: ``projunn_core/step.py`` runs every projUNN step twice at N = ``plant_n``
  (once on a copy of A, thrown away): the update there costs 2x, elsewhere nothing changes.

Then it runs the gate (``projunn-bench gate``, in the clone) once HEAD vs planted and
``runs`` times HEAD vs A/A, and writes (after every run) a markdown report: per run the
wall time, exit status, load average, the benchmarks flagged slower ("+"), the largest
ratio; the planted cases' ratios; and the range of factors that gives no A/A false alarm
yet flags the plant. Each run's compare table and run.json (exit status, wall time, load)
are kept in the data folder.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..measure.output import atomic_write_text
from .run import project_root

__all__ = ["FACTORS", "GateRun", "campaign", "flags", "load_run", "parse_table", "report"]

PLANT = """

_update_once = _update


def _update(A, *args):  # planted by projunn-bench gate-noise: 2x the step at N = {n}
    if A.shape[-1] == {n}:
        _update_once(A.clone(), *args)
    return _update_once(A, *args)
"""
"""Appended to projunn_core/step.py: ``projunn_step`` and the optimizers call ``_update``."""


@dataclass
class Row:
    """One line of an asv compare table."""

    mark: str
    ratio: float | None
    name: str


@dataclass
class GateRun:
    label: str
    status: int
    wall: float
    load: tuple[float, float]
    rows: list[Row] = field(default_factory=list)

    @property
    def flagged(self) -> list[Row]:
        return [r for r in self.rows if r.mark in "+!" and r.mark]

    @property
    def max_ratio(self) -> float:
        return max((r.ratio for r in self.rows if r.ratio is not None), default=float("nan"))


def parse_table(text: str) -> list[Row]:
    """The rows of the github-style tables ``asv compare`` prints.

    >>> t = '''| Change | Before [a] | After [b] | Ratio | Benchmark (Parameter) |
    ... |---|---|---|---|---|
    ... | +  | 1.00ms | 2.10ms | 2.10 | benchmarks.Update.time_update('svd', 64) |
    ... |    | 1.00ms | 1.70ms | ~1.70 | benchmarks.X.time_x |'''
    >>> [(r.mark, r.ratio) for r in parse_table(t)]
    [('+', 2.1), ('', 1.7)]
    """
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        separator = len(cells[0]) > 1 and set(cells[0]) <= set("-:")
        if len(cells) != 5 or cells[0] == "Change" or separator:
            continue
        ratio = re.sub(r"[^0-9.]", "", cells[3])
        rows.append(Row(cells[0], float(ratio) if ratio else None, cells[4]))
    return rows


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="gate noise", GIT_COMMITTER_NAME="gate noise")
    env.update(GIT_AUTHOR_EMAIL="gate@localhost", GIT_COMMITTER_EMAIL="gate@localhost")
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_clone(work: Path, plant_n: int) -> tuple[Path, str]:
    """Clone HEAD into ``work/repo`` with branches ``aa`` and ``planted``; its HEAD hash."""
    repo = work / "repo"
    root = project_root()
    head = _git(root, "rev-parse", "HEAD")
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(root), str(repo)], check=True)
    _git(repo, "fetch", "-q", str(root), head)
    _git(repo, "checkout", "-q", "-B", "base", head)
    _git(repo, "checkout", "-q", "-B", "aa", head)
    _git(repo, "commit", "-q", "--allow-empty", "-m", "gate noise: A/A (no change)")
    _git(repo, "checkout", "-q", "-B", "planted", head)
    step = repo / "projunn_core" / "step.py"
    step.write_text(step.read_text() + PLANT.format(n=plant_n))
    _git(repo, "commit", "-q", "-am", f"gate noise: projUNN step 2x slower at N={plant_n}")
    _git(repo, "checkout", "-q", "base")
    return repo, head


def run_gate(repo: Path, head: str, label: str, factor: float, data: Path) -> GateRun:
    """``projunn-bench gate base HEAD`` in the clone (its own code); its table lands in
    ``data/label``."""
    out = data / label
    out.mkdir(parents=True, exist_ok=True)  # the gate may exit before making it
    start = time.monotonic()
    cmd = [sys.executable, "-m", "suite.cli", "gate", "base", head, "--factor", str(factor)]
    status = subprocess.run([*cmd, "--out", str(out)], cwd=repo).returncode
    wall, load = time.monotonic() - start, os.getloadavg()[:2]
    info = {"status": status, "wall_s": wall, "loadavg_1_5": load}
    for side, name in (("base", "base"), ("head", head)):  # asv's results, samples included
        sha = _git(repo, "rev-parse", name)[:8]
        for found in (repo / ".asv" / "results").glob(f"*/{sha}-*.json"):
            (out / "asv").mkdir(exist_ok=True)
            atomic_write_text(out / "asv" / f"{side}.json", found.read_text())
    atomic_write_text(out / "run.json", json.dumps(info) + "\n")
    return load_run(out)


def flags(folder: Path, factor: float, samples: bool = True) -> list[str]:
    """The benchmarks asv's compare calls slower (head vs base) at ``factor``, from the
    saved results of a run: with the samples (Mann-Whitney U, what the gate does) or, with
    ``samples=False``, from the 99% confidence intervals alone."""
    from asv.commands.compare import _is_result_better
    from asv.results import Results

    if not (folder / "asv" / "head.json").exists():
        return []
    base, head = (Results.load(str(folder / "asv" / f"{s}.json")) for s in ("base", "head"))
    out = []
    for name in sorted(set(base.get_all_result_keys()) & set(head.get_all_result_keys())):
        params = head.get_result_params(name)
        t = [r.get_result_value(name, params) for r in (base, head)]
        st = [r.get_result_stats(name, params) for r in (base, head)]
        sm = [r.get_result_samples(name, params) or [None] * len(t[0]) for r in (base, head)]
        for i, combo in enumerate(itertools.product(*params)):
            if any(x[i] is None or x[i] != x[i] for x in t):
                continue
            ss_base, ss_head = ((st[j][i], sm[j][i] if samples else None) for j in (0, 1))
            if _is_result_better(t[0][i], t[1][i], ss_base, ss_head, factor):
                out.append(f"{name}({', '.join(combo)})")
    return out


FACTORS = (1.25, 1.5, 1.75, 2.0)


def factor_table(runs: list[GateRun], data: Path, plant_n: int) -> list[str]:
    """Markdown rows: per run and factor, how many benchmarks asv would call slower,
    with the samples' rank test and with confidence intervals only (planted runs: the
    planted cases / the others)."""
    head = "| run | " + " | ".join(f"{f}: rank test, CI only" for f in FACTORS) + " |"
    lines = [head, "|---" * (len(FACTORS) + 1) + "|"]
    for run in runs:
        cells = []
        for f in FACTORS:
            counts = []
            for samples in (True, False):
                found = flags(data / run.label, f, samples)
                if run.label == "planted":
                    hit = [x for x in found if f", {plant_n}," in x and "projunn" in x]
                    counts.append(f"{len(hit)}/{len(found) - len(hit)}")
                else:
                    counts.append(str(len(found)))
            cells.append(", ".join(counts))
        lines.append(f"| {run.label} | " + " | ".join(cells) + " |")
    return lines


def load_run(folder: Path) -> GateRun:
    """A finished run from its folder (``run.json`` and, if asv got that far, ``compare.md``)."""
    info = json.loads((folder / "run.json").read_text())
    run = GateRun(folder.name, info["status"], info["wall_s"], tuple(info["loadavg_1_5"]))
    compare = folder / "compare.md"
    if compare.exists():
        run.rows = parse_table(compare.read_text())
    return run


def report(aa: list[GateRun], planted: GateRun, factor: float, plant_n: int, data: Path) -> str:
    def fmt(x):
        return "–" if x is None or x != x else f"{x:.2f}"

    lines = [
        "| run | exit | wall (min) | load avg (1, 5 min) | timed | flagged (+ or !) | "
        "largest ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in [*aa, planted]:
        flagged = ", ".join(f"`{x.name}` {fmt(x.ratio)}" for x in r.flagged) or "none"
        lines.append(
            f"| {r.label} | {r.status} | {r.wall / 60:.1f} | {r.load[0]:.1f}, {r.load[1]:.1f} "
            f"| {sum(x.ratio is not None for x in r.rows)} | {flagged} | {fmt(r.max_ratio)} |"
        )
    target = [r for r in planted.rows if f", {plant_n}," in r.name and "projunn" in r.name]
    lines += ["", f"Planted cases (projUNN at N = {plant_n}), HEAD vs planted:", ""]
    lines += ["| benchmark | ratio | flagged |", "|---|---|---|"]
    lines += [f"| `{r.name}` | {fmt(r.ratio)} | {r.mark == '+'} |" for r in target]
    aa_max = max((r.max_ratio for r in aa if r.rows), default=float("nan"))
    update_ratios = [r.ratio for r in target if "time_update" in r.name and r.ratio]
    lines += [
        "",
        f"- A/A false alarms at factor {factor}: {sum(len(r.flagged) for r in aa)} in "
        f"{len(aa)} runs; largest A/A ratio {fmt(aa_max)}.",
        f"- Planted 2x at N = {plant_n}: {sum(r.mark == '+' for r in target)} of "
        f"{len(target)} projUNN cases flagged; update ratios "
        f"{', '.join(fmt(x) for x in update_ratios) or '–'}.",
        f"- A factor in ({fmt(aa_max)}, {fmt(min(update_ratios, default=None))}] passes "
        "every A/A run on ratio alone and still flags the planted updates (asv also "
        "requires the difference to exceed the noise).",
    ]
    if any((data / r.label / "asv" / "head.json").exists() for r in [planted, *aa]):
        lines += [
            "",
            "The same saved results judged again at other factors (asv's own comparison; "
            "planted run: planted cases flagged / other cases flagged; the planted run has "
            f"{len(target)} planted cases):",
            "",
            *factor_table([planted, *aa], data, plant_n),
        ]
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
        planted = load_run(data / "planted")
        done = [load_run(p.parent) for p in sorted(data.glob("aa-[0-9]*/run.json"))]
        found = re.search(r"Before \[([0-9a-f]+)\]", (data / "planted" / "compare.md").read_text())
        write(planted, done, found.group(1) if found else "?")
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
