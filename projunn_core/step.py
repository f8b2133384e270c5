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
    check_no_overlap,
    check_rank,
    check_square,
)
from .kernels import check_counter, check_impl, polar_update, projunn_d, projunn_t, tangent_update
from .lowrank import check_power_iters, lowrank, lowrank_method
from .syncfree import step as sync_free_step

__all__ = ["projunn_step", "projunn_update", "SYNC_FREE_APPROX", "VARIANTS"]

VARIANTS = {"T": projunn_t, "D": projunn_d}
_EAGER = {"T": tangent_update, "D": polar_update}

SYNC_FREE_APPROX = ("range",)
"""Low-rank methods of the sync-free path (``sync_free=True``): the range finder (alias
"lsi"); column sampling and the truncated SVD synchronize the host."""


def _check_options(rank, variant, approx, n) -> None:
    check_rank("rank", rank, n)
    check_choice("variant", variant, tuple(VARIANTS))
    lowrank_method("approx", approx)


def check_sync_free_setup(approx, generator, device, who="sync_free=True", where=None):
    """The low-rank method and generator of a sync-free step, on ``device`` (also the
    capturable optimizers' check; ``who`` and ``where`` word the message)."""
    if lowrank_method("approx", approx) not in SYNC_FREE_APPROX:
        raise ValueError(
            f"{who} needs approx in {SYNC_FREE_APPROX} (the range finder, also called "
            f"lsi); approx={approx!r} synchronizes the host"
        )
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"{who} needs a generator on {where or device}, got a {generator.device} generator"
        )


def check_sync_free(A, approx, generator, skipped, approx_options) -> int:
    """Check the arguments of a sync-free step (host metadata only); return power_iters."""
    check_sync_free_setup(approx, generator, A.device)
    check_counter(skipped, A)
    unknown = sorted(set(approx_options) - {"oversample", "power_iters"})
    if unknown:
        raise TypeError(f"unknown approximation option(s) {unknown}")
    return check_power_iters(approx_options.get("power_iters", 0))


@torch.no_grad()
def _update(
    A,
    delta,
    name,
    rank,
    variant,
    approx,
    scale,
    check,
    generator,
    approx_options,
    sync_free,
    skipped,
    impl,
):
    impl = check_impl(impl, sync_free)
    n = check_square("A", A)
    check_no_overlap("A", A)  # both paths write A in place
    check_like(name, delta, A, last=n)
    if delta.shape != A.shape:
        raise ValueError(f"{name} must have A's shape {tuple(A.shape)}, got {tuple(delta.shape)}")
    _check_options(rank, variant, approx, n)
    if sync_free:
        power_iters = check_sync_free(A, approx, generator, skipped, approx_options)
        return sync_free_step(
            A,
            delta,
            rank,
            variant,
            scale=scale,
            generator=generator,
            power_iters=power_iters,
            guard=check,
            skipped=skipped,
            impl=impl,
        )
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
    # a, b come from lowrank(delta) and were checked above: the kernels' bodies directly
    return _EAGER[variant](A, a, b, check)


def projunn_update(
    A: torch.Tensor,
    delta: torch.Tensor,
    *,
    rank: int = 1,
    variant: str = "T",
    approx: str = "range",
    check: bool = True,
    generator: torch.Generator | None = None,
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
    impl: str | None = None,
    **approx_options,
) -> torch.Tensor:
    """Move unitary A, in place, by the additive update ``delta`` (N x N) applied
    through its rank-``rank`` approximation; returns A. (What an optimizer calls.)
    ``sync_free``, ``skipped`` and ``impl`` as in :func:`projunn_step`.

    >>> import torch
    >>> A = torch.eye(4); projunn_update(A, torch.zeros(4, 4)).equal(torch.eye(4))
    True
    """
    return _update(
        A,
        delta,
        "delta",
        rank,
        variant,
        approx,
        1.0,
        check,
        generator,
        approx_options,
        sync_free,
        skipped,
        impl,
    )


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
    sync_free: bool = False,
    skipped: torch.Tensor | None = None,
    impl: str | None = None,
    **approx_options,
) -> torch.Tensor:
    """Move unitary A, in place, by the additive update ``-lr * G`` through its rank-k
    approximation (``variant`` "T": tangent step, "D": closest unitary); returns A.

    ``approx`` picks the low-rank method (see :func:`projunn_core.lowrank`), whose
    options (``oversample``, ``power_iters``) pass through. ``check=False`` skips the
    checks of values (finite inputs, a unitary A), which synchronize a GPU with the host.

    ``sync_free=True`` takes the step with no host synchronization at all, so that a
    CUDA graph can capture it (:mod:`projunn_core.syncfree`; the range finder
    ``approx="range"`` only, ``generator`` on A's device). ``check`` then works on the
    device: a matrix whose step is not finite (or out of the exponential's range, or
    not converged) is left unchanged and counted into ``skipped`` (a 0-dim int64 tensor
    on A's device), instead of raising. A seed gives the same sketch as the eager path.
    ``impl`` (with ``sync_free=True`` only) picks the implementation of the sync-free step:
    one of :data:`projunn_core.syncfree.IMPLS`; the default ``"auto"`` takes the fused Triton
    kernel (:mod:`projunn_core.fused`) where it can run, else torch operators.

    >>> import torch, projunn_core as pc
    >>> A, G = pc.init.haar(6), torch.randn(6, 6)
    >>> B = A.clone()
    >>> _ = projunn_step(A, G, 0.1, 2, generator=torch.Generator().manual_seed(0))
    >>> _ = projunn_step(B, G, 0.1, 2, generator=torch.Generator().manual_seed(0), sync_free=True)
    >>> bool(torch.allclose(A, B, atol=1e-6))
    True
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number, got {lr!r}")
    return _update(
        A,
        G,
        "G",
        rank,
        variant,
        approx,
        -float(lr),
        check,
        generator,
        approx_options,
        sync_free,
        skipped,
        impl,
    )
