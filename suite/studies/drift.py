"""float32 drift of projUNN updates with and without pc.reorthogonalize, and what it costs.

Each run applies ``steps`` in-place projUNN-T or -D updates to a Haar-random float32 A,
with the kernels' check=False (as the optimizers call them). The step inputs are drawn
at random from a pool of precomputed rank-k factors a = scale * orth(Gaussian),
b = orth(Gaussian), so that making gradients does not dominate the run. (Cycling a small
pool in order is not a fair stand-in: A then settles into a periodic orbit whose
rounding errors add up coherently, faster than sqrt(steps).) ``||A^H A - I||_F / sqrt(N)``
is recorded at 1, 2, 5 x 10^j steps; with ``--every M`` the repair runs after every M-th
step, and the error is recorded just before it (the worst point of each period).

``projunn-bench drift`` runs it (``--help`` there has examples). The full study takes
about 7 minutes on 2 quiet cores with two worker processes (one per run). The results
table (``step`` = update count) and machine.json go to a new folder; the markdown report
(:func:`report`) to stdout and, atomically, to a file if asked.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

import projunn_core as pc

from ..measure.output import atomic_write_text
from ..measure.record import Recorder
from ..measure.rows import Measurement, Row
from ..measure.timing import measure

__all__ = ["DEFAULT_SIZES", "QUICK_SIZES", "Drift", "checkpoints", "report", "study"]

DEFAULT_SIZES = ((64, 1_000_000), (1024, 100_000))
QUICK_SIZES = ((64, 10_000), (1024, 1_000))


@dataclass(frozen=True)
class Drift:
    """The study's setup: ``sizes`` ((N, steps) pairs), ``variants`` ("T", "D"), the repair
    period ``every`` of the repaired runs, rank ``k`` of the updates, the norm ``scale``
    of each factor column, ``pool`` precomputed factor pairs, ``max_time`` seconds to
    time each call, ``jobs`` worker processes, ``seed``."""

    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    variants: tuple[str, ...] = ("T", "D")
    every: int = 1000
    k: int = 4
    scale: float = 0.1
    pool: int = 256
    max_time: float = 2.0
    jobs: int = 2
    seed: int = 0


def checkpoints(steps: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``steps``, and ``steps`` itself.

    >>> checkpoints(120)
    [1, 2, 5, 10, 20, 50, 100, 120]
    """
    points, scale = set(), 1
    while scale <= steps:
        points.update(m * scale for m in (1, 2, 5) if m * scale <= steps)
        scale *= 10
    return sorted(points | {steps})


def factor_pool(n: int, k: int, scale: float, count: int, seed: int):
    """``count`` float32 pairs (a, b): a = scale * orth(Gaussian), b = orth(Gaussian)."""
    gen = torch.Generator().manual_seed(seed)
    orth = lambda: torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))[0]  # noqa: E731
    return [((scale * orth()).float(), orth().float()) for _ in range(count)]


