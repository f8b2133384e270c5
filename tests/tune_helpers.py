"""Helpers of the tune fault tests (test_tune_faults.py, test_tune_postgres.py): start
``projunn-bench tune`` as a process, find its workers and the trial one of them trains,
and count how often each planned trial finished."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

from suite.tasks import tune

WAIT = 180.0
"""Seconds a test waits for a state of the campaign before it fails (a hang guard, not a
timing assertion)."""


def start_tune(argv: list[str], log: Path) -> subprocess.Popen:
    """``projunn-bench tune ARGV`` in its own session, stdout and stderr into ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "suite.cli", "tune", *argv],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes (multiprocessing spawn children) of the tune process."""
    try:
        children = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(what: str, check, every: float = 0.05):
    """Poll ``check()`` until it returns something true (returned), at most :data:`WAIT`."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


def running_trial(storage, pids) -> tuple[str, int, int] | None:
    """``(study, trial number, worker pid)`` of a running trial whose worker (``host:pid``)
    is one of ``pids`` and has recorded itself, else ``None``."""
    from optuna.trial import TrialState

    for study in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(study.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        for t in trials:
            pid = str(t.user_attrs.get("worker", "")).rpartition(":")[2]
            if pid.isdigit() and int(pid) in pids and "worker_started" in t.user_attrs:
                return study.study_name, t.number, int(pid)
    return None


def finished(storage, campaign: tune.Campaign) -> tuple[Counter, set, Counter]:
    """How often each planned ``(study, point, seed)`` finished (COMPLETE), the planned
    keys, and the trials per state."""
    from optuna.trial import TrialState

    done, states = Counter(), Counter()
    for study in storage.get_all_studies():
        name = study.study_name
        for t in storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False):
            states[t.state.name] += 1
            if t.state == TrialState.COMPLETE:
                done[name, int(t.user_attrs["point"]), int(t.user_attrs["seed"])] += 1
    planned = {
        (campaign.study_name(p, label), t["point"], t["seed"])
        for p, label in campaign.studies()
        for t in campaign.plan(p, label)
    }
    return done, planned, states


def trial_state(storage, study_name: str, number: int):
    """The frozen trial ``number`` of the study ``study_name``."""
    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return storage.get_trial(trial_id)
