"""projunn_t / projunn_d against SciPy float64 references, and their input checks."""

import pytest
import torch
from helpers import ALL_DTYPES, DOUBLE, haar, max_abs, randn, ref_expm_step, ref_polar_step

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")

KERNELS = {"T": (pc.projunn_t, ref_expm_step), "D": (pc.projunn_d, ref_polar_step)}


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("n,k", [(2, 1), (8, 1), (16, 3), (12, 6), (7, 5), (9, 9), (64, 4)])
def test_matches_scipy_reference(variant, dtype, n, k, gen):
    kernel, reference = KERNELS[variant]
    A = haar(n, dtype, generator=gen)
    a, b = 0.3 * randn(n, k, dtype=dtype, generator=gen), randn(n, k, dtype=dtype, generator=gen)
    expected = reference(A, a, b)
    out = kernel(A, a, b)
    assert out is A
    assert max_abs(A, expected) < 1e-10
    assert pc.unitarity_error(A) < 1e-13


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
def test_batched(variant, dtype, gen):
    kernel, reference = KERNELS[variant]
    A = haar(10, dtype, batch=(2, 3), generator=gen)
    a = 0.5 * randn(2, 3, 10, 2, dtype=dtype, generator=gen)
    b = randn(2, 3, 10, 2, dtype=dtype, generator=gen)
    expected = reference(A, a, b)
    kernel(A, a, b)
    assert max_abs(A, expected) < 1e-10


@pytest.mark.parametrize("variant", "TD")
def test_non_contiguous_batch_falls_back(variant, gen):
    kernel, reference = KERNELS[variant]
    A = haar(6, torch.float64, batch=(3, 2), generator=gen).transpose(0, 1)  # not viewable
    a, b = randn(2, 3, 6, 1, generator=gen), randn(2, 3, 6, 1, generator=gen)
    expected = reference(A, a, b)
    kernel(A, a, b)
    assert max_abs(A, expected) < 1e-10


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", (torch.float32, torch.complex64))
def test_single_precision(variant, dtype, gen):
    kernel, reference = KERNELS[variant]
    A = haar(64, dtype, generator=gen)
    a, b = 0.1 * torch.randn(64, 4, dtype=dtype), torch.randn(64, 4, dtype=dtype)
    expected = reference(A, a, b)
    kernel(A, a, b)
    assert A.dtype == dtype
    assert max_abs(A, expected) < 1e-5
    assert pc.unitarity_error(A) < 1e-6


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
def test_degenerate_inputs_stay_exact(variant, dtype, gen):
    kernel, reference = KERNELS[variant]
    n, k = 12, 3
    A0 = haar(n, dtype, generator=gen)
    b = randn(n, k, dtype=dtype, generator=gen)
    zero = torch.zeros(n, k, dtype=dtype)
    cases = {
        "a = 0": (zero, b),
        "b = 0": (b, zero),
        "b parallel to A^H a": (A0 @ b, 0.7 * b),
        "rank-1 a and b": (b[:, :1].expand(n, k) * 0.2, b[:, :1].expand(n, k)),
    }
    for name, (a, bb) in cases.items():
        A = A0.clone()
        kernel(A, a, bb)
        assert max_abs(A, reference(A0, a, bb)) < 1e-10, name
        assert pc.unitarity_error(A) < 1e-13, name


def test_d_handles_singular_update(gen):
    # A + a b^H singular: the closest unitary is not unique, but the result must be one.
    A = haar(6, torch.float64, generator=gen)
    x = randn(6, 1, generator=gen)
    x = x / x.norm()
    a, b = -(A @ x), x  # (A + a b^H) x = 0
    pc.projunn_d(A, a, b)
    assert pc.unitarity_error(A) < 1e-13
    assert torch.isfinite(A).all()


