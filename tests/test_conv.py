"""OrthogonalConv2d: layout, norm preservation, equality with a direct circular convolution,
conjugate symmetry, the projUNN optimizer on frequency batches, and bad input."""

import numpy as np
import pytest
import scipy.linalg
import torch
from conv_helpers import direct_circular_conv, relative_norm_error, spatial_kernel, train

import projunn_core as pc
from projunn_core.conv import FrequencyLayout, orthogonality_error

pytestmark = pytest.mark.usefixtures("one_thread")

# even/odd heights and widths, and the degenerate grids with no free complex matrix
SHAPES = [(4, 4), (5, 6), (6, 5), (3, 3), (2, 2), (1, 4), (8, 1)]
TOL = {torch.float32: 2e-6, torch.float64: 1e-13}


@pytest.mark.parametrize("height,width", SHAPES)
def test_layout_counts_the_degrees_of_freedom_of_a_real_kernel(height, width):
    lay = FrequencyLayout(height, width)
    assert lay.n_real + 2 * lay.n_complex == height * width
    assert lay.n_real == (1 + (height % 2 == 0)) * (1 + (width % 2 == 0))
    # the spectrum of a real kernel survives split -> assemble unchanged
    spec = torch.fft.rfft2(torch.randn(2, 3, height, width, dtype=torch.float64))
    spec = spec.permute(2, 3, 0, 1)
    real, free = lay.split(spec)
    torch.testing.assert_close(lay.assemble(real, free), spec, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", ["T", "D"])
@pytest.mark.parametrize("height,width", SHAPES)
def test_norm_preserved_before_and_after_training(height, width, variant, dtype, gen):
    conv = pc.nn.OrthogonalConv2d(4, height, width, dtype=dtype, rank=2, variant=variant)
    x = torch.randn(16, 4, height, width, dtype=dtype, generator=gen)
    assert relative_norm_error(conv, x) < TOL[dtype]
    opt = train(conv, 6)
    assert opt.skipped_steps == 0
    assert relative_norm_error(conv, x) < TOL[dtype]
    assert orthogonality_error(conv.matrix()) < TOL[dtype]
    # and an input unrelated to the training data
    x = torch.randn(3, 4, height, width, dtype=dtype, generator=gen) * 1e3
    assert relative_norm_error(conv, x) < TOL[dtype]


@pytest.mark.parametrize("height,width", [(4, 4), (5, 6), (3, 2)])
@pytest.mark.parametrize("trained", [False, True])
def test_equals_direct_circular_convolution_by_its_kernel(height, width, trained, gen):
    conv = pc.nn.OrthogonalConv2d(3, height, width, dtype=torch.float64, variant="D", rank=2)
    if trained:
        train(conv, 5)
    K = spatial_kernel(conv)
    x = torch.randn(2, 3, height, width, dtype=torch.float64, generator=gen)
    expected = direct_circular_conv(K, x.numpy())
    np.testing.assert_allclose(conv(x).detach().numpy(), expected, rtol=0, atol=1e-13)


def test_identity_init_is_the_identity_map(gen):
    conv = pc.nn.OrthogonalConv2d(3, 5, 4, dtype=torch.float64, init="identity")
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(conv(x), x, rtol=0, atol=1e-14)
    assert conv(x[0]).shape == (3, 5, 4)  # an unbatched input


@pytest.mark.parametrize("height,width", [(4, 6), (5, 5), (6, 3)])
def test_conjugate_symmetry_holds_through_training(height, width):
    conv = pc.nn.OrthogonalConv2d(3, height, width, rank=1)
    for steps in (0, 4):
        train(conv, steps)
        M = conv.matrix().detach()
        assert conv.weight_real.dtype == torch.float32  # real frequencies stay real
        for v in {0, width // 2} if width % 2 == 0 else {0}:
            for u in range(height):
                assert torch.equal(M[(-u) % height, v], M[u, v].conj().resolve_conj())
        for u, v in conv.layout.real_positions:
            assert torch.count_nonzero(M[u, v].imag) == 0
        assert orthogonality_error(conv.weight_real) < 2e-6


def test_projunn_step_on_every_frequency_matches_the_exact_reference():
    """rank = C with the exact low-rank method: each free matrix takes the Riemannian step
    A expm(-lr skew(A^H G)) of its own gradient (float64 SciPy reference)."""
    conv = pc.nn.OrthogonalConv2d(3, 4, 5, dtype=torch.float64, rank=3, approx="exact")
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    conv(x).sin().sum().backward()
    before = [p.detach().clone().numpy() for p in conv.free_matrices()]
    grads = [p.grad.numpy() for p in conv.free_matrices()]
    conv.optimizer("sgd", lr=0.05).step()
    for p, A0, G in zip(conv.free_matrices(), before, grads, strict=True):
        for A, g, new in zip(A0, G, p.detach().numpy(), strict=True):
            X = A.conj().T @ (-0.05 * g)
            ref = A @ scipy.linalg.expm((X - X.conj().T) / 2)
            np.testing.assert_allclose(new, ref, rtol=0, atol=1e-13)


def test_pc_optim_recognises_the_frequency_batches():
    conv = pc.nn.OrthogonalConv2d(4, 6, 6, rank=2)
    opt = pc.optim.RMSprop(conv.parameters(), lr=1e-2)
    assert [g["unitary"] for g in opt.param_groups] == [True]
    conv(torch.randn(2, 4, 6, 6)).square().sum().backward()
    opt.step()
    assert orthogonality_error(conv.matrix()) < 2e-6


def test_bad_shapes_and_options_give_clear_errors():
    conv = pc.nn.OrthogonalConv2d(3, 4, 5)
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 3, 4, 5\)"):
        conv(torch.randn(2, 3, 5, 4))
    with pytest.raises(ValueError, match="input must have shape"):
        conv(torch.randn(2, 4, 4, 5))
    with pytest.raises(ValueError, match="input must have shape"):
        conv(torch.randn(3, 20))
    with pytest.raises(TypeError, match="layer computes in torch.float32"):
        conv(torch.randn(2, 3, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        pc.nn.OrthogonalConv2d(0, 4, 4)
    with pytest.raises(ValueError, match="height must be an integer >= 1"):
        pc.nn.OrthogonalConv2d(2, 4.0, 4)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        pc.nn.OrthogonalConv2d(2, 4, 4, dtype=torch.complex64)
    with pytest.raises(ValueError, match="rank must satisfy"):
        pc.nn.OrthogonalConv2d(2, 4, 4, rank=3)
    with pytest.raises(ValueError, match="variant must be one of"):
        pc.nn.OrthogonalConv2d(2, 4, 4, variant="X")
    with pytest.raises(ValueError, match="init must be one of"):
        pc.nn.OrthogonalConv2d(2, 4, 4, init="henaff")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ["T", "D"])
def test_on_cuda_matches_the_cpu_layer_and_stays_orthogonal(variant):
    conv = pc.nn.OrthogonalConv2d(8, 6, 8, dtype=torch.float64, rank=2, variant=variant)
    x = torch.randn(4, 8, 6, 8, dtype=torch.float64)
    gpu = pc.nn.OrthogonalConv2d(8, 6, 8, dtype=torch.float64, device="cuda", variant=variant)
    gpu.load_state_dict(conv.state_dict())
    torch.testing.assert_close(gpu(x.cuda()).cpu(), conv(x), rtol=0, atol=1e-12)
    train(gpu, 5)
    assert orthogonality_error(gpu.matrix()) < 1e-12
    assert relative_norm_error(gpu, x.cuda()) < 1e-12
