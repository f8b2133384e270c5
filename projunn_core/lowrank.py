"""Rank-k approximations ``G ~ a b^H`` of a gradient, in O(k N^2).

Methods:

* ``"range"`` -- randomized range finder of the column space (Halko, Martinsson & Tropp
  2011): ``Y = G Omega`` for a Gaussian ``Omega`` (optionally refined by power
  iterations), ``a = orth(Y)``, ``b = G^H a``, so ``a b^H = a a^H G``. Exact whenever
  ``rank(G) <= k``. ``"lsi"`` is accepted as its historical name: the original projUNN
  code's LSI sketches the row space instead (``G ~ G v v^H``, v from an SVD of the
  sketch ``R^H G``); that is this method applied to ``G^H``, with the same error
  distribution for a Gaussian sketch (see docs/design.md).
* ``"column"`` -- column sampling (Drineas, Kannan, Mahoney): draw ``c = oversample * k``
  columns with probability proportional to their squared norm, rescale, keep the top-k
  left singular directions ``U_k`` of the sample; ``a = U_k``, ``b = G^H U_k``.
* ``"exact"`` -- truncated SVD (O(N^3)): the best rank-k approximation, for reference.

>>> import torch
>>> G = torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 6, dtype=torch.float64)
>>> a, b = lowrank(G, 2)
>>> torch.allclose(a @ b.mH, G)
True
"""

from __future__ import annotations

import torch

from ._checks import check_choice, check_finite, check_matrix, check_rank, real_dtype, wide_dtype
from ._products import adjoint_times, times

__all__ = ["lowrank", "lowrank_method", "LOWRANK_ALIASES", "LOWRANK_METHODS"]

LOWRANK_METHODS = ("range", "column", "exact")
LOWRANK_ALIASES = {"lsi": "range"}
"""Other accepted names: ``"lsi"``, the method's name in earlier versions."""


def lowrank_method(name: str, value) -> str:
    """The canonical name of low-rank method ``value`` (an alias is resolved).

    >>> lowrank_method("approx", "lsi")
    'range'
    """
    check_choice(name, value, LOWRANK_METHODS + tuple(LOWRANK_ALIASES))
    return LOWRANK_ALIASES.get(value, value)


def check_power_iters(power_iters) -> int:
    """``power_iters`` of the range finder: a non-negative int (not a bool)."""
    if isinstance(power_iters, bool) or not isinstance(power_iters, int) or power_iters < 0:
        raise ValueError(f"power_iters must be a non-negative int, got {power_iters!r}")
    return power_iters


def _gaussian(shape, like: torch.Tensor, generator) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, dtype=like.dtype, device=device, generator=generator).to(like.device)


def _range(G, k, generator, power_iters):
    Y = times(G, _gaussian((*G.shape[:-2], G.shape[-1], k), G, generator))
    for _ in range(power_iters):
        Y = torch.linalg.qr(Y)[0]
        Y = times(G, adjoint_times(G, Y))
    a = torch.linalg.qr(Y)[0]
    return a, adjoint_times(G, a)


def _column(G, k, generator, oversample):
    n_cols = G.shape[-1]
    c = max(k, int(round(oversample * k)))
    norms = torch.linalg.vector_norm(G, dim=-2, dtype=wide_dtype(G.dtype))  # cannot overflow
    check_finite("G", norms)
    weights = norms.reshape(-1, n_cols) ** 2
    totals = weights.sum(dim=-1, keepdim=True)
    zero = totals.squeeze(-1) == 0
    probs = torch.where(zero.unsqueeze(-1), torch.ones_like(weights), weights / totals)
    device = generator.device if generator is not None else probs.device
    idx = torch.multinomial(probs.to(device), c, replacement=True, generator=generator)
    idx = idx.to(G.device)
    p = probs.gather(-1, idx).reshape(*G.shape[:-2], 1, c)
    idx = idx.reshape(*G.shape[:-2], 1, c).expand(*G.shape[:-1], c)
    C = G.gather(-1, idx) / torch.sqrt(c * p).to(real_dtype(G.dtype))
    U = torch.linalg.svd(C, full_matrices=False)[0][..., :k]  # descending: the top k
    a = U
    b = adjoint_times(G, a)
    return a, b


def _exact(G, k):
    check_finite("G", G)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)  # descending singular values
    a = U[..., :k] * S[..., None, :k].to(G.dtype)
    return a, Vh[..., :k, :].mH


@torch.no_grad()
def lowrank(
    G: torch.Tensor,
    k: int,
    method: str = "range",
    *,
    generator: torch.Generator | None = None,
    oversample: float = 4.0,
    power_iters: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``a`` (..., M, k) and ``b`` (..., N, k) with ``G ~ a b^H`` for G (..., M, N).

    Non-finite entries in G give non-finite factors ("range") or a ``ValueError``.
    ``generator`` seeds the randomized methods; ``oversample`` (column sampling) sets
    the number of sampled columns to ``oversample * k``; ``power_iters`` (range) sharpens
    the subspace on gradients with a slowly decaying spectrum.

    >>> import torch
    >>> a, b = lowrank(torch.eye(4), 1, "exact")
    >>> a.shape, b.shape
    (torch.Size([4, 1]), torch.Size([4, 1]))
    """
    check_matrix("G", G)
    check_rank("k", k, min(G.shape[-2:]))
    method = lowrank_method("method", method)
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    check_power_iters(power_iters)
    if method == "range":
        return _range(G, k, generator, power_iters)
    if method == "column":
        return _column(G, k, generator, oversample)
    return _exact(G, k)
