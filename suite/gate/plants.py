"""The reference plants of the count gate, and its calibration campaign.

``projunn-bench gate-noise --counts`` makes, in a throwaway clone, an A/A commit (empty)
and one commit per plant in :data:`PLANTS` on top of HEAD, counts the gate's cases
(:func:`suite.gate.counts.cases`) ``runs`` times for HEAD and for A/A, each count its own
callgrind process (as two gate runs would), and once per plant. It writes:

* per process, ``counts.json`` (per case: instructions and estimated cycles per step) in
  the data folder, and per plant the gate's ``compare.md`` (what it flags, where the
  instructions went);
* the report: the A/A pairs (count differences, false alarms at each candidate threshold,
  the largest difference per case), the threshold they support (:func:`choose`), and per
  plant the cases it touches and how many of them the threshold catches.

>>> sorted(PLANTS)
['basis_1.05x', 'basis_1.2x', 'extra_op', 'extra_pass']
>>> choose({"a": 0.0004, "b": 0.001})
0.0025
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..measure.callgrind import STEPS
from ..measure.output import atomic_write_text
from .noise import git

__all__ = ["CANDIDATES", "PLANTS", "campaign", "choose", "plant_comment", "report"]

PLANTS = {
    "extra_pass": (
        "one extra pass over A per projUNN step (A.sum())",
        """

_update_plain = _update


def _update(A, *args):  # planted: one extra pass over A
    A.sum()
    return _update_plain(A, *args)
""",
    ),
    "extra_op": (
        "one extra small op per projUNN step (a matrix-vector product with A's first "
        "column and a sum)",
        """

_update_plain = _update


def _update(A, *args):  # planted: one extra small op
    (A @ A[..., :1]).sum()
    return _update_plain(A, *args)
""",
    ),
    "basis_1.05x": (
        "a slower basis: the rank-k basis computed again on the leading 22 % x 22 % block "
        "of the update (about 5 % more basis work)",
        """

_lowrank_plain = lowrank


def lowrank(delta, rank, *args, **kwargs):  # planted: a 1.05x slower basis
    out = _lowrank_plain(delta, rank, *args, **kwargs)
    m = max(rank, round(0.2236 * delta.shape[-1]))
    _lowrank_plain(delta[..., :m, :m].contiguous(), rank, *args, **kwargs)
    return out
""",
    ),
    "basis_1.2x": (
        "a slower basis: the rank-k basis computed again on the leading 45 % x 45 % block "
        "of the update (about 20 % more basis work)",
        """

_lowrank_plain = lowrank


def lowrank(delta, rank, *args, **kwargs):  # planted: a 1.2x slower basis
    out = _lowrank_plain(delta, rank, *args, **kwargs)
    m = max(rank, round(0.4472 * delta.shape[-1]))
    _lowrank_plain(delta[..., :m, :m].contiguous(), rank, *args, **kwargs)
    return out
