"""The sync-free math (projunn_core.syncfree) against SciPy float64 references.

Every piece runs on the CPU too, so CPU CI checks the same arithmetic a CUDA graph
replays; whether it synchronizes a GPU is checked on CUDA (tests/test_cuda_graphs.py) and
here by a dispatch mode that records any host read our code asks for. The kernel and step
tests run for both implementations (the ``impl`` fixture): torch operators ("cholesky") and the
fused Triton kernels ("fused", on a CPU through Triton's interpreter; skipped without Triton).
"""

import numpy as np
import pytest
import scipy.linalg
import torch
from fused_support import require_interpreter
from helpers import DOUBLE, haar, max_abs, randn, ref_expm_step, ref_polar_step
from torch.utils._python_dispatch import TorchDispatchMode

import projunn_core as pc
from projunn_core import syncfree as sf

pytestmark = pytest.mark.usefixtures("one_thread")

REFS = {"T": ref_expm_step, "D": ref_polar_step}


@pytest.fixture(params=["cholesky", "fused"])
def impl(request, monkeypatch):
    """Both implementations of the sync-free step (the fused one in Triton's interpreter)."""
    if request.param == "fused":
        require_interpreter(monkeypatch)
    return request.param


def _skew(B, m, dtype, norm, gen):
    X = randn(B, m, m, dtype=dtype, generator=gen)
    M = X - X.mH
    return M * (norm / torch.linalg.matrix_norm(M)).view(-1, 1, 1)


def _expm1_reference(M):
    """exp(M) - I for skew-Hermitian M through eigh of iM, accurate also for tiny M."""
    lam, V = torch.linalg.eigh(1j * M.to(torch.complex128))
    d = torch.complex(-2 * torch.sin(lam / 2) ** 2, -torch.sin(lam))
    E = (V * d.unsqueeze(-2)) @ V.mH
    return E if M.is_complex() else E.real


@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("m", [2, 7, 32])
@pytest.mark.parametrize("norm", [1e-12, 1e-4, 0.5, 3.0, 40.0, 300.0])
def test_expm1_skew_is_exact_to_round_off(dtype, m, norm, gen):
    M = _skew(3, m, dtype, norm, gen)
    E, ok = sf.expm1_skew(M)
    ref = _expm1_reference(M)
    rel = torch.linalg.matrix_norm(E - ref) / torch.linalg.matrix_norm(ref)
    # relative accuracy: small steps keep all their digits; a rotation by many radians
    # is only as accurate as its angles (round-off times the norm)
    tol = 1e-14 * max(1.0, norm)
    assert ok.all() and ok.shape == (3,)
    assert rel.max() < tol
    U = E + torch.eye(m, dtype=dtype)
    assert pc.unitarity_error(U) < tol
    expm = np.stack([scipy.linalg.expm(x) for x in M.numpy()])
    assert max_abs(U, expm) < 10 * tol


def test_expm1_skew_reports_out_of_range(gen):
    M = _skew(2, 4, torch.float64, 1.0, gen)
    M[1] *= 2 * sf.EXP_RANGE
    _, ok = sf.expm1_skew(M)
    assert ok.tolist() == [True, False]


@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("m", [2, 9, 32])
@pytest.mark.parametrize("cond", [1.0, 1e4, 1e12])
def test_polar_matches_scipy(dtype, m, cond, gen):
    U = torch.linalg.qr(randn(3, m, m, dtype=dtype, generator=gen))[0]
    V = torch.linalg.qr(randn(3, m, m, dtype=dtype, generator=gen))[0]
    s = torch.logspace(0, -np.log10(cond), m, dtype=torch.float64).to(dtype)
    C = (U * s) @ V.mH
    E, ok = sf.polar_minus_identity(C)
    P = E + torch.eye(m, dtype=dtype)
    ref = np.stack([scipy.linalg.polar(c)[0] for c in C.numpy()])
    assert ok.all()
    assert max_abs(P, ref) < 1e-15 * cond * m  # the polar factor's own sensitivity
    assert pc.unitarity_error(P) < 1e-13


def test_polar_reports_a_singular_matrix():
    C = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64)).unsqueeze(0)
    _, ok = sf.polar_minus_identity(C)
    assert not ok.item()


