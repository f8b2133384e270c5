"""Instruction counts: every timed CPU case of a run counted in ONE callgrind process.

Wall and CPU times on 2 shared cores move by up to 1.56x between two runs of the same
code (``results/detector.md``); the instructions a step executes do not. This module
runs the child :mod:`suite.measure._callgrind_child` under ``valgrind --tool=callgrind``
and reads what it wrote. Per case the child

1. builds the step (:func:`suite.measure.workloads.prepare`: the Haar starting unitary,
   the gradient, the module) and runs ``warmup`` steps with callgrind's instrumentation
   **off** (``--instr-atstart=no``; valgrind then only translates the code);
2. switches instrumentation on (the client request ``CALLGRIND_START_INSTRUMENTATION``
   from a small C shim compiled with the system ``cc`` into a cache folder and loaded by
   ctypes), runs one more step that warms the simulated caches without collecting;
3. collects ``steps`` steps (``CALLGRIND_TOGGLE_COLLECT`` around each), reseeding torch's
   generators before each (the range finder's sketch draws from them), dumps the counts
   under the case's id (``CALLGRIND_DUMP_STATS_AT``) and switches instrumentation off.

Without a C compiler the child falls back on torch's ``_valgrind_toggle`` (collection only:
instrumentation then stays on and setup is ~50x slower). The child runs on one thread,
``PYTHONHASHSEED=0``, with MKL held to its SSE4.2 kernels (``MKL_ENABLE_INSTRUCTIONS``: its
AVX2 kernels run ~150x slower under valgrind, a 1024 x 1024 matmul 130 s instead of 0.8 s)
and a fixed simulated cache (:data:`CACHE`), so counts do not depend on the host's caches.

Metrics, per call (one step): ``instructions`` (callgrind's ``Ir``) and
``estimated_cycles`` from the cache simulation, with the weights of the pythonspeed
article "Consistent benchmarking in CI" (:data:`WEIGHTS`; CodSpeed estimates the same
way)::

    ram_hits = ILmr + DLmr + DLmw                    # missed the last level: memory
    ll_hits  = I1mr + D1mr + D1mw - ram_hits         # missed L1, hit the last level
    l1_hits  = Ir + Dr + Dw - ll_hits - ram_hits
    estimated_cycles = l1_hits + 5 * ll_hits + 35 * ram_hits

What counts miss: memory bandwidth and prefetching beyond this cache model, threading
(one thread here), frequency scaling, and everything on a GPU (never counted).

>>> estimated_cycles({"Ir": 100, "Dr": 40, "Dw": 10, "I1mr": 2, "D1mr": 5, "D1mw": 1,
...                   "ILmr": 1, "DLmr": 2, "DLmw": 0})
272
>>> missing_reason(None).startswith("valgrind is not installed")
True
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE",
    "EVENTS",
    "INSTALL",
    "KEPT_ENVIRONMENT",
    "METRICS",
    "STEPS",
    "WEIGHTS",
    "Controller",
    "CountRun",
    "Dump",
    "child_environment",
    "controller",
    "count_cases",
    "estimated_cycles",
    "missing_reason",
    "parse",
    "read_run",
    "shim_path",
    "valgrind",
]

INSTALL = (
    "install valgrind to count instructions (Debian/Ubuntu: sudo apt-get install valgrind; "
    "Fedora: sudo dnf install valgrind; macOS: not supported)"
)
"""The install line a skipped count row carries."""

EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")
"""The events of ``--cache-sim=yes``: instructions, data reads, data writes, and the misses
of the first-level instruction / data caches and of the last level."""

WEIGHTS = {"l1_hit": 1, "ll_hit": 5, "ram_hit": 35}
"""Cycles per access served by L1, by the last-level cache, by memory (pythonspeed)."""

CACHE = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=8388608,16,64")
"""The simulated caches: 32 KiB 8-way L1s, an 8 MiB 16-way last level, 64-byte lines; the
same on every machine (callgrind otherwise copies the host's, e.g. a 256 MiB L3)."""

METRICS = {
    "instructions": "instructions",
    "estimated_cycles": "cycles",
    "operations": "operations",
}
"""Metric -> unit of the rows a count adds to a case. ``operations``: the compute
operators one step dispatches (:func:`suite.measure.opcount.count_ops`: views and
metadata-only operators left out), counted in the same process in one more step outside
callgrind's collection; a whole number that moves only when the step runs other work,
never with the memory layout."""

STEPS = 3
"""Steps collected per case (the counts are per step: the total over ``STEPS``)."""

_CHILD = "suite.measure._callgrind_child"
_SHIM = r"""
#include <valgrind/valgrind.h>
#include <valgrind/callgrind.h>
int projunn_running(void) { return RUNNING_ON_VALGRIND; }
void projunn_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void projunn_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void projunn_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void projunn_zero(void) { CALLGRIND_ZERO_STATS; }
void projunn_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def valgrind() -> str | None:
    """The ``valgrind`` executable on PATH, or ``None``."""
    return shutil.which("valgrind")


def missing_reason(found: str | None | bool = True) -> str | None:
    """Why instructions cannot be counted here (``None``: they can). ``found``: the
    valgrind path to judge (default: look it up)."""
    path = valgrind() if found is True else found
    return None if path else f"valgrind is not installed: {INSTALL}"


def estimated_cycles(totals: Mapping[str, float]) -> int:
    """Cycles estimated from callgrind's cache events (see the module docstring)."""
    t = {e: int(totals.get(e, 0)) for e in EVENTS}
    ram = t["ILmr"] + t["DLmr"] + t["DLmw"]
    ll = t["I1mr"] + t["D1mr"] + t["D1mw"] - ram
    l1 = t["Ir"] + t["Dr"] + t["Dw"] - ll - ram
    return WEIGHTS["l1_hit"] * l1 + WEIGHTS["ll_hit"] * ll + WEIGHTS["ram_hit"] * ram


# -- the client requests ----------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "projunn-bench"


def shim_path(cache: Path | None = None) -> Path | None:
    """The compiled client-request shim (built on first use with ``cc`` against
    valgrind's headers), or ``None`` when there is no compiler or no headers."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    digest = hashlib.sha256(_SHIM.encode()).hexdigest()[:12]
    target = (cache or _cache_dir()) / f"callgrind-shim-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        src.write_text(_SHIM)
        built = subprocess.run(
            [cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], capture_output=True
        )
        if built.returncode != 0:
            return None
        os.replace(shutil.copy(lib, target.with_suffix(".tmp")), target)  # atomic
    return target


@dataclass
class Controller:
    """Callgrind's switches in this process: through the shim (``mode`` "shim": start /
    stop instrumentation, toggle collection, dump under a name) or torch's toggles
    (``mode`` "torch": collection only, dumps unnamed)."""

    mode: str
    lib: Any = None

    def start(self) -> None:
        """Instrumentation on, and every counter zeroed (callgrind keeps the counters of
        code run before the last stop, and would add them to the next dump)."""
        if self.mode == "shim":
            self.lib.projunn_start()
            self.lib.projunn_zero()

    def stop(self) -> None:
        if self.mode == "shim":
            self.lib.projunn_stop()

    def zero(self) -> None:
        """Every counter zeroed (instrumentation stays as it is)."""
        if self.mode == "shim":
            self.lib.projunn_zero()

    def toggle(self) -> None:
        if self.mode == "shim":
            self.lib.projunn_toggle()
        else:
            import torch

            torch._C._valgrind_toggle()

    def dump(self, name: str) -> None:
        if self.mode == "shim":
            self.lib.projunn_dump(name.encode())
        else:
            import torch

            torch._C._valgrind_toggle()  # on, then off and dump: nothing collected between
            torch._C._valgrind_toggle_and_dump_stats()


def controller(shim: str | Path | None) -> Controller:
    """A :class:`Controller` using the shim at ``shim`` (``None``: torch's toggles)."""
    if shim is None:
        return Controller("torch")
    lib = ctypes.CDLL(str(shim))
    lib.projunn_dump.argtypes = [ctypes.c_char_p]
    return Controller("shim", lib)


# -- reading callgrind's files ------------------------------------------------------------


@dataclass
class Dump:
    """One callgrind dump: its ``name`` (the trigger: the case id), ``totals`` per event
    and the ``inclusive`` instructions (Ir) per function (self plus callees)."""

    name: str
    totals: dict[str, int]
    inclusive: dict[str, int] = field(default_factory=dict)


_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path: str | Path) -> Dump:
    """Read a callgrind output file (name compression, relative positions and the
    ``calls=`` lines of callgrind's format) into a :class:`Dump`: totals are the sum of
    its cost lines; a function's inclusive count its own cost plus that of its calls.

    >>> import tempfile
    >>> text = ("events: Ir Dr\\ndesc: Trigger: Client Request: a\\nfn=(1) main\\n3 10 2\\n"
    ...         "cfn=(2) work\\ncalls=1 5\\n4 90 30\\nfn=(2)\\n5 90 30\\nsummary: 100 32\\n")
    >>> with tempfile.NamedTemporaryFile("w", suffix=".out", delete=False) as f:
    ...     _ = f.write(text)
    >>> d = parse(f.name)
    >>> d.name, d.totals, d.inclusive
    ('a', {'Ir': 100, 'Dr': 32}, {'main': 100, 'work': 90})
    """
    events: list[str] = []
    names: dict[str, dict[str, str]] = {"fn": {}, "cfn": {}}
    name = ""
    inclusive: dict[str, int] = {}
    self_sum: list[int] = []
    fn = ""
    in_call = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if not events:
                    continue
                parts = line.split()
                costs = [int(x) for x in parts[1:]]
                ir = costs[0] if costs else 0
                if in_call:  # the inclusive cost of a call from fn
                    inclusive[fn] = inclusive.get(fn, 0) + ir
                    in_call = False
                    continue
                inclusive[fn] = inclusive.get(fn, 0) + ir
                if len(self_sum) < len(costs):
                    self_sum += [0] * (len(costs) - len(self_sum))
                for i, x in enumerate(costs):
                    self_sum[i] += x
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key in ("fn", "cfn"):
                m = _NAMED.match(value)
                if m:
                    ident, text = m.groups()
                    if text is not None:
                        names["fn"][ident] = text  # one table for fn and cfn
                    value = names["fn"].get(ident, value)
                if key == "fn":
                    fn = value
                    inclusive.setdefault(fn, 0)
            elif key == "calls":
                in_call = True
            elif line.startswith("events:"):
                events = line.split(":", 1)[1].split()
            elif line.startswith("desc: Trigger:"):
                name = line.split(":", 2)[2].strip()
                name = name.removeprefix("Client Request:").strip()
    # The sum of the file's cost lines, not its ``summary:`` line: after instrumentation
    # was stopped and started again that line can be off (even negative, wrapped).
    totals = {e: int(v) for e, v in zip(events, self_sum, strict=False)}
    return Dump(name, totals, inclusive)


