"""``projunn-bench tune``: time to a target quality per method, each with its lr tuned under
the same budget (the AlgoPerf rules on this machine's scale), as a resumable Optuna study.

The campaign lives in :mod:`suite.tasks.tune`, its report in :mod:`suite.report.tune`;
this module parses and checks the options (bad input exits with status 2 before anything
runs) and prints the summary.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap

from ..measure.methods import METHODS
from ..tasks import LSTM
from ._args import (
    ALL,
    Extend,
    add_training_method_arguments,
    chosen_methods,
    nonnegative_int,
    output_dir,
    positive_int,
)

NAME = "tune"
DEFAULT_OUT = "results/tune"


def _lr_ranges_text() -> str:
    from ..tasks.tune import LR_RANGES

    return ", ".join(f"{f} {lo:g}..{hi:g}" for f, (lo, hi) in LR_RANGES.items())


def _presets_text() -> str:
    from ..tasks.tune import tune_presets

    lines = []
    for name, p in tune_presets().items():
        c = p.config
        sizes = ", ".join(map(str, p.target.sizes)) if p.target.sizes else str(c.hidden)
        budget = f" or {p.target.time_budget:g} s" if p.target.time_budget else ""
        lines.append(
            f"  {name}: {p.target.describe()} within {c.steps} steps{budget}, evaluated every "
            f"{c.log_interval}; T={c.T} hidden={sizes} batch={c.batch} {c.optimizer} "
            f"lr/{c.lr_divisor:g} for the unitary parameters"
        )
        doc = " ".join((p.target.config.__doc__ or "").split())
        if p.target.why:
            doc = f"Target: {p.target.why}. {doc}"
        lines += textwrap.wrap(doc, 88, initial_indent=" " * 4, subsequent_indent=" " * 4)
    return "\n".join(lines)


HELP = "time to a target per method, lr tuned with the same budget (Optuna, resumable)"
DESCRIPTION = (
    "Which method reaches a task's target first? Every method gets the same tuning budget: "
    "the same quasi-random learning rates (a scrambled Sobol sequence from Optuna's "
    "QMCSampler, mapped log-uniformly onto one lr range per optimizer family) and the same "
    "seeds. Each run stops at the target or at the step budget; time is training wall time "
    "(evaluation excluded). The campaign is an Optuna study per (preset, method) in one "
    "storage, so it can be stopped and resumed, and shared by several processes or machines."
)

EPILOG_TEMPLATE = """\
examples:
  projunn-bench tune copy-quick pdigits-quick --workers 2      # the quick campaign
  projunn-bench tune copy --method projunn_t expm geotorch_expm --trials 3 --seeds 0
  projunn-bench tune pdigits-quick --out results/tune --resume # go on after a kill
  projunn-bench tune pdigits-quick --hidden 64 256 512 --time-budget 30  # time against N
  projunn-bench tune pdigits-scale --workers 2                 # the family at 64, 256, 512
  projunn-bench tune copy-paper --device cuda --storage postgresql://host/db  # shared
  projunn-bench report results/tune                            # the report of a campaign

presets (TASK: a preset name, or a task name for its -quick preset):
{presets}

the rules:
  lr ranges (log-uniform, one per optimizer family, never per method): {ranges}
    (--lr-range FAMILY=LO:HI changes one). A method trains with the preset's optimizer
    (rmsprop) unless its layer has none: geoopt has no RMSprop and trains with adam, in
    the adam range. The preset's lr divisor (the unitary parameters learn at lr / 32, as
    in the paper) is part of the fixed setup and the same for every method.
  trials: the first T points u_1..u_T of one scrambled Sobol sequence (QMCSampler,
    --sampler-seed), lr = lo (hi / lo)^u, each trained on every --seeds seed: every
    method gets exactly the same points, enqueued into its study when the study is made.
  a run stops at the first evaluation meeting the target, or when its step budget or
    its time budget (--time-budget, or the preset's: seconds of training wall time,
    checked at each evaluation) is spent. A run that stops without the target is "not
    reached": its time is shown as "> budget" or "-", never as a time, and counts as
    infinite in the performance profile; to choose the lr it costs the whole budget.
  --hidden N [N ...]: every preset at each hidden size N (a scale family such as
    pdigits-scale has its own sizes); each N is its own study, with its own chosen lr.
  the chosen lr of a method: its point with the most seeds reaching the target, then the
    smallest mean time to target over the seeds, then the lower point; where no point
    reaches it on any seed, the best mean final metric.

storage and workers:
  default: OUT/campaign.journal (an Optuna JournalStorage file); --storage URL takes an
  Optuna RDB URL instead (sqlite:///tune.db; postgresql://... to share one campaign among
  machines: run the same command on each, at the same moment if you like; the tune
  extra installs the driver, psycopg 3). --workers W trains with W processes on this
  machine, each on --threads threads (default 1). Workers claim waiting trials
  atomically through the storage, so no trial is run twice and none is lost. The same
  --out (or --storage) goes on from the finished trials; a trial interrupted by Ctrl-C
  or SIGTERM goes back in the queue; --resume also re-queues the trials a killed campaign
  left running (use it only when no other worker of the campaign is running).
