"""projunn-bench profile: operator groups, the device and sync accounting, the CPU passes,
the command end to end, its usage errors, run --profile and asv's profiler."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import run_asv
from torch.autograd import DeviceType

from suite.cli import main
from suite.measure import profiling
from suite.measure.cases import Case, Settings
from suite.measure.profiling import (
    STEP_RANGE,
    WAIT_RANGE,
    count_syncs,
    device_activity,
    operator_group,
    peak_allocation,
    profile_work,
)
from suite.measure.rows import COLUMNS
from suite.measure.workloads import prepare

ROOT = Path(__file__).resolve().parent.parent
FAST = Settings(warmup=1, min_time=0.005, max_time=0.02)
"""A short timing pass: these tests check what is measured, not how fast."""
QUICK = ["--warmup", "1", "--min-time", "0.005", "--max-time", "0.02"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small matrices: one torch thread, no thread-pool stalls on shared cores."""


@pytest.mark.parametrize(
    "name, group",
    [
        ("aten::mm", "matrix products"),
        ("aten::addmm_", "matrix products"),
        ("aten::baddbmm_", "matrix products"),
        ("aten::linalg_qr", "QR"),
        ("aten::geqrf", "QR"),
        ("aten::linalg_householder_product", "QR"),
        ("aten::_linalg_eigh", "eigen / SVD / solve"),
        ("aten::_linalg_svd", "eigen / SVD / solve"),
        ("aten::linalg_matrix_exp", "eigen / SVD / solve"),
        ("aten::linalg_solve_ex", "eigen / SVD / solve"),
        ("aten::copy_", "copies and casts"),
        ("aten::_to_copy", "copies and casts"),
        ("aten::cat", "copies and casts"),
        ("aten::mul_", "elementwise, reductions, random"),
        ("aten::normal_", "elementwise, reductions, random"),
        ("aten::isfinite", "elementwise, reductions, random"),
        ("aten::transpose", "views and allocation"),
        ("aten::empty_strided", "views and allocation"),
        ("cudaLaunchKernel", "CUDA runtime (launch, sync)"),
        ("cudaStreamSynchronize", "CUDA runtime (launch, sync)"),
        ("cuLaunchKernelEx", "CUDA runtime (launch, sync)"),
        (WAIT_RANGE, "CUDA runtime (launch, sync)"),
        ("aten::_some_new_qr_helper", "QR"),  # unknown names: substring fallbacks
        ("aten::_fused_mm", "matrix products"),
        ("autograd::engine::evaluate_function: MmBackward0", "other"),
        ("Optimizer.step#RMSprop.step", "other"),
        ("aten::custom_op", "other"),
        ("custom", "other"),
    ],
)
def test_operator_group(name, group):
    assert operator_group(name) == group
    assert group in profiling.GROUPS


def test_device_activity_counts_kernels_copies_and_busy_union():
    events = [
        ("sgemm", 0.0, 10.0),
        ("elementwise", 5.0, 12.0),  # overlaps (second stream): counted once
        ("Memcpy DtoH (Device -> Pinned)", 20.0, 21.0),
        ("Memset (Device)", 21.0, 21.5),
        ("Event Sync", 21.5, 40.0),  # a wait, not work
        ("geqrf", 30.0, 32.0),
    ]
    kernels, copies, busy = device_activity(events)
    assert (kernels, copies) == (3, 2)
    assert busy == pytest.approx(12.0 + 1.5 + 2.0)
    assert device_activity([]) == (0, 0, 0.0)


def test_peak_allocation():
    assert peak_allocation([]) == 0
    assert peak_allocation([-10, -20]) == 0  # frees of blocks from before
    assert peak_allocation([4, 4, -4, 8, -8, -4]) == 12


def test_count_syncs_counts_every_warning_and_restores_the_mode(monkeypatch):
    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def run():
        assert modes[-1] == "warn"
        for _ in range(3):  # one source line: a "once" filter would count it once
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
        warnings.warn("unrelated", UserWarning, stacklevel=1)

    assert count_syncs(run) == 3
    assert modes == ["warn", 0]

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        count_syncs(failing)
    assert modes[-1] == 0


