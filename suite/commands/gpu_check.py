"""``projunn-bench gpu-check``: everything a GPU machine should measure, in one go.

The check is :mod:`suite.studies.gpu_check`; this module parses and checks the options
(before the watchdog is armed: a bad option is a usage error, not a killed process).
"""

from __future__ import annotations

import argparse

from ._args import Extend, output_dir, positive_float, positive_int

NAME = "gpu-check"

EPILOG = """\
examples:
  projunn-bench gpu-check --out results/gpu                 # everything, within --budget
  projunn-bench gpu-check --out /tmp/g --parts syncs sweep --sizes 1024 8192 --ranks 1
  projunn-bench gpu-check --out /tmp/g --device cpu        # the CPU-safe parts (~2 min)
  projunn-bench gpu-check --out /tmp/g --budget 20 --sizes 64   # CPU smoke run

parts: tests (pytest -m cuda: counts; fails when none ran on a GPU), syncs (host syncs
  per update and training step of every method, and where they happen), sweep (the
  update at every N and k: eager and graphed projUNN, expm, Cayley, A.add_(G); wall and
  CUDA-event medians beside the byte floor 6 N^2 4 / copy bandwidth), profile (compute
  operators, kernels, busy time and syncs per step of eager vs graphed projUNN-T at
  N = 1024, 8192, the graphed one with each sync-free implementation), train (the training
  step, batch 128, N = 256 ... 8192: projUNN graphed and eager, baselines, peers).
output (a new folder under --out): results.csv (the projunn-bench table, read by
  projunn-bench report), summary.md (printed at the end), tests.txt, machine.json.
The sweep stops early to keep --budget; a watchdog ends the process 60 s past it.

exit status: 0 every part ran and every test passed; 1 a part failed, a test failed or no
  CUDA test ran on a GPU; 2 bad usage; 130/143 interrupted/terminated (the rows so far
  are written)."""


def _size(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} is too small (N >= 2)")
    return value


HELP = "the GPU check: CUDA tests, host syncs, the update sweep, kernels per step"
DESCRIPTION = (
    "Run the CUDA tests, count the host syncs of every method, time the "
    "update sweep to N = 16384 beside the byte floor and count kernels per step, within "
    "a time budget, into one results folder."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..studies import gpu_check as gc

    parser.add_argument(
        "--out", required=True, type=output_dir, metavar="DIR", help="parent folder of the run"
    )
    parser.add_argument(
        "--parts", action=Extend, choices=gc.PARTS, default=list(gc.PARTS), help="(default: all)"
    )
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=270.0,
        metavar="S",
        help="seconds for the whole run (default 270); the sweep stops early to keep it",
    )
    parser.add_argument(
        "--sizes",
        action=Extend,
        type=_size,
        metavar="N",
        help=f"matrix sizes (default: {' '.join(map(str, gc.SIZES))} on cuda, "
        f"{' '.join(map(str, gc.CPU_SIZES))} on cpu)",
    )
    parser.add_argument(
        "--ranks", action=Extend, type=positive_int, default=list(gc.RANKS), metavar="K"
    )
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="default: cuda when available, else cpu",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    import torch

    from ..studies import gpu_check as gc

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device cuda: CUDA is not available on this machine")
    sizes = args.sizes or list(gc.SIZES if device == "cuda" else gc.CPU_SIZES)
    info = {"command": f"projunn-bench {NAME}", "argv": args.argv}
    return gc.check(
        args.out,
        device=device,
        sizes=sizes,
        ranks=args.ranks,
        parts=args.parts,
        budget=args.budget,
        info=info,
    )
