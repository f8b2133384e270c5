"""Repair of round-off drift: replace a nearly unitary matrix by its closest unitary, in place.

In float32 every update leaves an error of a few ulps, so ``||A^H A - I||_F / sqrt(N)``
grows like the square root of the number of steps (results/drift.md). Calling
:func:`reorthogonalize` now and then (or the optimizers' ``reorthogonalize_every``
option) brings it back to round-off.

>>> import torch, projunn_core as pc
>>> A = 1.001 * pc.init.haar(8)
>>> pc.reorthogonalize(A) is A, pc.unitarity_error(A) < 1e-6
(True, True)
"""

from __future__ import annotations

import math

import torch

from ._checks import check_finite, check_has_data, check_no_overlap, check_square, wide_dtype

__all__ = ["reorthogonalize", "NEWTON_SCHULZ_LIMIT"]

NEWTON_SCHULZ_LIMIT = 0.5
"""Up to this ``||A^H A - I||_F`` Newton-Schulz steps converge (quadratically); beyond it
the polar factor comes from an SVD."""


def _newton_schulz(W: torch.Tensor, E: torch.Tensor, eye, err: float, target: float):
    """Newton-Schulz polar steps ``W <- W (I - E / 2)``, ``E = W^H W - I``, until the bound
    ``err' <= 3/4 err^2 + 1/4 err^3`` on ``||E||_F`` falls to ``target``."""
    while err > target:
        W = W - 0.5 * (W @ E)
        err = 0.75 * err**2 + 0.25 * err**3
        if err > target:
            E = W.mH @ W - eye
    return W


@torch.no_grad()
def reorthogonalize(A: torch.Tensor) -> torch.Tensor:
    """Replace A (..., N, N), in place, by its closest unitary (orthogonal when real);
    returns A.

    Works in double precision: Newton-Schulz steps when A is nearly unitary (two N x N
    products per step; one or two steps for float32 drift), the SVD polar factor
    otherwise; the result is unitary to the round-off of A's dtype. Real stays real.
    One host synchronization (more when several steps are needed).

    >>> import torch
    >>> A = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    >>> reorthogonalize(A)
    tensor([[1., 0.],
            [0., 1.]])
    """
    check_square("A", A)
    check_no_overlap("A", A)
    check_has_data("A", A, "reorthogonalize reads its values")
    if A.numel() == 0:  # an empty batch
        return A
    W = A.to(wide_dtype(A.dtype))
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    E = W.mH @ W - eye
    err = float(torch.linalg.matrix_norm(E).max())
    if not math.isfinite(err):
        check_finite("A", A)  # names a non-finite A; otherwise A^H A overflowed
        raise ValueError("A^H A overflowed: A is far from unitary; A was left unchanged")
    if err < NEWTON_SCHULZ_LIMIT:
        W = _newton_schulz(W, E, eye, err, torch.finfo(A.dtype).eps)
    else:
        U, _, Vh = torch.linalg.svd(W)
        W = U @ Vh
    return A.copy_(W)
