"""pytest-benchmark front end over the same registry and cases as asv and projunn-bench.

By default the ``tiny`` grid runs (CI: ``python -m pytest -q --benchmark-disable`` runs each
case once as an ordinary test). The quick grid with timings saved as JSON::

    PROJUNN_BENCH_GRID=quick python -m pytest tests/test_benchmarks.py \
        --benchmark-json=results/pytest-benchmark.json

Every benchmark's ``extra_info`` carries the case fields (workload, method, n, k, dtype,
device, options) and ``grid``; accuracy benchmarks add their metrics (``unitarity_*``,
``dist_to_exact``; conv: ``orthogonality_*``, ``norm_error_*``). In the JSON they sit
under ``benchmarks[i]["extra_info"]`` next to ``benchmarks[i]["stats"]`` (min, max, mean,
median, iqr, rounds ... in seconds). Entries are grouped by workload, size and device
(``benchmarks[i]["group"]``), so that ``pytest-benchmark compare`` shows comparable rows
together. Plug-ins (``PROJUNN_BENCH_PLUGINS``, entry points; ``suite.plugins``) load first,
so their methods are cases too. The GPU, torch and CUDA versions are recorded once per file
under ``machine_info["projunn"]`` (conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from suite.measure.cases import Skip, available_devices, current_grid, iter_cases
from suite.measure.timing import synchronize
from suite.measure.workloads import evaluate, prepare
from suite.plugins import load_plugins

load_plugins()  # the user's methods (PROJUNN_BENCH_PLUGINS, entry points) join the cases
GRID = current_grid(default="tiny")
SETTINGS = GRID.settings
DEVICES = available_devices()
TIMED = iter_cases(
    GRID, workloads=["update", "train_step", "conv_update", "conv_train_step"], devices=DEVICES
)
ACCURACY = iter_cases(GRID, workloads=["accuracy", "conv_accuracy"], devices=DEVICES)


def _label(benchmark, case) -> None:
    grid = f" hw={case.spatial}" if case.spatial else ""
    benchmark.group = f"{case.workload} n={case.n}{grid} {case.device}"
    benchmark.extra_info.update({**case.as_dict(), "grid": GRID.name})


def _runnable(build, *args, **kwargs):
    """``build(*args, **kwargs)``, or skip the test with the case's skip reason."""
    try:
        return build(*args, **kwargs)
    except Skip as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("case", TIMED, ids=lambda c: c.id)
def test_speed(benchmark, case):
    _label(benchmark, case)
    work = _runnable(prepare, case, SETTINGS)
    device = work.device

    def step():
        work.step()
        synchronize(device)  # the measured time includes the device work

    benchmark(step)
    if case.spec.unitary and case.workload in ("update", "conv_update"):
        weights = work.state["A"]
        for A in [weights] if isinstance(weights, torch.Tensor) else weights:
            assert torch.isfinite(A).all()


@pytest.mark.parametrize("case", ACCURACY, ids=lambda c: c.id)
def test_accuracy(benchmark, case):
    steps = SETTINGS.accuracy_steps
    _label(benchmark, case)
    found = _runnable(
        benchmark.pedantic,
        evaluate,
        args=(case, SETTINGS),
        rounds=1,
        iterations=1,
    )
    values = {m.metric: m.value for m in found if m.status == "ok"}
    benchmark.extra_info.update(values)
    if case.spec.approximate:  # Landing: near-unitary by design, within its eps
        eps = case.method_options()[case.spec.tolerance_option]  # |sigma - 1| <= eps
        bound = eps if case.conv else case.spec.unitarity_bound(case.n)
        error = "orthogonality" if case.conv else "unitarity"
        assert values[f"{error}_after_{steps}_steps"] <= bound
    elif case.spec.unitary and case.conv:  # SOC's 5-term series leaves ~1e-4 (measured)
        assert values[f"orthogonality_after_{steps}_steps"] < 1e-3
        assert values[f"norm_error_after_{steps}_steps"] < 1e-3
    elif case.spec.unitary:
        tol = 1e-2 if case.n > 256 else 1e-4
        assert values[f"unitarity_after_{steps}_steps"] < tol
    if "dist_to_exact" in values:
        assert 0 <= values["dist_to_exact"] < 1.5
