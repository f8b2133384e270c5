"""The campaign storage of ``projunn-bench tune`` and the faults around it: a journal file
torn by a crash, a database two processes create at once, workers that die.

* **Journal** (:func:`journal_storage`): Optuna's ``JournalStorage`` on a file whose torn
  records are dropped. A process killed while appending leaves a last line without its
  newline; Optuna then reads the file, but the next record would be glued onto that line
  and make the file unreadable. The file is repaired when it is opened, and again before
  every append (under the journal's lock), with a :class:`JournalRepairWarning` naming the
  file and what was dropped. Records already glued by an earlier version are cut back to
  the complete record at their end.
* **RDB** (:func:`rdb_storage`): ``postgresql://`` URLs take the installed driver
  (psycopg 3, else psycopg2; neither: an error naming the package); the first open of an
  empty database is retried when another process creates the schema at the same moment;
  workers record Optuna heartbeats, and a running trial whose worker has not beaten for
  :data:`GRACE_BEATS` intervals is failed and re-queued by Optuna's
  ``RetryHeartbeatStaleTrialCallback`` (:func:`recover`).
* **Workers** (:func:`die_with_parent`): a worker process gets SIGTERM when its parent
  dies (Linux ``prctl(PR_SET_PDEATHSIG)``, a watch of the parent pid elsewhere), so its
  trial goes back in the queue instead of running on as an orphan. The journal has no
  heartbeat: there a running trial whose worker process on this machine has ended is
  re-queued the same way.

>>> rdb_url("sqlite:///t.db")
'sqlite:///t.db'
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

__all__ = [
    "GRACE_BEATS",
    "HEARTBEAT",
    "MAX_RETRY",
    "PLAN_KEYS",
    "JournalRepairWarning",
    "beating",
    "claimed_by",
    "die_with_parent",
    "held",
    "journal_storage",
    "rdb_storage",
    "rdb_url",
    "recover",
    "repair_journal",
    "worker_alive",
    "worker_attrs",
    "working",
]

HEARTBEAT = 10
"""Seconds between the heartbeats of a worker's trial on an RDB storage."""
GRACE_BEATS = 3
"""A running trial whose worker has not beaten for this many intervals is re-queued."""
MAX_RETRY = 3
"""How often a trial whose worker died is re-queued before it is left failed."""
PLAN_KEYS = ("point", "seed", "u")
"""The trial attributes that say what to train (a re-queued copy keeps only these)."""
SCHEMA_TRIES = 8
"""Attempts at opening an RDB storage whose schema another process is creating."""
_RECORD = b'{"op_code"'  # how every journal record starts (Optuna writes op_code first)


class JournalRepairWarning(UserWarning):
    """A journal file held torn records (a process killed while writing) that were dropped."""


# -- the journal ---------------------------------------------------------------------------


def _complete_end(f, size: int) -> int:
    """The offset just past the last newline of the binary file ``f`` (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        at = f.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _drop_torn_tail(path: Path) -> int:
    """Cut ``path`` after its last complete line; the bytes dropped. Hold the lock."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        end = _complete_end(f, size)
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
        return size - end


def _glued(data: bytes) -> bool:
    """Whether a record of ``data`` starts inside a line (was glued onto a torn one)."""
    starts = data.count(b"\n" + _RECORD) + data.startswith(_RECORD)
    return data.count(_RECORD) > starts


def _unglue(data: bytes, path: Path) -> tuple[bytes, list[bytes]]:
    """``data`` (complete lines) with each line cut to the record that ends it, and the
    torn pieces cut off; ``CampaignError`` when that record is not valid JSON."""
    from .tune import CampaignError

    kept, dropped = [], []
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        at = line.rfind(_RECORD)
        if at > 0:
            dropped.append(line[:at])
            line = line[at:]
            try:
                json.loads(line)
            except ValueError:
                raise CampaignError(
                    f"{path}: line {number} holds no complete journal record; the file is "
                    "damaged beyond a torn write (restore it from a copy, or use a new --out)"
                ) from None
        kept.append(line)
    return b"".join(kept), dropped


def _journal_lock(path: Path):
    """The lock Optuna's ``JournalFileBackend`` takes on ``path`` by default."""
    from optuna.storages.journal import JournalFileSymlinkLock

    return JournalFileSymlinkLock(str(path))


