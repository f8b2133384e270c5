"""Bad options raise clear errors; the sequence-model helpers behave as documented."""

from __future__ import annotations

import pytest
import torch
from helpers import rnn_losses

from baselines import (
    EUNN,
    METHODS,
    CayleyUnitary,
    ExpmUnitary,
    LSTMReference,
    TorchOrthogonal,
    lstm_hidden_for_params,
    lstm_param_count,
    unitary_rnn,
)
from projunn_core.protocol import unitarity_error

ALL = sorted(METHODS)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [1, 0, -3, 2.5, True])
def test_bad_n_raises_value_error(name, n):
    with pytest.raises(ValueError, match=r"\bn must be an integer >= 2"):
        METHODS[name](n)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.bfloat16])
def test_bad_dtype_raises_type_error(name, dtype):
    with pytest.raises(TypeError, match=r"the dtype torch\..* is not supported; the supported"):
        METHODS[name](4, dtype)


@pytest.mark.parametrize("name", ALL)
def test_unknown_optimizer_name(name):
    m = METHODS[name](4)
    with pytest.raises(ValueError, match=r"optimizer name must be one of .*'lbfgs'"):
        m.optimizer("lbfgs", lr=0.1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_is_skipped_not_written(name, bad):
    m = METHODS[name](8, torch.float64)
    opt = m.optimizer("adam", lr=0.1)
    m(torch.randn(4, 8, dtype=torch.float64)).sum().backward()
    p = next(p for p in m.parameters() if p.grad is not None)
    p.grad[(0,) * p.grad.dim()] = bad
    before = p.detach().clone()
    opt.step()
    # unchanged (projection methods re-project the unchanged W: round-off only)
    torch.testing.assert_close(p.detach(), before, rtol=0, atol=1e-12)
    assert torch.isfinite(m.matrix()).all()
    assert opt.skipped_steps == 1


@pytest.mark.parametrize("n", [3, 6, 12, 100])
def test_eunn_fft_needs_power_of_two(n):
    with pytest.raises(ValueError, match=rf"power of two, got n={n}"):
        EUNN(n, fft=True)
    EUNN(n)  # the tunable style takes any n


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_eunn_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity must be an integer >= 1"):
        EUNN(8, capacity=capacity)


def test_eunn_odd_capacity_is_fine():
    m = EUNN(5, torch.float64, capacity=3)
    assert unitarity_error(m.matrix()) < 1e-14


def test_bad_init_options():
    with pytest.raises(ValueError, match="init must be"):
        EUNN(4, init="haar")
    with pytest.raises(ValueError, match="init must be"):
        ExpmUnitary(4, init="random")
    with pytest.raises(ValueError, match="init must be"):
        CayleyUnitary(4, init="haar")


@pytest.mark.parametrize("K", [0, -2, 1.5])
def test_expm_bad_change_base_every(K):
    with pytest.raises(ValueError, match="change_base_every must be None or an integer >= 1"):
        ExpmUnitary(4, change_base_every=K)


@pytest.mark.parametrize("k", [-1, 5, 2.0])
def test_cayley_bad_n_negative(k):
    with pytest.raises(ValueError, match=r"n_negative must be an integer in \[0, n=4\]"):
        CayleyUnitary(4, n_negative=k)


def test_torch_orthogonal_unknown_map():
    with pytest.raises(ValueError, match=r"orthogonal_map must be one of .*'matrix_exp'.*'qr'"):
        TorchOrthogonal(4, orthogonal_map="qr")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_torch_orthogonal_householder_is_real_only(dtype):
    with pytest.raises(ValueError, match="householder.*does not support complex"):
        TorchOrthogonal(4, dtype, orthogonal_map="householder")


# ---------------------------------------------------------------- LSTM reference


@pytest.mark.parametrize("in_size,out_size", [(1, 1), (1, 10), (10, 10), (28, 10)])
@pytest.mark.parametrize("target", [500, 7_000, 40_000, 180_000])
def test_lstm_parameter_matching(in_size, out_size, target):
    h = lstm_hidden_for_params(in_size, out_size, target)
    m = LSTMReference(in_size, output_size=out_size, match_params=target)
    count = sum(p.numel() for p in m.parameters())
    assert m.hidden_size == h and count == lstm_param_count(in_size, h, out_size)
    # the best possible: no neighbouring hidden size is closer to the target
    for other in (h - 1, h + 1):
        if other >= 1:
            assert abs(count - target) <= abs(lstm_param_count(in_size, other, out_size) - target)
    if h > 1:
        step = lstm_param_count(in_size, h + 1, out_size) - lstm_param_count(in_size, h, out_size)
        assert abs(count - target) <= step / 2
    if target >= 40_000:  # (small targets: one hidden unit is already a big step)
        assert abs(count - target) / target < 0.02


def test_lstm_reference_options():
    with pytest.raises(ValueError, match="exactly one of hidden_size and match_params"):
        LSTMReference(2, 8, output_size=1, match_params=1000)
    with pytest.raises(ValueError, match="exactly one of hidden_size and match_params"):
        LSTMReference(2, output_size=1)
    m = LSTMReference(3, 5, output_size=2)
    assert m(torch.randn(4, 7, 3)).shape == (4, 7, 2)
    assert lstm_hidden_for_params(3, 2, 1) == 1


# ---------------------------------------------------------------- unitary RNN factory


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
def test_unitary_rnn_trains_with_each_baseline(name, dtype):
    pytest.importorskip("projunn_core.nn")
    torch.manual_seed(0)
    rnn = unitary_rnn(name, 2, 8, 3, dtype=dtype)
    assert rnn.cell.recurrent.__class__ is METHODS[name]
    x, y = torch.randn(4, 6, 2), torch.randn(4, 6, 3)
    opt = rnn.optimizer("rmsprop", lr=1e-2, recurrent_lr=1e-3)
    losses = rnn_losses(rnn, opt, x, y, steps=5)
    assert all(torch.isfinite(torch.tensor(losses)))
    if name != "unconstrained":
        assert unitarity_error(rnn.cell.recurrent.matrix()) < 1e-5


def test_unitary_rnn_accepts_a_class_and_rejects_unknown_names():
    pytest.importorskip("projunn_core.nn")
    rnn = unitary_rnn(EUNN, 1, 4, 1, capacity=4)
    assert rnn.cell.recurrent.capacity == 4
    with pytest.raises(ValueError, match="method must be one of"):
        unitary_rnn("lstm", 1, 4, 1)
