"""Initial unitary (orthogonal when real) matrices.

>>> import torch
>>> W = haar(5, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
>>> bool(torch.allclose(W.mH @ W, torch.eye(5, dtype=W.dtype)))
True
"""

from __future__ import annotations

import math

import torch

from ._checks import check_dtype, check_size, wide_dtype

__all__ = ["haar", "identity", "henaff", "cayley", "INITS", "initial_matrix"]


def _check(n: int, dtype: torch.dtype) -> None:
    check_size("n", n)
    check_dtype("dtype", dtype)


def _uniform(shape, low, high, generator, device, dtype=torch.float64):
    u = torch.rand(shape, generator=generator, dtype=dtype)
    return (low + (high - low) * u).to(device)


def haar(n: int, dtype=torch.float32, device=None, generator=None, *, batch=()) -> torch.Tensor:
    """Haar-random unitary: QR of a Gaussian matrix with the phases of R's diagonal removed.

    ``batch`` (a shape) draws that many independent ones, ``(*batch, n, n)``.
    """
    _check(n, dtype)
    where = generator.device if generator is not None else device
    Z = torch.randn(*batch, n, n, dtype=wide_dtype(dtype), device=where, generator=generator)
    Q, R = torch.linalg.qr(Z)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    Q = Q * torch.where(d == 0, torch.ones_like(d), d / d.abs()).unsqueeze(-2)
    return Q.to(dtype=dtype, device=device)


def identity(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """The identity."""
    _check(n, dtype)
    return torch.eye(n, dtype=dtype, device=device)


def _rotation_blocks(angles: torch.Tensor, n: int) -> torch.Tensor:
    W = torch.eye(n, dtype=torch.float64)
    c, s = torch.cos(angles), torch.sin(angles)
    i = torch.arange(0, 2 * len(angles), 2)
    W[i, i], W[i, i + 1], W[i + 1, i], W[i + 1, i + 1] = c, -s, s, c
    return W


def henaff(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """Henaff et al. (2016): block diagonal of 2x2 rotations, angles uniform in [-pi, pi]."""
    _check(n, dtype)
    W = _rotation_blocks(_uniform(n // 2, -math.pi, math.pi, generator, "cpu"), n)
    return W.to(dtype=dtype, device=device)


def cayley(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """scoRNN's initialisation (Helfrich et al. 2018): ``(I + S)^-1 (I - S)`` for a block
    diagonal skew S with entries ``sqrt((1 - cos t) / (1 + cos t))``, t uniform in [0, pi/2]."""
    _check(n, dtype)
    t = _uniform(n // 2, 0.0, math.pi / 2, generator, "cpu")
    s = torch.sqrt((1 - torch.cos(t)) / (1 + torch.cos(t)))
    S = torch.zeros(n, n, dtype=torch.float64)
    i = torch.arange(0, 2 * len(s), 2)
    S[i, i + 1], S[i + 1, i] = s, -s
    eye = torch.eye(n, dtype=torch.float64)
    W = torch.linalg.solve(eye + S, eye - S)
    return W.to(dtype=dtype, device=device)


INITS = {"haar": haar, "identity": identity, "henaff": henaff, "cayley": cayley}


def initial_matrix(init: str, n: int, dtype=torch.float32, device=None, generator=None):
    """The n x n unitary named ``init`` (one of ``INITS``)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {tuple(INITS)}, got {init!r}")
    return INITS[init](n, dtype=dtype, device=device, generator=generator)