def _event(name, start, end, *, device=DeviceType.CPU, parent=None, kernels=(), annotation=False):
    e = SimpleNamespace(
        name=name,
        device_type=device,
        is_async=False,
        is_user_annotation=annotation,
        cpu_parent=parent,
        kernels=[SimpleNamespace(name=k, duration=d) for k, d in kernels],
        time_range=SimpleNamespace(start=start, end=end),
        cpu_time_total=end - start,
        self_cpu_time_total=end - start,
    )
    return e


def test_aggregate_and_device_events_on_a_fake_cuda_profile():
    """The CUDA bookkeeping on hand-made events (the real thing needs a GPU): per-step
    division, own kernels only, the closing wait folded into one row, annotations left
    out of the kernel count."""
    events = []
    for i in range(2):  # two steps
        t = 100.0 * i
        step = _event(STEP_RANGE, t, t + 90, annotation=True)
        mm = _event("aten::mm", t + 1, t + 11, parent=step, kernels=[("sgemm", 30.0)])
        mm.self_cpu_time_total = 8.0  # 2 us in the launch below
        launch = _event("cudaLaunchKernel", t + 2, t + 4, parent=mm)
        events += [
            step,
            mm,
            launch,
            _event(STEP_RANGE, t, t + 90, device=DeviceType.CUDA, annotation=True),
            _event("sgemm", t + 5, t + 35, device=DeviceType.CUDA),
        ]
    wait = _event(WAIT_RANGE, 200, 260, annotation=True, kernels=[(WAIT_RANGE, 60.0)])
    events += [wait, _event("cudaDeviceSynchronize", 201, 259, parent=wait)]
    ops, aten_calls = profiling._aggregate(events, steps=2)
    by_name = {op.name: op for op in ops}
    assert set(by_name) == {"aten::mm", "cudaLaunchKernel", WAIT_RANGE}
    assert by_name["aten::mm"].calls == 1
    assert by_name["aten::mm"].self_cpu == pytest.approx(8e-6)
    assert by_name["aten::mm"].self_device == pytest.approx(30e-6)
    assert by_name["cudaLaunchKernel"].self_cpu == pytest.approx(2e-6)
    assert by_name[WAIT_RANGE].self_cpu == pytest.approx(30e-6)  # 60 us once, 2 steps
    assert by_name[WAIT_RANGE].self_device == 0
    assert aten_calls == 1
    device = profiling._device_events(events)
    assert [name for name, _, _ in device] == ["sgemm", "sgemm"]
    assert device_activity(device) == (2, 0, 60.0)


def test_profile_work_on_the_cpu():
    n = 64
    p = profile_work(prepare(Case("update", "projunn_t", n, 2)), steps=3, settings=FAST)
    assert p.time.repeat >= 1 and p.time.median > 0
    names = {op.name for op in p.ops}
    assert {"aten::linalg_qr", "aten::_linalg_eigh", "aten::addmm_"} <= names
    assert all(op.calls > 0 and op.self_cpu >= 0 and op.self_device == 0 for op in p.ops)
    assert sum(op.self_cpu for op in p.ops) <= p.profiled_time * 1.01
    groups = p.groups()
    assert groups["QR"][0] > 0 and groups["matrix products"][0] > 0
    assert p.ops_per_step > 10
    assert (p.kernels_per_step, p.device_busy_time, p.host_syncs_per_step) == (None,) * 3
    # weight and gradient are resident; projUNN makes no N x N temporary
    assert p.resident_memory == 2 * n * n * 4
    assert 0 < p.temporary_memory < n * n * 4
    metrics = {m.metric for m in p.measurements()}
    assert {"time", "profiled_time", "step_temporary_memory", "op_calls:aten::linalg_qr"} <= metrics
    assert "group_self_cpu_time:QR" in metrics
    assert not any("device" in m or "kernels" in m or "syncs" in m for m in metrics)


