"""The conv workloads in the suite: cases and skip rules, the workloads themselves, the
asv parameters and the rows they write."""

import itertools

import pytest
import torch
from helpers import CONV_WORKLOADS

import suite.measure.cases as cases_mod
from projunn_core.conv import orthogonality_error
from suite.measure.cases import GRIDS, Case, iter_cases
from suite.measure.methods import METHODS
from suite.measure.runner import run_case
from suite.measure.workloads import prepare

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = GRIDS["tiny"].settings


def test_conv_cases_cover_every_conv_method_with_real_dtypes():
    found = iter_cases("tiny", workloads=list(CONV_WORKLOADS))
    assert {c.dtype for c in found} == {"float32"}
    assert {(c.n, c.spatial) for c in found} == {(4, 4)}
    names = {wl: {c.method for c in found if c.workload == wl} for wl in CONV_WORKLOADS}
    conv_methods = {m.name for m in METHODS.values() if m.conv is not None}
    assert names["conv_train_step"] == names["conv_accuracy"] == conv_methods
    assert "soc" in conv_methods and "eunn" not in conv_methods
    assert names["conv_update"] == {n for n in conv_methods if METHODS[n].update is not None}
    assert all(c.skip_reason() is None for c in found)
    # the dense workloads do not take SOC, and take no spatial size
    assert "soc" not in {c.method for c in iter_cases("tiny", workloads=["train_step"])}


@pytest.mark.parametrize(
    "case, reason",
    [
        (Case("conv_update", "soc", 8, spatial=8), "soc has no functional update"),
        (Case("train_step", "soc", 8), "soc does not apply to train_step"),
        (Case("conv_train_step", "eunn", 8, spatial=8), "eunn does not apply to conv_train"),
        (Case("conv_train_step", "svd", 8), "needs the grid side spatial"),
        (Case("train_step", "svd", 8, spatial=8), "spatial applies to the conv workloads"),
        (Case("conv_update", "svd", 8, dtype="complex64", spatial=8), "convolutions are real"),
        (Case("conv_train_step", "cayley", 8, spatial=2), "kernel_size=3 does not fit"),
        (
            Case("conv_train_step", "cayley", 8, spatial=8, options=(("n_negative", 1),)),
            "does not take option",
        ),
        (Case("conv_update", "svd", 256, spatial=64), "costs O(N^3)"),
        (Case("conv_update", "projunn_t", 8, k=9, spatial=8), "rank k=9 exceeds n=8"),
    ],
)
def test_conv_skip_rules(case, reason):
    assert reason in case.skip_reason()


def test_conv_rows_describe_the_grid():
    case = Case("conv_train_step", "cayley", 4, spatial=6, options=(("kernel_size", 5),))
    assert case.id == "conv_train_step-cayley-n4-hw6-float32-cpu-kernel_size=5"
    rows = [r.as_dict() for r in run_case(case, TINY).rows]
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["options"] for r in rows} == {"height=6;width=6;kernel_size=5"}
    assert {r["metric"] for r in rows} >= {"time", "host_peak_rss"}


@pytest.mark.parametrize("method", ["projunn_t", "projunn_d", "cayley", "expm", "svd"])
def test_conv_update_keeps_the_frequency_matrices_unitary(method):
    k = 2 if METHODS[method].ranked else None
    work = prepare(Case("conv_update", method, 6, k, "float64", spatial=6))
    for _ in range(3):
        work.step()
    real, free = work.state["A"]
    assert real.dtype == torch.float64 and free.dtype == torch.complex128
    assert real.shape == (4, 6, 6) and free.shape == (16, 6, 6)  # R + 2F = 36
    assert orthogonality_error(real) < 1e-12 and orthogonality_error(free) < 1e-12


def test_conv_accuracy_reports_orthogonality_and_norm_error():
    steps = 3
    settings = TINY.with_overrides(accuracy_steps=steps)
    values = {}
    for method, k in (("projunn_t", 2), ("soc", None), ("unconstrained", None)):
        rows = run_case(Case("conv_accuracy", method, 4, k, spatial=4), settings).rows
        values[method] = {m.metric: m.value for m in rows if m.status == "ok"}
    names = {"orthogonality_init", "orthogonality_after_1_step"}
    names |= {f"orthogonality_after_{steps}_steps", f"norm_error_after_{steps}_steps"}
    assert set(values["projunn_t"]) == names
    assert values["projunn_t"][f"orthogonality_after_{steps}_steps"] < 1e-5
    # SOC's truncated series leaves an error that the metric shows (5 terms, ||L|| ~ 0.7)
    assert 1e-6 < values["soc"]["orthogonality_init"] < 1e-3
    assert values["unconstrained"][f"orthogonality_after_{steps}_steps"] > 0


def test_asv_conv_parameters_match_the_case_list(monkeypatch):
    import importlib

    monkeypatch.setenv(cases_mod.GRID_ENV, "tiny")
    bench = importlib.reload(importlib.import_module("suite.benchmarks"))
    try:
        devices = cases_mod.available_devices()
        for cls, workload in (
            (bench.ConvUpdate, "conv_update"),
            (bench.ConvTrainStep, "conv_train_step"),
            (bench.ConvAccuracyOneStep, "conv_accuracy"),
            (bench.ConvAccuracyManySteps, "conv_accuracy"),
        ):
            combos = set(itertools.product(*cls.params))
            want = {
                (cases_mod.method_label(c.method, c.k), c.n, c.spatial, c.dtype, c.device)
                for c in iter_cases("tiny", workloads=[workload], devices=devices)
            }
            assert combos == want
            assert cls.param_names == ["method", "channels", "spatial", "dtype", "device"]
        b = bench.ConvUpdate()
        b.setup("projunn_d-k4", 4, 4, "float32", "cpu")
        b.time_update("projunn_d-k4", 4, 4, "float32", "cpu")
        assert b.case.k == 4 and b.case.spatial == 4
        acc = bench.ConvAccuracyOneStep()
        acc.setup("soc", 4, 4, "float32", "cpu")
        assert 0 < acc.track_orthogonality_after_1_step() < 1e-3
    finally:
        monkeypatch.delenv(cases_mod.GRID_ENV)
        importlib.reload(bench)
