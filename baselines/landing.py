"""Landing (Ablin & Peyré, AISTATS 2022): training near the unitary group without retraction.

One step moves ``X`` (n x n, real or complex, batched ``(..., n, n)`` too) along the
*landing field*

    Λ(X) = ψ(X) X + λ ∇N(X),   ψ(X) = skew(G X^H),   ∇N(X) = (X X^H − I) X,

``G`` the Euclidean gradient, ``skew(A) = (A − A^H) / 2`` and ``N(X) = ¼‖X X^H − I‖²_F``.
The first term is the relative gradient: it leaves ``X X^H`` unchanged to first order; the
second pulls ``X`` back towards the manifold. A step ``X <- X − η Λ(X)`` costs three
matrix products (``X X^H``, ``G X^H``, ``(ψ + λ(X X^H − I)) X``): no exponential, solve or
QR. X is **not** exactly unitary: ``η = min(lr, η*)``, with η* the *safe step*
(:func:`safe_step_size`), keeps the distance ``d = ‖X X^H − I‖_F`` below the tolerance
``eps`` at every step, and with a vanishing gradient ``d`` decays to zero.

``distance()`` of the layers reports ``‖X X^H − I‖_F / sqrt(n)``, the normalisation of
``projunn_core.unitarity_error`` (it is that number: X is square). docs/design.md
("Landing") derives the safe step and explains the optimizers' choices.

>>> import torch
>>> A = torch.eye(3, dtype=torch.float64)
>>> _ = landing_step(A, torch.randn(3, 3, dtype=torch.float64), 0.1)
>>> float(torch.linalg.matrix_norm(A @ A.mT - torch.eye(3, dtype=torch.float64))) <= 0.5
True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from projunn_core._checks import all_finite, check_square
from projunn_core.conv import StoredFrequencyConv2d
from projunn_core.protocol import check_optimizer_name, unitarity_error

from ._common import BaseUnitary, initial_unitary, skew

__all__ = [
    "Landing",
    "LandingAdam",
    "LandingConv2d",
    "LandingRMSprop",
    "LandingSGD",
    "landing_distance",
    "landing_step",
    "make_landing_optimizer",
    "safe_step_size",
]


def _check_lam(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 < lam < math.inf:
        raise ValueError(f"lam (the attraction weight λ) must be a positive number, got {lam!r}")
    return float(lam)


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(
            f"eps (the tolerance on ||X X^H - I||_F) must be a number in (0, 1), got {eps!r}"
        )
    return float(eps)


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0:
        raise ValueError(f"lr must be a number >= 0 (inf: always the safe step), got {lr!r}")
    return float(lr)


def safe_step_size(a, d, lam: float = 1.0, eps: float = 0.5) -> torch.Tensor:
    """The largest step η with the guarantee ``‖X̃ X̃^H − I‖_F <= eps`` for
    ``X̃ = X − η Λ(X)``, from ``a = ‖skew(G X^H)‖_F`` and ``d = ‖X X^H − I‖_F <= eps``
    (tensors of any matching shape; elementwise).

    The update satisfies ``‖X̃ X̃^H − I‖_F <= d − α η + β η²`` for ``η <= 1 / (2λ)``, with

        α = 2 d (λ (1 − d) − a),   β = (1 + d) (a² + λ² d²),

    so ``η* = min((α + sqrt(α² + 4β(eps − d))) / (2β), 1 / (2λ))``, the positive root of
    ``d − α η + β η² = eps`` (Ablin & Peyré 2022, the "safe step size" of the landing
    algorithm; these constants are derived in docs/design.md, "Landing"). Computed in the
    cancellation-free form ``2 (eps − d) / (sqrt(·) − α)`` when ``α < 0``. A point
    outside the region (``d > eps``: only a start off the manifold) gets the largest step
    whose bound is back below eps where one exists (``α > 0``, ``α² >= 4β(d − eps)``),
    else the step that minimises the bound, ``max(α, 0) / (2β)``, which is 0 when the
    gradient term dominates (``a >= λ(1 − d)``); a zero field (``a = d = 0``) gets ``inf``.

    >>> round(float(safe_step_size(torch.tensor(2.0), torch.tensor(0.0), 1.0, 0.5)), 6)
    0.353553
    """
    a, d = torch.as_tensor(a), torch.as_tensor(d)
    alpha = 2 * d * (lam * (1 - d) - a)
    beta = (1 + d) * (a * a + (lam * d) ** 2)
    disc = alpha * alpha + 4 * beta * (eps - d)
    root = torch.sqrt(disc.clamp_min(0))
    safe_beta = torch.where(beta > 0, beta, torch.ones_like(beta))
    positive = (alpha + root) / (2 * safe_beta)  # alpha >= 0: no cancellation
    negative = 2 * (eps - d) / (root - alpha).clamp_min(torch.finfo(root.dtype).tiny)
    eta = torch.where(alpha >= 0, positive, negative)
    eta = torch.where(disc < 0, alpha.clamp_min(0) / (2 * safe_beta), eta)
    eta = torch.where(beta > 0, eta, torch.full_like(eta, math.inf))
    return eta.clamp(min=0, max=1 / (2 * lam))


def _landing_update(X: torch.Tensor, D: torch.Tensor, lr: float, lam: float, eps: float):
    """``X − η Λ(X)`` for the direction D (the gradient, or its moments), a new tensor;
    η = min(lr, safe step) per matrix."""
    M = X @ X.mH
    M.diagonal(dim1=-2, dim2=-1).sub_(1)  # Δ = X X^H − I
    psi = skew(D @ X.mH)
    a = torch.linalg.matrix_norm(psi)
    d = torch.linalg.matrix_norm(M)
    eta = safe_step_size(a, d, lam, eps).clamp(max=lr)
    return X - eta[..., None, None] * ((psi + lam * M) @ X)


@torch.no_grad()
def landing_step(
    A: torch.Tensor, G: torch.Tensor, lr: float, *, lam: float = 1.0, eps: float = 0.5
) -> torch.Tensor:
    """One landing step in place, ``A <- A − η (skew(G A^H) A + λ (A A^H − I) A)`` with
    ``η = min(lr, safe_step_size(...))`` per matrix (``lr=math.inf``: the safe step
    itself); returns ``A``. Batched ``(..., N, N)`` inputs take one step size per matrix.
    Three matrix products, no factorisation.

    >>> A = torch.eye(2); landing_step(A, torch.zeros(2, 2), 0.1) is A
    True
    """
    check_square("A", A)
    if G.shape != A.shape:
        raise ValueError(f"G must have A's shape {tuple(A.shape)}, got {tuple(G.shape)}")
    A.copy_(_landing_update(A, G, _check_lr(lr), _check_lam(lam), _check_eps(eps)))
    return A


def landing_distance(X: torch.Tensor) -> float:
    """``‖X X^H − I‖_F / sqrt(n)`` in double precision (the largest over a batch); for a
    square X it equals ``projunn_core.unitarity_error(X)``.

    >>> landing_distance(2 * torch.eye(4))
    3.0
    """
    return unitarity_error(X)


class _LandingOptimizer(torch.optim.Optimizer):
    """Base of the landing optimizers: per parameter (an ``(..., n, n)`` square matrix or
    batch of them), ``direction()`` turns the Euclidean gradient into the moment-based
    direction D, then the landing step with ψ = skew(D X^H) and the safe step size.

    A parameter whose gradient is not finite is skipped (weight and moments unchanged) and
    counted in ``skipped_steps``; so is one whose new value would not be finite.
    ``skip_nonfinite=False`` removes the check (and its host synchronization).
    """

    def __init__(self, params, defaults: dict, *, skip_nonfinite: bool = True):
        _check_lr(defaults["lr"])
        _check_lam(defaults["lam"])
        _check_eps(defaults["tolerance"])
        self.skip_nonfinite = bool(skip_nonfinite)
        self._skipped = 0
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            check_square("a landing parameter", p)

    @property
    def skipped_steps(self) -> int:
        """Parameters skipped so far for a non-finite gradient or update."""
        return self._skipped

    def direction(self, grad, state, group):  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if self.skip_nonfinite and not all_finite(p.grad):
                    self._skipped += 1
                    continue
                D = self.direction(p.grad, self.state[p], group)
                new = _landing_update(p, D, group["lr"], group["lam"], group["tolerance"])
                if self.skip_nonfinite and not all_finite(new):
                    self._skipped += 1
                    continue
                p.copy_(new)
        return loss


class LandingSGD(_LandingOptimizer):
    """Landing with (optionally) momentum on the Euclidean gradient:
    ``B <- μ B + (1 − dampening) G`` (``B = G`` at the first step, as torch's SGD), and
    D = B, or ``G + μ B`` with ``nesterov``; ``momentum=0`` is the plain landing step.
    ``lam``/``tolerance``: λ and ε of :func:`landing_step`.

    >>> W = nn.Parameter(torch.eye(3)); opt = LandingSGD([W], lr=0.1, momentum=0.9)
    >>> W.grad = torch.randn(3, 3); opt.step(); landing_distance(W) < 0.5 / 3**0.5
    True
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        *,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        lam: float = 1.0,
        tolerance: float = 0.5,
        skip_nonfinite: bool = True,
    ):
        if not 0 <= momentum < 1 or not 0 <= dampening <= 1:
            raise ValueError(
                f"need 0 <= momentum < 1 and 0 <= dampening <= 1, got {momentum}, {dampening}"
            )
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("nesterov needs a momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            lam=lam,
            tolerance=tolerance,
        )
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite)

    def direction(self, grad, state, group):
        mu = group["momentum"]
        if mu == 0:
            return grad
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.clone()
        else:
            buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])
        return grad.add(buf, alpha=mu) if group["nesterov"] else buf


