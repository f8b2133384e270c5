"""Time to result (``projunn-bench tune``): which method reaches a task's target first,
each with its learning rate tuned under the same budget (the AlgoPerf rules, scaled down).

**The rules.** A *tune preset* (``copy-quick``, ``pdigits-quick``, ...) is a task's
:class:`~suite.tasks.base.Target`: a fixed setup (model size, batch, step budget,
evaluation interval, optimizer family, the unitary-parameter lr divisor), a test metric
and the value to reach. Every method gets the same tuning budget: the same ``trials``
learning-rate points, each trained on the same ``seeds``. The points are quasi-random:
the first ``trials`` points ``u_i`` of a scrambled Sobol sequence in [0, 1), drawn once by
Optuna's :class:`optuna.samplers.QMCSampler` (seeded by ``sampler_seed``), and mapped
log-uniformly onto the lr range of the method's optimizer family, ``lr_i = lo (hi /
lo)^u_i`` (:data:`LR_RANGES`: one range per family, never per method). So methods of one
family try exactly the same learning rates, and methods of different families the same
relative positions in their ranges. The lr divisor of the preset (the paper's: the
unitary parameters learn at lr / 32) is part of the fixed setup and applies to every
method alike (the LSTM has no unitary parameters: all of it learns at lr).

A run stops when the target is met at an evaluation (every ``log_every`` steps) or when
the step budget is spent. ``time_to_target_s`` is training wall time up to that
evaluation (evaluation excluded, as in ``projunn-bench task``); a run that does not reach
the target counts as the whole budget (its training time scaled to the full step budget,
so a run that diverged early is not cheap). **The chosen lr** of a method is its point
with the most seeds reaching the target, ties broken by the smallest mean
``time_to_target_s`` over the seeds, then by the lower point index; where no seed of any
point reaches the target, the best mean final metric decides (:func:`choose`).

**The campaign is an Optuna study per (preset, method)**, all in one storage: a journal
file ``campaign.journal`` in the output folder by default (any Optuna RDB URL with
``storage=``, e.g. ``sqlite:///tune.db`` or a PostgreSQL server shared by several
machines). When a study is created, its ``trials x seeds`` trials are enqueued with the lr
fixed (the QMC points above), so every method gets exactly the same trials; a worker
claims a waiting trial atomically through the storage (the state change WAITING ->
RUNNING succeeds for one worker only), trains it and tells its value (the time to
target). Finished trials stay in the storage: a stopped campaign goes on from there, a
trial interrupted by Ctrl-C or SIGTERM is put back in the queue, and ``resume=True``
re-queues the trials a killed campaign left running.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure.cases import method_label, parse_method_label
from ..measure.methods import METHODS
from .base import LSTM, Config, Target, Task, optimizer_label, optimizer_name
from .storage import HEARTBEAT
from .train import Run

__all__ = [
    "DEFAULT_SEEDS",
    "DEFAULT_TRIALS",
    "JOURNAL",
    "LR_RANGES",
    "Campaign",
    "CampaignError",
    "Outcome",
    "TunePreset",
    "choose",
    "lr_points",
    "open_storage",
    "prepare",
    "records",
    "run_trial",
    "tune_preset",
    "tune_presets",
    "work",
]

LR_RANGES: Mapping[str, tuple[float, float]] = {
    "rmsprop": (1e-4, 1e-1),
    "adam": (1e-4, 1e-1),
    "sgd": (1e-3, 1.0),
}
"""The lr range of each optimizer family (log-uniform), the same for every method of it."""
DEFAULT_TRIALS = 5
DEFAULT_SEEDS = (0, 1)
SAMPLER_SEED = 0
JOURNAL = "campaign.journal"
"""The default storage: an Optuna journal file in the output folder."""
PLAN_WAIT = 60.0
"""Seconds a process waits for another one to finish enqueueing a study it created."""


class CampaignError(ValueError):
    """A campaign cannot run as asked (the message says what to change)."""


@dataclass(frozen=True)
class TunePreset:
    """``{task}-{name}``: a task and one of its :class:`Target` goals, at its own hidden
    size or at ``hidden`` (the key ``{task}-{name}@{hidden}``), with the target's time
    budget per trial or ``time_budget`` (seconds of training, ``None``: none).

    >>> p = tune_preset("pdigits-scale@256")
    >>> p.name, p.key, p.config.hidden, p.budget == p.target.time_budget > 0
    ('pdigits-scale', 'pdigits-scale@256', 256, True)
    """

    name: str
    task: Task
    target: Target
    hidden: int | None = None
    time_budget: float | None = None

    @property
    def config(self) -> Config:
        config = self.target.config()
        return config if self.hidden is None else config.replace(hidden=self.hidden)

    @property
    def key(self) -> str:
        """The name of this preset at its size: ``name``, or ``name@hidden``."""
        return self.name if self.hidden is None else f"{self.name}@{self.hidden}"

    @property
    def budget(self) -> float | None:
        """Seconds of training a trial may take (``None``: only the step budget)."""
        return self.time_budget if self.time_budget is not None else self.target.time_budget


def tune_presets() -> dict[str, TunePreset]:
    """Every tune preset, ``{task}-{target name}`` -> :class:`TunePreset`.

    >>> sorted(tune_presets())[:2]
    ['adding-paper', 'adding-quick']
    """
    from . import TASKS

    return {
        f"{task.name}-{name}": TunePreset(f"{task.name}-{name}", task, target)
        for task in TASKS.values()
        for name, target in task.targets.items()
    }


def tune_preset(name: str) -> TunePreset:
    """The preset called ``name`` (a bare task name means ``{task}-quick``; ``name@N``:
    at hidden size ``N``); ``KeyError`` lists the presets.

    >>> tune_preset("copy-quick@64").config.hidden, tune_preset("copy").name
    (64, 'copy-quick')
    """
    known = tune_presets()
    base, at, size = name.partition("@")
    key = base if base in known else f"{base}-quick"
    if key not in known:
        raise KeyError(f"unknown tune preset {base!r}; choose from {', '.join(sorted(known))}")
    if not at:
        return known[key]
    if not size.isdigit() or int(size) < 2:
        raise KeyError(f"{name!r}: the hidden size after '@' must be an integer >= 2")
    return dataclasses.replace(known[key], hidden=int(size))


def split_key(key: str) -> tuple[str, int]:
    """``(preset name, hidden size)`` of a study's preset key (``copy-quick@64``).

    >>> split_key("copy-quick@64"), split_key("copy-quick")
    (('copy-quick', 64), ('copy-quick', 32))
    """
    preset = tune_preset(key)
    return preset.name, preset.config.hidden


def lr_points(trials: int, sampler_seed: int = SAMPLER_SEED) -> list[float]:
    """The first ``trials`` points in [0, 1) of the scrambled Sobol sequence of Optuna's
    ``QMCSampler(seed=sampler_seed)`` (the QMC sampler takes its first trial from an
    independent sampler, so one trial fixes the search space before the points are drawn).

    >>> a = lr_points(4); a == lr_points(4) and len(set(a)) == 4 and all(0 <= u < 1 for u in a)
    True
    >>> lr_points(4, 1) != a
    True
    """
    import optuna

    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=sampler_seed, warn_independent_sampling=False
        )
    study = optuna.create_study(sampler=sampler)
    space = {"u": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study.tell(study.ask(space), 0.0)  # fixes the search space
    points = []
    for _ in range(trials):
        trial = study.ask(space)
        points.append(float(trial.params["u"]))
        study.tell(trial, 0.0)
    return points


def check_range(family: str, low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` if it is a usable lr range, else ``ValueError`` saying why."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"the {family} lr range must be positive and finite, got {low}:{high}")
    if not low < high:
        raise ValueError(f"the {family} lr range {low:g}:{high:g} is empty (need low < high)")
    return float(low), float(high)


@dataclass(frozen=True)
class Campaign:
    """What to tune: ``presets`` (names), method ``labels`` (``projunn_t-k1``, ``expm``,
    ``lstm``), ``trials`` lr points each trained on every seed of ``seeds``, the lr
    ``ranges`` per optimizer family, the ``sampler_seed`` of the QMC points, and where
    trials train (``device``, ``threads`` per worker). ``hidden``: the hidden sizes every
    preset runs at (empty: each preset's own ``Target.sizes``, else its own size);
    ``time_budget``: seconds of training per trial (``None``: each target's own)."""

    presets: tuple[str, ...]
    labels: tuple[str, ...]
    trials: int = DEFAULT_TRIALS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(LR_RANGES))
    sampler_seed: int = SAMPLER_SEED
    device: str = "cpu"
    threads: int = 1
    hidden: tuple[int, ...] = ()
    time_budget: float | None = None

    def __post_init__(self):
        if self.trials < 1:
            raise CampaignError(f"--trials must be >= 1, got {self.trials}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in self.hidden):
            raise CampaignError(f"--hidden sizes must be integers >= 2, got {self.hidden}")
        if len(set(self.hidden)) != len(self.hidden):
            raise CampaignError(f"--hidden sizes must be distinct, got {self.hidden}")
        budget = self.time_budget
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise CampaignError(f"--time-budget must be a positive number of seconds, got {budget}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise CampaignError(f"--seeds must be distinct integers >= 0, got {self.seeds}")
        for family, (low, high) in self.ranges.items():
            try:
                check_range(family, low, high)
            except ValueError as e:
                raise CampaignError(str(e)) from None
        for name in self.presets:
            tune_preset(name)

    def preset(self, name: str) -> TunePreset:
        """The preset ``name`` (``name@N``: at hidden ``N``) with this campaign's budget."""
        found = tune_preset(name)
        if self.time_budget is None:
            return found
        return dataclasses.replace(found, time_budget=self.time_budget)

    def instances(self) -> list[str]:
        """The preset keys this campaign trains: each preset at each hidden size
        (``pdigits-scale@64``), or at its own size (``pdigits-quick``).

        >>> Campaign(("copy-quick",), ("expm",), hidden=(8, 16)).instances()
        ['copy-quick@8', 'copy-quick@16']
        """
        keys = []
        for name in self.presets:
            preset = tune_preset(name)
            sizes = self.hidden or preset.target.sizes
            keys += [f"{preset.name}@{n}" for n in sizes] if sizes else [preset.name]
        return keys

    def family(self, preset: str, label: str) -> str:
        """The optimizer family ``label`` trains with on ``preset`` (geoopt: adam)."""
        return optimizer_name(parse_method_label(label)[0], self.preset(preset).config)

    def lr_range(self, preset: str, label: str) -> tuple[float, float]:
        family = self.family(preset, label)
        if family not in self.ranges:
            raise CampaignError(f"no lr range for the {family} family (give --lr-range)")
        return self.ranges[family]

    def plan(self, preset: str, label: str) -> list[dict[str, Any]]:
        """The trials of one study: for each point ``i`` and seed, ``point``, ``seed``,
        ``u`` and ``lr`` (point-major, in the order they are enqueued)."""
        low, high = self.lr_range(preset, label)
        return [
            {"point": i, "seed": seed, "u": u, "lr": low * (high / low) ** u}
            for i, u in enumerate(lr_points(self.trials, self.sampler_seed))
            for seed in self.seeds
        ]

    def higher(self) -> dict[str, bool]:
        """Preset -> whether its target metric is better when larger."""
        return {self.preset(p).name: self.preset(p).target.higher for p in self.presets}

    def study_name(self, preset: str, label: str) -> str:
        return f"{preset}/{label}"

    def skip_reason(self, preset: str, label: str) -> str | None:
        """Why ``label`` cannot train on ``preset`` here (the suite's skip rules), or ``None``."""
        p = self.preset(preset)
        method, rank = parse_method_label(label)
        if method != LSTM and p.task.methods is not None and method not in p.task.methods:
            return f"{method} does not apply to the {p.task.name} task"
        return Run(p.task, method, rank, p.config, preset, 0, self.device).skip_reason()

    def studies(self) -> list[tuple[str, str]]:
        """``(preset key, label)`` of every study that can run here, preset-major."""
        return [
            (p, label)
            for p in self.instances()
            for label in self.labels
            if self.skip_reason(p, label) is None
        ]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (``tune.json``; compared when a campaign resumes)."""
        return {
            "presets": list(self.presets),
            "methods": list(self.labels),
            "trials": self.trials,
            "seeds": list(self.seeds),
            "lr_ranges": {k: list(v) for k, v in sorted(self.ranges.items())},
            "sampler": "optuna QMCSampler(qmc_type='sobol', scramble=True, "
            f"seed={self.sampler_seed})",
            "sampler_seed": self.sampler_seed,
            "device": self.device,
            "threads": self.threads,
            "hidden": list(self.hidden),
            "time_budget_s": self.time_budget,
            "instances": self.instances(),
        }


# -- storage and studies ---------------------------------------------------------------


def open_storage(out: str | Path, url: str | None = None, *, heartbeat: int | None = HEARTBEAT):
    """The campaign's Optuna storage: the RDB database at ``url`` (its workers beat every
    ``heartbeat`` seconds: :func:`suite.tasks.storage.rdb_storage`), else the journal file
    :data:`JOURNAL` in ``out`` (created; torn records dropped:
    :func:`suite.tasks.storage.journal_storage`)."""
    import optuna

    from . import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url:
        return storage.rdb_storage(url, heartbeat)
    Path(out).mkdir(parents=True, exist_ok=True)
    return storage.journal_storage(Path(out) / JOURNAL)


def _idle_sampler():
    """The sampler the campaign studies are loaded with: never asked to sample (every
    trial is enqueued with its lr fixed), so a plain seeded one."""
    import optuna

    return optuna.samplers.RandomSampler(seed=0)


def _plan_attrs(campaign: Campaign, preset: str, label: str) -> dict[str, Any]:
    plan = campaign.plan(preset, label)
    return {
        "preset": preset,
        "method": label,
        "family": campaign.family(preset, label),
        "lr_range": list(campaign.lr_range(preset, label)),
        "sampler": campaign.describe()["sampler"],
        "points": sorted({round(t["lr"], 12) for t in plan}),
        "seeds": list(campaign.seeds),
        "target": campaign.preset(preset).target.describe(),
        "time_budget": campaign.preset(preset).budget,
    }


def _study(storage, campaign: Campaign, preset: str, label: str):
    """Create the study of ``(preset, label)`` and enqueue its plan, or load the existing
    one (waiting while another process finishes enqueueing); ``CampaignError`` when it
    was planned differently."""
    import optuna

    name = campaign.study_name(preset, label)
    attrs = _plan_attrs(campaign, preset, label)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="minimize", sampler=_idle_sampler()
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_idle_sampler())
        deadline = time.monotonic() + PLAN_WAIT
        while "planned" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)
        if "planned" not in study.user_attrs:  # its creator died while enqueueing
            _enqueue_missing(study, campaign.plan(preset, label))
            study.set_user_attr("planned", len(campaign.plan(preset, label)))
        for key, value in attrs.items():
            if study.user_attrs.get(key) != value:
                raise CampaignError(
                    f"study {name!r} in this storage was planned with {key}="
                    f"{study.user_attrs.get(key)!r}, not {value!r}: use a new --out (or "
                    "--storage), or the settings it was started with"
                ) from None
        return study
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    _enqueue_missing(study, campaign.plan(preset, label))
    study.set_user_attr("planned", len(campaign.plan(preset, label)))
    return study


def _key(trial) -> tuple[int, int]:
    return int(trial.user_attrs["point"]), int(trial.user_attrs["seed"])


def _enqueue(study, planned: Mapping[str, Any]) -> None:
    attrs = {k: planned[k] for k in ("point", "seed", "u")}
    study.enqueue_trial({"lr": planned["lr"]}, user_attrs=attrs)


def _enqueue_missing(study, plan: Sequence[Mapping[str, Any]]) -> None:
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    have = {_key(t) for t in study.get_trials(deepcopy=False, states=live)}
    for planned in plan:
        if (planned["point"], planned["seed"]) not in have:
            _enqueue(study, planned)


def prepare(campaign: Campaign, storage, *, resume: bool = False) -> tuple[list, int]:
    """The campaign's studies (created and planned where new) and how many trials were
    found left running by a stopped campaign (re-queued when ``resume``). The trials of
    workers known to be dead are re-queued first, and those of live workers (beating, or
    running on this machine) are left to them (:func:`suite.tasks.storage.recover`)."""
    from optuna.trial import TrialState

    from .storage import awaited, recover

    studies, stale = [], 0
    for preset, label in campaign.studies():
        study = _study(storage, campaign, preset, label)
        recover(storage, study)  # the trials of workers that died go back in the queue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        running = [t for t in running if not awaited(t, storage)]  # live workers keep theirs
        stale += len(running)
        if resume:
            study_id = storage.get_study_id_from_name(study.study_name)
            for t in running:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            _enqueue_missing(study, campaign.plan(preset, label))
        studies.append(study)
    return studies, stale


def counts(studies) -> dict[str, int]:
    """Trials per state name over ``studies`` (``WAITING``, ``RUNNING``, ``COMPLETE``, ...)."""
    out: dict[str, int] = {}
    for study in studies:
        for t in study.get_trials(deepcopy=False):
            out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# -- one trial -------------------------------------------------------------------------


@dataclass
class Outcome:
    """One trained trial: whether the target was ``reached``, ``time_to_target_s``
    (``inf`` when not reached: a miss is never a time), ``steps_to_target``, the last
    evaluated value of the target metric (``final_metric``), steps and seconds trained,
    ``status`` ("ok", "error": diverged or failed) with its ``reason``, the ``curve``:
    ``[step, training seconds, metric value]`` at each evaluation, what ended it
    (``stopped``: "target", "steps", "time" or "error") and ``charged_s``, the seconds
    it costs when the lr is chosen (the time to target, else the whole budget: the time
    budget, or the training time scaled to the full step budget, whichever is smaller)."""

    reached: bool
    time_to_target_s: float
    steps_to_target: int | None
    final_metric: float | None
    steps_run: int
    train_time_s: float
    status: str = "ok"
    reason: str = ""
    curve: list[list[float]] = field(default_factory=list)
    stopped: str = ""
    charged_s: float = math.inf

    def attrs(self) -> dict[str, Any]:
        """The fields as JSON-ready trial attributes (a non-finite time: ``None``)."""
        out = dataclasses.asdict(self)
        for key in ("time_to_target_s", "charged_s"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        return out


class _Reached(Exception):
    """Raised from the record callback at the evaluation that meets the target."""


class _OutOfTime(Exception):
    """Raised from the record callback at the first evaluation past the time budget."""


def run_trial(
    preset: TunePreset,
    label: str,
    lr: float,
    seed: int,
    *,
    device: str = "cpu",
    problems: dict | None = None,
) -> Outcome:
    """Train ``label`` on ``preset`` at ``lr`` with ``seed`` until the target or the
    budget (the step budget, and ``preset.budget`` seconds of training: the run evaluates
    at the first step past it and stops, and a target met after it is not reached); ``problems``
    caches the task's problem per seed.

    >>> p = tune_preset("copy-tiny")
    >>> o = run_trial(p, "expm", 1e-2, 0)
    >>> o.status, o.steps_run <= p.config.steps, o.curve[0][:2]
    ('ok', True, [0, 0.0])
    """
    from .train import train

    method, rank = parse_method_label(label)
    config = preset.config.replace(lr=lr)
    target = preset.target
    run = Run(preset.task, method, rank, config, preset.name, seed, device)
    cache = problems if problems is not None else {}
    if (preset.name, seed) not in cache:
        cache[preset.name, seed] = preset.task.problem(
            config, seed=seed, device=device, data_dir=None
        )
    problem = cache[preset.name, seed]
    budget = preset.budget
    curve: list[list[float]] = []
    seen: dict[int, float] = {}

    def record(metric, value, unit, step=None, status="ok", reason=""):
        if step is None:
            return
        if metric == target.metric:
            seen[step] = value
        elif metric == "wall_time":
            curve.append([step, float(value), seen.get(step)])
            if budget is not None and value > budget:
                raise _OutOfTime
            if target.reached(seen.get(step)):
                raise _Reached

    status, reason, stopped = "ok", "", "steps"
    try:
        trained = train(run, problem, record, time_limit=budget)
        status = trained.status
        if status != "ok":
            reason = "the training loss became non-finite"
    except _Reached:
        pass
    except _OutOfTime:
        stopped = "time"
    except Exception as e:  # a method that fails is a result of the campaign
        status, reason = "error", f"{type(e).__name__}: {e}"[:500]
    last_step, last_time, last_value = curve[-1] if curve else (0, 0.0, None)
    in_time = budget is None or last_time <= budget
    reached = status == "ok" and in_time and target.reached(last_value)
    if reached:
        charged = last_time
        stopped = "target"
    else:
        stopped = "error" if status != "ok" else stopped
        scaled = last_time * config.steps / last_step if last_step > 0 else math.inf
        charged = min(scaled, math.inf if budget is None else budget)  # the whole budget
    return Outcome(
        reached=reached,
        time_to_target_s=last_time if reached else math.inf,
        steps_to_target=int(last_step) if reached else None,
        final_metric=last_value,
        steps_run=int(last_step),
        train_time_s=last_time,
        status=status,
        reason=reason,
        curve=curve,
        stopped=stopped,
        charged_s=charged,
    )


# -- workers ----------------------------------------------------------------------------


def _claim(storage, study) -> int | None:
    """Atomically take one waiting trial of ``study`` (its id), or ``None``."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=lambda t: t.number):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
            return trial_id
    return None


def _run_claimed(study, trial_id: int, campaign: Campaign, problems: dict) -> bool:
    """Train the claimed trial and tell its value; ``False`` when it was re-queued
    meanwhile (its heartbeats were late: the copy counts)."""
    import optuna

    from .storage import held

    # the study's cache (RDB) learns of trials created since it last read, e.g. a copy
    # re-queued by another process: a trial it does not know cannot take its lr
    study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    trial = optuna.trial.Trial(study, trial_id)
    preset, label = study.user_attrs["preset"], study.user_attrs["method"]
    low, high = study.user_attrs["lr_range"]
    lr = trial.suggest_float("lr", low, high, log=True)  # the enqueued value
    seed = int(trial.user_attrs["seed"])
    try:
        outcome = run_trial(
            campaign.preset(preset), label, lr, seed, device=campaign.device, problems=problems
        )
    except BaseException:  # interrupted: the trial goes back in the queue
        with held():  # a second stop waits: a trial failed but not re-queued would be lost
            try:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                pass  # already failed as stale, and re-queued by the worker that found it
            else:
                _enqueue(study, {**trial.user_attrs, "lr": lr})
        raise
    value = outcome.time_to_target_s
    try:
        for key, attr in outcome.attrs().items():
            trial.set_user_attr(key, attr)
        study.tell(trial, value if math.isfinite(value) else sys.float_info.max)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as e:
        if trial.storage.get_trial(trial_id).state.is_finished():
            print(
                f"trial {trial.number} of {study.study_name} was failed as stale and re-queued "
                "while this worker trained it (its heartbeats were late): this result is "
                "dropped, the re-queued copy counts",
                file=sys.stderr,
            )
            return False
        raise e
    return True


def work(
    campaign: Campaign,
    out: str | Path,
    url: str | None = None,
    *,
    index: int = 0,
    on_trial: Callable[[], None] | None = None,
    heartbeat: int | None = HEARTBEAT,
    poll: float = 1.0,
) -> int:
    """One worker: claim and train waiting trials, round-robin over the studies (starting
    at study ``index``), until none is left and none may come back (while another live
    worker trains, its trial is re-queued should it die: this one checks every ``poll``
    seconds); returns how many it trained. ``on_trial`` is called after each. On an RDB
    storage each trial beats every ``heartbeat`` seconds (:mod:`suite.tasks.storage`)."""
    import torch
    from optuna.trial import TrialState

    from .storage import (
        awaited,
        beating,
        claimed_by,
        heartbeat_of,
        held,
        recover,
        worker_attrs,
        working,
    )

    torch.set_num_threads(campaign.threads)
    storage = open_storage(out, url, heartbeat=heartbeat)
    studies, _ = prepare(campaign, storage)
    if studies:
        shift = index % len(studies)
        studies = studies[shift:] + studies[:shift]
    worker = worker_attrs(heartbeat_of(storage))
    problems: dict = {}
    done = 0
    with working(worker):
        while True:
            progressed = False
            for study in studies:
                with held():  # a stop now would leave a claimed trial that names no worker
                    trial_id = _claim(storage, study)
                    if trial_id is not None:
                        claimed_by(storage, trial_id, worker)
                if trial_id is None:
                    continue
                with beating(storage, trial_id):
                    done += _run_claimed(study, trial_id, campaign, problems)
                progressed = True
                if on_trial:
                    on_trial()
            if progressed:
                continue
            for study in studies:  # nothing waits: the trials of workers that died come back
                recover(storage, study)
            live = (TrialState.WAITING, TrialState.RUNNING)
            left = [t for study in studies for t in study.get_trials(deepcopy=False, states=live)]
            if any(t.state == TrialState.WAITING for t in left):
                continue
            if not any(awaited(t, storage) for t in left):
                return done
            time.sleep(poll)


# -- reading a campaign back -------------------------------------------------------------


def records(studies) -> list[dict[str, Any]]:
    """One dict per finished trial of ``studies``: ``preset`` (its name), ``hidden``,
    ``key`` (``preset@hidden`` where the campaign gave sizes), ``method``, ``family``,
    ``point``, ``seed``, ``lr``, ``worker``, ``number``, ``state``, ``time_budget_s`` and
    the :class:`Outcome` fields (``time_to_target_s``: ``inf`` when not reached; a
    campaign written before ``charged_s`` existed charged a miss as its time)."""
    from optuna.trial import TrialState

    out = []
    for study in studies:
        attrs = study.user_attrs
        preset, hidden = split_key(attrs["preset"])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            found = {
                "preset": preset,
                "hidden": hidden,
                "key": attrs["preset"],
                "time_budget_s": attrs.get("time_budget"),
                "method": attrs["method"],
                "family": attrs["family"],
                "point": int(t.user_attrs["point"]),
                "seed": int(t.user_attrs["seed"]),
                "lr": float(t.params["lr"]),
                "number": t.number,
                "state": t.state.name,
                **{k: t.user_attrs.get(k) for k in (*Outcome.__dataclass_fields__, "worker")},
            }
            seconds = found["time_to_target_s"]
            seconds = math.inf if seconds is None else float(seconds)
            if found["charged_s"] is None:
                found["charged_s"] = seconds if "charged_s" not in t.user_attrs else math.inf
            found["time_to_target_s"] = seconds if found["reached"] else math.inf
            out.append(found)
    return out


def choose(
    trials: Sequence[Mapping[str, Any]], higher: Mapping[str, bool] | None = None
) -> dict[tuple[str, str], int]:
    """The chosen lr point of each ``(key, method)`` (``key``: the preset at its size,
    ``preset`` where a trial has none): the most seeds reaching the target, then the
    smallest mean ``charged_s`` over the seeds (the time to target; not reached: the whole
    budget; ``time_to_target_s`` where a trial has no ``charged_s``), then the lower point
    index. Where no seed reaches the target at any point, the best mean ``final_metric``
    decides (``higher[preset]``: larger is better).

    >>> t = [dict(preset="p", method="m", point=i, seed=s, reached=r, time_to_target_s=x,
    ...           final_metric=0.0)
    ...      for i, s, r, x in [(0, 0, True, 5.0), (0, 1, False, 9.0), (1, 0, True, 7.0),
    ...                         (1, 1, True, 8.0), (2, 0, True, 1.0), (2, 1, True, 20.0)]]
    >>> choose(t)
    {('p', 'm'): 1}
    """
    higher = higher or {}
    scores: dict[tuple[str, str], dict[int, list]] = {}
    for t in trials:
        key = (t.get("key", t["preset"]), t["method"])
        per = scores.setdefault(key, {}).setdefault(t["point"], [])
        final = t.get("final_metric")
        final = math.inf if final is None or final != final else float(final)
        sign = -1.0 if higher.get(t["preset"], False) and math.isfinite(final) else 1.0
        charged = float(t.get("charged_s", t["time_to_target_s"]))
        per.append((bool(t["reached"]), charged, sign * final))
    chosen = {}
    for key, points in scores.items():

        def score(item):
            point, runs = item
            reached = sum(r for r, _, _ in runs)
            mean_time = sum(x for _, x, _ in runs) / len(runs) if reached else 0.0
            return (-reached, mean_time, sum(b for _, _, b in runs) / len(runs), point)

        chosen[key] = min(points.items(), key=score)[0]
    return chosen


def target_table(campaign: Campaign, trials: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The rows of ``time_to_target.csv``: per preset, hidden size, method and seed, the
    chosen lr's trial, with how many of the method's trials reached the target
    (``time_to_target_s``: ``None`` when not reached)."""
    chosen = choose(trials, campaign.higher())
    reached: dict[tuple[str, str], int] = {}
    total: dict[tuple[str, str], int] = {}
    for t in trials:
        key = (t.get("key", t["preset"]), t["method"])
        total[key] = total.get(key, 0) + 1
        reached[key] = reached.get(key, 0) + bool(t["reached"])
    rows = []
    for t in trials:
        key = (t.get("key", t["preset"]), t["method"])
        if chosen.get(key) != t["point"]:
            continue
        preset = campaign.preset(key[0])
        rows.append(
            {
                "preset": preset.name,
                "key": key[0],
                "hidden": preset.config.hidden,
                "task": preset.task.name,
                "target": preset.target.describe(),
                "method": t["method"],
                # the optimizer that really ran, by name (geoopt: "Riemannian Adam (geoopt)")
                "optimizer": optimizer_label(parse_method_label(t["method"])[0], preset.config),
                "lr": t["lr"],
                "seed": t["seed"],
                "reached": bool(t["reached"]),
                "time_to_target_s": t["time_to_target_s"] if t["reached"] else None,
                "steps_to_target": t["steps_to_target"],
                "final_metric": t["final_metric"],
                "train_time_s": t["train_time_s"],
                "stopped": t.get("stopped") or ("target" if t["reached"] else ""),
                "trials_reached": reached[key],
                "trials": total[key],
                "budget_steps": preset.config.steps,
                "time_budget_s": preset.budget,
                "status": t["status"],
            }
        )
    order = {label: i for i, label in enumerate(campaign.labels)}
    where = {key: i for i, key in enumerate(campaign.instances())}
    rows.sort(key=lambda r: (where.get(r["key"], len(where)), order[r["method"]], r["seed"]))
    return rows


def campaign_labels(names: Sequence[str], ranks: Sequence[int]) -> list[str]:
    """Method labels of ``names`` (ranked methods once per rank).

    >>> campaign_labels(["projunn_t", "expm", "lstm"], [1, 4])
    ['projunn_t-k1', 'projunn_t-k4', 'expm', 'lstm']
    """
    out = []
    for name in names:
        ranked = name != LSTM and METHODS[name].ranked
        out += [method_label(name, k) for k in ranks] if ranked else [name]
    return out


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, ``None`` when there is none."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the campaign from start to end --------------------------------------------------------


@dataclass
class CampaignResult:
    """How a campaign ended: ``status`` (complete, incomplete, interrupted, terminated),
    its conventional ``exit_code`` (3: a worker died or trials are left), the trial counts
    per state, the files written, and the ``problems`` that make it fail (a worker that
    died, trials no one ran), each a sentence naming the cause."""

    status: str
    exit_code: int
    counts: dict[str, int]
    files: list[Path]
    errors: int = 0
    problems: list[str] = field(default_factory=list)


def _worker_main(
    campaign: Campaign,
    out: str,
    url: str | None,
    index: int,
    plugins: tuple = ((), ()),
    parent: int | None = None,
    heartbeat: int | None = HEARTBEAT,
) -> None:
    """A worker process: SIGTERM stops it like Ctrl-C (its trial goes back in the queue).
    It first loads the parent's ``plugins`` (:func:`suite.plugins.worker_specs`): a
    spawned process starts with the built-in methods only. It dies with its ``parent``
    (SIGTERM: :func:`suite.tasks.storage.die_with_parent`) rather than train on as an
    orphan beside the next run."""
    import signal

    from ..measure.record import Terminated
    from ..plugins import load_in_worker

    load_in_worker(plugins)

    def stop(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    if parent is not None:
        from .storage import die_with_parent, plain_repair_warnings

        die_with_parent(parent)
        plain_repair_warnings()
    try:
        work(campaign, out, url, index=index, heartbeat=heartbeat)
    except (KeyboardInterrupt, Terminated):
        sys.exit(130)


def run_campaign(
    campaign: Campaign,
    out: str | Path,
    *,
    url: str | None = None,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    info: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    heartbeat: int | None = HEARTBEAT,
) -> CampaignResult:
    """Plan the studies, train the waiting trials with ``workers`` processes (the
    calling process itself for one) and write the results folder ``out`` (also when
    interrupted: from the finished trials), its status decided from the final count.
    A worker that dies, or trials left that no one runs, make the result's ``problems``
    (exit status 3); ``heartbeat``: seconds between heartbeats on an RDB storage."""
    import multiprocessing
    import signal

    from tqdm import tqdm

    from ..measure.record import Terminated
    from ..plugins import worker_specs

    out = Path(out)
    storage = open_storage(out, url, heartbeat=heartbeat)
    studies, stale = prepare(campaign, storage, resume=resume)
    if stale and not resume:
        log(f"{stale} trial(s) left running by a stopped campaign: --resume re-runs them")
    state = counts(studies)
    total = sum(state.values()) - state.get("FAIL", 0)
    bar = tqdm(
        total=total,
        initial=state.get("COMPLETE", 0),
        desc="trials",
        unit="trial",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    status = "complete"

    def stop(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    processes: list = []
    problems: list[str] = []
    try:
        if workers == 1:
            try:
                work(campaign, out, url, on_trial=lambda: bar.update(1), heartbeat=heartbeat)
            except Exception as e:  # the worker failed: still write what finished
                import traceback

                traceback.print_exc()
                problems.append(f"the worker failed: {type(e).__name__}: {e}")
        else:
            context = multiprocessing.get_context("spawn")
            for i in range(workers):
                specs = worker_specs()  # the plug-ins' methods, in the workers too
                args = (campaign, str(out), url, i, specs, os.getpid(), heartbeat)
                p = context.Process(target=_worker_main, args=args)
                p.start()
                processes.append(p)
            while any(p.is_alive() for p in processes):
                time.sleep(1.0)
                bar.n = counts(studies).get("COMPLETE", 0)
                bar.refresh()
    except KeyboardInterrupt:
        status = "interrupted"
    except Terminated:
        status = "terminated"
    finally:
        for p in processes:
            if p.is_alive() and status == "terminated":
                p.terminate()
        for p in processes:
            p.join(timeout=60)
        signal.signal(signal.SIGTERM, previous)
        bar.n = counts(studies).get("COMPLETE", 0)
        bar.close()
    found = records(studies)
    if status == "complete":
        left = _left(studies, storage)
        problems += _died(processes, found) + left
        status = "incomplete" if left else status
    state = counts(studies)  # the final count, before the status is written
    files = write_outputs(
        campaign, studies, out, status=status, info={**dict(info or {}), "problems": problems}
    )
    errors = sum(r["status"] == "error" for r in found)
    code = {"interrupted": 130, "terminated": 143}.get(status, 3 if problems else 0)
    return CampaignResult(status, code, state, files, errors, problems)


def _died(processes, found: Sequence[Mapping[str, Any]]) -> list[str]:
    """A sentence for each worker process that ended otherwise than by running out of
    trials (a signal, an error, a stop from outside), saying how many trials it trained."""
    import signal

    host = socket.gethostname()
    out = []
    for i, p in enumerate(processes):
        code = p.exitcode
        if code in (0, None):
            continue
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        elif code == 130:
            how = "was stopped from outside (SIGTERM or Ctrl-C: exit status 130)"
        else:
            how = f"failed with exit status {code} (its error is above)"
        trained = sum(t.get("worker") == f"{host}:{p.pid}" for t in found)
        text = f"worker {i} (pid {p.pid}) {how}"
        if trained:
            text += f" after {trained} trial(s)"
        else:
            text += " before it trained any trial"
            main = getattr(sys.modules.get("__main__"), "__file__", None) or ""
            if code > 0 and main.endswith(".py") and "suite" not in Path(main).parts:
                text += (
                    f"; the workers import {main}: a script that starts a campaign must do it "
                    'under if __name__ == "__main__":'
                )
        out.append(text)
    return out


def _left(studies, storage) -> list[str]:
    """What keeps the campaign from being complete: planned trials not finished, each
    kind with what to do about it (empty: every planned trial finished)."""
    from optuna.trial import TrialState

    from .storage import MAX_RETRY, awaited

    waiting = running = held = missing = 0
    for study in studies:
        live = study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        )
        missing += max(0, int(study.user_attrs.get("planned", 0)) - len({_key(t) for t in live}))
        for t in live:
            if t.state == TrialState.WAITING:
                waiting += 1
            elif t.state == TrialState.RUNNING:
                running += 1
                held += awaited(t, storage)
    out = []
    if waiting:
        out.append(f"no worker ran {waiting} waiting trial(s): run the command again")
    if held:
        out.append(f"{held} trial(s) still train in other live workers (this run did not wait)")
    if running - held:
        out.append(
            f"{running - held} trial(s) were left running by a stopped campaign or another "
            "machine: --resume re-runs them (when no other worker of the campaign runs)"
        )
    if missing:
        out.append(
            f"{missing} trial(s) failed with their worker {MAX_RETRY + 1} times and were "
            "not re-queued again: --resume re-queues them"
        )
    return out


def _rows(campaign: Campaign, trial: Mapping[str, Any]) -> list:
    """The :class:`suite.measure.rows.Row` s of one finished trial: its curve (the target
    metric and ``wall_time`` at each evaluation) and, once, ``reached`` (a miss says which
    budget ran out), ``time_to_target`` and ``steps_to_target`` (when reached: a miss has
    no time) and ``final_metric``. Column ``n`` is the hidden size (also ``hidden=`` in
    ``options``)."""
    from ..measure.rows import Measurement, Row

    preset = campaign.preset(trial.get("key", trial["preset"]))
    config = preset.config
    method, rank = parse_method_label(trial["method"])
    identity = {
        "workload": preset.task.name,
        "method": method,
        "n": config.hidden,
        "k": rank,
        "dtype": config.dtype,
        "device": campaign.device,
        "options": f"preset={preset.name};hidden={config.hidden};lr={trial['lr']:.6g};"
        f"seed={trial['seed']};time_budget={preset.budget};"
        f"point={trial['point']};trial={trial['number']};optimizer={trial['family']};"
        f"target={preset.target.describe()}",
    }
    metric = preset.target.metric
    unit = "%" if metric.endswith("accuracy") else "1"
    found = []
    for step, seconds, value in trial["curve"] or []:
        if value is not None:
            found.append(Measurement(metric, value, unit, step=int(step)))
        found.append(Measurement("wall_time", seconds, "s", step=int(step)))
    status, reason = trial["status"], trial["reason"] or ""
    note = "" if trial["reached"] else f"not reached: {_miss(trial, preset)}"
    found.append(Measurement("reached", float(bool(trial["reached"])), "1", reason=note))
    if trial["reached"]:
        found.append(Measurement("time_to_target", trial["time_to_target_s"], "s"))
        found.append(Measurement("steps_to_target", trial["steps_to_target"], "steps"))
    if trial["final_metric"] is not None:
        found.append(Measurement(f"final_{metric}", trial["final_metric"], unit))
    if status == "error":
        found.append(Measurement.error(reason or "failed", "train"))
    return [Row.of(identity, m) for m in found]


def _miss(trial: Mapping[str, Any], preset: TunePreset) -> str:
    """Which budget a trial that missed its target ran out of."""
    stopped = trial.get("stopped")
    if stopped == "time":
        return f"over the time budget ({preset.budget:g} s of training)"
    if stopped == "error":
        return "the run failed"
    return f"the step budget ({preset.config.steps} steps) ran out"


def write_outputs(
    campaign: Campaign,
    studies,
    out: Path,
    *,
    status: str = "complete",
    info: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the results folder from the finished trials (each file atomically):
    ``time_to_target.csv`` / ``.md``, ``trials.csv`` (every trial's rows), ``results.csv``
    (the chosen lr's rows of the first seed), ``machine.json``, ``tune.json`` and the
    figures (``performance_profile.png``, ``learning_curves.png`` and, with two or more
    hidden sizes, ``time_to_target_vs_n.png``; with the ``report`` extra)."""
    from ..measure import machine, output
    from ..report import tune as report

    found = sorted(
        records(studies), key=lambda t: (t["preset"], t["hidden"], t["method"], t["number"])
    )
    table = target_table(campaign, found)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / report.TABLE, out / "time_to_target.md", out / report.TRIALS]
    report.write_table(table, files[0])
    output.atomic_write_text(files[1], report.markdown_table(table))
    output.write_table([row for t in found for row in _rows(campaign, t)], files[2])
    chosen = choose(found, campaign.higher())
    first = campaign.seeds[0]
    picked = [t for t in found if chosen.get((t["key"], t["method"])) == t["point"]]
    shown = [row for t in picked if t["seed"] == first for row in _rows(campaign, t)]
    files.append(output.write_table(shown, out / "results.csv"))
    description = campaign.describe()
    run = {"command": "tune", "status": status, **description, **dict(info or {})}
    output.write_json(out / "machine.json", {**machine.describe(), "run": run})
    lrs = {f"{t['key']}/{t['method']}": t["lr"] for t in picked if t["seed"] == first}
    output.write_json(out / "tune.json", {**description, "status": status, "chosen_lr": lrs})
    files += [out / "machine.json", out / "tune.json"]
    if table:
        try:
            files += report.figures(out)
        except ImportError as e:
            print(f"no figures: {e.name} is not installed (pip install -e '.[report]')",
                  file=sys.stderr)  # fmt: skip
    return files