def _warn_dropped(path: Path, dropped: int, records: int, where: str) -> None:
    warnings.warn(
        f"{path}: dropped {records} torn record(s), {dropped} byte(s), {where} (a process "
        "was killed while writing it); the complete records before it are kept",
        JournalRepairWarning,
        stacklevel=3,
    )


def repair_journal(path: str | Path) -> tuple[int, int]:
    """Drop the torn records of the journal file ``path`` (under its lock): a last line
    without its newline, and the torn start of a line a later record was glued onto.
    Returns ``(bytes, records)`` dropped and warns (:class:`JournalRepairWarning`) when
    anything was.

    >>> import tempfile, warnings
    >>> p = Path(tempfile.mkdtemp()) / "j"
    >>> _ = p.write_bytes(b'{"op_code":0}\\n{"op_code":1}\\n{"op_code":5,"x":[1.')
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     repair_journal(p), p.read_bytes(), "dropped 1 torn record(s)" in str(w[0].message)
    ((20, 1), b'{"op_code":0}\\n{"op_code":1}\\n', True)
    >>> repair_journal(p)
    (0, 0)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    if not data or (data.endswith(b"\n") and not _glued(data)):
        return 0, 0
    lock = _journal_lock(path)
    lock.acquire()
    try:
        data = path.read_bytes()  # again, now that no one writes
        end = data.rfind(b"\n") + 1
        tail = data[end:]
        body, pieces = _unglue(data[:end], path) if _glued(data[:end]) else (data[:end], [])
        if pieces:  # rewrite the whole file through a copy
            temp = path.with_name(f".{path.name}.repair-{os.getpid()}")
            temp.write_bytes(body)
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(temp, path)
        elif tail:
            with open(path, "rb+") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
    finally:
        lock.release()
    dropped = len(tail) + sum(map(len, pieces))
    records = bool(tail) + sum(max(1, piece.count(_RECORD)) for piece in pieces)
    if dropped:
        places = ["where later records were glued onto them"] * bool(pieces)
        where = " and ".join(places + ["at its end"] * bool(tail))
        _warn_dropped(path, dropped, records, where)
    return dropped, records


@functools.cache
def _backend_class():
    """A ``JournalFileBackend`` that drops a torn last line before it appends."""
    from optuna.storages.journal import JournalFileBackend

    class RepairingJournalFileBackend(JournalFileBackend):
        def __init__(self, file_path: str) -> None:
            self._journal_path = Path(file_path)
            self._journal_lock = _journal_lock(self._journal_path)
            super().__init__(file_path, lock_obj=self._journal_lock)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            self._journal_lock.acquire()
            try:
                dropped = _drop_torn_tail(self._journal_path)
                if dropped:
                    _warn_dropped(self._journal_path, dropped, 1, "at its end")
                with open(self._journal_path, "ab") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                self._journal_lock.release()

    return RepairingJournalFileBackend


def journal_storage(path: str | Path):
    """Optuna's ``JournalStorage`` on the file ``path``, its torn records dropped first
    (:func:`repair_journal`) and before every append."""
    import optuna

    repair_journal(path)
    return optuna.storages.JournalStorage(_backend_class()(str(path)))


# -- relational databases ------------------------------------------------------------------

_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
_INSTALL = 'pip install "psycopg[binary]" (or the tune extra: pip install -e ".[tune]")'


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def rdb_url(url: str) -> str:
    """``url`` with a bare ``postgresql://`` (or ``postgres://``) scheme bound to the
    installed driver, psycopg 3 first; ``CampaignError`` naming the package when there is
    none. Other URLs are returned as they are."""
    from .tune import CampaignError

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for module, dialect in _DRIVERS:
        if _installed(module):
            return f"{dialect}://{rest}"
    raise CampaignError(f"a PostgreSQL storage needs a driver, and none is installed: {_INSTALL}")


def _retry_callback():
    """Optuna's retry of heartbeat-stale trials (``RetryHeartbeatStaleTrialCallback``; its
    name before Optuna 4.9: ``RetryFailedTrialCallback``), the copy carrying only the plan
    (:data:`PLAN_KEYS`), not the dead worker's name and liveness."""
    import optuna

    storages = optuna.storages
    base = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    base = base or storages.RetryFailedTrialCallback

    class Retry(base):
        def __call__(self, study, trial) -> None:
            trial = copy.copy(trial)
            trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in PLAN_KEYS}
            super().__call__(study, trial)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return Retry(max_retry=MAX_RETRY)


