"""Machine description for every run: host (psutil), GPUs (nvidia-ml-py), versions, git.

Without an NVIDIA GPU, driver or ``pynvml`` the GPU fields are empty (``""``, ``None``,
``[]``); nothing here raises.

>>> d = describe()
>>> sorted(k for k in ("cpu_model", "gpu_name", "torch") if k in d)
['cpu_model', 'gpu_name', 'torch']
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "GPU_FIELDS",
    "GpuMonitor",
    "HostMemorySampler",
    "describe",
    "environment",
    "gpu_info",
    "git_commit",
    "gpu_name",
    "load",
    "peak_rss",
]

GPU_FIELDS = {
    "gpu_name": "",
    "gpu_count": 0,
    "gpu_memory_bytes": None,
    "gpu_driver": "",
    "gpu_sm_clock_mhz": None,
    "gpu_sm_clock_max_mhz": None,
    "gpu_power_limit_w": None,
}
"""The flat GPU fields of :func:`describe` with their empty values (GPU 0 when present)."""


def _nvml():
    """The initialized ``pynvml`` module, or ``None`` when absent / no driver."""
    try:
        import pynvml
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def gpu_info() -> list[dict[str, Any]]:
    """One dict per NVIDIA GPU (name, memory, driver, SM clocks, power limit); ``[]`` if none."""
    nv = _nvml()
    if nv is None:
        return []
    gpus: list[dict[str, Any]] = []
    try:
        driver = _s(nv.nvmlSystemGetDriverVersion())
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            info: dict[str, Any] = {"index": i, "gpu_driver": driver}
            for key, call in (
                ("gpu_name", lambda h=h: _s(nv.nvmlDeviceGetName(h))),
                ("gpu_memory_bytes", lambda h=h: int(nv.nvmlDeviceGetMemoryInfo(h).total)),
                ("gpu_sm_clock_mhz", lambda h=h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                (
                    "gpu_sm_clock_max_mhz",
                    lambda h=h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
                ),
                ("gpu_power_limit_w", lambda h=h: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3),
            ):
                try:
                    info[key] = call()
                except Exception:
                    info[key] = GPU_FIELDS[key]
            gpus.append(info)
    except Exception:  # NVML failed part-way: keep the GPUs read so far
        pass
    return gpus


def gpu_name() -> str:
    """Name of the first CUDA device (torch, then NVML), ``""`` without one."""
    try:
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    gpus = gpu_info()
    return gpus[0]["gpu_name"] if gpus else ""


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (``ru_maxrss``)."""
    try:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
    except Exception:  # pragma: no cover - Windows
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))


def load() -> dict[str, Any]:
    """What other processes are doing to this one, now: the load average (1, 5, 15 min)
    and this process's involuntary context switches so far (the kernel took a CPU away
    from it while it could run; a quiet machine adds few). ``None`` where unknown.

    >>> sorted(load())
    ['involuntary_context_switches', 'loadavg_1_5_15']
    """
    try:
        avg = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        avg = None
    try:
        import resource

        switches = int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)
    except Exception:  # pragma: no cover - Windows
        switches = None
    return {"loadavg_1_5_15": avg, "involuntary_context_switches": switches}


