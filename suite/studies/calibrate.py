"""The detector's calibration (``projunn-bench calibrate``): its default factor, from A/A
pairs of the quick grid (``projunn-bench run``: wall time, the grid's threads) and of the
gate grid (the gate's asv runs of ``projunn-bench gate-noise``: CPU time, one thread).

The sweeps of the quick grid run one after another into ``OUT/runs/``, each a normal run
folder, so that a stopped campaign keeps the runs it finished and ``--from`` judges them
again. Consecutive runs make the A/A pairs; the gate's pairs are the ``aa-*`` runs of a
gate-noise data folder. :mod:`suite.report.calibration` judges both at every candidate
factor, with planted slowdowns of one case, and :func:`chosen` picks the default: the
smallest factor that gives no false alarm in any pair of either grid and catches every
planted 1.5x, 2x and 3x slowdown.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from ..measure import cases as cases_mod
from ..measure.output import atomic_write_text
from ..measure.runner import run_sweep
from ..measure.workloads import WORKLOADS
from ..report.calibration import PLANTS, Calibration, choose, evaluate, render
from ..report.contention import asv_pair
from ..report.load import load_one

__all__ = ["calibrate", "gate_pairs", "run_pairs", "sweeps"]


def sweeps(grid: str, runs: int, out: Path, threads: int | None = None) -> list[Path]:
    """``runs`` sweeps of the timed workloads of ``grid``, one after another, into
    ``out``; the run folders (stops early, keeping the finished ones, on Ctrl-C)."""
    g = cases_mod.GRIDS[grid]
    timed = [w for w in g.workloads if WORKLOADS[w].timed]
    cases = cases_mod.iter_cases(g, workloads=timed)
    settings = g.settings.with_overrides(threads=threads)
    folders = []
    for i in range(runs):
        print(
            f"calibrate: sweep {i + 1}/{runs} of grid {grid} ({len(cases)} cases)", file=sys.stderr
        )
        info = {"command": "projunn-bench calibrate", "grid": grid, "sweep": i + 1}
        result = run_sweep(cases, settings, out, info=info)
        folders.append(result.folder)
        if result.interrupted:
            break
    return folders


def run_pairs(folders: Sequence[Path]) -> list[tuple[str, object, object]]:
    """Consecutive A/A pairs of run folders (or tables) as ``(label, base, new)`` frames."""
    frames = [(Path(f).name, load_one(f)[1]) for f in folders]
    return [(f"{a}/{b}", fa, fb) for (a, fa), (b, fb) in zip(frames, frames[1:], strict=False)]


def gate_pairs(data: Path) -> list[tuple[str, object, object]]:
    """The A/A pairs of a gate-noise data folder: each ``aa-*`` run's asv results of its
    two commits, the contention its benchmarks logged marked."""
    pairs = (asv_pair(folder) for folder in sorted(Path(data).glob("aa-*")))
    return [p for p in pairs if p is not None]


def report(
    named: Sequence[tuple[str, Calibration]], factor: float | None, command: str, sources: str
) -> str:
    """The markdown of the calibration."""
    today = _dt.date.today().isoformat()
    lines = [
        f"# The regression detector's calibration ({today})",
        "",
        f"{platform.node()}: {os.cpu_count()} cores. Reproduce: `{command}`. Data: {sources}.",
        "",
        "The detector (`suite/report/compare.py`, used by `projunn-bench compare` and the "
        "gate) calls a case slower when NEW/BASE exceeds the factor and the 99 % confidence "
        "intervals of the two medians do not overlap; the intervals rule out the noise "
        "within a run, the factor must cover the shifts between runs. Each A/A pair below "
        "is two runs of the same code; a planted slowdown makes one case of NEW s times "
        "slower (median, samples and interval), every case in turn.",
        "",
    ]
    for title, cal in named:
        lines += [render(cal, title), ""]
    if factor is None:
        lines.append(
            "**Every candidate factor gives a false alarm in some A/A pair**: the default "
            "is left as it is."
        )
    else:
        caught = []
        for title, cal in named:
            rates = ", ".join(
                f"{s:g}x in {100 * cal.caught_reference[(factor, s)]:.0f} %" for s in PLANTS
            )
            caught.append(f"{title.split(':')[0]}: {rates}")
        lines.append(
            f"**Chosen default factor: {factor:g}** (`suite.report.compare.FACTOR`) — the "
            "smallest candidate with no A/A false alarm in any pair. There it catches a "
            "planted slowdown of a reference case (a projUNN update at the grid's largest "
            f"N): {'; '.join(caught)}. The other percentages are over all cases (in "
            "brackets: the reference cases)."
        )
    return "\n".join(lines) + "\n"


def calibrate(
    *,
    runs: int,
    grid: str,
    out: Path,
    from_runs: Sequence[Path],
    gate_data: Sequence[Path],
    threads: int | None,
    report_path: Path | None,
    command: str,
) -> int:
    """Run (or read) the A/A runs, judge them, print and write the report; exit status."""
    folders = list(from_runs) or sweeps(grid, runs, out / "runs", threads)
    named = []
    quick = run_pairs(folders)
    if quick:
        named.append((f"Grid {grid}: `projunn-bench run` A/A pairs", evaluate(quick)))
    gate = [p for data in gate_data for p in gate_pairs(data)]
    if gate:
        named.append(("Grid gate: the gate's asv A/A pairs", evaluate(gate)))
    if not named:
        print("calibrate: no A/A pair to judge (two runs at least)", file=sys.stderr)
        return 2
    factor = choose([cal for _, cal in named])
    sources = ", ".join(f"`{Path(f)}`" for f in [*folders, *gate_data])
    text = report(named, factor, command, sources)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "detector.md", text)
    if report_path is not None:
        atomic_write_text(report_path, text)
    sys.stdout.write(text)
    return 0
