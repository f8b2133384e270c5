"""The paper's permuted-MNIST test accuracies (Kiani et al. 2022, as recorded in
docs/tasks.md §3), shipped as ``results/reference/projunn_pmnist.csv``, and the table that
puts measured pmnist rows beside them.

Columns of the CSV: ``hidden``, ``model`` (LSTM, scoRNN, expRNN, projUNN), ``k`` (projUNN's
rank), ``group`` (the paper reports two groups of projUNN runs, 1 and 2; docs/tasks.md §3 does
not say which variant each is), ``test_accuracy`` (%; empty where the paper has none).

>>> rows = reference(170)
>>> [r["test_accuracy"] for r in rows if r["model"] == "expRNN"]
[94.9]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..measure.cases import method_label
from ..report.render import Table, markdown

__all__ = ["PMNIST_CSV", "PAPER_MODEL", "beside", "reference"]

PMNIST_CSV = Path(__file__).resolve().parents[2] / "results" / "reference" / "projunn_pmnist.csv"

PAPER_MODEL = {
    "lstm": "LSTM",
    "cayley": "scoRNN",
    "expm": "expRNN",
    "projunn_t": "projUNN",
    "projunn_d": "projUNN",
}
"""Our method name -> the model name in the paper's table."""


def reference(hidden: int, path: Path = PMNIST_CSV) -> list[dict[str, Any]]:
    """The paper's rows at ``hidden`` (empty when the file or the size is absent)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if int(r["hidden"]) != hidden:
            continue
        out.append(
            {
                "model": r["model"],
                "k": int(r["k"]) if r["k"] else None,
                "group": int(r["group"]) if r["group"] else None,
                "test_accuracy": float(r["test_accuracy"]) if r["test_accuracy"] else None,
            }
        )
    return out


def beside(measured: Iterable[Mapping[str, Any]], hidden: int, path: Path = PMNIST_CSV) -> str:
    """Markdown table: measured final test accuracy per method next to the paper's at the
    same hidden size. ``measured``: dicts with ``method``, ``k``, ``test_accuracy``.

    >>> print(beside([{"method": "expm", "k": None, "test_accuracy": 50.0}], 170))
    | method | measured test accuracy [%] | paper (hidden 170) [%] |
    |---|---|---|
    | expm | 50.00 | expRNN 94.9 |
    """
    paper = reference(hidden, path)
    rows = []
    for m in measured:
        model = PAPER_MODEL.get(m["method"])
        found = [
            r
            for r in paper
            if r["model"] == model and (model != "projUNN" or r["k"] == m["k"])
            and r["test_accuracy"] is not None
        ]  # fmt: skip
        text = (
            " / ".join(
                f"{r['model']}"
                + (f" k={r['k']} group {r['group']}" if r["group"] else "")
                + f" {r['test_accuracy']:.1f}"
                for r in found
            )
            or "-"
        )
        rows.append([method_label(m["method"], m["k"]), f"{m['test_accuracy']:.2f}", text])
    columns = ["method", "measured test accuracy [%]", f"paper (hidden {hidden}) [%]"]
    return markdown([Table(columns, rows)]).removesuffix("\n")
