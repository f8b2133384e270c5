"""Timing that is correct on CPUs and CUDA devices.

:func:`measure` times a callable with ``torch.utils.benchmark.Timer.adaptive_autorange``:
calls run in blocks, the clock (and, on CUDA, a device synchronization) is read once per
block, never per call, so sub-millisecond CUDA steps are not inflated by a host sync per
sample; sampling stops once the spread is small or the time budget is spent. The
thread count is explicit. :func:`timer` is the synchronizing clock asv uses (asv times
single calls itself). :func:`measure_events` reads CUDA events instead: the time the
device's stream spends per call, with no host clock involved.

**Contention.** :func:`measure` also reports the ``cpu_share`` of its sampling: the CPU
time this process's threads got over the time they were ready to run (:class:`CpuShare`).
On a quiet machine it is close to 1; when other processes hold the cores, the threads
wait for a CPU and it drops. Below :data:`CONTENDED_BELOW` a timing is *contended*: the
median then measures the machine's load as much as the code, and the suite says so
(the ``contended`` column, the warning at the end of a run, the report, ``compare``).

>>> import torch
>>> t = measure(lambda: torch.ones(8).sum(), min_time=0.001, max_time=0.01)
>>> t.repeat >= 1 and t.median > 0 and len(t.samples) == t.repeat
True
>>> 0 < t.cpu_share <= 1.0
True
"""

from __future__ import annotations

import os
import statistics
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark

__all__ = [
    "CLOCKS",
    "CONTENDED_BELOW",
    "CONTENTION_LOG",
    "CpuShare",
    "IQR_THRESHOLD",
    "MIN_SAMPLES",
    "Timing",
    "cuda_peak_bytes",
    "measure",
    "measure_events",
    "reset_cuda_peak",
    "synchronize",
    "timer",
]

IQR_THRESHOLD = 0.1
"""Sampling stops early once IQR / median of the samples falls below this."""
MIN_SAMPLES = 3
"""Samples a slow case still gets when one call takes longer than the time budget."""

CLOCKS = {"wall": timeit.default_timer, "cpu": time.process_time}
"""What a sample measures. ``wall``: elapsed time (any device). ``cpu``: the CPU time of
this process, which does not grow while other processes hold the cores: steadier on a
shared machine for single-threaded CPU work, blind to device (CUDA) work and to waiting."""


def _cuda(device: torch.device | str | None) -> torch.device | None:
    """``device`` as a CUDA device when it is one and CUDA is available, else ``None``."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return dev


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU; ``None``: CUDA if in use)."""
    if device is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    elif (dev := _cuda(device)) is not None:
        torch.cuda.synchronize(dev)


def timer(device: torch.device | str | None = None) -> float:
    """``time.perf_counter`` after synchronizing ``device``: a timer asv and others can use."""
    synchronize(device)
    return time.perf_counter()


CONTENTION_LOG = "PROJUNN_BENCH_CONTENTION_LOG"
"""Environment variable: a file to which every timed asv combination appends its CPU share
(``suite/benchmarks.py``; the gate sets it and reads it back)."""

CONTENDED_BELOW = 0.9
"""A timing whose ``cpu_share`` is below this is contended (see the module docstring):
on the project's quiet 2-core machine every timed case of the quick grid measured 0.94 or
more (median 0.9998), under one CPU hog per core 0.75 or less (median 0.49)
(``results/contention.md``)."""


def _schedstat() -> tuple[int, int] | None:
    """``(ran, waited)`` nanoseconds summed over this process's threads: time on a CPU and
    time runnable but waiting for one (Linux ``/proc/self/task/*/schedstat``); ``None``
    where the kernel does not provide them."""
    ran = waited = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    found = False
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        ran += int(fields[0])
        waited += int(fields[1])
        found = True
    return (ran, waited) if found else None


class CpuShare:
    """The share of the time this process's threads were ready to run that they ran,
    over a ``with`` block: ``share`` (0 to 1) after it ends.

    Linux: from the scheduler's statistics (CPU time / (CPU time + run-queue wait), all
    threads together: idle or blocked threads count neither way, so a quiet run is close
    to 1 whatever the thread count; ``ran`` and ``waited`` hold the two, in seconds).
    Elsewhere: CPU time / (wall time x ``threads``), and ``ran`` / ``waited`` stay ``None``.

    >>> with CpuShare() as meter:
    ...     _ = sum(range(100_000))
    >>> 0 < meter.share <= 1
    True
    """

    def __init__(self, threads: int | None = None):
        self.threads = threads or torch.get_num_threads()
        self.share: float | None = None
        self.ran: float | None = None
        self.waited: float | None = None

    def __enter__(self) -> CpuShare:
        self._sched = _schedstat()
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        end = _schedstat()
        if self._sched is not None and end is not None:
            ran, waited = (b - a for a, b in zip(self._sched, end, strict=True))
            self.share = ran / (ran + waited) if ran + waited > 0 else None
            self.ran, self.waited = ran * 1e-9, waited * 1e-9
        else:
            wall = time.perf_counter() - self._wall
            cpu = time.process_time() - self._cpu
            self.share = min(1.0, cpu / (wall * self.threads)) if wall > 0 else None


