"""The instruments of the case runner: each probe measures one thing of a prepared step.

A probe is called as ``probe(work, settings, found) -> list[Measurement]`` on a
:class:`~suite.measure.workloads.Prepared` step; ``found`` is shared by the probes of one
case, so that a later probe can reuse what an earlier one measured (the profiler reuses
the wall timing instead of timing the step again). A probe raises
:class:`~suite.measure.cases.Skip` for what does not apply here (CUDA events on a CPU);
:func:`suite.measure.runner.run_case` turns that into a skipped row and any other
exception into an error row of that probe, and goes on with the next probe.

* :data:`MEMORY` — one untimed step: ``host_peak_rss`` (the kernel's high-water mark of
  this process during the step) and, on CUDA, ``cuda_peak_memory`` (peak allocated
  during the step, the resident weight and gradient included);
* :data:`TIME` — ``time``: :func:`suite.measure.timing.measure` with the settings' budget,
  threads and clock (median, IQR and samples);
* :data:`CUDA_EVENTS` — ``time_cuda_events``: the stream time per call between CUDA
  events (CUDA only);
* :data:`HOST_SYNCS` — ``host_syncs_per_step`` of one step under the CUDA sync debug mode,
  with where they happen in ``reason`` (CUDA only; a lower bound);
* :class:`Profile` — the per-step figures of :mod:`suite.measure.profiling` (operators,
  kernels, device busy time, memory), optionally a trace file.

>>> from suite.measure.cases import Case
>>> from suite.measure.workloads import prepare
>>> work, found = prepare(Case("update", "unconstrained", 8)), {}
>>> [m.metric for m in TIME(work, Settings(min_time=0.01, max_time=0.01), found)], "timing" in found
(['time'], True)
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import machine
from .cases import Skip
from .rows import Measurement
from .settings import Settings
from .timing import cuda_peak_bytes, measure, measure_events, reset_cuda_peak, synchronize
from .workloads import Prepared

__all__ = [
    "CUDA_EVENTS",
    "HOST_SYNCS",
    "MEMORY",
    "TIME",
    "Probe",
    "Profile",
    "sweep_probes",
]

Probe = Callable[[Prepared, Settings, dict], list[Measurement]]
"""``probe(work, settings, found) -> measurements`` (see the module docstring); a probe
also has a ``name``, the metric its failure is reported under."""

_ROOT = Path(__file__).resolve().parents[2]


def _on_cuda(work: Prepared) -> bool:
    return work.device.type == "cuda" and torch.cuda.is_available()


@dataclass(frozen=True)
class _Memory:
    name: str = "memory"

    def __call__(self, work: Prepared, settings: Settings, found: dict) -> list[Measurement]:
        reset_cuda_peak(work.device)
        with machine.HostMemorySampler() as mem:
            work.step()
            synchronize(work.device)
        out = [Measurement("host_peak_rss", float(mem.peak), "bytes")]
        peak = cuda_peak_bytes(work.device)
        if peak is not None:
            out.append(Measurement("cuda_peak_memory", float(peak), "bytes"))
        return out


@dataclass(frozen=True)
class _Time:
    name: str = "time"

    def __call__(self, work: Prepared, settings: Settings, found: dict) -> list[Measurement]:
        t = measure(
            work.step,
            min_time=settings.min_time,
            max_time=settings.max_time,
            warmup=settings.warmup,
            num_threads=settings.threads,
            device=work.device,
            clock=settings.clock,
        )
        found["timing"] = t
        return [Measurement.timing("time", t)]


@dataclass(frozen=True)
class _CudaEvents:
    name: str = "time_cuda_events"

    def __call__(self, work: Prepared, settings: Settings, found: dict) -> list[Measurement]:
        if not _on_cuda(work):
            raise Skip("CUDA event times are measured on CUDA devices only")
        return [Measurement.timing(self.name, measure_events(work.step, device=work.device))]


def _site(filename: str, line: int) -> str:
    """``file:line`` relative to the project where possible."""
    path = Path(filename)
    try:
        path = path.resolve().relative_to(_ROOT)
    except ValueError:
        path = Path(*path.parts[-3:])
    return f"{path}:{line}"


@dataclass(frozen=True)
class _HostSyncs:
    name: str = "host_syncs_per_step"

    def __call__(self, work: Prepared, settings: Settings, found: dict) -> list[Measurement]:
        from .profiling import sync_sites

        if not _on_cuda(work):
            raise Skip("host syncs are counted on CUDA only")
        synchronize(work.device)
        sites = [_site(f, line) for f, line in sync_sites(work.step)]
        counts = Counter(sites)
        where = "; ".join(f"{s} (x{c})" if c > 1 else s for s, c in counts.items())
        return [Measurement(self.name, float(len(sites)), "1", reason=where or "sync-free")]


MEMORY: Probe = _Memory()
TIME: Probe = _Time()
CUDA_EVENTS: Probe = _CudaEvents()
HOST_SYNCS: Probe = _HostSyncs()


@dataclass(frozen=True)
class Profile:
    """The per-step figures of :func:`suite.measure.profiling.profile_work` over ``steps``
    profiled steps: without ``ops`` no per-operator rows; ``trace`` writes a
    Chrome/Perfetto trace there. Reuses the wall timing of an earlier :data:`TIME` probe
    (its own timing pass and ``time``/``host_peak_rss`` rows only when there is none).
    The :class:`~suite.measure.profiling.StepProfile` lands in ``found["profile"]``."""

    steps: int = 5
    ops: bool = False
    trace: Path | None = None
    name: str = "profile"

    def __call__(self, work: Prepared, settings: Settings, found: dict) -> list[Measurement]:
        from .profiling import profile_work

        timed = found.get("timing")
        if timed is not None:  # the step is warm and timed already
            settings = dataclasses.replace(settings, warmup=0)
        p = profile_work(work, steps=self.steps, settings=settings, timing=timed, trace=self.trace)
        found["profile"] = p
        return p.measurements(ops=self.ops, timing=timed is None)


def sweep_probes(settings: Settings) -> tuple[Probe, ...]:
    """The probes of a ``projunn-bench run`` case: time (after its warm-up), the memory of
    one more step and, with ``settings.profile_steps``, the per-step profile."""
    probes: tuple[Any, ...] = (TIME, MEMORY)
    if settings.profile_steps:
        probes += (Profile(settings.profile_steps),)
    return probes