faults:
  a journal torn by a crash mid-write is repaired when opened (the torn records are
  dropped with a warning naming the file; the complete ones are kept). Workers die with
  the process that started them. The trial of a worker that died is re-queued: on an
  RDB storage by Optuna's heartbeat (every --heartbeat S seconds; stale after 3 S), on
  the journal when its process on this machine is gone. A process with nothing left to
  claim waits while other live workers train, to pick up such a trial.

output (OUT, rewritten atomically whenever the campaign stops):
  time_to_target.csv / .md  one row per preset, hidden, method and seed at the chosen lr:
                            method, optimizer, lr, seed, reached, time_to_target_s (empty
                            when not reached), steps_to_target, final_metric,
                            train_time_s, stopped (target/steps/time/error), trials, ...
  trials.csv                every trial's rows (the target metric and wall_time at each
                            evaluation; time_to_target, steps_to_target, reached once)
  results.csv, machine.json the chosen lr's rows of the first seed (a run folder: the
                            report reads it), the machine and the campaign settings
  performance_profile.png   share of (preset, seed) problems solved within tau x the
                            fastest method's time, tau on a log axis
  learning_curves.png       the target metric against training seconds, chosen lr
  time_to_target_vs_n.png   (two or more N) median time to target against N, log-log,
                            a miss drawn at the budget as an arrow
  every row of trials.csv / results.csv has the hidden size in column n (and hidden=N in
  options)
  tune.json                 the campaign settings and each method's chosen lr
