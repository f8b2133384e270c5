"""asv benchmarks (``asv run --python=same``) over the registry and the selected grid.

The grid comes from ``$PROJUNN_BENCH_GRID`` (default ``quick``); the device parameter
lists the devices present on this machine (:func:`suite.measure.cases.available_devices`).
Cases that cannot run here raise :class:`~suite.measure.cases.Skip` (a
``NotImplementedError``) in ``setup``, which asv records as skipped, with the reason from
:meth:`suite.measure.cases.Case.skip_reason`. Parameters: method (ranked methods carry
their rank: ``projunn_t-k4``, see :func:`suite.measure.cases.method_label`), n, dtype,
device. Plug-ins (:mod:`suite.plugins`) load when this module is imported, so their
methods are parameters too. ``asv.conf.json`` sets ``launch_method: forkserver``, so each
parameter combination forks from a process that has already imported torch (and
``torch._dynamo``, which a first optimizer step imports, and the installed peer
libraries). ``setup`` sets the grid's torch thread count (``Settings.threads``; the
``gate`` grid runs on one thread and times CPU time, ``Settings.clock``) and runs the step
once (and synchronizes) so that even a first sample is warm.

* ``Update`` / ``TrainStep``: ``time_*`` (timer synchronizes CUDA), ``peakmem_*`` (host);
* ``UpdateCudaMemory`` / ``TrainStepCudaMemory``: ``track_cuda_peak_memory`` (bytes,
  peak allocated during one step, reset after setup; CUDA devices only);
* ``AccuracyOneStep`` / ``AccuracyManySteps``: ``track_unitarity_after_1_step`` /
  ``track_unitarity_after_many_steps``;
  ``DistToExact``: ``track_dist_to_exact`` (projUNN rank-k vs exact full-gradient step).
* Convolutions, parameters method, channels, spatial (H = W), dtype (real), device:
  ``ConvUpdate`` / ``ConvTrainStep``: ``time_*``, ``peakmem_*``;
  ``ConvAccuracyOneStep`` / ``ConvAccuracyManySteps``: ``track_orthogonality_after_*``
  (max |sigma - 1| over the frequency matrices).
"""

from __future__ import annotations

# The heavy imports happen here, so asv's forkserver holds them and every forked
# parameter combination starts warm.
import importlib
import importlib.util
import time

import scipy.linalg  # noqa: F401
import torch
import torch._dynamo  # noqa: F401  (a first optimizer step imports it: 1.6 s CPU a process)

import baselines  # noqa: F401
import projunn_core.nn  # noqa: F401

from .measure.cases import (
    Case,
    Skip,
    available_devices,
    current_grid,
    method_labels,
    parse_method_label,
)
from .measure.timing import (
    CLOCKS,
    CONTENTION_LOG,
    CpuShare,
    cuda_peak_bytes,
    reset_cuda_peak,
    synchronize,
)
from .measure.timing import timer as _sync_timer
from .measure.workloads import dist_to_exact, prepare, unitarity_metrics
from .plugins import load_plugins

for _peer in ("geoopt", "geotorch"):  # optional peer libraries: imported once, here
    if importlib.util.find_spec(_peer) is not None:
        importlib.import_module(_peer)
load_plugins()  # the user's methods (PROJUNN_BENCH_PLUGINS, entry points) join the grid
GRID = current_grid()
_SIZES = list(GRID.sizes)
_DTYPES = list(GRID.dtypes)
_DEVICES = list(available_devices())
_PARAM_NAMES = ["method", "n", "dtype", "device"]
_CONV_PARAM_NAMES = ["method", "channels", "spatial", "dtype", "device"]
_CONV_DTYPES = list(GRID.conv_dtypes)


def _methods(workload: str, reference: bool = False) -> list[str]:
    return method_labels(workload, GRID.ranks, reference=reference, devices=_DEVICES)


def _case(workload: str, label: str, n: int, *rest) -> Case:
    """The case of asv parameters ``(label, n, dtype, device)`` or, for conv workloads,
    ``(label, channels, spatial, dtype, device)``."""
    method, k = parse_method_label(label)
    spatial, (dtype, device) = (rest[0], rest[1:]) if len(rest) == 3 else (None, rest)
    return Case(workload, method, n, k, dtype, device, spatial=spatial)


def _conv_params(workload: str) -> list:
    return [_methods(workload), list(GRID.channels), list(GRID.spatial), _CONV_DTYPES, _DEVICES]


_PROCESS_SHARE: list = []  # the meter of this combination's process, started by its first setup


