"""Shared helpers for the baseline unitary layers: validation, Haar init, projected optimizers.

>>> import torch
>>> W = haar_unitary(4, torch.float64)
>>> bool(torch.allclose(W.T @ W, torch.eye(4, dtype=torch.float64)))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from projunn_core._checks import SUPPORTED_DTYPES, check_dtype, check_size, real_dtype
from projunn_core.init import haar, initial_matrix
from projunn_core.optim import make as make_optimizer

__all__ = [
    "SUPPORTED_DTYPES",
    "MIN_N",
    "BaseUnitary",
    "expm_skew",
    "haar_unitary",
    "initial_unitary",
    "projected_optimizer",
    "real_dtype",
    "skew",
]


MIN_N = 2
"""Smallest size of a baseline layer. projunn_core accepts n = 1, but a 1 x 1 real
orthogonal matrix is +1 or -1, which no parametrization can train (EUNN has no pair to
rotate, Cayley's and expRNN's skew matrix is 0), and a 1 x 1 complex one is only a phase;
the baselines are compared on genuine matrices."""


def haar_unitary(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """A Haar-random ``n x n`` orthogonal (real dtype) or unitary (complex dtype) matrix,
    ``n >= 2`` (:func:`projunn_core.init.haar`).

    >>> haar_unitary(3, torch.complex128).shape
    torch.Size([3, 3])
    """
    return haar(check_size("n", n, minimum=MIN_N), dtype=dtype, device=device, generator=generator)


def initial_unitary(init: str, n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ``n x n`` starting unitary named ``init`` ("haar", "identity", "henaff",
    "cayley": :data:`projunn_core.init.INITS`), drawn from the global generator.

    >>> initial_unitary("identity", 2)
    tensor([[1., 0.],
            [0., 1.]])
    """
    return initial_matrix(init, check_size("n", n, minimum=MIN_N), dtype=dtype, device=device)


def skew(X: torch.Tensor) -> torch.Tensor:
    """Skew-Hermitian part ``(X - X^H) / 2``.

    >>> skew(torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
    tensor([[ 0.,  1.],
            [-1.,  0.]])
    """
    return (X - X.mH) / 2


# Taylor coefficients 1/k! for the double-precision exponential below.
_TAYLOR_DEGREE = 16
_TAYLOR_COEFFS = [1.0 / math.factorial(k) for k in range(_TAYLOR_DEGREE + 1)]


def _expm_taylor(M: torch.Tensor) -> torch.Tensor:
    """exp(M) by scaling and squaring with a degree-16 Taylor polynomial (Paterson–Stockmeyer).

    After scaling ``||M / 2^s||_1 <= 1/2`` the truncation error is below 2e-20, i.e. below
    double round-off; 7 matrix products plus ``s`` squarings. Differentiable by autograd.
    """
    norm = float(torch.linalg.matrix_norm(M.detach(), ord=1).max())
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0 else 0
    A = M / (2.0**s) if s else M
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M)
    A2 = A @ A
    A3 = A2 @ A
    A4 = A2 @ A2
    c = _TAYLOR_COEFFS
    powers = (eye, A, A2, A3)
    # p(A) = B0 + A4 (B1 + A4 (B2 + A4 (B3 + A4 c16 I))), Bj = sum_i c[4j+i] A^i
    acc = c[16] * eye
    for j in (3, 2, 1, 0):
        block = sum(c[4 * j + i] * powers[i] for i in range(4))
        acc = block + A4 @ acc
    for _ in range(s):
        acc = acc @ acc
    return acc


def expm_skew(M: torch.Tensor) -> torch.Tensor:
    """``exp(M)`` for skew-Hermitian ``M`` (differentiable), unitary to round-off.

    Single precision uses ``torch.linalg.matrix_exp``. Double precision uses our own
    scaling-and-squaring Taylor exponential followed by one Newton–Schulz polish
    ``E (3I - E^H E) / 2``: torch's float64 ``matrix_exp`` is off by up to ~1e-12 for
    ``||M||_1`` around 0.01-0.05 (exactly the size of a small gradient step; see
    docs/design.md), which ``scipy.linalg.expm`` comparisons expose.

    >>> import math
    >>> M = torch.tensor([[0.0, -0.03], [0.03, 0.0]], dtype=torch.float64)
    >>> abs(float(expm_skew(M)[1, 0]) - math.sin(0.03)) < 1e-17
    True
    """
    if M.dtype not in (torch.float64, torch.complex128):
        return torch.linalg.matrix_exp(M)
    E = _expm_taylor(M)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return E @ (1.5 * eye - 0.5 * (E.mH @ E))


def projected_optimizer(
    name: str, params, lr: float, project: Callable[[], None], **kw
) -> torch.optim.Optimizer:
    """The named optimizer (``projunn_core.optim``: torch's update, non-finite gradients
    skipped) whose ``step()`` runs ``project()`` (under no_grad) after it.

    The projection is registered as a step post-hook, so the returned object is a genuine
    ``torch.optim`` optimizer (state_dict, LR schedulers and ``zero_grad`` work as usual).

    >>> p = nn.Parameter(torch.ones(2))
    >>> opt = projected_optimizer("sgd", [p], 0.1, lambda: p.clamp_(max=0.5))
    >>> p.grad = torch.zeros(2); opt.step(); p.tolist()
    [0.5, 0.5]
    """
    opt = make_optimizer(name, params, lr, **kw)

    def _hook(_opt, _args, _kwargs):
        with torch.no_grad():
            project()

    opt.register_step_post_hook(_hook)
    return opt


class BaseUnitary(nn.Module):
    """Common base: validates ``n``/``dtype``, default forward ``x @ matrix().mT``.

    Subclasses implement ``matrix()``; parametrized ones inherit ``optimizer()``.
    """

    def __init__(self, n: int, dtype=torch.float32, device=None):
        super().__init__()
        self.n = check_size("n", n, minimum=MIN_N)
        self.dtype = check_dtype("dtype", dtype)
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    @property
    def is_complex(self) -> bool:
        return self.dtype.is_complex

    def matrix(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix().mT

    def operator(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> x @ W.mT`` with ``W = matrix()`` built once, now (see
        ``projunn_core.protocol.sequence_operator``); gradients flow through W."""
        W = self.matrix()
        return lambda x: x @ W.mT

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """Standard optimizer over the parameters (the parametrization keeps W unitary);
        ``projunn_core.optim``'s, so a non-finite gradient is skipped, never written."""
        return make_optimizer(name, self.parameters(), lr, **kw)

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}"
