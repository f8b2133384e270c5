"""``projunn-bench tune`` under faults (issue 25; issue 24 item 4): a torn journal, a
parent killed under its workers, a worker killed mid-trial, workers that crash, a trial
left running by another machine, a late heartbeat, a database whose schema two processes
create at once, a missing PostgreSQL driver. The same on a real PostgreSQL server:
test_tune_postgres.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402
from tune_helpers import (  # noqa: E402
    finished,
    running_trial,
    start_tune,
    trial_state,
    wait_for,
    workers_of,
)

from suite.tasks import storage as faults  # noqa: E402
from suite.tasks import tune  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _campaign(labels=("expm",), trials=2, seeds=(0, 1), **kw):
    return tune.Campaign(("copy-tiny",), tuple(labels), trials=trials, seeds=seeds, **kw)


def _records(path: Path) -> list[dict]:
    """Every line of a journal file, parsed (fails on a torn or glued one)."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


# -- a torn journal ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_journal(tmp_path_factory):
    """A finished campaign folder (copy-tiny, expm, 2 points x 2 seeds) and its trials."""
    out = tmp_path_factory.mktemp("finished")
    result = tune.run_campaign(_campaign(), out, progress=False)
    assert result.status == "complete" and result.exit_code == 0
    studies, _ = tune.prepare(_campaign(), tune.open_storage(out))
    trials = {t.number: (t.state, t.values) for t in studies[0].get_trials()}
    return out, trials


@pytest.mark.parametrize("cut", ["7 bytes", "60 %"])
def test_a_torn_journal_is_repaired_and_its_finished_trials_kept(finished_journal, cut, tmp_path):
    source, before = finished_journal
    out = tmp_path / "campaign"
    shutil.copytree(source, out)
    journal = out / tune.JOURNAL
    size = journal.stat().st_size
    keep = size - 7 if cut == "7 bytes" else size * 60 // 100
    if journal.read_bytes()[keep - 1 : keep] == b"\n":  # 60 % fell between two records
        keep += 10
    with open(journal, "rb+") as f:
        f.truncate(keep)
    intact = journal.read_bytes()[: journal.read_bytes().rfind(b"\n") + 1]
    torn = keep - len(intact)
    assert torn > 0  # the cut tore a record

    with pytest.warns(faults.JournalRepairWarning) as caught:
        result = tune.run_campaign(_campaign(), out, progress=False)
    (message,) = [str(w.message) for w in caught]
    assert str(journal) in message and f"{torn} byte(s)" in message and "1 torn record" in message
    assert result.status == "complete" and result.exit_code == 0 and not result.problems

    records = _records(journal)  # nothing glued onto the torn line: every line parses
    assert journal.read_bytes().startswith(intact)
    studies, _ = tune.prepare(_campaign(), tune.open_storage(out))
    done, planned, states = finished(tune.open_storage(out), _campaign())
    assert set(done) == planned and set(done.values()) == {1}  # each planned trial once
    kept = [t for t in studies[0].get_trials() if t.number in before]
    for t in kept:  # what finished before the cut is kept as it was
        if t.state == TrialState.COMPLETE:
            assert (t.state, t.values) == before[t.number]
    assert states["COMPLETE"] == 4 and states.get("RUNNING", 0) == states.get("WAITING", 0) == 0
    assert len(records) > len(intact.splitlines())
    again = tune.run_campaign(_campaign(), out, progress=False)  # the file stays readable
    assert again.status == "complete" and again.exit_code == 0


def test_records_glued_onto_a_torn_line_by_an_earlier_version_are_cut_back(
    finished_journal, tmp_path
):
    source, _ = finished_journal
    journal = tmp_path / tune.JOURNAL
    shutil.copy(source / tune.JOURNAL, journal)
    lines = journal.read_bytes().splitlines(keepends=True)
    torn = lines[-1][:-7]
    glued = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"note":"glued"}}\n'
    later = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"then":1}}\n'
    journal.write_bytes(b"".join(lines[:-1]) + torn + glued + later)  # as the old code did
    with pytest.raises(ValueError):  # Optuna alone cannot read it
        optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ).get_all_studies()
    with pytest.warns(faults.JournalRepairWarning, match="glued onto them"):
        storage = tune.open_storage(tmp_path)
    assert journal.read_bytes() == b"".join(lines[:-1]) + glued + later
    (study,) = storage.get_all_studies()
    assert study.user_attrs["note"] == "glued" and study.user_attrs["then"] == 1  # kept


