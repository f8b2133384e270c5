"""The learning-curve figure of a task run: test loss (and test accuracy, when the task
has one) against training step and against training seconds, one line per method, the
no-memory baseline dashed. Needs the ``report`` extra (pandas, matplotlib, seaborn).

Redraw it from a run's table: ``python -m suite.report.curves RESULTS.csv OUT.png``.

>>> import tempfile, pathlib
>>> rows = [
...     {"workload": "copy", "method": m, "k": None, "metric": name, "value": v,
...      "step": s, "unit": ""}
...     for m in ("expm", "cayley") for s in (0, 10)
...     for name, v in (("test_loss", 1.0 / (s + 1)), ("wall_time", s / 10))
... ]
>>> out = pathlib.Path(tempfile.mkdtemp()) / "curves.png"
>>> learning_curves(rows, out) == out and out.stat().st_size > 0
True
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..measure.output import atomic_write
from . import series_label

__all__ = ["curve_table", "learning_curves", "main"]

PANELS = (("test_loss", "test loss"), ("test_accuracy", "test accuracy [%]"))


def curve_table(rows: Iterable[Mapping[str, Any]]):
    """A pandas DataFrame with one row per (method label, step): ``label``, ``step``,
    ``wall_time`` and one column per metric logged at that step."""
    import pandas as pd

    curves = [
        {
            "label": series_label(r["method"], r["k"]),
            "step": int(r["step"]),
            "metric": r["metric"],
            "value": float(r["value"]),
        }
        for r in rows
        if r.get("step") not in (None, "") and r.get("value") not in (None, "")
    ]
    if not curves:
        return pd.DataFrame(columns=["label", "step", "wall_time"])
    table = pd.DataFrame(curves).pivot_table(
        index=["label", "step"], columns="metric", values="value", aggfunc="last"
    )
    return table.reset_index()


def learning_curves(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Draw the figure of ``rows`` (results-table rows of one task run) into ``path``
    (PNG, written atomically); ``None`` (with a note on stderr) without the ``report``
    extra or without curve rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import seaborn as sns

        from .figures import label_colors
    except ImportError as e:
        print(f"no figure: {e.name} is not installed (pip install -e '.[report]')", file=sys.stderr)
        return None
    rows = list(rows)
    data = curve_table(rows)
    panels = [(m, name) for m, name in PANELS if m in data.columns]
    if not panels or "wall_time" not in data.columns:
        return None
    baselines = {
        r["metric"].replace("baseline_", "test_"): float(r["value"])
        for r in rows
        if str(r.get("metric", "")).startswith("baseline_") and r.get("value") not in (None, "")
    }
    task = next((r["workload"] for r in rows if r.get("workload")), "")
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(11, 3.6 * len(panels)), squeeze=False, constrained_layout=True
    )
    labels = sorted(data["label"].unique())
    colors = label_colors(labels)  # each method in its report colour ...
    if len(set(colors.values())) == len(labels):
        palette = [colors[label] for label in labels]
    else:  # ... unless several ranks of one method share it
        palette = sns.color_palette("husl", n_colors=len(labels))
    for (metric, title), pair in zip(panels, axes, strict=True):
        sel = data.dropna(subset=[metric])
        for ax, x, xlabel in zip(
            pair, ("step", "wall_time"), ("training step", "training time [s]"), strict=True
        ):
            sns.lineplot(
                data=sel,
                x=x,
                y=metric,
                hue="label",
                hue_order=labels,
                palette=palette,
                ax=ax,
                estimator=None,
                linewidth=1.4,
                legend=False,
            )
            if metric in baselines:
                ax.axhline(baselines[metric], color="0.3", ls="--", lw=1, label="no memory")
            ax.set(xlabel=xlabel, ylabel=title)
            if metric.endswith("loss") and (sel[metric] > 0).all():
                ax.set_yscale("log")
    handles = [plt.Line2D([], [], color=c, lw=1.4) for c in palette]
    if baselines:
        handles.append(plt.Line2D([], [], color="0.3", ls="--"))
        labels.append("no-memory baseline")
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    fig.suptitle(f"{task}: learning curves")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data_bytes = buffer.getvalue()
    path = Path(path)
    atomic_write(path, lambda f: f.write(data_bytes))
    return path


def main(argv=None) -> int:
    """``python -m suite.report.curves RESULTS.csv OUT.png``: draw a task run's curves."""
    import argparse
    import csv

    parser = argparse.ArgumentParser(prog="python -m suite.report.curves", description=main.__doc__)
    parser.add_argument("table", type=Path, help="results.csv of a projunn-bench task run")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    with open(args.table, newline="") as f:
        rows = list(csv.DictReader(f))
    return 0 if learning_curves(rows, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
