"""The fused small problem (impl="fused", projunn_core.fused) and the impl keyword.

The numerics run on CPU tensors through Triton's interpreter (tests/fused_support.py; skipped
without Triton) and are compared with SciPy float64 references on fresh random inputs; the
degenerate-input suite runs for both implementations in tests/test_syncfree.py. Also: which
implementation ``impl`` picks and its errors, the torch path left bit-for-bit as it was, the
operator budget of a fused step, and the custom operators under opcheck, torch.compile and the
profiler.
"""

import numpy as np
import pytest
import scipy.linalg
import torch
from fused_support import require_interpreter
from helpers import ALL_DTYPES, haar, max_abs, randn, ref_expm_step, ref_polar_step

import projunn_core as pc
from projunn_core import fused
from projunn_core import syncfree as sf
from suite.measure.opcount import count_ops, count_triton_ops

pytestmark = pytest.mark.usefixtures("one_thread")

REFS = {"T": ref_expm_step, "D": ref_polar_step}


@pytest.fixture
def interp(monkeypatch):
    require_interpreter(monkeypatch)


@pytest.fixture
def no_interp(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


# -- the impl keyword ------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda A: pc.projunn_t(A, torch.ones(4, 1), torch.ones(4, 1), impl="cholesky"),
        lambda A: pc.projunn_d(A, torch.ones(4, 1), torch.ones(4, 1), impl="fused"),
        lambda A: pc.projunn_step(A, torch.ones(4, 4), 0.1, impl="householder"),
        lambda A: pc.projunn_update(A, torch.ones(4, 4), impl="auto"),
    ],
)
def test_impl_needs_sync_free(call):
    A = torch.eye(4)
    with pytest.raises(ValueError, match="pass sync_free=True"):
        call(A)
    assert torch.equal(A, torch.eye(4))


def test_impl_must_be_one_of_the_implementations():
    A = torch.eye(4)
    with pytest.raises(ValueError, match="impl must be one of"):
        pc.projunn_step(A, torch.ones(4, 4), 0.1, sync_free=True, impl="qr")
    with pytest.raises(ValueError, match="impl must be one of"):
        sf.kernel(A, torch.ones(4, 1), torch.ones(4, 1), "T", impl="Fused")
    assert torch.equal(A, torch.eye(4))


def test_fused_says_why_it_cannot_run(no_interp, monkeypatch):
    A = torch.eye(4)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1 is not set"):
        pc.projunn_t(A, torch.ones(4, 1), torch.ones(4, 1), sync_free=True, impl="fused")
    assert fused.unavailable("meta").endswith("got meta")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(fused._STATE, "triton", (None, "Triton is not installed (no triton)"))
    with pytest.raises(ValueError, match="Triton is not installed"):
        pc.projunn_step(A, torch.ones(4, 4), 0.1, sync_free=True, impl="fused")
    assert sf.resolve_impl("auto", A, 1) == "cholesky"  # without Triton: the torch path
    assert torch.equal(A, torch.eye(4))