def test_a_torn_tail_is_cut_before_the_next_append(tmp_path):
    storage = tune.open_storage(tmp_path)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    journal = tmp_path / tune.JOURNAL
    with open(journal, "ab") as f:  # a writer killed mid-record, while this one runs on
        f.write(b'{"op_code":2,"worker_id":"x","study_id":0,"user_at')
    with pytest.warns(faults.JournalRepairWarning, match="at its end"):
        storage.set_study_user_attr(study_id, "after", 1)
    assert [r["op_code"] for r in _records(journal)] == [0, 2]
    assert storage.get_study_user_attrs(study_id) == {"after": 1}


def test_a_damaged_line_inside_the_journal_is_an_error_naming_it(tmp_path):
    journal = tmp_path / tune.JOURNAL
    journal.write_bytes(b'{"op_code":0}\n{"op_code":5,"x":[1{"op_code":6,"y":\n{"op_code":1}\n')
    with pytest.raises(tune.CampaignError, match=r"campaign.journal: line 2 .*damaged"):
        faults.repair_journal(journal)
    assert journal.read_bytes().startswith(b'{"op_code":0}\n{"op_code":5')  # left as it was
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert faults.repair_journal(empty) == (0, 0)
    assert faults.repair_journal(tmp_path / "missing") == (0, 0)


# -- dead workers, dead parents ------------------------------------------------------------

# trials that never reach the target: each trains its whole (short) time budget
SLOW = ["--lr-range", "rmsprop=1e-7:2e-7", "--time-budget", "1.5", "--no-progress"]


def _slow_campaign(labels=("expm", "landing")):
    return tune.Campaign(
        ("copy-quick",),
        labels,
        trials=2,
        seeds=(0, 1),
        ranges={**tune.LR_RANGES, "rmsprop": (1e-7, 2e-7)},
        time_budget=1.5,
    )


def _argv(out: Path, *extra: str) -> list[str]:
    return ["copy-quick", "--method", "expm", "landing", "--trials", "2", "--seeds", "0", "1",
            *SLOW, "--out", str(out), *extra]  # fmt: skip


def _running_pids(storage) -> list[int]:
    """The worker pid (``host:pid``) of every running trial (0 where none is recorded)."""
    pids = []
    for study in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(study.study_name)
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            pid = str(t.user_attrs.get("worker", "")).rpartition(":")[2]
            pids.append(int(pid) if pid.isdigit() else 0)
    return pids


def test_workers_die_with_their_parent_and_their_trials_go_back(tmp_path):
    out = tmp_path / "campaign"
    proc = start_tune(_argv(out, "--workers", "2"), tmp_path / "log")
    workers = []
    try:
        workers = wait_for("two workers", lambda: len(workers_of(proc)) == 2 and workers_of(proc))
        wait_for("the journal", lambda: (out / tune.JOURNAL).is_file())
        storage = tune.open_storage(out)
        wait_for("a trial in training", lambda: running_trial(storage, {w.pid for w in workers}))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"workers outlived their parent: {alive}"
    finally:
        proc.kill()
        for w in workers:
            if w.is_running():
                w.kill()
    done, planned, states = finished(storage, _slow_campaign())
    # Their trials went back in the queue; a worker stopped before it could (on a loaded
    # machine the parent's death can reach it between claiming a trial and recording
    # itself) leaves its trial held by a dead process, which the next run re-queues ...
    held = {pid for pid in _running_pids(storage)}
    assert held <= {w.pid for w in workers}, f"trials held by live or unknown workers: {held}"
    assert all(n == 1 for n in done.values())
    result = tune.run_campaign(_slow_campaign(), out, progress=False)  # ... and run once
    assert (result.status, result.exit_code) == ("complete", 0), result.problems
    done, planned, states = finished(storage, _slow_campaign())
    assert set(done) == planned and set(done.values()) == {1}


