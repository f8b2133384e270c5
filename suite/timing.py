"""Wall-clock timing that is correct on CPUs and CUDA devices.

>>> import torch
>>> t = measure(lambda: torch.ones(8).sum(), repeat=5, warmup=1)
>>> t.repeat, t.median > 0
(5, True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    dev = torch.device(device) if device is not None else None
    if dev is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    elif dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timer(device: torch.device | str | None = None) -> float:
    """``time.perf_counter`` after synchronizing ``device``: a timer asv and others can use."""
    synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, spread (interquartile range), repeat count."""

    median: float
    iqr: float
    repeat: int
    samples: tuple[float, ...]


def measure(
    fn: Callable[[], object],
    *,
    repeat: int = 20,
    warmup: int = 2,
    number: int = 1,
    device: torch.device | str | None = None,
    max_time: float | None = None,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn`` ``repeat`` times (each sample: ``number`` calls, synchronized).

    ``setup`` (untimed) runs before every sample; with ``max_time`` sampling stops once
    at least 3 samples have been taken and they add up to ``max_time`` seconds.
    """
    if repeat < 1 or number < 1 or warmup < 0:
        raise ValueError("repeat and number must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    samples = []
    spent = 0.0
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = timer(device)
        for _ in range(number):
            fn()
        elapsed = (timer(device) - start) / number
        samples.append(elapsed)
        spent += elapsed * number
        if max_time is not None and len(samples) >= 3 and spent >= max_time:
            break
    qs = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return Timing(statistics.median(samples), qs[2] - qs[0], len(samples), tuple(samples))


def reset_cuda_peak(device: torch.device | str | None) -> bool:
    """Synchronize and reset CUDA peak-memory statistics of ``device``.

    Returns ``False`` (and does nothing) unless ``device`` is an available CUDA device.
    """
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_available():
        return False
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    return True


def cuda_peak_bytes(device: torch.device | str | None) -> int | None:
    """``torch.cuda.max_memory_allocated`` of ``device`` since the last reset (after a
    synchronize); ``None`` for non-CUDA devices."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_available():
        return None
    torch.cuda.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev))
