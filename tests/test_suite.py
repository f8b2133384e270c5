"""The measurement suite: registry coverage, skip rules, cases, workloads, timing helpers."""

from __future__ import annotations

import math
import time

import pytest
import torch
from helpers import CONV_WORKLOADS, DENSE_WORKLOADS

from projunn_core import unitarity_error as unitarity
from projunn_core.init import haar
from suite.measure import cases as cases_mod
from suite.measure.cases import GRIDS, Case, iter_cases
from suite.measure.methods import METHODS, UPDATES, method
from suite.measure.runner import Settings, run_case
from suite.measure.timing import measure
from suite.measure.workloads import evaluate, make_gradient, prepare

TINY = Settings(warmup=0, min_time=0.002, max_time=0.01, accuracy_steps=2, batch=4)
EXPECTED = {
    "projunn_t",
    "projunn_d",
    "projunn_t_graphed",
    "projunn_d_graphed",
    "svd",
    "expm",
    "cayley",
    "eunn",
    "eunn_fft",
    "torch_orthogonal",
    "unconstrained",
    "soc",
    "geoopt_stiefel",
    "geoopt_canonical",
    "geotorch_expm",
    "geotorch_cayley",
    "landing",
}


def test_registry_names_and_updates():
    assert set(METHODS) == EXPECTED
    no_update = {"eunn", "eunn_fft", "torch_orthogonal", "soc", "geotorch_expm", "geotorch_cayley"}
    assert set(UPDATES) == EXPECTED - no_update
    for m in METHODS.values():
        assert m.description and m.name == method(m.name).name
    with pytest.raises(KeyError, match="unknown method"):
        method("nope")
    with pytest.raises(ValueError, match="does not take option"):
        METHODS["svd"].options_for("update", rank=2)


REGISTRY_CASES = [  # graphed methods need CUDA: see test_graphed_methods_skip_on_cpu
    c  # real-only peers take no complex case, a library may be missing: test_peer_methods.py
    for c in iter_cases(
        "tiny", workloads=DENSE_WORKLOADS, sizes=[16], ranks=[2], dtypes=["float32", "complex64"]
    )
    + iter_cases("tiny", workloads=CONV_WORKLOADS, ranks=[2])
    if not c.spec.graphed
    and (c.spec.dtypes is None or c.dtype in c.spec.dtypes)
    and c.spec.unavailable() is None
]


@pytest.mark.parametrize("case", REGISTRY_CASES, ids=lambda c: c.id)
def test_every_method_runs_every_workload(case):
    assert case.skip_reason() is None
    rows = run_case(case, TINY).rows
    assert all(r.status == "ok" for r in rows), rows
    metrics = {r.metric: r for r in rows}
    if case.workload in ("accuracy", "conv_accuracy"):
        error = "orthogonality" if case.conv else "unitarity"  # conv: max |sigma - 1|
        names = {f"{error}_init", f"{error}_after_1_step", f"{error}_after_2_steps"}
        assert names <= set(metrics)
        after = metrics[f"{error}_after_2_steps"].value
        if case.spec.approximate:  # Landing: near-unitary by design, within its eps
            eps = case.method_options()[case.spec.tolerance_option]  # |sigma - 1| <= eps
            assert after <= (eps if case.conv else case.spec.unitarity_bound(case.n))
        elif case.spec.unitary:  # SOC's truncated series leaves ~1e-4 (measured, not hidden)
            assert after < (1e-3 if case.conv else 1e-4)
        if case.spec.reference and not case.conv:
            assert 0 <= metrics["dist_to_exact"].value < 1.5
    else:
        t = metrics["time"]
        assert t.unit == "s" and t.value > 0 and t.repeat >= 1 and t.iqr >= 0
        samples = [float(x) for x in t.samples.split(";")]
        assert len(samples) == t.repeat and min(samples) <= t.value <= max(samples)
        assert metrics["host_peak_rss"].value > 0


def test_graphed_methods_skip_on_cpu():
    graphed = ["projunn_t_graphed", "projunn_d_graphed"]
    cases = iter_cases("tiny", workloads=DENSE_WORKLOADS, methods=graphed, ranks=[2])
    assert {c.workload for c in cases} == set(DENSE_WORKLOADS)
    for case in cases:
        assert case.skip_reason() == (
            f"{case.method} is replayed as a CUDA graph: CUDA graphs capture CUDA work "
            "only, and the step runs on cpu"
        )
    rows = run_case(cases[0], TINY).rows
    assert [r.status for r in rows] == ["skipped"] and rows[0].reason == cases[0].skip_reason()


