"""Build a whole report folder from results: ``report.md``, ``report.html``, PNG figures
and ``data.csv`` (every row the report read, with its run and platform).

The folder is built next to its destination under a temporary name and renamed into
place when complete, so a reader never sees a half-written report; an existing report
folder is replaced, any other existing folder is refused.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import analysis as an
from . import figures as fg
from .load import Loaded, load
from .render import (
    Bullets,
    Figure,
    Heading,
    Table,
    Text,
    fmt_bytes,
    fmt_number,
    fmt_ratio,
    fmt_seconds,
    frame_table,
    html,
    markdown,
)

__all__ = ["ReportError", "ReportResult", "build_report", "check_out_dir", "report_blocks"]

REPORT_FILES = ("report.md", "report.html", "data.csv")
WORKLOAD_TITLES = {"update": "update (one unitary update)", "train_step": "train_step"}


class ReportError(RuntimeError):
    """No report can be written (no usable input, or an unusable ``--out``)."""


@dataclass
class ReportResult:
    """Where the report went, its figure files and the warnings about skipped inputs."""

    folder: Path
    figures: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: int = 0

    @property
    def markdown(self) -> Path:
        return self.folder / "report.md"

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def check_out_dir(out: Path) -> None:
    """Refuse an ``out`` that is a file or a folder other than an earlier report."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise ReportError(
            f"--out {out}: exists and is not a report folder (no report.md); "
            "it would be replaced, so choose a new or empty folder"
        )


def _apply_umask(folder: Path) -> None:
    """Give the report the modes of an ordinary new file / folder (mkdtemp makes 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for p in folder.iterdir():
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing an earlier report."""
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, old / out.name)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _by_n(df, index: list[str], value: str, fmt) -> Table:
    """A table with one column per N (sorted) of ``value`` formatted by ``fmt``."""
    wide = df.pivot_table(index=index, columns="n", values=value, aggfunc="first")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    wide.columns = [f"N={n}" for n in wide.columns]
    wide = wide.reset_index().rename(columns={"label": "method"})
    return frame_table(wide, {c: fmt for c in wide.columns if c.startswith("N=")})


def _ordered(df, label_col: str = "label"):
    return (
        df.assign(_o=[fg._registry_order(x) for x in df[label_col]])
        .sort_values([c for c in ("platform", "workload", "dtype") if c in df.columns] + ["_o"])
        .drop(columns="_o")
    )


def _crossover_text(row) -> str:
    if row["crossover"] != row["crossover"]:  # NaN: slower at the largest N
        return f"none up to {row['n_max']}"
    if row["faster_everywhere"]:
        return f"≤ {row['n_min']} (faster at all N)"
    return str(int(row["crossover"]))


def _machine_table(loaded: Loaded) -> Table:
    keys = (
        ("kind", lambda s, m: s.kind),
        ("status", lambda s, m: s.status or "–"),
        ("commit", lambda s, m: s.commit or "–"),
        ("date", lambda s, m: s.date or "–"),
        ("host", lambda s, m: m.get("hostname") or "–"),
        (
            "CPU",
            lambda s, m: f"{m.get('cpu_model') or '?'} ({m.get('cpu_logical_cores') or '?'} cores)",
        ),
        ("RAM", lambda s, m: fmt_bytes(m.get("ram_bytes")) if m.get("ram_bytes") else "–"),
        (
            "GPU",
            lambda s, m: (
                f"{m.get('gpu_name')} ({fmt_bytes(m.get('gpu_memory_bytes'))}, driver "
                f"{m.get('gpu_driver') or '?'})"
                if m.get("gpu_name")
                else "–"
            ),
        ),
        ("torch / CUDA", lambda s, m: f"{m.get('torch') or '?'} / {m.get('cuda') or '–'}"),
        ("threads", lambda s, m: str(m.get("torch_threads") or "–")),
        ("rows", lambda s, m: str(s.rows)),
        ("file", lambda s, m: str(s.path)),
    )
    rows = [[s.label] + [f(s, s.machine) for _, f in keys] for s in loaded.sources]
    return Table(["run"] + [k for k, _ in keys], rows)


