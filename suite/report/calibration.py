"""How well the regression detector (:mod:`suite.report.compare`) separates noise from
slowdowns, measured on A/A pairs: two result sets of the same code.

For each pair and each candidate factor: the **false alarms** (cases the detector calls
regressed or improved although nothing changed) and, for each planted slowdown ``s``, the
share of the pair's cases it catches when that one case of NEW is made ``s`` times slower
(its median, samples and confidence interval scaled: a plant on real between-run noise),
over all cases and over the **reference cases** the suite exists for: the projUNN
updates at the pair's largest N. The default factor is the smallest candidate with no
false alarm in any pair (:func:`choose`); the planted slowdowns say what it catches.

>>> import pandas as pd
>>> row = dict(workload="update", method="svd", n=64, k=None, dtype="float32",
...            device="cpu", options="", status="ok", metric="time", step=pd.NA,
...            platform="p", value=1.0, samples="0.99;1.0;1.01", contended=False)
>>> frame = pd.DataFrame([row])
>>> result = evaluate([("aa", frame, frame)], factors=(1.2,), plants=(1.5,))
>>> result.false_alarms[1.2], result.caught[(1.2, 1.5)]
(0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .compare import CASE_KEYS, compare_frames

__all__ = [
    "FACTORS",
    "PLANTS",
    "Calibration",
    "choose",
    "evaluate",
    "plant",
    "render",
]


def _percent(x: float) -> str:
    return "–" if x != x else f"{100 * x:.0f} %"


FACTORS = (1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.5, 1.6, 1.75, 2.0, 2.5)
"""Candidate factors (only one below 1.5 can catch a planted 1.5x)."""
PLANTS = (1.5, 2.0, 3.0)
"""Planted slowdowns of one case, each measured."""


def _scaled_samples(text, s: float) -> str:
    if not isinstance(text, str) or not text.strip():
        return text
    return ";".join(repr(float(x) * s) for x in text.split(";") if x.strip())


def plant(frame, index, s: float):
    """A copy of ``frame`` with the timing row at ``index`` made ``s`` times slower."""
    out = frame.copy()
    out.loc[index, "value"] = out.loc[index, "value"] * s
    out.loc[index, "samples"] = _scaled_samples(out.loc[index, "samples"], s)
    for c in ("ci_low", "ci_high", "iqr"):
        if c in out.columns and out.loc[index, c] == out.loc[index, c]:
            out.loc[index, c] = out.loc[index, c] * s
    return out


def _timed_index(frame) -> list:
    ok = (frame["status"] == "ok") & (frame["metric"] == "time") & frame["step"].isna()
    if "contended" in frame.columns:
        ok &= ~frame["contended"].fillna(False).astype(bool)
    return list(frame.index[ok])


@dataclass
class Calibration:
    """What :func:`evaluate` found: per factor the A/A ``false_alarms`` (all pairs) and
    the largest A/A ratio among the cases the intervals call apart; per (factor, s) the
    share of planted cases ``caught``; the ``pairs`` and ``cases`` judged."""

    pairs: list[str]
    cases: int
    false_alarms: dict[float, int] = field(default_factory=dict)
    alarms: dict[float, list[str]] = field(default_factory=dict)
    caught: dict[tuple[float, float], float] = field(default_factory=dict)
    caught_reference: dict[tuple[float, float], float] = field(default_factory=dict)
    largest_apart: float = 1.0
    contended: int = 0


def evaluate(
    pairs: Sequence[tuple[str, object, object]],
    *,
    factors: Sequence[float] = FACTORS,
    plants: Sequence[float] = PLANTS,
    max_plants: int | None = None,
) -> Calibration:
    """Judge each ``(label, base_frame, new_frame)`` A/A pair at every factor, and plant
    every slowdown of ``plants`` in (up to ``max_plants``) timed cases of NEW."""
    cal = Calibration([label for label, _, _ in pairs], 0)
    for f in factors:
        cal.false_alarms[f], cal.alarms[f] = 0, []
    hits: dict[tuple[float, float], list[bool]] = {(f, s): [] for f in factors for s in plants}
    ref: dict[tuple[float, float], list[bool]] = {(f, s): [] for f in factors for s in plants}
    for label, base, new in pairs:
        first = compare_frames(base, new, factor=min(factors))
        cal.cases += len(first.changes)
        cal.contended += len(first.contended)
        for c in first.changes:
            if c.significant and c.kind != "contended":
                cal.largest_apart = max(cal.largest_apart, c.ratio, 1 / c.ratio)
        for f in factors:
            comp = compare_frames(base, new, factor=f)
            bad = comp.regressed + comp.improved
            cal.false_alarms[f] += len(bad)
            cal.alarms[f] += [f"{label}: {c.case} {c.ratio:.2f}x" for c in bad]
        keys = {tuple(base.loc[j, CASE_KEYS]): j for j in _timed_index(base)}
        both = [
            (keys[k], i) for i in _timed_index(new) if (k := tuple(new.loc[i, CASE_KEYS])) in keys
        ]
        largest = max((new.loc[i, "n"] for _, i in both), default=None)
        for j, i in both[:max_plants]:
            row = new.loc[i]
            reference = row["workload"] == "update" and str(row["method"]).startswith("projunn")
            reference = reference and row["n"] == largest
            for s in plants:
                slower = plant(new.loc[[i]], i, s)
                (c,) = compare_frames(base.loc[[j]], slower, factor=min(factors)).changes
                for f in factors:
                    hits[(f, s)].append(c.significant and c.ratio > f)
                    if reference:
                        ref[(f, s)].append(c.significant and c.ratio > f)
    for key in hits:
        cal.caught[key] = _share(hits[key])
        cal.caught_reference[key] = _share(ref[key])
    return cal


def _share(found: list[bool]) -> float:
    return sum(found) / len(found) if found else math.nan


def choose(calibrations: Sequence[Calibration]) -> float | None:
    """The smallest factor with no A/A false alarm in any of ``calibrations`` (``None``
    when every candidate has one). Silence on A/A pairs comes first, since an alarm that
    fires on unchanged code teaches users to ignore it; what the factor then catches is
    :attr:`Calibration.caught` (reported beside it)."""
    factors = sorted(set.intersection(*(set(c.false_alarms) for c in calibrations)))
    return next((f for f in factors if all(c.false_alarms[f] == 0 for c in calibrations)), None)


def render(cal: Calibration, title: str, plants: Sequence[float] = PLANTS) -> str:
    """Markdown: a table of false alarms and planted cases caught per factor (all cases;
    in brackets the reference cases)."""
    head = "| factor | A/A false alarms | " + " | ".join(f"{s:g}x caught" for s in plants) + " |"
    lines = [
        f"### {title}",
        "",
        f"{len(cal.pairs)} A/A pairs ({', '.join(cal.pairs)}), {cal.cases} timed cases judged"
        + (f", {cal.contended} of them contended (not judged)" if cal.contended else "")
        + f"; largest A/A ratio with apart intervals {cal.largest_apart:.3f}.",
        "",
        head,
        "|---" * (len(plants) + 2) + "|",
    ]
    for f in sorted(cal.false_alarms):
        cells = [
            f"{100 * cal.caught[(f, s)]:.0f} % ({_percent(cal.caught_reference[(f, s)])})"
            for s in plants
        ]
        lines.append(f"| {f:g} | {cal.false_alarms[f]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
