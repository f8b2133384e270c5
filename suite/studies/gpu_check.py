"""The GPU check (``projunn-bench gpu-check``): CUDA tests, host syncs of every method, the
update sweep with kernels per step, in one go within a time budget.

It writes as it goes into a new folder ``OUT/YYYYmmdd-HHMMSS/``: ``results.csv`` (the
``projunn-bench`` table), ``machine.json``, ``tests.txt`` (pytest's output) and
``summary.md``; the summary is printed last. Parts:

* ``tests``   -- ``pytest -m cuda`` (the CUDA tests; all skip without CUDA): how many
  ran, passed, failed and were skipped; the check fails when none ran on a GPU;
* ``syncs``   -- every method's update and training step under the CUDA sync debug mode:
  host syncs per step and where they happen (``host_syncs_per_step``; the sync-free
  path must show 0);
* ``sweep``   -- the update workload at every N and k: eager projUNN-T (``check=False``),
  the sync-free graphed projUNN-T/-D, expm, Cayley and ``A.add_(G)``: wall time and CUDA
  event time (``time``, ``time_cuda_events``, medians) beside the byte floor
  ``6 N^2 4 / copy bandwidth`` (``byte_floor``, bandwidth measured first);
* ``train``   -- the training step (batch 128) at N = 256 ... 8192: graphed and eager
  projUNN beside the baselines and the peer libraries (where installed);
* ``profile`` -- kernels, device busy time and host syncs per step of eager vs graphed
  projUNN-T at N = 1024 and 8192, the graphed one with each sync-free implementation
  (the default, and ``impl`` = cholesky, householder: :data:`OTHER_IMPLS`)
  (:class:`~suite.measure.probes.Profile`, in the same runs as the sweep's timing).

Every case goes through :func:`suite.measure.runner.run_case`: a failure is an "error"
row and the check goes on. Without CUDA the CPU-safe parts run on the CPU (graphed
methods are skipped rows). A watchdog ends a hung process after the budget plus a grace
period.
"""

from __future__ import annotations

import faulthandler
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..measure import output
from ..measure.cases import Case
from ..measure.methods import METHODS
from ..measure.probes import CUDA_EVENTS, HOST_SYNCS, TIME, Profile
from ..measure.record import Recorder
from ..measure.rows import Measurement, Row
from ..measure.runner import frozen_heap, run_case
from ..measure.settings import Settings
from ..measure.timing import measure, measure_events

__all__ = ["PARTS", "check", "copy_bandwidth", "summary"]

PARTS = ("tests", "syncs", "sweep", "profile", "train")
SIZES = (256, 1024, 8192, 128, 4096, 16384, 512, 2048)  # the targets first, should time run out
CPU_SIZES = (256, 1024, 128, 512)  # --device cpu without --sizes: what 2 cores do in minutes
RANKS = (1, 16)
SWEEP_METHODS = (
    "projunn_t_graphed",
    "projunn_t",
    "projunn_d_graphed",
    "unconstrained",
    "expm",
    "cayley",
)
PROFILE_SIZES = (1024, 8192)
PROFILED = ("projunn_t", "projunn_t_graphed")
OTHER_IMPLS = ("cholesky", "householder")
"""Sync-free implementations profiled beside the default (``impl="auto"``: the fused Triton
kernel where it runs, else ``cholesky``), as cases with the option ``impl``."""
TRAIN_SIZES = (256, 1024, 8192, 4096, 2048, 512)  # the targets first, should time run out
TRAIN_METHODS = (
    "projunn_t_graphed",
    "projunn_d_graphed",
    "projunn_t",
    "projunn_d",
    "expm",
    "cayley",
    "torch_orthogonal",
    "eunn",
    "unconstrained",
    "geoopt_stiefel",
    "geoopt_canonical",
    "geotorch_expm",
    "geotorch_cayley",
    "landing",
)
"""The training step's methods: projUNN (graphed and eager) beside the baselines and the
peer libraries (skipped, with the install line, where their library is missing)."""
TRAIN_TIMING = Settings(warmup=2, min_time=0.05, max_time=0.3, batch=128)
SYNC_N, SYNC_K = 256, 4
SYNC_METRIC = HOST_SYNCS.name
NO_SYNCS = "host syncs are counted on CUDA only"
TIMING = Settings(warmup=2, min_time=0.05, max_time=0.3)
GRACE = 60.0
"""Seconds the watchdog waits beyond the budget before it ends the process."""
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Context:
    """One check: where it records, what it sweeps, the budget and the notes that go into
    ``machine.json`` (tests, bandwidth, a part's failure)."""

    rec: Recorder
    device: str
    sizes: tuple[int, ...]
    ranks: tuple[int, ...]
    parts: tuple[str, ...]
    budget: float
    end: float = 0.0
    failures: int = 0
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.end = time.monotonic() + self.budget
        self.reserve = min(40.0, 0.15 * self.budget)  # kept for the later sizes' profiles
        self.notes = self.rec.info.setdefault("gpu_check", {})

    def left(self) -> float:
        return self.end - time.monotonic()

    def note(self, key: str, value) -> None:
        self.notes[key] = value


