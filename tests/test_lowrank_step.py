"""Low-rank approximations and the full projunn_step."""

import inspect

import numpy as np
import pytest
import scipy.linalg
import torch
from helpers import ALL_DTYPES, DOUBLE, haar, max_abs, randn, ref_expm_step, ref_polar_step

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")


def low_rank_matrix(n, r, dtype, gen, batch=()):
    return randn(*batch, n, r, dtype=dtype, generator=gen) @ randn(
        *batch, r, n, dtype=dtype, generator=gen
    )


@pytest.mark.parametrize("method", pc.LOWRANK_METHODS)
@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("r,k", [(1, 1), (2, 4), (4, 4)])
def test_exact_when_rank_at_most_k(method, dtype, r, k, gen):
    G = low_rank_matrix(20, r, dtype, gen, batch=(2,))
    a, b = pc.lowrank(G, k, method, generator=gen)
    assert a.shape == (2, 20, k) and b.shape == (2, 20, k)
    assert a.dtype == b.dtype == dtype
    assert max_abs(a @ b.mH, G) < 1e-10 * max(1.0, float(G.abs().max()))


@pytest.mark.parametrize("method", pc.LOWRANK_METHODS)
def test_rectangular(method, gen):
    G = randn(12, 3, generator=gen) @ randn(3, 7, generator=gen)
    a, b = pc.lowrank(G, 3, method, generator=gen)
    assert a.shape == (12, 3) and b.shape == (7, 3)
    assert max_abs(a @ b.mH, G) < 1e-10


def test_exact_is_best_and_randomized_close(gen):
    G = randn(40, 40, generator=gen)
    s = np.linalg.svd(G.numpy(), compute_uv=False)
    best = np.sqrt((s[6:] ** 2).sum())
    errors = {}
    for method in pc.LOWRANK_METHODS:
        a, b = pc.lowrank(G, 6, method, generator=gen, oversample=4)
        errors[method] = float(torch.linalg.matrix_norm(G - a @ b.mH))
    assert errors["exact"] == pytest.approx(best, rel=1e-10)
    assert best <= errors["range"] < 1.6 * best
    assert best <= errors["column"] < 1.6 * best


def test_column_sampling_keeps_the_top_directions(gen):
    # One dominant direction plus small noise: with oversampling, k=1 must find it.
    u, v = randn(30, 1, generator=gen), randn(30, 1, generator=gen)
    u, v = u / u.norm(), v / v.norm()
    G = 100 * u @ v.T + 0.01 * randn(30, 30, generator=gen)
    a, _ = pc.lowrank(G, 1, "column", oversample=8, generator=gen)
    assert abs(float(a[:, 0] @ u[:, 0])) > 0.999


def test_generator_makes_it_reproducible():
    G = torch.randn(16, 16)
    for method in ("range", "column"):
        x = pc.lowrank(G, 3, method, generator=torch.Generator().manual_seed(5))
        y = pc.lowrank(G, 3, method, generator=torch.Generator().manual_seed(5))
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


def test_zero_gradient_gives_zero_update():
    for method in pc.LOWRANK_METHODS:
        a, b = pc.lowrank(torch.zeros(6, 6), 2, method)
        assert torch.count_nonzero(a @ b.mH) == 0


def test_power_iterations_do_not_hurt(gen):
    G = randn(50, 50, generator=gen)
    a, b = pc.lowrank(G, 5, "range", generator=gen, power_iters=2)
    s = np.linalg.svd(G.numpy(), compute_uv=False)
    assert float(torch.linalg.matrix_norm(G - a @ b.mH)) < 1.15 * np.sqrt((s[5:] ** 2).sum())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"k": 0}, ValueError, "k must satisfy"),
        ({"k": 9}, ValueError, "k must satisfy"),
        ({"k": 1.5}, TypeError, "k must be an int"),
        ({"k": 2, "method": "svd"}, ValueError, "method must be one of"),
        ({"k": 2, "oversample": 0.5}, ValueError, "oversample"),
        ({"k": 2, "power_iters": -1}, ValueError, "power_iters"),
    ],
)
def test_lowrank_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        pc.lowrank(torch.ones(8, 8), **kwargs)


