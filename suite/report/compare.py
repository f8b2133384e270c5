"""The one regression detector: ``projunn-bench compare`` and the pull-request gate both
judge their cases here.

A case (workload, method, k, N, dtype, device, options) present in both result sets
counts as a **regression** when its median time grew by more than ``factor`` *and* the
confidence intervals of the two medians do not overlap; an **improvement** likewise when
it shrank by more than ``factor``; **contended** when either side was timed while other
processes held the cores (never judged); anything else is **unchanged**.

Runs, not samples, are the unit of independence: the samples of one run share that run's
conditions, so a test between the samples of two runs calls a between-run shift
significant (an A/A pair gave Mann–Whitney p = 1e-12 for a 1.19x shift). The intervals
only rule out the noise *within* a run; the ``factor`` covers the shifts *between* runs,
and its default (:data:`FACTOR`) is chosen from measured A/A pairs of the quick and the
gate grids (``results/detector.md``). The interval of a median, per case:

1. asv results: asv's 99 % confidence interval;
2. samples stored: the distribution-free 99 % interval of the median from the order
   statistics (:func:`median_interval`; with fewer than 8 samples, their range);
3. neither, but an IQR: median ± IQR;
4. one sample, no spread at all: the factor alone decides.

>>> a = {"value": 1.0, "samples": "1.0;1.01;0.99;1.02;0.98;1.0;1.01;0.99"}
>>> b = {"value": 3.0, "samples": "3.0;3.03;2.97;3.06;2.94;3.0;3.03;2.97"}
>>> significant(a, b)[0], significant(a, a)[0]
(True, False)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import series_label
from .load import InputError, Source, load_one
from .render import Table, fmt_ratio, fmt_seconds, markdown

__all__ = [
    "FACTOR",
    "CaseChange",
    "Comparison",
    "COUNTED",
    "COUNT_THRESHOLD",
    "CYCLES_SCALE",
    "count_limit",
    "count_limits_text",
    "compare",
    "compare_counts",
    "compare_frames",
    "median_interval",
    "resolve_asv_commit",
    "significant",
]

CASE_KEYS = ["workload", "method", "k", "n", "dtype", "device", "options"]
FACTOR = 1.6
"""The default factor of ``compare`` and the gate: the smallest ratio of medians that
counts. Calibrated on A/A pairs (``results/detector.md``): the smallest candidate with no
false alarm in 5 pairs of the quick grid (``--threads 1``) and 8 of the gate grid (asv, CPU
time, one thread); there a planted 2x slowdown of a reference case is caught in 97-100 %
of the pairs, 3x always, 1.5x in 15-22 % (single pairs of runs on the 2-core machine
shift a case by up to 1.56x, so 1.5x cannot be told from noise in one pair). Runs with
more than one CPU thread shift by up to 2.1x and need 2.5 (``compare`` says so)."""
LEVEL = 0.99
"""Confidence level of the intervals of the medians (asv's own level)."""
COUNTED = ("instructions", "estimated_cycles", "operations")
"""The count metrics (``projunn-bench run --instructions``, the gate): judged by
:data:`COUNT_THRESHOLD`, not by the factor; ``operations`` (compute operators per step, a
whole number with no noise at all) by any growth."""
COUNT_THRESHOLD = 0.02
"""An instruction count per step that grew by more than this fraction is a regression;
estimated cycles are judged at :data:`CYCLES_SCALE` times it (the cache model adds spread).
Calibrated (``results/gate_counts.md``) on the larger of two spreads: A/A pairs of whole
gate count runs (the same code in separate callgrind processes: identical counts, largest
difference 0.003 % in estimated cycles) and the cases the reference plants do not touch
(a code change moves the memory layout: up to 0.52 % in instructions and 1.61 % in
estimated cycles); 2 % and 4 % leave a margin of 2.5x or more. Below it a change is caught
by the compute operators it adds (``operations``: any growth)."""
CYCLES_SCALE = 2.0
"""Estimated cycles are judged at this multiple of the count threshold."""


def count_limit(metric: str, threshold: float) -> float:
    """The growth (a fraction) beyond which a count ``metric`` regresses, for the count
    ``threshold``: instructions at it, estimated cycles at :data:`CYCLES_SCALE` times it,
    operations at any growth (0).

    >>> [count_limit(m, 0.02) for m in COUNTED]
    [0.02, 0.04, 0.0]
    """
    if metric == "operations":
        return 0.0
    return threshold * (CYCLES_SCALE if metric == "estimated_cycles" else 1)


def count_limits_text(threshold: float) -> str:
    """The limits of :func:`count_limit` in words.

    >>> count_limits_text(0.02)
    'instructions +2 % / estimated cycles +4 % / one more compute operator'
    """
    return (
        f"instructions +{100 * count_limit('instructions', threshold):g} % / estimated cycles "
        f"+{100 * count_limit('estimated_cycles', threshold):g} % / one more compute operator"
    )


def _samples(row: Mapping[str, Any]) -> list[float]:
    text = row.get("samples")
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        values = [float(s) for s in text.split(";") if s.strip()]
    except ValueError:
        return []
    return [v for v in values if math.isfinite(v)]


def median_interval(samples: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """A distribution-free ``level`` confidence interval of the median of ``samples``:
    the order statistics ``x_(j)``, ``x_(n-j+1)`` with ``j`` the largest rank whose
    binomial tail ``P(Bin(n, 1/2) < j)`` stays within ``(1 - level) / 2``; the sample range
    when there are too few samples for that (fewer than 8 at 99 %); ``None`` for fewer
    than two samples.

    >>> median_interval([float(x) for x in range(1, 21)])
    (4.0, 17.0)
    >>> median_interval([1.0, 2.0, 3.0])
    (1.0, 3.0)
    """
    from scipy.stats import binom

    xs = sorted(samples)
    n = len(xs)
    if n < 2:
        return None
    tail = (1 - level) / 2
    j = int(binom.ppf(tail, n, 0.5))  # P(B <= j) >= tail: ranks below j+1 are excluded
    while j > 0 and binom.cdf(j - 1, n, 0.5) > tail:
        j -= 1
    if j < 1:
        return xs[0], xs[-1]
    return xs[j - 1], xs[n - j]


def _interval(row: Mapping[str, Any], samples: list[float]) -> tuple[float, float] | None:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is not None and hi is not None and lo == lo and hi == hi:
        return float(lo), float(hi)
    found = median_interval(samples)
    if found is not None:
        return found
    iqr = row.get("iqr")
    if iqr is not None and iqr == iqr and float(iqr) > 0:
        v = float(row["value"])
        return v - float(iqr), v + float(iqr)
    return None


def significant(base: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the medians of ``base`` and ``new`` (result rows) differ beyond the noise
    within their runs, and how that was decided (see the module docstring)."""
    return _significant(base, new, _samples(base), _samples(new))


def _significant(
    base: Mapping[str, Any], new: Mapping[str, Any], a: list[float], b: list[float]
) -> tuple[bool, str]:
    """:func:`significant` given the parsed samples ``a`` of ``base`` and ``b`` of ``new``."""
    ia, ib = _interval(base, a), _interval(new, b)
    if ia is None or ib is None:
        return True, "ratio only (no spread recorded)"
    apart = ia[1] < ib[0] or ib[1] < ia[0]
    return apart, "intervals apart" if apart else "intervals overlap"


def _contended(row: Mapping[str, Any]) -> bool:
    value = row.get("contended")
    return bool(value) and value == value  # NaN / NA count as not measured


@dataclass
class CaseChange:
    """One case in both sets: its medians, ``ratio`` = new / base, the noise test."""

    case: str
    base: float
    new: float
    ratio: float
    test: str
    significant: bool
    kind: str  # "regressed", "improved", "contended" or "unchanged"
    samples: str = ""


@dataclass
class Comparison:
    """The outcome of :func:`compare_frames`."""

    changes: list[CaseChange]
    factor: float
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    base_label: str = "BASE"
    new_label: str = "NEW"
    notes: list[str] = field(default_factory=list)
    counted: list[CaseChange] = field(default_factory=list)
    threshold: float = COUNT_THRESHOLD

    def of_kind(self, kind: str) -> list[CaseChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def count_regressed(self) -> list[CaseChange]:
        """The counts (``test``: the metric) that grew beyond the threshold."""
        return [c for c in self.counted if c.kind == "regressed"]

    @property
    def regressed(self) -> list[CaseChange]:
        return self.of_kind("regressed")

    @property
    def improved(self) -> list[CaseChange]:
        return self.of_kind("improved")

    @property
    def unchanged(self) -> list[CaseChange]:
        return self.of_kind("unchanged")

    @property
    def contended(self) -> list[CaseChange]:
        return self.of_kind("contended")

    def counts(self) -> str:
        """``'1 regressed, 0 improved, 57 unchanged (of 58 cases in both; ...)'``."""
        contended = f", {len(self.contended)} contended" if self.contended else ""
        text = (
            f"{len(self.regressed)} regressed, {len(self.improved)} improved, "
            f"{len(self.unchanged)} unchanged{contended} (of {len(self.changes)} timed cases "
            "in both"
        )
        extra = [
            f"{len(x)} only in {name}"
            for x, name in ((self.only_base, "BASE"), (self.only_new, "NEW"))
            if x
        ]
        return text + ("; " + ", ".join(extra) if extra else "") + ")"

    def markdown(self) -> str:
        """The comparison as markdown: counts, then regressions and improvements."""
        from .render import Bullets, Heading, Text

        blocks: list = [
            Text(f"BASE: {self.base_label}  \nNEW: {self.new_label}"),
            Text(
                f"A case counts when its median time changed by more than a factor "
                f"{self.factor:g} and the {100 * LEVEL:g} % confidence intervals of the two "
                "medians do not overlap (asv's intervals for asv results, the order "
                "statistics of the samples otherwise). A case timed while other processes "
                "held the cores (contended) is not judged."
            ),
            Text(f"**{self.counts()}**"),
        ]
        if self.notes:
            blocks.append(Bullets(list(self.notes)))
        for kind, title in (("regressed", "Regressions"), ("improved", "Improvements")):
            rows = sorted(self.of_kind(kind), key=lambda c: -abs(math.log(c.ratio)))
            blocks.append(Heading(f"{title} ({len(rows)})"))
            blocks.append(_change_table(rows, samples=True) if rows else Text("None."))
        if self.contended:
            blocks.append(Heading(f"Contended: not judged ({len(self.contended)})"))
            blocks.append(
                Text(
                    "Timed while other processes held the cores on one side or both: rerun "
                    "them on a quiet machine to compare them."
                )
            )
            blocks.append(_change_table(self.contended, samples=False))
        if self.counted:
            blocks += _count_blocks(self.counted, self.threshold)
        noisy = [
            c
            for c in self.unchanged
            if not c.significant and max(c.ratio, 1 / c.ratio) > self.factor
        ]
        if noisy:
            blocks.append(Heading(f"Beyond the factor but within the noise ({len(noisy)})"))
            blocks.append(_change_table(noisy, samples=False))
        return markdown(blocks, "projunn-bench compare")


def _change_table(changes: list[CaseChange], samples: bool) -> Table:
    """The table of ``changes``: case, both medians, their ratio, the noise test and,
    with ``samples``, the sample counts."""
    columns = ["case", "BASE", "NEW", "NEW / BASE", "noise test"]
    rows = [
        [c.case, fmt_seconds(c.base), fmt_seconds(c.new), fmt_ratio(c.ratio), c.test]
        + ([c.samples] if samples else [])
        for c in changes
    ]
    return Table(columns + (["samples"] if samples else []), rows)


def _count_blocks(counted: list[CaseChange], threshold: float) -> list:
    """The markdown blocks of the count comparison: what moved beyond the threshold."""
    from .render import Heading, Text

    moved = sorted(
        (c for c in counted if c.kind != "unchanged"), key=lambda c: -abs(math.log(c.ratio))
    )
    largest = max(counted, key=lambda c: abs(c.ratio - 1))
    text = (
        f"Instruction counts (callgrind, per step), limits: {count_limits_text(threshold)}. "
        f"{len(moved)} of {len(counted)} counts moved beyond them; the largest change is "
        f"{_percent(largest.ratio)} ({largest.test}, `{largest.case}`)."
    )
    blocks: list = [Heading(f"Counts beyond {100 * threshold:g} % ({len(moved)})"), Text(text)]
    if moved:
        rows = [
            [c.case, c.test, _count(c.base), _count(c.new), _percent(c.ratio), c.kind]
            for c in moved
        ]
        blocks.append(Table(["case", "measure", "BASE", "NEW", "change", "verdict"], rows))
    return blocks


def _count(x: float) -> str:
    """``'1.23e+06'`` style counts, exact below 10 000."""
    return f"{x:.0f}" if x < 1e4 else f"{x:.4g}"


def _percent(ratio: float) -> str:
    """``'+1.35 %'`` for a ratio of 1.0135."""
    return f"{100 * (ratio - 1):+.2f} %"


def compare_counts(base, new, *, threshold: float = COUNT_THRESHOLD) -> list[CaseChange]:
    """The count rows (:data:`COUNTED`) of two tidy frames, case by case and metric by
    metric: "regressed" when NEW / BASE exceeds ``1 + threshold`` (estimated cycles:
    ``1 + CYCLES_SCALE * threshold``; operations: any growth, one more operator per step),
    "improved" below its inverse, else "unchanged" (``test`` holds the metric; a count
    has no spread, its noise is the threshold's business).

    >>> import pandas as pd
    >>> row = dict(workload="update", method="svd", k=None, n=8, dtype="float32",
    ...            device="cpu", options="", status="ok", step=None, metric="instructions")
    >>> a, b = pd.DataFrame([{**row, "value": 1e6}]), pd.DataFrame([{**row, "value": 1.03e6}])
    >>> [(c.test, c.kind) for c in compare_counts(a, b)]
    [('instructions', 'regressed')]
    >>> compare_counts(a, b, threshold=0.05)[0].kind
    'unchanged'
    >>> a, b = a.assign(metric="operations", value=40), b.assign(metric="operations", value=41)
    >>> [(c.test, c.kind) for c in compare_counts(a, b, threshold=0.05)]
    [('operations', 'regressed')]
    """
    if not threshold > 0:
        raise ValueError(f"the count threshold must be > 0, got {threshold}")
    out = []
    for metric in COUNTED:
        limit = count_limit(metric, threshold)
        b, n = _timed(base, metric), _timed(new, metric)
        kb = {tuple(r[c] for c in CASE_KEYS): r for r in b.to_dict("records")}
        kn = {tuple(r[c] for c in CASE_KEYS): r for r in n.to_dict("records")}
        for key in sorted(kb.keys() & kn.keys(), key=str):
            vb, vn = float(kb[key]["value"]), float(kn[key]["value"])
            ratio = vn / vb if vb > 0 else math.inf
            kind = (
                "regressed"
                if ratio > 1 + limit
                else "improved"
                if ratio < 1 / (1 + limit)
                else "unchanged"
            )
            out.append(CaseChange(_case_name(kb[key]), vb, vn, ratio, metric, True, kind))
    return out


def _case_name(row: Mapping[str, Any]) -> str:
    label = series_label(row["method"], row["k"], row["options"])
    return f"{row['workload']} {label} N={row['n']} {row['dtype']} {row['device']}"


def _timed(df, metric: str = "time"):
    t = df[(df["status"] == "ok") & (df["metric"] == metric) & df["step"].isna()]
    t = t.assign(k=t["k"].astype("Int64").astype(object).where(t["k"].notna(), None))
    return t.drop_duplicates(CASE_KEYS, keep="last")


def compare_frames(
    base,
    new,
    *,
    factor: float = FACTOR,
    base_label: str = "BASE",
    new_label: str = "NEW",
    threshold: float = COUNT_THRESHOLD,
) -> Comparison:
    """Compare the ``time`` rows of two tidy frames case by case (see the module doc), and
    their count rows (:func:`compare_counts`, into ``counted``)."""
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    b, n = _timed(base), _timed(new)
    kb = {tuple(r[c] for c in CASE_KEYS): r for r in b.to_dict("records")}
    kn = {tuple(r[c] for c in CASE_KEYS): r for r in n.to_dict("records")}
    changes = []
    for key in kb.keys() & kn.keys():
        rb, rn = kb[key], kn[key]
        ratio = rn["value"] / rb["value"] if rb["value"] > 0 else math.inf
        samples = _samples(rb), _samples(rn)
        sig, test = _significant(rb, rn, *samples)
        if _contended(rb) or _contended(rn):
            kind, test = (
                "contended",
                "contended: " + " / ".join("yes" if _contended(r) else "no" for r in (rb, rn)),
            )
        elif sig and ratio > factor:
            kind = "regressed"
        elif sig and ratio < 1 / factor:
            kind = "improved"
        else:
            kind = "unchanged"
        counts = " / ".join(
            str(len(x) or r.get("repeat") or "?") for x, r in zip(samples, (rb, rn), strict=True)
        )
        changes.append(
            CaseChange(_case_name(rb), rb["value"], rn["value"], ratio, test, sig, kind, counts)
        )
    changes.sort(key=lambda c: c.case)
    comp = Comparison(
        changes,
        factor,
        only_base=sorted(_case_name(kb[k]) for k in kb.keys() - kn.keys()),
        only_new=sorted(_case_name(kn[k]) for k in kn.keys() - kb.keys()),
        base_label=base_label,
        new_label=new_label,
        counted=compare_counts(base, new, threshold=threshold),
        threshold=threshold,
    )
    pb, pn = set(b["platform"]), set(n["platform"])
    if pb != pn:
        comp.notes.append(
            f"BASE ran on {', '.join(sorted(pb))}; NEW on {', '.join(sorted(pn))}: the "
            "hardware differs too"
        )
    return comp


_HASH = re.compile(r"^[0-9a-fA-F]{4,40}$")


def resolve_asv_commit(results: str | Path, commit: str, machine: str | None = None) -> Path:
    """The asv result file of ``commit`` (a hash prefix, 4+ hex digits) under the asv
    results folder ``results`` (``.asv/results``), on ``machine`` if given. Raises
    :class:`InputError` when none or several files match."""
    results = Path(results)
    if not results.is_dir():
        raise InputError(results, "is not an asv results folder")
    if not _HASH.match(commit):
        raise InputError(results, f"{commit!r} is not a commit hash (4 to 40 hex digits)")
    machines = sorted(p.parent for p in results.glob("*/machine.json"))
    if machine is not None:
        machines = [m for m in machines if m.name == machine]
        if not machines:
            raise InputError(results, f"has no results of machine {machine!r}")
    found = []
    for m in machines:
        for f in sorted(m.glob(f"{commit[:8].lower()}*.json")):
            if f.name == "machine.json":
                continue
            found.append(f)
    if len(commit) > 8:  # file names carry 8 digits; check the full hash inside
        import json

        def full(p: Path) -> str:
            try:
                return str(json.loads(p.read_text(encoding="utf-8")).get("commit_hash", ""))
            except (OSError, ValueError):
                return ""

        found = [f for f in found if full(f).startswith(commit.lower())]
    if not found:
        where = f" on machine {machine!r}" if machine else ""
        raise InputError(results, f"no asv results of commit {commit}{where}")
    if len(found) > 1:
        names = ", ".join(str(f.relative_to(results)) for f in found)
        raise InputError(
            results,
            f"commit {commit} has {len(found)} result files ({names}): "
            "pick one with --machine, or pass the file",
        )
    return found[0]


def run_threads(machine: dict) -> int | None:
    """The torch threads a run timed with: its own ``--threads`` (``run.settings.threads``
    in machine.json), else the machine's default (``torch_threads``).

    >>> run_threads({"torch_threads": 2, "run": {"settings": {"threads": 1}}})
    1
    >>> run_threads({"torch_threads": 2, "run": {"settings": {"threads": None}}})
    2
    """
    settings = (machine.get("run") or {}).get("settings") or {}
    threads = settings.get("threads")
    return threads if isinstance(threads, int) else machine.get("torch_threads")


def _describe(source: Source) -> str:
    parts = [f"`{source.label}`", f"{source.path}"]
    if source.commit:
        parts.append(f"commit {source.commit}")
    if source.status and source.status != "complete":
        parts.append(f"run {source.status}")
    return ", ".join(parts)


def compare(
    base: str | Path,
    new: str | Path,
    *,
    factor: float = FACTOR,
    asv: str | Path | None = None,
    machine: str | None = None,
    threshold: float = COUNT_THRESHOLD,
) -> Comparison:
    """Load ``base`` and ``new`` (run folders, result tables, asv result files, or with
    ``asv`` commit hashes in that asv results folder) and compare them.

    Raises :class:`InputError` naming the file when an input is unusable or the two
    have no timed case in common."""
    sides = []
    for spec in (base, new):
        path = resolve_asv_commit(asv, str(spec), machine) if asv is not None else Path(spec)
        source, df = load_one(path)
        sides.append((source, df))
    (sb, db), (sn, dn) = sides
    comp = compare_frames(
        db,
        dn,
        factor=factor,
        base_label=_describe(sb),
        new_label=_describe(sn),
        threshold=threshold,
    )
    if not comp.changes and not comp.counted:
        raise InputError(
            sn.path, f"has no timed case in common with {sb.path} (nothing to compare)"
        )
    for source in (sb, sn):
        if source.status in ("interrupted", "terminated"):
            comp.notes.append(f"{source.path}: the run was {source.status}; it is partial")
        threads = run_threads(source.machine)
        cpu = any(str(c.case).endswith(" cpu") for c in comp.changes)
        if source.kind in ("run", "table") and cpu and isinstance(threads, int) and threads > 1:
            comp.notes.append(
                f"{source.path}: timed with {threads} CPU threads; between two such runs a "
                "case's median shifts by more than the default factor covers (up to 2.1x in "
                "the calibration's A/A pairs, which needed --factor 2.5: "
                "results/detector.md): compare runs made with --threads 1"
            )
    return comp