class LandingRMSprop(_LandingOptimizer):
    """Landing on ``D = G / (sqrt(v) + eps)``, ``v <- α v + (1 − α) |G|²`` (torch's
    RMSprop without centering or momentum; ``|G|`` the modulus of each complex entry)."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        *,
        alpha: float = 0.99,
        eps: float = 1e-8,
        lam: float = 1.0,
        tolerance: float = 0.5,
        skip_nonfinite: bool = True,
    ):
        if not 0 <= alpha < 1 or not eps > 0:
            raise ValueError(f"need 0 <= alpha < 1 and eps > 0, got {alpha}, {eps}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, lam=lam, tolerance=tolerance)
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite)

    def direction(self, grad, state, group):
        v = state.get("square_avg")
        if v is None:
            v = state["square_avg"] = torch.zeros_like(grad, dtype=grad.real.dtype)
        alpha = group["alpha"]
        v.mul_(alpha).add_(grad.abs().square(), alpha=1 - alpha)
        return grad / (v.sqrt() + group["eps"])


class LandingAdam(_LandingOptimizer):
    """Landing on Adam's direction of the Euclidean gradient,
    ``D = m̂ / (sqrt(v̂) + eps)`` with ``m <- β1 m + (1 − β1) G``,
    ``v <- β2 v + (1 − β2) |G|²`` and bias corrections (``|G|``: modulus per complex
    entry). The moments are those of G, not of the landing field: see docs/design.md."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lam: float = 1.0,
        tolerance: float = 0.5,
        skip_nonfinite: bool = True,
    ):
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0):
            raise ValueError(f"need 0 <= betas < 1 and eps > 0, got {betas}, {eps}")
        defaults = dict(lr=lr, betas=(b1, b2), eps=eps, lam=lam, tolerance=tolerance)
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite)

    def direction(self, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad, dtype=grad.real.dtype)
        b1, b2 = group["betas"]
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).add_(grad.abs().square(), alpha=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(group["eps"])
        return (m / (1 - b1**t)) / denom


LANDING_OPTIMIZERS = {"sgd": LandingSGD, "rmsprop": LandingRMSprop, "adam": LandingAdam}


def make_landing_optimizer(name: str, params, lr: float, **kw) -> _LandingOptimizer:
    """The landing optimizer called ``name`` ("sgd", "rmsprop" or "adam"); ``kw`` are its
    options (``lam``, ``tolerance``, and the moment options: momentum, betas, eps, ...).

    >>> make_landing_optimizer("lbfgs", [nn.Parameter(torch.eye(2))], 0.1)
    Traceback (most recent call last):
        ...
    ValueError: optimizer name must be one of ('sgd', 'rmsprop', 'adam'), got 'lbfgs'
    """
    return LANDING_OPTIMIZERS[check_optimizer_name(name)](params, lr, **kw)


class Landing(BaseUnitary):
    """A square weight X trained by the landing algorithm (``m(x) = x @ X.mT``).

    Options: ``init`` (the starting unitary, a name of ``projunn_core.init.INITS``;
    default "haar"), ``lam`` (λ > 0, the attraction weight; default 1) and ``eps`` (the
    tolerance ε on ``‖X X^H − I‖_F``, in (0, 1); default 0.5). ``matrix()`` is X as it is,
    near-unitary only: :meth:`distance` measures how near. ``optimizer(name, lr, **kw)``:
    "sgd" (``momentum``, ``nesterov``), "rmsprop", "adam"; ``lam``/``tolerance`` in ``kw``
    override the layer's.

    >>> m = Landing(4, torch.float64, init="identity")
    >>> opt = m.optimizer("adam", lr=0.05)
    >>> m(torch.randn(8, 4, dtype=torch.float64)).sum().backward(); opt.step()
    >>> 0 < m.distance() <= 0.5 / 2
    True
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        init: str = "haar",
        lam: float = 1.0,
        eps: float = 0.5,
    ):
        super().__init__(n, dtype, device)
        self.lam, self.eps = _check_lam(lam), _check_eps(eps)
        self.weight = nn.Parameter(initial_unitary(init, self.n, self.dtype, self.device))

    def matrix(self) -> torch.Tensor:
        return self.weight

    def distance(self) -> float:
        """``‖X X^H − I‖_F / sqrt(n)`` (float64): the accuracy figure of this layer."""
        return landing_distance(self.weight)

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> _LandingOptimizer:
        kw.setdefault("lam", self.lam)
        kw.setdefault("tolerance", self.eps)
        return make_landing_optimizer(name, [self.weight], lr, **kw)

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}, lam={self.lam}, eps={self.eps}"


class LandingConv2d(StoredFrequencyConv2d):
    """Circular C -> C convolution whose free frequency matrices (``weight_real``: the 1-4
    real self-conjugate ones, ``weight``: the complex ones; see
    ``projunn_core.conv.FrequencyLayout``) are each trained by the landing algorithm, with
    one safe step size per matrix. Real matrices stay real (real arithmetic) and the
    conjugate pairs consistent by construction. ``lam``/``eps`` as for :class:`Landing`,
    per frequency matrix; since every singular value σ of the operator is one of a
    frequency matrix, ``|σ − 1| <= ‖K K^H − I‖_F <= eps``.

    >>> conv = LandingConv2d(3, 6, 5, dtype=torch.float64)
    >>> opt = conv.optimizer("sgd", lr=0.1)
    >>> conv(torch.randn(2, 3, 6, 5, dtype=torch.float64)).sum().backward(); opt.step()
    >>> conv.distance() <= 0.5 / 3**0.5
    True
    """

    def __init__(
        self,
        channels,
        height,
        width,
        dtype=torch.float32,
        device=None,
        *,
        init="haar",
        generator=None,
        lam: float = 1.0,
        eps: float = 0.5,
    ):
        super().__init__(channels, height, width, dtype, device, init=init, generator=generator)
        self.lam, self.eps = _check_lam(lam), _check_eps(eps)

    def distance(self) -> float:
        """The largest ``‖K K^H − I‖_F / sqrt(C)`` over the frequency matrices (float64)."""
        return max(landing_distance(p) for p in self.free_matrices())

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> _LandingOptimizer:
        kw.setdefault("lam", self.lam)
        kw.setdefault("tolerance", self.eps)
        return make_landing_optimizer(name, self.free_matrices(), lr, **kw)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lam={self.lam}, eps={self.eps}"
