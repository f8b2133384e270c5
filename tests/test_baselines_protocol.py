"""Every baseline follows the layer protocol: unitary matrix(), m(x) = x @ W.mT, and an
optimizer whose step keeps W unitary while fitting a target (Unconstrained exempt)."""

from __future__ import annotations

import pytest
import torch

from baselines import (
    EUNN,
    METHODS,
    CayleyUnitary,
    ExpmUnitary,
    SVDProjection,
    TorchOrthogonal,
    Unconstrained,
    haar_unitary,
)
from projunn_core.protocol import unitarity_error

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
TOL = {
    torch.float32: 1e-5,
    torch.complex64: 1e-5,
    torch.float64: 1e-12,
    torch.complex128: 1e-12,
}

# (id, constructor(n, dtype), real_only)
SPECS = [
    ("eunn", lambda n, dt: EUNN(n, dt, capacity=4), False),
    ("eunn_fft", lambda n, dt: EUNN(n, dt, fft=True), False),
    ("svd", lambda n, dt: SVDProjection(n, dt), False),
    ("expm", lambda n, dt: ExpmUnitary(n, dt), False),
    ("expm_cb", lambda n, dt: ExpmUnitary(n, dt, change_base_every=7), False),
    ("cayley", lambda n, dt: CayleyUnitary(n, dt, init="random"), False),
    ("torch_exp", lambda n, dt: TorchOrthogonal(n, dt, orthogonal_map="matrix_exp"), False),
    ("torch_cayley", lambda n, dt: TorchOrthogonal(n, dt, orthogonal_map="cayley"), False),
    ("torch_hh", lambda n, dt: TorchOrthogonal(n, dt, orthogonal_map="householder"), True),
    ("unconstrained", lambda n, dt: Unconstrained(n, dt), False),
]

CASES = [
    pytest.param(make, n, dt, id=f"{name}-n{n}-{str(dt).split('.')[-1]}")
    for name, make, real_only in SPECS
    for n in (4, 16, 64)
    for dt in DTYPES
    if not (real_only and dt.is_complex)
]


def _mse(y, t):
    return (y - t).abs().pow(2).mean()


def test_methods_registry():
    assert set(METHODS) == {"eunn", "svd", "expm", "cayley", "torch_orthogonal", "unconstrained"}


@pytest.mark.parametrize("make,n,dtype", CASES)
def test_matrix_unitary_and_forward_matches(make, n, dtype):
    torch.manual_seed(n)
    m = make(n, dtype)
    W = m.matrix()
    assert W.shape == (n, n) and W.dtype == dtype
    assert unitarity_error(W) < TOL[dtype]
    x = torch.randn(3, 5, n, dtype=dtype)
    y = m(x)
    assert y.shape == x.shape
    atol = 1e-5 if dtype in (torch.float32, torch.complex64) else 1e-12
    torch.testing.assert_close(y, x @ W.mT, atol=atol, rtol=0)


@pytest.mark.parametrize("make,n,dtype", CASES)
def test_training_fits_and_stays_unitary(make, n, dtype):
    torch.manual_seed(100 + n)
    m = make(n, dtype)
    T = haar_unitary(n, dtype)
    x = torch.randn(32, n, dtype=dtype)
    target = x @ T.mT
    opt = m.optimizer("adam", lr=1e-2)
    with torch.no_grad():
        loss0 = float(_mse(m(x), target))
    for _ in range(100):
        opt.zero_grad()
        loss = _mse(m(x), target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss1 = float(_mse(m(x), target))
    assert loss1 < loss0
    if not isinstance(m, Unconstrained):
        assert unitarity_error(m.matrix()) < TOL[dtype]


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "RMSprop"])
@pytest.mark.parametrize("make", [s[1] for s in SPECS], ids=[s[0] for s in SPECS])
def test_every_optimizer_name_keeps_unitary(make, name):
    torch.manual_seed(0)
    m = make(8, torch.float64)
    opt = m.optimizer(name, lr=0.05)
    x = torch.randn(4, 8, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        m(x).sum().backward()
        opt.step()
    if not isinstance(m, Unconstrained):
        assert unitarity_error(m.matrix()) < 1e-12


def test_change_base_folds_exponential():
    torch.manual_seed(0)
    m = ExpmUnitary(6, torch.float64, change_base_every=3)
    opt = m.optimizer("sgd", lr=0.1)
    x = torch.randn(4, 6, dtype=torch.float64)
    for step in range(1, 7):
        opt.zero_grad()
        m(x).pow(3).sum().backward()
        opt.step()
        folded = step % 3 == 0
        assert bool((m.X == 0).all()) == folded
    W = m.matrix().detach().clone()
    m.change_base()
    torch.testing.assert_close(m.matrix(), W, atol=1e-13, rtol=0)
    assert unitarity_error(m.base) < 1e-12


def test_cayley_determinant_and_signs():
    m = CayleyUnitary(6, torch.float64, n_negative=2)
    assert torch.diagonal(m.matrix()).tolist() == [-1.0, -1.0, 1, 1, 1, 1]
    assert CayleyUnitary(6).n_negative == 3
    assert CayleyUnitary(6, torch.complex64).n_negative == 0
    mc = CayleyUnitary(3, torch.complex128, n_negative=1)
    torch.testing.assert_close(
        torch.diagonal(mc.matrix()), torch.tensor([-1, 1, 1], dtype=torch.complex128)
    )
    assert {n for n, _ in mc.named_parameters()} == {"X", "phi"}


def test_haar_unitary_properties():
    for dt in DTYPES:
        W = haar_unitary(32, dt)
        assert W.dtype == dt and unitarity_error(W) < TOL[dt]
    # Mezzadri sign fix: diag(R) of the QR of a Haar matrix is positive up to round-off,
    # so the mean of the diagonal is near 0 (not biased towards positive values).
    torch.manual_seed(0)
    means = torch.stack([torch.diagonal(haar_unitary(8, torch.float64)) for _ in range(400)])
    assert abs(float(means.mean())) < 0.05