def test_a_worker_killed_mid_trial_is_named_and_its_trial_runs_once(tmp_path):
    out = tmp_path / "campaign"
    log = tmp_path / "log"
    proc = start_tune(_argv(out, "--workers", "2"), log)
    try:
        workers = wait_for("two workers", lambda: len(workers_of(proc)) == 2 and workers_of(proc))
        wait_for("the journal", lambda: (out / tune.JOURNAL).is_file())
        storage = tune.open_storage(out)
        study, number, pid = wait_for(
            "a trial in training", lambda: running_trial(storage, {w.pid for w in workers})
        )
        psutil.Process(pid).kill()
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 3, text
    index = [w.pid for w in workers].index(pid)
    assert f"worker {index} (pid {pid}) was killed by SIGKILL" in text
    killed = trial_state(storage, study, number)
    assert killed.state == TrialState.FAIL  # it was killed mid-trial ...
    done, planned, states = finished(storage, _slow_campaign())
    assert set(done) == planned and set(done.values()) == {1}  # ... and ran again, once
    assert states.get("RUNNING", 0) == states.get("WAITING", 0) == 0
    assert json.loads((out / "tune.json").read_text())["status"] == "complete"


def test_a_script_without_a_main_guard_crashing_its_workers_fails_naming_it(tmp_path):
    script = tmp_path / "campaign_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            from suite.tasks import tune
            campaign = tune.Campaign(("copy-tiny",), ("expm",), trials=1, seeds=(0, 1))
            result = tune.run_campaign(campaign, {str(tmp_path / "out")!r}, workers=2,
                                       progress=False)
            print("STATUS", result.status, result.exit_code)
            for problem in result.problems:
                print("PROBLEM", problem)
            sys.exit(result.exit_code)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "STATUS incomplete 3" in proc.stdout
    problems = [line for line in proc.stdout.splitlines() if line.startswith("PROBLEM")]
    assert any("no worker ran 2 waiting trial(s)" in p for p in problems), problems
    crashed = [p for p in problems if "failed with exit status 1" in p]
    assert all("before it trained any trial" in p for p in crashed)
    assert len(crashed) == 2 and all('if __name__ == "__main__"' in p for p in crashed)
    assert str(script) in crashed[0]
    status = json.loads((tmp_path / "out" / "tune.json").read_text())["status"]
    assert status == "incomplete"


