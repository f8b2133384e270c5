"""``projunn-bench task``: train methods on a sequence task, write their learning curves.

The tasks live in :mod:`suite.tasks`; the loop in :mod:`suite.tasks.train`; the run
folder in :mod:`suite.tasks.runs`. This module parses and checks the options (bad input
exits with status 2 before anything runs) and prints the summary.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

from projunn_core.init import INITS

from ..measure.cases import DTYPES, method_label
from ..measure.methods import METHODS
from ..tasks import LSTM, TASKS
from ._args import (
    ALL,
    add_out_argument,
    add_threads_argument,
    add_training_method_arguments,
    apply_threads,
    chosen_methods,
    positive_float,
    positive_int,
)

NAME = "task"

METHOD_NAMES = (*METHODS, LSTM)

_EPILOG = f"""\
examples:
  projunn-bench task copy --method projunn_t expm cayley     # quick preset, 3 methods
  projunn-bench task copy --method all                       # every method, one folder
  projunn-bench task pdigits --method projunn_t --rank 1 4 --steps 1000
  projunn-bench task adding --preset paper --device cuda --method projunn_t lstm
  projunn-bench task pmnist --data-dir ~/data/mnist --preset paper170 --device cuda
  torchrun --nproc-per-node 2 -m suite.cli task copy --method projunn_t   # DDP, 2 processes

methods: {", ".join(METHOD_NAMES)} or {ALL} (every one; ranked methods once per --rank).
  Each is the recurrent matrix of a unitary RNN (modReLU unless the preset says
  otherwise); lstm is an LSTM with the parameter count of the full-capacity unitary RNN.
presets (options given on the command line override them):
{{presets}}
output (one new folder per run, never overwritten):
  OUT/YYYYmmdd-HHMMSS/results.csv   rows: workload (the task), method, n (hidden), k,
                                    dtype, device, options (preset, seed, config), metric,
                                    value, unit, step (training step of curve rows), status
  OUT/YYYYmmdd-HHMMSS/machine.json  machine, versions, git commit, the run's settings
  OUT/YYYYmmdd-HHMMSS/curves.png    loss (and accuracy) vs step and vs seconds
metrics per logged step: train_loss, test_loss, test_accuracy (classification and copy),
  wall_time (s of training since the start, evaluation excluded); once: baseline_loss /
  baseline_accuracy (method "baseline": the no-memory baseline), parameters, unitarity.
distributed: under torchrun every process trains batch / processes examples per step
  (DistributedDataParallel; gloo on CPU, nccl on CUDA) and rank 0 writes the results.
divergence: a training loss that is not finite, or above 100 x the initial test loss,
  stops that method with an error row saying so (printed at the end).
