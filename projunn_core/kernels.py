"""In-place rank-k unitary updates in O(k N^2): projUNN-T and projUNN-D.

Both kernels reduce to a small problem in an orthonormal basis Q of span[b, A^H a]
(``N x m``, ``m = min(N, 2k)``) and one in-place rank-m update of A:

    A <- A + (A Q) E Q^H

projUNN-T: ``E = exp(M) - I`` with ``M = (p_a p_b^H - p_b p_a^H) / 2``.
projUNN-D: ``E = P - I`` with ``P`` the polar factor of ``I + p_a p_b^H``, because
``A + a b^H = A (I + Q p_a p_b^H Q^H)`` and A is unitary.
Here ``p_a = Q^H A^H a`` and ``p_b = Q^H b`` are read off the R factor of the QR
decomposition of ``[b, A^H a]``. The small problem is solved in double precision.
The math, the checks and the host synchronizations: docs/design.md.

>>> import torch, projunn_core as pc
>>> A = torch.eye(4, dtype=torch.float64)
>>> a, b = torch.randn(4, 1, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
>>> pc.projunn_t(A, a, b) is A, pc.unitarity_error(A) < 1e-14
(True, True)
"""

from __future__ import annotations

import math

import torch

from . import syncfree
from ._checks import (
    check_finite,
    check_has_data,
    check_like,
    check_no_overlap,
    check_square,
    real_dtype,
    wide_dtype,
)
from ._products import adjoint_times, times

__all__ = ["projunn_t", "projunn_d", "residual_tolerance", "unitarity_tolerance"]


def _exp_skew_minus_identity(M: torch.Tensor) -> torch.Tensor:
    """``exp(M) - I`` (complex) for skew-Hermitian M, unitary to round-off (eigh of ``iM``).

    ``exp(-i lam) - 1 = -2 sin^2(lam / 2) - i sin(lam)`` avoids cancellation. For real M
    the imaginary part is round-off, to be dropped (see :func:`_check_real_rotation`).
    """
    lam, V = torch.linalg.eigh(1j * (M if M.is_complex() else M.to(torch.complex128)))
    d = torch.complex(-2 * torch.sin(lam / 2) ** 2, -torch.sin(lam))
    return (V * d.unsqueeze(-2)) @ V.mH


MAX_ROTATION = 1e8
"""Largest rotation angle (radians) of a real projUNN-T step the checked kernels compute:
beyond it double precision resolves the angle to worse than 1e-8 rad, and dropping the
imaginary part of exp no longer leaves an orthogonal matrix reliably."""


def _check_real_rotation(M: torch.Tensor, E: torch.Tensor, dtype: torch.dtype) -> None:
    """For real A, dropping ``Im E`` leaves ``Re(E + I)`` orthogonal up to ``|Im E|^2``;
    ``Im E`` is round-off unless the rotation angles are so large (around 1e8 rad and
    beyond) that double precision cannot resolve them. Refused: angles beyond
    :data:`MAX_ROTATION` (there ``Im E`` may still cancel by chance) and an ``Im E`` above
    round-off. (Complex weights keep E whole: unitary at any angle.)"""
    if not E.numel():
        return
    angle = float(torch.linalg.matrix_norm(M, ord=2).max())
    imaginary = float(E.imag.abs().max()) > math.sqrt(torch.finfo(dtype).eps)
    if angle > MAX_ROTATION or imaginary:
        raise ValueError(
            f"the update rotates by up to {angle:.3g} rad, too much to compute accurately "
            "(exp's real part would not be orthogonal): scale it down; A was left unchanged"
        )


def _polar_minus_identity(C: torch.Tensor) -> torch.Tensor:
    """``U V^H - I`` for ``C = U S V^H``: the closest unitary to C, minus I.

    Where C is singular the closest unitary is not unique; one of them is returned.
    """
    U, _, Vh = torch.linalg.svd(C)
    P = U @ Vh
    return P - torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)