@pytest.mark.parametrize("dtype", DOUBLE)
def test_orth_rows_basis(dtype, gen):
    n = 40
    X = randn(3, 6, n, dtype=dtype, generator=gen)
    X[0, 3] = 0  # a zero row
    X[0, 4] = 2 * X[0, 1] - X[0, 2]  # a dependent row
    X[2, 5] = X[2, 0] * (1 + 1e-9)  # a nearly dependent row
    for passes in (sf.ORTH_PASSES, sf.ORTH_PASSES + 1):
        Qh, R, info = sf.orth_rows(X, passes)
        assert (info == 0).all()
        assert max_abs(R.mH @ Qh, X) < 1e-13  # X^H = Q R: nothing of X is lost
        assert torch.equal(R, R.triu())
        assert Qh[0, 3].abs().max() == 0  # the zero direction stays zero
        assert max_abs(Qh[1] @ Qh[1].mH, np.eye(6)) < 1e-14  # well conditioned: orthonormal
    # Along the round-off direction of a dependent row and the 1e-9 direction of a nearly
    # dependent one, the default passes leave Q orthonormal to ~1e-7 only (X carries
    # nothing there, so the update stays exact); one pass more makes Q exact there too.
    P = Qh.mH @ Qh
    assert max_abs(P @ P, P) < 1e-14 and max_abs(X @ P, X) < 1e-13
    assert max_abs(Qh[2] @ Qh[2].mH, np.eye(6)) < 1e-14


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("n,k", [(2, 1), (8, 1), (16, 3), (12, 6), (7, 5), (9, 9), (64, 4)])
def test_kernel_matches_scipy_reference(variant, dtype, n, k, gen, impl):
    A = haar(n, dtype, generator=gen)
    a, b = 0.3 * randn(n, k, dtype=dtype, generator=gen), randn(n, k, dtype=dtype, generator=gen)
    expected = REFS[variant](A, a, b)
    assert sf.kernel(A, a, b, variant, impl=impl) is A
    assert max_abs(A, expected) < 1e-12
    assert pc.unitarity_error(A) < 1e-13


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
def test_kernel_batched_and_non_contiguous(variant, dtype, gen, impl):
    A = haar(6, dtype, batch=(3, 2), generator=gen).transpose(0, 1)  # batch not viewable
    a = 0.5 * randn(2, 3, 6, 2, dtype=dtype, generator=gen)
    b = randn(2, 3, 6, 2, dtype=dtype, generator=gen)
    expected = REFS[variant](A, a, b)
    sf.kernel(A, a, b, variant, impl=impl)
    assert max_abs(A, expected) < 1e-12


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
def test_kernel_degenerate_inputs_stay_exact(variant, dtype, gen, impl):
    n, k = 12, 3
    A0 = haar(n, dtype, generator=gen)
    b = randn(n, k, dtype=dtype, generator=gen)
    zero = torch.zeros(n, k, dtype=dtype)
    near = A0 @ (0.7 * b + 1e-10 * randn(n, k, dtype=dtype, generator=gen))
    cases = {
        "a = 0": (zero, b),
        "b = 0": (b, zero),
        "a = b = 0": (zero, zero),
        "b parallel to A^H a": (A0 @ b, 0.7 * b),
        "b nearly parallel to A^H a": (near, b),
        "rank-1 a and b": (b[:, :1].expand(n, k) * 0.2, b[:, :1].expand(n, k)),
        "k = N": (0.1 * randn(n, n, dtype=dtype, generator=gen), randn(n, n, dtype=dtype)),
    }
    for name, (a, bb) in cases.items():
        A = A0.clone()
        skipped = torch.zeros((), dtype=torch.int64)
        sf.kernel(A, a, bb, variant, skipped=skipped, impl=impl)
        assert max_abs(A, REFS[variant](A0, a, bb)) < 1e-12, name
        assert pc.unitarity_error(A) < 1e-13, name
        assert skipped.item() == 0, name


def test_kernel_d_singular_update_stays_unitary(gen, impl):
    A = haar(6, torch.float64, generator=gen)
    x = randn(6, 1, generator=gen)
    x = x / x.norm()
    sf.kernel(A, -(A @ x), x, "D", impl=impl)  # (A + a b^H) x = 0
    assert torch.isfinite(A).all() and pc.unitarity_error(A) < 1e-13


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", (torch.float32, torch.complex64))
def test_kernel_single_precision(variant, dtype, gen, impl):
    A = haar(64, dtype, generator=gen)
    a = 0.1 * randn(64, 4, dtype=dtype, generator=gen)
    b = randn(64, 4, dtype=dtype, generator=gen)
    expected = REFS[variant](A, a, b)
    sf.kernel(A, a, b, variant, impl=impl)
    assert A.dtype == dtype and max_abs(A, expected) < 1e-5
    assert pc.unitarity_error(A) < 1e-6


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the NaN input
def test_bad_matrix_of_a_batch_is_skipped_bit_for_bit(variant, gen, impl):
    A = haar(8, torch.float32, batch=(4,), generator=gen)
    a, b = randn(4, 8, 2, dtype=torch.float32, generator=gen), randn(4, 8, 2, dtype=A.dtype)
    a[1, 3, 0] = float("nan")  # matrix 1: non-finite input
    b[2, 5, 1] = float("inf")  # matrix 2
    valid = torch.tensor([True, True, True, False])  # matrix 3: invalid from outside
    before = A.clone()
    skipped = torch.zeros((), dtype=torch.int64)
    sf.kernel(A, a, b, variant, valid=valid, skipped=skipped, impl=impl)
    assert skipped.item() == 3
    assert torch.equal(A[1:], before[1:])
    assert not torch.equal(A[0], before[0]) and pc.unitarity_error(A[0]) < 1e-6


