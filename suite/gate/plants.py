"""The reference plants of the count gate, and its calibration campaign.

``projunn-bench gate-noise --counts`` makes, in a throwaway clone, an A/A commit (empty)
and one commit per plant in :data:`PLANTS` on top of HEAD, counts the gate's cases
(:func:`suite.gate.counts.cases`) ``runs`` times for HEAD and for A/A, each count its own
callgrind process (as two gate runs would), and once per plant. It writes:

* per process, ``counts.json`` (per case: instructions, estimated cycles and compute
  operators per step) in the data folder, and per plant the gate's ``compare.md`` (what
  it flags, where the instructions went, the operators that changed);
* the report: the spread a threshold must clear, from the A/A pairs (the same code
  twice) and from the cases a plant does not touch (other code changed), false alarms
  and catches at each candidate threshold, the threshold they support (:func:`choose`),
  and per plant the cases it touches and how many of them the counts and the operators
  catch.

>>> sorted(PLANTS)
['basis_1.05x', 'basis_1.2x', 'extra_op', 'extra_pass']
>>> choose(0.001)
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


def choose(spread: float, margin: float = 2.0) -> float:
    """The smallest candidate threshold at least ``margin`` times ``spread`` (the largest
    count difference that is noise, a fraction); the largest candidate when none is."""
    for t in CANDIDATES:
        if t >= margin * spread:
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
    """Relative differences ``b / a - 1`` per (case, measure) counted in both."""
    from ..report.compare import COUNTED

    out = {}
    for case, va in a["cases"].items():
        vb = b["cases"].get(case, {})
        for m in COUNTED:
            if va.get(m) and vb.get(m) is not None:
                out[(case, m)] = vb[m] / va[m] - 1
    return out


def _largest(diffs) -> dict[tuple[str, str], float]:
    """The largest absolute difference per (case, measure) over the dicts ``diffs``."""
    out: dict[tuple[str, str], float] = {}
    for d in diffs:
        for key, x in d.items():
            out[key] = max(out.get(key, 0.0), abs(x))
    return out


def report(data: Path, threshold: float | None = None) -> tuple[str, float]:
    """The campaign's markdown from the ``counts.json`` files in ``data`` (``aa-I/base``,
    ``aa-I/aa``, ``plant-NAME``), and the threshold chosen (``threshold`` if given).

    The noise a threshold must clear is the larger of two spreads: the A/A pairs' (the
    same code counted twice) and that of the cases a plant does not touch (other code
    changed: the memory layout moves, and with it CPython's type cache and malloc)."""
    from ..report.compare import COUNTED, CYCLES_SCALE, count_limit

    files = sorted(data.glob("*/counts.json")) + sorted(data.glob("*/*/counts.json"))
    runs = {f.parent.relative_to(data).as_posix(): json.loads(f.read_text()) for f in files}
    pairs = []
    for d in sorted(data.glob("aa-*"), key=lambda p: int(p.name.split("-")[1])):
        a, b = runs.get(f"{d.name}/base"), runs.get(f"{d.name}/aa")
        if a and b:
            pairs.append((d.name, a, b))
    base = pairs[0][1] if pairs else None
    plant_diffs = {
        name: _diffs(base, runs[f"plant-{name}"])
        for name in PLANTS
        if base is not None and f"plant-{name}" in runs
    }

    aa_diffs = [_diffs(a, b) for _, a, b in pairs]
    aa_largest = _largest(aa_diffs)
    lines = ["## A/A pairs (HEAD and an empty commit on top, separate callgrind processes)", ""]
    lines += [
        "| pair | counts compared | largest difference | case | wall s (BASE, A/A) | load |",
        "|---|---|---|---|---|---|",
    ]
    for (name, a, b), diffs in zip(pairs, aa_diffs, strict=True):
        (case, m), worst = max(diffs.items(), key=lambda kv: abs(kv[1]), default=(("-", "-"), 0))
        lines.append(
            f"| {name} | {len(diffs)} | {100 * worst:+.4f} % | `{case}` {m} | "
            f"{a['wall_s']:.0f}, {b['wall_s']:.0f} | {a['loadavg_1_5'][0]:.1f} |"
        )
    layout = _largest(  # the untouched cases under the plants
        {k: x for k, x in d.items() if not touched(k[0])} for d in plant_diffs.values()
    )

    def worst(metric: str, *spreads) -> float:
        return max((x for sp in spreads for (_, m), x in sp.items() if m == metric), default=0.0)

    noise = {m: worst(m, aa_largest, layout) for m in COUNTED}
    chosen = (
        threshold
        if threshold is not None
        else max(
            choose(noise["instructions"]),
            choose(noise["estimated_cycles"]) / CYCLES_SCALE,
        )
    )

    def caught(diffs, t, with_ops=True):
        found: dict[str, bool] = {}
        for (c, m), x in diffs.items():
            if touched(c) and (with_ops or m != "operations"):
                found[c] = found.get(c, False) or x > count_limit(m, t)
        return found

    lines += [
        "",
        "The spread a threshold must clear: the A/A pairs' (largest difference: "
        + ", ".join(f"{m} {100 * worst(m, aa_largest):.4f} %" for m in COUNTED)
        + ") and the untouched cases' under the plants (other code changed; largest: "
        + ", ".join(f"{m} {100 * worst(m, layout):.4f} %" for m in COUNTED)
        + ").",
        "",
        f"Each candidate threshold t (instructions; estimated cycles at {CYCLES_SCALE:g} t): "
        "the counts beyond it in the A/A pairs and in the untouched cases (false alarms), "
        "and the plants' touched cases caught by the counts alone and with the operators "
        "(any growth):",
        "",
        "| threshold | A/A false alarms | untouched cases flagged | plant cases caught by "
        "instructions / cycles | with operators |",
        "|---|---|---|---|---|",
    ]
    total = sum(len(caught(d, 1.0)) for d in plant_diffs.values())
    for t in CANDIDATES:
        aa_alarms = sum(x > count_limit(m, t) for (_, m), x in aa_largest.items())
        moved = sum(x > count_limit(m, t) for (_, m), x in layout.items())
        by_counts = sum(sum(caught(d, t, False).values()) for d in plant_diffs.values())
        by_all = sum(sum(caught(d, t).values()) for d in plant_diffs.values())
        lines.append(
            f"| {100 * t:g} % | {aa_alarms} | {moved} | {by_counts} of {total} | "
            f"{by_all} of {total} |"
        )

    def margin(t: float, x: float) -> str:
        return f"{t / x:.1f}x" if x > 0 else "no spread"

    lines += [
        "",
        f"Threshold chosen: **{100 * chosen:g} %** for instructions, "
        f"{100 * CYCLES_SCALE * chosen:g} % for estimated cycles (the smallest candidates at "
        "least twice the largest spread of each, or the largest candidate; margins over "
        f"that spread: {margin(chosen, noise['instructions'])} and "
        f"{margin(CYCLES_SCALE * chosen, noise['estimated_cycles'])}); operators: any growth "
        "(largest move in an A/A pair or an untouched case: "
        f"{100 * noise['operations']:.4f} %).",
        "",
        "Largest difference per case (A/A pairs; untouched cases under the plants):",
        "",
        "| case | instructions | estimated cycles | operators |",
        "|---|---|---|---|",
    ]
    both = _largest([aa_largest, layout])
    for c in sorted({c for c, _ in both}):
        cells = " | ".join(f"{100 * both.get((c, m), 0.0):.4f} %" for m in COUNTED)
        lines.append(f"| `{c}` | {cells} |")
    lines += ["", "## Reference plants (vs HEAD of the first A/A pair)", ""]
    lines += [
        "| plant | what | cases touched | caught by instructions / cycles | caught (with "
        "operators) | instructions: smallest change | largest | untouched cases flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed: list[tuple[float, str, str]] = []
    by_counts_changes: list[tuple[float, str, str]] = []
    for name, (what, _) in PLANTS.items():
        if name not in plant_diffs:
            lines.append(f"| {name} | {what} | not measured | | | | | |")
            continue
        diffs = plant_diffs[name]
        hit = {c: x for (c, m), x in diffs.items() if m == "instructions" and touched(c)}
        counts_only = caught(diffs, chosen, False)
        either = caught(diffs, chosen)
        others = sum(x > count_limit(m, chosen) for (c, m), x in diffs.items() if not touched(c))
        small = min(hit.items(), key=lambda kv: kv[1], default=("-", 0.0))
        lines.append(
            f"| {name} | {what} | {len(hit)} | {sum(counts_only.values())} of {len(hit)} | "
            f"{sum(either.values())} of {len(hit)} | {100 * small[1]:+.2f} % (`{small[0]}`) | "
            f"{100 * max(hit.values(), default=0.0):+.2f} % | {others} |"
        )
        for c, x in hit.items():
            if counts_only.get(c):
                by_counts_changes.append((x, name, c))
            elif not either.get(c):
                missed.append((x, name, c))
    if by_counts_changes:
        x, name, c = min(by_counts_changes)
        lines += [
            "",
            f"Smallest planted change the instruction / cycle thresholds catch: {100 * x:+.2f} "
            f"% ({name}, `{c}`); below it a plant is caught by the operators it adds.",
        ]
    lines += [
        "",
        "Touched cases missed by every measure: "
        + (
            ", ".join(f"{n} `{c}` ({100 * x:+.3f} %)" for x, n, c in sorted(missed))
            if missed
            else "none."
        ),
    ]
    if runs:
        lines += ["", "## Cost of each count run (one callgrind process, wall seconds)", ""]
        lines += ["| run | cases | wall | import | setup | measured | load (1 min) |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for label, info in runs.items():
            t = info.get("timing", {})
            lines.append(
                f"| {label} | {len(info['cases'])} | {info['wall_s']:.0f} | "
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
            "an empty commit), each its own process, while other work held the cores. A "
            "plant touches the projUNN cases (their steps run the planted code) and is "
            "also counted on the unconstrained cases, which it does not touch: what they "
            "move is the noise of a code change (the memory layout moves with the code, "
            "and with it CPython's type cache and malloc), which a threshold must clear "
            "as well as the A/A spread. A plant's change in a case is the extra work over "
            "that case's whole step, so the same plant moves a small step by percents and "
            "a large one by tenths of a percent: below that noise only the compute "
            "operators a step dispatches (a whole number, which moves only when the work "
            "does) tell it.\n\n"
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