@dataclass(frozen=True)
class Timing:
    """Seconds per call: ``median`` and interquartile range ``iqr`` of the ``samples``
    (each the mean of ``number`` calls timed as one block), ``repeat`` samples, and the
    ``cpu_share`` of the sampling (:class:`CpuShare`; ``None`` where not measured)."""

    median: float
    iqr: float
    repeat: int
    number: int
    samples: tuple[float, ...]
    cpu_share: float | None = None

    @property
    def contended(self) -> bool | None:
        """Whether ``cpu_share`` is below :data:`CONTENDED_BELOW` (``None``: not measured)."""
        return None if self.cpu_share is None else self.cpu_share < CONTENDED_BELOW


def measure(
    fn: Callable[[], object],
    *,
    min_time: float = 0.1,
    max_time: float = 1.0,
    warmup: int = 1,
    num_threads: int | None = None,
    device: torch.device | str | None = None,
    clock: str = "wall",
) -> Timing:
    """Time ``fn`` with ``torch.utils.benchmark`` (see the module docstring).

    ``warmup`` calls come first (the block-size estimate warms up too). Sampling runs for
    at least ``min_time`` seconds and four samples, until IQR / median <
    :data:`IQR_THRESHOLD`, and stops once ``max_time`` is spent; when the warm-up shows
    that a call is too slow for :data:`MIN_SAMPLES` samples within ``max_time``, the budget
    stretches to fit them. ``num_threads`` defaults to torch's current thread count;
    ``device`` is the device whose warm-up calls are synchronized (torch's timer
    synchronizes any CUDA device in use while sampling); ``clock`` is a :data:`CLOCKS`
    name ("cpu" refuses a CUDA ``device``).
    """
    if not 0 < min_time <= max_time or warmup < 0:
        raise ValueError(
            f"need 0 < min_time <= max_time and warmup >= 0, got min_time={min_time}, "
            f"max_time={max_time}, warmup={warmup}"
        )
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; choose from {sorted(CLOCKS)}")
    if clock == "cpu" and _cuda(device) is not None:
        raise ValueError("the cpu clock does not see CUDA work: time CUDA with clock='wall'")
    call = 0.0
    for _ in range(warmup):
        start = timer(device)
        fn()
        call = timer(device) - start  # the last, warmest call
    budget = max(max_time, (MIN_SAMPLES - 0.5) * call)
    threads = torch.get_num_threads() if num_threads is None else num_threads
    found = benchmark.Timer(
        stmt="fn()", globals={"fn": fn}, num_threads=threads, timer=CLOCKS[clock]
    )
    with CpuShare(threads) as meter:
        m = found.adaptive_autorange(
            threshold=IQR_THRESHOLD, min_run_time=min_time, max_run_time=budget
        )
    samples = tuple(float(t) for t in m.times)
    number = int(m.number_per_run)
    return Timing(float(m.median), float(m.iqr), len(samples), number, samples, meter.share)


def measure_events(
    fn: Callable[[], object],
    *,
    device: torch.device | str = "cuda",
    blocks: int = 7,
    block_time: float = 0.02,
) -> Timing:
    """Seconds per call between CUDA events: ``blocks`` blocks of back-to-back calls (as
    many as fill about ``block_time`` seconds), each block between two events recorded on
    the current stream, one synchronization at the end. Where the host cannot keep the
    device busy the idle gaps count too, as they do in wall time.
    """
    dev = _cuda(device)
    if dev is None:
        raise ValueError(f"measure_events needs an available CUDA device, got {device!r}")
    if blocks < 1 or not block_time > 0:
        raise ValueError(f"need blocks >= 1 and block_time > 0, got {blocks}, {block_time}")
    start = timer(dev)
    fn()
    number = max(1, min(10_000, int(block_time / max(timer(dev) - start, 1e-7))))
    marks = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(blocks)
    ]
    for begin, end in marks:
        begin.record()
        for _ in range(number):
            fn()
        end.record()
    torch.cuda.synchronize(dev)
    samples = tuple(begin.elapsed_time(end) * 1e-3 / number for begin, end in marks)
    qs = statistics.quantiles(samples, n=4) if blocks > 1 else [samples[0]] * 3
    return Timing(statistics.median(samples), qs[2] - qs[0], blocks, number, samples)


def reset_cuda_peak(device: torch.device | str | None) -> bool:
    """Synchronize and reset CUDA peak-memory statistics of ``device``.

    Returns ``False`` (and does nothing) unless ``device`` is an available CUDA device.
    """
    dev = _cuda(device)
    if dev is None:
        return False
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    return True


def cuda_peak_bytes(device: torch.device | str | None) -> int | None:
    """``torch.cuda.max_memory_allocated`` of ``device`` since the last reset (after a
    synchronize); ``None`` for non-CUDA devices."""
    dev = _cuda(device)
    if dev is None:
        return None
    torch.cuda.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev))
