"""The numbers of a report, from the tidy frame of :mod:`suite.report.load` (pandas).

Every function takes a frame and returns a new frame; nothing is drawn or formatted here.
Where the same case was measured by several runs on one platform, the latest run's row
is used (:func:`latest`).

Scaling exponents (:func:`exponents`) are least-squares slopes of log time on log N over
the sizes N >= ``min_n``; their standard error is the larger of the fit's residual error
(three or more sizes) and the error propagated from the timing spread of each point
(IQR / 1.349 as the standard deviation of a sample, over sqrt(repeat) for its median).

>>> import math
>>> slope, se = fit_loglog([256, 512, 1024], [1.0, 8.0, 64.0])
>>> round(slope, 6), se
(3.0, 0.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..measure.methods import METHODS
from ..measure.workloads import WORKLOADS
from . import series_label

__all__ = [
    "MIN_FIT_N",
    "TIMED_WORKLOADS",
    "accuracy_distance",
    "crossovers",
    "exponents",
    "fit_loglog",
    "latest",
    "learning_final",
    "memory",
    "not_measured",
    "prepared",
    "speedups",
    "timings",
    "unitarity",
    "undrawn_metrics",
    "unknown_workloads",
]

TIMED_WORKLOADS = tuple(name for name, w in WORKLOADS.items() if w.timed)
"""The suite's timed workloads (update, train_step and their conv_ counterparts)."""
ACCURACY_WORKLOADS = tuple(name for name, w in WORKLOADS.items() if not w.timed)
"""The evaluated workloads (accuracy, conv_accuracy)."""
ERROR_METRICS = ("unitarity", "orthogonality")
"""Prefixes of the accuracy workloads' ||W^H W - I|| metrics (dense, convolution)."""
MEMORY_METRICS = ("host_peak_rss", "cuda_peak_memory")
MIN_FIT_N = 256
"""Default small-N cutoff of the exponent fit: below it fixed per-call costs dominate."""

_CASE = ["platform", "workload", "dtype", "method", "k", "options", "label"]


