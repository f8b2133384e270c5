"""The peer methods (geoopt, geotorch, Landing) as registry entries: fields, skip rules,
options, the training optimizer and the approximate unitarity of Landing."""

from __future__ import annotations

import math

import pytest
import torch

import baselines
from suite.cli import main as cli
from suite.measure.cases import Case, iter_cases
from suite.measure.methods import METHODS, check_option
from suite.measure.runner import Settings, run_case
from suite.measure.workloads import TRAIN_OPTIMIZER, train_state
from suite.tasks import TASKS
from suite.tasks.base import Config, optimizer_name

PEERS = ("geoopt_stiefel", "geoopt_canonical", "geotorch_expm", "geotorch_cayley", "landing")
TINY = Settings(warmup=0, min_time=0.002, max_time=0.01, accuracy_steps=3, batch=4)


def _installed(name):
    reason = METHODS[name].unavailable()
    if reason:
        pytest.skip(reason)


def test_every_peer_is_a_registry_entry_built_from_the_peer_maps():
    assert set(PEERS) <= set(METHODS) and set(PEERS) == set(baselines.PEER_METHODS)
    for name in PEERS:
        spec = METHODS[name]
        assert (spec.update is not None) == (name in baselines.PEER_UPDATES)
        assert (spec.conv is not None) == (name in baselines.PEER_CONV_LAYERS)
        assert spec.requires == baselines.peers.PEER_LIBRARIES[name]
        dtypes = {str(d).removeprefix("torch.") for d in baselines.PEER_DTYPES[name]}
        assert spec.dtypes is None or set(spec.dtypes) == dtypes


@pytest.mark.parametrize("name", PEERS)
def test_peers_take_part_in_the_workloads_their_fields_allow(name):
    spec = METHODS[name]
    expected = {"train_step", "accuracy"} | ({"update"} if spec.update else set())
    if spec.conv is not None:
        expected |= {"conv_update", "conv_train_step", "conv_accuracy"}
    assert set(spec.workloads) == expected
    listed = {c.workload for c in iter_cases("tiny", dtypes=["float32"]) if c.method == name}
    assert listed == expected  # the default grids pick each peer up where it applies


@pytest.mark.parametrize("name", ["geoopt_stiefel", "geotorch_expm", "geotorch_cayley"])
def test_real_only_peers_skip_complex_cases_with_the_reason(name):
    reason = Case("train_step", name, 8, dtype="complex64").skip_reason()
    assert reason.startswith(f"{name} takes float32 or float64 only, not complex64")
    assert "real-only" in reason
    rows = run_case(Case("accuracy", name, 8, dtype="complex128"), TINY).rows
    assert [r.status for r in rows] == ["skipped"] and "real-only" in rows[0].reason


def test_a_missing_library_is_a_skip_with_the_install_line(monkeypatch):
    monkeypatch.setattr(baselines.peers, "_available", lambda library: library != "geotorch")
    reason = Case("train_step", "geotorch_cayley", 8).skip_reason()
    assert reason == (
        "geotorch_cayley cannot be built here: geotorch is not installed: pip install "
        '"projunn-bench[peers]"'
    )
    assert Case("train_step", "landing", 8).skip_reason() is None  # needs nothing
    assert Case("train_step", "geoopt_stiefel", 8).skip_reason() is None


def test_peer_options_are_checked_in_the_registry():
    assert check_option("update_base", "5") == 5 and check_option("update_base", None) is None
    assert check_option("lam", 2) == 2.0 and check_option("eps", "0.25") == 0.25
    for name, bad in (("update_base", 0), ("lam", -1), ("eps", 1.5), ("eps", True)):
        with pytest.raises(ValueError, match=f"option {name} must be"):
            check_option(name, bad)
    assert METHODS["geotorch_expm"].options_for("train_step", update_base=3) == {"update_base": 3}
    assert METHODS["landing"].options_for("conv_train_step", eps=0.1) == {"lam": 1.0, "eps": 0.1}
    with pytest.raises(ValueError, match="does not take option"):
        METHODS["geoopt_stiefel"].options_for("train_step", update_base=3)


def test_geotorch_update_base_reaches_the_layer():
    _installed("geotorch_expm")
    case = Case("train_step", "geotorch_expm", 8, options=(("update_base", 2),))
    state = train_state(case, batch=4)
    assert state["module"].update_base == 2
    for _ in range(2):
        state["step"]()
    layer = state["module"].linear.parametrizations.weight
    assert torch.count_nonzero(layer.original) == 0  # folded into the base after 2 steps


