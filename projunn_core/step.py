"""One projUNN step: rank-k approximation of an additive update, then a unitary kernel.

>>> import torch, projunn_core as pc
>>> A = pc.init.haar(8, dtype=torch.float64)
>>> G = torch.randn(8, 8, dtype=torch.float64)
>>> pc.projunn_step(A, G, lr=0.1, rank=2, variant="D") is A, pc.unitarity_error(A) < 1e-13
(True, True)
"""

from __future__ import annotations

import math

import torch

from ._checks import (
    all_finite,
    check_choice,
    check_finite,
    check_has_data,
    check_like,
    check_rank,
    check_square,
)
from .kernels import projunn_d, projunn_t
from .lowrank import lowrank, lowrank_method

__all__ = ["projunn_step", "projunn_update", "VARIANTS"]

VARIANTS = {"T": projunn_t, "D": projunn_d}


def _check_options(rank, variant, approx, n) -> None:
    check_rank("rank", rank, n)
    check_choice("variant", variant, tuple(VARIANTS))
    lowrank_method("approx", approx)


@torch.no_grad()
def _update(A, delta, name, rank, variant, approx, scale, check, generator, approx_options):
    n = check_square("A", A)
    check_like(name, delta, A, last=n)
    if delta.shape != A.shape:
        raise ValueError(f"{name} must have A's shape {tuple(A.shape)}, got {tuple(delta.shape)}")
    _check_options(rank, variant, approx, n)
    if check:
        check_has_data("A", A)
    a, b = lowrank(delta, rank, approx, generator=generator, **approx_options)
    if scale != 1.0:
        a = a * scale
    # b = delta^H a is non-finite wherever delta is: O(Nk) instead of O(N^2)
    if check and not (all_finite(a) and all_finite(b)):
        check_finite(name, delta)  # only now read all of delta, to say which it was
        what = name if scale == 1.0 else f"-lr * {name}"
        raise ValueError(
            f"the rank-{rank} factors of {what} overflowed {A.dtype} (largest |{name}| = "
            f"{float(delta.abs().max()):.3g}, finite): scale {name} down or use double "
            "precision; A was left unchanged"
        )
    return VARIANTS[variant](A, a, b, check=check)


def projunn_update(
    A: torch.Tensor,
    delta: torch.Tensor,
    *,
    rank: int = 1,
    variant: str = "T",
    approx: str = "range",
    check: bool = True,
    generator: torch.Generator | None = None,
    **approx_options,
) -> torch.Tensor:
    """Move unitary A, in place, by the additive update ``delta`` (N x N) applied
    through its rank-``rank`` approximation; returns A. (What an optimizer calls.)

    >>> import torch
    >>> A = torch.eye(4); projunn_update(A, torch.zeros(4, 4)).equal(torch.eye(4))
    True
    """
    return _update(A, delta, "delta", rank, variant, approx, 1.0, check, generator, approx_options)


def projunn_step(
    A: torch.Tensor,
    G: torch.Tensor,
    lr: float,
    rank: int = 1,
    variant: str = "T",
    approx: str = "range",
    *,
    check: bool = True,
    generator: torch.Generator | None = None,
    **approx_options,
) -> torch.Tensor:
    """Move unitary A, in place, by the additive update ``-lr * G`` through its rank-k
    approximation (``variant`` "T": tangent step, "D": closest unitary); returns A.

    ``approx`` picks the low-rank method (see :func:`projunn_core.lowrank`), whose
    options (``oversample``, ``power_iters``) pass through. ``check=False`` skips the
    checks of values (finite inputs, a unitary A), which synchronize a GPU with the host.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number, got {lr!r}")
    return _update(A, G, "G", rank, variant, approx, -float(lr), check, generator, approx_options)
