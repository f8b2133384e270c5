"""The asv benchmark classes as asv drives them: setup, then teardown even after setup
skipped (asv's NotImplementedError convention), and the Task benchmarks following
``$PROJUNN_BENCH_GRID`` like the rest of the suite."""

from __future__ import annotations

import importlib
import json
import math
import subprocess

import pytest
import torch
from helpers import ROOT, asv_config, run_asv

from suite.measure import cases as cases_mod
from suite.measure.timing import CONTENTION_LOG


def _reload(monkeypatch, module: str, grid: str):
    monkeypatch.setenv(cases_mod.GRID_ENV, grid)
    return importlib.reload(importlib.import_module(module))


@pytest.fixture
def restore_modules():
    """Reload the benchmark modules under the default grid after the test."""
    yield
    for name in ("suite.benchmarks", "suite.tasks.benchmarks"):
        importlib.reload(importlib.import_module(name))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip is the CPU machine's path")
@pytest.mark.parametrize("cls", ["UpdateCudaMemory", "TrainStepCudaMemory"])
def test_cuda_memory_setup_skips_and_teardown_still_runs(
    cls, monkeypatch, tmp_path, restore_modules
):
    log = tmp_path / "contention.jsonl"
    monkeypatch.setenv(CONTENTION_LOG, str(log))
    bench = _reload(monkeypatch, "suite.benchmarks", "tiny")
    b = getattr(bench, cls)()
    params = ("svd", 16, "float32", "cpu")
    with pytest.raises(NotImplementedError, match="CUDA devices only"):
        b.setup(*params)
    b.teardown(*params)  # what asv does next: it raised AttributeError ('case')
    assert b.case is None and b.work is None
    assert not log.exists()  # a skipped combination measured nothing


def test_gate_grid_skip_of_a_cuda_device_tears_down(monkeypatch, restore_modules):
    bench = _reload(monkeypatch, "suite.benchmarks", "gate")
    b = bench.Update()
    with pytest.raises(NotImplementedError, match="blind to cuda"):
        b.setup("svd", 64, "float32", "cuda")
    b.teardown("svd", 64, "float32", "cuda")


def test_a_measured_combination_still_logs_its_share(monkeypatch, tmp_path, restore_modules):
    log = tmp_path / "contention.jsonl"
    monkeypatch.setenv(CONTENTION_LOG, str(log))
    bench = _reload(monkeypatch, "suite.benchmarks", "tiny")
    bench._PROCESS_SHARE.clear()
    b = bench.Update()
    b.setup("svd", 16, "float32", "cpu")
    b.time_update("svd", 16, "float32", "cpu")
    b.teardown("svd", 16, "float32", "cpu")
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["method"] == "svd" and 0 <= line["cpu_share"] <= 1.5
    bench._PROCESS_SHARE.clear()


def test_task_benchmarks_follow_the_grid(monkeypatch, restore_modules):
    from suite.tasks import TASKS

    tb = _reload(monkeypatch, "suite.tasks.benchmarks", "tiny")
    assert tb.GRID.name == "tiny"
    for task in ("copy", "pdigits"):
        smoke = tb.task_config(task)
        assert smoke == TASKS[task].preset("quick").replace(**tb.SMOKE[task])
        assert smoke.steps < TASKS[task].preset("quick").steps / 10
    # the benchmark trains exactly that configuration (same seed: the same loss)
    tracked = tb.TaskCopy().track_final_test_loss("expm")
    assert tracked == tb.final_test_loss("copy", "expm", grid="tiny")
    assert 0 < tracked < 10
    threads = torch.get_num_threads()
    try:  # asv calls setup in the method's own process: one thread at the smoke sizes
        tb.TaskCopy().setup("expm")
        assert torch.get_num_threads() == tb.SMOKE_THREADS == 1
    finally:
        torch.set_num_threads(threads)
    tb = _reload(monkeypatch, "suite.tasks.benchmarks", "quick")
    assert tb.task_config("copy") == TASKS["copy"].preset("quick")
    assert tb.task_config("pdigits", "tiny").hidden == tb.SMOKE["pdigits"]["hidden"]


def test_task_config_rejects_unknown_grids_and_tasks():
    from suite.tasks import benchmarks as tb

    with pytest.raises(ValueError, match="unknown grid 'huge'"):
        tb.task_config("copy", "huge")
    with pytest.raises(KeyError):
        tb.task_config("no-such-task", "tiny")


def test_asv_run_on_cpu_skips_cuda_memory_and_trains_the_tiny_task(tmp_path, one_thread):
    """A real ``asv run --quick`` of the CUDA memory benchmarks and one Task combination on
    the tiny grid: nothing fails (asv exits 2 on a failed benchmark), and the tracked loss is
    the tiny configuration's."""
    path = asv_config(tmp_path)
    env = {"PROJUNN_BENCH_GRID": "tiny", "OMP_NUM_THREADS": "1"}
    found = run_asv("--config", str(path), "machine", "--yes", "--machine", "asv-suite-test", **env)
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    bench = r"CudaMemory\.track_cuda_peak_memory\('svd'|TaskCopy\.track_final_test_loss\('expm'"
    found = run_asv(
        "--config", str(path), "run", "--quick", "--python=same", f"--set-commit-hash={sha}",
        "--bench", bench, "--machine", "asv-suite-test", **env,
    )  # fmt: skip
    out = found.stdout + found.stderr
    assert found.returncode == 0, out[-3000:]
    assert "failed" not in out and "Traceback" not in out, out[-3000:]
    (result,) = (tmp_path / "results" / "asv-suite-test").glob(f"{sha[:8]}*.json")
    results = json.loads(result.read_text())["results"]
    copy = results["tasks.benchmarks.TaskCopy.track_final_test_loss"][0]
    (loss,) = [v for v in copy if v is not None and not math.isnan(v)]
    from suite.tasks.benchmarks import final_test_loss

    assert loss == pytest.approx(final_test_loss("copy", "expm", grid="tiny"), rel=1e-4)
    if not torch.cuda.is_available():
        for name in ("UpdateCudaMemory", "TrainStepCudaMemory"):
            values = results[f"benchmarks.{name}.track_cuda_peak_memory"][0]
            # asv stores a skipped combination as NaN, a failed one as null
            assert values and all(v is not None and math.isnan(v) for v in values), values