def test_real_stays_real(gen):
    A = haar(8, torch.float32, generator=gen)
    for kernel in (pc.projunn_t, pc.projunn_d):
        out = kernel(A, torch.randn(8, 2), torch.randn(8, 2))
        assert out.dtype == torch.float32 and not out.is_complex()


def _bad_inputs():
    n = 5
    A = torch.eye(n, dtype=torch.float64)
    v = torch.ones(n, 2, dtype=torch.float64)
    return [
        ((torch.ones(n, n + 1, dtype=torch.float64), v, v), ValueError, "A must have shape"),
        ((torch.ones(n, dtype=torch.float64), v, v), ValueError, "A must have shape"),
        ((A, v, torch.ones(n, 3, dtype=torch.float64)), ValueError, "same shape"),
        ((A, torch.ones(n + 1, 2, dtype=torch.float64), v), ValueError, "a must have"),
        (
            (A, torch.ones(n, 0, dtype=torch.float64), torch.ones(n, 0, dtype=torch.float64)),
            ValueError,
            "rank k",
        ),
        (
            (A, torch.ones(n, 6, dtype=torch.float64), torch.ones(n, 6, dtype=torch.float64)),
            ValueError,
            "rank k",
        ),
        ((A.int(), v.int(), v.int()), TypeError, "A has dtype"),
        ((A.half(), v.half(), v.half()), TypeError, "A has dtype"),
        ((A, v.float(), v), TypeError, "a has dtype"),
        ((A, v, v.to(torch.complex128)), TypeError, "b has dtype"),
        ((A, v.numpy(), v), TypeError, "a must be a torch.Tensor"),
        ((A, v, v.unsqueeze(0)), ValueError, "b must have shape"),
        ((A, v * float("nan"), v), ValueError, "a contains non-finite"),
        ((A, v, v * float("inf")), ValueError, "b contains non-finite"),
    ]


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
@pytest.mark.parametrize("args,error,match", _bad_inputs())
def test_bad_input_raises_and_leaves_A_untouched(kernel, args, error, match):
    A = args[0]
    before = A.clone() if isinstance(A, torch.Tensor) else None
    with pytest.raises(error, match=match):
        kernel(*args)
    if before is not None:
        assert torch.equal(A, before)


def test_device_mismatch_is_named():
    if not torch.cuda.is_available():
        A = torch.eye(4, device="meta")
        with pytest.raises(ValueError, match="a is on cpu but A is on meta"):
            pc.projunn_t(A, torch.ones(4, 1), torch.ones(4, 1))
        return
    A = torch.eye(4, device="cuda")
    with pytest.raises(ValueError, match="a is on cpu"):
        pc.projunn_t(A, torch.ones(4, 1), torch.ones(4, 1, device="cuda"))


def test_huge_but_finite_update_stays_unitary():
    A = torch.eye(4, dtype=torch.float32)
    big = torch.full((4, 1), 3e38, dtype=torch.float32)
    pc.projunn_d(A, big, big)
    assert torch.isfinite(A).all() and pc.unitarity_error(A) < 1e-6


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
def test_overflow_inside_the_kernel_leaves_A_untouched(kernel, gen):
    A = haar(8, torch.float32, generator=gen)
    big = torch.full((8, 1), 3e38, dtype=torch.float32)  # A^H a overflows float32
    before = A.clone()
    with pytest.raises(ValueError, match="non-finite"):
        kernel(A, big, big)
    assert torch.equal(A, before)


def test_check_false_skips_finiteness_checks():
    A = torch.eye(3, dtype=torch.float64)
    nan = torch.full((3, 1), float("nan"), dtype=torch.float64)
    pc.projunn_t(A, nan, nan, check=False)  # documented: no checks, garbage in, garbage out
    assert torch.isnan(A).any()


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_requires_grad_parameter_is_updated_in_place(dtype):
    W = torch.nn.Parameter(torch.eye(4, dtype=dtype))
    pc.projunn_t(W, torch.ones(4, 1, dtype=dtype), torch.ones(4, 1, dtype=dtype))
    assert W.requires_grad and pc.unitarity_error(W) < 1e-6


