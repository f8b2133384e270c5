"""scoRNN (Helfrich, Willmott & Ye 2018): W = (I + S)^-1 (I - S) D with S = X - X^H.

Real: D = diag(+-1) (a buffer) with ``n_negative`` entries -1 (default n // 2: the
Cayley factor alone has det +1 and no eigenvalue -1, D restores both). Complex: D =
diag(exp(i phi)) with phi trainable, initialised to pi on ``n_negative`` entries (default
0) and 0 elsewhere. The inverse is never formed: ``torch.linalg.solve``.

>>> import torch
>>> A = torch.eye(3, dtype=torch.float64)
>>> _ = cayley_step(A, torch.randn(3, 3, dtype=torch.float64), 0.1)
>>> bool(torch.allclose(A.T @ A, torch.eye(3, dtype=torch.float64)))
True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import BaseUnitary, real_dtype

__all__ = ["CayleyUnitary", "cayley_step"]


@torch.no_grad()
def cayley_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """Wen–Yin Cayley retraction in place; returns ``A``.

    ``Omega = G A^H - A G^H``; ``A <- (I + lr/2 Omega)^-1 (I - lr/2 Omega) A``.

    >>> A = torch.eye(2); cayley_step(A, torch.zeros(2, 2), 0.1) is A
    True
    """
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    half = (0.5 * lr) * (G @ A.mH - A @ G.mH)
    A.copy_(torch.linalg.solve(eye + half, A - half @ A))
    return A


class CayleyUnitary(BaseUnitary):
    """``W = (I + S)^-1 (I - S) D``, ``S = X - X^H``; X (and phi when complex) trained.

    Options: ``n_negative`` (see module doc; 0 <= n_negative <= n), ``init``
    ("identity": X = 0 so W = D, the default; "random": X ~ N(0, 1/n)).

    >>> import torch
    >>> m = CayleyUnitary(4, n_negative=1)
    >>> torch.diagonal(m.matrix()).tolist()
    [-1.0, 1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        n_negative: int | None = None,
        init: str = "identity",
    ):
        super().__init__(n, dtype, device)
        n = self.n
        if n_negative is None:
            n_negative = 0 if self.is_complex else n // 2
        k = n_negative
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ValueError(f"n_negative must be an integer in [0, n={n}], got {k!r}")
        if init not in ("identity", "random"):
            raise ValueError(f"init must be 'identity' or 'random', got {init!r}")
        self.n_negative = k
        X = torch.zeros(n, n, dtype=self.dtype, device=self.device)
        if init == "random":
            X.normal_(0.0, 1.0 / math.sqrt(n))
        self.X = nn.Parameter(X)
        rdt = real_dtype(self.dtype)
        sign = torch.ones(n, dtype=rdt, device=self.device)
        sign[:k] = -1
        if self.is_complex:
            self.phi = nn.Parameter(torch.where(sign < 0, math.pi, 0.0).to(rdt))
            self.register_buffer("sign", None)
        else:
            self.register_parameter("phi", None)
            self.register_buffer("sign", sign)

    def diagonal_factor(self) -> torch.Tensor:
        """The entries of D (±1 when real, exp(i phi) when complex)."""
        if self.phi is not None:
            return torch.polar(torch.ones_like(self.phi), self.phi)
        return self.sign

    def matrix(self) -> torch.Tensor:
        S = self.X - self.X.mH
        eye = torch.eye(self.n, dtype=self.dtype, device=S.device)
        return torch.linalg.solve(eye + S, eye - S) * self.diagonal_factor().unsqueeze(-2)