def _schema_race(error: BaseException) -> bool:
    """Whether ``error`` is what a process gets when another one creates the same
    schema at the same moment (a duplicate type, table or version row)."""
    import sqlalchemy.exc

    if not isinstance(error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
        return False
    text = str(error).lower()
    return "already exists" in text or "duplicate" in text or "unique" in text


def rdb_storage(url: str, heartbeat: int | None = HEARTBEAT):
    """Optuna's ``RDBStorage`` at ``url`` (:func:`rdb_url`), with heartbeats every
    ``heartbeat`` seconds (``None``: none) and stale trials re-queued (up to
    :data:`MAX_RETRY` times). Opening an empty database while another process creates
    its schema is retried; a missing driver is a ``CampaignError`` naming the package."""
    import optuna

    from .tune import CampaignError

    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        renamed = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # Optuna 4.9
        callback = "heartbeat_stale_trial_callback" if renamed else "failed_trial_callback"
        kwargs = {
            "heartbeat_interval": int(heartbeat),
            "grace_period": GRACE_BEATS * int(heartbeat),
            callback: _retry_callback(),
        }
    url = rdb_url(url)
    for attempt in range(SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as e:
            missing = getattr(e.__cause__, "name", None) or getattr(e, "name", None)
            package = {"psycopg": _INSTALL, "psycopg2": "pip install psycopg2-binary"}.get(
                missing or "", f"pip install {missing}" if missing else "install its driver"
            )
            raise CampaignError(
                f"cannot open {url}: its driver {missing or ''} is not installed: {package}"
            ) from None
        except Exception as e:
            if attempt + 1 == SCHEMA_TRIES or not _schema_race(e):
                raise
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


# -- workers and their trials --------------------------------------------------------------


_WORKING: set[str] = set()  # the ``worker_run`` of each worker loop running in this process


def worker_attrs(heartbeat: int | None) -> dict[str, Any]:
    """The attributes a worker sets on a trial it claimed: ``worker`` (``host:pid``),
    ``worker_started`` (the process's start time, so a reused pid is not taken for it),
    ``worker_run`` (this worker loop: :func:`working`) and ``heartbeat`` (the interval,
    where it beats)."""
    import uuid

    import psutil

    attrs: dict[str, Any] = {
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "worker_started": psutil.Process().create_time(),
        "worker_run": uuid.uuid4().hex[:16],
    }
    if heartbeat:
        attrs["heartbeat"] = int(heartbeat)
    return attrs


@contextmanager
def working(attrs: Mapping[str, Any]) -> Iterator[None]:
    """Mark the worker loop of ``attrs`` (:func:`worker_attrs`) as running in this process
    while the block runs: a trial this process claimed in a loop that has ended (a
    campaign run twice in one process) counts as abandoned."""
    _WORKING.add(attrs["worker_run"])
    try:
        yield
    finally:
        _WORKING.discard(attrs["worker_run"])


def worker_alive(attrs: Mapping[str, Any]) -> bool | None:
    """Whether the worker named in a trial's ``attrs`` still runs: ``True`` or ``False``
    for a process on this machine (this process: while that worker loop runs), ``None``
    where it cannot be told (another machine, or no worker recorded).

    >>> mine = worker_attrs(None)
    >>> with working(mine):
    ...     worker_alive(mine)
    True
    >>> worker_alive(mine), worker_alive({}), worker_alive({"worker": "x:1"})
    (False, None, None)
    """
    import psutil

    host, _, pid = str(attrs.get("worker", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return attrs.get("worker_run") in _WORKING
    try:
        process = psutil.Process(int(pid))
        started = attrs.get("worker_started")
        if started is not None and abs(process.create_time() - float(started)) > 1.0:
            return False  # the pid was reused
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def claimed_by(storage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Record the worker ``attrs`` (:func:`worker_attrs`) on the trial it just claimed,
    after its first heartbeat (a trial that says it beats always has a beat to go stale)."""
    if heartbeat_of(storage):
        storage.record_heartbeat(trial_id)
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)


@contextmanager
def held(*signums: int) -> Iterator[None]:
    """Hold ``signums`` (default SIGTERM and SIGINT) while the block runs: one that
    arrives meanwhile is raised again, once, when the block ends. Python's handlers are
    swapped, not the thread's signal mask: the kernel gives a process-wide signal to any
    thread that does not block it (torch's, a heartbeat's). Off the main thread, where
    handlers cannot be set, the block runs as it is.

    >>> got = []
    >>> previous = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append("handled"))
    >>> with held(signal.SIGUSR1):
    ...     os.kill(os.getpid(), signal.SIGUSR1)
    ...     os.kill(os.getpid(), signal.SIGUSR1)
    ...     got.append("block done")
    >>> got
    ['block done', 'handled']
    >>> _ = signal.signal(signal.SIGUSR1, previous)
    """
    signums = signums or (signal.SIGTERM, signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum, frame):
        if signum not in arrived:
            arrived.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():  # None: a handler not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in arrived:
            signal.raise_signal(signum)


def heartbeat_of(storage) -> int | None:
    """The heartbeat interval of ``storage`` (``None``: it has none, e.g. the journal)."""
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if getter else None


class _Beat(AbstractContextManager):
    """Records the heartbeat of one trial now and then every ``interval`` seconds from a
    thread, until the block ends."""

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a database hiccup: the next beat tries again
                pass

    def __enter__(self):
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def beating(storage, trial_id: int) -> AbstractContextManager:
    """Heartbeats for the claimed trial ``trial_id`` while the block runs (where the
    storage has them)."""
    interval = heartbeat_of(storage)
    return _Beat(storage, trial_id, interval) if interval else nullcontext()


def recover(storage, study) -> list[int]:
    """Fail and re-queue the running trials of ``study`` whose worker is gone: on a
    storage with heartbeats Optuna's :func:`optuna.storages.fail_stale_trials` (its
    ``RetryHeartbeatStaleTrialCallback`` makes the copy), on the journal the trials whose
    worker process on this machine has ended. Returns the numbers of the trials failed
    here (another process may have taken some first)."""
    import optuna
    from optuna.trial import TrialState

    running = TrialState.RUNNING
    before = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
    if not before:
        return []
    if heartbeat_of(storage):
        with warnings.catch_warnings(), held():  # a trial failed is re-queued before a stop
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
        return sorted(before - after)
    retry, done = None, []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(running,)):
        if worker_alive(t.user_attrs) is not False:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with held():  # failed and re-queued, or neither, whatever stops this process
            try:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process failed it (and re-queued it) first
            retry = retry or _retry_callback()
            retry(study, storage.get_trial(trial_id))
        done.append(t.number)
    return done


def awaited(trial, storage) -> bool:
    """Whether a running ``trial`` will end by itself: its worker beats (it finishes, or
    goes stale and is re-queued) or runs on this machine. A trial with neither (another
    machine's journal worker, a worker killed before it recorded itself) waits for
    ``--resume``."""
    if heartbeat_of(storage) and trial.user_attrs.get("heartbeat"):
        return True
    return bool(worker_alive(trial.user_attrs))


# -- the worker process --------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent: int, signum: int = signal.SIGTERM, every: float = 1.0) -> None:
    """Make this worker process get ``signum`` when its parent (pid ``parent``) dies:
    ``prctl(PR_SET_PDEATHSIG)`` on Linux, elsewhere a thread that watches the parent pid
    every ``every`` seconds (one signal, not both). A parent that died before the call
    is caught at once. The trial bookkeeping holds a second stop (:func:`held`)."""
    signalled = _parent_death_signal(signum)

    def orphaned() -> bool:
        return os.getppid() != parent

    if orphaned():
        os.kill(os.getpid(), signum)
        return
    if signalled:
        return

    def watch(check: Callable[[], bool] = orphaned) -> None:
        while not check():
            time.sleep(every)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def plain_repair_warnings() -> None:
    """Show :class:`JournalRepairWarning` s as one ``warning: ...`` line on stderr (the
    command line and its workers), other warnings as before."""
    shown = warnings.showwarning
    if getattr(shown, "plain_repair", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, JournalRepairWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    show.plain_repair = True  # type: ignore[attr-defined]
    warnings.showwarning = show
