"""Where the time and memory of one step go: ``torch.profiler`` over a prepared workload.

:func:`profile_work` takes a :class:`suite.measure.workloads.Prepared` step (``update`` or
``train_step``) and returns a :class:`StepProfile`: wall time per step, the operators'
calls and self CPU / self device time per step, device busy time and kernels per step
(CUDA), host synchronizations per step (CUDA), peak and temporary memory of a step and,
if asked, a Chrome/Perfetto trace. It runs these passes, each after the warm-up, so
that no instrument disturbs another:

1. **time**: :func:`suite.measure.timing.measure` without any profiler (``torch.utils.benchmark``,
   the :class:`~suite.measure.cases.Settings`' time budget);
2. **memory**: one step with the host RSS high-water mark; on CUDA the allocator's
   statistics (``peak = max_memory_allocated``, ``resident = memory_allocated`` before
   the step); on the CPU the allocation events of a ``profile_memory`` profile (the
   second of two steps, see :func:`_memory_cpu`) give the peak of the tensors allocated
   during the step (torch's CPU allocator: library workspaces such as LAPACK's are not
   seen) and ``resident`` = the bytes of the workload's tensors (weight, gradient,
   module parameters and gradients, optimizer state, batch);
3. **syncs** (CUDA): ``steps`` steps under ``torch.cuda.set_sync_debug_mode("warn")``,
   counting the warnings. A lower bound: synchronizations torch does not route through
   that check (e.g. inside cuSOLVER/MAGMA) are not seen;
4. **compute operators**: one step under a dispatch mode counts the compute operators it
   dispatches, views excluded (:func:`compute_ops`; any device);
5. **profile**: ``steps`` back-to-back steps under ``torch.profiler`` (CPU, plus CUDA
   activity on CUDA devices; one discarded profiled step first so that CUPTI's start-up
   is not measured). ``profiled_time`` = wall time of the window / steps (one device
   synchronization at its end, recorded as :data:`WAIT_RANGE`); operator self times are
   summed per name and divided by ``steps``; device busy time is the union of the
   kernel, memcpy and memset intervals.

Operator groups (:func:`operator_group`) sort aten operators into matrix products, QR,
eigen/SVD/solve, copies and casts, elementwise/reductions/random, views and
allocation, CUDA runtime and other; the time outside any operator (Python, the
profiler itself) is ``StepProfile.outside``.

>>> from suite.measure.cases import Case
>>> from suite.measure.workloads import prepare
>>> p = profile_work(prepare(Case("update", "projunn_t", 32, 2)), steps=2)
>>> p.profiled_time > 0 and p.ops[0].self_cpu > 0 and p.kernels_per_step is None
True
>>> any(op.name == "aten::linalg_qr" for op in p.ops)
True
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from . import machine, output
from .rows import Measurement
from .settings import Settings
from .timing import Timing, cuda_peak_bytes, measure, reset_cuda_peak, synchronize
from .workloads import Prepared

__all__ = [
    "GROUPS",
    "OpStat",
    "StepProfile",
    "WAIT_RANGE",
    "count_syncs",
    "sync_sites",
    "device_activity",
    "operator_group",
    "peak_allocation",
    "profile_work",
]

STEP_RANGE = "projunn-bench step"
"""``record_function`` range around every profiled step (visible in the trace)."""
MEMORY_RANGE = "projunn-bench memory step"
"""Range around the step whose CPU allocations are measured."""
WAIT_RANGE = "projunn-bench: wait for the device after the last step"
"""Range around the one device synchronization that closes the profiled window (CUDA)."""
SYNC_WARNING = "synchroniz"
"""Text of the warning ``set_sync_debug_mode("warn")`` emits ("called a synchronizing
CUDA operation")."""
SYNC_NOTE = (
    "lower bound: synchronizations seen by torch.cuda.set_sync_debug_mode('warn'); "
    "those torch does not check (e.g. inside cuSOLVER) are missed"
)

_MATMUL = "matrix products"
_QR = "QR"
_EIGEN = "eigen / SVD / solve"
_COPY = "copies and casts"
_ELEMENTWISE = "elementwise, reductions, random"
_VIEWS = "views and allocation"
RUNTIME = "CUDA runtime (launch, sync)"
_OTHER = "other"
OUTSIDE = "outside operators"
"""Pseudo group of the figure: profiled wall time not inside any operator (Python code,
the profiler's own overhead)."""

_GROUP_OPS = {
    _MATMUL: "mm addmm bmm baddbmm addbmm matmul mv addmv dot vdot linear einsum outer "
    "_addmm_activation tensordot linalg_multi_dot",
    _QR: "linalg_qr qr geqrf orgqr ormqr linalg_householder_product",
    _EIGEN: "linalg_eigh _linalg_eigh linalg_eig linalg_eigvals linalg_eigvalsh linalg_svd "
    "_linalg_svd svd linalg_svdvals linalg_matrix_exp matrix_exp linalg_solve "
    "linalg_solve_ex _linalg_solve_ex linalg_lu_factor_ex linalg_lu_solve linalg_lu "
    "lu_unpack linalg_inv linalg_inv_ex linalg_cholesky_ex cholesky "
    "linalg_solve_triangular triangular_solve linalg_det _linalg_det linalg_slogdet "
    "_linalg_slogdet linalg_pinv linalg_lstsq",
    _COPY: "copy _to_copy to clone contiguous _copy_from _copy_from_and_resize resolve_conj "
    "resolve_neg conj_physical _conj_physical cat stack index_select index index_put "
    "_index_put_impl gather scatter triu tril flip roll repeat diag_embed diag masked_fill "
    "item _local_scalar_dense lift_fresh_copy",
    _ELEMENTWISE: "add sub rsub mul div neg abs exp log sqrt rsqrt sin cos tanh sigmoid relu "
    "pow reciprocal sign sgn where clamp clamp_min clamp_max maximum minimum isfinite isnan "
    "isinf eq ne lt gt le ge all any sum mean norm linalg_vector_norm linalg_matrix_norm "
    "frobenius_norm max min amax amin complex polar angle fill zero normal uniform randn "
    "rand addcmul addcdiv lerp mse_loss square exp2 logical_and logical_or bitwise_and",
    _VIEWS: "empty empty_like empty_strided zeros zeros_like ones ones_like full full_like eye "
    "arange view reshape _reshape_alias _unsafe_view transpose t mT mH adjoint permute "
    "slice select as_strided expand expand_as unsqueeze squeeze narrow diagonal alias "
    "detach lift_fresh unbind split split_with_sizes chunk view_as_real view_as_complex "
    "real imag conj _neg_view resize set result_type numpy_T _unsafe_index",
}
_GROUP_OF = {op: group for group, ops in _GROUP_OPS.items() for op in ops.split()}
_FALLBACKS = (  # unknown aten operators: first matching substring
    (_QR, ("qr", "householder")),
    (_EIGEN, ("eig", "svd", "solve", "lu_", "cholesky", "matrix_exp", "inv")),
    (_COPY, ("copy",)),
)

GROUPS = (_MATMUL, _QR, _EIGEN, _COPY, _ELEMENTWISE, _VIEWS, RUNTIME, _OTHER)
"""Operator groups in display order (see :func:`operator_group`)."""


def operator_group(name: str) -> str:
    """The group of a profiler event name (one of :data:`GROUPS`).

    aten operators by name (in-place ``_`` variants like their base), names of unknown
    ones by a few substrings (``*mm``, ``qr``, ``eig``/``svd``/``solve``, ``copy``); the
    CUDA runtime calls (``cudaLaunchKernel``, ``cudaStreamSynchronize``, ...) and the
    closing :data:`WAIT_RANGE`; everything else (autograd nodes, optimizer annotations)
    is "other".

    >>> [operator_group(n) for n in ("aten::addmm_", "aten::linalg_qr", "aten::_linalg_eigh")]
    ['matrix products', 'QR', 'eigen / SVD / solve']
    >>> [operator_group(n) for n in ("aten::copy_", "aten::mH", "cudaLaunchKernel")]
    ['copies and casts', 'views and allocation', 'CUDA runtime (launch, sync)']
    """
    if name == WAIT_RANGE or name.startswith("cuda") or name[:2] == "cu" and name[2:3].isupper():
        return RUNTIME
    if not name.startswith("aten::"):
        return _OTHER
    op = name[len("aten::") :]
    group = _GROUP_OF.get(op) or _GROUP_OF.get(op.rstrip("_"))
    if group:
        return group
    if op.rstrip("_").endswith("mm"):
        return _MATMUL
    for group, parts in _FALLBACKS:
        if any(p in op for p in parts):
            return group
    return _OTHER


@dataclass(frozen=True)
class OpStat:
    """One operator name: ``calls``, ``self_cpu`` and ``self_device`` seconds, all per step."""

    name: str
    calls: float
    self_cpu: float
    self_device: float = 0.0

    @property
    def group(self) -> str:
        return operator_group(self.name)


@dataclass(frozen=True)
class StepProfile:
    """Per-step figures of one case (times in seconds, memory in bytes; ``None`` where
    they do not apply, e.g. kernels and syncs on the CPU). See the module docstring for
    how each is measured."""

    workload: str
    device: str
    steps: int
    time: Timing | None
    profiled_time: float
    ops: tuple[OpStat, ...]
    ops_per_step: float
    kernels_per_step: float | None
    memcpy_per_step: float | None
    device_busy_time: float | None
    host_syncs_per_step: float | None
    peak_memory: int | None
    resident_memory: int | None
    host_peak_rss: int | None
    memory_source: str
    compute_ops_per_step: float | None = None

    @property
    def on_cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    @property
    def temporary_memory(self) -> int | None:
        """Peak during the step beyond the resident weight, gradient and state."""
        if self.peak_memory is None or self.resident_memory is None:
            return None
        return max(0, self.peak_memory - self.resident_memory)

    @property
    def device_busy_fraction(self) -> float | None:
        """Device busy time / unprofiled wall time per step (CUDA)."""
        if self.device_busy_time is None or self.time is None or not self.time.median:
            return None
        return self.device_busy_time / self.time.median

    @property
    def outside(self) -> float:
        """Profiled wall time per step not spent inside an operator (Python, profiler)."""
        return max(0.0, self.profiled_time - sum(op.self_cpu for op in self.ops))

    def groups(self) -> dict[str, tuple[float, float]]:
        """``{group: (self CPU s, self device s)}`` per step, for every group of
        :data:`GROUPS` (zeros included)."""
        out = {g: (0.0, 0.0) for g in GROUPS}
        for op in self.ops:
            cpu, dev = out[op.group]
            out[op.group] = (cpu + op.self_cpu, dev + op.self_device)
        return out

    def measurements(self, *, ops: bool = True, timing: bool = True) -> list[Measurement]:
        """Tidy rows (:class:`suite.measure.workloads.Measurement`).

        Metrics: ``time`` (s, median/IQR/samples of the unprofiled steps; with ``timing``),
        ``profiled_time`` (s), ``ops_per_step`` (aten calls, views included),
        ``compute_ops_per_step`` (compute operators dispatched, views and metadata-only
        operators excluded: :func:`compute_ops`), ``kernels_per_step``,
        ``memcpy_per_step``, ``device_busy_time`` (s), ``device_busy_fraction``,
        ``host_syncs_per_step`` (the last four CUDA only; syncs are a lower bound, said in
        ``reason``), ``step_peak_memory``, ``step_resident_memory``,
        ``step_temporary_memory``, ``host_peak_rss`` (bytes; with ``timing``: ``run``
        measures ``time`` and ``host_peak_rss`` itself), then per group
        ``group_self_cpu_time:GROUP`` (and ``group_self_device_time:GROUP`` on CUDA) and,
        with ``ops``, per operator ``op_calls:NAME``, ``op_self_cpu_time:NAME`` (and
        ``op_self_device_time:NAME``). Time metrics are seconds per step; a share of the
        step is such a time / ``profiled_time``.
        """
        rows: list[Measurement] = []

        def add(metric, value, unit, reason=""):
            if value is not None:
                rows.append(Measurement(metric, float(value), unit, reason=reason))

        if timing and self.time is not None:
            rows.append(Measurement.timing("time", self.time))
        add("profiled_time", self.profiled_time, "s")
        add("ops_per_step", self.ops_per_step, "1")
        add("compute_ops_per_step", self.compute_ops_per_step, "1")
        add("kernels_per_step", self.kernels_per_step, "1")
        add("memcpy_per_step", self.memcpy_per_step, "1")
        add("device_busy_time", self.device_busy_time, "s")
        add("device_busy_fraction", self.device_busy_fraction, "1")
        add("host_syncs_per_step", self.host_syncs_per_step, "1", SYNC_NOTE)
        add("step_peak_memory", self.peak_memory, "bytes", self.memory_source)
        add("step_resident_memory", self.resident_memory, "bytes", self.memory_source)
        add("step_temporary_memory", self.temporary_memory, "bytes", self.memory_source)
        if timing:
            add("host_peak_rss", self.host_peak_rss, "bytes")
        for group, (cpu, dev) in self.groups().items():
            if group == RUNTIME and not self.on_cuda:
                continue
            add(f"group_self_cpu_time:{group}", cpu, "s")
            if self.on_cuda:
                add(f"group_self_device_time:{group}", dev, "s")
        if ops:
            for op in self.ops:
                add(f"op_calls:{op.name}", op.calls, "1")
                add(f"op_self_cpu_time:{op.name}", op.self_cpu, "s")
                if self.on_cuda:
                    add(f"op_self_device_time:{op.name}", op.self_device, "s")
        return rows


# --- pieces that work on plain numbers (unit-tested without a GPU) -------------------


def peak_allocation(deltas: Iterable[int]) -> int:
    """Largest running sum of allocation (+) and free (-) byte counts, at least 0.

    >>> peak_allocation([100, 50, -100, 200, -250])
    250
    """
    return max(itertools.accumulate(deltas, initial=0))


def device_activity(events: Iterable[tuple[str, float, float]]) -> tuple[int, int, float]:
    """``(kernels, memcpy/memset, busy)`` from device events ``(name, start, end)``.

    Kernels are the events that are neither memcpy/memset nor synchronization records;
    busy time is the length of the union of the kernel and memcpy/memset intervals
    (overlapping streams are not counted twice), in the unit of ``start``/``end``.

    >>> device_activity([("gemm", 0, 4), ("Memcpy DtoH", 3, 6), ("Event Sync", 6, 9), ("k", 8, 9)])
    (2, 1, 7.0)
    """
    kernels = copies = 0
    spans = []
    for name, start, end in events:
        if name.startswith(("Memcpy", "Memset")):
            copies += 1
        elif "Sync" in name:  # CUPTI synchronization records: waiting, not work
            continue
        else:
            kernels += 1
        spans.append((start, end))
    busy, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return kernels, copies, busy


def sync_sites(run: Callable[[], Any]) -> list[tuple[str, int]]:
    """``(file, line)`` of the Python code behind each host synchronization ``run()``
    makes, seen by the CUDA sync debug mode.

    Sets ``torch.cuda.set_sync_debug_mode("warn")``, records every warning (none is
    folded into a "once" filter) and restores the previous mode. A lower bound (see
    :data:`SYNC_NOTE`).
    """
    old = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(old)
    return [(w.filename, w.lineno) for w in caught if SYNC_WARNING in str(w.message)]


def count_syncs(run: Callable[[], Any]) -> int:
    """The number of :func:`sync_sites` of ``run()``."""
    return len(sync_sites(run))


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
        if obj.grad is not None:
            yield obj.grad
    elif isinstance(obj, torch.nn.Module):
        for t in itertools.chain(obj.parameters(), obj.buffers()):
            yield from _tensors(t)
    elif isinstance(obj, torch.optim.Optimizer):
        yield from _tensors(list(obj.state.values()))
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


def resident_bytes(state: Any) -> int:
    """Bytes of the distinct tensor storages in ``state`` (tensors with their gradients,
    modules' parameters and buffers, optimizer state, nested dicts/lists).

    >>> x = torch.zeros(4, 4)
    >>> resident_bytes({"A": x, "view": x[1], "B": torch.zeros(2)})
    72
    """
    seen: dict[int, int] = {}
    for t in _tensors(state):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


# --- the passes ----------------------------------------------------------------------


def _memory_cpu(step: Callable[[], Any]) -> int:
    """Peak bytes of the tensors allocated during ``step()`` beyond those alive before it,
    from a ``profile_memory`` profile (torch's CPU allocator).

    Two steps are profiled and the second one measured: the profiler cannot see frees of
    blocks allocated before it started (e.g. last step's gradient), but the second step
    frees only blocks the first one allocated.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
        with record_function(MEMORY_RANGE):
            step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    (window,) = (e for e in events if e.get("name") == MEMORY_RANGE and e.get("ph") == "X")
    start, end = window["ts"], window["ts"] + window["dur"]
    mem = sorted(
        (e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0),
        key=lambda e: e["ts"],
    )
    return peak_allocation(int(e["args"]["Bytes"]) for e in mem if start <= e["ts"] <= end)


def _aggregate(events, steps: int) -> tuple[tuple[OpStat, ...], float]:
    """Per-step :class:`OpStat` rows (largest self time first) and aten calls per step
    from the host events of a profile; the step ranges are left out and the events
    inside :data:`WAIT_RANGE` are folded into it."""
    from torch.autograd import DeviceType

    def inside_wait(e) -> bool:
        p = e.cpu_parent
        while p is not None:
            if p.name == WAIT_RANGE:
                return True
            p = p.cpu_parent
        return False

    totals: dict[str, list[float]] = {}
    aten_calls = 0
    for e in events:
        if e.device_type != DeviceType.CPU or e.is_async:
            continue
        if e.name == STEP_RANGE or e.name == "[memory]" or e.name.startswith("ProfilerStep"):
            continue
        if inside_wait(e):
            continue
        if e.name == WAIT_RANGE:
            cpu, dev = e.cpu_time_total, 0.0
        else:  # own kernels; a range's GPU-side annotation (same name) is not work
            cpu = e.self_cpu_time_total
            dev = sum(k.duration for k in e.kernels if k.name != e.name)
        entry = totals.setdefault(e.name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += cpu
        entry[2] += dev
        aten_calls += e.name.startswith("aten::")
    ops = [
        OpStat(name, calls / steps, cpu * 1e-6 / steps, dev * 1e-6 / steps)
        for name, (calls, cpu, dev) in totals.items()
    ]
    ops.sort(key=lambda op: (-max(op.self_cpu, op.self_device), op.name))
    return tuple(ops), aten_calls / steps


def _is_annotation(e) -> bool:
    return bool(getattr(e, "is_user_annotation", False)) or e.name.startswith("ProfilerStep")


def _device_events(events) -> list[tuple[str, float, float]]:
    """``(name, start, end)`` (microseconds) of the device's kernels, memcpy and memset.

    Left out: the GPU-side copies of ``record_function`` ranges ("gpu_user_annotation"
    events, which span whole steps), recognised by their flag or by the name of a host
    range.
    """
    from torch.autograd import DeviceType

    ranges = {e.name for e in events if e.device_type == DeviceType.CPU and _is_annotation(e)}
    return [
        (e.name, e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type == DeviceType.CUDA and not _is_annotation(e) and e.name not in ranges
    ]


def _save_trace(prof, path: Path) -> None:
    """Export the profile as a Chrome/Perfetto trace, atomically."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / path.name
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src:
            output.atomic_write(path, lambda f: shutil.copyfileobj(src, f))


def profile_work(
    work: Prepared,
    *,
    steps: int = 20,
    settings: Settings | None = None,
    timing: Timing | None = None,
    trace: str | Path | None = None,
) -> StepProfile:
    """Profile ``work.step`` (see the module docstring for the passes).

    ``settings`` (default :class:`~suite.measure.cases.Settings`): ``warmup`` untimed steps
    first, the timing budget, ``threads`` torch threads for every pass; ``timing`` skips
    the timing pass (a caller that already timed the step passes its
    :class:`~suite.measure.timing.Timing`); ``trace`` writes the profiled steps as a
    Chrome/Perfetto trace file.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    settings = settings or Settings()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads or threads)
    try:
        with without_profiler_log():
            return _profile(work, steps, settings, timing, trace)
    finally:
        torch.set_num_threads(threads)


PROFILER_LOG = "USDT:"
"""Start of the lines torch's profiler (kineto) writes to the process's stderr at every
start and stop (``USDT: ... profiler_start``): noise to whoever reads the output."""


@contextlib.contextmanager
def without_profiler_log():
    """Run the block with the process's stderr (file descriptor 2, where the profiler's C++
    code writes) going to a temporary file; then pass on every line but the profiler's
    :data:`PROFILER_LOG` lines. Nothing else is lost, only delayed to the block's end."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            kept = [x for x in text.splitlines(keepends=True) if not x.startswith(PROFILER_LOG)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _memory(work: Prepared) -> tuple[int, int, int, str]:
    """``(peak, resident, host RSS peak, source)`` of one step (see the module docstring)."""
    step, device = work.step, work.device
    cuda = device.type == "cuda"
    with machine.HostMemorySampler() as rss:
        if cuda:  # the allocator's bytes before the step, and at its peak
            reset_cuda_peak(device)
            resident = torch.cuda.memory_allocated(device)
        step()
        peak = cuda_peak_bytes(device)
    if cuda:
        return peak, int(resident), rss.peak, "torch.cuda memory stats"
    resident = resident_bytes(work.state)
    return resident + _memory_cpu(step), resident, rss.peak, "torch.profiler CPU allocator events"


