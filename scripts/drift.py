"""float32 drift of projUNN updates with and without pc.reorthogonalize, and what it costs.

Each run applies ``steps`` in-place projUNN-T or -D updates to a Haar-random float32 A,
with the kernels' check=False (as the optimizers call them). The step inputs are drawn
at random from a pool of precomputed rank-k factors a = scale * orth(Gaussian),
b = orth(Gaussian), so that making gradients does not dominate the run. (Cycling a small
pool in order is not a fair stand-in: A then settles into a periodic orbit whose
rounding errors add up coherently, faster than sqrt(steps).) ``||A^H A - I||_F / sqrt(N)``
is recorded at 1, 2, 5 x 10^j steps; with ``--every M`` the repair runs after every M-th
step, and the error is recorded just before it (the worst point of each period).

    python scripts/drift.py --report results/drift.md    # N = 64: 10^6 steps, N = 1024: 10^5
    python scripts/drift.py --quick                      # 10^4 and 10^3 steps (about a minute)
    python scripts/drift.py --sizes 256:20000 --every 100 --variants T

The full run takes about 7 minutes on 2 quiet cores with --jobs 2 (one worker process
per run). The tidy table (suite.output.COLUMNS, ``step`` = update count) and machine.json
go to a new folder under --out; the markdown report to stdout and, atomically, --report.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

import projunn_core as pc
from suite.commands._args import add_out_argument, positive_float, positive_int
from suite.output import atomic_write_text
from suite.record import Recorder
from suite.timing import measure

DEFAULT_SIZES = ((64, 1_000_000), (1024, 100_000))
QUICK_SIZES = ((64, 10_000), (1024, 1_000))


def size_steps(text: str) -> tuple[int, int]:
    """An argparse type: ``N:STEPS``."""
    n, sep, steps = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not N:STEPS")
    return positive_int(n), positive_int(steps)


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


def _row(workload, variant, n, k, options, metric, value, unit, step=None, timing=None):
    return {
        "workload": workload,
        "method": f"projunn_{variant.lower()}",
        "n": n,
        "k": k,
        "dtype": "float32",
        "device": "cpu",
        "options": options,
        "metric": metric,
        "value": value,
        "unit": unit,
        "iqr": timing.iqr if timing else None,
        "repeat": timing.repeat if timing else None,
        "status": "ok",
        "step": step,
    }


def drift_run(job: dict) -> list[dict]:
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


def cost_rows(n: int, k: int, every: int, scale: float, max_time: float, seed: int) -> list[dict]:
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


def report(rows: list[dict], args, command: str) -> str:
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
    drift = [r for r in rows if r["workload"] == "drift"]
    for n, steps in args.sizes:
        lines += [f"## N = {n}, {steps:,} updates", ""]
        configs = sorted({(r["method"], r["options"]) for r in drift if r["n"] == n})
        head = [
            f"{m} {'repair every ' + o.split('=')[-1] if 'reorth' in o else 'no repair'}"
            for m, o in configs
        ]
        lines += ["| step | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        table = {(r["method"], r["options"], r["step"]): r["value"] for r in drift if r["n"] == n}
        for step in [0] + checkpoints(steps):
            cells = [_fmt(table[(m, o, step)]) for m, o in configs]
            lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
        lines.append("")
    cost = [r for r in rows if r["workload"] == "cost"]
    if cost:
        lines += [
            f"## Cost (projUNN-T, k = {args.k}; repair of an A drifted by {args.every} updates)",
            "",
            "| N | kernel update | projunn_step | reorthogonalize | × step | amortized over "
            f"{args.every} steps | error before → after repair |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, _ in args.sizes:
            c = {r["metric"]: r["value"] for r in cost if r["n"] == n}
            step, fix = c["time_projunn_step"], c["time_reorthogonalize"]
            share = 100 * fix / (args.every * step)
            lines.append(
                f"| {n} | {c['time_kernel_update'] * 1e3:.3f} ms | {step * 1e3:.3f} ms | "
                f"{fix * 1e3:.3f} ms | {fix / step:.1f} | {share:.2f} % | "
                f"{_fmt(c['error_before_repair'])} → {_fmt(c['error_after_repair'])} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=size_steps,
        nargs="+",
        metavar="N:STEPS",
        help="sizes and update counts (default 64:1000000 1024:100000)",
    )
    parser.add_argument("--quick", action="store_true", help="64:10000 1024:1000")
    parser.add_argument("--variants", nargs="+", choices=sorted(pc.VARIANTS), default=["T", "D"])
    parser.add_argument(
        "--every",
        type=positive_int,
        default=1000,
        help="repair period M of the repaired runs (default 1000)",
    )
    parser.add_argument("--k", type=positive_int, default=4, help="rank of the updates")
    parser.add_argument(
        "--scale", type=positive_float, default=0.1, help="norm of each factor a column"
    )
    parser.add_argument(
        "--pool", type=positive_int, default=256, help="precomputed factor pairs (256)"
    )
    parser.add_argument(
        "--max-time", type=positive_float, default=2.0, help="seconds to time each call (2)"
    )
    parser.add_argument("--jobs", type=positive_int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    add_out_argument(parser)
    parser.add_argument("--report", help="also write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if any(args.k > n for n, _ in args.sizes):
        parser.error("--k must not exceed any N")
    jobs = [
        {
            "n": n,
            "steps": steps,
            "variant": v,
            "every": every,
            "k": args.k,
            "scale": args.scale,
            "pool": args.pool,
            "seed": args.seed,
        }
        for n, steps in args.sizes
        for v in args.variants
        for every in (None, args.every)
    ]
    command = "python scripts/drift.py " + " ".join(argv if argv is not None else sys.argv[1:])
    # The folder and machine.json exist from the start; a stopped run keeps its rows.
    with Recorder(args.out, info={"command": command, "args": vars(args)}) as rec:
        for job, out in zip(jobs, _map(drift_run, jobs, args.jobs), strict=True):
            rec.add(out)
            print(
                f"done: N = {job['n']}, {job['variant']}, every = {job['every']}", file=sys.stderr
            )
        for n, _ in args.sizes:
            rec.add(cost_rows(n, args.k, args.every, args.scale, args.max_time, args.seed))
    if rec.status != "complete":  # Ctrl-C or SIGTERM: the table holds what was done
        print(f"drift: {rec.status}; partial table: {rec.table}", file=sys.stderr)
        return rec.exit_code
    text = report(rec.rows, args, command.strip())
    sys.stdout.write(text)
    if args.report:
        atomic_write_text(args.report, text)
    print(f"table: {rec.table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