def test_optimizer_impl_option(no_interp):
    W = torch.nn.Parameter(pc.init.haar(4))
    group = [{"params": [W], "unitary": True}]
    with pytest.raises(ValueError, match="pass sync_free=True"):  # impl needs capturable
        pc.optim.SGD(group, lr=0.1, impl="cholesky")
    with pytest.raises(ValueError, match="impl must be one of"):
        pc.optim.Adam(group, lr=0.1, capturable=True, impl="eigh")
    with pytest.raises(ValueError, match="impl='fused' cannot run here: CPU tensors"):
        pc.optim.RMSprop(group, lr=0.1, capturable=True, impl="fused")
    assert pc.optim.SGD(group, lr=0.1, capturable=True, impl="householder").impl == "householder"


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex128])
def test_auto_without_triton_is_the_torch_path_bit_for_bit(variant, dtype, no_interp, gen):
    """Where the fused kernels cannot run, impl="auto" is the torch path: the same operators
    and bit-for-bit the same weights as impl="cholesky" (which tests/test_syncfree.py compares
    with the eager path and SciPy)."""
    A = haar(12, dtype, batch=(2,), generator=gen)
    G = randn(2, 12, 12, dtype=dtype, generator=gen)
    a, b = randn(2, 12, 3, dtype=dtype, generator=gen), randn(2, 12, 3, dtype=dtype)
    runs = []
    sf.step(A.clone(), G, 3, variant)  # builds the cached constants, which count too
    for impl in ("auto", "cholesky"):
        B = A.clone()
        s = torch.zeros((), dtype=torch.int64)
        seed = torch.Generator().manual_seed(4)
        c1 = count_ops(sf.step, B, G, 3, variant, scale=-0.2, generator=seed, skipped=s, impl=impl)
        c2 = count_ops(sf.kernel, B, 0.1 * a, b, variant, skipped=s, impl=impl)
        runs.append((B, c1.ops, c2.ops))
    (B1, s1, k1), (B2, s2, k2) = runs
    assert torch.equal(B1, B2) and s1 == s2 and k1 == k2
    assert not any(name.startswith("projunn.") for name in s1 | k1)


def test_auto_picks_fused_under_the_interpreter(interp):
    A = torch.eye(8, dtype=torch.complex64)
    assert sf.resolve_impl("auto", A, 16) == "fused"
    assert sf.resolve_impl("auto", A, 17) == "cholesky"  # beyond the kernels' size
    with pytest.raises(ValueError, match="rank k <= 16 for torch.complex64, got k = 17"):
        sf.resolve_impl("fused", A, 17)
    assert fused.max_rank(torch.float64) == 32


# -- numerics (Triton's interpreter) ---------------------------------------------------


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_public_api_matches_scipy(variant, dtype, interp, gen):
    A = haar(10, dtype, batch=(2,), generator=gen)
    a = 0.3 * randn(2, 10, 3, dtype=dtype, generator=gen)
    b = randn(2, 10, 3, dtype=dtype, generator=gen)
    expected = REFS[variant](A, a, b)
    skipped = torch.zeros((), dtype=torch.int64)
    out = pc.VARIANTS[variant](A, a, b, sync_free=True, impl="fused", skipped=skipped)
    single = dtype in (torch.float32, torch.complex64)
    assert out is A and A.dtype == dtype and skipped.item() == 0  # real stays real
    assert max_abs(A, expected) < (2e-6 if single else 1e-13)
    assert pc.unitarity_error(A) < (1e-6 if single else 1e-14)


@pytest.mark.parametrize("cond", [1e4, 1e8, 1e12])
def test_ill_conditioned_polar_matches_scipy(cond, interp, gen):
    """projUNN-D where A + a b^H has condition number ``cond`` (singular values 1 and 1/cond),
    plus an unrelated second direction; Newton's phase runs, then Newton-Schulz."""
    n = 16
    A = haar(n, torch.float64, generator=gen)
    x, y = randn(n, 1, generator=gen), randn(n, 1, generator=gen)
    x = x / x.norm()
    a = torch.cat([-(1 - 1 / cond) * (A @ x), 0.3 * (A @ y)], 1)
    b = torch.cat([x, randn(n, 1, generator=gen)], 1)
    expected = scipy.linalg.polar((A + a @ b.mT).numpy())[0]
    skipped = torch.zeros((), dtype=torch.int64)
    sf.kernel(A, a, b, "D", impl="fused", skipped=skipped)
    assert skipped.item() == 0
    assert max_abs(A, expected) < 1e-13  # the real polar factor is well conditioned here
    assert pc.unitarity_error(A) < 1e-14


def _expm1(S: np.ndarray) -> np.ndarray:
    """exp(S) - I for skew-Hermitian S through eigh of iS, accurate also for tiny S."""
    lam, V = np.linalg.eigh(1j * S)
    d = -2 * np.sin(lam / 2) ** 2 - 1j * np.sin(lam)
    return (V * d) @ V.conj().T