def unitarity_tolerance(dtype: torch.dtype, n: int) -> float:
    """The largest ``| ||A^H v|| / ||v|| - 1 |`` the kernels' check accepts: ``sqrt(n eps)``.

    Since ``| ||A^H v|| / ||v|| - 1 | <= ||A^H A - I||_2 <= ||A^H A - I||_F``, every A with
    ``||A^H A - I||_F / sqrt(n) < sqrt(eps)`` passes (3.5e-4 in float32: drifted weights
    pass). See :func:`residual_tolerance` for the second, sharper half of the check.

    >>> round(unitarity_tolerance(torch.float32, 64), 4)
    0.0028
    """
    return math.sqrt(n * torch.finfo(real_dtype(dtype)).eps)


RESIDUAL_FACTOR = 10
""":func:`residual_tolerance` is this many times ``sqrt(eps)``."""


def residual_tolerance(dtype: torch.dtype) -> float:
    """The largest ``||A A^H v - v|| / ||v||`` the kernels' check accepts for the columns v
    of a and two fixed probes: ``10 sqrt(eps)`` (3.5e-3 in float32, 1.5e-7 in float64).

    For a probe spread over all coordinates, ``||(A A^H - I) v|| / ||v||`` estimates
    ``||A A^H - I||_F / sqrt(N)``, the unitarity error, whatever the defect: a scaled A
    (``1.01 A``: 0.02), a Gaussian matrix (about 1), one column 3x long (about 8 / sqrt(N))
    or zeroed (about 1 / sqrt(N)) all fail at N = 1024, while float32 drift (about 4e-5
    after 10^6 steps, ``results/drift.md``) and round-off (about eps sqrt(N)) pass.

    >>> residual_tolerance(torch.float32) == 10 * 2.0**-11.5
    True
    """
    return RESIDUAL_FACTOR * math.sqrt(torch.finfo(real_dtype(dtype)).eps)


_WEYL = (0.6180339887498949, 0.41421356237309515)  # golden ratio, sqrt(2): two probes


def _probe(A: torch.Tensor) -> torch.Tensor:
    """Two fixed spread-out directions (..., N, 2) (Weyl sequences: no random state used)."""
    n = A.shape[-1]
    x = torch.arange(1, n + 1, dtype=torch.float64, device=A.device).unsqueeze(-1)
    x = (x * torch.tensor(_WEYL, dtype=torch.float64, device=A.device)).frac_().sub_(0.5)
    return x.to(A.dtype).expand(*A.shape[:-2], n, len(_WEYL))