# -- tests ------------------------------------------------------------------------------


def part_tests(ctx: Context) -> None:
    """``pytest -m cuda``; its output goes to tests.txt, its counts into the notes."""
    timeout = max(10.0, min(150.0, ctx.left() - 60))
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "--benchmark-disable"]
    cmd += ["-p", "no:cacheprovider", str(ROOT / "tests")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        text, code = text + f"\n[gpu-check: pytest stopped after {timeout:.0f} s]\n", -1
    output.atomic_write_text(ctx.rec.folder / "tests.txt", text)
    counts = test_counts(text)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)))
    bad = code not in (0, 5) or counts["failed"] or counts["error"]
    ran = counts["passed"] + counts["failed"]
    none_ran = ctx.device == "cuda" and ran == 0
    ctx.failures += bool(bad) or none_ran
    ctx.note("tests", {**counts, "exit_status": code, "failing": failed, "output": "tests.txt"})
    if none_ran:
        ctx.note("tests_failed", "no CUDA test ran on a CUDA device")


def test_counts(text: str) -> dict[str, int]:
    """pytest's summary counts (passed, failed, skipped, error, deselected) from its output.

    >>> test_counts("== 3 passed, 1 skipped, 2 deselected in 1.2s ==")["skipped"]
    1
    """
    counts = dict.fromkeys(("passed", "failed", "skipped", "error", "deselected"), 0)
    for num, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text):
        counts[word.rstrip("s") if word.startswith("error") else word] += int(num)
    return counts


# -- host syncs -------------------------------------------------------------------------


def part_syncs(ctx: Context) -> None:
    """Host syncs of every method's update and training step (N=256, float32)."""
    for workload in ("update", "train_step"):
        for name, spec in METHODS.items():
            if workload not in spec.workloads:
                continue
            case = Case(workload, name, SYNC_N, SYNC_K if spec.ranked else None, device=ctx.device)
            if ctx.device != "cuda":  # nothing to count: not worth building the case
                ctx.rec.add(case.rows([Measurement.skipped(NO_SYNCS, SYNC_METRIC)]))
                continue
            ctx.rec.add(run_case(case, TIMING, probes=[HOST_SYNCS]).rows)


# -- sweep ------------------------------------------------------------------------------


def copy_bandwidth(device: str) -> float:
    """Bytes per second of a large device copy (read + write counted)."""
    n = (256 << 20) // 4  # 256 MiB: beyond any cache, so the bandwidth is memory's
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    if device == "cuda":
        t = measure_events(lambda: dst.copy_(src), device=device, blocks=5, block_time=0.05)
    else:
        t = measure(lambda: dst.copy_(src), min_time=0.2, max_time=0.5)
    return 2 * src.numel() * 4 / t.median


