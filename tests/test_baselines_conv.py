"""The baseline orthogonal convolutions: same interface, orthogonality (or its measured
absence), agreement with independent float64 references, and bad options."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from conv_helpers import direct_circular_conv, relative_norm_error, spatial_kernel, train

import baselines
from baselines.conv import correlation_spectrum
from projunn_core.conv import orthogonality_error

pytestmark = pytest.mark.usefixtures("one_thread")

ORTHOGONAL = ["cayley", "expm", "svd"]


def soc_truncation_error(norm: float, terms: int) -> float:
    """|sum_{j <= terms} (i norm)^j / j!| - 1: the error at an eigenvalue i norm of L."""
    return abs(sum((1j * norm) ** j / math.factorial(j) for j in range(terms + 1))) - 1


@pytest.mark.parametrize("name", sorted(baselines.CONV_LAYERS))
@pytest.mark.parametrize("height,width", [(4, 4), (5, 6), (3, 3)])
def test_same_interface_and_a_real_circular_convolution(name, height, width, gen):
    conv = baselines.CONV_LAYERS[name](3, height, width, dtype=torch.float64)
    train(conv, 3)
    assert conv.matrix().shape == (height, width // 2 + 1, 3, 3)
    x = torch.randn(2, 3, height, width, dtype=torch.float64, generator=gen)
    y = conv(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    # forward (spatial for SOC, spectral for the others) is the circular convolution by the
    # real kernel that matrix() describes: checks matrix() and conjugate symmetry at once
    np.testing.assert_allclose(
        y.detach().numpy(), direct_circular_conv(spatial_kernel(conv), x.numpy()), atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ORTHOGONAL)
def test_orthogonal_baselines_preserve_norms_through_training(name, dtype, gen):
    conv = baselines.CONV_LAYERS[name](4, 6, 5, dtype=dtype)
    x = torch.randn(8, 4, 6, 5, dtype=dtype, generator=gen)
    tol = 5e-6 if dtype == torch.float32 else 1e-12
    assert relative_norm_error(conv, x) < tol
    train(conv, 5)
    assert relative_norm_error(conv, x) < tol
    assert orthogonality_error(conv.matrix()) < tol


def test_soc_leaves_a_truncation_error_that_is_measured(gen):
    conv = baselines.SOCConv2d(4, 8, 8, dtype=torch.float64, generator=gen)
    train(conv, 5, lr=1e-3)  # small steps: the power iteration keeps ||L|| at 0.7
    x = torch.randn(8, 4, 8, 8, dtype=torch.float64, generator=gen)
    # training mode, 5 terms: the error is |sum_{j<=5} (i r)^j / j!| - 1 at the largest
    # eigenvalue i r of L, with r = ||L|| held near 0.7 (one power iteration per step
    # lags the small steps by up to 0.4 % over 150 draws: 1.02x the error at 0.7)
    with torch.no_grad():
        L = correlation_spectrum(conv.normalized_kernel(), 8, 8)
        norm = torch.linalg.matrix_norm(L, ord=2).max().item()
    assert 0.7 * (1 - 1e-9) < norm < 0.71
    err = orthogonality_error(conv.matrix())
    assert err == pytest.approx(soc_truncation_error(norm, 5), rel=1e-6)
    assert relative_norm_error(conv, x) <= err * (1 + 1e-9)
    conv.eval()  # 12 terms: the error drops to round-off
    assert orthogonality_error(conv.matrix()) < 1e-10
    assert relative_norm_error(conv, x) < 1e-10


def test_soc_error_grows_when_its_norm_estimate_lags():
    """Large steps outrun one power iteration per step: ||L|| exceeds 0.7 and the
    truncation error grows past its design value; the metric shows it."""
    conv = baselines.SOCConv2d(
        4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    train(conv, 5, lr=5e-2)
    with torch.no_grad():
        L = correlation_spectrum(conv.normalized_kernel(), 8, 8)
        norm = torch.linalg.matrix_norm(L, ord=2).max().item()
    assert norm > 0.75
    err = orthogonality_error(conv.matrix())
    assert err == pytest.approx(soc_truncation_error(norm, 5), rel=0.2)
    assert err > 1.5 * soc_truncation_error(0.7, 5)


def test_soc_power_iteration_estimates_the_spectral_norm(gen):
    conv = baselines.SOCConv2d(3, 6, 6, dtype=torch.float64, init_iters=500, generator=gen)
    with torch.no_grad():
        L = correlation_spectrum(conv.normalized_kernel(), 6, 6)
        torch.testing.assert_close(L, -L.mH)  # skew-adjoint
        norm = torch.linalg.matrix_norm(L, ord=2).max().item()
    assert norm == pytest.approx(conv.correction, rel=1e-3)  # to the spectral gap


def test_correlation_spectrum_matches_the_dft_sum(gen):
    K = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=gen)
    H, W = 5, 4
    ref = np.zeros((H, W // 2 + 1, 2, 3), dtype=np.complex128)
    for u in range(H):
        for v in range(W // 2 + 1):
            for p in range(3):
                for q in range(3):  # y[i, j] = sum K[p, q] x[i + p - 1, j + q - 1]
                    phase = np.exp(2j * np.pi * (u * (p - 1) / H + v * (q - 1) / W))
                    ref[u, v] += K[:, :, p, q].numpy() * phase
    np.testing.assert_allclose(correlation_spectrum(K, H, W).numpy(), ref, atol=1e-13)


def test_cayley_is_the_papers_transform_of_the_kernel_spectrum():
    conv = baselines.CayleyConv2d(3, 4, 6, dtype=torch.float64)
    S = correlation_spectrum(conv.weight, 4, 6).detach().numpy()
    S = conv.alpha.item() * S / np.linalg.norm(S)
    M = conv.matrix().detach().numpy()
    eye = np.eye(3)
    for idx in np.ndindex(S.shape[:2]):
        A = S[idx] - S[idx].conj().T
        np.testing.assert_allclose(M[idx], np.linalg.solve(eye + A, eye - A), atol=1e-13)


def test_svd_step_is_the_polar_factor_of_the_plain_step():
    conv = baselines.SVDConv2d(3, 4, 4, dtype=torch.float64)
    conv(torch.randn(2, 3, 4, 4, dtype=torch.float64)).sin().sum().backward()
    expected = [
        np.stack([scipy.linalg.polar(a)[0] for a in (p - 0.1 * p.grad).detach().numpy()])
        for p in conv.free_matrices()
    ]
    conv.optimizer("sgd", lr=0.1).step()
    for p, ref in zip(conv.free_matrices(), expected, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), ref, atol=1e-13)


def test_expm_starts_at_its_base_and_unconstrained_drifts():
    expm = baselines.ExpmConv2d(3, 4, 4, init="identity")
    eye = torch.eye(3, dtype=torch.complex64).expand(4, 3, 3, 3)
    torch.testing.assert_close(expm.matrix(), eye)
    free = baselines.UnconstrainedConv2d(3, 4, 4)
    train(free, 20, lr=0.1)
    assert orthogonality_error(free.matrix()) > 1e-2


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="kernel_size must be an odd positive int"):
        baselines.CayleyConv2d(2, 4, 4, kernel_size=2)
    with pytest.raises(ValueError, match="does not fit the 4 x 4 grid"):
        baselines.SOCConv2d(2, 4, 4, kernel_size=5)
    with pytest.raises(ValueError, match="train_terms must be an integer >= 1"):
        baselines.SOCConv2d(2, 4, 4, train_terms=0)
    with pytest.raises(ValueError, match="init must be one of"):
        baselines.ExpmConv2d(2, 4, 4, init="henaff")
    with pytest.raises(ValueError, match="input must have shape"):
        baselines.SOCConv2d(2, 4, 4)(torch.randn(1, 3, 4, 4))
