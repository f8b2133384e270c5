"""projUNN steps with no host synchronization, so that a CUDA graph can capture them.

The eager kernels solve their small problem with ``eigh`` / ``svd`` and check finiteness on
the host; both synchronize a GPU with the host and cannot be captured in a CUDA graph.
Here nothing reads a value back to the host. There are three implementations, chosen by the
``impl`` argument of :func:`kernel` and :func:`step` (one of :data:`IMPLS`):

* ``"fused"`` (what ``"auto"`` takes where it can run): the small problem in one Triton
  kernel per step, three ``projunn::`` custom operators in all (:mod:`projunn_core.fused`;
  docs/design.md, section 7.1). It needs Triton and CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1`` (Triton's interpreter), and a rank up to
  :data:`projunn_core.fused.MAX_RANK`;
* ``"cholesky"`` (``"auto"`` everywhere else) and ``"householder"``: a fixed sequence of
  torch operators, the same for every input, described below.

The torch implementations:

* **basis**: shifted CholeskyQR (:func:`orth_rows`). Each pass factors the Gram matrix
  with a small relative shift, so that a zero or dependent column never breaks the
  Cholesky factorization. ``X = Q R`` holds to round-off after any pass; two passes make Q
  orthonormal wherever X is well conditioned, and along a direction in which X is nearly
  rank-deficient Q deviates from orthonormal by at most ~1e-7, where X carries
  correspondingly little, so the update stays exact to round-off (checked against SciPy
  on degenerate inputs). The range finder takes a third pass for double-precision
  weights: there the round-off directions of a sketch of a gradient of rank below k must
  end exactly orthogonal to the gradient's range (two passes leave ~1e-12, invisible in
  single precision). ``impl="householder"`` uses ``torch.linalg.qr`` instead.
* **exponential** (projUNN-T): ``exp(M) - I`` of the small skew-Hermitian matrix by a
  degree-25 Taylor polynomial (Paterson-Stockmeyer) of ``M / 2^7``, then 7 squarings of
  ``E = exp(Z) - I`` as ``E <- E (E + 2I)``, which keep the relative accuracy of small
  steps (:func:`expm1_skew`). The scaling is fixed, so no host decision is needed, and
  it costs no accuracy: squaring E keeps the relative error of a small step, and a
  large one needs the 7 squarings anyway (measured: relative error below 3e-14 for
  ``|M|`` from 1e-12 to 345).
* **polar factor** (projUNN-D): Newton's iteration ``X <- (z X + (z X)^-H) / 2`` with
  Frobenius-norm scaling ``z``, a fixed number of iterations
  (:func:`polar_minus_identity`).

In every implementation:

* **no-op on bad input**: a matrix whose step is not finite, out of the exponential's
  range or not converged is left bit-for-bit unchanged, selected on the device (with
  ``torch.where``, or inside the fused kernel); an optional device counter records how many
  matrices were skipped.
* **random sketch**: :func:`step` draws it with ``torch.randn(generator=...)`` exactly as
  :func:`projunn_core.lowrank` draws it, so a seed gives the same sketch in every path; a
  CUDA graph replays such a draw correctly once the generator is registered with the graph
  (:mod:`projunn_core.graph` does that).

>>> import torch, projunn_core as pc
>>> A = pc.init.haar(8, dtype=torch.float64)
>>> a, b = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
>>> B = A.clone()
>>> kernel(A, a, b, "T", impl="cholesky") is A
True
>>> bool(torch.allclose(A, pc.projunn_t(B, a, b)))
True
"""

from __future__ import annotations

import torch

from . import fused
from ._checks import real_dtype, wide_dtype
from ._products import times

__all__ = [
    "EXP_RANGE",
    "IMPLS",
    "NEWTON_ITERATIONS",
    "ORTH_PASSES",
    "expm1_skew",
    "kernel",
    "orth_rows",
    "polar_minus_identity",
    "resolve_impl",
    "step",
]

_PS_BLOCK = 5  # Paterson-Stockmeyer: the powers Z .. Z^5 ...
_PS_BLOCKS = 5  # ... in 5 blocks: Taylor degree 25
_EXP_THETA = 2.7  # |Z|_F <= theta: the degree-25 remainder is below double round-off
_EXP_SQUARINGS = 7
EXP_RANGE = _EXP_THETA * 2**_EXP_SQUARINGS
"""Largest Frobenius norm of the small skew matrix for which :func:`expm1_skew` is exact to
round-off (a rotation by about 345 radians); larger steps are reported out of range."""

