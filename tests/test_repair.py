"""pc.reorthogonalize against SciPy's polar factor, and the optimizers' repair option."""

import pytest
import torch
from helpers import ALL_DTYPES, DOUBLE, haar, max_abs, randn, ref_polar_step

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("size", [1e-6, 1e-3, 0.1, 2.0])  # Newton-Schulz ... SVD
def test_matches_scipy_polar(dtype, size, gen):
    A = haar(12, dtype, batch=(2,), generator=gen) + size * randn(
        2, 12, 12, dtype=dtype, generator=gen
    )
    zero = torch.zeros(2, 12, 1, dtype=dtype)
    expected = ref_polar_step(A, zero, zero)  # SciPy's polar factor of A + 0
    out = pc.reorthogonalize(A)
    assert out is A and A.dtype == dtype
    assert max_abs(A, expected) < 1e-12
    assert pc.unitarity_error(A) < 1e-14


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_drifted_weight_returns_to_round_off(dtype, gen):
    n = 64
    A = haar(n, dtype, generator=gen)
    A0 = A.clone()
    A += 1e-4 * torch.randn(n, n, dtype=dtype, generator=gen) / n**0.5  # drift ~1e-4
    assert pc.unitarity_error(A) > 5e-5
    pc.reorthogonalize(A)
    single = dtype in (torch.float32, torch.complex64)
    assert A.dtype == dtype and A.is_complex() == dtype.is_complex
    assert pc.unitarity_error(A) < (1e-6 if single else 1e-14)
    assert max_abs(A, A0) < 1e-4  # the closest unitary: it moves A only by the drift


def test_unitary_input_is_kept(gen):
    A = haar(16, generator=gen)
    before = A.clone()
    pc.reorthogonalize(A)
    assert max_abs(A, before) < 1e-15


def test_singular_input_gives_a_unitary(gen):
    A = haar(6, generator=gen)
    A[:, 2] = 0
    pc.reorthogonalize(A)
    assert pc.unitarity_error(A) < 1e-14


def test_non_contiguous_and_parameter_inputs(gen):
    A = (haar(8, generator=gen) * 1.01).T  # a transposed view
    pc.reorthogonalize(A)
    assert pc.unitarity_error(A) < 1e-14
    W = torch.nn.Parameter(1.01 * torch.eye(4))
    pc.reorthogonalize(W)
    assert W.requires_grad and pc.unitarity_error(W) < 1e-6


@pytest.mark.parametrize(
    "A,error,match",
    [
        (torch.ones(3, 4), ValueError, "A must have shape"),
        (torch.eye(3, dtype=torch.float16), TypeError, "A has dtype"),
        (torch.zeros(0, 0), ValueError, "A is empty"),
        (torch.eye(4).expand(2, 4, 4), ValueError, "A has elements that share memory"),
        (torch.eye(4, device="meta"), ValueError, "A is a meta tensor"),
        (torch.full((3, 3), float("nan")), ValueError, "A contains non-finite"),
        (torch.full((3, 3), 1e200, dtype=torch.float64), ValueError, "A\\^H A overflowed"),
    ],
)
def test_bad_input_is_refused_and_left_untouched(A, error, match):
    before = A.clone()
    with pytest.raises(error, match=match):
        pc.reorthogonalize(A)
    if not A.is_meta:
        assert torch.equal(A, before) or (A.isnan().all() and before.isnan().all())


def test_empty_batch_is_a_no_op():
    A = torch.zeros(0, 3, 3)
    assert pc.reorthogonalize(A) is A


# ---------------------------------------------------------------- optimizer option


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_reorthogonalize_every_repairs_every_mth_update(name, gen):
    n, every = 6, 3
    W = torch.nn.Parameter(1.001 * haar(n, generator=gen))  # off unitary by 1e-3
    opt = pc.optim.make(
        name, [{"params": [W], "unitary": True, "reorthogonalize_every": every}], lr=1e-9
    )
    for step in range(1, 2 * every + 1):
        W.grad = randn(n, n, generator=gen)
        opt.step()
        assert opt.state[W]["projunn_updates"] == step
        if step < every:  # tiny steps keep the drift
            assert pc.unitarity_error(W) > 1e-3
        elif step == every:
            assert pc.unitarity_error(W) < 1e-13


def test_reorthogonalize_every_default_off_and_validated(gen):
    W = torch.nn.Parameter(1.001 * haar(4, generator=gen))
    opt = pc.optim.SGD([{"params": [W], "unitary": True}], lr=1e-9)
    assert opt.param_groups[0]["reorthogonalize_every"] is None
    for _ in range(3):
        W.grad = randn(4, 4, generator=gen)
        opt.step()
    assert pc.unitarity_error(W) > 1e-3 and "projunn_updates" not in opt.state[W]
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="reorthogonalize_every must be an integer >= 1"):
            pc.optim.SGD([{"params": [W], "unitary": True, "reorthogonalize_every": bad}])


def test_layer_optimizer_passes_the_option_and_old_state_dicts_still_step(gen):
    layer = pc.nn.UnitaryLinear(5, dtype=torch.float64)
    opt = layer.optimizer("rmsprop", lr=1e-3, reorthogonalize_every=2)
    assert opt.param_groups[0]["reorthogonalize_every"] == 2
    state = opt.state_dict()
    del state["param_groups"][0]["reorthogonalize_every"]  # as saved before the option
    opt.load_state_dict(state)
    layer.weight.grad = randn(5, 5, generator=gen)
    opt.step()
    assert pc.unitarity_error(layer.weight) < 1e-13