# -- the run ------------------------------------------------------------------------------


KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH")
"""The variables the counted process inherits (and every ``PROJUNN_BENCH_*``: plug-ins;
``PYTHONPATH`` goes after the count's own import path).
Its environment lies on its stack, so any other variable (a shell's ``PWD``, pytest's
``PYTEST_CURRENT_TEST``, a CI runner's job ids) would move its memory layout, and its
counts, from one count to the next."""


def child_environment(base: Mapping[str, str] | None = None, pythonpath: Sequence = ()):
    """The child's environment: :data:`KEPT_ENVIRONMENT` of ``base`` (default: this
    process's), one thread in every pool, a fixed hash seed, MKL on its SSE4.2 kernels,
    no bytecode written, and ``pythonpath`` first on the import path.

    Writing no bytecode keeps two counts alike: a child that compiles a module leaves
    another heap behind than one that loads the ``.pyc`` a concurrent or earlier child
    wrote (0.3 % more instructions in the steps of the first of two counts).

    >>> env = child_environment({"PATH": "/bin", "PWD": "/x", "PROJUNN_BENCH_PLUGINS": "m"})
    >>> env["PATH"], env["PROJUNN_BENCH_PLUGINS"], env["PYTHONHASHSEED"], "PWD" in env
    ('/bin', 'm', '0', False)
    >>> child_environment({"PYTHONPATH": "/plugins"}, ["/code"])["PYTHONPATH"]
    '/code:/plugins'
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in KEPT_ENVIRONMENT or k.startswith("PROJUNN_BENCH_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        MKL_ENABLE_INSTRUCTIONS="SSE4_2",
    )
    entries = [*map(str, pythonpath), *([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])]
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


@dataclass
class CountRun:
    """What :func:`count_cases` found: per case id the ``dumps`` (:class:`Dump`) and the
    child's ``status`` lines ("ok" / "skipped" / "error", reason, setup and measured
    seconds); ``timing``: seconds of the whole process, of the child's imports, of all
    setups and of all measured steps; ``steps`` per case; ``folder`` holds the files."""

    dumps: dict[str, Dump]
    status: dict[str, dict[str, Any]]
    timing: dict[str, float]
    steps: int
    folder: Path
    module_files: dict[str, str] = field(default_factory=dict)

    def measurements(self, case_id: str):
        """The rows' measurements of one case: ``instructions`` and ``estimated_cycles``
        per step, or why there are none."""
        from .rows import Measurement

        st = self.status.get(case_id)
        if st is None:
            return [Measurement.error("the callgrind child never reached it", "instructions")]
        if st["status"] != "ok":
            make = Measurement.skipped if st["status"] == "skipped" else Measurement.error
            return [make(st.get("reason", ""), "instructions")]
        dump = self.dumps.get(case_id)
        if dump is None:
            return [Measurement.error("callgrind wrote no counts for it", "instructions")]
        ir, cycles = dump.totals.get("Ir", 0), estimated_cycles(dump.totals)
        note = f"callgrind, {self.steps} steps, per step"
        out = [
            Measurement("instructions", ir / self.steps, METRICS["instructions"], reason=note),
            Measurement(
                "estimated_cycles", cycles / self.steps, METRICS["estimated_cycles"], reason=note
            ),
        ]
        if "operations" in st:
            out.append(
                Measurement(
                    "operations",
                    float(st["operations"]),
                    METRICS["operations"],
                    reason="compute operators of one step (views, metadata-only left out)",
                )
            )
        return out

    def operators(self, case_id: str) -> dict[str, int]:
        """The compute operators of one step of a case, by name (empty when not seen)."""
        return dict(self.status.get(case_id, {}).get("ops", {}))


def countable(case) -> bool:
    """Whether ``case`` is counted: a timed workload on the CPU (GPU cases never are)."""
    from .workloads import WORKLOADS

    return WORKLOADS[case.workload].timed and case.device == "cpu"


def count_cases(
    cases: Sequence,
    settings,
    *,
    steps: int = STEPS,
    folder: str | Path | None = None,
    pythonpath: Sequence = (),
    python: str | None = None,
    log=None,
    light_n: int | None = None,
) -> CountRun:
    """Count ``cases`` (the countable ones, :func:`countable`) under ``settings`` (its
    seed, batch, warm-up) in one callgrind process; its files go to ``folder`` (default: a
    temporary folder, removed). ``pythonpath`` goes first on the child's import path (the
    gate puts a commit's ``projunn_core`` there; default: where this process imports it
    from, so under asv the commit's installed copy); this checkout follows (``suite``).
    ``light_n``: set up cases up to this N (and convolutions) with instrumentation left on
    (default ``None``: off around every setup, as calibrated). Measured on 10 small cases:
    27 % less time in the measured part; counts up to 0.46 % apart from the default mode's
    (within the A/A spread).
    Raises ``RuntimeError`` when valgrind is
    missing or the process fails before counting anything."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    chosen = [c for c in cases if countable(c)]
    if not pythonpath:  # the measured code this process imports (under asv: the commit's)
        import projunn_core

        pythonpath = [Path(projunn_core.__file__).resolve().parents[1]]
    owned = folder is None
    out = Path(tempfile.mkdtemp(prefix="callgrind-")) if owned else Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("callgrind.out*"), out / "status.jsonl"]:
        old.unlink(missing_ok=True)
    shim = shim_path()
    root = Path(__file__).resolve().parents[2]
    with _Stage(out, [*pythonpath, root]) as stage:
        code = stage.paths[0] if pythonpath else None
        spec = {
            "cases": [_case_record(c) for c in chosen],
            "settings": _settings_record(settings),
            "steps": steps,
            "shim": None if shim is None else str(shim),
            "status": str(stage.out / "status.jsonl"),
            "code": None if code is None else str(code),
            "light_n": light_n,
        }
        (stage.out / "spec.json").write_text(json.dumps(spec, indent=1))
        cmd = [
            valgrind(),
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--instr-atstart={'no' if shim else 'yes'}",
            "--cache-sim=yes",
            *CACHE,
            f"--callgrind-out-file={stage.out / 'callgrind.out'}",
            f"--log-file={stage.out / 'valgrind.log'}",
            python or sys.executable,
            "-m",
            _CHILD,
            str(stage.out / "spec.json"),
        ]
        env = child_environment(pythonpath=stage.paths)
        start = time.monotonic()
        # cwd: not the checkout, whose projunn_core would shadow ``pythonpath``'s (python
        # -m puts the working folder first on the import path)
        proc = subprocess.run(
            cmd, env=env, cwd=stage.folder, stdout=log, stderr=subprocess.STDOUT if log else None
        )
        wall = time.monotonic() - start
    run = read_run(out, steps)  # the stage's files moved into ``out`` on leaving it
    run.module_files = {k: stage.real(v) for k, v in run.module_files.items()}
    if proc.returncode != 0 and not run.status:
        raise RuntimeError(
            f"the callgrind process failed (exit {proc.returncode}); see {out / 'valgrind.log'}"
        )
    run.timing["total"] = wall
    if owned:
        shutil.rmtree(out, ignore_errors=True)
    return run