def prepared(frame):
    """The ok rows with ``label`` (``projunn_t-k4``, options in brackets), ``projunn``
    (ranked projUNN methods) and ``cubic`` (O(N^3) methods) added."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["label"] = [
        series_label(m, k, o) for m, k, o in zip(ok["method"], ok["k"], ok["options"], strict=True)
    ]
    ok["projunn"] = [bool(METHODS[m].ranked) if m in METHODS else False for m in ok["method"]]
    ok["cubic"] = [bool(METHODS[m].cubic) if m in METHODS else False for m in ok["method"]]
    return ok


def latest(df, keys: Sequence[str]):
    """One row per ``keys``: the one from the most recent run (by ``date``)."""
    if df.empty:
        return df
    return df.sort_values("date", kind="stable").drop_duplicates(list(keys), keep="last")


def timings(frame):
    """Median seconds per case of the timed workloads: columns ``platform, workload,
    dtype, method, k, options, label, projunn, cubic, n, seconds, iqr, repeat, run,
    cpu_share, contended`` (contended: timed while other processes held the cores)."""
    ok = prepared(frame)
    t = ok[(ok["metric"] == "time") & ok["workload"].isin(TIMED_WORKLOADS) & ok["step"].isna()]
    t = latest(t, [*_CASE, "n"]).rename(columns={"value": "seconds"})
    t = t.assign(contended=t["contended"].fillna(False).astype(bool))
    cols = [*_CASE, "projunn", "cubic", "n", "seconds", "iqr", "repeat", "run"]
    cols += ["cpu_share", "contended"]
    return (
        t[cols].sort_values(["platform", "workload", "dtype", "label", "n"]).reset_index(drop=True)
    )


def fit_loglog(n: Sequence[float], seconds: Sequence[float], sigma_log=None):
    """Least-squares slope of log(seconds) on log(n) and its standard error.

    ``sigma_log``: per-point standard errors of log(seconds) (optional). The error is the
    larger of the residual error (needs 3+ points) and the propagated one; NaN when
    neither is available.
    """
    import numpy as np

    x = np.log(np.asarray(n, dtype=float))
    y = np.log(np.asarray(seconds, dtype=float))
    dx = x - x.mean()
    sxx = float((dx**2).sum())
    slope = float((dx * (y - y.mean())).sum() / sxx)
    errors = []
    if len(x) > 2:
        resid = y - (y.mean() + slope * dx)
        errors.append(math.sqrt(float((resid**2).sum()) / (len(x) - 2) / sxx))
    if sigma_log is not None:
        s = np.asarray(sigma_log, dtype=float)
        if np.isfinite(s).all():
            errors.append(math.sqrt(float(((dx / sxx) ** 2 * s**2).sum())))
    return slope, (max(errors) if errors else math.nan)


def exponents(times, min_n: int = MIN_FIT_N):
    """Fitted scaling exponent per series (platform, workload, dtype, method label) over
    the sizes N >= ``min_n``: columns ``exponent, se, sizes, n_min, n_max, expected``
    (3 for O(N^3) methods, 2 for projUNN's O(kN^2), empty otherwise). Series with fewer
    than two sizes above the cutoff are left out."""
    import pandas as pd

    rows = []
    times = times[~times["contended"]]  # their times measure the load, not the code
    for key, g in times[times["n"] >= min_n].groupby(_CASE, dropna=False, sort=True):
        g = g.sort_values("n")
        if g["n"].nunique() < 2:
            continue
        repeat = g["repeat"].astype(float)  # one sample (or none recorded): spread unknown
        sigma = (g["iqr"].astype(float) / 1.349) * 1.2533 / repeat.pow(0.5) / g["seconds"]
        sigma = sigma.where(repeat >= 2)
        slope, se = fit_loglog(g["n"].astype(float), g["seconds"], sigma)
        first = g.iloc[0]
        rows.append(
            {
                **dict(zip(_CASE, key, strict=True)),
                "exponent": slope,
                "se": se,
                "sizes": int(g["n"].nunique()),
                "n_min": int(g["n"].min()),
                "n_max": int(g["n"].max()),
                "expected": 3 if first["cubic"] else (2 if first["projunn"] else None),
            }
        )
    cols = [*_CASE, "exponent", "se", "sizes", "n_min", "n_max", "expected"]
    return pd.DataFrame(rows, columns=cols)


def speedups(times, best_k: bool = False):
    """Speed-up of every projUNN series over every baseline at each common N:
    ``baseline seconds / projUNN seconds`` (> 1: projUNN faster). Columns ``platform,
    workload, dtype, n, projunn (label), variant (method), k, baseline, speedup``.

    ``best_k``: per projUNN method and N, only its fastest rank (``k`` says which).
    Contended timings take no part (see :func:`timings`)."""
    keys = ["platform", "workload", "dtype", "n"]
    times = times[~times["contended"]]
    p = times[times["projunn"]]
    if best_k:
        p = p.sort_values("seconds", kind="stable").drop_duplicates(
            [*keys, "method", "options"], keep="first"
        )
        p = p.assign(
            label=[series_label(m, None, o) for m, o in zip(p["method"], p["options"], strict=True)]
        )
    b = times[~times["projunn"]]
    m = p.merge(b, on=keys, suffixes=("_p", "_b"))
    out = m.assign(
        projunn=m["label_p"],
        variant=m["method_p"],
        k=m["k_p"],
        baseline=m["label_b"],
        speedup=m["seconds_b"] / m["seconds_p"],
    )
    cols = [*keys, "projunn", "variant", "k", "baseline", "speedup"]
    return out[cols].sort_values([*keys[:3], "projunn", "baseline", "n"]).reset_index(drop=True)


def crossovers(speed):
    """The crossover N of each (platform, workload, dtype, projUNN series, baseline): the
    smallest measured N from which projUNN is faster at every larger measured N.

    Columns ``crossover`` (that N, or NaN when projUNN is slower at the largest N),
    ``faster_everywhere`` (already faster at the smallest N), ``n_min``, ``n_max``."""
    import pandas as pd

    rows = []
    keys = ["platform", "workload", "dtype", "projunn", "baseline"]
    for key, g in speed.groupby(keys, sort=True):
        g = g.sort_values("n")
        ns, faster = list(g["n"]), list(g["speedup"] > 1)
        cross = math.nan
        for n, f in zip(reversed(ns), reversed(faster), strict=True):
            if not f:
                break
            cross = n
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "crossover": cross,
                "faster_everywhere": all(faster),
                "n_min": ns[0],
                "n_max": ns[-1],
            }
        )
    cols = [*keys, "crossover", "faster_everywhere", "n_min", "n_max"]
    return pd.DataFrame(rows, columns=cols)


def memory(frame):
    """Peak memory per case (host RSS and CUDA peak, bytes) of the timed workloads."""
    ok = prepared(frame)
    m = ok[ok["metric"].isin(MEMORY_METRICS) & ok["workload"].isin(TIMED_WORKLOADS)]
    m = latest(m, [*_CASE, "metric", "n"]).rename(columns={"value": "bytes"})
    cols = [*_CASE, "metric", "n", "bytes", "run"]
    return (
        m[cols]
        .sort_values(["platform", "workload", "metric", "dtype", "label", "n"])
        .reset_index(drop=True)
    )


def _steps_of(metric: str) -> int:
    """0 for ``unitarity_init``, 1 for ``..._after_1_step``, S for ``..._after_S_steps``
    and a large number for asv's ``..._after_many_steps``.

    >>> [_steps_of(m) for m in ("unitarity_init", "orthogonality_after_1000_steps")]
    [0, 1000]
    """
    if metric.endswith("_init"):
        return 0
    match = re.search(r"_after_(\d+)_step", metric)
    return int(match.group(1)) if match else 10**9


def unitarity(frame):
    """Unitarity error ||W^H W - I||_F / sqrt(N) (dense; ``orthogonality_*`` for the
    convolutions) per case and metric: columns ``platform, workload, dtype, method, k,
    options, label, projunn, n, metric, steps, error``."""
    ok = prepared(frame)
    u = ok[ok["workload"].isin(ACCURACY_WORKLOADS) & ok["metric"].str.startswith(ERROR_METRICS)]
    u = latest(u, [*_CASE, "metric", "n"]).rename(columns={"value": "error"})
    u = u.assign(steps=[_steps_of(m) for m in u["metric"]])
    cols = [*_CASE, "projunn", "n", "metric", "steps", "error"]
    order = ["platform", "workload", "dtype", "label", "n", "steps"]
    return u[cols].sort_values(order).reset_index(drop=True)


def accuracy_distance(frame):
    """``dist_to_exact`` per projUNN case: ||A_k - A_exact||_F / ||A_exact - A0||_F."""
    ok = prepared(frame)
    d = ok[ok["workload"].isin(ACCURACY_WORKLOADS) & (ok["metric"] == "dist_to_exact")]
    d = latest(d, [*_CASE, "n"]).rename(columns={"value": "distance"})
    cols = ["platform", "workload", "dtype", "method", "k", "options", "label", "n", "distance"]
    order = ["platform", "workload", "dtype", "method", "n", "k"]
    return d[cols].sort_values(order).reset_index(drop=True)


def _task_rows(frame):
    """The ok rows of task workloads (workloads with learning-curve rows), labelled by
    method and rank only (a task's options hold its whole configuration)."""
    ok = prepared(frame)
    tasks = set(ok.loc[ok["step"].notna(), "workload"])
    t = ok[ok["workload"].isin(tasks)]
    labels = [series_label(m, k) for m, k in zip(t["method"], t["k"], strict=True)]
    return t.assign(label=labels).rename(columns={"workload": "task"})


_SERIES = ["task", "platform", "run", "label", "n"]


def learning_final(frame):
    """Per task series: the last logged value of each learning-curve metric, the number
    of steps, and the metrics logged once (parameters, unitarity, the baselines)."""
    import pandas as pd

    t = _task_rows(frame)
    if t.empty:
        return pd.DataFrame()
    last = t[t["step"].notna()].sort_values("step").groupby([*_SERIES, "metric"]).last()
    wide = last["value"].unstack("metric")
    steps = t[t["step"].notna()].groupby(_SERIES)["step"].max().rename("steps")
    once = t[t["step"].isna()].pivot_table(index=_SERIES, columns="metric", values="value")
    out = pd.concat([steps, wide, once], axis=1).reset_index()
    out.columns.name = None
    return out.sort_values(_SERIES).reset_index(drop=True)


def unknown_workloads(frame):
    """Workloads the report does not draw (not timed, accuracy or a task with learning
    curves; e.g. a profile table), with their row counts: a Series indexed by workload."""
    tasks = set(frame.loc[frame["step"].notna(), "workload"])
    rows = frame[~frame["workload"].isin(WORKLOADS) & ~frame["workload"].isin(tasks)]
    return rows.groupby("workload").size()


def undrawn_metrics(frame):
    """Metrics of the suite's workloads that no figure shows (e.g. the operator and
    group figures of profile tables), by name before any ``:``, with row counts."""
    ok = frame[(frame["status"] == "ok") & frame["workload"].isin(WORKLOADS)]
    drawn = ok["metric"].isin(("time", *MEMORY_METRICS, "dist_to_exact")) | ok[
        "metric"
    ].str.startswith(ERROR_METRICS)
    rest = ok.loc[~drawn, "metric"].str.split(":").str[0]
    return rest.groupby(rest).size()


def not_measured(frame):
    """Skipped and failed cases grouped by platform, workload, status and reason, with
    the methods concerned: columns ``platform, workload, status, reason, cases,
    methods``."""
    import pandas as pd

    bad = frame[frame["status"] != "ok"]
    rows = []
    for key, g in bad.groupby(["platform", "workload", "status", "reason"], sort=True):
        labels = sorted(set(g["method"]))
        rows.append(
            {
                **dict(zip(["platform", "workload", "status", "reason"], key, strict=True)),
                "cases": len(g),
                "methods": ", ".join(labels),
            }
        )
    return pd.DataFrame(
        rows, columns=["platform", "workload", "status", "reason", "cases", "methods"]
    )