def draws(count: int, steps: int, seed: int) -> list[int]:
    """Which pool entry each of ``steps`` updates uses (uniform, with replacement)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, count, (steps,), generator=gen).tolist()


def _row(workload, variant, n, k, options, metric, value, unit, step=None, timing=None) -> Row:
    case = {"workload": workload, "method": f"projunn_{variant.lower()}", "n": n, "k": k}
    m = Measurement(
        metric,
        value,
        unit,
        iqr=timing.iqr if timing else None,
        repeat=timing.repeat if timing else None,
        step=step,
    )
    return Row.of({**case, "options": options}, m)


def drift_run(job: dict) -> list[Row]:
    """One run (a worker process): the unitarity error at the checkpoints."""
    torch.set_num_threads(1)
    n, steps, k, every, variant = job["n"], job["steps"], job["k"], job["every"], job["variant"]
    kernel = pc.VARIANTS[variant]
    pool = factor_pool(n, k, job["scale"], job["pool"], job["seed"])
    order = draws(len(pool), steps, job["seed"] + 2)
    A = pc.init.haar(n, generator=torch.Generator().manual_seed(job["seed"] + 1))
    options = f"scale={job['scale']}" + (f",reorthogonalize_every={every}" if every else "")
    rows, marks = [], set(checkpoints(steps))
    rows.append(
        _row("drift", variant, n, k, options, "unitarity_error", pc.unitarity_error(A), "", 0)
    )
    for step, i in enumerate(order, start=1):
        kernel(A, *pool[i], check=False)
        if step in marks:
            err = pc.unitarity_error(A)
            rows.append(_row("drift", variant, n, k, options, "unitarity_error", err, "", step))
        if every and step % every == 0:
            pc.reorthogonalize(A)
    return rows


def cost_rows(n: int, k: int, every: int, scale: float, max_time: float, seed: int) -> list[Row]:
    """Seconds per call, side by side: one kernel update, one full projunn_step (rank-k
    range finder of a Gaussian G included) and one reorthogonalize of an A drifted by
    ``every`` updates; also the error that repair leaves."""
    torch.set_num_threads(1)
    pool = factor_pool(n, k, scale, 64, seed)
    A = pc.init.haar(n, generator=torch.Generator().manual_seed(seed + 1))
    for i in draws(len(pool), every, seed + 2):
        pc.projunn_t(A, *pool[i], check=False)
    drifted, B = A.clone(), A.clone()
    G = torch.randn(n, n, generator=torch.Generator().manual_seed(seed + 2))
    calls = {
        "kernel_update": lambda: pc.projunn_t(A, *pool[0], check=False),
        "projunn_step": lambda: pc.projunn_step(A, G, 1e-3, rank=k, check=False),
        "reorthogonalize": lambda: pc.reorthogonalize(B.copy_(drifted)),
        "copy": lambda: B.copy_(drifted),  # subtracted from reorthogonalize below
    }
    t = {
        name: measure(fn, min_time=max_time / 4, max_time=max_time, warmup=2, num_threads=1)
        for name, fn in calls.items()
    }
    options = f"drift_steps={every}"
    rows = [
        _row("cost", "T", n, k, options, f"time_{name}", t[name].median, "s", timing=t[name])
        for name in ("kernel_update", "projunn_step")
    ]
    repair = t["reorthogonalize"].median - t["copy"].median
    rows.append(
        _row(
            "cost",
            "T",
            n,
            k,
            options,
            "time_reorthogonalize",
            repair,
            "s",
            timing=t["reorthogonalize"],
        )
    )
    err = pc.unitarity_error(drifted)
    rows.append(_row("cost", "T", n, k, options, "error_before_repair", err, ""))
    repaired = pc.unitarity_error(pc.reorthogonalize(drifted.clone()))
    rows.append(_row("cost", "T", n, k, options, "error_after_repair", repaired, ""))
    return rows


def _map(fn, jobs: list, workers: int):
    """``map`` in this process (workers = 1) or in fresh worker processes, in order."""
    if workers == 1:
        yield from map(fn, jobs)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded torch
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as ex:
        yield from ex.map(fn, jobs)


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def report(rows: list[Row], args: Drift, command: str) -> str:
    lines = [
        "# float32 drift of projUNN updates, and the reorthogonalize repair",
        "",
        f"Reproduce: `{command}` (torch {torch.__version__}, one thread per run, "
        f"{args.jobs} worker process(es) side by side: timings are medians "
        "and include that contention).",
        "",
        f"Inputs: rank-{args.k} factor pairs a = {args.scale}·orth(Gaussian), "
        f"b = orth(Gaussian), drawn at random from a pool of {args.pool} precomputed ones "
        "(cycling a small pool in order lets A settle into a periodic orbit whose rounding "
        "errors add up coherently); kernels called with check=False. Error: ‖AᴴA − I‖_F/√N "
        "in float64; with the repair, measured just before it runs (the worst point of "
        "each period).",
        "",
    ]
    drift = [r for r in rows if r.workload == "drift"]
    for n, steps in args.sizes:
        lines += [f"## N = {n}, {steps:,} updates", ""]
        configs = sorted({(r.method, r.options) for r in drift if r.n == n})
        head = [
            f"{m} {'repair every ' + o.split('=')[-1] if 'reorth' in o else 'no repair'}"
            for m, o in configs
        ]
        lines += ["| step | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        table = {(r.method, r.options, r.step): r.value for r in drift if r.n == n}
        for step in [0] + checkpoints(steps):
            cells = [_fmt(table[(m, o, step)]) for m, o in configs]
            lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
        lines.append("")
    cost = [r for r in rows if r.workload == "cost"]
    if cost:
        lines += [
            f"## Cost (projUNN-T, k = {args.k}; repair of an A drifted by {args.every} updates)",
            "",
            "| N | kernel update | projunn_step | reorthogonalize | × step | amortized over "
            f"{args.every} steps | error before → after repair |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, _ in args.sizes:
            c = {r.metric: r.value for r in cost if r.n == n}
            step, fix = c["time_projunn_step"], c["time_reorthogonalize"]
            share = 100 * fix / (args.every * step)
            lines.append(
                f"| {n} | {c['time_kernel_update'] * 1e3:.3f} ms | {step * 1e3:.3f} ms | "
                f"{fix * 1e3:.3f} ms | {fix / step:.1f} | {share:.2f} % | "
                f"{_fmt(c['error_before_repair'])} → {_fmt(c['error_after_repair'])} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def study(setup: Drift, out: Path, *, report_path: Path | None, command: str) -> int:
    """Run the study into a new folder under ``out``, print the report (and write it to
    ``report_path``); returns the exit status (130/143 when stopped, the partial table
    kept)."""
    jobs = [
        {
            "n": n,
            "steps": steps,
            "variant": v,
            "every": every,
            "k": setup.k,
            "scale": setup.scale,
            "pool": setup.pool,
            "seed": setup.seed,
        }
        for n, steps in setup.sizes
        for v in setup.variants
        for every in (None, setup.every)
    ]
    # The folder and machine.json exist from the start; a stopped run keeps its rows.
    info = {"command": command, "setup": dataclasses.asdict(setup)}
    with Recorder(out, info=info) as rec:
        for job, rows in zip(jobs, _map(drift_run, jobs, setup.jobs), strict=True):
            rec.add(rows)
            print(
                f"done: N = {job['n']}, {job['variant']}, every = {job['every']}", file=sys.stderr
            )
        for n, _ in setup.sizes:
            rec.add(cost_rows(n, setup.k, setup.every, setup.scale, setup.max_time, setup.seed))
    if rec.status != "complete":  # Ctrl-C or SIGTERM: the table holds what was done
        print(f"drift: {rec.status}; partial table: {rec.table}", file=sys.stderr)
        return rec.exit_code
    text = report(rec.rows, setup, command)
    sys.stdout.write(text)
    if report_path is not None:
        atomic_write_text(report_path, text)
    print(f"table: {rec.table}", file=sys.stderr)
    return 0
