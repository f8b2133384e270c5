"""Contention of asv runs: the CPU share each timed combination logged.

asv records no CPU share, so the asv benchmarks (``suite/benchmarks.py``) append one JSON
line per teardown to the file named by ``$PROJUNN_BENCH_CONTENTION_LOG``
(:data:`suite.measure.timing.CONTENTION_LOG`): the case, asv's commit, the CPU share of the
process so far and its age. :func:`contention_marks` reads it back, :func:`mark` puts it
on a loaded frame, so that the detector can leave a contended case unjudged.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["contention_marks", "mark"]


def contention_marks(log: Path) -> dict[tuple, float]:
    """``(commit prefix, workload, method, n, k, dtype, device) -> cpu_share`` from the
    lines the benchmarks appended to ``log`` (``$PROJUNN_BENCH_CONTENTION_LOG``): per case
    the line of its longest-running process, which timed it (a short one only measured
    its memory)."""
    import json

    best: dict[tuple, tuple[float, float]] = {}
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
        if key not in best or e["seconds"] > best[key][0]:
            best[key] = (float(e["seconds"]), float(e["cpu_share"]))
    return {key: share for key, (_, share) in best.items()}


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