# ---------------------------------------------------------------- hardening


def _drifted(n, drift, dtype, gen):
    """A float64-built unitary times exp(E/2), E symmetric with ||E||_F / sqrt(n) = drift,
    cast to ``dtype``: ||A^H A - I||_F / sqrt(n) is about ``drift``."""
    E = randn(n, n, generator=gen)
    E = (E + E.T) * (drift * n**0.5 / torch.linalg.matrix_norm(E + E.T))
    return (haar(n, generator=gen) @ torch.linalg.matrix_exp(E / 2)).to(dtype)


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
@pytest.mark.parametrize("n", [8, 64, 256])
def test_drifted_float32_weights_pass_the_unitarity_check(kernel, n, gen):
    for drift in (1e-4, 3e-4):
        A = _drifted(n, drift, torch.float32, gen)
        assert pc.unitarity_error(A) == pytest.approx(drift, rel=0.05)
        kernel(A, 0.1 * torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen))


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex128])
def test_non_unitary_A_is_refused_and_left_untouched(kernel, dtype, gen):
    n = 16
    tol = pc.kernels.unitarity_tolerance(dtype, n)
    U = haar(n, dtype, generator=gen)
    stretch = torch.ones(n, dtype=dtype)
    stretch[3] = 1.05
    zero, x = torch.zeros(n, 1, dtype=dtype), torch.randn(n, 1, dtype=dtype)
    cases = {  # name: (A, the a to try); the probe finds distortions in every direction
        "(1 + 10 tol) * unitary, a = 0": ((1 + 10 * tol) * U, zero),
        "(1 + 10 tol) * unitary": ((1 + 10 * tol) * U, x),
        "Gaussian, a = 0": (torch.randn(n, n, dtype=dtype), zero),
        "one column 5 % long, a along it": (U * stretch, U[:, 3:4]),
    }
    for name, (A, a) in cases.items():
        before = A.clone()
        with pytest.raises(ValueError, match="A is not unitary: .* = [0-9.e+-]+ for"):
            kernel(A, a, x)
        assert torch.equal(A, before), name
    kernel(A, a, a, check=False)  # documented: check=False does not look


def test_unitarity_tolerance_scales_with_dtype_and_n():
    tol = pc.kernels.unitarity_tolerance
    assert tol(torch.float32, 64) == pytest.approx((64 * 2.0**-23) ** 0.5)
    assert tol(torch.complex64, 64) == tol(torch.float32, 64)
    assert tol(torch.float64, 1024) == pytest.approx(4 * tol(torch.float64, 64))
    assert tol(torch.float32, 64) > 1e-3 > tol(torch.float64, 10**6)


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
@pytest.mark.parametrize("check", [True, False])
def test_self_overlapping_A_is_refused(kernel, check):
    A = torch.eye(8).expand(3, 8, 8)
    a = torch.ones(3, 8, 1)
    with pytest.raises(ValueError, match=r"A has elements that share memory .*A\.clone\(\)"):
        kernel(A, a, a, check=check)
    assert torch.equal(A[1], torch.eye(8))
    kernel(A.clone(), a, a, check=check)  # the clone is fine


def test_empty_A_is_named():
    for shape in [(0, 0), (2, 0, 0)]:
        A = torch.zeros(shape)
        with pytest.raises(ValueError, match=r"A is empty \(shape"):
            pc.projunn_t(A, torch.zeros(*shape[:-1], 1), torch.zeros(*shape[:-1], 1))
        with pytest.raises(ValueError, match=r"A is empty"):
            pc.projunn_step(A, torch.zeros(shape), 0.1)
    A = torch.zeros(0, 4, 4)  # an empty batch of 4 x 4 matrices: nothing to do
    assert pc.projunn_d(A, torch.zeros(0, 4, 1), torch.zeros(0, 4, 1)) is A