""",
    ),
}
"""name -> (what it does, the text appended to ``projunn_core/step.py``). Every plant
touches the projUNN cases (their steps call ``_update`` and ``lowrank``) and nothing else."""

CANDIDATES = (0.0025, 0.005, 0.01, 0.02)
"""Count thresholds the calibration considers (fractions)."""


def choose(aa_largest: dict[str, float], margin: float = 2.0) -> float:
    """The smallest candidate threshold at least ``margin`` times the largest A/A count
    difference (``aa_largest``: per case, a fraction); the largest candidate when none is."""
    worst = max(aa_largest.values(), default=0.0)
    for t in CANDIDATES:
        if t >= margin * worst:
            return t
    return CANDIDATES[-1]


def touched(case_id: str) -> bool:
    """Whether a plant's code runs in the case: the projUNN methods' steps."""
    return "-projunn_" in case_id


def _git(repo: Path, *args: str) -> str:
    return git(repo, *args, who="gate counts")


def make_clone(work: Path, root: Path) -> tuple[Path, dict[str, str]]:
    """Clone HEAD of ``root`` into ``work/repo`` with an A/A commit and one per plant;
    the commit hashes by label ("base", "aa", each plant)."""
    repo = work / "repo"
    head = _git(root, "rev-parse", "HEAD")
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(root), str(repo)], check=True)
    _git(repo, "fetch", "-q", str(root), head)
    commits = {"base": head}
    _git(repo, "checkout", "-q", "-B", "aa", head)
    _git(repo, "commit", "-q", "--allow-empty", "-m", "gate counts: A/A (no change)")
    commits["aa"] = _git(repo, "rev-parse", "HEAD")
    for name, (what, text) in PLANTS.items():
        _git(repo, "checkout", "-q", "-B", f"plant-{name}", head)
        step = repo / "projunn_core" / "step.py"
        step.write_text(step.read_text() + text)
        _git(repo, "commit", "-q", "-am", f"gate counts plant: {what}")
        commits[name] = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", head)
    return repo, commits


def _count(repo: Path, commit: str, folder: Path, scratch: Path):
    """Count the gate's cases at ``commit`` (callgrind's files in ``scratch``, removed);
    write ``counts.json`` into ``folder``; (its content, the :class:`CountRun`)."""
    import shutil

    from ..measure.callgrind import estimated_cycles
    from .counts import cases, count_commit

    counted = cases()
    if folder.name.startswith("plant-"):  # what the plant touches, and one method it does not
        counted = [c for c in counted if touched(c.id) or c.method == "unconstrained"]
    start = time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    with open(scratch / "callgrind.log", "w") as log:
        run = count_commit(repo, commit, scratch, counted, log=log)
    shutil.rmtree(scratch, ignore_errors=True)
    values = {}
    for c in counted:
        d = run.dumps.get(c.id)
        st = run.status.get(c.id, {})
        if d is None:
            values[c.id] = {"status": st.get("status", "missing"), "reason": st.get("reason", "")}
            continue
        values[c.id] = {
            "instructions": d.totals["Ir"] / run.steps,
            "estimated_cycles": estimated_cycles(d.totals) / run.steps,
            "operations": st.get("operations"),
            "ops": st.get("ops", {}),
        }
    info = {
        "commit": commit,
        "wall_s": time.monotonic() - start,
        "timing": run.timing,
        "loadavg_1_5": os.getloadavg()[:2],
        "cases": values,
    }
    atomic_write_text(folder / "counts.json", json.dumps(info, indent=1) + "\n")
    return info, run


def _diffs(a: dict, b: dict) -> dict[tuple[str, str], float]:
    """Relative differences ``b / a - 1`` per (case, metric) counted in both."""
    out = {}
    for case, va in a["cases"].items():
        vb = b["cases"].get(case, {})
        for m in ("instructions", "estimated_cycles"):
            if m in va and m in vb and va[m] > 0:
                out[(case, m)] = vb[m] / va[m] - 1
    return out


def report(data: Path, threshold: float | None = None) -> tuple[str, float]:
    """The campaign's markdown from the ``counts.json`` files in ``data`` (``aa-I/base``,
    ``aa-I/aa``, ``plant-NAME``), and the threshold chosen (``threshold`` if given)."""
    pairs = []
    for d in sorted(data.glob("aa-*"), key=lambda p: int(p.name.split("-")[1])):
        a, b = d / "base" / "counts.json", d / "aa" / "counts.json"
        if a.is_file() and b.is_file():
            pairs.append((d.name, json.loads(a.read_text()), json.loads(b.read_text())))
    largest: dict[str, float] = {}
    lines = ["## A/A pairs (HEAD and an empty commit on top, separate callgrind processes)", ""]
    lines += [
        "| pair | counts compared | largest difference | case | wall s (BASE, A/A) | load |",
        "|---|---|---|---|---|---|",
    ]
    all_diffs = []
    for name, a, b in pairs:
        diffs = _diffs(a, b)
        all_diffs.append(diffs)
        for (case, m), x in diffs.items():
            largest[f"{case} {m}"] = max(largest.get(f"{case} {m}", 0.0), abs(x))
        (case, m), worst = max(diffs.items(), key=lambda kv: abs(kv[1]), default=(("-", "-"), 0))
        lines.append(
            f"| {name} | {len(diffs)} | {100 * worst:+.4f} % | `{case}` {m} | "
            f"{a['wall_s']:.0f}, {b['wall_s']:.0f} | {a['loadavg_1_5'][0]:.1f} |"
        )
    from ..report.compare import CYCLES_SCALE

    def over(metric: str, x: float, t: float) -> bool:
        """Beyond threshold ``t`` (estimated cycles: ``CYCLES_SCALE * t``)."""
        return x > t * (CYCLES_SCALE if metric == "estimated_cycles" else 1)

    by_metric = {
        m: {k: v for k, v in largest.items() if k.endswith(" " + m)}
        for m in ("instructions", "estimated_cycles")
    }
    chosen = (
        threshold
        if threshold is not None
        else max(
            choose(by_metric["instructions"]),
            choose(by_metric["estimated_cycles"]) / CYCLES_SCALE,
        )
    )
    base = pairs[0][1] if pairs else None
    planted = {}  # plant -> {case: largest of its two count changes}
    for name in PLANTS:
        f = data / f"plant-{name}" / "counts.json"
        if base is not None and f.is_file():
            per: dict[str, list] = {}
            for (c, m), x in _diffs(base, json.loads(f.read_text())).items():
                if touched(c):
                    per.setdefault(c, []).append((m, x))
            planted[name] = per
    lines += [
        "",
        f"Each candidate threshold t (instructions; estimated cycles at {CYCLES_SCALE:g} t): "
        "the A/A pairs' false alarms and the plants' cases caught:",
    ]
    lines += ["", "| threshold | A/A false alarms (counts over it) | plant cases caught |"]
    lines += ["|---|---|---|"]
    for t in CANDIDATES:
        alarms = sum(over(m, abs(x), t) for diffs in all_diffs for (_, m), x in diffs.items())
        got = sum(
            any(over(m, x, t) for m, x in changes)
            for per in planted.values()
            for changes in per.values()
        )
        total = sum(len(per) for per in planted.values())
        lines.append(f"| {100 * t:g} % | {alarms} | {got} of {total} |")
    worst_i = max(by_metric["instructions"].values(), default=0.0)
    worst_c = max(by_metric["estimated_cycles"].values(), default=0.0)
    lines += [
        "",
        f"Largest A/A difference: instructions {100 * worst_i:.4f} %, estimated cycles "
        f"{100 * worst_c:.4f} %. Threshold chosen: **{100 * chosen:g} %** for instructions, "
        f"{100 * CYCLES_SCALE * chosen:g} % for estimated cycles (the smallest candidates at "
        "least twice the largest A/A difference of each).",
        "",
        "Largest A/A difference per case (over the pairs; instructions / estimated cycles):",
        "",
        "| case | instructions | estimated cycles |",
        "|---|---|---|",
    ]
    case_names = sorted({k.rsplit(" ", 1)[0] for k in largest})
    for c in case_names:
        i, y = largest.get(f"{c} instructions", 0.0), largest.get(f"{c} estimated_cycles", 0.0)
        lines.append(f"| `{c}` | {100 * i:.4f} % | {100 * y:.4f} % |")
    lines += ["", "## Reference plants (vs HEAD of the first A/A pair)", ""]
    lines += [
        "| plant | what | cases touched | caught at the threshold | smallest change "
        "(instructions) | largest | untouched cases moved |",
        "|---|---|---|---|---|---|---|",
    ]
    missed: dict[tuple[str, str], float] = {}
    caught_changes: list[tuple[float, str, str]] = []
    for name, (what, _) in PLANTS.items():
        f = data / f"plant-{name}" / "counts.json"
        if base is None or not f.is_file():
            lines.append(f"| {name} | {what} | not measured | | | | |")
            continue
        diffs = _diffs(base, json.loads(f.read_text()))
        hit = {c: x for (c, m), x in diffs.items() if m == "instructions" and touched(c)}
        caught = {c for (c, m), x in diffs.items() if touched(c) and over(m, x, chosen)}
        others = sum(over(m, abs(x), chosen) for (c, m), x in diffs.items() if not touched(c))
        small = min(hit.items(), key=lambda kv: kv[1], default=("-", 0.0))
        big = max(hit.values(), default=0.0)
        lines.append(
            f"| {name} | {what} | {len(hit)} | {len(caught)} of {len(hit)} | "
            f"{100 * small[1]:+.2f} % (`{small[0]}`) | {100 * big:+.2f} % | {others} |"
        )
        missed.update({(name, c): x for c, x in hit.items() if c not in caught})
        caught_changes += [(x, name, c) for c, x in hit.items() if c in caught]
    if caught_changes:
        x, name, c = min(caught_changes)
        lines += ["", f"Smallest planted change caught: {100 * x:+.2f} % ({name}, `{c}`)."]
    if missed:
        lines += [
            "",
            f"Touched cases the thresholds ({100 * chosen:g} % / "
            f"{100 * CYCLES_SCALE * chosen:g} %) miss:",
            "",
        ]
        lines += ["| plant | case | instructions |", "|---|---|---|"]
        lines += [
            f"| {p} | `{c}` | {100 * x:+.3f} % |"
            for (p, c), x in sorted(missed.items(), key=lambda kv: kv[1])
        ]
    runs = sorted(data.glob("*/counts.json")) + sorted(data.glob("*/*/counts.json"))
    if runs:
        lines += ["", "## Cost of each count run (one callgrind process, wall seconds)", ""]
        lines += ["| run | cases | wall | import | setup | measured | load (1 min) |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for f in runs:
            info = json.loads(f.read_text())
            t = info.get("timing", {})
            lines.append(
                f"| {f.parent.relative_to(data)} | {len(info['cases'])} | {info['wall_s']:.0f} | "
                f"{t.get('import', 0):.0f} | {t.get('setup', 0):.0f} | "
                f"{t.get('measured', 0):.0f} | {info['loadavg_1_5'][0]:.1f} |"
            )
    return "\n".join(lines) + "\n", chosen


def plant_comment(base: Path, plant: Path, label: str, threshold: float | None = None) -> str:
    """The gate's ``compare.md`` of a plant from two count folders kept on disk (each
    holding a count's ``status.jsonl`` and callgrind dumps): HEAD's (``base``) against
    the plant's, with where the instructions went."""
    from ..measure.callgrind import read_run
    from ..report.compare import COUNT_THRESHOLD
    from .counts import CountVerdict, cases
    from .run import summary

    a, b = read_run(base), read_run(plant)
    counted = [c for c in cases() if c.id in a.dumps and c.id in b.dumps]
    verdict = CountVerdict(a, b, counted, COUNT_THRESHOLD if threshold is None else threshold)
    wall = a.timing["total"] + b.timing["total"]
    note = "the count calibration times nothing (projunn-bench gate does)"
    return summary("HEAD", label, None, wall, counts=verdict, times_note=note)