def test_every_method_is_covered_by_each_applicable_workload():
    seen = {(c.workload, c.method) for c in REGISTRY_CASES}
    for name, m in METHODS.items():
        if m.graphed:
            continue
        for wl in m.workloads:
            assert (wl, name) in seen
    assert ("update", "eunn") not in seen  # no functional update: not in the default list


def test_update_keeps_weight_unitary_and_in_place():
    case = Case("update", "projunn_d", 16, 2, "complex64")
    work = prepare(case)
    A = work.state["A"]
    ptr = A.data_ptr()
    before = A.clone()
    for _ in range(3):
        out = work.step()
    assert out.data_ptr() == ptr
    assert not torch.equal(before, A)
    assert unitarity(A) < 1e-5


@pytest.mark.parametrize(
    "case, fragment",
    [
        (Case("train_step", "eunn_fft", 12), "power of two"),
        (Case("update", "projunn_t", 8, k=16), "exceeds n=8"),
        (Case("update", "svd", 4096), "O(N^3)"),
        (Case("train_step", "torch_orthogonal", 4096), "O(N^3)"),
        (Case("update", "svd", 16, k=4), "rank options do not apply"),
        (Case("update", "projunn_d", 16), "needs a rank"),
        (Case("update", "eunn", 16), "no functional update"),
        (Case("update", "unconstrained", 1), "too small"),
        (Case("train_step", "eunn", 16, options=(("rank", 2),)), "does not take"),
        (Case("update", "projunn_t", 1 << 22, 1), "GiB"),
    ],
)
def test_skip_rules(case, fragment):
    assert fragment in case.skip_reason()
    with pytest.raises(NotImplementedError, match="."):
        prepare(case) if case.workload != "accuracy" else evaluate(case)
    rows = run_case(case, TINY).rows
    assert [(r.status, r.metric) for r in rows] == [("skipped", "")]
    assert fragment in rows[0].reason


def test_cubic_cap_boundary_and_pow2_ok():
    cap = cases_mod.CUBIC_CAP["cpu"]
    assert Case("update", "svd", cap).skip_reason() is None
    assert Case("update", "svd", cap + 1).skip_reason() is not None
    assert Case("update", "projunn_t", cap * 2, 1).skip_reason() is None
    assert Case("train_step", "eunn_fft", 16).skip_reason() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_cuda_absent_is_a_skip_not_a_crash():
    case = Case("update", "projunn_t", 16, 1, device="cuda")
    assert "CUDA is not available" in case.skip_reason()
    assert run_case(case, TINY).rows[0].status == "skipped"


def test_invalid_case_fields_raise():
    with pytest.raises(ValueError, match="workload"):
        Case("nope", "svd", 8)
    with pytest.raises(ValueError, match="method"):
        Case("update", "nope", 8)
    with pytest.raises(ValueError, match="dtype"):
        Case("update", "svd", 8, dtype="float16")


def test_iter_cases_explicit_methods_keep_impossible_combinations():
    got = iter_cases("tiny", workloads=["update"], methods=["eunn", "projunn_t"])
    assert any(c.method == "eunn" and c.skip_reason() for c in got)
    ranks = {c.k for c in got if c.method == "projunn_t"}
    assert ranks == set(GRIDS["tiny"].ranks)
    assert {c.k for c in got if c.method == "eunn"} == {None}
    ids = [c.id for c in iter_cases("quick", devices=("cpu", "cuda"))]
    assert len(ids) == len(set(ids))


def test_iter_cases_options_go_to_methods_that_take_them():
    got = iter_cases("tiny", workloads=["train_step"], options=[("capacity", 4)])
    eunn = [c for c in got if c.method == "eunn"]
    assert eunn and all(dict(c.options) == {"capacity": 4} for c in eunn)
    assert all(c.options == () for c in got if c.method == "svd")
    assert eunn[0].method_options() == {"capacity": 4}


