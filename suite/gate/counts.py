"""The gate's instruction counts: each commit's cases in one callgrind process, compared.

For each of BASE and HEAD the gate exports the commit's measured code (``projunn_core``,
``baselines``: ``git archive``) into a folder that goes first on the import path, and
counts the gate's cases (:func:`cases`) under it with :func:`suite.measure.callgrind.count_cases`
(the benchmark code is the working tree's ``suite/``, as under asv). The verdict is
:func:`suite.report.compare.compare_counts`; for every flagged case :func:`attribution`
names the functions whose inclusive instruction counts changed most, before -> after.

>>> len(cases()) > 40, all(c.device == "cpu" and c.dtype == "float32" for c in cases())
(True, True)
>>> rows = attribution(Dump("a", {"Ir": 100}, {"main": 100, "f": 60, "g": 40}),
...                    Dump("a", {"Ir": 130}, {"main": 130, "f": 60, "g": 70, "h": 30}))
>>> [(r[0], r[1], r[2]) for r in rows]
[('g', 40, 70), ('h', 0, 30)]
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..measure.callgrind import STEPS, CountRun, Dump, count_cases
from ..measure.cases import GRIDS, iter_cases
from ..measure.methods import METHODS
from ..measure.workloads import WORKLOADS

__all__ = [
    "CODE",
    "attribution",
    "cases",
    "count_commit",
    "export",
    "frame",
    "operator_changes",
    "top_functions",
]

CODE = ("projunn_core", "baselines")
"""The measured code, taken from each commit (the benchmark code is the working tree's)."""

LARGEST_N = 1024
"""N of the largest counted cases: projUNN-T / -D updates only (where O(kN^2) shows). A
count does not need a large N to see a change in the code (it has no noise to rise
above), and under callgrind a train step at N = 1024 costs 30-45 s."""


def cases(grid: str = "gate"):
    """The counted cases: ``grid``'s timed CPU cases of the project's own code (no peer
    library), every method up to N = 256 (the gate grid's convolutions: 16 channels,
    8 x 8), and the projUNN updates at N = :data:`LARGEST_N`.

    >>> max(c.n for c in cases("tiny")), max(c.n for c in cases())
    (16, 1024)
    """
    out = []
    for c in iter_cases(GRIDS[grid]):
        if METHODS[c.method].requires is not None or not WORKLOADS[c.workload].timed:
            continue
        if c.n > 256 and not (c.workload == "update" and c.method.startswith("projunn")):
            continue
        out.append(c)
    return out


def export(root: Path, commit: str, dest: Path) -> Path:
    """The measured code (:data:`CODE`) of ``commit`` in the repository ``root``, unpacked
    into ``dest`` (created); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "code.tar"
    present = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, *CODE],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", commit, *present], cwd=root, stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def count_commit(
    root: Path, commit: str, folder: Path, counted: Sequence | None = None, log=None
) -> CountRun:
    """Count ``counted`` (default :func:`cases`) with ``commit``'s measured code;
    callgrind's files go under ``folder``. Raises ``RuntimeError`` when the counted code
    is not the commit's (an import path problem).

    The code is exported into a fresh temporary folder (removed afterwards), whose path
    has the same length for every commit: the length of the measured code's real path
    moves the counted process's memory layout, and with it the counts (up to 0.04 %
    instructions, 0.06 % estimated cycles between two exports of one commit, even when the
    child reaches them through links of equal length)."""
    counted = cases() if counted is None else counted
    settings = GRIDS["gate"].settings
    with tempfile.TemporaryDirectory(prefix="projunn-code-") as tmp:
        code = export(root, commit, Path(tmp) / "c")
        run = count_cases(
            counted, settings, folder=folder / "callgrind", pythonpath=[code], log=log
        )
        where = run.module_files.get("projunn_core", "")
        if where and not Path(where).resolve().is_relative_to(code.resolve()):
            raise RuntimeError(f"counted projunn_core from {where}, not from commit {commit}")
    return run


def frame(run: CountRun, counted: Sequence):
    """The count rows of ``run`` as a tidy frame (what :func:`compare_counts` reads)."""
    import pandas as pd

    rows = [r.as_dict() for c in counted for r in c.rows(run.measurements(c.id))]
    return pd.DataFrame(rows)


GLUE = re.compile(
    r"^(_?Py|method_vectorcall|cfunction_|slot_tp|vectorcall|call_function|_start|"
    r"__libc|main$|0x)"
)
"""CPython's calling machinery (and unnamed code): it sits above every call, so it moves
with everything and says nothing of where."""


def top_functions(dump: Dump, share: float = 0.9) -> dict[str, int]:
    """The inclusive counts of ``dump`` without the frames that hold nearly all of it
    (more than ``share`` of the total: the interpreter's loop, ``main``, ...) and
    without CPython's calling machinery (:data:`GLUE`)."""
    total = max(dump.totals.get("Ir", 0), 1)
    return {f: v for f, v in dump.inclusive.items() if v <= share * total and not GLUE.match(f)}


def attribution(base: Dump, head: Dump, top: int = 5) -> list[tuple[str, int, int]]:
    """The ``top`` functions whose inclusive instruction counts changed most between the
    dumps of one case, ``(function, before, after)``, largest change first (functions
    called by another one in the list are kept: the chain shows where)."""
    b, h = top_functions(base), top_functions(head)
    b_all, h_all = base.inclusive, head.inclusive
    names = set(b) | set(h)
    names -= {f for f in names if GLUE.match(f)}
    changes = [(f, b_all.get(f, 0), h_all.get(f, 0)) for f in names]
    changes = [c for c in changes if c[1] != c[2]]
    changes.sort(key=lambda c: (-abs(c[2] - c[1]), c[0]))
    return changes[:top]


def operator_changes(base: dict[str, int], head: dict[str, int]) -> list[tuple[str, int, int]]:
    """The operators whose count per step differs, ``(name, before, after)``, largest
    change first.

    >>> operator_changes({"aten.mm.default": 4}, {"aten.mm.default": 4, "aten.sum.default": 1})
    [('aten.sum.default', 0, 1)]
    """
    names = sorted(set(base) | set(head))
    changes = [(n, base.get(n, 0), head.get(n, 0)) for n in names]
    changes = [c for c in changes if c[1] != c[2]]
    return sorted(changes, key=lambda c: (-abs(c[2] - c[1]), c[0]))


class CountVerdict:
    """The count side of a gate run: ``changes`` (:func:`compare_counts` of BASE and HEAD),
    the ``threshold``, per flagged case the :func:`attribution`, and each side's timing
    split (import, setup, measured, total seconds)."""

    def __init__(self, base: CountRun, head: CountRun, counted: Sequence, threshold: float):
        from ..report.compare import _case_name, compare_counts

        self.threshold = threshold
        self.timing = {"BASE": base.timing, "HEAD": head.timing}
        self.changes = compare_counts(
            frame(base, counted), frame(head, counted), threshold=threshold
        )
        ids = {_case_name(c.identity()): c.id for c in counted}
        self.failed = sorted(
            c.id
            for c in counted
            if head.status.get(c.id, {}).get("status") == "error"
            and base.status.get(c.id, {}).get("status") == "ok"
        )
        self.attribution: dict[str, list[tuple[str, int, int]]] = {}
        self.operators: dict[str, list[tuple[str, int, int]]] = {}
        for change in self.regressed:
            key = ids.get(change.case)
            if key in base.dumps and key in head.dumps and change.case not in self.attribution:
                self.attribution[change.case] = attribution(base.dumps[key], head.dumps[key])
                self.operators[change.case] = operator_changes(
                    base.operators(key), head.operators(key)
                )

    @property
    def regressed(self):
        return [c for c in self.changes if c.kind == "regressed"]

    def markdown(self) -> str:
        """The counts' part of ``compare.md``: what they flagged and where it went."""
        from ..report.compare import _count, _percent, count_limits_text

        t = self.threshold
        cases_n = len({c.case for c in self.changes})
        largest = max(self.changes, key=lambda c: abs(c.ratio - 1), default=None)
        lines = [
            f"#### Instruction counts (callgrind, one thread, per step; limits: "
            f"{count_limits_text(t)})",
            "",
            f"{len(self.regressed)} count(s) grew beyond their threshold "
            f"({cases_n} cases counted: instructions, estimated cycles, operators)"
            + (
                f"; the largest change: {_percent(largest.ratio)} ({largest.test}, "
                f"`{largest.case}`)."
                if largest is not None
                else "."
            ),
        ]
        if self.failed:
            lines += ["", "Failed in HEAD (counted in BASE): " + ", ".join(self.failed)]
        moved = sorted(
            (c for c in self.changes if c.kind != "unchanged"), key=lambda c: -abs(c.ratio - 1)
        )
        if moved:
            lines += [
                "",
                "| case | measure | BASE | HEAD | change | verdict |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| `{c.case}` | {c.test} | {_count(c.base)} | {_count(c.new)} | "
                f"{_percent(c.ratio)} | {c.kind} |"
                for c in moved
            ]
        for case, rows in self.attribution.items():
            lines += [
                "",
                f"Where the instructions of `{case}` went (inclusive instructions of the "
                f"{STEPS} counted steps, the functions that changed most):",
                "",
                "| function | BASE | HEAD | change |",
                "|---|---|---|---|",
            ]
            lines += [f"| `{_short(f)}` | {b} | {h} | {h - b:+d} |" for f, b, h in rows]
            ops = self.operators.get(case)
            if ops:
                lines += [
                    "",
                    "Compute operators of one step that changed: "
                    + ", ".join(f"`{name}` {b} → {h}" for name, b, h in ops)
                    + ".",
                ]
        split = "; ".join(
            f"{side}: {v['total']:.0f} s (import {v['import']:.0f} s, setup {v['setup']:.0f} s, "
            f"measured {v['measured']:.0f} s)"
            for side, v in self.timing.items()
        )
        lines += ["", f"Counting took {split}."]
        return "\n".join(lines) + "\n"


def _short(name: str, width: int = 90) -> str:
    """A function name for a table cell: no pipes, at most ``width`` characters."""
    name = name.replace("|", "/").replace("`", "'")
    return name if len(name) <= width else name[: width - 3] + "..."
