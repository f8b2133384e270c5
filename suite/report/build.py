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
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..measure.workloads import WORKLOADS
from . import analysis as an
from . import figures as fg
from . import label_order
from . import peers as peer_report
from . import tune as tune_report
from .load import Loaded, load
from .render import (
    Bullets,
    Details,
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


def _open_up(folder: Path) -> None:
    """Give the folder the mode of an ordinary new folder (``mkdtemp`` makes it 0700);
    the files in it were created with the usual modes already."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)


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


def _wide(df, index: list[str], columns: str, values: str, name=str, order=None):
    """``df`` pivoted: one row per ``index``, one column per value of ``columns``
    (sorted by ``order``, named by ``name``)."""
    wide = df.pivot_table(index=index, columns=columns, values=values, aggfunc="first")
    wide = wide.reindex(sorted(wide.columns, key=order), axis=1)
    wide.columns = [name(c) for c in wide.columns]
    return wide.reset_index()


def _by_n(df, index: list[str], value: str, fmt) -> Table:
    """A table with one column per N (sorted) of ``value`` formatted by ``fmt``."""
    wide = _wide(df, index, "n", value, name=lambda n: f"N={n}").rename(columns={"label": "method"})
    return frame_table(wide, {c: fmt for c in wide.columns if c.startswith("N=")})


def _ordered(df, label_col: str = "label"):
    """``df`` sorted by platform, workload, dtype, then method in registry order."""
    keys = [c for c in ("platform", "workload", "dtype") if c in df.columns]
    order = [label_order(x) for x in df[label_col]]
    return df.assign(_o=order).sort_values([*keys, "_o"]).drop(columns="_o")


def _crossover_text(row) -> str:
    """``"256"``; ``"≤ 64"`` when projUNN is faster at every N measured; ``"none ≤ 1024"``
    when it is still slower at the largest N."""
    if row["crossover"] != row["crossover"]:  # NaN: slower at the largest N
        return f"none ≤ {row['n_max']}"
    if row["faster_everywhere"]:
        return f"≤ {row['n_min']}"
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


@dataclass
class _Doc:
    """The report being assembled: its blocks and the figures drawn into ``folder``."""

    folder: Path
    blocks: list = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    def figure(self, drawn: fg.Drawn | Path | None, caption: str) -> None:
        """The figure, and one line naming its panels left out for want of data."""
        if drawn is None:
            return
        path = drawn.path if isinstance(drawn, fg.Drawn) else drawn
        self.figures.append(path)
        self.blocks.append(Figure(path, caption))
        left_out = drawn.left_out if isinstance(drawn, fg.Drawn) else ()
        if left_out:
            self.blocks.append(Text(f"Not measured (no panel): {'; '.join(left_out)}."))

    def per_workload(self, df, plot, stem: str, caption: str, table) -> None:
        """For each timed workload in ``df``: a heading, ``plot``'s figure, ``table``."""
        for wl in an.TIMED_WORKLOADS:
            sub = df[df["workload"] == wl]
            if sub.empty:
                continue
            self.add(Heading(f"Workload {WORKLOAD_TITLES.get(wl, wl)}", 3))
            self.figure(plot(df, wl, self.folder / f"{stem}_{wl}.png"), f"{caption}, {wl}.")
            self.add(table(sub))


def _times_section(doc: _Doc, times) -> None:
    doc.add(
        Heading("1. Time vs N"),
        Text(
            "Log-log axes, one line per method; projUNN is drawn at every rank measured "
            "(line style = rank k; its cost is O(kN²)). Platforms are side by side; where "
            "a case was measured by several runs on one platform, the latest run is shown. "
            "For the conv_ workloads N is the channel count C (the grid size in brackets)."
        ),
    )
    contended = times[times["contended"]]
    if not contended.empty:
        doc.add(*_contended_blocks(contended, len(times)))
    marked = times.assign(
        text=[
            fmt_seconds(s) + (" †" if c else "")
            for s, c in zip(times["seconds"], times["contended"], strict=True)
        ]
    )
    doc.per_workload(
        marked,
        fg.plot_times,
        "fig1_time",
        "Median time per call vs N",
        lambda sub: _by_n(_ordered(sub), ["platform", "dtype", "label"], "text", str),
    )


def _contended_blocks(contended, total: int) -> list:
    """One line on the contended timings (how many, where, the lowest share), then the
    list of them folded."""
    shares = contended["cpu_share"].dropna()
    lowest = f", lowest cpu_share {shares.min():.2f}" if len(shares) else ""
    where = "; ".join(
        f"{platform}: {len(g)}" for platform, g in contended.groupby("platform", sort=True)
    )
    line = (
        f"**{len(contended)} of {total} timings (marked †) were contended** ({where}{lowest}): "
        "other processes held the cores while they were measured, so they measure the load "
        "as much as the code. They are drawn and tabled, and left out of the scaling "
        "exponents and the speed-ups."
    )
    rows = _ordered(contended)
    table = Table(
        ["platform", "workload", "dtype", "method", "N", "cpu_share"],
        [
            [r.platform, r.workload, r.dtype, r.label, str(r.n), fmt_number(r.cpu_share)]
            for r in rows.itertuples()
        ],
    )
    return [Text(line), Details(f"The {len(contended)} contended timings", [table])]


def _exponents_section(doc: _Doc, times, min_n: int) -> None:
    doc.add(
        Heading("2. Scaling exponents"),
        Text(
            f"Least-squares slope p of log(time) on log(N) over the sizes N ≥ {min_n} (time ∝ "
            "N^p); ± is the standard error: the larger of the fit's residual error (3+ "
            "sizes) and the error propagated from the timing spread (IQR/1.349 per sample, "
            "over √repeat for a median). Expected for large N: 3 for the O(N³) methods, 2 for "
            "projUNN's O(kN²). Fixed per-call costs (kernel launches, host syncs, Python) "
            "pull exponents down where N is small for the hardware."
        ),
    )
    exps = an.exponents(times, min_n=min_n)
    if exps.empty:
        doc.add(Text(f"No series has two or more sizes N ≥ {min_n}."))
        return
    doc.figure(fg.plot_exponents(exps, doc.folder / "fig2_exponents.png"), "Fitted exponents.")
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
    cols = ["platform", "workload", "dtype", "label", "exponent", "sizes", "expected"]
    doc.add(frame_table(e[cols].rename(columns={"label": "method", "sizes": "N range (sizes)"})))


def _speedup_section(doc: _Doc, times) -> None:
    doc.add(Heading("3. Speed-up of projUNN and crossover N"))
    speed = an.speedups(times)
    if speed.empty:
        doc.add(Text("No N where both projUNN and a baseline were timed on one platform."))
        return
    doc.add(
        Text(
            "Speed-up = baseline time / projUNN time at the same N, platform, workload and "
            "dtype (> 1: projUNN is faster). The figure and the first table take projUNN's "
            "fastest rank at each N (shown in brackets); the crossover table lists every rank."
        )
    )

    def table(sub):
        text = [
            f"{fmt_ratio(s)} (k={int(k)})" for s, k in zip(sub["speedup"], sub["k"], strict=True)
        ]
        index = ["platform", "dtype", "variant", "baseline"]
        return _by_n(_ordered(sub.assign(text=text), "baseline"), index, "text", str)

    best = an.speedups(times, best_k=True)
    doc.per_workload(
        best,
        fg.plot_speedups,
        "fig3_speedup",
        "Speed-up of projUNN (fastest k) over each baseline",
        table,
    )
    cross = an.crossovers(speed)
    cross = cross.assign(text=[_crossover_text(r) for _, r in cross.iterrows()])
    index = ["platform", "workload", "dtype", "baseline"]
    doc.add(
        Heading("Crossover N", 3),
        Text(
            "The smallest measured N from which projUNN is faster than the baseline at "
            "every larger measured N: “≤ N” = already faster at the smallest N measured "
            "on both, “none ≤ N” = still slower at the largest. Dense and convolution "
            "workloads (N = channels) in separate tables."
        ),
    )
    conv = cross["workload"].map(lambda w: w in WORKLOADS and WORKLOADS[w].matrices == "conv")
    for part in (cross[~conv], cross[conv]):
        if not part.empty:
            wide = _wide(part, index, "projunn", "text", order=label_order)
            doc.add(frame_table(_ordered(wide, "baseline")))


def _memory_section(doc: _Doc, frame) -> None:
    doc.add(Heading("4. Memory vs N"))
    mem = an.memory(frame)
    if mem.empty:
        doc.add(Text("No memory measurements."))
        return
    doc.add(
        Text(
            "host_peak_rss: the process's peak resident memory during one step (the "
            "Python/torch baseline included); cuda_peak_memory: peak CUDA memory allocated "
            "during the steps, the weight and gradient included."
        )
    )
    index = ["platform", "metric", "dtype", "label"]
    doc.per_workload(
        mem,
        fg.plot_memory,
        "fig4_memory",
        "Peak memory vs N",
        lambda sub: _by_n(_ordered(sub), index, "bytes", fmt_bytes),
    )


def _accuracy_section(doc: _Doc, frame) -> None:
    doc.add(Heading("5. Accuracy"))
    unit = an.unitarity(frame)
    if unit.empty:
        doc.add(Text("No unitarity measurements."))
    else:
        doc.add(
            Text(
                "Unitarity error ‖WᴴW − I‖_F/√N of the layer at initialisation and after "
                "training steps (the `unconstrained` reference is not meant to stay unitary)."
            )
        )
        doc.figure(
            fg.plot_unitarity(unit, doc.folder / "fig5_unitarity.png"),
            "Unitarity error after the most training steps measured.",
        )
        index = ["platform", "dtype", "label", "n"]
        for wl, part in unit.groupby("workload", sort=True):
            wide = _wide(part, index, "metric", "error", order=an._steps_of, name=_after)
            metrics = [c for c in wide.columns if c not in index]
            wide = _ordered(wide).rename(columns={"label": "method", "n": "N"})
            caption = f"{wl}: {part['metric'].iloc[0].split('_')[0]} error"
            doc.add(frame_table(wide, dict.fromkeys(metrics, fmt_number), caption=caption))
    dist = an.accuracy_distance(frame)
    if dist.empty:
        return
    doc.add(
        Text(
            "dist_to_exact = ‖A_k − A_exact‖_F / ‖A_exact − A₀‖_F: how far the rank-k "
            "projUNN step lands from the exact full-gradient step (0 = exact, 1 = as far "
            "as not moving)."
        )
    )
    doc.figure(
        fg.plot_distance(dist, doc.folder / "fig5_dist_to_exact.png"),
        "Distance to the exact step vs rank k.",
    )
    index = ["platform", "workload", "dtype", "method", "n"]
    wide = _wide(dist, index, "k", "distance", name=lambda k: f"k={k}")
    doc.add(frame_table(wide, {c: fmt_number for c in wide.columns if c.startswith("k=")}))


def _after(metric: str) -> str:
    """A column name for an accuracy metric without its family: ``init``, ``after 5 steps``.

    >>> _after("unitarity_init"), _after("orthogonality_after_1_step")
    ('init', 'after 1 step')
    """
    return metric.partition("_")[2].replace("_", " ")


def _learning_section(doc: _Doc, frame) -> None:
    from .curves import learning_curves

    final = an.learning_final(frame)
    if final.empty:
        return
    doc.add(
        Heading("Learning curves"),
        Text(
            "Task runs (`projunn-bench task`): test loss (and accuracy) vs training step and "
            "vs seconds of training, a line per method and rank, the no-memory baseline dashed."
        ),
    )
    for (task, run), rows in frame.groupby(["workload", "run"], sort=True):
        if rows["step"].isna().all():
            continue
        doc.add(Heading(f"Task {task}, run {run}", 3))
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        path = doc.folder / f"fig6_learning_{_slug(task)}_{_slug(run)}.png"
        doc.figure(learning_curves(records, path), f"Learning curves, {task} ({run}).")
    numbers = [c for c in final.columns if c not in ("task", "platform", "run", "label", "n")]
    doc.add(
        Text("Last logged values, and the values logged once per run:"),
        frame_table(final.rename(columns={"label": "method"}), dict.fromkeys(numbers, fmt_number)),
    )


def _not_drawn_section(doc: _Doc, frame) -> None:
    unknown = an.unknown_workloads(frame)
    undrawn = an.undrawn_metrics(frame)
    missing = an.not_measured(frame)
    if len(unknown) or len(undrawn) or not missing.empty:
        doc.add(Heading("Not drawn"))
    notes = [
        f"workload `{w}` ({n} rows): not known to the report; its rows are in data.csv"
        for w, n in unknown.items()
    ]
    if len(undrawn):
        names = ", ".join(f"`{m}` ({n})" for m, n in undrawn.items())
        notes.append(f"metrics no figure shows (e.g. profile figures; rows in data.csv): {names}")
    if notes:
        doc.add(Bullets(notes))
    if not missing.empty:
        doc.add(Text("Cases that were skipped or failed, with the reason recorded:"))
        doc.add(frame_table(missing))


def _plain_command(command: str, notes: int = 0) -> str:
    """``command`` as plain text: its ``--note`` texts (shown as notes below it) are left
    out instead of quoted for a shell, the rest is shown as typed.

    >>> argv = ["projunn-bench", "report", "a.csv", "--note", "torch's default", "--out", "r"]
    >>> _plain_command(shlex.join(argv), 1)
    'projunn-bench report a.csv --out r (and the note below)'
    >>> _plain_command("projunn-bench report 'unbalanced")
    "projunn-bench report 'unbalanced"
    """
    try:
        words = shlex.split(command)
    except ValueError:  # not a shell line: show it as it is
        return command
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == "--note":
            skip = True
        elif not word.startswith("--note="):
            kept.append(word)
    text = shlex.join(kept)
    if notes:
        text += " (and the note below)" if notes == 1 else f" (and the {notes} notes below)"
    return text


def report_blocks(
    loaded: Loaded,
    folder: Path,
    *,
    min_n: int = an.MIN_FIT_N,
    command: str = "projunn-bench report",
    notes: Sequence[str] = (),
) -> tuple[list, list[Path]]:
    """The report's blocks (see :mod:`suite.report.render`) and the figures written into
    ``folder``; ``command`` is how the report was made, ``notes`` are shown first."""
    doc = _Doc(folder)
    runs = ", ".join(s.label for s in loaded.sources)
    doc.add(
        Text(
            f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
            f"{_plain_command(command, len(notes))}, from {len(loaded.sources)} source(s): "
            f"{runs}. Every figure's numbers follow it as a table; data.csv holds every row "
            "read. Times are medians of the timed samples."
        )
    )
    if notes:
        doc.add(Bullets([f"**Note:** {n}" for n in notes]))
    if loaded.warnings:
        doc.add(Heading("Inputs not used"), Bullets(list(loaded.warnings)))
    times = an.timings(loaded.frame)
    _times_section(doc, times)
    _exponents_section(doc, times, min_n)
    _speedup_section(doc, times)
    peer_report.section(doc, loaded)
    _memory_section(doc, loaded.frame)
    _accuracy_section(doc, loaded.frame)
    _learning_section(doc, loaded.frame)
    tune_report.section(doc, loaded)
    _not_drawn_section(doc, loaded.frame)
    doc.add(
        Heading("Machines"),
        Text("The sources of this report and the machine descriptions they carry."),
        _machine_table(loaded),
    )
    return doc.blocks, doc.figures


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    min_n: int = an.MIN_FIT_N,
    title: str = "projUNN bench report",
    log: Callable[[str], None] | None = None,
    command: str = "projunn-bench report",
    notes: Sequence[str] = (),
) -> ReportResult:
    """Read ``paths`` and write the report folder ``out`` (atomically); returns a
    :class:`ReportResult`. Raises :class:`ReportError` when no input is usable or ``out``
    cannot be used. ``log`` receives progress messages; ``command`` (how the report was
    made) is quoted in it, ``notes`` shown at its top."""
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
        blocks, figs = report_blocks(loaded, tmp, min_n=min_n, command=command, notes=notes)
        log(f"report: drew {len(figs)} figures")
        (tmp / "report.md").write_text(markdown(blocks, title), encoding="utf-8")
        (tmp / "report.html").write_text(html(blocks, title), encoding="utf-8")
        loaded.frame.to_csv(tmp / "data.csv", index=False)
        _open_up(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReportResult(out, [out / p.name for p in figs], loaded.warnings, len(loaded.sources))