def _checked_adjoint_product(A: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``A^H a``, after checking that A is unitary where a and two probes can see: ``A^H``
    keeps their norms (:func:`unitarity_tolerance`) and ``A A^H`` maps them to themselves
    (:func:`residual_tolerance`). The probes ride along in the product A^H a; the
    residual costs one more pass over A; one host synchronization.
    """
    k = a.shape[-1]
    v = torch.cat([a, _probe(A)], dim=-1)
    w = adjoint_times(A, v)  # one pass over A
    wide = wide_dtype(A.dtype)
    nv = torch.linalg.vector_norm(v, dim=-2, dtype=wide)
    nw = torch.linalg.vector_norm(w, dim=-2, dtype=wide)
    residual = torch.linalg.vector_norm(times(A, w) - v, dim=-2, dtype=wide)  # another pass
    gaps = torch.where(nv > 0, (nw - nv).abs() / nv, 0.0)
    misses = torch.where(nv > 0, residual / nv, 0.0)
    both = torch.stack([gaps.amax(-1), misses.amax(-1)], dim=-1) if gaps.numel() else None
    gap, miss = both.reshape(-1, 2).amax(0).tolist() if both is not None else (0.0, 0.0)
    if not (math.isfinite(gap) and math.isfinite(miss)):
        check_finite("A^H a (a too large for the dtype?)", w)
    n = A.shape[-1]
    tol, res_tol = unitarity_tolerance(A.dtype, n), residual_tolerance(A.dtype)
    if gap > tol or miss > res_tol:
        what, value, limit = (
            ("| ||A^H v|| / ||v|| - 1 |", gap, tol)
            if gap / tol >= miss / res_tol
            else ("||A A^H v - v|| / ||v||", miss, res_tol)
        )
        raise ValueError(
            f"A is not unitary: {what} = {value:.3g} for a tested v, above the tolerance "
            f"{limit:.2g} for {A.dtype} at N = {n}; replace A by the closest unitary with "
            "projunn_core.reorthogonalize(A), or skip the checks with check=False; A was "
            "left unchanged"
        )
    return w[..., :k]


def _small_problem(A: torch.Tensor, a: torch.Tensor, b: torch.Tensor, check: bool):
    """Basis Q (A's dtype), and p_a, p_b in double precision."""
    k = a.shape[-1]
    a_hat = _checked_adjoint_product(A, a) if check else adjoint_times(A, a)
    X = torch.cat([b, a_hat], dim=-1).to(wide_dtype(A.dtype))
    Q, R = torch.linalg.qr(X)  # exact: X = Q R, so b and a_hat lie in span Q
    return Q, R[..., :, k:], R[..., :, :k]


def _apply(A: torch.Tensor, Q: torch.Tensor, E: torch.Tensor, check: bool) -> torch.Tensor:
    """A <- A + (A Q) E Q^H in place; A is untouched if E is not finite."""
    if check:
        check_finite("the small update matrix (inputs too large?)", E)
    Qw = Q.to(A.dtype)
    E = E.to(A.dtype)
    left = times(A, Qw) @ E  # one pass over A
    right = Qw.mH
    if A.dim() == 2:
        A.addmm_(left, right)
    else:
        try:
            A3 = A.view(-1, *A.shape[-2:])
            A3.baddbmm_(left.reshape(-1, *left.shape[-2:]), right.reshape(-1, *right.shape[-2:]))
        except RuntimeError:  # batch dims not viewable as one: fall back to a temporary
            A.add_(left @ right)
    return A


def check_impl(impl, sync_free: bool) -> str:
    """``impl`` (None, or one of :data:`projunn_core.syncfree.IMPLS`) for a step with
    ``sync_free``; returns the implementation to ask for (``"auto"`` when None). ``impl``
    chooses among implementations of the sync-free step, so it needs ``sync_free=True``.

    >>> check_impl(None, True), check_impl("householder", True)
    ('auto', 'householder')
    >>> check_impl("fused", False)
    Traceback (most recent call last):
        ...
    ValueError: impl='fused' chooses an implementation of the sync-free step: pass ...
    """
    if impl is None:
        return "auto"
    if not sync_free:
        raise ValueError(
            f"impl={impl!r} chooses an implementation of the sync-free step: pass "
            "sync_free=True with it"
        )
    if impl not in syncfree.IMPLS:
        raise ValueError(f"impl must be one of {syncfree.IMPLS}, got {impl!r}")
    return impl


def check_counter(skipped, A: torch.Tensor) -> None:
    """``skipped`` must be ``None`` or a 0-dim int64 tensor on A's device."""
    if skipped is not None and (
        not isinstance(skipped, torch.Tensor)
        or skipped.dtype != torch.int64
        or skipped.shape != ()
        or skipped.device != A.device
    ):
        raise TypeError(f"skipped must be a 0-dim int64 tensor on {A.device}")


def _validate(A, a, b, check: bool) -> None:
    n = check_square("A", A)
    check_like("a", a, A, last=n)
    check_like("b", b, A, last=n)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not 1 <= a.shape[-1] <= n:
        raise ValueError(
            f"the rank k (last dimension of a and b) must be in [1, {n}], got {a.shape[-1]}"
        )
    check_no_overlap("A", A)
    if check:
        check_has_data("A", A)
        check_finite("a", a)
        check_finite("b", b)


def _dispatch(variant, A, a, b, check, sync_free, skipped, impl) -> torch.Tensor:
    """Validate, then take the ``variant`` step eagerly or sync-free (see :func:`projunn_t`)."""
    impl = check_impl(impl, sync_free)
    if sync_free:
        _validate(A, a, b, False)
        check_counter(skipped, A)
        return syncfree.kernel(A, a, b, variant, guard=check, skipped=skipped, impl=impl)
    _validate(A, a, b, check)
    return (tangent_update if variant == "T" else polar_update)(A, a, b, check)


@torch.no_grad()
def projunn_t(
    A: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    check: bool = True,
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """projUNN-T, in place: ``A <- A exp(skew(A^H a b^H))``; returns A.

    A (..., N, N) unitary; a, b (..., N, k) with the same dtype and device.
    ``check=True`` refuses non-finite inputs, an A that is not unitary (see
    :func:`unitarity_tolerance`) and, for real A, rotations too large to compute in
    double precision; ``check=False`` skips these checks (but the small eigenproblem
    still synchronizes a GPU).
    ``sync_free=True``: the same step with no host synchronization
    (:mod:`projunn_core.syncfree`, CUDA-graph capturable); ``check`` then leaves A
    unchanged on the device instead of raising (non-finite or out-of-range steps; A is
    assumed unitary), counted in the 0-dim int64 tensor ``skipped``. ``impl`` (with
    ``sync_free=True`` only) picks its implementation, one of
    :data:`projunn_core.syncfree.IMPLS` (default ``"auto"``: the fused Triton kernel where it
    can run, else torch operators).

    >>> import torch
    >>> A = torch.eye(3); a = torch.zeros(3, 1); b = torch.ones(3, 1)
    >>> torch.equal(projunn_t(A, a, b), torch.eye(3))
    True
    """
    return _dispatch("T", A, a, b, check, sync_free, skipped, impl)


def tangent_update(A: torch.Tensor, a: torch.Tensor, b: torch.Tensor, check: bool):
    """:func:`projunn_t`'s eager body on inputs already validated (for callers that
    validated them on their own, like :func:`projunn_core.projunn_step`)."""
    Q, pa, pb = _small_problem(A, a, b, check)
    M = 0.5 * (pa @ pb.mH - pb @ pa.mH)
    E = _exp_skew_minus_identity(M)
    if A.is_complex():
        return _apply(A, Q, E, check)
    if check:
        _check_real_rotation(M, E, A.dtype)
    return _apply(A, Q, E.real, check)


@torch.no_grad()
def projunn_d(
    A: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    check: bool = True,
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """projUNN-D, in place: ``A <-`` the closest unitary to ``A + a b^H``; returns A.

    Arguments, checks, ``sync_free`` and ``impl`` as for :func:`projunn_t` (here the small SVD
    synchronizes a GPU even with ``check=False``).

    >>> import torch
    >>> A = torch.eye(2, dtype=torch.float64); a = torch.tensor([[1.0], [0.0]], dtype=A.dtype)
    >>> projunn_d(A, a, a)  # diag(2, 1) -> its polar factor I
    tensor([[1., 0.],
            [0., 1.]], dtype=torch.float64)
    """
    return _dispatch("D", A, a, b, check, sync_free, skipped, impl)


def polar_update(A: torch.Tensor, a: torch.Tensor, b: torch.Tensor, check: bool):
    """:func:`projunn_d`'s eager body on inputs already validated."""
    Q, pa, pb = _small_problem(A, a, b, check)
    m = Q.shape[-1]
    C = torch.eye(m, dtype=pa.dtype, device=pa.device) + pa @ pb.mH
    return _apply(A, Q, _polar_minus_identity(C), check)
