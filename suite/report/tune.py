"""The time-to-result report of a ``projunn-bench tune`` folder: the time-to-target
table, the performance profile and the learning curves against wall time.

A tune folder holds ``time_to_target.csv`` (one row per preset, method and seed at the
method's chosen lr) and ``trials.csv`` (every trial's rows, :class:`suite.measure.rows.Row`
columns). :func:`profile` computes the performance profile (Dolan & Moré 2002, as AlgoPerf
uses it): a *problem* is one (preset, hidden size, seed); method m's ratio on problem p
is ``t(m, p) / min over methods of t(·, p)`` (``inf`` where m did not reach the target:
a miss is never a time) and ``rho_m(tau)`` is the share of problems with ratio ``<= tau``.
:func:`plot_vs_n` draws the time to target against the hidden size N.

>>> rows = [dict(preset="copy-quick", seed=s, method=m, reached=r, time_to_target_s=t)
...         for s, m, r, t in [(0, "a", True, 1.0), (0, "b", True, 2.0),
...                            (1, "a", False, 9.0), (1, "b", True, 3.0)]]
>>> curves = profile(rows)
>>> curves["a"], curves["b"]
([(1.0, 0.5)], [(1.0, 0.5), (2.0, 1.0)])
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..measure.output import atomic_write
from .render import Heading, Table, Text

__all__ = [
    "TABLE",
    "TRIALS",
    "is_tune_folder",
    "plot_profile",
    "plot_vs_n",
    "plot_wall_curves",
    "profile",
    "read_table",
    "section",
    "summary_table",
    "vs_n_points",
]

TABLE = "time_to_target.csv"
TRIALS = "trials.csv"
VS_N = "time_to_target_vs_n.png"
COLUMNS = (
    "preset",
    "task",
    "hidden",
    "target",
    "method",
    "optimizer",
    "lr",
    "seed",
    "reached",
    "time_to_target_s",
    "steps_to_target",
    "final_metric",
    "train_time_s",
    "stopped",
    "trials_reached",
    "trials",
    "budget_steps",
    "time_budget_s",
    "status",
)
"""The columns of ``time_to_target.csv`` (``time_to_target_s`` is empty where the target
was not reached; ``stopped``: target, steps, time or error)."""


def is_tune_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``projunn-bench tune``."""
    return (Path(path) / TABLE).is_file()