def test_grid_switch(monkeypatch):
    monkeypatch.delenv(cases_mod.GRID_ENV, raising=False)
    assert cases_mod.grid_name() == "quick"
    assert cases_mod.grid_name(default="tiny") == "tiny"
    monkeypatch.setenv(cases_mod.GRID_ENV, "full")
    assert cases_mod.current_grid().name == "full"
    assert max(cases_mod.current_grid().sizes) == 16384
    monkeypatch.setenv(cases_mod.GRID_ENV, "huge")
    with pytest.raises(ValueError, match="PROJUNN_BENCH_GRID"):
        cases_mod.grid_name()


def test_quick_grid_shape():
    g = GRIDS["quick"]
    assert max(g.sizes) <= 2048 and set(g.ranks) == {1, 4, 16}
    assert set(g.dtypes) == {"float32", "complex64"}


def test_settings_from_grid_overrides():
    quick = GRIDS["quick"].settings
    s = quick.with_overrides(batch=3, max_time=None)
    assert s.batch == 3 and s.max_time == quick.max_time and s.min_time == quick.min_time
    shorter = quick.with_overrides(max_time=quick.min_time / 2)
    assert shorter.min_time == shorter.max_time == quick.min_time / 2
    with pytest.raises(ValueError, match="min_time <= max_time"):
        Settings(min_time=2.0, max_time=1.0)


def test_gradient_and_haar():
    g = torch.Generator().manual_seed(0)
    G = make_gradient(32, torch.complex64, "cpu", g)
    s = torch.linalg.svdvals(G.to(torch.complex128))
    assert 0.3 < float(s[0]) < 3 and float(s[-1]) < 1e-3 * float(s[0])
    assert unitarity(haar(32, torch.float32, "cpu", g)) < 1e-6


def test_dist_to_exact_shrinks_with_rank():
    d = {}
    for k in (1, 16):
        rows = evaluate(Case("accuracy", "projunn_t", 32, k), Settings(accuracy_steps=2, batch=4))
        d[k] = {r.metric: r.value for r in rows}["dist_to_exact"]
    assert d[16] < d[1]
    assert d[16] < 0.05


def test_measure_times_a_known_duration_within_budget():
    calls = []

    def nap():
        calls.append(time.perf_counter())
        time.sleep(0.002)

    start = time.perf_counter()
    t = measure(nap, min_time=0.001, max_time=0.02, warmup=2)
    spent = time.perf_counter() - start
    assert 0.0019 < t.median < 0.02  # sleep() never returns early
    assert len(t.samples) == t.repeat >= 1 and t.number >= 1 and t.iqr >= 0
    assert math.isfinite(t.median) and len(calls) >= 2 + t.repeat * t.number
    assert spent < 2.0  # the budget bounds the sampling (block-size estimate included)
    with pytest.raises(ValueError, match="min_time"):
        measure(nap, min_time=0.5, max_time=0.1)


def test_measure_stretches_the_budget_to_give_a_slow_call_three_samples():
    t = measure(lambda: time.sleep(0.02), min_time=0.001, max_time=0.005, warmup=1)
    assert t.repeat >= 3 and t.number == 1 and 0.019 < t.median < 0.2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timing_synchronizes():
    """measure() on CUDA must include the kernel time (not just the launch)."""
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(3):
        x @ x
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        x @ x
    end.record()
    torch.cuda.synchronize()
    event_s = start.elapsed_time(end) / 1e3 / 5
    t = measure(lambda: x @ x, min_time=0.05, max_time=0.2, warmup=2, device="cuda")
    assert t.median > 0.5 * event_s
    rows = run_case(Case("update", "projunn_t", 256, 4, device="cuda"), TINY).rows
    metrics = {r.metric: r for r in rows}
    assert metrics["cuda_peak_memory"].value >= 2 * 256 * 256 * 4


def test_asv_parameters_match_the_case_list(monkeypatch):
    import importlib
    import itertools

    monkeypatch.setenv(cases_mod.GRID_ENV, "quick")
    bench = importlib.reload(importlib.import_module("suite.benchmarks"))
    devices = cases_mod.available_devices()
    for cls, workload in (
        (bench.Update, "update"),
        (bench.TrainStep, "train_step"),
        (bench.AccuracyOneStep, "accuracy"),
        (bench.AccuracyManySteps, "accuracy"),
    ):
        combos = set(itertools.product(*cls.params))
        want = {
            (cases_mod.method_label(c.method, c.k), c.n, c.dtype, c.device)
            for c in iter_cases("quick", workloads=[workload], devices=devices)
        }
        assert combos == want
        assert cls.param_names == ["method", "n", "dtype", "device"]
    if not torch.cuda.is_available():
        with pytest.raises(NotImplementedError, match="CUDA"):
            bench.Update().setup("svd", 16, "float32", "cuda")
    with pytest.raises(NotImplementedError, match="power of two"):
        bench.TrainStep().setup("eunn_fft", 12, "float32", "cpu")
    b = bench.Update()
    b.setup("projunn_t-k2", 16, "complex64", "cpu")
    b.time_update("projunn_t-k2", 16, "complex64", "cpu")
    assert b.case.k == 2 and b.case.dtype == "complex64"