def test_meta_tensors_are_refused_up_front_with_check_and_traced_without():
    A, a = torch.eye(4, device="meta"), torch.ones(4, 1, device="meta")
    with pytest.raises(ValueError, match="A is a meta tensor .*check=False"):
        pc.projunn_t(A, a, a)
    with pytest.raises(ValueError, match="A is a meta tensor"):
        pc.projunn_step(A, torch.ones(4, 4, device="meta"), 0.1)
    out = pc.projunn_d(A, a, a, check=False)
    assert out.shape == (4, 4) and out.is_meta


def test_absurdly_large_real_rotation_is_refused(gen):
    A = haar(6, torch.float32, generator=gen)
    before = A.clone()
    a, b = torch.randn(6, 2, generator=gen), 1e30 * torch.randn(6, 2, generator=gen)
    with pytest.raises(ValueError, match="the update rotates by up to .*e\\+30 rad"):
        pc.projunn_t(A, a, b)
    assert torch.equal(A, before)
    pc.projunn_d(A, a, b)  # the closest unitary is still well defined
    assert pc.unitarity_error(A) < 1e-5
    C = haar(6, torch.complex64, generator=gen)  # complex: exp stays unitary at any angle
    pc.projunn_t(C, a.to(C.dtype), b.to(C.dtype))
    assert pc.unitarity_error(C) < 1e-5


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_skinny_products_match_plain_matmul(dtype, gen):
    """The BLAS-friendly rewrites of A^H x and A x (projunn_core._products) are the same
    numbers, for batched, transposed and conjugated operands alike."""
    from projunn_core._products import adjoint_times, times

    A = randn(3, 40, 40, dtype=dtype, generator=gen)
    for x in (randn(3, 40, 4, dtype=dtype, generator=gen), randn(3, 4, 40, dtype=dtype).mH):
        for big in (A, A.mT, A.conj()):
            tol = 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-12
            assert max_abs(adjoint_times(big, x), big.mH @ x) < tol
            assert max_abs(times(big, x), big @ x) < tol


@pytest.mark.parametrize("sync_free", [False, True])
def test_self_overlapping_A_is_refused_by_the_steps_too(sync_free):
    """projunn_step/projunn_update check overlap once for both paths (the sync-free one
    does not go through the kernels' own check)."""
    A = torch.eye(8).expand(3, 8, 8)
    with pytest.raises(ValueError, match="A has elements that share memory"):
        pc.projunn_step(A, torch.ones(3, 8, 8), 0.1, sync_free=sync_free)
    assert torch.equal(A[1], torch.eye(8))


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
def test_the_unitarity_check_catches_what_a_norm_test_missed(kernel, gen):
    """At N = 1024 a check of ||A^H v|| against ||v|| accepted all of these; A A^H v - v
    sees them: its relative norm estimates ||A A^H - I||_F / sqrt(N) for a spread-out v."""
    n = 1024
    U = haar(n, torch.float32, generator=gen)
    longer, zeroed = U.clone(), U.clone()
    longer[:, 7] *= 3  # unitarity error 0.25
    zeroed[:, 7] = 0  # 0.031
    gaussian = torch.randn(n, n, generator=gen) / n**0.5  # about 1
    a, b = 0.1 * torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen)
    for name, A in {"column x3": longer, "zeroed column": zeroed, "1.01 A": 1.01 * U,
                    "Gaussian": gaussian}.items():  # fmt: skip
        before = A.clone()
        with pytest.raises(ValueError, match=r"A is not unitary: \|\|A A\^H v - v\|\|"):
            kernel(A, a, b)
        assert torch.equal(A, before), name
    drifted = _drifted(n, 3e-4, torch.float32, gen)  # float32 drift of many steps passes
    kernel(drifted, a, b)
    assert pc.kernels.residual_tolerance(torch.float32) == pytest.approx(3.45e-3, rel=1e-3)