@pytest.mark.parametrize("norm", [1e-12, 1e-3, 3.0, 300.0])
def test_tangent_update_relative_accuracy(norm, interp, gen):
    """The update ``X^H C X`` of projUNN-T against ``exp(S) - I``, ``S = skew(A^H a b^H)``
    with ``|S|_F = norm``: tiny steps (no squarings) keep their relative accuracy, rotations by
    hundreds of radians (7 squarings) are as accurate as their angles."""
    n, k = 24, 3
    A = haar(n, torch.complex128, generator=gen)
    a, b = randn(n, k, dtype=A.dtype, generator=gen), randn(n, k, dtype=A.dtype, generator=gen)
    Y = A.mH @ a @ b.mH
    a = a * (2 * norm / torch.linalg.matrix_norm(Y - Y.mH).item())
    X = torch.cat([b.mH, a.mH @ A]).unsqueeze(0)
    C = fused.small_problem(fused.gram(X), X.clone(), None, None, "T", 1.0, False, True)
    U = (X[0].mH @ C[0] @ X[0]).numpy()
    Y = (A.mH @ a @ b.mH).numpy()
    ref = _expm1((Y - Y.conj().T) / 2)
    assert np.linalg.norm(U - ref) / np.linalg.norm(ref) < 1e-14 * max(1.0, norm)


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("eps", [1e-4, 1e-7, 1e-10])
def test_nearly_dependent_rows_stay_exact(variant, eps, interp, gen):
    """b_2 and A^H a_2 parallel up to ``eps`` next to a generic pair: the Gram matrix cannot
    resolve that direction (below sqrt(eps_64 N) it is round-off), and yet the update is exact,
    because the frame's own Gram matrix enters the small problem (docs/design.md, 7.1)."""
    n = 40
    A = haar(n, torch.float64, generator=gen)
    b = randn(n, 2, generator=gen)
    ah = torch.cat(
        [randn(n, 1, generator=gen), 0.5 * b[:, 1:] + eps * randn(n, 1, generator=gen)], 1
    )
    a = 0.1 * (A @ ah)
    expected = REFS[variant](A, a, b)
    sf.kernel(A, a, b, variant, impl="fused")
    assert max_abs(A, expected) < 1e-13 and pc.unitarity_error(A) < 1e-14


@pytest.mark.parametrize("variant", "TD")
def test_unguarded_and_empty_batches(variant, interp, gen):
    A = haar(8, torch.float64, batch=(2,), generator=gen)
    a, b = 0.2 * randn(2, 8, 2, generator=gen), randn(2, 8, 2, generator=gen)
    expected = REFS[variant](A, a, b)
    sf.kernel(A, a, b, variant, guard=False, impl="fused")
    assert max_abs(A, expected) < 1e-13
    E = torch.empty(0, 8, 8, dtype=torch.float64)
    sf.kernel(E, torch.empty(0, 8, 2, dtype=E.dtype), torch.empty(0, 8, 2, dtype=E.dtype), variant)
    sf.step(E, torch.empty(0, 8, 8, dtype=E.dtype), 2, variant, impl="fused")
    assert E.shape == (0, 8, 8)


def test_gram_across_chunks_and_conjugated_blocks(interp, gen):
    """projunn::gram sums partial Gram matrices over column chunks (N = 1100 > 512)."""
    X = randn(2, 5, 1100, dtype=torch.complex64, generator=gen)
    Y = randn(2, 1100, 3, dtype=torch.complex64, generator=gen)  # rows Y^H, passed as Y^T
    parts = fused.gram(X, Y.mT, conj_second=True)
    assert parts.shape == (2, 3, 2, 16, 16) and parts.dtype == torch.float64
    W = parts.sum(1)
    rows = torch.cat([X, Y.mH], 1).to(torch.complex128)
    ref = rows @ rows.mH
    assert max_abs(torch.complex(W[:, 0, :8, :8], W[:, 1, :8, :8]), ref) < 1e-12 * 1100
    assert W[:, :, 8:].abs().max() == 0  # zero padding