class _Stage:
    """Every path the counted process sees, at the same length in every count: a fresh
    folder (``tempfile.mkdtemp``: a fixed-length name) holding ``out``, where valgrind and
    the child write (moved into the count's folder afterwards), and links ``p0``, ``p1``,
    ... to the import path's entries.

    Paths reach the counted process's memory (its arguments and environment on the
    stack, ``sys.path`` and module names on the heap, valgrind's own buffers), so their
    lengths move its memory layout, and with it instruction counts (allocator paths) and
    simulated cache misses: one case set counted into folders of different name lengths
    differed by up to 0.43 % in instructions; staged, the counts are identical.
    """

    def __init__(self, out: Path, paths: Sequence):
        self.targets = [Path(p).resolve() for p in paths]
        self.target_out = Path(out).resolve()

    def __enter__(self) -> _Stage:
        self.folder = Path(tempfile.mkdtemp(prefix="cg-"))
        self.out = self.folder / "out"
        self.out.mkdir()
        self.paths = []
        for i, target in enumerate(self.targets):
            link = self.folder / f"p{i}"
            link.symlink_to(target, target_is_directory=True)
            self.paths.append(link)
        return self

    def real(self, path: str) -> str:
        """``path`` as seen by the child, with the links replaced by their targets."""
        pairs = [(self.out, self.target_out), *zip(self.paths, self.targets, strict=True)]
        for link, target in pairs:
            if Path(path).is_relative_to(link):
                return str(target / Path(path).relative_to(link))
        return path

    def __exit__(self, *exc) -> None:
        """Move what was written into the count's folder, and remove the stage."""
        for f in self.out.iterdir():
            shutil.move(str(f), str(self.target_out / f.name))
        shutil.rmtree(self.folder, ignore_errors=True)