BENCHMARK_MODULES = ("suite.benchmarks", "suite.tasks.benchmarks")


def test_no_stray_asv_names_outside_benchmarks():
    import importlib
    import inspect
    import pkgutil

    import suite

    # asv takes a function (module level or a class's method) for a benchmark by its name;
    # other attributes (a dataclass field such as ``time_budget``) it leaves alone.
    prefixes = ("time_", "peakmem_", "track_", "mem_", "timeraw_")
    for info in pkgutil.walk_packages(suite.__path__, prefix="suite."):
        if info.name in BENCHMARK_MODULES:
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            assert not (name.startswith(prefixes) and inspect.isfunction(obj)), (info.name, name)
            if isinstance(obj, type) and obj.__module__ == info.name:
                methods = [a for a, v in vars(obj).items() if inspect.isfunction(v)]
                assert not [a for a in methods if a.startswith(prefixes)], (info.name, name)


def test_task_benchmarks_track_every_method_in_task_classes():
    from suite.tasks import benchmarks as tb

    classes = [c for n, c in vars(tb).items() if isinstance(c, type) and hasattr(c, "params")]
    assert {c.__name__ for c in classes if c.__module__ == tb.__name__} >= {
        "TaskCopy",
        "TaskPdigits",
    }
    for cls in (tb.TaskCopy, tb.TaskPdigits):
        assert cls.__name__.startswith("Task") and cls.task in ("copy", "pdigits")
        (labels,) = cls.params
        dense = {name for name, m in METHODS.items() if m.build is not None}  # not SOC
        # the CUDA-graph entries are left out: a task trains their eager method anyway
        graphed = {name for name, m in METHODS.items() if m.graphed}
        assert {cases_mod.parse_method_label(x)[0] for x in labels} == dense - graphed | {"lstm"}
        assert [a for a in vars(cls) | vars(tb._FinalLoss) if a.startswith("track_")]
    with pytest.raises(NotImplementedError, match="power of two"):
        tb.final_test_loss("copy", "eunn_fft", hidden=6)


def test_cuda_graph_methods_are_cuda_cases_unless_named():
    """The graphed methods are CUDA-only: a default CPU sweep and the asv parameters of a
    CPU machine leave them out (the summary says why), a CUDA sweep keeps them, and
    naming them on CPU gives skipped cases with the reason."""
    from suite.measure.rows import Row
    from suite.report.summary import absent_methods

    graphed = {name for name, spec in METHODS.items() if spec.graphed}
    assert graphed
    assert not {c.method for c in iter_cases("tiny", devices=["cpu"])} & graphed
    assert graphed <= {c.method for c in iter_cases("tiny", devices=["cuda"])}
    named = iter_cases("tiny", workloads=["update"], methods=sorted(graphed), devices=["cpu"])
    assert named and all("CUDA graph" in c.skip_reason() for c in named)
    cpu_labels = cases_mod.method_labels("update", [1], devices=["cpu"])
    all_labels = cases_mod.method_labels("update", [1], devices=["cpu", "cuda"])
    assert set(all_labels) - set(cpu_labels) == {f"{name}-k1" for name in graphed}
    rows = [Row("update", "projunn_t", 16, device="cpu")]
    why = absent_methods(rows)["update"]
    assert sorted(why["runs on CUDA only (a CUDA graph replay)"]) == sorted(graphed)
    rows.append(Row("update", "svd", 16, device="cuda"))
    assert sorted(absent_methods(rows)["update"]["not selected"]) == sorted(
        set(METHODS)
        - {"projunn_t", "svd"}
        - {n for n, s in METHODS.items() if "update" not in s.workloads}
    )
