"""Our baselines against the libraries users already have: time ratios from one run.

Each pair in :data:`PAIRS` is a method written in this project beside the library
method that does the same job (``expm`` vs geotorch's ``expm`` trivialization, ...); the
ratio is ``ours / library`` at each N (< 1: ours is faster). Every peer is also set
against projUNN-T at its fastest rank at that N (``peer / projunn_t``: > 1, projUNN is
faster). Only cases measured by the same run are paired (one process, interleaved in
time), so machine load does not fall on one side of a ratio only.

>>> import pandas as pd
>>> t = pd.DataFrame({"platform": "cpu", "workload": "train_step", "dtype": "float32",
...     "run": "r", "n": 64, "method": ["expm", "geotorch_expm", "projunn_t", "projunn_t"],
...     "k": [None, None, 1, 4], "seconds": [1.0, 2.0, 0.5, 0.25]})
>>> r = ratios(t)
>>> r[["pair", "ratio"]].values.tolist()
[['expm / geotorch_expm', 0.5], ['geotorch_expm / projunn_t (fastest k)', 8.0]]
"""

from __future__ import annotations

from ..measure.methods import METHODS
from .render import Heading, Text, fmt_ratio, frame_table

__all__ = ["PAIRS", "ratios", "section"]

PAIRS = (
    ("expm", "geotorch_expm"),
    ("cayley", "geotorch_cayley"),
    ("torch_orthogonal", "geotorch_expm"),
    ("cayley", "geoopt_canonical"),
)
"""(ours, library): methods doing the same job; ``geoopt_canonical``'s step is the Cayley
retraction at twice the rate (see ``baselines.peers.geoopt_canonical_step``)."""

PROJUNN = "projunn_t"
_KEYS = ["platform", "workload", "dtype", "run", "n"]


def _peers() -> list[str]:
    return [name for name, m in METHODS.items() if m.requires is not None or m.approximate]


def ratios(times):
    """The ratios of :data:`PAIRS` and of each peer over projUNN-T's fastest rank, per
    platform, workload, dtype, run and N: columns ``platform, workload, dtype, run, n,
    pair, ratio, k`` (``k``: projUNN's fastest rank, for the projUNN rows)."""
    import pandas as pd

    plain = times[times["k"].isna()].drop_duplicates([*_KEYS, "method"], keep="last")
    out = []
    for ours, theirs in PAIRS:
        m = plain[plain["method"] == ours].merge(
            plain[plain["method"] == theirs], on=_KEYS, suffixes=("_a", "_b")
        )
        out.append(
            m.assign(pair=f"{ours} / {theirs}", ratio=m["seconds_a"] / m["seconds_b"], k=None)
        )
    best = (
        times[times["method"] == PROJUNN]
        .sort_values("seconds", kind="stable")
        .drop_duplicates(_KEYS, keep="first")
    )
    for peer in _peers():
        m = plain[plain["method"] == peer].merge(best, on=_KEYS, suffixes=("_a", "_b"))
        out.append(
            m.assign(
                pair=f"{peer} / {PROJUNN} (fastest k)",
                ratio=m["seconds_a"] / m["seconds_b"],
                k=m["k_b"],
            )
        )
    cols = [*_KEYS, "pair", "ratio", "k"]
    found = [f[cols] for f in out if not f.empty]
    if not found:
        return pd.DataFrame(columns=cols)
    return pd.concat(found, ignore_index=True)


def section(doc, loaded) -> None:
    """The "self-written baseline vs the library" table of the report (nothing when no
    run measured both sides of a pair)."""
    from . import analysis as an

    table = ratios(an.timings(loaded.frame))
    if table.empty:
        return
    doc.add(
        Heading("Our baselines vs the libraries"),
        Text(
            "Time ratios at each N, both sides from the same run: `ours / library` "
            "(< 1: our implementation is faster) for methods doing the same job, and each "
            "peer library over projUNN-T at its fastest rank k at that N (> 1: projUNN is "
            "faster; k in brackets)."
        ),
    )
    text = [
        fmt_ratio(r) if k != k or k is None else f"{fmt_ratio(r)} (k={int(k)})"
        for r, k in zip(table["ratio"], table["k"], strict=True)
    ]
    wide = table.assign(text=text).pivot_table(
        index=["platform", "workload", "dtype", "run", "pair"],
        columns="n",
        values="text",
        aggfunc="first",
    )
    wide = wide.reindex(sorted(wide.columns), axis=1)
    wide.columns = [f"N={n}" for n in wide.columns]
    doc.add(frame_table(wide.reset_index()))
