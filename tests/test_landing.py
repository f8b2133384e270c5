"""Landing (baselines.landing): the step against a direct NumPy formula, the safe step size
against the distance it guarantees, convergence to the manifold, the optimizers' moments,
the layer protocol, the convolution, non-finite gradients and bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conv_helpers import direct_circular_conv, spatial_kernel
from helpers import ALL_DTYPES, COMPLEX, DOUBLE, haar, rnn_losses

from baselines import (
    PEER_CONV_LAYERS,
    PEER_METHODS,
    PEER_UPDATES,
    Landing,
    LandingAdam,
    LandingConv2d,
    LandingRMSprop,
    LandingSGD,
    landing_distance,
    landing_step,
    make_landing_optimizer,
    safe_step_size,
)
from projunn_core.conv import orthogonality_error
from projunn_core.protocol import unitarity_error

pytestmark = pytest.mark.usefixtures("one_thread")


def _np(t):
    return t.detach().numpy().copy()  # a copy: the steps write their input in place


def ref_safe_step(a, d, lam, eps):
    """The safe step of docs/design.md ("Landing"), written out in plain Python."""
    alpha = 2 * lam * d * (1 - d) - 2 * a * d
    beta = (1 + d) * (a**2 + lam**2 * d**2)
    if beta == 0:
        return 1 / (2 * lam)
    eta = (alpha + math.sqrt(alpha**2 + 4 * beta * (eps - d))) / (2 * beta)
    return min(eta, 1 / (2 * lam))


def ref_landing(A, G, lr, lam=1.0, eps=0.5):
    """float64/complex128 NumPy landing step (one matrix)."""
    n = A.shape[-1]
    AH = A.conj().T
    psi = (G @ AH - A @ G.conj().T) / 2
    delta = A @ AH - np.eye(n)
    a, d = np.linalg.norm(psi), np.linalg.norm(delta)
    eta = min(lr, ref_safe_step(a, d, lam, eps))
    return A - eta * (psi @ A + lam * delta @ A)


def _dist(X):
    """||X X^H - I||_F (unnormalised: the quantity eps bounds), NumPy, float64."""
    return float(np.linalg.norm(X @ X.conj().T - np.eye(X.shape[-1])))


def _near_unitary(n, dtype, gen, size=0.2, batch=()):
    """``X = U V diag(sigma) V^H`` (U, V Haar) with ``sigma_i^2 - 1 = delta_i`` random,
    ``||delta|| = size``: exactly ``||X X^H - I||_F = size``."""
    U = haar(n, dtype, batch=batch, generator=gen)
    V = haar(n, dtype, batch=batch, generator=gen)
    delta = torch.randn(*batch, n, dtype=torch.float64, generator=gen)
    delta = size * delta / torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
    sigma = torch.sqrt(1 + delta).to(dtype)
    return U @ (V * sigma.unsqueeze(-2)) @ V.mH


# ---------------------------------------------------------------- the functional step


@pytest.mark.parametrize("n", [2, 7, 33])
@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
@pytest.mark.parametrize("lr", [1e-3, 0.1, 10.0], ids=["small", "mid", "capped"])
def test_step_matches_numpy(n, dtype, lr, gen):
    A = _near_unitary(n, dtype, gen)
    G = torch.randn(n, n, dtype=dtype, generator=gen)
    expected = ref_landing(_np(A), _np(G), lr)
    ptr = A.data_ptr()
    out = landing_step(A, G, lr)
    assert out is A and A.data_ptr() == ptr
    np.testing.assert_allclose(_np(A), expected, atol=1e-13, rtol=0)


def test_small_lr_is_the_plain_formula(gen):
    """Far below the safe step, eta is lr: the step is X - lr * field exactly."""
    A = haar(6, torch.complex128, generator=gen)
    G = torch.randn(6, 6, dtype=torch.complex128, generator=gen)
    X, Gn = _np(A), _np(G)
    psi = (Gn @ X.conj().T - X @ Gn.conj().T) / 2
    field = psi @ X + 0.7 * (X @ X.conj().T - np.eye(6)) @ X
    landing_step(A, G, 1e-4, lam=0.7)
    np.testing.assert_allclose(_np(A), X - 1e-4 * field, atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
def test_batched_step_is_one_safe_step_per_matrix(dtype, gen):
    # one matrix with a huge gradient (small safe step), the others with small ones
    A = _near_unitary(5, dtype, gen, batch=(2, 3))
    G = torch.randn(2, 3, 5, 5, dtype=dtype, generator=gen)
    G[0, 1] *= 1e4
    expected = np.stack([ref_landing(_np(A[i, j]), _np(G[i, j]), 0.3) for i, j in np.ndindex(2, 3)])
    landing_step(A, G, 0.3)
    np.testing.assert_allclose(_np(A).reshape(6, 5, 5), expected, atol=1e-12, rtol=0)


def test_zero_gradient_on_the_manifold_is_a_fixed_point(gen):
    A = haar(8, torch.float64, generator=gen)
    A0 = A.clone()
    landing_step(A, torch.zeros_like(A), 0.3)
    torch.testing.assert_close(A, A0, atol=1e-14, rtol=0)


# ---------------------------------------------------------------- the safe step size


@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
def test_safe_step_keeps_the_distance_below_eps(dtype, gen):
    """Random points inside the region, random gradients over 12 orders of magnitude,
    random lam and eps: the step at the safe step size never leaves the region."""
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    worst = 0.0
    for _ in range(300):
        n = int(rng.integers(2, 10))
        eps = float(rng.uniform(0.05, 0.95))
        lam = float(10 ** rng.uniform(-1.5, 1))
        X = _near_unitary(n, dtype, gen, size=float(rng.uniform(0, 1)) * eps)
        if _dist(_np(X)) > eps:
            continue
        G = float(10 ** rng.uniform(-6, 6)) * torch.randn(n, n, dtype=dtype, generator=gen)
        landing_step(X, G, math.inf if rng.random() < 0.5 else 1e6, lam=lam, eps=eps)
        worst = max(worst, _dist(_np(X)) / eps)
    assert worst <= 1 + 1e-12
    assert worst > 0.5  # the bound is not vacuous: some steps go most of the way


def test_safe_step_is_the_root_of_the_bound_and_not_far_from_the_true_limit(gen):
    """eta* solves d - alpha eta + beta eta^2 = eps, and the largest step that really
    keeps the distance below eps (found by bisection) is at least eta*, but not hugely
    more in the gradient-dominated case (the bound is a^2 eta^2 there, nearly tight)."""
    for _ in range(50):
        X = _near_unitary(6, torch.float64, gen, size=0.05)
        G = torch.randn(6, 6, dtype=torch.float64, generator=gen) * 50
        Xn, Gn = _np(X), _np(G)
        psi = (Gn @ Xn.T - Xn @ Gn.T) / 2
        delta = Xn @ Xn.T - np.eye(6)
        a, d = np.linalg.norm(psi), np.linalg.norm(delta)
        eta = float(safe_step_size(torch.tensor(a), torch.tensor(d), 1.0, 0.5))
        assert eta == pytest.approx(ref_safe_step(a, d, 1.0, 0.5), rel=1e-12)
        alpha, beta = 2 * d * (1 - d) - 2 * a * d, (1 + d) * (a * a + d * d)
        assert d - alpha * eta + beta * eta**2 == pytest.approx(0.5, rel=1e-10)
        field = psi @ Xn + delta @ Xn
        lo, hi = 0.0, 10 * eta
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _dist(Xn - mid * field) <= 0.5 else (lo, mid)
        assert eta <= lo * (1 + 1e-9)
        assert eta >= 0.4 * lo


def test_safe_step_size_edge_cases():
    t = torch.tensor
    assert float(safe_step_size(t(0.0), t(0.0), 2.0, 0.5)) == 0.25  # zero field: 1 / (2 lam)
    assert float(safe_step_size(t(3.0), t(0.5), 1.0, 0.5)) == 0.0  # on the border, gradient wins
    # outside the region with the attraction winning: a step that comes back inside
    eta = float(safe_step_size(t(0.0, dtype=torch.float64), t(0.55, dtype=torch.float64)))
    assert 0 < eta <= 0.5 and 0.55 - 2 * 0.55 * 0.45 * eta + 1.55 * 0.55**2 * eta**2 <= 0.5
    # outside, gradient winning: no step (the bound cannot decrease)
    assert float(safe_step_size(t(1.0), t(0.55), 1.0, 0.5)) == 0.0
    # batched arguments broadcast
    assert safe_step_size(t([0.0, 1.0]), t([0.1, 0.1]), 1.0, 0.5).shape == (2,)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["real", "complex"])
def test_zero_gradient_lands_on_the_manifold(dtype, gen):
    """With G = 0 the step is pure attraction: N(X) = ||X X^H - I||^2 / 4 decreases at
    every step (each eigenvalue delta of X X^H - I becomes about delta / 2 at eta = 1/4),
    down to round-off."""
    X = _near_unitary(10, dtype, gen, size=0.45)
    N = [_dist(_np(X)) ** 2 / 4]
    assert N[0] == pytest.approx(0.45**2 / 4, rel=1e-12)
    for _ in range(60):
        landing_step(X, torch.zeros_like(X), 0.25)
        N.append(_dist(_np(X)) ** 2 / 4)
    assert all(b < 0.8 * a for a, b in zip(N, N[1:], strict=False) if a > 1e-24)
    assert N[-1] < 1e-27


# ---------------------------------------------------------------- optimizers


def _param(X):
    return torch.nn.Parameter(X.clone())


@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
def test_sgd_without_momentum_is_the_functional_step(dtype, gen):
    X = _near_unitary(6, dtype, gen)
    G = torch.randn(6, 6, dtype=dtype, generator=gen)
    p = _param(X)
    p.grad = G.clone()
    LandingSGD([p], lr=0.2, lam=0.5, tolerance=0.3).step()
    landing_step(X, G, 0.2, lam=0.5, eps=0.3)
    torch.testing.assert_close(p.detach(), X, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_direction(dtype, nesterov, gen):
    """B_1 = G_1, B_t = mu B_(t-1) + G_t; the direction is B (or G + mu B, Nesterov)."""
    X = haar(5, dtype, generator=gen)
    p = _param(X)
    opt = LandingSGD([p], lr=0.05, momentum=0.9, nesterov=nesterov)
    ref, buf = _np(X), None
    for _ in range(3):
        G = torch.randn(5, 5, dtype=dtype, generator=gen)
        p.grad = G.clone()
        opt.step()
        g = _np(G)
        buf = g.copy() if buf is None else 0.9 * buf + g
        ref = ref_landing(ref, g + 0.9 * buf if nesterov else buf, 0.05)
    np.testing.assert_allclose(_np(p), ref, atol=1e-13, rtol=0)


@pytest.mark.parametrize("dtype", DOUBLE, ids=["real", "complex"])
def test_adam_and_rmsprop_directions(dtype, gen):
    """The moments are those of the Euclidean gradient, with |G|^2 the squared modulus
    per entry; the landing step then takes D in place of G."""
    X = haar(4, dtype, generator=gen)
    p, q = _param(X), _param(X)
    adam = LandingAdam([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    rms = LandingRMSprop([q], lr=0.01, alpha=0.9, eps=1e-6)
    ra, rr = _np(X), _np(X)
    m = v = w = 0
    for t in range(1, 4):
        G = torch.randn(4, 4, dtype=dtype, generator=gen)
        p.grad, q.grad = G.clone(), G.clone()
        adam.step()
        rms.step()
        g = _np(G)
        m = 0.8 * m + 0.2 * g
        v = 0.95 * v + 0.05 * np.abs(g) ** 2
        w = 0.9 * w + 0.1 * np.abs(g) ** 2
        ra = ref_landing(ra, (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.95**t)) + 1e-6), 0.01)
        rr = ref_landing(rr, g / (np.sqrt(w) + 1e-6), 0.01)
    np.testing.assert_allclose(_np(p), ra, atol=1e-13, rtol=0)
    np.testing.assert_allclose(_np(q), rr, atol=1e-13, rtol=0)
    assert adam.state[p]["exp_avg_sq"].dtype == torch.float64  # real even for complex


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_is_skipped_and_counted(name, bad, gen):
    m = Landing(6, torch.float64)
    opt = m.optimizer(name, lr=0.05)
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    m(x).sum().backward()
    opt.step()  # a good step first, so the moments exist
    state = {k: v.clone() for k, v in opt.state[m.weight].items() if torch.is_tensor(v)}
    before = m.weight.detach().clone()
    m.weight.grad[2, 3] = bad
    opt.step()
    assert torch.equal(m.weight.detach(), before)
    for k, v in state.items():
        assert torch.equal(opt.state[m.weight][k], v)
    assert opt.skipped_steps == 1
    m.weight.grad = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    opt.step()
    assert not torch.equal(m.weight.detach(), before) and opt.skipped_steps == 1


def test_overflowing_update_is_skipped_not_written():
    p = torch.nn.Parameter(torch.eye(3) * 1e30)  # X X^H overflows float32
    p.grad = torch.ones(3, 3)
    opt = LandingSGD([p], lr=0.1)
    opt.step()
    assert torch.equal(p.detach(), torch.eye(3) * 1e30) and opt.skipped_steps == 1


# ---------------------------------------------------------------- the layer


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", [2, 16])
def test_layer_protocol(dtype, n, gen):
    m = Landing(n, dtype)
    W = m.matrix()
    assert W.shape == (n, n) and W.dtype == dtype
    assert unitarity_error(W) < (1e-5 if dtype in (torch.float32, torch.complex64) else 1e-13)
    x = torch.randn(3, 5, n, dtype=dtype, generator=gen)
    torch.testing.assert_close(m(x), x @ W.mT, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_training_fits_and_stays_within_eps(dtype, name, gen):
    n = 12
    m = Landing(n, dtype, eps=0.3)
    T = haar(n, dtype, generator=gen)
    x = torch.randn(32, n, dtype=dtype, generator=gen)
    target = x @ T.mT
    opt = m.optimizer(name, lr=0.02, **({"momentum": 0.9} if name == "sgd" else {}))

    def loss():
        return (m(x) - target).abs().pow(2).mean()

    with torch.no_grad():
        loss0 = float(loss())
    worst = 0.0
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
        worst = max(worst, m.distance())
    with torch.no_grad():
        assert float(loss()) < 0.5 * loss0
    slack = 1 + (1e-5 if dtype in (torch.float32, torch.complex64) else 1e-12)
    assert 0 < worst <= 0.3 / math.sqrt(n) * slack
    assert m.distance() == unitarity_error(m.weight)
    assert opt.skipped_steps == 0


def test_layer_options_and_registry():
    assert PEER_METHODS["landing"] is Landing and PEER_UPDATES["landing"] is landing_step
    assert PEER_CONV_LAYERS["landing"] is LandingConv2d
    m = Landing(4, init="identity", lam=2.0, eps=0.1)
    assert torch.equal(m.matrix(), torch.eye(4)) and m.distance() == 0.0
    opt = m.optimizer("adam", lr=0.1)
    assert opt.param_groups[0]["lam"] == 2.0 and opt.param_groups[0]["tolerance"] == 0.1
    opt = m.optimizer("sgd", lr=0.1, lam=3.0, tolerance=0.2)
    assert opt.param_groups[0]["lam"] == 3.0 and opt.param_groups[0]["tolerance"] == 0.2
    assert isinstance(m.optimizer("RMSprop", lr=0.1), LandingRMSprop)
    assert landing_distance(2 * torch.eye(3, dtype=torch.complex64)) == pytest.approx(3.0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"optimizer name must be one of .*'lbfgs'"):
        Landing(4).optimizer("lbfgs", lr=0.1)
    for lam in (0, -1.0, math.inf, True, "1"):
        with pytest.raises(ValueError, match="lam .* must be a positive number"):
            Landing(4, lam=lam)
    for eps in (0, 1, 1.5, -0.1, None):
        with pytest.raises(ValueError, match=r"eps .* must be a number in \(0, 1\)"):
            Landing(4, eps=eps)
    with pytest.raises(ValueError, match="init must be one of"):
        Landing(4, init="random")
    with pytest.raises(ValueError, match=r"\bn must be an integer >= 2"):
        Landing(1)
    with pytest.raises(TypeError, match="supported dtypes are"):
        Landing(4, torch.float16)
    A = torch.eye(3)
    for lr in (-0.1, math.nan):
        with pytest.raises(ValueError, match="lr must be a number >= 0"):
            landing_step(A, torch.zeros(3, 3), lr)
    with pytest.raises(ValueError, match="G must have A's shape"):
        landing_step(A, torch.zeros(3, 4), 0.1)
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., N, N\)"):
        landing_step(torch.zeros(3, 4), torch.zeros(3, 4), 0.1)
    with pytest.raises(ValueError, match=r"a landing parameter must have shape \(\.\.\., N, N\)"):
        make_landing_optimizer("sgd", [torch.nn.Parameter(torch.zeros(2, 3))], 0.1)
    with pytest.raises(ValueError, match="nesterov"):
        LandingSGD([torch.nn.Parameter(torch.eye(2))], nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        LandingAdam([torch.nn.Parameter(torch.eye(2))], betas=(1.0, 0.9))


# ---------------------------------------------------------------- the convolution


@pytest.mark.parametrize("height,width", [(4, 4), (5, 6), (2, 2)])
def test_conv_is_a_real_circular_convolution_near_orthogonal(height, width, gen):
    conv = LandingConv2d(3, height, width, dtype=torch.float64, eps=0.2)
    assert conv.distance() < 1e-14
    opt = conv.optimizer("adam", lr=0.05)
    x = torch.randn(4, 3, height, width, dtype=torch.float64, generator=gen)
    target = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    losses, worst = [], 0.0
    for _ in range(30):
        opt.zero_grad()
        loss = (conv(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        worst = max(worst, conv.distance())
    assert losses[-1] < losses[0]
    assert 0 < worst <= 0.2 / math.sqrt(3) * (1 + 1e-12)
    assert orthogonality_error(conv.matrix()) <= 0.2
    assert conv.weight_real.dtype == torch.float64 and conv.weight.dtype == torch.complex128
    y = conv(x)
    np.testing.assert_allclose(
        y.detach().numpy(), direct_circular_conv(spatial_kernel(conv), x.numpy()), atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_step_is_the_batched_functional_step(dtype, gen):
    conv = LandingConv2d(4, 6, 5, dtype=dtype, generator=gen)
    real, free = conv.weight_real.detach().clone(), conv.weight.detach().clone()
    opt = conv.optimizer("sgd", lr=0.3)
    x = torch.randn(2, 4, 6, 5, dtype=dtype, generator=gen)
    conv(x).pow(3).sum().backward()
    g_real, g_free = conv.weight_real.grad.clone(), conv.weight.grad.clone()
    opt.step()
    landing_step(real, g_real, 0.3)
    landing_step(free, g_free, 0.3)
    torch.testing.assert_close(conv.weight_real.detach(), real, atol=0, rtol=0)
    torch.testing.assert_close(conv.weight.detach(), free, atol=0, rtol=0)


def test_conv_bad_options():
    with pytest.raises(ValueError, match="lam"):
        LandingConv2d(2, 4, 4, lam=-1)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        LandingConv2d(2, 4, 4, dtype=COMPLEX[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
def test_landing_as_the_recurrent_matrix_of_a_unitary_rnn(dtype, gen):
    from baselines import unitary_rnn

    rnn = unitary_rnn(Landing, 2, 8, 3, dtype=dtype, eps=0.2)
    x = torch.randn(4, 6, 2, generator=gen)
    y = torch.randn(4, 6, 3, generator=gen)
    opt = rnn.optimizer("rmsprop", lr=1e-2, recurrent_lr=1e-2)
    losses = rnn_losses(rnn, opt, x, y, steps=20)
    assert losses[-1] < losses[0]
    assert 0 < rnn.cell.recurrent.distance() <= 0.2 / math.sqrt(8) * (1 + 1e-5)