NEWTON_ITERATIONS = 9
"""Newton iterations of :func:`polar_minus_identity`, the first ``_NEWTON_SCALED`` of them
scaled: enough for condition numbers up to 1e15 (measured on 2 x 2 to 128 x 128
matrices; 9 scaled ones gave the same results)."""
_NEWTON_SCALED = 6

ORTH_PASSES = 2
"""Shifted CholeskyQR passes of :func:`orth_rows` (see the module docstring)."""

IMPLS = ("auto", "fused", "cholesky", "householder")
"""Implementations of the sync-free step (the ``impl`` argument): ``"fused"`` (the small problem
in one Triton kernel, :mod:`projunn_core.fused`), ``"cholesky"`` (torch operators, bases by
shifted CholeskyQR), ``"householder"`` (torch operators, bases by ``torch.linalg.qr``: exactly
orthonormal, also sync-free and capturable; its kernel count grows with the width 2k), and
``"auto"``: ``"fused"`` where it can run (see :func:`resolve_impl`), else ``"cholesky"``."""

_POLAR_TOL = 1e-10  # ||P^H P - I||_F above this after the iterations: not converged

_CONSTANTS: dict = {}


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def resolve_impl(impl: str, A: torch.Tensor, rank: int) -> str:
    """The implementation ``impl`` (one of :data:`IMPLS`) stands for, for a step of A at
    ``rank``: ``"auto"`` is ``"fused"`` where :func:`projunn_core.fused.unavailable` finds
    nothing against it (Triton, and CUDA tensors or CPU tensors under ``TRITON_INTERPRET=1``, and
    a rank the kernels take), else ``"cholesky"``; an unavailable ``"fused"`` is an error that
    says why.

    >>> resolve_impl("householder", torch.eye(3), 1)
    'householder'
    >>> resolve_impl("fused", torch.eye(3, device="meta"), 1)
    Traceback (most recent call last):
        ...
    ValueError: impl='fused' cannot run here: the fused kernels run on CUDA tensors ... got meta
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl in ("auto", "fused"):
        why = fused.unavailable(A.device, A.dtype, rank)
        if why is None:
            return "fused"
        if impl == "fused":
            raise ValueError(f"impl='fused' cannot run here: {why}")
        return "cholesky"
    return impl


def _constant(name: str, dtype: torch.dtype, device: torch.device, size: int = 0):
    """A small constant tensor, cached per device and dtype (built by device kernels, never
    copied from the host, and never cached while a CUDA graph is being captured)."""
    key = (name, dtype, device, size)
    value = _CONSTANTS.get(key)
    if value is None:
        if name == "taylor":  # 1/j!, j = 1..p*q, as the (blocks, p) matrix
            j = torch.arange(1, _PS_BLOCK * _PS_BLOCKS + 1, dtype=torch.float64, device=device)
            value = torch.exp(-torch.lgamma(j + 1)).to(dtype).view(_PS_BLOCKS, _PS_BLOCK)
        elif name == "tiny":  # the smallest normal number, 0-dim
            value = torch.full((), torch.finfo(dtype).tiny, dtype=dtype, device=device)
        elif name == "zero":
            value = torch.zeros((), dtype=dtype, device=device)
        elif name == "two":  # 2 I
            value = 2 * torch.eye(size, dtype=dtype, device=device)
        else:  # "eye"
            value = torch.eye(size, dtype=dtype, device=device)
        if not _capturing(device):
            _CONSTANTS[key] = value
    return value


def finite(x: torch.Tensor) -> torch.Tensor:
    """Whether each matrix of x (..., m, n) is finite: one reduction (the largest |entry|,
    which is NaN or inf exactly when an entry is) and one comparison, no host read.

    >>> finite(torch.tensor([[[1.0, 2.0]], [[float("nan"), 0.0]]])).tolist()
    [True, False]
    """
    largest = torch.linalg.vector_norm(x, float("inf"), dim=(-2, -1))
    return largest <= torch.finfo(largest.dtype).max


# -- the exponential --------------------------------------------------------------------


def expm1_skew(M: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(scale M) - I`` for skew-Hermitian M (B, m, m), and whether each
    ``|scale M|_F`` is in range.

    Degree-25 Taylor polynomial of ``Z = scale M / 2^7`` by Paterson-Stockmeyer, then 7
    squarings ``E <- E (E + 2I)``: a fixed cost with no host decision. The squarings act on
    ``E`` rather than ``I + E``, so a small ``M`` keeps its relative accuracy. Exact to
    round-off for ``|scale M|_F <= EXP_RANGE``.

    >>> M = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)
    >>> E, ok = expm1_skew(M)
    >>> bool(torch.allclose(E[0] + torch.eye(2, dtype=M.dtype), torch.linalg.matrix_exp(M[0])))
    True
    """
    B, m, _ = M.shape
    p = _PS_BLOCK
    powers = torch.empty(p, B, m, m, dtype=M.dtype, device=M.device)
    torch.mul(M, scale * 2.0**-_EXP_SQUARINGS, out=powers[0])
    for i in range(1, p):
        torch.bmm(powers[i - 1], powers[0], out=powers[i])
    coef = _constant("taylor", M.dtype, M.device)
    blocks = (coef @ powers.view(p, -1)).view(_PS_BLOCKS, B, m, m)
    E = blocks[-1]
    for i in range(_PS_BLOCKS - 2, -1, -1):  # Horner in Z^p
        E = blocks[i].baddbmm_(powers[p - 1], E)
    two = _constant("two", M.dtype, M.device, m)
    for _ in range(_EXP_SQUARINGS):
        E = torch.bmm(E, E + two)
    in_range = torch.linalg.vector_norm(powers[0], dim=(-2, -1)) <= _EXP_THETA
    return E, in_range