def _sweep_cases(ctx: Context, n: int) -> list[tuple[Case, bool]]:
    """The cases at size ``n``, each with whether it is profiled."""
    sweep, profile = "sweep" in ctx.parts, "profile" in ctx.parts
    profiled_n = n in PROFILE_SIZES or (
        n == ctx.sizes[0] and not set(PROFILE_SIZES) & set(ctx.sizes)
    )
    out = []
    for name in SWEEP_METHODS:
        profiled = profile and profiled_n and name in PROFILED
        if not (sweep or profiled):
            continue
        for k in ctx.ranks if METHODS[name].ranked else (None,):
            out.append((Case("update", name, n, k, device=ctx.device), profiled))
            if profiled and METHODS[name].graphed:  # each implementation, as a case option
                out += [
                    (Case("update", name, n, k, device=ctx.device, options=(("impl", i),)), True)
                    for i in OTHER_IMPLS
                ]
    return out


def part_sweep(ctx: Context) -> None:
    """The update workload over N and k with the byte floor (and the profiles)."""
    bw = copy_bandwidth(ctx.device)
    note = f"6*N^2*4 bytes / copy bandwidth {bw / 1e9:.0f} GB/s ({ctx.device})"
    ctx.note("copy_bandwidth_bytes_per_s", bw)
    timing = [TIME, CUDA_EVENTS] if ctx.device == "cuda" else [TIME]
    for n in ctx.sizes:
        if "sweep" in ctx.parts:
            floor = Measurement("time", 6 * n * n * 4 / bw, "s", reason=note)
            ctx.rec.add([Row.of({"workload": "update", "method": "byte_floor", "n": n,
                                 "device": ctx.device}, floor)])  # fmt: skip
        for case, profiled in _sweep_cases(ctx, n):
            reserve = 0.0 if profiled else ctx.reserve
            if ctx.left() < reserve:
                ctx.rec.add(case.rows([Measurement.skipped("gpu-check budget spent")]))
                continue
            probes = [*timing, Profile(10)] if profiled else timing
            ctx.rec.add(run_case(case, TIMING, probes=probes).rows)


def part_train(ctx: Context) -> None:
    """The training step (batch 128) over N: graphed and eager projUNN, the baselines and
    the peers, wall and CUDA-event time."""
    timing = [TIME, CUDA_EVENTS] if ctx.device == "cuda" else [TIME]
    sizes = [n for n in TRAIN_SIZES if n in ctx.sizes] or list(ctx.sizes)
    for n in sizes:
        for name in TRAIN_METHODS:
            for k in ctx.ranks if METHODS[name].ranked else (None,):
                case = Case("train_step", name, n, k, device=ctx.device)
                if ctx.left() < ctx.reserve:
                    ctx.rec.add(case.rows([Measurement.skipped("gpu-check budget spent")]))
                    continue
                ctx.rec.add(run_case(case, TRAIN_TIMING, probes=timing).rows)


def part_profile(ctx: Context) -> None:
    """The profiled cases alone (with the sweep, they are profiled in its runs)."""
    if "sweep" not in ctx.parts:
        part_sweep(ctx)


PART_FUNCS = {
    "tests": part_tests,
    "syncs": part_syncs,
    "sweep": part_sweep,
    "profile": part_profile,
    "train": part_train,
}


# -- summary ----------------------------------------------------------------------------


def _value(
    rows, method, n, k=None, metric=("time_cuda_events", "time"), options="", workload="update"
):
    """The first ok value of ``method`` at (n, k) in ``workload`` for the first metric found."""
    for m in metric:
        for r in rows:
            key = (r.workload, r.method, r.n, r.k, r.metric, r.status, r.options)
            if key == (workload, method, n, k, m, "ok", options):
                return r.value
    return None