def read_run(out: str | Path, steps: int = STEPS) -> CountRun:
    """A :class:`CountRun` read back from the folder a count wrote (``status.jsonl`` and
    callgrind's dumps); ``timing["total"]`` is the child's import + setup + measured."""
    out = Path(out)
    status: dict[str, dict[str, Any]] = {}
    header: dict[str, Any] = {}
    order: list[str] = []
    if (out / "status.jsonl").is_file():
        for line in (out / "status.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if "case" in rec:
                status[rec["case"]] = rec
                if rec.get("dumped"):
                    order.append(rec["case"])
            else:
                header.update(rec)
    timing = {
        "import": float(header.get("import_s", 0.0)),
        "setup": sum(s.get("setup_s", 0.0) for s in status.values()),
        "measured": sum(s.get("measured_s", 0.0) for s in status.values()),
    }
    timing["total"] = sum(timing.values())
    return CountRun(_read_dumps(out, order), status, timing, steps, out, header.get("modules", {}))


def _read_dumps(out: Path, order: list[str]) -> dict[str, Dump]:
    """The numbered dumps in ``out``, matched to case ids by their trigger name or, for
    unnamed dumps (torch's toggles), by ``order``."""
    files = sorted(
        (p for p in out.glob("callgrind.out.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
    )
    dumps: dict[str, Dump] = {}
    for i, f in enumerate(files):
        d = parse(f)
        if d.name not in order:
            d.name = order[i] if i < len(order) else d.name
        dumps[d.name] = d
    return dumps


def _case_record(case) -> dict[str, Any]:
    return {
        "workload": case.workload,
        "method": case.method,
        "n": case.n,
        "k": case.k,
        "dtype": case.dtype,
        "device": case.device,
        "options": [list(o) for o in case.options],
        "spatial": case.spatial,
    }


def _settings_record(settings) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(settings)