def test_geoopt_trains_with_adam_and_says_so():
    _installed("geoopt_stiefel")
    spec = METHODS["geoopt_stiefel"]
    assert spec.optimizer_for(TRAIN_OPTIMIZER) == "adam" and spec.optimizer_for("sgd") == "sgd"
    state = train_state(Case("train_step", "geoopt_stiefel", 8), batch=4)
    assert type(state["optimizer"]).__name__ == "SkippingRiemannianAdam"
    rows = run_case(Case("accuracy", "geoopt_stiefel", 8), TINY).rows
    assert rows and all(r.reason == "trained with adam: geoopt_stiefel has no rmsprop optimizer"
                        for r in rows)  # fmt: skip
    cfg = Config(T=5, hidden=6, batch=2, steps=1, lr=1e-3)
    assert optimizer_name("geoopt_canonical", cfg) == "adam"
    assert optimizer_name("expm", cfg) == "rmsprop"
    with pytest.raises(ValueError, match="has no lbfgs optimizer"):
        METHODS["expm"].optimizer_for("lbfgs")


def test_landing_is_approximate_and_stays_below_its_bound():
    spec = METHODS["landing"]
    assert spec.approximate and not METHODS["expm"].approximate
    assert spec.unitarity_bound(16) == pytest.approx(0.5 / 4)
    rows = {r.metric: r for r in run_case(Case("accuracy", "landing", 16), TINY).rows}
    value = rows["unitarity_after_3_steps"].value
    assert 0 <= value <= spec.unitarity_bound(16)
    assert "near-unitary by design" in rows["unitarity_after_3_steps"].reason
    conv = {r.metric: r for r in run_case(Case("conv_accuracy", "landing", 4, spatial=4),
                                         TINY).rows}  # fmt: skip
    assert conv["orthogonality_after_3_steps"].value <= 0.5


def test_landing_at_a_large_lr_moves_off_the_group_but_within_eps():
    """At lr 1 the landing step leaves the group (not exact unitarity), by at most eps."""
    case = Case("train_step", "landing", 16, options=(("eps", 0.2),))
    state = train_state(case, batch=4)
    for group in state["optimizer"].param_groups:
        group["lr"] = 1.0
    for _ in range(5):
        state["step"]()
    W = state["module"].matrix().detach().double()
    distance = float(torch.linalg.matrix_norm(W @ W.mT - torch.eye(16, dtype=W.dtype)))
    assert 1e-4 < distance <= 0.2 + 1e-6


@pytest.mark.parametrize("name", PEERS)
def test_peers_train_as_the_recurrent_matrix_of_a_task(name, tmp_path):
    _installed(name)
    code = cli(
        ["task", "copy", "--method", name, "--steps", "3", "--hidden", "8", "--T", "3",
         "--test-size", "8", "--no-progress", "--no-figure", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0


def test_landing_trains_the_digits_conv_task(tmp_path):
    assert "landing" in TASKS["digits-conv"].methods
    code = cli(["task", "digits-conv", "--method", "landing", "--steps", "2", "--test-size",
                "20", "--no-progress", "--no-figure", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0


def test_list_states_the_peer_restrictions(capsys):
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("  geoopt_stiefel") : out.index("  geoopt_canonical")]
    assert "dtypes: float32, float64 only" in block and "needs geoopt" in block
    assert "trained with adam: geoopt_stiefel has no rmsprop optimizer" in block
    landing = out[out.index("  landing") :]
    assert "near-unitary by design" in landing.split("\n\n")[0]
    assert math.isfinite(METHODS["landing"].defaults["eps"])


def test_the_report_sets_our_baselines_against_the_libraries(tmp_path):
    pytest.importorskip("matplotlib")
    from suite.measure.runner import run_sweep
    from suite.report.build import build_report

    methods = ["expm", "geotorch_expm", "torch_orthogonal", "projunn_t", "landing"]
    for name in methods:
        _installed(name)
    cases = iter_cases("tiny", workloads=["train_step"], methods=methods, sizes=[8, 16],
                       ranks=[1, 2], dtypes=["float32"])  # fmt: skip
    sweep = run_sweep(cases, TINY, tmp_path / "runs", progress=False)
    report = build_report([sweep.folder], tmp_path / "report")
    text = report.markdown.read_text()
    section = text[text.index("Our baselines vs the libraries") :]
    for pair in (
        "expm / geotorch_expm",
        "torch_orthogonal / geotorch_expm",
        "landing / projunn_t (fastest k)",
        "geotorch_expm / projunn_t (fastest k)",
    ):
        assert pair in section.split("\n## ")[0], pair  # fmt: skip
    assert "N=8" in section and "N=16" in section