def _train_table(rows, ranks, ms) -> list[str]:
    """Markdown lines: the training step's times by N and method (empty without any)."""
    timed = [
        r for r in rows if r.workload == "train_step" and r.metric == "time" and r.status == "ok"
    ]
    if not timed:
        return []
    sizes = sorted({r.n for r in timed})
    labels = []
    for name in TRAIN_METHODS:
        labels += (
            [(f"{name} k={k}", name, k) for k in ranks]
            if METHODS[name].ranked
            else [(name, name, None)]
        )
    lines = ["", "## The training step, batch 128, ms per step", ""]
    lines += [
        "| method | " + " | ".join(f"N={n}" for n in sizes) + " |",
        "|---" * (len(sizes) + 1) + "|",
    ]
    for label, name, k in labels:
        opts = Case("train_step", name, 16, k).identity()["options"]  # optimizer=adam: geoopt
        cells = [ms(_value(rows, name, n, k, options=opts, workload="train_step")) for n in sizes]
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def summary(rows: Sequence[Row], device: str, ranks, notes=None) -> str:
    """Markdown: time per update by N (ms, CUDA events where measured) and the targets."""
    ms = lambda v: "–" if v is None else f"{v * 1e3:.3f}"  # noqa: E731
    timed = [r for r in rows if r.metric == "time" and r.status == "ok"]
    sizes = sorted({r.n for r in timed if r.workload == "update"})
    cols = [(f"graphed T k={k}", "projunn_t_graphed", k) for k in ranks]
    cols += [(f"eager T k={k}", "projunn_t", k) for k in ranks]
    cols += [(f"graphed D k={k}", "projunn_d_graphed", k) for k in ranks]
    cols += [("expm", "expm", None), ("Cayley", "cayley", None)]
    cols += [("A.add_(G)", "unconstrained", None), ("byte floor", "byte_floor", None)]
    lines = [
        f"# GPU check: one update, float32, ms per step ({device})",
        "",
        "| N | " + " | ".join(c[0] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for n in sizes:
        cells = [ms(_value(rows, method, n, k)) for _, method, k in cols]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    notes = notes or {}
    if "tests" in notes:
        t = notes["tests"]
        counts = ", ".join(f"{t.get(w, 0)} {w}" for w in ("passed", "failed", "skipped", "error"))
        failed = f" (failing: {', '.join(t['failing'])})" if t.get("failing") else ""
        lines += ["", f"pytest -m cuda: {counts}{failed}; output in tests.txt"]
    if "copy_bandwidth_bytes_per_s" in notes:
        bw = notes["copy_bandwidth_bytes_per_s"]
        lines += ["", f"copy bandwidth {bw / 1e9:.0f} GB/s (byte floor = 6 N^2 4 B / it)"]
    failures = [
        f"- part {k.removesuffix('_failed')} failed: {v}"
        for k, v in notes.items()
        if k.endswith("_failed")
    ]
    if failures:
        lines += ["", *failures]
    lines += ["", "## Targets of the graphed projUNN step", ""]
    graphed = ("projunn_t_graphed", "projunn_d_graphed")
    small = [_value(rows, m, n, k) for m in graphed for n in sizes if n <= 1024 for k in ranks]
    small = [v for v in small if v is not None]
    if small:
        verdict = "met" if max(small) < 1e-4 else "not met"
        lines.append(f"- N <= 1024, replayed step < 0.1 ms: {verdict} (max {ms(max(small))} ms)")
    step, floor = _value(rows, "projunn_t_graphed", 8192, 1), _value(rows, "byte_floor", 8192)
    if step and floor:
        lines.append(f"- N = 8192, k = 1 within 1.5x the byte floor: {step / floor:.2f}x")
    for method, variant in zip(graphed, "TD", strict=True):
        if not any(_value(rows, method, n, k) for n in sizes for k in ranks):
            lines.append(f"- not measured: no graphed projUNN-{variant} times (they need CUDA)")
            continue
        losses = []
        for n in (n for n in sizes if n >= 128):
            best = [v for k in ranks if (v := _value(rows, method, n, k)) is not None]
            for other in ("expm", "cayley"):
                v = _value(rows, other, n)
                if best and v is not None and max(best) >= v:
                    losses.append(f"{other} at N={n}")
        verdict = "met" if not losses else "not met: " + ", ".join(losses)
        lines.append(
            f"- graphed projUNN-{variant} faster than expm and Cayley at every N >= 128: {verdict}"
        )
    ops = [
        r.value
        for r in rows
        if r.metric == "compute_ops_per_step" and r.status == "ok" and r.method in graphed
        and (r.k or 0) <= 16 and "impl=" not in r.options
    ]  # fmt: skip
    if ops:
        verdict = "met" if max(ops) <= 12 else "not met"
        lines.append(
            f"- at most 12 compute operators per graphed step (k <= 16): {verdict} "
            f"(max {max(ops):.0f})"
        )
    lines += _train_table(rows, ranks, ms)
    syncs = [r for r in rows if r.metric == SYNC_METRIC and r.status == "ok" and r.n == SYNC_N]
    if syncs:
        lines += ["", f"## Host syncs per step (N = {SYNC_N}, sync debug mode)", ""]
        lines += [f"- {r.workload} {r.method}: {r.value:.0f} ({r.reason})" for r in syncs]
    counted = [r for r in rows if r.metric == "compute_ops_per_step" and r.status == "ok"]
    if counted:
        lines += ["", "## Per step (update): compute operators, kernels, wall time", ""]
        for r in counted:
            t = _value(rows, r.method, r.n, r.k, ("time",), r.options, r.workload)
            kernels = _value(rows, r.method, r.n, r.k, ("kernels_per_step",), r.options, r.workload)
            launched = "" if kernels is None else f", {kernels:.0f} kernels"
            extra = f" ({r.options})" if r.options else ""
            lines.append(
                f"- {r.method}{extra} N={r.n} k={r.k}: {r.value:.0f} compute operators"
                f"{launched}, {ms(t)} ms"
            )
    return "\n".join(lines) + "\n"


# -- the check --------------------------------------------------------------------------


def check(
    out: Path,
    *,
    device: str,
    sizes: Sequence[int],
    ranks: Sequence[int],
    parts: Sequence[str] = PARTS,
    budget: float = 270.0,
    info: dict | None = None,
) -> int:
    """Run the ``parts`` into a new folder under ``out`` within ``budget`` seconds; print
    the summary; return the exit status (0 every part ran and every test passed, 1 a part
    or a test failed, 130/143 interrupted/terminated with the rows so far written)."""
    faulthandler.dump_traceback_later(budget + GRACE, exit=True, file=sys.__stderr__)
    started = time.monotonic()
    text = None  # stays None when Ctrl-C / SIGTERM ends the run before the summary
    try:
        with Recorder(out, info=dict(info or {}), flush_every=0) as rec, frozen_heap():
            ctx = Context(rec, device, tuple(sizes), tuple(ranks), tuple(parts), budget)
            for part in [p for p in PARTS if p in parts]:
                if ctx.left() <= 0 and part != "tests":
                    print(f"gpu-check: {part} skipped, the budget is spent", file=sys.stderr)
                    ctx.note(f"{part}_skipped", "gpu-check budget spent")
                    continue
                print(f"gpu-check: {part} ({ctx.left():.0f} s left)", file=sys.stderr)
                try:
                    PART_FUNCS[part](ctx)
                except Exception as e:
                    ctx.failures += 1
                    ctx.note(f"{part}_failed", f"{type(e).__name__}: {e}"[:1000])
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            text = summary(rec.rows, name, ctx.ranks, ctx.notes)
            output.atomic_write_text(rec.folder / "summary.md", text)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if text is not None:
        print(text)
    print(f"results: {rec.folder} ({time.monotonic() - started:.0f} s)")
    if rec.exit_code:
        return rec.exit_code
    errors = sum(r.status == "error" for r in rec.rows)
    return 1 if ctx.failures or errors else 0
