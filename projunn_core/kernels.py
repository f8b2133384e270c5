"""In-place rank-k unitary updates in O(k N^2): projUNN-T and projUNN-D.

Both kernels reduce to a small problem in an orthonormal basis Q of span[b, A^H a]
(``N x m``, ``m = min(N, 2k)``) and one in-place rank-m update of A:

    A <- A + (A Q) E Q^H

projUNN-T: ``E = exp(M) - I`` with ``M = (p_a p_b^H - p_b p_a^H) / 2``.
projUNN-D: ``E = P - I`` with ``P`` the polar factor of ``I + p_a p_b^H``, because
``A + a b^H = A (I + Q p_a p_b^H Q^H)`` and A is unitary.
Here ``p_a = Q^H A^H a`` and ``p_b = Q^H b`` are read off the R factor of the QR
decomposition of ``[b, A^H a]``. The small problem is solved in double precision.

>>> import torch, projunn_core as pc
>>> A = torch.eye(4, dtype=torch.float64)
>>> a, b = torch.randn(4, 1, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
>>> pc.projunn_t(A, a, b) is A, pc.unitarity_error(A) < 1e-14
(True, True)
"""

from __future__ import annotations

import torch

from . import syncfree
from ._checks import check_finite, check_like, check_square

__all__ = ["projunn_t", "projunn_d"]


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype.is_complex else torch.float64


def _exp_skew_minus_identity(M: torch.Tensor) -> torch.Tensor:
    """``exp(M) - I`` for skew-Hermitian M, unitary to round-off (eigh of ``iM``).

    ``exp(-i lam) - 1 = -2 sin^2(lam / 2) - i sin(lam)`` avoids cancellation.
    """
    lam, V = torch.linalg.eigh(1j * M if M.is_complex() else 1j * M.to(_wide(torch.complex64)))
    d = torch.complex(-2 * torch.sin(lam / 2) ** 2, -torch.sin(lam))
    E = (V * d.unsqueeze(-2)) @ V.mH
    return E if M.is_complex() else E.real


def _polar_minus_identity(C: torch.Tensor) -> torch.Tensor:
    """``U V^H - I`` for ``C = U S V^H``: the closest unitary to C, minus I.

    Where C is singular the closest unitary is not unique; one of them is returned.
    """
    U, _, Vh = torch.linalg.svd(C)
    P = U @ Vh
    return P - torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)


def _small_problem(A: torch.Tensor, a: torch.Tensor, b: torch.Tensor, check: bool):
    """Basis Q (A's dtype), and p_a, p_b in double precision."""
    k = a.shape[-1]
    a_hat = A.mH @ a  # one pass over A
    if check:
        check_finite("A^H a (a too large for the dtype?)", a_hat)
    X = torch.cat([b, a_hat], dim=-1).to(_wide(A.dtype))
    Q, R = torch.linalg.qr(X)  # exact: X = Q R, so b and a_hat lie in span Q
    return Q, R[..., :, k:], R[..., :, :k]


def _apply(A: torch.Tensor, Q: torch.Tensor, E: torch.Tensor, check: bool) -> torch.Tensor:
    """A <- A + (A Q) E Q^H in place; A is untouched if E is not finite."""
    if check:
        check_finite("the small update matrix (inputs too large?)", E)
    Qw = Q.to(A.dtype)
    E = E.to(A.dtype)
    left = (A @ Qw) @ E  # one pass over A
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
    if check:
        check_finite("a", a)
        check_finite("b", b)


@torch.no_grad()
def projunn_t(
    A: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    check: bool = True,
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
) -> torch.Tensor:
    """projUNN-T, in place: ``A <- A exp(skew(A^H a b^H))``; returns A.

    A (..., N, N) unitary; a, b (..., N, k) with the same dtype and device.
    ``check=False`` skips the finiteness checks (no host synchronization, but the small
    eigenproblem still synchronizes a GPU).
    ``sync_free=True``: the same step with no host synchronization
    (:mod:`projunn_core.syncfree`, CUDA-graph capturable); ``check`` then leaves A
    unchanged on the device instead of raising, counted in the int tensor ``skipped``.

    >>> import torch
    >>> A = torch.eye(3); a = torch.zeros(3, 1); b = torch.ones(3, 1)
    >>> torch.equal(projunn_t(A, a, b), torch.eye(3))
    True
    """
    if sync_free:
        _validate(A, a, b, False)
        check_counter(skipped, A)
        return syncfree.kernel(A, a, b, "T", guard=check, skipped=skipped)
    _validate(A, a, b, check)
    Q, pa, pb = _small_problem(A, a, b, check)
    M = 0.5 * (pa @ pb.mH - pb @ pa.mH)
    return _apply(A, Q, _exp_skew_minus_identity(M), check)


@torch.no_grad()
def projunn_d(
    A: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    check: bool = True,
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
) -> torch.Tensor:
    """projUNN-D, in place: ``A <-`` the closest unitary to ``A + a b^H``; returns A.

    A (..., N, N) unitary; a, b (..., N, k) with the same dtype and device.
    ``check=False`` skips the finiteness checks (no host synchronization, but the small
    SVD still synchronizes a GPU).
    ``sync_free=True``: the same step with no host synchronization
    (:mod:`projunn_core.syncfree`, CUDA-graph capturable); ``check`` then leaves A
    unchanged on the device instead of raising, counted in the int tensor ``skipped``.

    >>> import torch
    >>> A = torch.eye(2, dtype=torch.float64); a = torch.tensor([[1.0], [0.0]], dtype=A.dtype)
    >>> projunn_d(A, a, a)  # diag(2, 1) -> its polar factor I
    tensor([[1., 0.],
            [0., 1.]], dtype=torch.float64)
    """
    if sync_free:
        _validate(A, a, b, False)
        check_counter(skipped, A)
        return syncfree.kernel(A, a, b, "D", guard=check, skipped=skipped)
    _validate(A, a, b, check)
    Q, pa, pb = _small_problem(A, a, b, check)
    m = Q.shape[-1]
    C = torch.eye(m, dtype=pa.dtype, device=pa.device) + pa @ pb.mH
    return _apply(A, Q, _polar_minus_identity(C), check)
