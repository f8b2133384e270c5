"""Contention of asv runs: the CPU share each timed combination logged.

asv records no CPU share, so the asv benchmarks (``suite/benchmarks.py``) append one JSON
line per teardown to the file named by ``$PROJUNN_BENCH_CONTENTION_LOG``
(:data:`suite.measure.timing.CONTENTION_LOG`): the case, asv's commit, the CPU share of the
process so far and its age. :func:`contention_marks` reads it back, :func:`mark` puts it
on a loaded frame, so that the detector can leave a contended case unjudged;
:func:`compact` keeps only the lines it reads.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["asv_pair", "compact", "contention_marks", "mark"]


def _timing_lines(log: Path) -> dict[tuple, dict]:
    """``(commit prefix, workload, method, n, k, dtype, device) -> line``: per case the line
    of its longest-running process, which timed it (a short one only measured its
    memory); a process's last line covers all its samples."""
    import json

    best: dict[tuple, dict] = {}
    if not log.is_file():
        return {}
    for line in log.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:  # a line cut by a killed process
            continue
        if e.get("cpu_share") is None:
            continue
        key = (str(e["commit"])[:8], e["workload"], e["method"], e["n"], e["k"])
        key += (e["dtype"], e["device"])
        if key not in best or e["seconds"] > best[key]["seconds"]:
            best[key] = e
    return best


def contention_marks(log: Path) -> dict[tuple, float]:
    """``(commit prefix, workload, method, n, k, dtype, device) -> cpu_share`` from the
    lines the benchmarks appended to ``log`` (``$PROJUNN_BENCH_CONTENTION_LOG``)."""
    return {key: float(e["cpu_share"]) for key, e in _timing_lines(log).items()}


def compact(log: Path) -> None:
    """Rewrite ``log`` (atomically) with only the lines :func:`contention_marks` reads, one
    per case and commit: the benchmarks append a line per sample, thousands a gate run.

    >>> import json, tempfile; from pathlib import Path
    >>> log = Path(tempfile.mkdtemp()) / "contention.jsonl"
    >>> case = dict(commit="abc", workload="update", method="svd", n=8, k=None,
    ...             dtype="float32", device="cpu")
    >>> _ = log.write_text("".join(json.dumps({**case, "cpu_share": s, "seconds": t}) + "\\n"
    ...                            for s, t in [(0.9, 1.0), (0.99, 3.0), (0.5, 2.0)]))
    >>> compact(log); contention_marks(log), len(log.read_text().splitlines())
    ({('abc', 'update', 'svd', 8, None, 'float32', 'cpu'): 0.99}, 1)
    """
    import json

    from ..measure.output import atomic_write_text

    if log.is_file():
        lines = _timing_lines(log).values()
        atomic_write_text(log, "".join(json.dumps(e) + "\n" for e in lines))


def mark(frame, commit: str, marks: dict[tuple, float]):
    """``frame`` with the ``cpu_share`` and ``contended`` of its cases from ``marks``."""
    import pandas as pd

    from ..measure.timing import CONTENDED_BELOW

    columns = ("workload", "method", "n", "k", "dtype", "device")
    share = []
    for w, m, n, k, d, dev in frame[list(columns)].itertuples(index=False):
        k = None if pd.isna(k) else int(k)  # NA: an unranked method
        share.append(marks.get((commit[:8], w, m, int(n), k, d, dev)))
    return frame.assign(
        cpu_share=share, contended=[x is not None and x < CONTENDED_BELOW for x in share]
    )


def asv_pair(folder: Path):
    """``(label, base frame, head frame)`` of a gate run's saved asv results
    (``folder/asv/base.json``, ``head.json``), contention marked from
    ``folder/contention.jsonl``; ``None`` where they are missing. (An A/A pair of the
    gate-noise campaign, for :func:`suite.report.calibration.evaluate`.)"""
    from .load import load_one

    base, head = folder / "asv" / "base.json", folder / "asv" / "head.json"
    if not (base.is_file() and head.is_file()):
        return None
    (sb, db), (sh, dh) = load_one(base), load_one(head)
    marks = contention_marks(folder / "contention.jsonl")
    return folder.name, mark(db, sb.commit, marks), mark(dh, sh.commit, marks)