# -- the polar factor -------------------------------------------------------------------


def polar_minus_identity(C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``P - I`` for the polar factor P of C (B, m, m), and whether the iteration converged.

    Newton's iteration, ``NEWTON_ITERATIONS`` times, the first ones with Frobenius-norm
    scaling (Higham 1986), the last ones plain (they converge quadratically by then). A
    singular or too ill-conditioned C is reported as not converged.

    >>> C = torch.tensor([[[2.0, 0.0], [0.0, -3.0]]], dtype=torch.float64)
    >>> E, ok = polar_minus_identity(C)
    >>> E[0], bool(ok)
    (tensor([[ 0.,  0.],
            [ 0., -2.]], dtype=torch.float64), True)
    """
    X = C
    for i in range(NEWTON_ITERATIONS):
        inv, _ = torch.linalg.inv_ex(X)
        if i >= _NEWTON_SCALED:
            X = torch.add(X, inv.mH).mul_(0.5)
            continue
        zeta2 = torch.linalg.vector_norm(inv, dim=(-2, -1), keepdim=True) / (
            torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
        )
        # (z X + (z X)^-H) / 2 = (z^2 X + X^-H) / (2 z)
        X = torch.addcmul(inv.mH, X, zeta2).mul_(0.5 * torch.rsqrt(zeta2))
    eye = _constant("eye", C.dtype, C.device, C.shape[-1])
    defect = torch.linalg.vector_norm(X.mH @ X - eye, dim=(-2, -1))
    return X - eye, defect <= _POLAR_TOL


# -- the basis --------------------------------------------------------------------------


def _shift(n: int, m: int, dtype: torch.dtype) -> float:
    """Relative diagonal shift that keeps the Gram matrix of m vectors of length n positive
    definite despite the rounding errors of forming and factoring it."""
    return (n + m + 1) * m * torch.finfo(real_dtype(dtype)).eps


def orth_rows(
    X: torch.Tensor, passes: int = ORTH_PASSES, *, want_r: bool = True, method: str = "cholesky"
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``Q^H`` (B, m, n), ``R`` (B, m, m) upper triangular with ``X^H = Q R``, and the
    Cholesky status (0 = fine) for the rows of X (B, m, n); R and the status are ``None``
    unless ``want_r`` (the range finder needs neither: a bad sketch basis would only make
    a worse approximation, still applied exactly and unitarily).

    Shifted CholeskyQR: each pass factors ``(X X^H + s diag) / (1 + s)`` (the shift keeps
    it positive definite, the division keeps rows of unit length) and solves with the
    factor. Exactly zero directions stay zero (Q is then a partial isometry whose
    ``Q Q^H`` projects onto a space that contains the rows of X); see the module docstring
    for how orthonormal the other directions end.

    With ``method="householder"`` it is ``torch.linalg.qr`` of ``X^H`` instead (then Q has
    ``min(m, n)`` columns and R that many rows).

    >>> X = torch.tensor([[[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]]], dtype=torch.float64)
    >>> Qh, R, info = orth_rows(X)
    >>> bool(torch.allclose(R.mH @ Qh, X)), int(info)  # exact although the rows are dependent
    (True, 0)
    """
    if method == "householder":
        Q, R = torch.linalg.qr(X.mH)
        if not want_r:
            return Q.mH, None, None
        return Q.mH, R, torch.zeros(X.shape[0], dtype=torch.int32, device=X.device)
    B, m, n = X.shape
    shift = _shift(n, m, X.dtype)
    tiny = _constant("tiny", real_dtype(X.dtype), X.device)
    L_all = status = None
    for i in range(passes):
        gram = torch.empty(B, m, m, dtype=X.dtype, device=X.device)
        gram.baddbmm_(X, X.mH, beta=0, alpha=1 / (1 + shift))  # beta=0: empty is not read
        d = gram.diagonal(dim1=-2, dim2=-1)
        torch.add(tiny, d, alpha=1 + shift, out=d)  # the diagonal unscaled, plus tiny
        L, info = torch.linalg.cholesky_ex(gram)
        # the first pass keeps the caller's X; later ones overwrite our own rows
        X = torch.linalg.solve_triangular(L, X, upper=False, out=X if i else None)
        if want_r:
            L_all = L if L_all is None else L_all @ L
            status = info if status is None else status | info
    return X, None if L_all is None else L_all.mH, status


# -- the step ---------------------------------------------------------------------------


def _as_batch(A: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A as a (B, N, N) view, or as a copy (True) when its batch dimensions are not viewable."""
    try:
        return A.view(-1, *A.shape[-2:]), False
    except RuntimeError:
        return A.reshape(-1, *A.shape[-2:]), True


def _rows(blocks: list[torch.Tensor]) -> torch.Tensor:
    """The row blocks stacked in double precision (one kernel: cat converts)."""
    first = blocks[0]
    shape = (first.shape[0], sum(b.shape[-2] for b in blocks), first.shape[-1])
    out = torch.empty(shape, dtype=wide_dtype(first.dtype), device=first.device)
    return torch.cat(blocks, dim=-2, out=out)


def _update(A3, X, k, variant, scale, guard, valid, skipped, method) -> None:
    """The projUNN update of A3 (B, N, N) in place for ``scale * a b^H``, given the rows
    ``X = [b^H; (A^H a)^H]`` (B, 2k, N) in double precision (torch operators; ``method``: how
    :func:`orth_rows` builds the basis)."""
    Qh, R, info = orth_rows(X, method=method)
    K = R[..., k:] @ R[..., :k].mH  # coordinates of (A^H a) b^H
    if variant == "T":
        E, ok = expm1_skew(K - K.mH, 0.5 * scale)
    else:
        eye = _constant("eye", K.dtype, K.device, K.shape[-1])
        E, ok = polar_minus_identity(torch.add(eye, K, alpha=scale))
    if guard:
        # ok is already false where the small problem is not finite (NaN compares false)
        ok = ok & (info == 0) & finite(Qh)
        if valid is not None:
            ok = ok & valid.reshape(-1)
        if skipped is not None:
            skipped.add_(ok.logical_not().sum())
        ok = ok.view(-1, 1, 1)
        zero = _constant("zero", X.dtype, X.device)
        Qh, E = torch.where(ok, Qh, zero), torch.where(ok, E, zero)
    Qh = Qh.to(A3.dtype)
    left = times(A3, Qh.mH) @ E.to(A3.dtype)
    A3.baddbmm_(left, Qh)


def _fused_update(A3, X, variant, scale, guard, valid, skipped, sketch=None) -> None:
    """The same update through the fused small problem (section 7.1): the Gram matrix of the
    rows X (B, 2k, N) in A's dtype (and of ``sketch``, the rows ``a^H`` of the range finder's
    basis), the coefficient matrix C, and ``A += (A X^H) C X``. X is zeroed where the step is
    skipped."""
    if valid is not None:
        valid = valid.reshape(-1)
    cplx = X.is_complex()
    partials = fused.gram(X, sketch, conj_second=cplx)
    C = fused.small_problem(partials, X, valid, skipped, variant, scale, sketch is not None, guard)
    left = times(A3, X.mH) @ C
    A3.baddbmm_(left, X)


def _rows_buffer(A3: torch.Tensor, k: int) -> torch.Tensor:
    return torch.empty(A3.shape[0], 2 * k, A3.shape[-1], dtype=A3.dtype, device=A3.device)


@torch.no_grad()
def kernel(
    A: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    variant: str,
    *,
    guard: bool = True,
    valid: torch.Tensor | None = None,
    skipped: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """projUNN-``variant`` ("T" or "D") of A (..., N, N) by ``a b^H`` (a, b (..., N, k)), in
    place and without host synchronization; the arguments are assumed valid (the public
    entry points :func:`projunn_core.projunn_t` / ``projunn_d`` check them).

    ``guard``: a matrix whose step is not finite, out of range or not converged is left
    unchanged, also where the boolean tensor ``valid`` (one entry per matrix) is false, and
    counted into the integer tensor ``skipped``. ``impl``: one of :data:`IMPLS`. Returns A.
    """
    n, k = A.shape[-1], a.shape[-1]
    impl = resolve_impl(impl, A, k)
    A3, copied = _as_batch(A)
    ah = a.reshape(-1, n, k).mH
    if impl == "fused":
        X = _rows_buffer(A3, k)
        X[:, :k].copy_(b.reshape(-1, n, k).mH)
        torch.matmul(ah, A3, out=X[:, k:])
        _fused_update(A3, X, variant, 1.0, guard, valid, skipped)
    else:
        X = _rows([b.reshape(-1, n, k).mH, ah @ A3])
        _update(A3, X, k, variant, 1.0, guard, valid, skipped, impl)
    return A.copy_(A3.view(A.shape)) if copied else A


def _range_rows(G3: torch.Tensor, k: int, generator, power_iters: int, method: str):
    """``a^H`` (B, k, N): an orthonormal basis of the range of ``G Omega`` (randomized range
    finder; Omega Gaussian, drawn as :func:`projunn_core.lowrank` draws it)."""
    Y = _sketch(G3, k, generator, power_iters, method)
    return _orth_sketch(Y, G3.dtype, method)


def _sketch(G3, k, generator, power_iters, method):
    """``Y = (G G^H)^q G Omega`` (B, N, k), re-orthonormalized between the products."""
    omega = torch.randn(
        G3.shape[0], G3.shape[-1], k, dtype=G3.dtype, device=G3.device, generator=generator
    )
    Y = G3 @ omega
    for _ in range(power_iters):
        Yh = _orth_sketch(Y, G3.dtype, method)
        Y = G3 @ (G3.mH @ Yh.mH)
    return Y


def _orth_sketch(Y, dtype, method):
    # single precision cannot see the ~1e-12 a third pass removes (module docstring)
    passes = ORTH_PASSES + (dtype in (torch.float64, torch.complex128))
    return orth_rows(Y.mH.to(wide_dtype(dtype)), passes, want_r=False, method=method)[0].to(dtype)


@torch.no_grad()
def step(
    A: torch.Tensor,
    G: torch.Tensor,
    rank: int,
    variant: str,
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    power_iters: int = 0,
    guard: bool = True,
    valid: torch.Tensor | None = None,
    skipped: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """One projUNN step without host synchronization: A (..., N, N) moves in place by the
    rank-``rank`` range-finder approximation of ``scale * G`` (``a = orth(G Omega)``,
    ``b = G^H a``) through projUNN-``variant``. Arguments are assumed valid; ``guard``,
    ``valid``, ``skipped`` and ``impl`` as in :func:`kernel`. Returns A.
    """
    n = A.shape[-1]
    impl = resolve_impl(impl, A, rank)
    A3, copied = _as_batch(A)
    G3 = G.reshape(-1, n, n)
    if impl == "fused":
        Y = _sketch(G3, rank, generator, power_iters, "cholesky")
        cplx = A.is_complex()  # Y^H and a^H go to the Gram kernel as Y^T and a^T, conjugated
        a = Y @ fused.sketch_basis(fused.gram(Y.mT, conj_first=cplx), rank, n, A.dtype)
        X = _rows_buffer(A3, rank)
        torch.matmul(a.mH, G3, out=X[:, :rank])  # b^H
        torch.matmul(a.mH, A3, out=X[:, rank:])  # (A^H a)^H
        _fused_update(A3, X, variant, scale, guard, valid, skipped, sketch=a.mT)
    else:
        ah = _range_rows(G3, rank, generator, power_iters, impl)
        X = _rows([ah @ G3, ah @ A3])  # b^H, (A^H a)^H
        _update(A3, X, rank, variant, scale, guard, valid, skipped, impl)
    return A.copy_(A3.view(A.shape)) if copied else A