def _truth(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def read_table(folder: Path) -> list[dict[str, Any]]:
    """The rows of ``folder/time_to_target.csv`` with numbers and booleans parsed (a
    target not reached: ``time_to_target_s`` is ``inf``, also in folders written before
    misses were left empty; no ``hidden`` column: ``None``)."""
    with open(Path(folder) / TABLE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        d: dict[str, Any] = dict(r)
        d["reached"] = _truth(r["reached"])
        for key in ("lr", "time_to_target_s", "final_metric", "train_time_s", "time_budget_s"):
            d[key] = float(r[key]) if r.get(key) not in (None, "") else None
        for key in ("seed", "hidden", "steps_to_target", "trials_reached", "trials",
                    "budget_steps"):  # fmt: skip
            d[key] = int(float(r[key])) if r.get(key) not in (None, "") else None
        if not d["reached"] or d["time_to_target_s"] is None:
            d["time_to_target_s"] = math.inf
        out.append(d)
    return out


def write_table(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Atomically write ``rows`` as ``time_to_target.csv`` (:data:`COLUMNS`)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    data = text.getvalue().encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def profile(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per method, the steps of its performance profile: ``(tau, share of problems
    solved within tau x the fastest time)`` at each tau where the share grows. A problem
    no method solves counts in the denominator and for no method."""
    rows = list(rows)
    problems: dict[tuple, dict[str, float]] = {}
    for r in rows:
        t = float(r["time_to_target_s"]) if r["reached"] else math.inf
        problems.setdefault((r["preset"], r.get("hidden"), r["seed"]), {})[r["method"]] = t
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    for times in problems.values():
        best = min(times.values())
        for m in methods:
            t = times.get(m, math.inf)
            ratios[m].append(max(1.0, t / max(best, 1e-12)) if math.isfinite(t) else math.inf)
    total = len(problems)
    out = {}
    for m, rs in ratios.items():
        finite = sorted(r for r in rs if math.isfinite(r))
        steps = []
        for i, tau in enumerate(finite):
            share = (i + 1) / total
            if steps and steps[-1][0] == tau:
                steps[-1] = (tau, share)
            else:
                steps.append((tau, share))
        out[m] = steps
    return out


def _libs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    """Each method in its report colour unless two share one, then a husl palette."""
    _, sns = _libs()
    from .figures import label_colors

    colors = label_colors(labels)
    if len({colors[lab] for lab in labels}) == len(labels):
        return {lab: colors[lab] for lab in labels}
    return dict(zip(labels, sns.color_palette("husl", n_colors=len(labels)), strict=True))


MISS = r"$\Uparrow$"
"""The marker of a miss drawn at the budget: no method's marker (:data:`.figures.MARKERS`)."""


def _markers(labels: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """Each method label's report marker ``(shape, filled)``: with its colour, distinct."""
    from .figures import label_styles

    styles = label_styles(labels)
    return {lab: (styles[lab].marker, styles[lab].filled) for lab in labels}


def _save(fig, path: Path) -> Path:
    plt, _ = _libs()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return path


_STYLES = ("-", "--", "-.", ":")


def plot_profile(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """The performance-profile figure of ``rows`` (``time_to_target.csv`` rows) into
    ``path``; ``None`` without rows."""
    if not rows:
        return None
    plt, _ = _libs()
    curves = profile(rows)
    labels = list(curves)
    colors = _colors(labels)
    top = max([tau for steps in curves.values() for tau, _ in steps] + [1.0])
    right = max(2.0, top * 1.5)
    problems = len({(r["preset"], r.get("hidden"), r["seed"]) for r in rows})
    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    for i, m in enumerate(labels):
        xs, ys = [1.0], [0.0]
        for tau, share in curves[m]:
            xs += [tau, tau]
            ys += [ys[-1], share]
        xs.append(right)
        ys.append(ys[-1])
        ax.plot(xs, ys, color=colors[m], ls=_STYLES[i % len(_STYLES)], lw=1.6, label=m)
    ax.set_xscale("log")
    ax.set(
        xlim=(1.0, right),
        ylim=(-0.02, 1.02),
        xlabel="τ (time to target / fastest method's time on the problem)",
        ylabel="share of problems solved within τ",
        title=f"Performance profile: {problems} problems (preset × N × seed; a miss: ∞)",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return _save(fig, path)


def plot_wall_curves(
    curves: Sequence[Mapping[str, Any]],
    targets: Mapping[str, tuple[str, float]],
    path: Path,
    order: Sequence[str] = (),
) -> Path | None:
    """Learning curves against training seconds: one panel per preset and hidden size, a
    line per method (legend in ``order``, then the others) and seed (``curves``: dicts
    with ``preset``, ``hidden`` (optional), ``method``, ``seed``, ``wall_time``,
    ``value``), the target (``targets[preset] = (metric, value)``) dashed."""
    panels = list(dict.fromkeys((c["preset"], c.get("hidden")) for c in curves))
    if not panels:
        return None
    plt, _ = _libs()
    labels = list(dict.fromkeys([*order, *(c["method"] for c in curves)]))
    labels = [lab for lab in labels if any(c["method"] == lab for c in curves)]
    colors = _colors(labels)
    columns = min(len(panels), 3)
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(6.5 * columns, 4.6 * lines), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (preset, hidden) in zip(axes.flat, panels, strict=False):
        metric, value = targets[preset]
        for i, m in enumerate(labels):
            series: dict[int, list[tuple[float, float]]] = {}
            for c in curves:
                here = c["preset"] == preset and c.get("hidden") == hidden
                if here and c["method"] == m and c["value"] is not None:
                    series.setdefault(c["seed"], []).append((c["wall_time"], c["value"]))
            for j, (_, pts) in enumerate(sorted(series.items())):
                pts.sort()
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    color=colors[m],
                    ls=_STYLES[i % len(_STYLES)],
                    lw=1.3,
                    alpha=1.0 if j == 0 else 0.55,
                    label=m if j == 0 else None,
                )
        ax.axhline(value, color="0.3", ls="--", lw=1)
        where = preset if hidden is None else f"{preset}, N = {hidden}"
        ax.set(xlabel="training time [s]", ylabel=metric, title=f"{where} (target dashed)")
        if metric.endswith("loss"):
            ax.set_yscale("log")
    axes[0][columns - 1].legend(
        loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8
    )
    fig.suptitle("Learning curves at each method's chosen lr (one line per seed)")
    return _save(fig, path)


def vs_n_points(
    rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str], list[tuple[int, float, bool]]]:
    """Per ``(preset, method)``, ``(N, seconds, missed)`` at each hidden size N of
    ``rows`` (``time_to_target.csv`` rows), N ascending: the median time to target over
    the seeds, a miss counting as infinite. Where the median is a miss, ``seconds`` is
    where it is drawn: at the budget (``time_budget_s``, else the longest training time
    of its seeds: the step budget's) and ``missed`` is true. Rows without ``hidden``
    are left out.

    >>> rows = [dict(preset="p", hidden=n, method="m", seed=s, reached=r, time_to_target_s=t,
    ...              time_budget_s=20.0, train_time_s=t if r else 21.0)
    ...         for n, s, r, t in [(64, 0, True, 1.0), (64, 1, True, 3.0),
    ...                            (512, 0, True, 9.0), (512, 1, False, math.inf)]]
    >>> vs_n_points(rows)
    {('p', 'm'): [(64, 2.0, False), (512, 20.0, True)]}
    """
    from statistics import median

    groups: dict[tuple[str, str], dict[int, list[Mapping[str, Any]]]] = {}
    for r in rows:
        if r.get("hidden") is None:
            continue
        per = groups.setdefault((r["preset"], r["method"]), {})
        per.setdefault(int(r["hidden"]), []).append(r)
    out = {}
    for key, sizes in groups.items():
        points = []
        for n, rs in sorted(sizes.items()):
            times = [float(r["time_to_target_s"]) if r["reached"] else math.inf for r in rs]
            seconds = median(times)
            if math.isfinite(seconds):
                points.append((n, seconds, False))
                continue
            budget = rs[0].get("time_budget_s")
            if not budget:
                spent = [float(r["train_time_s"]) for r in rs if r.get("train_time_s")]
                budget = max(spent, default=None)
            if budget:
                points.append((n, float(budget), True))
        out[key] = points
    return out


def plot_vs_n(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """``time_to_target_vs_n.png``: the median time to target against the hidden size N,
    log-log, one panel per preset and a line per method; a miss is drawn at the budget
    as an arrow ⇑ in its colour (the time budget dotted). ``None`` unless some preset
    has two or more N."""
    points = vs_n_points(rows)
    presets = [
        p
        for p in dict.fromkeys(p for p, _ in points)
        if len({n for (q, _), pts in points.items() if q == p for n, _, _ in pts}) > 1
    ]
    if not presets:
        return None
    plt, _ = _libs()
    from matplotlib import ticker

    labels = list(dict.fromkeys(m for p, m in points if p in presets))
    colors = _colors(labels)
    markers = _markers(labels)
    # misses at one N sit side by side (a factor apart on the log axis), not on top
    spread: dict[tuple[str, int, str], float] = {}
    for p in presets:
        for n in {n for (q, _), pts in points.items() if q == p for n, _, _ in pts}:
            missed = [m for m in labels if any(k == n and x for k, _, x in points.get((p, m), []))]
            for j, m in enumerate(missed):
                spread[p, n, m] = 1.05 ** (j - (len(missed) - 1) / 2)
    fig, axes = plt.subplots(
        1, len(presets), figsize=(6.5 * len(presets) + 2.5, 4.8), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    for ax, preset in zip(axes[0], presets, strict=True):
        sizes: set[int] = set()
        for i, m in enumerate(labels):
            pts = points.get((preset, m), [])
            if not pts:
                continue
            sizes.update(n for n, _, _ in pts)
            shape, filled = markers[m]
            ax.plot([n for n, _, _ in pts], [y for _, y, _ in pts], color=colors[m],
                    ls=_STYLES[i % len(_STYLES)], lw=1.5, marker=shape, ms=6,
                    mfc=colors[m] if filled else "white", label=m,
                    markevery=[j for j, (_, _, missed) in enumerate(pts) if not missed],
                    )  # fmt: skip
            misses = [(n * spread[preset, n, m], y) for n, y, missed in pts if missed]
            if misses:
                ax.scatter([n for n, _ in misses], [y for _, y in misses], marker=MISS,
                           s=170, color=colors[m], zorder=5)  # fmt: skip
        budgets = {r.get("time_budget_s") for r in rows if r["preset"] == preset}
        budgets.discard(None)
        xs = sorted(sizes)  # the label sits in the widest gap between two N, off the misses
        middle = max(zip(xs[:-1], xs[1:], strict=True), key=lambda ab: ab[1] / ab[0])
        for b in budgets:
            ax.axhline(b, color="0.4", ls=":", lw=1)
            ax.text(math.sqrt(middle[0] * middle[1]), b, f"time budget {b:g} s",
                    ha="center", va="bottom", fontsize=8, color="0.3")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(n) for n in xs])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        target = next((r["target"] for r in rows if r["preset"] == preset), "")
        ax.set(xlabel="hidden size N", ylabel="median time to target [s]",
               title=f"{preset}: {target}")  # fmt: skip
    ax = axes[0][-1]
    ax.scatter([], [], marker=MISS, s=170, color="black",
               label="not reached (drawn at the budget)")  # fmt: skip
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    fig.suptitle("Time to target against N (median over seeds, chosen lr)")
    return _save(fig, path)


def read_curves(folder: Path, table: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The target-metric curves (against training seconds) of the chosen trials in
    ``table``, read from ``folder/trials.csv``."""
    chosen = {
        (r["preset"], r.get("hidden"), r["method"], r["seed"], f"{r['lr']:.6g}") for r in table
    }
    sized = any(r.get("hidden") is not None for r in table)
    metric = {r["preset"]: _target_metric(r["target"]) for r in table}
    points: dict[tuple, dict[str, Any]] = {}
    path = Path(folder) / TRIALS
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            opts = dict(kv.split("=", 1) for kv in r["options"].split(";") if "=" in kv)
            label = r["method"] if not r.get("k") else f"{r['method']}-k{int(float(r['k']))}"
            hidden = int(float(r["n"])) if sized else None
            key = (opts.get("preset"), hidden, label, int(opts.get("seed", -1)), opts.get("lr"))
            if key not in chosen or r.get("step") in (None, ""):
                continue
            point = points.setdefault((*key, int(float(r["step"]))), {})
            point.update(preset=key[0], hidden=hidden, method=label, seed=key[3])
            if r["metric"] == "wall_time":
                point["wall_time"] = float(r["value"])
            elif r["metric"] == metric[key[0]]:
                point["value"] = float(r["value"]) if r["value"] not in ("", None) else None
    return [p for p in points.values() if "wall_time" in p and "value" in p]


def _target_metric(target: str) -> str:
    return target.split()[0]


def _target_value(target: str) -> float:
    return float(target.split()[-1])


def summary_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """Per preset, hidden size N and method: the chosen lr, the seeds that reached the
    target, the median time (a miss counts as infinite: :func:`reach_text`) and steps to
    target over the seeds, trials that reached."""
    from statistics import median

    from .render import fmt_number

    groups: dict[tuple[str, Any, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r.get("hidden"), r["method"]), []).append(r)
    out = []
    for (preset, hidden, method), rs in groups.items():
        steps = [r["steps_to_target"] for r in rs if r["reached"]]
        times = [r["time_to_target_s"] if r["reached"] else math.inf for r in rs]
        out.append(
            [
                preset,
                "" if hidden is None else str(hidden),
                method,
                rs[0]["optimizer"],
                f"{rs[0]['lr']:.3g}",
                f"{sum(r['reached'] for r in rs)}/{len(rs)}",
                reach_text(median(times), rs[0].get("time_budget_s")),
                str(int(median(steps))) if steps else "–",
                fmt_number(median(r["final_metric"] for r in rs if r["final_metric"] is not None))
                if any(r["final_metric"] is not None for r in rs)
                else "–",
                f"{rs[0]['trials_reached']}/{rs[0]['trials']}",
            ]
        )
    columns = [
        "preset",
        "N",
        "method",
        "optimizer",
        "chosen lr",
        "seeds reached",
        "median time to target",
        "median steps",
        "median final metric",
        "trials reached",
    ]
    return Table(columns, out)


def reach_text(seconds: float | None, budget: float | None = None) -> str:
    """A time to target for a table: a miss (``inf``, ``None``) is ``> budget`` (the time
    budget per trial, when there is one) or ``–``, never a time.

    >>> reach_text(1.5), reach_text(math.inf, 20.0), reach_text(math.inf), reach_text(None)
    ('1.50 s', '> 20 s', '–', '–')
    """
    from .render import fmt_seconds

    if seconds is None or not math.isfinite(seconds):
        return f"> {budget:g} s" if budget else "–"
    return fmt_seconds(seconds)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``time_to_target.md``: the summary table, then every row."""
    from .render import markdown

    targets = sorted({(r["preset"], r["target"]) for r in rows})
    blocks = [
        Text(
            "Targets: "
            + "; ".join(f"{p}: {t}" for p, t in targets)
            + ". Time is training wall time (evaluation excluded); a seed that misses the "
            "target (its step or time budget ran out) is not reached: `> budget` or `–`, "
            "infinite in the median and the performance profile. Trials reached: of every "
            "lr point and seed."
        ),
        summary_table(rows),
        Heading("Every method and seed at the chosen lr", 3),
        Table(
            list(COLUMNS),
            [["" if r.get(c) is None else str(r.get(c)) for c in COLUMNS] for r in rows],
        ),
    ]
    return markdown(blocks, "Time to target")


def section(doc, loaded) -> None:
    """The report section of every tune folder among ``loaded``'s sources (nothing when
    there is none): table, performance profile and wall-time learning curves."""
    folders = list(dict.fromkeys(s.path for s in loaded.sources if is_tune_folder(s.path)))
    for i, folder in enumerate(folders):
        rows = read_table(folder)
        if not rows:
            continue
        doc.add(
            Heading(f"Time to target ({folder.name})"),
            Text(
                "`projunn-bench tune`: every method with the same tuning budget (the same "
                "quasi-random learning rates of its optimizer family, the same seeds); per "
                "method the chosen lr is the one with the most seeds reaching the target, "
                "then the smallest mean time to target (a run that does not reach it counts "
                "as its whole budget). Time is training wall time, evaluation excluded. "
                "The `results.csv` curves of this folder are the first seed's."
            ),
            summary_table(rows),
        )
        stem = f"fig7_tune_{i}" if len(folders) > 1 else "fig7_tune"
        doc.figure(
            plot_profile(rows, doc.folder / f"{stem}_profile.png"),
            "Performance profile: share of (preset, seed) problems a method solves within "
            "τ × the fastest method's time.",
        )
        targets = {
            r["preset"]: (_target_metric(r["target"]), _target_value(r["target"])) for r in rows
        }
        order = [r["method"] for r in rows]
        doc.figure(
            plot_wall_curves(
                read_curves(folder, rows), targets, doc.folder / f"{stem}_wall.png", order
            ),
            "The target metric against training seconds at each method's chosen lr.",
        )
        doc.figure(
            plot_vs_n(rows, doc.folder / f"{stem}_vs_n.png"),
            "Time to target against the hidden size N (log-log, median over seeds); a "
            "miss (⇑) is drawn at the budget.",
        )


def figures(folder: Path) -> list[Path]:
    """Draw ``performance_profile.png``, ``learning_curves.png`` and (two or more hidden
    sizes) ``time_to_target_vs_n.png`` into a tune folder."""
    rows = read_table(folder)
    targets = {r["preset"]: (_target_metric(r["target"]), _target_value(r["target"])) for r in rows}
    drawn = [
        plot_profile(rows, Path(folder) / "performance_profile.png"),
        plot_wall_curves(
            read_curves(folder, rows),
            targets,
            Path(folder) / "learning_curves.png",
            [r["method"] for r in rows],
        ),
        plot_vs_n(rows, Path(folder) / VS_N),
    ]
    return [p for p in drawn if p is not None]
