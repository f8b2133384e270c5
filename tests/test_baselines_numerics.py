"""Numerical checks of the baselines against independent float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.func import functional_call

from baselines import (
    EUNN,
    UPDATES,
    CayleyUnitary,
    ExpmUnitary,
    SVDProjection,
    cayley_step,
    expm_skew,
    expm_step,
    haar_unitary,
    svd_step,
    unconstrained_step,
)
from projunn_core.protocol import unitarity_error

pytestmark = pytest.mark.usefixtures("one_thread")

COMPLEX = [torch.float64, torch.complex128]


# ---------------------------------------------------------------- gradients


def _randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("dtype", COMPLEX, ids=["real", "complex"])
@pytest.mark.parametrize(
    "make",
    [
        lambda n, dt: EUNN(n, dt, capacity=3),
        lambda n, dt: EUNN(n, dt, fft=True),
        lambda n, dt: ExpmUnitary(n, dt),
        lambda n, dt: CayleyUnitary(n, dt, n_negative=1),
    ],
    ids=["eunn", "eunn_fft", "expm", "cayley"],
)
def test_gradients_match_finite_differences(make, dtype):
    torch.manual_seed(0)
    n = 4
    m = _randomize(make(n, dtype))
    names = [name for name, _ in m.named_parameters()]
    x = torch.randn(2, n, dtype=dtype)

    def f(*params):
        return functional_call(m, dict(zip(names, params, strict=True)), (x,))

    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------- EUNN structure


def _rotation_layer(n, pairs, theta, phi):
    R = np.eye(n, dtype=complex)
    for (i, j), t, p in zip(pairs, theta, phi, strict=True):
        e = np.exp(1j * p)
        R[i, i], R[i, j] = e * math.cos(t), -e * math.sin(t)
        R[j, i], R[j, j] = math.sin(t), math.cos(t)
    return R


def _layer_pairs(n, l, fft):
    if fft:
        s = 2 ** (l % int(round(math.log2(n))))
        return [(i, i + s) for i in range(n) if not i & s]
    return [(i, i + 1) for i in range(l % 2, n - 1, 2)]


@pytest.mark.parametrize("dtype", COMPLEX, ids=["real", "complex"])
@pytest.mark.parametrize(
    "n,capacity,fft", [(5, 4, False), (6, 3, False), (8, None, True), (8, 5, True), (2, 3, False)]
)
def test_eunn_equals_explicit_product_of_rotations(n, capacity, fft, dtype):
    torch.manual_seed(1)
    m = EUNN(n, dtype, capacity=capacity, fft=fft)
    L = m.capacity
    theta = m.theta.detach().numpy()
    phi = m.phi.detach().numpy() if m.phi is not None else np.zeros_like(theta)
    W = np.eye(n, dtype=complex)
    start = 0
    for l in range(L):
        pairs = _layer_pairs(n, l, fft)
        k = len(pairs)
        W = _rotation_layer(n, pairs, theta[start : start + k], phi[start : start + k]) @ W
        start += k
    assert start == theta.size
    if m.omega is not None:
        W = np.diag(np.exp(1j * m.omega.detach().numpy())) @ W
    ref = torch.from_numpy(W if dtype.is_complex else W.real)
    torch.testing.assert_close(m.matrix().detach(), ref, atol=1e-13, rtol=0)
    x = torch.randn(7, n, dtype=dtype)
    torch.testing.assert_close(m(x).detach(), x @ ref.mT, atol=1e-13, rtol=0)


def test_eunn_default_capacities_and_parameter_counts():
    assert EUNN(8).capacity == 2
    assert EUNN(16, fft=True).capacity == 4
    # full capacity: n(n-1)/2 rotation angles = dim SO(n)
    assert EUNN(8, capacity=8).theta.numel() == 8 * 7 // 2
    mc = EUNN(8, torch.complex64, capacity=8)
    assert {n for n, _ in mc.named_parameters()} == {"theta", "phi", "omega"}
    assert mc.theta.dtype == torch.float32
    W = EUNN(6, torch.complex128, init="identity").matrix()
    torch.testing.assert_close(W, torch.eye(6, dtype=torch.complex128))


def test_eunn_forward_does_not_build_the_matrix(monkeypatch):
    m = EUNN(8, capacity=3)
    monkeypatch.setattr(EUNN, "matrix", lambda self: pytest.fail("forward used matrix()"))
    x = torch.randn(4, 8)
    assert m(x).shape == (4, 8)


def test_eunn_full_capacity_fits_random_orthogonal():
    torch.manual_seed(3)
    n = 8
    T = haar_unitary(n, torch.float64)
    if torch.linalg.det(T) < 0:  # real rotations span SO(n)
        T[:, 0] = -T[:, 0]
    m = EUNN(n, torch.float64, capacity=n)
    opt = m.optimizer("adam", lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = (m.matrix() - T).pow(2).sum() / n
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1e-3


# ---------------------------------------------------------------- projection step


@pytest.mark.parametrize("dtype", COMPLEX, ids=["real", "complex"])
def test_svd_projection_step_is_polar_of_sgd_step(dtype):
    torch.manual_seed(2)
    n, lr = 6, 0.3
    m = SVDProjection(n, dtype)
    x = torch.randn(5, n, dtype=dtype)
    t = torch.randn(5, n, dtype=dtype)
    W0 = m.weight.detach().clone()
    opt = m.optimizer("sgd", lr=lr)
    (m(x) - t).abs().pow(2).sum().backward()
    G = m.weight.grad.detach().clone()
    opt.step()
    ref = scipy.linalg.polar((W0 - lr * G).numpy())[0]
    torch.testing.assert_close(m.weight.detach(), torch.from_numpy(ref), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- functional updates


def _skew_np(X):
    return (X - X.conj().T) / 2


def _ref_expm(A, G, lr):
    return A @ scipy.linalg.expm(-lr * _skew_np(A.conj().T @ G))


def _ref_polar(A, G, lr):
    return scipy.linalg.polar(A - lr * G)[0]


def _ref_cayley(A, G, lr):
    n = A.shape[0]
    Om = G @ A.conj().T - A @ G.conj().T
    return np.linalg.inv(np.eye(n) + lr / 2 * Om) @ (np.eye(n) - lr / 2 * Om) @ A


def _ref_plain(A, G, lr):
    return A - lr * G


REFS = {
    "expm": (expm_step, _ref_expm),
    "svd": (svd_step, _ref_polar),
    "cayley": (cayley_step, _ref_cayley),
    "unconstrained": (unconstrained_step, _ref_plain),
}


def test_updates_registry():
    assert {k: v for k, v in UPDATES.items()} == {k: v[0] for k, v in REFS.items()}


@pytest.mark.parametrize("n", [2, 6, 33])
@pytest.mark.parametrize("dtype", COMPLEX, ids=["real", "complex"])
@pytest.mark.parametrize("name", sorted(REFS))
def test_functional_update_matches_scipy(name, dtype, n):
    step, ref = REFS[name]
    torch.manual_seed(n)
    A = haar_unitary(n, dtype)
    G = torch.randn(n, n, dtype=dtype)
    expected = ref(A.numpy(), G.numpy(), 0.2)
    ptr = A.data_ptr()
    out = step(A, G, 0.2)
    assert out is A and A.data_ptr() == ptr
    torch.testing.assert_close(A, torch.from_numpy(expected), atol=1e-12, rtol=0)
    if name != "unconstrained":
        assert unitarity_error(A) < 1e-13


@pytest.mark.parametrize("name", ["expm", "svd", "cayley"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
def test_functional_update_float32_stays_unitary(name, dtype):
    torch.manual_seed(0)
    A = haar_unitary(64, dtype)
    for _ in range(20):
        UPDATES[name](A, torch.randn(64, 64, dtype=dtype), 0.05)
    assert A.dtype == dtype
    assert unitarity_error(A) < 1e-5


def test_functional_update_with_zero_and_rank_one_gradients():
    torch.manual_seed(0)
    for name in ("expm", "svd", "cayley"):
        A = haar_unitary(8, torch.float64)
        A0 = A.clone()
        UPDATES[name](A, torch.zeros(8, 8, dtype=torch.float64), 0.1)
        torch.testing.assert_close(A, A0, atol=1e-14, rtol=0)
        u, v = torch.randn(8, 1, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        UPDATES[name](A, u @ v.T, 0.1)
        assert unitarity_error(A) < 1e-13


@pytest.mark.parametrize("dtype", COMPLEX, ids=["real", "complex"])
def test_expm_skew_accuracy_vs_scipy(dtype):
    # docs/design.md (our own float64 exponential): torch's float64 matrix_exp is off by
    # ~1e-12 for ||M||_1 around 0.01-0.05 (the size of a small gradient step); expm_skew
    # must match SciPy there too.
    torch.manual_seed(0)
    for n in (2, 6, 17):
        for norm in (0.0, 1e-3, 0.01, 0.03, 0.05, 0.5, 5.0, 50.0):
            X = torch.randn(n, n, dtype=dtype)
            M = X - X.mH
            M = M * (norm / torch.linalg.matrix_norm(M, ord=1))
            E = expm_skew(M)
            assert unitarity_error(E) < 1e-15 * max(n, 10)
            ref = torch.from_numpy(scipy.linalg.expm(M.numpy()))
            # exp is ~||M||-conditioned: allow round-off times the norm for large inputs
            atol = 2e-15 if norm <= 1 else 1e-14 * norm
            torch.testing.assert_close(E, ref, atol=atol, rtol=0)


def test_expm_step_small_steps_match_scipy():
    torch.manual_seed(5)
    A = haar_unitary(6, torch.float64)
    G = torch.randn(6, 6, dtype=torch.float64)
    for lr in (1e-4, 3e-3, 1e-2, 2e-2):
        B = A.clone()
        expm_step(B, G, lr)
        ref = torch.from_numpy(_ref_expm(A.numpy(), G.numpy(), lr))
        torch.testing.assert_close(B, ref, atol=1e-15, rtol=0)