progress: a bar on stderr (--no-progress: none).
exit status: 0 done, 1 a trial failed, 2 bad usage (nothing run), 3 a worker died or
  planned trials were left (the cause is printed; "status" in tune.json is written from
  the final count: complete or incomplete), 130 interrupted, 143 terminated (the
  finished trials are kept and written)."""


def _epilog() -> str:
    return EPILOG_TEMPLATE.format(presets=_presets_text(), ranges=_lr_ranges_text())


EPILOG = _epilog()


def _lr_range(text: str) -> tuple[str, tuple[float, float]]:
    """An argparse type: ``FAMILY=LO:HI``, a non-empty positive lr range."""
    from ..tasks.tune import LR_RANGES, check_range

    family, sep, span = text.partition("=")
    low, colon, high = span.partition(":")
    if not sep or not colon:
        raise argparse.ArgumentTypeError(f"{text!r} is not FAMILY=LO:HI (e.g. rmsprop=1e-4:1e-1)")
    if family not in LR_RANGES:
        raise argparse.ArgumentTypeError(
            f"unknown optimizer family {family!r}; choose from {', '.join(LR_RANGES)}"
        )
    try:
        return family, check_range(family, float(low), float(high))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def hidden_size(text: str) -> int:
    """An argparse type: a hidden size, an integer >= 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer hidden size") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"hidden size {value} is below 2")
    return value


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive, finite number of seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..tasks.tune import DEFAULT_SEEDS, DEFAULT_TRIALS, HEARTBEAT, SAMPLER_SEED

    parser.add_argument(
        "task", nargs="+", metavar="TASK", help="tune presets (copy-quick, ...) or task names"
    )
    add_training_method_arguments(
        parser, f"methods (default {ALL}: every method the task trains, the peers and lstm)"
    )
    parser.add_argument(
        "--trials", type=positive_int, default=DEFAULT_TRIALS, metavar="T",
        help=f"lr points per method (default: {DEFAULT_TRIALS})",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", action=Extend, type=nonnegative_int, default=list(DEFAULT_SEEDS), metavar="S",
        help=f"seeds every point is trained on (default: {' '.join(map(str, DEFAULT_SEEDS))})",
    )  # fmt: skip
    parser.add_argument(
        "--hidden", action=Extend, type=hidden_size, metavar="N",
        help="train every preset at each of these hidden sizes (default: the preset's own; "
        "a scale family such as pdigits-scale: its sizes)",
    )  # fmt: skip
    parser.add_argument(
        "--time-budget", type=seconds, metavar="SECONDS",
        help="seconds of training (wall clock, evaluation excluded) a trial may take; a "
        "trial out of time or steps is not reached (default: the preset's, if any)",
    )  # fmt: skip
    parser.add_argument(
        "--lr-range", action="append", type=_lr_range, default=[], metavar="FAMILY=LO:HI",
        help=f"an optimizer family's lr range (default: {_lr_ranges_text()}; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--sampler-seed", type=nonnegative_int, default=SAMPLER_SEED, metavar="N",
        help=f"seed of the Sobol sequence (default: {SAMPLER_SEED})",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=positive_int, default=1, metavar="W",
        help="worker processes on this machine (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=1, metavar="T",
        help="torch threads per worker (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--storage", metavar="URL", help="an Optuna RDB URL (default: OUT/campaign.journal)"
    )
    parser.add_argument(
        "--heartbeat", type=positive_int, default=HEARTBEAT, metavar="S",
        help=f"seconds between a trial's heartbeats on an RDB storage; a trial whose worker "
        f"misses 3 is re-queued (default: {HEARTBEAT})",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=output_dir, default=DEFAULT_OUT, metavar="DIR",
        help=f"the campaign folder (default: {DEFAULT_OUT}); the same folder resumes",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="also re-run the trials a killed campaign left running",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _labels(args, parser, presets) -> list[str]:
    from ..tasks.tune import campaign_labels

    choices = [*(n for n, m in METHODS.items() if not m.graphed), LSTM]
    every = [n for p in presets for n in (p.task.methods or choices) if n in choices]
    names, _ = chosen_methods(args.method, choices, dict.fromkeys(every), parser)
    return campaign_labels(names, args.rank)


def build_campaign(args, parser):
    """Check the options and return the :class:`~suite.tasks.tune.Campaign` (exits with
    status 2 on bad input)."""
    from ..tasks.tune import LR_RANGES, Campaign, CampaignError, tune_preset

    presets = []
    for name in dict.fromkeys(args.task):
        try:
            presets.append(tune_preset(name))
        except KeyError as e:
            parser.error(f"argument TASK: {e.args[0]}")
    if args.hidden and len(set(args.hidden)) != len(args.hidden):
        parser.error(f"argument --hidden: sizes must be distinct, got {args.hidden}")
    for p in presets:
        for n in args.hidden or p.target.sizes or [None]:
            try:
                p.task.check(p.config.replace(hidden=n), None)
            except ValueError as e:
                parser.error(f"preset {p.name} cannot run here: {e}")
    labels = _labels(args, parser, presets)
    explicit = ALL not in args.method
    ranges = {**LR_RANGES, **dict(args.lr_range)}
    try:
        campaign = Campaign(
            tuple(p.name for p in presets),
            tuple(labels),
            trials=args.trials,
            seeds=tuple(args.seeds),
            ranges=ranges,
            sampler_seed=args.sampler_seed,
            device=args.device,
            threads=args.threads,
            hidden=tuple(args.hidden or ()),
            time_budget=args.time_budget,
        )
    except CampaignError as e:
        parser.error(str(e))
    for p in campaign.instances():
        for label in labels:
            reason = campaign.skip_reason(p, label)
            if reason and explicit:
                parser.error(f"method {label} cannot run on {p}: {reason}")
    if not campaign.studies():
        parser.error("no method can run on these presets here")
    if args.device == "cuda":
        from ..measure.cases import device_available

        if reason := device_available("cuda"):
            parser.error(f"argument --device: {reason}")
    return campaign


def _check_out(args, parser) -> None:
    """Create ``--out`` (and open the storage) now, so an unusable one is a usage error."""
    from ..tasks.tune import open_storage

    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".tune-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        parser.error(f"argument --out: cannot use {args.out}: {e.strerror or e}")
    try:
        open_storage(args.out, args.storage)
    except Exception as e:  # a bad URL, a database that cannot be reached
        parser.error(f"argument --storage: cannot open {args.storage or args.out}: {e}")


def main(args, parser: argparse.ArgumentParser) -> int:
    from ..tasks.storage import plain_repair_warnings
    from ..tasks.tune import CampaignError, run_campaign

    try:
        import optuna  # noqa: F401
    except ImportError:
        parser.error('projunn-bench tune needs optuna: pip install "projunn-bench[tune]"')
    plain_repair_warnings()
    campaign = build_campaign(args, parser)
    _check_out(args, parser)
    skipped = [
        (p, label, r)
        for p in campaign.instances()
        for label in campaign.labels
        if (r := campaign.skip_reason(p, label))
    ]
    studies = campaign.studies()
    print(
        f"projunn-bench tune {' '.join(campaign.instances())}: {len(studies)} studies, "
        f"{campaign.trials} lr points x {len(campaign.seeds)} seed(s) each, "
        f"{args.workers} worker(s) x {args.threads} thread(s), storage "
        f"{args.storage or args.out / 'campaign.journal'}",
        file=sys.stderr,
    )
    try:
        result = run_campaign(
            campaign,
            args.out,
            url=args.storage,
            workers=args.workers,
            resume=args.resume,
            progress=not args.no_progress,
            info={"argv": args.argv},
            log=lambda msg: print(msg, file=sys.stderr),
            heartbeat=args.heartbeat,
        )
    except CampaignError as e:
        parser.error(str(e))
    table = args.out / "time_to_target.md"
    if table.is_file():
        print(table.read_text(encoding="utf-8"))
    for p, label, reason in skipped:
        print(f"skipped {label} on {p}: {reason}")
    state = ", ".join(f"{k.lower()} {v}" for k, v in sorted(result.counts.items()))
    print(f"\ntrials: {state}\nfolder: {args.out}")
    for problem in result.problems:
        print(f"{result.status}: {problem}", file=sys.stderr)
    if result.exit_code:
        print(f"{result.status}: the finished trials are written", file=sys.stderr)
        return result.exit_code
    return 1 if result.errors else 0