def report_blocks(
    loaded: Loaded, folder: Path, *, min_n: int = an.MIN_FIT_N
) -> tuple[list, list[Path]]:
    """The report's blocks (see :mod:`suite.report.render`) and the figures written into
    ``folder``."""
    frame = loaded.frame
    blocks: list = []
    figs: list[Path] = []

    def figure(path, caption):
        if path is not None:
            figs.append(path)
            blocks.append(Figure(path, caption))

    runs = ", ".join(f"`{s.label}`" for s in loaded.sources)
    blocks.append(
        Text(
            f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `projunn-bench report` "
            f"from {len(loaded.sources)} source(s): {runs}. Every figure's numbers follow it as a "
            "table; `data.csv` holds every row read. Times are medians of the timed samples."
        )
    )
    if loaded.warnings:
        blocks += [Heading("Inputs not used"), Bullets(list(loaded.warnings))]

    times = an.timings(frame)
    blocks.append(Heading("1. Time vs N"))
    blocks.append(
        Text(
            "Log-log axes, one line per method; projUNN is drawn at every rank measured "
            "(line style = rank k; its cost is O(kN²)). Platforms are side by side; where "
            "a case was measured by several runs on one platform, the latest run is shown."
        )
    )
    for wl in an.TIMED_WORKLOADS:
        sub = times[times["workload"] == wl]
        if sub.empty:
            continue
        blocks.append(Heading(f"Workload {WORKLOAD_TITLES.get(wl, wl)}", 3))
        figure(
            fg.plot_times(times, wl, folder / f"fig1_time_{wl}.png"),
            f"Median time per call vs N, {wl}.",
        )
        blocks.append(_by_n(_ordered(sub), ["platform", "dtype", "label"], "seconds", fmt_seconds))

    exps = an.exponents(times, min_n=min_n)
    blocks.append(Heading("2. Scaling exponents"))
    blocks.append(
        Text(
            f"Least-squares slope p of log(time) on log(N) over the sizes N ≥ {min_n} (time ∝ "
            "N^p); ± is the standard error: the larger of the fit's residual error (3+ "
            "sizes) and the error propagated from the timing spread (IQR/1.349 per sample, "
            "over √repeat for a median). Expected for large N: 3 for the O(N³) methods, 2 for "
            "projUNN's O(kN²). Fixed per-call costs (kernel launches, host syncs, Python) "
            "pull exponents down where N is small for the hardware."
        )
    )
    if exps.empty:
        blocks.append(Text(f"No series has two or more sizes N ≥ {min_n}."))
    else:
        figure(
            fg.plot_exponents(exps, folder / "fig2_exponents.png"),
            "Fitted exponents ± standard error.",
        )
        e = _ordered(exps)
        e = e.assign(
            exponent=[
                f"{p:.2f} ± {se:.2g}" if se == se else f"{p:.2f}"
                for p, se in zip(e["exponent"], e["se"], strict=True)
            ],
            sizes=[
                f"{a}–{b} ({c})" for a, b, c in zip(e["n_min"], e["n_max"], e["sizes"], strict=True)
            ],
        )
        blocks.append(
            frame_table(
                e[
                    ["platform", "workload", "dtype", "label", "exponent", "sizes", "expected"]
                ].rename(columns={"label": "method", "sizes": "N range (sizes)"})
            )
        )

    blocks.append(Heading("3. Speed-up of projUNN and crossover N"))
    speed_all = an.speedups(times)
    if speed_all.empty:
        blocks.append(Text("No N where both projUNN and a baseline were timed on one platform."))
    else:
        best = an.speedups(times, best_k=True)
        blocks.append(
            Text(
                "Speed-up = baseline time / projUNN time at the same N, platform, workload and "
                "dtype (> 1: projUNN is faster). The figure and the first table take projUNN's "
                "fastest rank at each N (shown in brackets); the crossover table lists every rank."
            )
        )
        for wl in an.TIMED_WORKLOADS:
            sub = best[best["workload"] == wl]
            if sub.empty:
                continue
            blocks.append(Heading(f"Workload {WORKLOAD_TITLES.get(wl, wl)}", 3))
            figure(
                fg.plot_speedups(best, wl, folder / f"fig3_speedup_{wl}.png"),
                f"Speed-up of projUNN (fastest k) over each baseline, {wl}.",
            )
            sub = sub.assign(
                text=[
                    f"{fmt_ratio(s)} (k={int(k)})"
                    for s, k in zip(sub["speedup"], sub["k"], strict=True)
                ]
            )
            blocks.append(
                _by_n(
                    _ordered(sub, "baseline"),
                    ["platform", "dtype", "variant", "baseline"],
                    "text",
                    str,
                )
            )
        cross = an.crossovers(speed_all)
        cross = cross.assign(text=[_crossover_text(r) for _, r in cross.iterrows()])
        wide = cross.pivot_table(
            index=["platform", "workload", "dtype", "baseline"],
            columns="projunn",
            values="text",
            aggfunc="first",
        )
        wide = wide.reindex(sorted(wide.columns, key=fg._registry_order), axis=1).reset_index()
        wide.columns.name = None
        blocks.append(Heading("Crossover N", 3))
        blocks.append(
            Text(
                "The smallest measured N from which projUNN is faster than the baseline at "
                "every larger measured N; “none up to N” = still slower at the largest N "
                "measured on both."
            )
        )
        blocks.append(frame_table(_ordered(wide, "baseline")))

    mem = an.memory(frame)
    blocks.append(Heading("4. Memory vs N"))
    if mem.empty:
        blocks.append(Text("No memory measurements."))
    else:
        blocks.append(
            Text(
                "host_peak_rss: the process's peak resident memory during one step (the "
                "Python/torch baseline included); cuda_peak_memory: peak CUDA memory allocated "
                "during the steps, the weight and gradient included."
            )
        )
        for wl in an.TIMED_WORKLOADS:
            sub = mem[mem["workload"] == wl]
            if sub.empty:
                continue
            blocks.append(Heading(f"Workload {WORKLOAD_TITLES.get(wl, wl)}", 3))
            figure(
                fg.plot_memory(mem, wl, folder / f"fig4_memory_{wl}.png"),
                f"Peak memory vs N, {wl}.",
            )
            blocks.append(
                _by_n(_ordered(sub), ["platform", "metric", "dtype", "label"], "bytes", fmt_bytes)
            )

    blocks.append(Heading("5. Accuracy"))
    unit = an.unitarity(frame)
    if unit.empty:
        blocks.append(Text("No unitarity measurements."))
    else:
        blocks.append(
            Text(
                "Unitarity error ‖WᴴW − I‖_F/√N of the layer at initialisation and after "
                "training steps (the `unconstrained` reference is not meant to stay unitary)."
            )
        )
        figure(
            fg.plot_unitarity(unit, folder / "fig5_unitarity.png"),
            "Unitarity error after the most training steps measured.",
        )
        wide = unit.pivot_table(
            index=["platform", "dtype", "label", "n"],
            columns="metric",
            values="error",
            aggfunc="first",
        )
        order = sorted(wide.columns, key=an._steps_of)
        wide = wide[order].reset_index()
        wide.columns.name = None
        blocks.append(frame_table(_ordered(wide), {c: fmt_number for c in order}))
    dist = an.accuracy_distance(frame)
    if not dist.empty:
        blocks.append(
            Text(
                "dist_to_exact = ‖A_k − A_exact‖_F / ‖A_exact − A₀‖_F: how far the rank-k "
                "projUNN step lands from the exact full-gradient step (0 = exact, 1 = as far "
                "as not moving)."
            )
        )
        figure(
            fg.plot_distance(dist, folder / "fig5_dist_to_exact.png"),
            "Distance to the exact step vs rank k.",
        )
        wide = dist.pivot_table(
            index=["platform", "dtype", "method", "n"],
            columns="k",
            values="distance",
            aggfunc="first",
        )
        wide.columns = [f"k={int(k)}" for k in wide.columns]
        wide = wide.reset_index()
        blocks.append(
            frame_table(wide, {c: fmt_number for c in wide.columns if c.startswith("k=")})
        )

    curves = an.learning_curves(frame)
    if not curves.empty:
        blocks.append(Heading("Learning curves"))
        blocks.append(
            Text("Task runs: each logged metric vs training step and vs wall-clock seconds.")
        )
        for task in sorted(curves["task"].unique()):
            blocks.append(Heading(f"Task {task}", 3))
            figure(
                fg.plot_learning(curves, task, folder / f"fig6_learning_{_slug(task)}.png"),
                f"Learning curves, {task}.",
            )
        final = an.learning_final(curves)
        blocks.append(Text("Last logged values:"))
        blocks.append(
            frame_table(final, {c: fmt_number for c in an.LEARNING_METRICS if c in final})
        )

    unknown = an.unknown_workloads(frame)
    missing = an.not_measured(frame)
    if len(unknown) or not missing.empty:
        blocks.append(Heading("Not drawn"))
    if len(unknown):
        blocks.append(
            Bullets(
                [
                    f"workload `{w}` ({n} rows): not known to the report (e.g. a profile table); "
                    "its rows are in data.csv"
                    for w, n in unknown.items()
                ]
            )
        )
    if not missing.empty:
        blocks.append(Text("Cases that were skipped or failed, with the reason recorded:"))
        blocks.append(frame_table(missing))

    blocks.append(Heading("Machines"))
    blocks.append(Text("The sources of this report and the machine descriptions they carry."))
    blocks.append(_machine_table(loaded))
    return blocks, figs


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    min_n: int = an.MIN_FIT_N,
    title: str = "projUNN bench report",
    log: Callable[[str], None] | None = None,
) -> ReportResult:
    """Read ``paths`` and write the report folder ``out`` (atomically); returns a
    :class:`ReportResult`. Raises :class:`ReportError` when no input is usable or ``out``
    cannot be used. ``log`` receives progress messages."""
    log = log or (lambda msg: None)
    out = Path(out)
    check_out_dir(out)
    loaded = load(paths)
    if not loaded.sources:
        problems = "; ".join(loaded.warnings) or "no inputs"
        raise ReportError(f"no usable results: {problems}")
    log(f"report: read {len(loaded.frame)} rows from {len(loaded.sources)} source(s)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    except OSError as e:
        raise ReportError(f"--out {out}: cannot create it ({e.strerror or e})") from None
    try:
        blocks, figs = report_blocks(loaded, tmp, min_n=min_n)
        log(f"report: drew {len(figs)} figures")
        (tmp / "report.md").write_text(markdown(blocks, title), encoding="utf-8")
        (tmp / "report.html").write_text(html(blocks, title), encoding="utf-8")
        loaded.frame.to_csv(tmp / "data.csv", index=False)
        _apply_umask(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReportResult(out, [out / p.name for p in figs], loaded.warnings, len(loaded.sources))