def _plant_comments(data: Path, runs: dict) -> None:
    """Each plant's gate comment (``plant-NAME/compare.md``): the gate's counting verdict of
    HEAD (the first A/A pair's BASE) against the plant, with where the instructions went."""
    from ..report.compare import COUNT_THRESHOLD
    from .counts import CountVerdict, cases
    from .run import summary

    if "aa-1/base" not in runs:
        return
    base_info, base = runs["aa-1/base"]
    for label, (info, run) in runs.items():
        if not label.startswith("plant-"):
            continue
        verdict = CountVerdict(base, run, cases(), COUNT_THRESHOLD)
        wall = base_info["wall_s"] + info["wall_s"]
        text = summary(
            base_info["commit"][:10],
            f"{label} ({info['commit'][:10]})",
            None,
            wall,
            counts=verdict,
            times_note="the count calibration times nothing (projunn-bench gate does)",
        )
        atomic_write_text(data / label / "compare.md", text)


def campaign(
    *, runs: int, out: Path, data: Path, work: Path | None, from_data: bool, jobs: int, argv
) -> int:
    """Run the count campaign (module docstring) into ``data`` and write ``out``; with
    ``from_data`` only rewrite ``out`` from ``data``. ``jobs`` counts run at once."""
    from .run import project_root

    root = project_root()
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        body, chosen = report(data)
        head = (
            "# The count gate's calibration: A/A spread and reference plants\n\n"
            f"Reproduce: `projunn-bench gate-noise {' '.join(argv)}`. Each count is "
            f"one callgrind process over the gate's cases (`suite.gate.counts.cases`), {STEPS} "
            "steps per case, one thread; per-process figures: `counts.json` under "
            f"`{data.relative_to(root) if data.is_relative_to(root) else data}`.\n\n"
            "How to read it: an A/A pair is two whole count runs of the same code (HEAD and "
            "an empty commit), each its own process, while other work held the cores; a "
            "threshold must stay above every A/A difference. A plant touches the projUNN "
            "cases (their steps run the planted code); its change in a case is the extra "
            "work over that case's whole step, so the same plant moves a small step by "
            "percents and a large one by tenths of a percent. A change smaller than the A/A "
            "spread cannot be told from it by any threshold.\n\n"
        )
        atomic_write_text(out, head + body)

    if not from_data:
        work = work or Path(tempfile.mkdtemp(prefix="gate-counts-"))
        repo, commits = make_clone(work, root)
        runs_kept = {}
        tasks = [(f"plant-{p}", commits[p]) for p in PLANTS]
        for i in range(1, runs + 1):
            tasks += [(f"aa-{i}/base", commits["base"]), (f"aa-{i}/aa", commits["aa"])]
        # the first pair first: the plants are judged against its BASE
        tasks = (
            tasks[len(PLANTS) : len(PLANTS) + 2] + tasks[: len(PLANTS)] + tasks[len(PLANTS) + 2 :]
        )

        def one(task):
            label, commit = task
            folder = data / label
            folder.mkdir(parents=True, exist_ok=True)
            info, run = _count(repo, commit, folder, work / "scratch" / label)
            if label == "aa-1/base" or label.startswith("plant-"):
                runs_kept[label] = (info, run)
            print(f"gate-noise --counts: {label} in {info['wall_s']:.0f} s", flush=True)
            write()
            return info

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, tasks))
        _plant_comments(data, runs_kept)
    write()
    print(f"gate-noise --counts: wrote {out}")
    return 0