def _log_contention(case: Case) -> None:
    """Append ``case``'s CPU share since its process started (one JSON line) to the file
    named by ``$PROJUNN_BENCH_CONTENTION_LOG``, if set. asv forks a process per parameter
    combination and calls teardown after each sample: the last line of a process covers
    all its samples."""
    import json
    import os

    path = os.environ.get(CONTENTION_LOG)
    if not path or not _PROCESS_SHARE:
        return
    meter, started = _PROCESS_SHARE[0]
    meter.__exit__(None, None, None)
    line = {
        "commit": os.environ.get("ASV_COMMIT", ""),
        **{k: getattr(case, k) for k in ("workload", "method", "n", "k", "dtype", "device")},
        "cpu_share": meter.share,
        "seconds": time.perf_counter() - started,
        "pid": os.getpid(),
    }
    with open(path, "a") as f:  # one short write per line: lines of parallel writers stay whole
        f.write(json.dumps(line) + "\n")


class _Timed:
    """Shared setup of the timed classes: build the workload (asv does the warm-up)."""

    workload = ""
    param_names = _PARAM_NAMES
    timer = staticmethod(CLOCKS["cpu"] if GRID.settings.clock == "cpu" else _sync_timer)
    rounds = GRID.asv_rounds
    timeout = 600
    warmup_time = 0.1
    case: Case | None = None  # stays None when setup skips before building the case
    work = None

    def setup(self, *params):
        device = params[-1]
        if GRID.settings.clock == "cpu" and not device.startswith("cpu"):
            raise Skip(f"grid {GRID.name} times CPU time, blind to {device}")
        if GRID.settings.threads is not None:  # each combination is its own forked process
            torch.set_num_threads(GRID.settings.threads)
        self.case = _case(self.workload, *params)
        self.work = prepare(self.case, GRID.settings)
        self.work.step()  # warm: no sample pays for lazy initialization
        synchronize(self.work.device)
        if not _PROCESS_SHARE:
            _PROCESS_SHARE.append((CpuShare().__enter__(), time.perf_counter()))

    def teardown(self, *params):
        # asv calls teardown even after setup raised Skip (its NotImplementedError
        # convention): a combination skipped before its case was built has nothing to log.
        self.work = None
        if self.case is not None:
            _log_contention(self.case)


class _CudaMemory(_Timed):
    """CUDA-only: reset peak statistics after setup, track the peak of one step."""

    unit = "bytes"

    def setup(self, *params):
        if not params[-1].startswith("cuda"):
            raise Skip("CUDA peak memory is measured on CUDA devices only")
        super().setup(*params)
        reset_cuda_peak(self.work.device)

    def track_cuda_peak_memory(self, *params):
        self.work.step()
        return cuda_peak_bytes(self.work.device)


class Update(_Timed):
    """One in-place unitary update of an N x N weight from a fixed gradient."""

    workload = "update"
    params = [_methods("update"), _SIZES, _DTYPES, _DEVICES]

    def time_update(self, *params):
        self.work.step()

    def peakmem_update(self, *params):
        self.work.step()


class UpdateCudaMemory(_CudaMemory):
    """CUDA peak memory of one update (resident weight and gradient included)."""

    workload = "update"
    params = Update.params


class TrainStep(_Timed):
    """Forward + backward + optimizer step of a protocol module on a batch."""

    workload = "train_step"
    params = [_methods("train_step"), _SIZES, _DTYPES, _DEVICES]

    def time_train_step(self, *params):
        self.work.step()

    def peakmem_train_step(self, *params):
        self.work.step()


class TrainStepCudaMemory(_CudaMemory):
    """CUDA peak memory of one training step."""

    workload = "train_step"
    params = TrainStep.params


class _Unitarity:
    """Unitarity ||W^H W - I||_F / sqrt(N) of the layer after ``steps`` training steps."""

    workload = "accuracy"
    metric = "unitarity"
    param_names = _PARAM_NAMES
    params = [_methods("accuracy"), _SIZES, _DTYPES, _DEVICES]
    timeout = 600
    steps = 1

    def setup(self, *params):
        case = _case(self.workload, *params)
        found = unitarity_metrics(case, GRID.settings.with_overrides(accuracy_steps=self.steps))
        self.value = next(m.value for m in reversed(found) if m.metric.startswith(self.metric))


class AccuracyOneStep(_Unitarity):
    """Unitarity error after one training step."""

    def track_unitarity_after_1_step(self, *params):
        return self.value

    track_unitarity_after_1_step.unit = "unitarity error"