def test_sketch_basis_is_a_partial_isometry(interp, gen):
    """Y T is orthonormal on the range of Y and short along the directions Y lacks."""
    n, k = 30, 6
    Y = randn(n, 2, generator=gen) @ randn(2, k, generator=gen)  # rank 2
    T = fused.sketch_basis(fused.gram(Y.mT[None]), k, n, torch.float64)[0]
    a = Y @ T
    s = torch.linalg.svdvals(a)
    # "nearly": the main kernel's Newton-Schulz on a's exact Gram matrix takes any |s - 1|
    # well below 1 to round-off. A rank-deficient Y's Gram matrix holds its null directions
    # only to round-off, and they leak: over 3000 draws |s - 1| had median 2e-15, 99.9th
    # percentile 6e-10 and maximum 1.7e-8 (a fixed 1e-10 failed 3 % of draws)
    assert max_abs(s[:2], np.ones(2)) < 1e-6 and s[2:].max() < 1e-6
    # a spans the range of Y (a missed direction: an error of order ||Y||; measured at most
    # 1.2e-11 ||Y||)
    assert max_abs(a @ torch.linalg.pinv(a) @ Y, Y) < 1e-9 * torch.linalg.norm(Y, 2)


@pytest.mark.parametrize("cls", [pc.optim.SGD, pc.optim.Adam])
def test_capturable_optimizer_with_the_fused_kernels(cls, interp, gen):
    """capturable=True with impl="fused" takes the same steps as with impl="cholesky"."""
    weights, opts = [], []
    for impl in ("cholesky", "fused"):
        W = torch.nn.Parameter(haar(8, torch.float64, batch=(2,), generator=torch.Generator()))
        W.data.copy_(weights[0].data if weights else W.data)
        group = [{"params": [W], "unitary": True, "rank": 2, "variant": "D"}]
        seed = torch.Generator().manual_seed(2)
        opts.append(cls(group, lr=0.05, generator=seed, capturable=True, impl=impl))
        weights.append(W)
    for _ in range(3):
        grad = randn(2, 8, 8, generator=gen)
        for W, opt in zip(weights, opts, strict=True):
            W.grad = grad.clone()
            opt.step()
    assert max_abs(weights[0].detach(), weights[1].detach()) < 1e-12
    assert opts[1].skipped_steps == 0


# -- operators -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype,k", [(torch.float32, 1), (torch.float32, 16), (torch.complex64, 4)])
def test_operator_budget(variant, dtype, k, interp, gen):
    """A fused step dispatches at most 12 compute operators (views excluded; a custom operator
    counts one), one of them the small problem; the torch path dispatches 50 to 115."""
    n = 64
    A = haar(n, dtype, generator=gen)
    G = randn(n, n, dtype=dtype, generator=gen)
    a, b = randn(n, k, dtype=dtype, generator=gen), randn(n, k, dtype=dtype, generator=gen)
    s = torch.zeros((), dtype=torch.int64)
    step = count_ops(sf.step, A, G, k, variant, scale=-0.1, skipped=s, impl="fused")
    kernel = count_ops(sf.kernel, A, 0.1 * a, b, variant, skipped=s, impl="fused")
    assert step.total <= 12 and kernel.total <= 7, (step.ops, kernel.ops)
    assert step.ops["projunn.small_problem.default"] == kernel.ops["projunn.small_problem.default"]
    assert step.ops["projunn.small_problem.default"] == 1 and step.ops["projunn.gram.default"] == 2
    torch_path = count_ops(sf.step, A, G, k, variant, scale=-0.1, skipped=s, impl="cholesky")
    assert torch_path.total > 50
    assert s.item() == 0 and pc.unitarity_error(A) < 1e-5