def test_profile_work_sees_the_n_by_n_temporaries_of_expm():
    n = 64
    p = profile_work(prepare(Case("update", "expm", n)), steps=1, settings=FAST)
    assert p.temporary_memory >= n * n * 4
    assert p.groups()["eigen / SVD / solve"][0] > 0


def test_profile_work_train_step_and_trace(tmp_path):
    path = tmp_path / "trace.json"
    case = Case("train_step", "projunn_d", 32, 2)
    p = profile_work(prepare(case, Settings(batch=4)), steps=2, settings=FAST, trace=path)
    assert any(op.name.startswith("Optimizer.step") for op in p.ops)
    # resident: weight + gradient + RMSprop average + batch (x, y); gradient re-made per step
    assert p.resident_memory >= 3 * 32 * 32 * 4
    trace = json.loads(path.read_text())
    steps = [e for e in trace["traceEvents"] if e.get("name") == STEP_RANGE]
    assert len(steps) == 2 and all(e["ph"] == "X" for e in steps)
    assert not [f for f in tmp_path.iterdir() if f.name != "trace.json"]


def test_profile_work_rejects_bad_counts():
    work = prepare(Case("update", "unconstrained", 8))
    with pytest.raises(ValueError, match="steps"):
        profile_work(work, steps=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_profile_work_on_cuda():
    case = Case("update", "projunn_t", 256, 4, device="cuda")
    p = profile_work(prepare(case), steps=3, settings=FAST)
    assert p.kernels_per_step > 5
    assert 0 < p.device_busy_time and 0 < p.device_busy_fraction < 1.5
    assert p.host_syncs_per_step >= 0
    assert p.resident_memory >= 2 * 256 * 256 * 4 and p.temporary_memory >= 0
    assert any(op.self_device > 0 for op in p.ops)
    metrics = {m.metric for m in p.measurements()}
    assert {"kernels_per_step", "device_busy_fraction", "host_syncs_per_step"} <= metrics


def _read_rows(folder: Path):
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_profile_command_end_to_end(tmp_path, capsys):
    argv = ["profile", "--method", "projunn_t", "--method", "expm", "--n", "32"]
    argv += ["--steps", "2", "--threads", "1", "--out", str(tmp_path), *QUICK]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "projunn_t-k4" in out and "expm" in out and "aten::mm" in out
    assert "n/a on CPU" in out
    (folder,) = tmp_path.iterdir()
    names = {f.name for f in folder.iterdir()}
    expected = {"results.csv", "profile.md", "machine.json"}
    assert expected | {"trace-projunn_t-k4.json", "trace-expm.json"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary files left
    rows = _read_rows(folder)
    assert tuple(rows[0]) == COLUMNS
    assert {r["method"] for r in rows} == {"projunn_t", "expm"}
    assert all(r["workload"] == "update" and r["status"] == "ok" for r in rows)
    metrics = {(r["method"], r["metric"]) for r in rows}
    for method in ("projunn_t", "expm"):
        assert {(method, "time"), (method, "op_self_cpu_time:aten::mm")} <= metrics
    assert ("projunn_t", "op_calls:aten::linalg_qr") in metrics
    assert ("expm", "op_calls:aten::linalg_qr") not in metrics
    meta = json.loads((folder / "machine.json").read_text())
    assert meta["run"]["status"] == "complete" and meta["run"]["settings"]["threads"] == 1
    assert meta["run"]["files"]["traces"] == ["trace-projunn_t-k4.json", "trace-expm.json"]
    assert "torch" in meta and "cpu_model" in meta
    md = (folder / "profile.md").read_text()
    assert md in out
    try:
        import seaborn  # noqa: F401
    except ImportError:
        return
    assert (folder / "groups.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "projunn_t", "--n", "4", "--k", "8"], "rank k=8 exceeds n=4"),
        (["--method", "svd-k4"], "rank options do not apply"),
        (["--method", "eunn"], "no functional update"),
        (["--method", "eunn_fft", "--workload", "train_step", "--n", "12"], "power of two"),
        (["--method", "expm", "--method", "expm"], "given twice"),
        (["--method", "expm", "--dtype", "float16"], "--dtype"),
        (["--method", "expm", "--steps", "0"], "--steps"),
        (["--method", "expm", "--workload", "accuracy"], "--workload"),
        (["--method", "expm", "--option", "colour=red"], "--option"),
        (["--method", "expm", "--min-time", "2", "--max-time", "1"], "--min-time"),
        ([], "--method"),
    ],
)
def test_profile_usage_errors_exit_2_and_write_nothing(tmp_path, capsys, extra, fragment):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--out", str(tmp_path / "out"), *extra])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_profile_without_cuda_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--method", "expm", "--device", "cuda", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_profile_failing_method_is_an_error_row(monkeypatch, tmp_path, capsys):
    real = profiling.profile_work

    def flaky(work, **kw):
        if work.case.method == "svd":
            raise RuntimeError("boom")
        return real(work, **kw)

    monkeypatch.setattr(profiling, "profile_work", flaky)
    argv = ["profile", "--method", "svd", "--method", "unconstrained", "--n", "16"]
    assert main(argv + ["--steps", "1", "--out", str(tmp_path), *QUICK]) == 1
    (folder,) = tmp_path.iterdir()
    rows = _read_rows(folder)
    errors = [r for r in rows if r["status"] == "error"]
    assert [(r["method"], r["reason"]) for r in errors] == [("svd", "RuntimeError: boom")]
    assert any(r["method"] == "unconstrained" and r["metric"] == "time" for r in rows)
    assert "unconstrained" in capsys.readouterr().out


def test_profile_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "trace-METHOD.json" in out


def test_asv_profile_runs_a_suite_benchmark(tmp_path):
    """``asv profile`` (cProfile of one benchmark) works on the suite's benchmarks with the
    name form the README shows."""
    name = r"benchmarks.Update.time_update\('unconstrained', 16, 'float32', 'cpu'\)"
    out = tmp_path / "update.prof"
    proc = run_asv(
        "profile",
        "--python=same",
        "-o",
        str(out),
        name,
        PROJUNN_BENCH_GRID="tiny",
        HOME=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import pstats

    stats = pstats.Stats(str(out))
    assert any(func == "time_update" for _, _, func in stats.stats)


def test_run_profile_adds_the_per_step_figures(tmp_path, capsys):
    argv = ["run", "--grid", "tiny", "--no-progress", "--methods", "projunn_t", "unconstrained"]
    argv += ["--workloads", "update", "train_step", "accuracy", "--ranks", "2"]
    argv += ["--dtypes", "float32", "--max-time", "0.01", "--accuracy-steps", "2"]
    assert main(argv + ["--profile", "2", "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    rows = _read_rows(folder)
    assert all(r["status"] == "ok" for r in rows)
    cases = {(r["workload"], r["method"]) for r in rows}
    assert len(cases) == 6
    for workload, method in cases:
        metrics = [r["metric"] for r in rows if (r["workload"], r["method"]) == (workload, method)]
        if workload == "accuracy":
            assert "profiled_time" not in metrics
            continue
        assert metrics.count("time") == 1 and metrics.count("host_peak_rss") == 1
        assert {"profiled_time", "ops_per_step", "step_temporary_memory"} <= set(metrics)
        assert "group_self_cpu_time:matrix products" in metrics
        assert not any(m.startswith("op_") or "CUDA" in m for m in metrics)
    meta = json.loads((folder / "machine.json").read_text())
    assert meta["run"]["settings"]["profile_steps"] == 2


def test_run_profile_failure_is_an_error_row_that_keeps_the_timing(monkeypatch):
    from suite.measure import runner

    def boom(*args, **kw):
        raise RuntimeError("no profiler")

    monkeypatch.setattr(profiling, "profile_work", boom)
    settings = dataclasses.replace(FAST, profile_steps=2)
    rows = runner.run_case(Case("update", "unconstrained", 8), settings).rows
    assert [m.metric for m in rows][:1] == ["time"]
    assert rows[-1].status == "error" and "no profiler" in rows[-1].reason