def test_out_of_range_exponential_is_skipped(gen, impl):
    A = haar(6, torch.float64, generator=gen)
    a, b = randn(6, 1, generator=gen), randn(6, 1, generator=gen)
    a *= 10 * sf.EXP_RANGE / (a.norm() * b.norm())
    before = A.clone()
    skipped = torch.zeros((), dtype=torch.int64)
    sf.kernel(A, a, b, "T", skipped=skipped, impl=impl)
    assert torch.equal(A, before) and skipped.item() == 1


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", DOUBLE)
@pytest.mark.parametrize("n,k,r", [(16, 4, 16), (40, 4, 2), (24, 8, 8), (10, 10, 10)])
def test_step_matches_the_eager_step(variant, dtype, n, k, r, gen, impl):
    """Same seed, same sketch: the sync-free step equals the eager one."""
    A = haar(n, dtype, generator=gen)
    G = randn(n, r, dtype=dtype, generator=gen) @ randn(r, n, dtype=dtype, generator=gen) / n
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    eager = A.clone()
    pc.projunn_step(eager, G, 0.3, k, variant, generator=torch.Generator().manual_seed(seed))
    sf.step(A, G, k, variant, scale=-0.3, generator=torch.Generator().manual_seed(seed), impl=impl)
    assert max_abs(A, eager) < 1e-12
    assert pc.unitarity_error(A) < 1e-13


@pytest.mark.parametrize("variant", "TD")
def test_step_is_exact_for_low_rank_gradients(variant, gen, impl):
    n, k, r = 30, 6, 2
    A0 = haar(n, torch.complex128, generator=gen)
    G = randn(n, r, dtype=A0.dtype, generator=gen) @ randn(r, n, dtype=A0.dtype, generator=gen)
    exact = REFS[variant](A0, -0.1 * G, torch.eye(n, dtype=A0.dtype))
    A = A0.clone()
    sf.step(A, G, k, variant, scale=-0.1, generator=torch.Generator().manual_seed(1), impl=impl)
    assert max_abs(A, exact) < 1e-13


def test_step_batched_with_power_iterations(gen, impl):
    A = haar(20, torch.float64, batch=(3,), generator=gen)
    G = randn(3, 20, 20, generator=gen)
    eager = A.clone()
    pc.projunn_step(
        eager, G, 0.05, 4, "T", generator=torch.Generator().manual_seed(3), power_iters=1
    )
    sf.step(
        A,
        G,
        4,
        "T",
        scale=-0.05,
        power_iters=1,
        generator=torch.Generator().manual_seed(3),
        impl=impl,
    )
    assert max_abs(A, eager) < 1e-12


class _HostReads(TorchDispatchMode):
    """Records operators that read a tensor's value on the host (a GPU sync)."""

    NAMES = ("_local_scalar_dense", "item", "nonzero", "is_nonzero", "equal", "allclose")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.NAMES:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("variant", "TD")
def test_no_host_reads(variant, gen, impl):
    A = haar(16, torch.float32, batch=(2,), generator=gen)
    G = randn(2, 16, 16, dtype=torch.float32, generator=gen)
    a, b = randn(2, 16, 3, dtype=A.dtype, generator=gen), randn(2, 16, 3, dtype=A.dtype)
    skipped = torch.zeros((), dtype=torch.int64)
    with _HostReads() as mode:
        sf.step(A, G, 3, variant, scale=-0.1, skipped=skipped, impl=impl)
        sf.kernel(
            A, a, b, variant, skipped=skipped, valid=torch.ones(2, dtype=torch.bool), impl=impl
        )
    assert mode.seen == []


@pytest.mark.parametrize("variant", "TD")
def test_householder_basis_gives_the_same_steps(variant, gen):
    """The alternative basis (torch.linalg.qr) is exact too, k = N included."""
    for n, k in [(12, 3), (7, 7)]:
        A = haar(n, torch.complex128, batch=(2,), generator=gen)
        a = 0.3 * randn(2, n, k, dtype=A.dtype, generator=gen)
        b = randn(2, n, k, dtype=A.dtype, generator=gen)
        expected = REFS[variant](A, a, b)
        sf.kernel(A, a, b, variant, impl="householder")
        assert max_abs(A, expected) < 1e-12 and pc.unitarity_error(A) < 1e-13
    G = randn(20, 2, generator=gen) @ randn(2, 20, generator=gen)
    A0 = haar(20, generator=gen)
    A = A0.clone()
    sf.step(
        A, G, 4, variant, scale=-0.1, generator=torch.Generator().manual_seed(0), impl="householder"
    )
    exact = REFS[variant](A0, -0.1 * G, torch.eye(20, dtype=torch.float64))
    assert max_abs(A, exact) < 1e-13
