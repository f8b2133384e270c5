"""pytest-benchmark front end over the same registry and cases as asv and projunn-bench.

By default the ``tiny`` grid runs (CI: ``python -m pytest -q --benchmark-disable`` runs each
case once as an ordinary test). The quick grid with timings saved as JSON::

    PROJUNN_BENCH_GRID=quick python -m pytest tests/test_benchmarks.py \
        --benchmark-json=results/pytest-benchmark.json

Every benchmark's ``extra_info`` carries the case fields (workload, method, n, k, dtype,
device, options), ``grid`` and ``gpu_name``; accuracy benchmarks add their metrics
(``unitarity_*``, ``dist_to_exact``). In the JSON they sit under
``benchmarks[i]["extra_info"]`` next to ``benchmarks[i]["stats"]`` (min, max, mean,
median, iqr, rounds ... in seconds).
"""

from __future__ import annotations

import pytest
import torch

from suite.cases import current_grid, iter_cases
from suite.machine import gpu_name
from suite.timing import synchronize
from suite.workloads import accuracy, prepare

GRID = current_grid(default="tiny")
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
TIMED = iter_cases(GRID, workloads=["update", "train_step"], devices=DEVICES)
ACCURACY = iter_cases(GRID, workloads=["accuracy"], devices=DEVICES)
_GPU = gpu_name()


def _info(case) -> dict:
    return {**case.as_dict(), "grid": GRID.name, "gpu_name": _GPU}


def _skip_if_needed(case) -> None:
    reason = case.skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("case", TIMED, ids=lambda c: c.id)
def test_speed(benchmark, case):
    _skip_if_needed(case)
    work = prepare(case, batch=GRID.batch)
    benchmark.extra_info.update(_info(case))
    device = work.device

    def step():
        work.step()
        synchronize(device)  # the measured time includes the device work

    benchmark(step)
    if case.spec.unitary and case.workload == "update":
        assert torch.isfinite(work.state["A"]).all()


@pytest.mark.parametrize("case", ACCURACY, ids=lambda c: c.id)
def test_accuracy(benchmark, case):
    _skip_if_needed(case)
    found = benchmark.pedantic(
        accuracy,
        args=(case,),
        kwargs={"steps": GRID.accuracy_steps, "batch": GRID.batch},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(_info(case))
    values = {m.metric: m.value for m in found if m.status == "ok"}
    benchmark.extra_info.update(values)
    if case.spec.unitary:
        tol = 1e-2 if case.n > 256 else 1e-4
        assert values[f"unitarity_after_{GRID.accuracy_steps}_steps"] < tol
    if "dist_to_exact" in values:
        assert 0 <= values["dist_to_exact"] < 1.5