def test_a_failing_in_process_worker_is_named_and_fails_the_campaign(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the plug-in broke")

    monkeypatch.setattr(tune, "run_trial", broken)
    with pytest.raises(RuntimeError):  # work() itself lets it through ...
        tune.work(_campaign(), tmp_path / "direct")
    result = tune.run_campaign(_campaign(), tmp_path / "out", progress=False)
    assert result.exit_code == 3 and result.status == "incomplete"  # ... the campaign names it
    assert "the worker failed: RuntimeError: the plug-in broke" in result.problems
    assert any("no worker ran 4 waiting trial(s)" in p for p in result.problems)


# -- the status and --resume ---------------------------------------------------------------


def _claim_as(storage, study, worker: str) -> int:
    """Claim a waiting trial of ``study`` as the worker ``worker`` (``host:pid``)."""
    trial_id = tune._claim(storage, study)
    storage.set_trial_user_attr(trial_id, "worker", worker)
    return trial_id


def test_the_status_is_written_after_the_final_count(tmp_path):
    campaign = _campaign()
    storage = tune.open_storage(tmp_path)
    studies, _ = tune.prepare(campaign, storage)
    _claim_as(storage, studies[0], "another-machine:4242")  # left running by a killed run
    result = tune.run_campaign(campaign, tmp_path, progress=False)
    assert result.status == "incomplete" and result.exit_code == 3
    assert result.counts == {"COMPLETE": 3, "RUNNING": 1}
    assert any("1 trial(s) were left running" in p and "--resume" in p for p in result.problems)
    assert json.loads((tmp_path / "tune.json").read_text())["status"] == "incomplete"
    machine = json.loads((tmp_path / "machine.json").read_text())["run"]
    assert machine["status"] == "incomplete" and machine["problems"] == result.problems
    result = tune.run_campaign(campaign, tmp_path, resume=True, progress=False)
    assert result.status == "complete" and result.exit_code == 0 and not result.problems
    assert json.loads((tmp_path / "tune.json").read_text())["status"] == "complete"


def test_a_dead_local_workers_trial_is_rerun_and_a_live_ones_left_to_it(tmp_path):
    campaign = _campaign()
    storage = tune.open_storage(tmp_path)
    (study,) = tune.prepare(campaign, storage)[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = faults.socket.gethostname()
    gone = _claim_as(storage, study, f"{host}:{dead.pid}")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        held = _claim_as(storage, study, f"{host}:{live.pid}")  # a live worker's trial
        started = psutil.Process(live.pid).create_time()
        storage.set_trial_user_attr(held, "worker_started", started)
        assert faults.worker_alive(storage.get_trial(held).user_attrs) is True
        assert faults.worker_alive(storage.get_trial(gone).user_attrs) is False
        _, stale = tune.prepare(campaign, storage, resume=True)
        assert stale == 0  # the dead worker's trial was re-queued, the live one's left alone
        assert storage.get_trial(gone).state == TrialState.FAIL
        assert storage.get_trial(held).state == TrialState.RUNNING
        storage.set_trial_user_attr(held, "worker_started", started - 100)  # a reused pid
        assert faults.worker_alive(storage.get_trial(held).user_attrs) is False
    finally:
        live.kill()
        live.wait()
    copy = study.get_trials(states=(TrialState.WAITING,))
    retried = [t for t in copy if t.system_attrs.get("failed_trial") is not None]
    assert len(retried) == 1 and set(retried[0].user_attrs) == set(faults.PLAN_KEYS)
    mine = faults.worker_attrs(None)  # this process, in a worker loop that has ended
    ended = _claim_as(storage, study, mine["worker"])
    for key, value in mine.items():
        storage.set_trial_user_attr(ended, key, value)
    with faults.working(mine):
        assert faults.worker_alive(storage.get_trial(ended).user_attrs) is True
    numbers = [storage.get_trial(i).number for i in (held, ended)]  # both workers are gone
    assert faults.recover(storage, study) == numbers


def _one_claimed(out: Path):
    """A campaign of one trial in ``out``, its storage and study, and the trial claimed."""
    campaign = _campaign(seeds=(0,), trials=1)
    storage = tune.open_storage(out)
    (study,) = tune.prepare(campaign, storage)[0]
    return campaign, storage, study, tune._claim(storage, study)


def test_a_result_told_after_its_trial_was_requeued_is_dropped(tmp_path, monkeypatch, capsys):
    campaign, storage, study, trial_id = _one_claimed(tmp_path)
    real = tune.run_trial

    def stale_meanwhile(*args, **kwargs):
        outcome = real(*args, **kwargs)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)  # another worker's recover
        return outcome

    monkeypatch.setattr(tune, "run_trial", stale_meanwhile)
    assert tune._run_claimed(study, trial_id, campaign, {}) is False
    assert "this result is dropped" in capsys.readouterr().err
    assert storage.get_trial(trial_id).state == TrialState.FAIL


def test_a_second_stop_during_the_requeue_loses_no_trial(tmp_path, monkeypatch):
    # a worker stopped twice (CI: a parent-death signal, then a watch's): the second
    # SIGTERM came after the trial was failed and before its copy was queued
    from suite.measure.record import Terminated

    campaign, storage, study, trial_id = _one_claimed(tmp_path)
    tell = study.tell

    def stopped(*args, **kwargs):
        raise Terminated

    def tell_then_stop_again(*args, **kwargs):
        told = tell(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return told

    monkeypatch.setattr(tune, "run_trial", stopped)
    monkeypatch.setattr(study, "tell", tell_then_stop_again)
    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        with pytest.raises(Terminated):
            tune._run_claimed(study, trial_id, campaign, {})
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = storage.get_trial(trial_id)
    assert failed.state == TrialState.FAIL
    (copy,) = study.get_trials(states=(TrialState.WAITING,))
    assert copy.user_attrs == {k: failed.user_attrs[k] for k in faults.PLAN_KEYS}


# -- relational databases ------------------------------------------------------------------


def test_a_stale_trial_is_failed_and_requeued_by_optunas_heartbeat(tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 't.db'}"
    storage = tune.open_storage(tmp_path, url, heartbeat=2)
    assert storage.heartbeat_interval == 2 and storage.grace_period == 6
    campaign = _campaign(seeds=(0,))
    studies, _ = tune.prepare(campaign, storage)
    trial_id = tune._claim(storage, studies[0])
    with faults.beating(storage, trial_id):
        for key, value in faults.worker_attrs(2).items():
            storage.set_trial_user_attr(trial_id, key, value)
    trial = storage.get_trial(trial_id)
    assert faults.awaited(trial, storage)  # it beats: an idle worker waits for it
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as db:  # its last beat, an hour ago: the worker is gone
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01'"))
    assert faults.recover(storage, studies[0]) == [trial.number]
    assert storage.get_trial(trial_id).state == TrialState.FAIL
    waiting = studies[0].get_trials(states=(TrialState.WAITING,))
    (copy,) = [t for t in waiting if "retry_history" in t.system_attrs]
    assert copy.system_attrs["retry_history"] == [trial.number]
    assert set(copy.user_attrs) == set(faults.PLAN_KEYS)  # not the dead worker's name
    assert tune.work(campaign, tmp_path, url, heartbeat=2) == 2  # the copy and the other
    done, planned, _ = finished(storage, campaign)
    assert set(done) == planned and set(done.values()) == {1}


def test_a_copy_requeued_by_another_process_is_trained_on_an_rdb_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    campaign = _campaign(trials=1, seeds=(0,))
    here = tune.open_storage(tmp_path, url)
    (study,) = tune.prepare(campaign, here)[0]  # this process has read the study
    there = tune.open_storage(tmp_path, url)  # another process ...
    (theirs,) = tune.prepare(campaign, there)[0]
    lost = tune._claim(there, theirs)
    there.set_trial_state_values(lost, TrialState.FAIL)  # ... re-queues a copy
    faults._retry_callback()(theirs, there.get_trial(lost))
    copy = tune._claim(here, study)
    assert copy is not None and copy != lost
    assert tune._run_claimed(study, copy, campaign, {}) is True  # once: KeyError (the cache)
    assert here.get_trial(copy).state == TrialState.COMPLETE


def test_a_schema_created_by_another_process_at_the_same_moment_is_retried(tmp_path, monkeypatch):
    import sqlalchemy.exc

    real = optuna.storages.RDBStorage
    calls = []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:
            raise sqlalchemy.exc.IntegrityError(
                "CREATE TYPE studydirection AS ENUM ('NOT_SET', 'MINIMIZE', 'MAXIMIZE')",
                {},
                Exception('duplicate key value violates unique constraint "pg_type_typname"'),
            )
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    url = f"sqlite:///{tmp_path / 't.db'}"
    storage = faults.rdb_storage(url)
    assert len(calls) == 3 and storage.get_all_studies() == []

    def refused(url, **kwargs):
        raise sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", refused)
    with pytest.raises(sqlalchemy.exc.ProgrammingError):  # not a race: not retried
        faults.rdb_storage(url)


def test_postgresql_urls_take_the_installed_driver_or_name_the_package(monkeypatch, capsys):
    from suite.cli import main as cli

    installed = {"psycopg": True, "psycopg2": True}
    monkeypatch.setattr(faults, "_installed", lambda module: installed[module])
    assert faults.rdb_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert faults.rdb_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert faults.rdb_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    installed["psycopg"] = False
    assert faults.rdb_url("postgresql://h/db") == "postgresql+psycopg2://h/db"
    installed["psycopg2"] = False
    with pytest.raises(tune.CampaignError, match=r'pip install "psycopg\[binary\]"'):
        faults.rdb_url("postgresql://h/db")
    with pytest.raises(SystemExit) as e:
        cli(["tune", "copy-tiny", "--storage", "postgresql://u@127.0.0.1:1/db"])
    assert e.value.code == 2
    assert 'needs a driver, and none is installed: pip install "psycopg[binary]"' in (
        capsys.readouterr().err
    )
    with pytest.raises(tune.CampaignError, match="psycopg2 is not installed: pip install psycopg2"):
        faults.rdb_storage("postgresql+psycopg2://u@127.0.0.1:1/db")


# -- the workers' parent-death signal --------------------------------------------------------


def test_die_with_parent_signals_a_process_whose_parent_is_gone_once(tmp_path):
    # twice (the parent-death signal and a watch of the parent pid) cut the first stop's
    # re-queue short (test_a_second_stop_during_the_requeue_loses_no_trial)
    report = tmp_path / "signals"
    code = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", '''
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from suite.tasks.storage import die_with_parent
        got = []
        signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
        die_with_parent(os.getppid(), every=0.05)
        print(os.getpid(), flush=True)
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # twenty watch periods: a second signal would have come
        open({str(report)!r}, "w").write(str(len(got)))
        '''], stdout=subprocess.PIPE, text=True)
        print(child.stdout.readline().strip(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.wait()
    try:
        psutil.wait_procs([psutil.Process(pid)], timeout=90)
    except psutil.NoSuchProcess:
        pass
    assert report.read_text() == "1", "the orphan got no signal, or more than one"