def test_lowrank_bad_tensor():
    with pytest.raises(TypeError, match="G has dtype"):
        pc.lowrank(torch.ones(4, 4, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="G must have shape"):
        pc.lowrank(torch.ones(4), 1)
    for method in ("column", "exact"):
        with pytest.raises(ValueError, match="G contains non-finite"):
            pc.lowrank(torch.full((4, 4), float("nan")), 1, method)


# ---------------------------------------------------------------- projunn_step


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("approx", pc.LOWRANK_METHODS)
@pytest.mark.parametrize("dtype", DOUBLE)
def test_step_exact_when_gradient_rank_at_most_k(variant, approx, dtype, gen):
    n, k, lr = 24, 3, 0.05
    A = haar(n, dtype, batch=(2,), generator=gen)
    G = low_rank_matrix(n, 2, dtype, gen, batch=(2,))
    reference = {"T": ref_expm_step, "D": ref_polar_step}[variant]
    eye = torch.eye(n, dtype=dtype).expand(2, n, n)
    expected = reference(A, -lr * G, eye)  # a b^H = -lr G
    pc.projunn_step(A, G, lr, rank=k, variant=variant, approx=approx, generator=gen)
    assert max_abs(A, expected) < 1e-8
    assert pc.unitarity_error(A) < 1e-13


def test_step_t_is_a_riemannian_gradient_step(gen):
    # For a small lr, projUNN-T with the full gradient moves along -A skew(A^H G).
    n, lr = 10, 1e-6
    A0 = haar(n, generator=gen)
    G = randn(n, n, generator=gen)
    A = pc.projunn_step(A0.clone(), G, lr, rank=n, approx="exact")
    X = A0.T @ G
    direction = -A0 @ (X - X.T) / 2
    assert max_abs((A - A0) / lr, direction) < 1e-5


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_step_every_dtype(dtype, gen):
    A = haar(16, dtype, generator=gen)
    G = torch.randn(16, 16, dtype=dtype)
    for variant in "TD":
        pc.projunn_step(A, G, 1e-2, rank=4, variant=variant, generator=gen)
    assert A.dtype == dtype
    tol = 1e-5 if dtype in (torch.float32, torch.complex64) else 1e-13
    assert pc.unitarity_error(A) < tol


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"rank": 0}, ValueError, "rank must satisfy"),
        ({"rank": 7}, ValueError, "rank must satisfy"),
        ({"variant": "X"}, ValueError, "variant must be one of"),
        ({"approx": "qr"}, ValueError, "approx must be one of"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite"),
        ({"lr": "0.1"}, ValueError, "lr must be a finite"),
        ({"G": torch.ones(6, 5, dtype=torch.float64)}, ValueError, "G must have"),
        ({"G": torch.ones(6, 6, dtype=torch.float32)}, TypeError, "G has dtype"),
        ({"G": torch.full((6, 6), float("nan"), dtype=torch.float64)}, ValueError, "non-finite"),
        ({"G": torch.full((6, 6), float("inf"), dtype=torch.float64)}, ValueError, "non-finite"),
    ],
)
def test_step_bad_input_leaves_A_untouched(kwargs, error, match, gen):
    A = haar(6, generator=gen)
    before = A.clone()
    args = {"G": randn(6, 6, generator=gen), "lr": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        pc.projunn_step(A, args.pop("G"), args.pop("lr"), **args)
    assert torch.equal(A, before)


@pytest.mark.parametrize("approx", pc.LOWRANK_METHODS)
def test_step_single_non_finite_entry_detected(approx, gen):
    A = haar(32, torch.float32, generator=gen)
    before = A.clone()
    for bad in (float("nan"), float("inf"), -float("inf")):
        G = torch.randn(32, 32)
        i, j = torch.randint(0, 32, (2,), generator=gen).tolist()
        G[i, j] = bad
        with pytest.raises(ValueError, match="non-finite"):
            pc.projunn_step(A, G, 1e-2, rank=2, approx=approx, generator=gen)
        assert torch.equal(A, before)


def test_unitarity_error_matches_definition(gen):
    W = randn(7, 7, generator=gen)
    expected = np.linalg.norm(W.numpy().T @ W.numpy() - np.eye(7)) / np.sqrt(7)
    assert pc.unitarity_error(W) == pytest.approx(expected, rel=1e-12)
    assert scipy.linalg.norm(np.eye(3)) > 0  # SciPy present for the references


def test_lsi_is_the_historical_name_of_range(gen):
    assert "lsi" not in pc.LOWRANK_METHODS
    assert inspect.signature(pc.lowrank).parameters["method"].default == "range"
    G = randn(12, 12, generator=gen)
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    x = pc.lowrank(G, 3, "lsi", generator=torch.Generator().manual_seed(seed))
    y = pc.lowrank(G, 3, "range", generator=torch.Generator().manual_seed(seed))
    assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    # the range finder's a spans the sketched column space: a a^H G = a b^H
    assert max_abs(x[0] @ (x[0].mH @ G), x[0] @ x[1].mH) < 1e-12
    A = haar(12, generator=gen)
    pc.projunn_step(A, G, 0.1, rank=3, approx="lsi", generator=gen)
    assert pc.unitarity_error(A) < 1e-13


def test_empty_or_meta_G_is_named():
    with pytest.raises(ValueError, match=r"G is empty \(shape \(3, 0\)\)"):
        pc.lowrank(torch.zeros(3, 0), 1)
    with pytest.raises(ValueError, match="G is a meta tensor"):
        pc.lowrank(torch.ones(4, 4, device="meta"), 1, "column")


@pytest.mark.parametrize("approx", pc.LOWRANK_METHODS)
def test_huge_finite_gradient_is_not_called_non_finite(approx, gen):
    A = haar(8, torch.float32, generator=gen)
    before = A.clone()
    G = 1e38 * torch.randn(8, 8, generator=gen).sign()  # finite, but sums of it overflow
    with pytest.raises(ValueError) as info:
        pc.projunn_step(A, G, 1e-2, rank=2, approx=approx, generator=gen)
    message = str(info.value)
    assert "non-finite" not in message and torch.equal(A, before)
    if approx == "column":  # a = orthonormal columns, b = G^H a ~ 1e38 stays finite
        assert "the update rotates by up to" in message
    else:
        assert "factors of -lr * G overflowed torch.float32 (largest |G| = 1e+38" in message
