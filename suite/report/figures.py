"""The report's figures, drawn with seaborn into PNG files (matplotlib's Agg backend).

Each ``plot_*`` function takes a frame from :mod:`suite.report.analysis` and a path,
writes the PNG and returns the path, or returns ``None`` when there is nothing to draw.
Methods keep the same colour in every figure (registry order), ranks the same line
style; platforms are columns, so CPU and GPU panels sit side by side.
"""

from __future__ import annotations

from pathlib import Path

from ..measure.methods import METHODS
from . import label_order, parse_series_label

__all__ = [
    "plot_distance",
    "plot_exponents",
    "plot_memory",
    "plot_speedups",
    "plot_times",
    "plot_unitarity",
]

DPI = 110


def _libs():
    """matplotlib (Agg backend, no display needed) and seaborn, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    return plt, sns


def _palette(methods) -> dict[str, tuple]:
    """One colour per method, the same in every figure: the registry's methods take
    tab10's ten colours in order (then Dark2's: the peers), a CUDA-graph method the
    lighter shade of its eager method, and names the registry does not know (the LSTM
    reference) black to dark grey."""
    _, sns = _libs()
    own = [m for m in METHODS if not METHODS[m].graphed]
    colours = sns.color_palette("tab10") + sns.color_palette("Dark2")  # 18 distinct
    fixed = dict(zip(own, colours, strict=False))
    for name, spec in METHODS.items():
        eager = name.removesuffix("_graphed")
        if spec.graphed and eager in fixed:
            fixed[name] = tuple(0.55 * c + 0.45 for c in fixed[eager])
    order = [m for m in METHODS if m in set(methods)] + sorted(set(methods) - set(METHODS))
    unknown = [m for m in order if m not in fixed]  # references such as lstm: dark greys
    greys = [(g, g, g) for g in (0.35 * i / max(1, len(unknown) - 1) for i in range(len(unknown)))]
    fixed.update(zip(unknown, greys, strict=True))
    return {m: fixed[m] for m in order}


def label_colors(labels) -> dict[str, tuple]:
    """Each method label (``"projunn_t-k4"``, ``"svd [height=8;width=8]"``) in the colour of
    its method, the same in the report and in the task figures."""
    labels = sorted(set(labels))
    methods = {lab: parse_series_label(lab)[0] for lab in labels}
    colors = _palette(methods.values())
    return {lab: colors[m] for lab, m in methods.items()}


def _rank_column(df):
    """``rank`` as text (``k=4``; ``-`` for unranked methods), ordered by k."""
    k = df["k"].astype("Int64")
    return df.assign(
        rank=["-" if missing else f"k={v}" for v, missing in zip(k, k.isna(), strict=True)]
    )


def _rank_order(df) -> list[str]:
    ks = sorted({int(k) for k in df["k"].dropna()})
    return ["-"] + [f"k={k}" for k in ks] if (df["k"].isna()).any() else [f"k={k}" for k in ks]


def _save(grid_or_fig, path: Path) -> Path:
    plt, _ = _libs()
    fig = getattr(grid_or_fig, "figure", grid_or_fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def _mark_empty(grid, df, row: str) -> None:
    """Write "not measured" into the panels that have no data."""
    for (row_name, col_name), ax in grid.axes_dict.items():
        if df[(df["platform"] == col_name) & (df[row] == row_name)].empty:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)


def _facets(
    df,
    x: str,
    y: str,
    path: Path,
    *,
    hue: str,
    hue_order,
    palette,
    style: str,
    style_order,
    row: str,
    xlabel: str,
    ylabel: str,
    hline: float | None = None,
):
    """Log-log lines of ``y`` vs ``x`` in a grid: columns = platforms (side by side), rows
    = ``row``; colour = ``hue``, line style and marker = ``style``."""
    _, sns = _libs()
    g = sns.relplot(
        data=df,
        x=x,
        y=y,
        hue=hue,
        hue_order=hue_order,
        palette=palette,
        style=style,
        style_order=style_order,
        col="platform",
        col_order=sorted(df["platform"].unique()),
        row=row,
        row_order=sorted(df[row].unique()),
        units="label" if "label" in df else None,  # one line per series, options apart
        kind="line",
        estimator=None,  # one point per case: nothing is averaged behind the reader's back
        markers=True,
        dashes=True,
        height=3.5,
        aspect=1.25,
    )
    g.set(xscale="log", yscale="log")
    if hline is not None:
        for ax in g.axes.flat:
            ax.axhline(hline, ls=":", color="black", lw=1)
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles("{col_name}\n{row_name}")
    g.tight_layout()  # room for the two-line titles
    _mark_empty(g, df, row)
    return _save(g, path)


def _method_lines(df, x: str, y: str, path: Path, *, row: str, xlabel: str, ylabel: str):
    """:func:`_facets` with a colour per method and a line style per rank."""
    if df.empty:
        return None
    df = _rank_column(df)
    palette = _palette(df["method"])
    return _facets(
        df,
        x,
        y,
        path,
        hue="method",
        hue_order=list(palette),
        palette=palette,
        style="rank",
        style_order=_rank_order(df),
        row=row,
        xlabel=xlabel,
        ylabel=ylabel,
    )


def plot_times(times, workload: str, path: Path):
    """Figure 1: median time vs N (log-log) of one workload, a line per method and rank."""
    df = times[times["workload"] == workload]
    return _method_lines(
        df, "n", "seconds", path, row="dtype", xlabel="N", ylabel="time per call [s]"
    )


def plot_exponents(exps, path: Path):
    """Figure 2: fitted exponent ± standard error per method, one panel per platform,
    workload/dtype as colours; dashed lines at 2 (O(kN^2)) and 3 (O(N^3))."""
    if exps.empty:
        return None
    plt, sns = _libs()
    platforms = sorted(exps["platform"].unique())
    labels = sorted(exps["label"].unique(), key=label_order)
    series = sorted({(w, d) for w, d in zip(exps["workload"], exps["dtype"], strict=True)})
    colors = dict(zip(series, sns.color_palette("Set2", len(series)), strict=True))
    fig, axes = plt.subplots(
        1,
        len(platforms),
        figsize=(5.5 * len(platforms), 0.32 * len(labels) + 1.8),
        sharey=True,
        squeeze=False,
    )
    width = 0.7 / max(len(series), 1)
    for ax, platform in zip(axes[0], platforms, strict=True):
        sub = exps[exps["platform"] == platform]
        for j, s in enumerate(series):
            part = sub[(sub["workload"] == s[0]) & (sub["dtype"] == s[1])]
            ys = [labels.index(lab) - 0.35 + width * (j + 0.5) for lab in part["label"]]
            ax.errorbar(
                part["exponent"],
                ys,
                xerr=part["se"].fillna(0),
                fmt="o",
                ms=4,
                color=colors[s],
                label=f"{s[0]}, {s[1]}",
            )
        for ref in (2, 3):
            ax.axvline(ref, ls="--", lw=1, color="grey")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(platform)
        ax.set_xlabel("exponent p in time ∝ N^p")
    axes[0][0].invert_yaxis()  # registry order from the top (the axes share y: once)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_speedups(best, workload: str, path: Path):
    """Figure 3: speed-up of projUNN-T and -D (fastest rank at each N) over each
    baseline vs N; above the dotted line at 1 projUNN is faster."""
    df = best[best["workload"] == workload]
    if df.empty:
        return None
    df = df.assign(variant=[f"{v} (fastest k)" for v in df["variant"]])
    palette = label_colors(df["baseline"])
    return _facets(
        df,
        "n",
        "speedup",
        path,
        hue="baseline",
        palette=palette,
        hue_order=sorted(palette, key=label_order),
        style="dtype",
        style_order=sorted(df["dtype"].unique()),
        row="variant",
        xlabel="N",
        ylabel="baseline time / projUNN time",
        hline=1,
    )


def plot_memory(mem, workload: str, path: Path):
    """Figure 4: peak memory vs N (host RSS of the process; CUDA peak allocated)."""
    df = mem[mem["workload"] == workload]
    df = df.assign(MiB=df["bytes"] / 2**20, panel=df["metric"] + ", " + df["dtype"])
    return _method_lines(df, "n", "MiB", path, row="panel", xlabel="N", ylabel="peak memory [MiB]")


def plot_unitarity(unit, path: Path):
    """Figure 5a: unitarity error after the most training steps measured, vs N."""
    if unit.empty:
        return None
    most = unit.groupby(["platform", "workload", "dtype", "label", "n"])["steps"].transform("max")
    last = unit[(unit["steps"] == most) & (unit["error"] > 0)]
    last = last.assign(panel=last["workload"] + ", " + last["dtype"])
    return _method_lines(
        last, "n", "error", path, row="panel", xlabel="N", ylabel="||WᴴW − I||_F / √N"
    )


def plot_distance(dist, path: Path):
    """Figure 5b: dist_to_exact of the rank-k step vs k, a line per method and N."""
    if dist.empty:
        return None
    df = dist.assign(
        size=[f"N={n}" for n in dist["n"]], panel=dist["workload"] + ", " + dist["dtype"]
    )
    palette = _palette(df["method"])
    return _facets(
        df,
        "k",
        "distance",
        path,
        hue="method",
        hue_order=list(palette),
        palette=palette,
        style="size",
        style_order=[f"N={n}" for n in sorted(dist["n"].unique())],
        row="panel",
        xlabel="rank k",
        ylabel="‖A_k − A_exact‖ / ‖A_exact − A₀‖",
    )
