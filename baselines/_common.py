"""Shared helpers for the baseline unitary layers: validation, Haar init, projected optimizers.

>>> import torch
>>> W = haar_unitary(4, torch.float64)
>>> bool(torch.allclose(W.T @ W, torch.eye(4, dtype=torch.float64)))
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from projunn_core.protocol import check_optimizer_name, torch_optimizer

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)

__all__ = [
    "SUPPORTED_DTYPES",
    "BaseUnitary",
    "check_dtype",
    "check_n",
    "expm_skew",
    "haar_unitary",
    "projected_optimizer",
    "real_dtype",
    "skew",
]


def check_n(n) -> int:
    """Return ``n`` as an int, or raise ``ValueError`` unless it is an integer >= 2.

    >>> check_n(4)
    4
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    return n


def check_dtype(dtype) -> torch.dtype:
    """Return ``dtype``, or raise ``TypeError`` unless it is float32/64 or complex64/128.

    >>> check_dtype(torch.complex64)
    torch.complex64
    """
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"dtype must be one of {names}, got {dtype!r}")
    return dtype


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (float32 for complex64, ...).

    >>> real_dtype(torch.complex128)
    torch.float64
    """
    return torch.empty((), dtype=dtype).real.dtype


def haar_unitary(n: int, dtype=torch.float32, device=None, generator=None) -> torch.Tensor:
    """A Haar-random ``n x n`` orthogonal (real dtype) or unitary (complex dtype) matrix.

    QR of a Gaussian matrix with the phases of ``diag(R)`` moved into ``Q`` (Mezzadri).

    >>> haar_unitary(3, torch.complex128).shape
    torch.Size([3, 3])
    """
    n = check_n(n)
    dtype = check_dtype(dtype)
    # Draw in double precision so the float32 result is orthogonal to float32 round-off.
    work = torch.complex128 if dtype.is_complex else torch.float64
    Z = torch.randn(n, n, dtype=work, device=device, generator=generator)
    Q, R = torch.linalg.qr(Z)
    d = torch.diagonal(R)
    phase = d / d.abs().clamp_min(torch.finfo(torch.float64).tiny)
    return (Q * phase.unsqueeze(-2)).to(dtype)


def skew(X: torch.Tensor) -> torch.Tensor:
    """Skew-Hermitian part ``(X - X^H) / 2``.

    >>> skew(torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
    tensor([[ 0.,  1.],
            [-1.,  0.]])
    """
    return (X - X.mH) / 2


def expm_skew(M: torch.Tensor) -> torch.Tensor:
    """``exp(M)`` for skew-Hermitian ``M`` (differentiable), unitary to round-off.

    Uses ``torch.linalg.matrix_exp``; in double precision one Newton–Schulz polish
    ``E (3I - E^H E) / 2`` follows, because ``matrix_exp`` alone has been seen to leave
    unitarity errors ~1e-12 (DESIGN.md pitfall 1). The polish moves E by O(that error).

    >>> import math
    >>> M = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    >>> E = expm_skew(M)
    >>> round(float(E[1, 0]), 12) == round(math.sin(1.0), 12)
    True
    """
    E = torch.linalg.matrix_exp(M)
    if M.dtype in (torch.float64, torch.complex128):
        n = M.shape[-1]
        eye = torch.eye(n, dtype=M.dtype, device=M.device)
        E = E @ (1.5 * eye - 0.5 * (E.mH @ E))
    return E


def projected_optimizer(
    name: str, params, lr: float, project: Callable[[], None], **kw
) -> torch.optim.Optimizer:
    """A standard torch optimizer whose ``step()`` runs ``project()`` (under no_grad) after it.

    The projection is registered as a step post-hook, so the returned object is the genuine
    ``torch.optim`` optimizer (state_dict, LR schedulers and ``zero_grad`` work as usual).

    >>> p = nn.Parameter(torch.ones(2))
    >>> opt = projected_optimizer("sgd", [p], 0.1, lambda: p.clamp_(max=0.5))
    >>> p.grad = torch.zeros(2); opt.step(); p.tolist()
    [0.5, 0.5]
    """
    opt = torch_optimizer(check_optimizer_name(name), params, lr, **kw)

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
        self.n = check_n(n)
        self.dtype = check_dtype(dtype)
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    @property
    def is_complex(self) -> bool:
        return self.dtype.is_complex

    def matrix(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix().mT

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """Standard torch optimizer over the parameters (the parametrization keeps W unitary)."""
        return torch_optimizer(check_optimizer_name(name), self.parameters(), lr, **kw)

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}"