class AccuracyManySteps(_Unitarity):
    """Unitarity error after ``GRID.settings.accuracy_steps`` training steps."""

    steps = max(2, GRID.settings.accuracy_steps)

    def track_unitarity_after_many_steps(self, *params):
        return self.value

    track_unitarity_after_many_steps.unit = "unitarity error"


class DistToExact:
    """||A_k - A_exact||_F / ||A_exact - A0||_F of a rank-k step (see
    :func:`suite.measure.workloads.dist_to_exact`)."""

    param_names = _PARAM_NAMES
    params = [_methods("accuracy", reference=True), _SIZES, _DTYPES, _DEVICES]
    timeout = 600

    def setup(self, method, n, dtype, device):
        case = _case("accuracy", method, n, dtype, device)
        found = dist_to_exact(case, GRID.settings)
        if found is None or found.value is None:
            raise Skip(found.reason if found else f"{method} has no exact reference step")
        self.value = found.value

    def track_dist_to_exact(self, *params):
        return self.value

    track_dist_to_exact.unit = "relative distance"


class ConvUpdate(Update):
    """``update`` on the batch of free frequency matrices of a C-channel convolution."""

    workload = "conv_update"
    param_names = _CONV_PARAM_NAMES
    params = _conv_params("conv_update")


class ConvTrainStep(TrainStep):
    """Forward + backward + optimizer step of an orthogonal convolution on a batch."""

    workload = "conv_train_step"
    param_names = _CONV_PARAM_NAMES
    params = _conv_params("conv_train_step")


class _ConvOrthogonality(_Unitarity):
    """Orthogonality error max |sigma - 1| of the convolution after ``steps`` steps."""

    workload = "conv_accuracy"
    metric = "orthogonality"
    param_names = _CONV_PARAM_NAMES
    params = _conv_params("conv_accuracy")


class ConvAccuracyOneStep(_ConvOrthogonality):
    """Orthogonality error after one training step."""

    def track_orthogonality_after_1_step(self, *params):
        return self.value

    track_orthogonality_after_1_step.unit = "max |sigma - 1|"


class ConvAccuracyManySteps(_ConvOrthogonality):
    """Orthogonality error after ``GRID.settings.accuracy_steps`` training steps."""

    steps = max(2, GRID.settings.accuracy_steps)

    def track_orthogonality_after_many_steps(self, *params):
        return self.value

    track_orthogonality_after_many_steps.unit = "max |sigma - 1|"


def _counted_cases():
    """The gate's counted cases; the tiny grid's (``asv run --quick`` smoke test: one
    count process of seconds, not minutes) under ``PROJUNN_BENCH_GRID=tiny``."""
    from .gate.counts import cases

    return cases("tiny" if GRID.name == "tiny" else "gate")


class Counts:
    """Instructions, estimated cycles and compute operators per step under callgrind,
    over the gate's counted cases (:func:`suite.gate.counts.cases`, the tiny grid's under
    ``PROJUNN_BENCH_GRID=tiny``; the one parameter is the case id).
    ``setup_cache`` counts them all in ONE valgrind process per commit
    (:func:`suite.measure.callgrind.count_cases`, the commit's installed code); the
    benchmarks read its results. Without valgrind every case is skipped with the install
    line. A count moves only when the code does: the nightly dashboard's lines are flat."""

    param_names = ["case"]
    params = [[c.id for c in _counted_cases()]]
    timeout = 3600  # setup_cache: every case under callgrind (minutes)

    def setup_cache(self):
        from .measure import callgrind
        from .measure.cases import GRIDS

        if callgrind.missing_reason():
            return {"missing": callgrind.missing_reason()}
        cases = _counted_cases()
        run = callgrind.count_cases(cases, GRIDS["gate"].settings)
        out = {}
        for c in cases:
            got = {m.metric: m for m in run.measurements(c.id)}
            out[c.id] = {k: m.value for k, m in got.items() if m.status == "ok"} or {
                "reason": next(iter(got.values())).reason
            }
        return out

    def _value(self, cache, case, metric):
        if "missing" in cache:
            raise Skip(cache["missing"])
        found = cache.get(case, {})
        if metric not in found:
            raise Skip(found.get("reason", "not counted"))
        return found[metric]

    def track_instructions(self, cache, case):
        return self._value(cache, case, "instructions")

    track_instructions.unit = "instructions"

    def track_estimated_cycles(self, cache, case):
        return self._value(cache, case, "estimated_cycles")

    track_estimated_cycles.unit = "cycles"

    def track_operations(self, cache, case):
        return self._value(cache, case, "operations")

    track_operations.unit = "operations"