def test_polar_costs_about_as_much_as_the_exponential(interp, gen):
    """Triton operations of one small problem in the interpreter: for a step of moderate size
    projUNN-D's Newton-Schulz iterations cost about what projUNN-T's Taylor polynomial costs."""
    n, k = 32, 4
    A = haar(n, torch.float64, generator=gen)
    a, b = randn(n, k, generator=gen), randn(n, k, generator=gen)
    a *= 0.1 / (a.norm() * b.norm())
    X = torch.cat([b.mT, a.mT @ A]).unsqueeze(0).contiguous()
    parts = fused.gram(X)
    cost = {}
    for v in "TD":
        counts = count_triton_ops(
            fused.small_problem, parts, X.clone(), None, None, v, 1.0, False, True
        )
        cost[v] = sum(counts.values())
    assert counts["dot"] > 0 and counts["reduce"] > 0
    assert cost["D"] <= 1.3 * cost["T"], cost


def test_custom_operators_pass_opcheck(interp, gen):
    rows = randn(2, 4, 20, generator=gen)
    parts = fused.gram(rows)
    Y = randn(2, 20, 2, generator=gen)
    torch.library.opcheck(torch.ops.projunn.gram.default, (rows, False, None, False))
    torch.library.opcheck(torch.ops.projunn.gram.default, (rows, False, Y.mT, False))
    torch.library.opcheck(torch.ops.projunn.sketch_basis.default, (parts, 2, 20, torch.float64))
    args = (parts, rows.clone(), None, torch.zeros((), dtype=torch.int64), "T", 0.5, False, True)
    torch.library.opcheck(torch.ops.projunn.small_problem.default, args)


def test_torch_compile_traces_the_custom_operators(interp, gen):
    """fullgraph=True: no graph break, the fake implementations give the shapes."""
    torch._dynamo.reset()
    A = haar(12, torch.float64, generator=gen)
    a, b = 0.2 * randn(12, 2, generator=gen), randn(12, 2, generator=gen)

    def kernel(A, a, b, skipped):
        return sf.kernel(A, a, b, "T", impl="fused", skipped=skipped)

    compiled = torch.compile(kernel, fullgraph=True)
    eager, traced = A.clone(), A.clone()
    s = torch.zeros((), dtype=torch.int64)
    kernel(eager, a, b, s)
    compiled(traced, a, b, s)
    assert max_abs(traced, eager) < 1e-14 and max_abs(traced, ref_expm_step(A, a, b)) < 1e-13
    assert s.item() == 0


def test_profiler_shows_one_small_problem_per_step(interp, gen):
    A = haar(16, torch.float32, batch=(3,), generator=gen)
    G = randn(3, 16, 16, dtype=A.dtype, generator=gen)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sf.step(A, G, 2, "D", scale=-0.1, impl="fused")
    names = [e.name for e in prof.events()]
    ours = sorted(name for name in names if name.startswith("projunn::"))
    assert ours == ["projunn::gram", "projunn::gram", "projunn::sketch_basis"] + [
        "projunn::small_problem"
    ]


@pytest.mark.parametrize("variant", "TD")
def test_rows_long_enough_to_overflow_are_skipped(variant, interp, gen):
    """float32: a b^H of moderate size from b ~ 1e38 and a ~ 1e-38 is finite, but A X^H would
    overflow (|(A X^H)_il| can reach the length of row l of X): skipped, not corrupted."""
    A = haar(16, torch.float32, batch=(2,), generator=gen)
    a, b = 1e-38 * randn(2, 16, 2, dtype=A.dtype, generator=gen), randn(2, 16, 2, dtype=A.dtype)
    b[0] *= 1e38  # matrix 0 only
    before = A.clone()
    skipped = torch.zeros((), dtype=torch.int64)
    sf.kernel(A, a, b, variant, impl="fused", skipped=skipped)
    assert skipped.item() == 1 and torch.equal(A[0], before[0]) and torch.isfinite(A).all()
    assert pc.unitarity_error(A[1]) < 1e-6