def _profiled_steps(step: Callable[[], Any], device: torch.device, steps: int):
    """``steps`` steps under ``torch.profiler``: ``(profile, wall seconds per step)``."""
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:  # CUPTI starts up on the first profile; keep that out of the measured one
        with profile(activities=activities):
            step()
            synchronize(device)
    with profile(activities=activities) as prof:
        start = perf_counter()
        for _ in range(steps):
            with record_function(STEP_RANGE):
                step()
        if cuda:
            with record_function(WAIT_RANGE):
                synchronize(device)
        wall = (perf_counter() - start) / steps
    return prof, wall


def _profile(work, steps, settings, timing, trace) -> StepProfile:
    step, device = work.step, work.device
    cuda = device.type == "cuda"
    for _ in range(settings.warmup):
        step()
    synchronize(device)
    if timing is None:
        timing = measure(
            step, min_time=settings.min_time, max_time=settings.max_time, warmup=0, device=device
        )
    peak, resident, rss_peak, source = _memory(work)
    syncs = None
    if cuda:
        syncs = count_syncs(lambda: [step() for _ in range(steps)]) / steps
        synchronize(device)
    prof, profiled = _profiled_steps(step, device, steps)
    events = prof.events()
    ops, aten_calls = _aggregate(events, steps)
    kernels = copies = busy = None
    device_events = _device_events(events) if cuda else []
    if device_events:
        k, c, b = device_activity(device_events)
        kernels, copies, busy = k / steps, c / steps, b * 1e-6 / steps
    elif cuda:
        warnings.warn(
            "torch.profiler recorded no CUDA activity (is CUPTI available?): kernels and "
            "device busy time are not measured",
            RuntimeWarning,
            stacklevel=2,
        )
    if trace is not None:
        _save_trace(prof, Path(trace))
    return StepProfile(
        workload=work.case.workload,
        device=str(device),
        steps=steps,
        time=timing,
        profiled_time=profiled,
        ops=ops,
        ops_per_step=aten_calls,
        kernels_per_step=kernels,
        memcpy_per_step=copies,
        device_busy_time=busy,
        host_syncs_per_step=syncs,
        peak_memory=peak,
        resident_memory=resident,
        host_peak_rss=rss_peak,
        memory_source=source,
        compute_ops_per_step=compute_ops(work),
    )


def compute_ops(work: Prepared) -> float:
    """The compute operators one step of ``work`` dispatches, views and metadata-only
    operators left out (:func:`suite.measure.opcount.count_ops`), on any device: the
    launch budget of a GPU step, visible on a CPU. A CUDA-graph step is counted on the
    function it captured (its replay dispatches no operator).

    >>> from suite.measure.cases import Case
    >>> from suite.measure.workloads import prepare
    >>> compute_ops(prepare(Case("update", "unconstrained", 8)))  # A.add_(G, alpha=-lr)
    1.0
    """
    from .opcount import count_ops

    graph = work.state.get("graph")
    step = getattr(graph, "fn", None) or work.step
    counted = count_ops(step)
    synchronize(work.device)
    return float(counted.total)
