"""Speed and drift figures of projunn_core's kernels, all in one process.

Prints a markdown report (and writes it with --out): medians of repeated runs, float32.

    python scripts/bench_core.py                 # the full report (~5 min on 2 cores)
    python scripts/bench_core.py --quick         # shorter timing, no N = 4096, short drift run
    python scripts/bench_core.py --out results/core_speed.md
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

import projunn_core as pc
from baselines import expm_step, unconstrained_step
from suite.commands._args import positive_float, positive_int
from suite.measure.output import atomic_write_text
from suite.measure.timing import measure


def step_fn(A, G, lr, k, variant, gen):
    return lambda: pc.projunn_step(A, G, lr, rank=k, variant=variant, generator=gen)


def timings(n, k, seconds, gen, extra=()):
    """Median ms of projUNN-T/D steps (and ``extra`` baselines) on one fresh A, G."""
    A = pc.init.haar(n, generator=gen)
    G = torch.randn(n, n, generator=gen)
    lr = 1e-3
    fns = {f"projUNN-{v}": step_fn(A, G, lr, k, v, gen) for v in "TD"}
    for name in extra:
        fns[name] = {
            "A.add_(G)": lambda: unconstrained_step(A, G, lr),
            "expm": lambda: expm_step(A, G, lr),
        }[name]
    return {
        name: measure(fn, min_time=seconds, max_time=4 * seconds, warmup=2).median * 1e3
        for name, fn in fns.items()
    }


def loglog_slope(xs, ys):
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )


def drift(n, steps, k, gen):
    """||W^H W - I||_F / sqrt(N) after ``steps`` float32 projunn_step calls, per variant."""
    out = {}
    for v in "TD":
        A = pc.init.haar(n, generator=gen)
        for _ in range(steps):
            pc.projunn_step(
                A, torch.randn(n, n, generator=gen), 1e-2, rank=k, variant=v, generator=gen
            )
        out[v] = pc.unitarity_error(A)
    return out


def report(args) -> str:
    gen = torch.Generator().manual_seed(args.seed)
    rep = args.time
    lines = [
        f"# projunn_core speed (float32, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, medians of torch.utils.benchmark samples, "
        f"{rep:g}-{4 * rep:g} s each)",
        "",
    ]

    t = timings(2048, 8, rep, gen, extra=("A.add_(G)",))
    lines += [
        "## N = 2048, k = 8: full step vs one unconstrained update",
        "",
        "| method | ms | × A.add_(G) |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {v:.2f} | {v / t['A.add_(G)']:.2f} |" for m, v in t.items()]

    t1 = timings(1024, 1, rep, gen, extra=("expm",))
    t8 = timings(1024, 8, rep, gen)
    lines += [
        "",
        "## N = 1024: k = 1 vs expm, k = 1 vs k = 8",
        "",
        "| method | k = 1 ms | k = 8 ms | expm / k=1 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {v} | {t1[v]:.2f} | {t8[v]:.2f} | {t1['expm'] / t1[v]:.1f}× |"
        for v in ("projUNN-T", "projUNN-D")
    ]
    lines += [f"| expm (A·matrix_exp(skew(AᴴG))) | {t1['expm']:.2f} | | |"]

    sizes = [256, 512, 1024, 2048] + ([] if args.quick else [4096])
    rows = {n: timings(n, 8, rep, gen) for n in sizes}
    lines += ["", "## Scaling, k = 8", "", "| N | projUNN-T ms | projUNN-D ms |", "|---|---|---|"]
    lines += [f"| {n} | {r['projUNN-T']:.2f} | {r['projUNN-D']:.2f} |" for n, r in rows.items()]
    for v in ("projUNN-T", "projUNN-D"):
        big = [n for n in sizes if n >= 1024]
        lines.append(
            f"\nlog-log slope {v}: {loglog_slope(sizes, [rows[n][v] for n in sizes]):.2f}"
            f" (all N), {loglog_slope(big, [rows[n][v] for n in big]):.2f} (N ≥ 1024)"
        )

    d = drift(256, args.drift_steps, 4, gen)
    lines += [
        "",
        f"## float32 drift: ‖WᴴW − I‖_F/√N after {args.drift_steps} steps "
        "(N = 256, k = 4, lr = 1e-2, random Gaussian gradients)",
        "",
        f"projUNN-T: {d['T']:.2e}, projUNN-D: {d['D']:.2e}",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter timing and drift run")
    parser.add_argument(
        "--time",
        type=positive_float,
        default=None,
        help="seconds of samples per timing (default 0.5)",
    )
    parser.add_argument("--drift-steps", type=positive_int, default=None, help="default 10000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the markdown report to this file (atomically)")
    args = parser.parse_args(argv)
    if args.time is None:
        args.time = 0.1 if args.quick else 0.5
    if args.drift_steps is None:
        args.drift_steps = 500 if args.quick else 10_000
    text = report(args)
    sys.stdout.write(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
