"""Unconstrained reference: a plain square linear map trained by a standard optimizer.

W starts Haar-orthogonal but is NOT kept unitary: this is the cost floor and the
instability reference (the unitarity tests exempt it).

>>> import torch
>>> A = torch.eye(2); unconstrained_step(A, torch.ones(2, 2), 0.5)
tensor([[ 0.5000, -0.5000],
        [-0.5000,  0.5000]])
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaseUnitary, initial_unitary

__all__ = ["Unconstrained", "unconstrained_step"]


@torch.no_grad()
def unconstrained_step(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """In place ``A <- A - lr * G`` (plain gradient step); returns ``A``.

    >>> A = torch.zeros(2, 2); unconstrained_step(A, torch.eye(2), 1.0) is A
    True
    """
    return A.add_(G, alpha=-lr)


class Unconstrained(BaseUnitary):
    """Square weight ``W``, ``m(x) = x @ W.mT``; the optimizer is plain. Option: ``init``
    (the starting unitary, a name of ``projunn_core.init.INITS``; default "haar").

    ``matrix()`` returns W, which drifts away from unitarity as it trains.

    >>> import torch
    >>> m = Unconstrained(3)
    >>> m(torch.ones(1, 3)).shape
    torch.Size([1, 3])
    """

    def __init__(self, n: int, dtype=torch.float32, device=None, *, init: str = "haar"):
        super().__init__(n, dtype, device)
        self.weight = nn.Parameter(initial_unitary(init, self.n, self.dtype, self.device))

    def matrix(self) -> torch.Tensor:
        return self.weight
