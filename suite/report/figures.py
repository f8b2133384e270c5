"""The report's figures, drawn with seaborn into PNG files (matplotlib's Agg backend).

Each ``plot_*`` function takes a frame from :mod:`suite.report.analysis` and a path,
writes the PNG and returns a :class:`Drawn` (the path and the panels left out for want of
data), or ``None`` when there is nothing to draw. Every method has its own colour and its
own marker, the same in every figure (:func:`method_styles`), ranks the same line style;
platforms are columns, so CPU and GPU panels sit side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..measure.methods import METHODS
from . import label_order, parse_series_label

__all__ = [
    "COLOURS",
    "MARKERS",
    "Drawn",
    "label_colors",
    "label_styles",
    "method_styles",
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


COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#0804f9", "#ff08e8", "#0b4008", "#0165fc", "#ffb07c", "#ff0789",
    "#886806", "#8fb67b", "#0add08", "#750851", "#0504aa", "#fdb0c0", "#a00498", "#04d8b2",
)  # fmt: skip
"""Method colours: matplotlib's tab10, then 14 colours each picked (from the xkcd colour
names) as far as possible from all before it in CIELAB, skipping the too light and too
dark; no two are closer than a colour difference of 27 (CIE76)."""

_SHAPES = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h")
MARKERS = tuple((shape, True) for shape in _SHAPES) + tuple((shape, False) for shape in _SHAPES)
"""Method markers: ``(shape, filled)``, the twelve shapes filled, then hollow."""

DASHES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 3)))
"""Line styles of the ``style`` variable (projUNN's ranks, dtypes, sizes), in order."""


@dataclass(frozen=True)
class Style:
    """How a method is drawn: ``colour`` (hex), matplotlib ``marker`` and whether it is
    ``filled``."""

    colour: str
    marker: str
    filled: bool


def method_styles(methods) -> dict[str, Style]:
    """Each method's colour and marker, distinct for up to 24 methods and the same in every
    figure: the registry's methods first (CUDA-graph replays after the eager ones), then
    the names it does not know (the LSTM reference, a plug-in not loaded here), sorted,
    after them (so those depend on which unknown names are drawn together). Past 24 the
    colours repeat with another marker.

    >>> s = method_styles(["svd", "projunn_t", "my_plugin"])
    >>> list(s), s["projunn_t"]
    (['projunn_t', 'svd', 'my_plugin'], Style(colour='#1f77b4', marker='o', filled=True))
    >>> method_styles(["svd"])["svd"] == s["svd"]
    True
    """
    names = set(methods)
    known = [m for m in METHODS if not METHODS[m].graphed]
    known += [m for m in METHODS if METHODS[m].graphed]
    order = known + sorted(names - set(METHODS))
    styles = {}
    for i, m in enumerate(order):
        marker, filled = MARKERS[(i + i // len(COLOURS)) % len(MARKERS)]
        styles[m] = Style(COLOURS[i % len(COLOURS)], marker, filled)
    drawn = [m for m in METHODS if m in names] + sorted(names - set(METHODS))
    return {m: styles[m] for m in drawn}


def _palette(methods) -> dict[str, tuple]:
    """One colour per method (RGB), as :func:`method_styles` assigns them."""
    from matplotlib.colors import to_rgb

    return {m: to_rgb(style.colour) for m, style in method_styles(methods).items()}


def label_colors(labels) -> dict[str, tuple]:
    """Each method label (``"projunn_t-k4"``, ``"svd [height=8;width=8]"``) in the colour of
    its method, the same in the report and in the task figures."""
    labels = sorted(set(labels))
    methods = {lab: parse_series_label(lab)[0] for lab in labels}
    colors = _palette(methods.values())
    return {lab: colors[m] for lab, m in methods.items()}


def label_styles(labels) -> dict[str, Style]:
    """Each method label's :class:`Style` (its method's), in :func:`label_order`."""
    labels = sorted(set(labels), key=label_order)
    methods = {lab: parse_series_label(lab)[0] for lab in labels}
    styles = method_styles(methods.values())
    return {lab: styles[m] for lab, m in methods.items()}


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


@dataclass(frozen=True)
class Drawn:
    """A figure written to ``path``; ``left_out``: its panels without data, as
    ``"complex64 on GPU: NVIDIA H100"``, left out of the grid (the report says so in
    one line)."""

    path: Path
    left_out: tuple[str, ...] = ()


def _panel_grid(df, row: str):
    """The panels of ``df``: row values and platforms (sorted), and the (row, platform)
    pairs that have data."""
    rows = sorted(df[row].unique())
    cols = sorted(df["platform"].unique())
    full = {(r, c) for r, c in zip(df[row], df["platform"], strict=True)}
    return rows, cols, full


def _facets(
    df,
    x: str,
    y: str,
    path: Path,
    *,
    hue: str,
    styles: dict[str, Style],
    style: str,
    style_order,
    row: str,
    xlabel: str,
    ylabel: str,
    hline: float | None = None,
) -> Drawn:
    """Log-log lines of ``y`` vs ``x`` in a grid: columns = platforms (side by side), rows
    = ``row``; colour and marker = ``hue`` (``styles``), line style = ``style``. A
    panel without data is left out (an empty place in the grid), and named in the
    returned :class:`Drawn`; one line per series (``label`` when present), one point per
    case (nothing is averaged)."""
    plt, _ = _libs()
    from matplotlib.lines import Line2D

    rows, cols, full = _panel_grid(df, row)
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(4.4 * len(cols), 3.5 * len(rows)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    dashes = {v: DASHES[i % len(DASHES)] for i, v in enumerate(style_order)}
    series = [hue, style] + (["label"] if "label" in df and "label" not in (hue, style) else [])
    left_out = []
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            if (r, c) not in full:
                left_out.append(f"{r} on {c}")
                ax.set_visible(False)
                continue
            panel = df[(df[row] == r) & (df["platform"] == c)]
            for key, line in panel.groupby(series, sort=False):
                line = line.sort_values(x)
                st = styles[key[0]]
                ax.plot(
                    line[x],
                    line[y],
                    color=st.colour,
                    marker=st.marker,
                    markerfacecolor=st.colour if st.filled else "white",
                    markersize=6,
                    linestyle=dashes[key[1]],
                    linewidth=1.5,
                )
            if hline is not None:
                ax.axhline(hline, ls=":", color="black", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{c}\n{r}")
            below = any((rr, c) in full for rr in rows[i + 1 :])
            left = any((r, cc) in full for cc in cols[:j])
            ax.tick_params(labelbottom=True, labelleft=not left)
            ax.set_xlabel("" if below else xlabel)
            ax.set_ylabel("" if left else ylabel)
    drawn = set(df[hue])
    handles = [Line2D([], [], color="none", label=hue)]
    for name, st in styles.items():
        if name in drawn:
            face = st.colour if st.filled else "white"
            handles.append(
                Line2D([], [], color=st.colour, marker=st.marker, markerfacecolor=face, label=name)
            )
    present = set(df[style])
    handles.append(Line2D([], [], color="none", label=style))
    handles += [
        Line2D([], [], color="black", linestyle=dashes[v], label=str(v))
        for v in style_order
        if v in present
    ]
    fig.tight_layout()
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return Drawn(_save(fig, path), tuple(left_out))


def _method_lines(df, x: str, y: str, path: Path, *, row: str, xlabel: str, ylabel: str):
    """:func:`_facets` with a colour and marker per method and a line style per rank."""
    if df.empty:
        return None
    df = _rank_column(df)
    return _facets(
        df,
        x,
        y,
        path,
        hue="method",
        styles=method_styles(df["method"]),
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
    return _facets(
        df,
        "n",
        "speedup",
        path,
        hue="baseline",
        styles=label_styles(df["baseline"]),
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
    return _facets(
        df,
        "k",
        "distance",
        path,
        hue="method",
        styles=method_styles(df["method"]),
        style="size",
        style_order=[f"N={n}" for n in sorted(dist["n"].unique())],
        row="panel",
        xlabel="rank k",
        ylabel="‖A_k − A_exact‖ / ‖A_exact − A₀‖",
    )
