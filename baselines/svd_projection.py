"""Projection baseline: a plain optimizer step on W, then W <- closest unitary (polar via SVD).

>>> import torch
>>> A = torch.eye(3, dtype=torch.float64)
>>> _ = svd_step(A, torch.randn(3, 3, dtype=torch.float64), 0.1)
>>> bool(torch.allclose(A.T @ A, torch.eye(3, dtype=torch.float64)))
True
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaseUnitary, initial_unitary, projected_optimizer

__all__ = ["SVDProjection", "polar_unitary", "svd_step"]


def polar_unitary(B: torch.Tensor) -> torch.Tensor:
    """The closest unitary to ``B`` in Frobenius norm, ``U V^H`` from ``B = U S V^H``.

    >>> polar_unitary(2 * torch.eye(2))
    tensor([[1., 0.],
            [0., 1.]])
    """
    U, _, Vh = torch.linalg.svd(B, full_matrices=False)
    return U @ Vh


@torch.no_grad()
def svd_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """In place ``A <- polar(A - lr * G)``; returns ``A``.

    >>> A = torch.eye(2); svd_step(A, torch.zeros(2, 2), 0.1) is A
    True
    """
    A.copy_(polar_unitary(A - lr * G))
    return A


class SVDProjection(BaseUnitary):
    """Weight ``W``; ``optimizer().step()`` = plain step, then W <- U V^H.

    Option: ``init`` (a name of ``projunn_core.init.INITS``; default "haar").

    >>> import torch
    >>> m = SVDProjection(4)
    >>> opt = m.optimizer("sgd", lr=0.1)
    >>> m(torch.randn(2, 4)).pow(2).sum().backward(); opt.step()
    >>> from projunn_core.protocol import unitarity_error
    >>> unitarity_error(m.matrix()) < 1e-5
    True
    """

    def __init__(self, n: int, dtype=torch.float32, device=None, *, init: str = "haar"):
        super().__init__(n, dtype, device)
        self.weight = nn.Parameter(initial_unitary(init, self.n, self.dtype, self.device))

    def matrix(self) -> torch.Tensor:
        return self.weight

    @torch.no_grad()
    def project(self) -> None:
        """Replace W by its closest unitary (in place)."""
        self.weight.copy_(polar_unitary(self.weight))

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """The named torch optimizer on W with the polar projection after every step."""
        return projected_optimizer(name, self.parameters(), lr, self.project, **kw)