exit status: 0 ok, 1 a method failed or diverged, 2 bad usage, 130 interrupted (what was
  measured is written)."""


def _presets_text() -> str:
    lines = []
    for task in TASKS.values():
        for name, make in task.presets.items():
            c = make()
            lines.append(
                f"  {task.name} {name}: T={c.T} hidden={c.hidden} batch={c.batch} "
                f"steps={c.steps} {c.optimizer} lr={c.lr:g}/{c.lr_divisor:g} init={c.init} "
                f"{c.nonlinearity}"
            )
            doc = " ".join((make.__doc__ or "").split())
            lines += textwrap.wrap(doc, 88, initial_indent=" " * 4, subsequent_indent=" " * 4)
    return "\n".join(lines)


EQUAL_LR = (
    "equal lr: every method trained at the same learning rate (the unitary parameters at "
    "lr / lr_divisor), which favours some methods by construction; "
    "projunn-bench tune compares them with each lr tuned under one budget"
)

HELP = "train methods on copy/adding/pdigits/pmnist and write learning curves"
DESCRIPTION = (
    "Train each method (as the recurrent matrix of a unitary RNN, or the "
    "LSTM reference) on a sequence task and record train/test loss against step and "
    "against wall time, with the task's no-memory baseline."
)
EPILOG = _EPILOG.format(presets=_presets_text())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=sorted(TASKS), help="the task")
    add_training_method_arguments(parser, f"methods to train one after another (default: {ALL})")
    parser.add_argument("--preset", default="quick", help="configuration (default: quick)")
    parser.add_argument("--hidden", type=positive_int, metavar="H", help="hidden size N")
    parser.add_argument(
        "--T", type=positive_int, metavar="T", help="sequence length (copy: the delay)"
    )
    parser.add_argument("--steps", type=positive_int, metavar="S", help="training steps")
    parser.add_argument(
        "--batch", type=positive_int, metavar="B", help="batch size (over all processes)"
    )
    parser.add_argument("--lr", type=positive_float, metavar="LR", help="learning rate")
    parser.add_argument(
        "--lr-divisor",
        type=positive_float,
        metavar="D",
        help="the unitary parameters learn at lr / D (the paper: 32)",
    )
    parser.add_argument(
        "--optimizer", choices=("sgd", "rmsprop", "adam"), help="optimizer (presets: rmsprop)"
    )
    parser.add_argument(
        "--init", choices=list(INITS), help="starting recurrent matrix (methods that take one)"
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="RNN dtype (default float32)")
    parser.add_argument(
        "--log-every", type=positive_int, metavar="S", help="steps between logged rows"
    )
    parser.add_argument(
        "--test-size", type=positive_int, metavar="N", help="held-out examples evaluated"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)"
    )
    add_threads_argument(parser)
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="data folder (pmnist)")
    add_out_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-figure", action="store_true", help="do not draw curves.png")


def build_runs(args, parser) -> list:
    """Check the options and return the :class:`~suite.tasks.train.Run` list (exits with
    status 2 on bad input)."""
    from ..tasks import DataError
    from ..tasks.train import Run, ranked

    task = TASKS[args.task]
    try:
        config = task.preset(args.preset)
    except KeyError as e:
        parser.error(f"argument --preset: {e.args[0]}")
    # options named like a Config field (--hidden, --T, --lr-divisor, ...) override it
    config = config.replace(**{f.name: getattr(args, f.name, None) for f in fields(config)})
    if args.seed < 0:
        parser.error(f"argument --seed: must be >= 0, got {args.seed}")
    try:
        task.check(config, args.data_dir)
    except DataError as e:
        parser.error(str(e))
    except ValueError as e:
        parser.error(f"bad configuration: {e}")
    known = (*METHODS, LSTM)  # the registry now, plug-ins included
    every = getattr(task, "methods", None) or known
    names, explicit = chosen_methods(args.method, known, every, parser)
    runs = []
    for name in names:
        for rank in args.rank if ranked(name) else [None]:
            run = Run(task, name, rank, config, args.preset, args.seed, args.device)
            reason = run.skip_reason()
            if reason and explicit:
                parser.error(f"method {run.label} cannot run: {reason}")
            runs.append(run)
    return runs


def _summary(
    rows: list, optimizers: dict[str, str] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The final values per method of a run's rows as markdown, and as dicts;
    ``optimizers`` maps a method label to the optimizer it trained with."""
    optimizers = optimizers or {}
    last: dict[tuple, dict[str, Any]] = {}
    baseline = {r.metric: r.value for r in rows if r.method == "baseline"}
    for r in rows:
        if r.step is None or r.value is None or r.status != "ok":
            continue
        entry = last.setdefault((r.method, r.k), {"method": r.method, "k": r.k})
        if r.step >= entry.get("step", -1):
            entry["step"] = r.step
        entry[r.metric] = r.value
    metrics = ("train_loss", "test_loss", "test_accuracy", "wall_time")
    present = [m for m in metrics if any(m in e for e in last.values())]
    head = "| method | optimizer | steps | " + " | ".join(present) + " | below baseline |"
    lines = [head, "|" + "---|" * (len(present) + 4)]
    for e in last.values():
        label = method_label(e["method"], e["k"])
        cells = [f"{e[m]:.4g}" if m in e else "-" for m in present]
        below = "-"
        if "test_loss" in e and "baseline_loss" in baseline:
            below = "yes" if e["test_loss"] < baseline["baseline_loss"] else "no"
        used = optimizers.get(label, "-")
        lines.append(f"| {label} | {used} | {e['step']} | " + " | ".join(cells) + f" | {below} |")
    base = ", ".join(f"{k} = {v:.4g}" for k, v in baseline.items())
    lines.append(EQUAL_LR)
    return "\n".join(lines) + (f"\nno-memory baseline: {base}" if base else ""), list(last.values())


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..tasks.runs import run_tasks
    from ..tasks.train import World

    runs = build_runs(args, parser)
    apply_threads(args)
    world = World.from_env()
    if world.size > 1 and runs[0].config.batch % world.size:
        parser.error(f"--batch must be divisible by the {world.size} processes")
    device = world.start(args.device)
    if device != args.device:
        import dataclasses

        runs = [dataclasses.replace(r, device=device) for r in runs]
    if world.main:
        cfg = runs[0].config
        print(
            f"projunn-bench task {args.task}: preset {args.preset!r}, {len(runs)} method(s), "
            f"T={cfg.T} hidden={cfg.hidden} batch={cfg.batch} steps={cfg.steps} "
            f"device {device}" + (f", {world.size} processes" if world.size > 1 else ""),
            file=sys.stderr,
        )
    result = run_tasks(
        runs,
        args.out,
        data_dir=args.data_dir,
        world=world,
        progress=not args.no_progress,
        figure=not args.no_figure,
        info={"argv": args.argv},
    )
    if result is None:  # not rank 0
        return 0
    from ..tasks.base import optimizer_label

    text, finals = _summary(
        result.rows, {r.label: optimizer_label(r.method, r.config) for r in runs}
    )
    print(text)
    if args.task == "pmnist":
        from ..tasks.paper import beside

        measured = [f for f in finals if "test_accuracy" in f and f["method"] != "baseline"]
        if measured:
            print("\n" + beside(measured, runs[0].config.hidden))
    for r in result.rows:
        if r.status in ("skipped", "error"):
            label = method_label(r.method, r.k)
            print(f"{'skipped' if r.status == 'skipped' else 'failed'} {label}: {r.reason}")
    print(f"\nresults: {result.table}\nmachine: {result.machine}")
    if result.figure:
        print(f"figure: {result.figure}")
    if result.interrupted:
        print(f"{result.status}: partial results written", file=sys.stderr)
        return result.exit_code
    return 1 if "error" in result.statuses.values() else 0