def git_commit(root: Path) -> str:
    """The commit checked out in ``root`` (``+dirty`` with uncommitted changes to tracked
    files), or ``""`` when ``root`` is not the top of a git checkout: an unpacked copy of
    the project inside another repository has no commit of its own, and the outer
    repository's is not the project's.

    >>> import tempfile
    >>> git_commit(Path(tempfile.mkdtemp()))
    ''
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return ""
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return ""
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """Host, GPU, software and git description (a JSON-ready dict).

    Keys: ``timestamp``, ``hostname``, ``platform``, ``python``, ``cpu_model``,
    ``cpu_physical_cores``, ``cpu_logical_cores``, ``ram_bytes``, ``torch``, ``cuda``
    (torch's CUDA version or ``""``), ``cudnn``, ``torch_threads``, ``cuda_available``,
    ``git_commit``, ``environment``, ``plugin_methods`` (the methods plug-ins registered:
    name -> module), the :data:`GPU_FIELDS` of GPU 0 and ``gpus`` (all GPUs).
    """
    import psutil

    from .methods import plugin_methods

    d: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "ram_bytes": int(psutil.virtual_memory().total),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or "") if torch.cuda.is_available() else "",
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
        "environment": environment(),
        "plugin_methods": plugin_methods(),
    }
    gpus = gpu_info()
    d.update(GPU_FIELDS)
    d["gpu_count"] = len(gpus)
    if gpus:
        d.update({k: v for k, v in gpus[0].items() if k in GPU_FIELDS})
    d["gpus"] = gpus
    return d


class _Sampler:
    """Background thread calling ``sample()`` every ``interval`` seconds (context manager)."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:
                return
            self._stop.wait(self.interval)

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_CLEAR_REFS = "/proc/self/clear_refs"


def _high_water_rss() -> int | None:
    """The kernel's peak RSS of this process (``VmHWM``, bytes), or ``None`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_high_water_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` where not possible."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return _high_water_rss() is not None


class HostMemorySampler(_Sampler):
    """Peak RSS (bytes) of this process while the ``with`` block runs.

    On Linux the kernel's high-water mark is reset on entry and read on exit: exact, and
    no thread competes with the measured code. Elsewhere a psutil sampling thread (every
    ``interval`` seconds) approximates it.

    >>> with HostMemorySampler() as s:
    ...     _ = bytearray(1 << 20)
    >>> s.peak > 0
    True
    """

    def __init__(self, interval: float = 0.005):
        super().__init__(interval)
        self.peak = 0
        self._kernel = False

    def sample(self) -> None:
        import psutil

        self.peak = max(self.peak, int(psutil.Process().memory_info().rss))

    def start(self):
        self.peak = 0
        self._kernel = _reset_high_water_rss()
        return self if self._kernel else super().start()

    def stop(self) -> None:
        if self._kernel:
            self.peak = _high_water_rss() or 0
            return
        super().stop()
        self.sample()


class GpuMonitor(_Sampler):
    """Samples power draw (W) and SM clock (MHz) of GPU ``index`` in the background.

    ``summary()`` gives ``gpu_power_w_mean``, ``gpu_power_w_max``, ``gpu_sm_clock_mhz_mean``,
    ``gpu_samples``; all ``None``/0 without NVML (the thread then does nothing).
    """

    def __init__(self, index: int = 0, interval: float = 0.2):
        super().__init__(interval)
        self._nv = _nvml()
        self._handle = None
        if self._nv is not None:
            try:
                self._handle = self._nv.nvmlDeviceGetHandleByIndex(index)
            except Exception:
                self._handle = None
        self.power: list[float] = []
        self.clock: list[float] = []

    def start(self):
        if self._handle is None:
            return self
        return super().start()

    def sample(self) -> None:
        nv, h = self._nv, self._handle
        self.power.append(nv.nvmlDeviceGetPowerUsage(h) / 1e3)
        self.clock.append(float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)))

    def summary(self) -> dict[str, Any]:
        def mean(xs):
            return sum(xs) / len(xs) if xs else None

        return {
            "gpu_power_w_mean": mean(self.power),
            "gpu_power_w_max": max(self.power) if self.power else None,
            "gpu_sm_clock_mhz_mean": mean(self.clock),
            "gpu_samples": len(self.power),
        }


def environment() -> dict[str, str]:
    """Environment variables that change results (threads, grid, CUDA visibility)."""
    keys = (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "PROJUNN_BENCH_GRID",
        "PROJUNN_BENCH_PLUGINS",
    )
    return {k: os.environ[k] for k in keys if k in os.environ}
