"""``projunn-bench tune`` on a real, throwaway PostgreSQL server (issue 25): two processes
of two workers each start at the same moment on one empty database, one worker is killed
mid-trial, and every planned trial finishes exactly once.

The server is started here on 127.0.0.1 (a free port, a data folder in /tmp) with the
``initdb`` and ``pg_ctl`` of the machine, as an unprivileged user when the tests run as
root (PostgreSQL refuses root). Without the binaries the tests skip with the install line.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

# .ci/run sets it: there the binaries and the driver are installed, and a skip is a failure
REQUIRED = os.environ.get("PROJUNN_BENCH_REQUIRE_POSTGRES") == "1"
INSTALL = "apt-get install postgresql (initdb and pg_ctl on PATH or in /usr/lib/postgresql/*/bin)"


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(f"PROJUNN_BENCH_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import optuna
    import psycopg
except ImportError as e:
    _skip(f'{e.name} is not installed: pip install -e ".[tune]"')

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


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A PostgreSQL server in ``folder`` on 127.0.0.1:``port``, user ``bench`` (trust)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    pass
            if self.user is None:
                _skip("running as root and no unprivileged user (postgres, nobody)")
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)
        self.port = None

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        as_user = {}
        if self.user is not None:
            as_user = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"}
        env["HOME"] = str(self.folder)
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=self.folder, timeout=120, **as_user
        )

    def start(self) -> None:
        made = self._run(
            self.initdb, "-D", str(self.data), "-U", "bench", "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F -c max_connections=60"
            started = self._run(
                self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                str(self.folder / "server.log"), "-w", "-t", "120", "start",
            )  # fmt: skip
            if started.returncode == 0:
                return
        log = (self.folder / "server.log").read_text(errors="replace")
        raise AssertionError(f"PostgreSQL did not start: {started.stderr}\n{log[-2000:]}")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://bench@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def version(self) -> str:
        with psycopg.connect(self.url()) as db:
            return db.execute("SELECT version()").fetchone()[0]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server for this module (skipped without the binaries)."""
    if not (_binary("initdb") and _binary("pg_ctl")):
        _skip(f"no PostgreSQL server binaries: {INSTALL}")
    folder = Path(tempfile.mkdtemp(prefix="projunn-pg-"))
    server = Server(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _open_at_once(url: str, opener, count: int = 4) -> list[str]:
    """``opener(url)`` in ``count`` threads released at the same moment; their errors."""
    barrier = threading.Barrier(count)
    errors: list[str] = []

    def one():
        barrier.wait()
        try:
            opener(url)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def test_many_first_opens_of_an_empty_database_at_once_all_succeed(postgres):
    raced = _open_at_once(postgres.create_database("plain"), optuna.storages.RDBStorage)
    for name in ("retried_1", "retried_2"):
        url = postgres.create_database(name)
        assert _open_at_once(url, faults.rdb_storage) == []
        assert faults.rdb_storage(url).get_all_studies() == []
    print(f"\nOptuna alone, 4 first opens at once: {len(raced)} failed {raced[:1]}")


def test_two_processes_of_two_workers_and_a_killed_worker(postgres, tmp_path):
    """The acceptance run: 2 processes x 2 workers, one empty database, started at the
    same moment; one worker SIGKILLed mid-trial; every planned trial finishes once."""
    url = postgres.create_database("campaign")
    campaign = tune.Campaign(
        ("copy-quick",),
        ("expm", "landing"),
        trials=2,
        seeds=(0, 1),
        ranges={**tune.LR_RANGES, "rmsprop": (1e-7, 2e-7)},  # never reached: each trial
        time_budget=1.5,  # trains its whole 1.5 s budget
    )
    argv = ["copy-quick", "--method", "expm", "landing", "--trials", "2", "--seeds", "0", "1",
            "--lr-range", "rmsprop=1e-7:2e-7", "--time-budget", "1.5", "--workers", "2",
            "--storage", url, "--heartbeat", "1", "--no-progress"]  # fmt: skip
    started = time.monotonic()
    procs = [start_tune([*argv, "--out", str(tmp_path / f"p{i}")], tmp_path / f"p{i}.log")
             for i in range(2)]  # fmt: skip
    try:
        both = wait_for(
            "four workers", lambda: all(len(workers_of(p)) == 2 for p in procs) and procs
        )
        workers = {p.pid: [w.pid for w in workers_of(p)] for p in both}
        storage = wait_for("the schema", lambda: _opened(url))
        study, number, pid = wait_for(
            "a trial in training", lambda: running_trial(storage, set(workers[procs[0].pid]))
        )
        psutil.Process(pid).kill()
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.monotonic() - started
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    index = workers[procs[0].pid].index(pid)
    assert codes == [3, 0], logs  # the process whose worker died says so
    assert f"worker {index} (pid {pid}) was killed by SIGKILL" in logs[0]
    assert not any("Traceback" in log or "UniqueViolation" in log for log in logs), logs

    killed = trial_state(storage, study, number)
    assert killed.state == TrialState.FAIL  # killed mid-trial, failed by the heartbeat ...
    done, planned, states = finished(storage, campaign)
    assert set(done) == planned and set(done.values()) == {1}  # ... and every trial once
    assert states == {"COMPLETE": len(planned), "FAIL": 1}
    retried = [
        t
        for s in storage.get_all_studies()
        for t in storage.get_all_trials(storage.get_study_id_from_name(s.study_name))
        if t.system_attrs.get("retry_history") == [number] and s.study_name == study
    ]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    ran_by = {
        t.user_attrs["worker"].rpartition(":")[2]
        for s in storage.get_all_studies()
        for t in storage.get_all_trials(storage.get_study_id_from_name(s.study_name))
        if t.state == TrialState.COMPLETE
    }
    for i in range(2):
        assert json.loads((tmp_path / f"p{i}" / "tune.json").read_text())["status"] == "complete"
    print(
        f"\n{postgres.version().split(',')[0]}: {len(planned)} trials, 2 processes x 2 "
        f"workers ({len(ran_by)} of them finished trials), 1 worker SIGKILLed mid-trial (trial "
        f"{number} of {study}: FAIL, re-queued by the heartbeat, run once by another "
        f"worker); each planned trial COMPLETE exactly once: {sorted(set(done.values()))}; "
        f"exit statuses {codes}; {wall:.0f} s"
    )


def _opened(url: str):
    """The campaign's storage once its schema and studies exist, else ``None``."""
    try:
        storage = faults.rdb_storage(url, heartbeat=None)
        return storage if storage.get_all_studies() else None
    except Exception:
        return None
