"""expRNN (Lezcano-Casado & Martínez-Rubio 2019): W = B exp(X - X^H), X a free parameter.

Dynamic trivialization: with ``change_base_every=K`` every K optimizer steps fold the
exponential into the base, ``B <- B exp(X - X^H)``, and reset ``X <- 0`` (W unchanged).

>>> import torch
>>> A = torch.eye(3, dtype=torch.float64)
>>> _ = expm_step(A, torch.randn(3, 3, dtype=torch.float64), 0.1)
>>> bool(torch.allclose(A.T @ A, torch.eye(3, dtype=torch.float64)))
True
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaseUnitary, expm_skew, initial_unitary, projected_optimizer, skew

__all__ = ["ExpmUnitary", "expm_step"]


@torch.no_grad()
def expm_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """Riemannian gradient step in place: ``A <- A exp(-lr * skew(A^H G))``; returns ``A``.

    ``skew(X) = (X - X^H) / 2``.

    >>> A = torch.eye(2); expm_step(A, torch.zeros(2, 2), 0.1) is A
    True
    """
    A.copy_(A @ expm_skew(-lr * skew(A.mH @ G)))
    return A


class ExpmUnitary(BaseUnitary):
    """``W = B exp(X - X^H)``; X trained by a standard optimizer, B a buffer.

    Options: ``init`` (B, a name of ``projunn_core.init.INITS``: "haar", the default,
    "identity", "henaff", "cayley") — X starts at zero so W = B; ``change_base_every``
    (None or int K >= 1: dynamic trivialization every K optimizer steps, done inside the
    returned optimizer's ``step()``).

    >>> import torch
    >>> m = ExpmUnitary(4, init="identity")
    >>> bool(torch.equal(m.matrix(), torch.eye(4)))
    True
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        init: str = "haar",
        change_base_every: int | None = None,
    ):
        super().__init__(n, dtype, device)
        K = change_base_every
        if K is not None and (isinstance(K, bool) or not isinstance(K, int) or K < 1):
            raise ValueError(f"change_base_every must be None or an integer >= 1, got {K!r}")
        self.change_base_every = K
        self._steps = 0
        self.register_buffer("base", initial_unitary(init, self.n, self.dtype, self.device))
        self.X = nn.Parameter(torch.zeros(self.n, self.n, dtype=self.dtype, device=self.device))

    def matrix(self) -> torch.Tensor:
        return self.base @ expm_skew(self.X - self.X.mH)

    @torch.no_grad()
    def change_base(self) -> None:
        """Fold the exponential into the base and zero X (W is unchanged)."""
        self.base.copy_(self.matrix())
        self.X.zero_()

    def _after_step(self) -> None:
        self._steps += 1
        if self.change_base_every is not None and self._steps % self.change_base_every == 0:
            self.change_base()

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """Standard optimizer on X; with ``change_base_every`` its step also changes base."""
        return projected_optimizer(name, self.parameters(), lr, self._after_step, **kw)
