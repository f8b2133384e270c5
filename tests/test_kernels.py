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
