"""The protocol every unitary layer in this project follows, and helpers shared by it.

A *unitary layer* ``m`` is a ``torch.nn.Module`` with

* ``m(x)`` for ``x`` of shape ``(..., n)`` returning ``x @ m.matrix().mT``;
* ``m.matrix()`` returning the current ``n x n`` unitary (orthogonal when real);
* ``m.optimizer(name="sgd" | "rmsprop" | "adam", lr=..., **kw)`` returning an
  optimizer whose ``step()`` keeps ``m.matrix()`` unitary;
* optionally ``m.operator()`` returning a function ``h -> m(h)`` with everything that
  depends only on the parameters (W itself, for a parametrized layer) computed now, for a
  model that applies ``m`` many times between two optimizer steps (a sequence forward):
  see :func:`sequence_operator`.

>>> import torch
>>> unitarity_error(torch.eye(4))
0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

from ._checks import wide_dtype

OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam")


@runtime_checkable
class UnitaryLayer(Protocol):
    """Structural type of a unitary layer (see the module docstring)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def matrix(self) -> torch.Tensor: ...

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer: ...


def sequence_operator(layer) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``h -> layer(h)`` to apply at every step of one sequence forward.

    A layer's ``operator()`` builds what depends only on its parameters once (W for
    expm, Cayley, SVD, torch's parametrization, projUNN; the rotation coefficients for
    EUNN), so T steps pay for it once instead of T times; gradients flow through it to
    the parameters as usual. Call it once per forward: after an optimizer step it is
    stale. Layers without ``operator()`` are returned as they are.

    >>> layer = torch.nn.Linear(3, 3, bias=False)
    >>> sequence_operator(layer) is layer
    True
    """
    make = getattr(layer, "operator", None)
    return layer if make is None else make()


def check_optimizer_name(name: str) -> str:
    """Return ``name`` lower-cased, or raise ``ValueError`` naming the valid choices."""
    key = str(name).lower()
    if key not in OPTIMIZER_NAMES:
        raise ValueError(f"optimizer name must be one of {OPTIMIZER_NAMES}, got {name!r}")
    return key


def unitarity_error(W: torch.Tensor) -> float:
    """``||W^H W - I||_F / sqrt(N)`` computed in float64 (complex128 for complex W).

    Batched inputs ``(..., N, N)`` give the largest error over the batch.
    """
    W = W.detach()
    W = W.to(wide_dtype(W.dtype))
    n = W.shape[-1]
    eye = torch.eye(n, dtype=W.dtype, device=W.device)
    err = torch.linalg.matrix_norm(W.mH @ W - eye) / math.sqrt(n)
    return float(err.max())
