"""Baseline orthogonal convolutions with the interface of ``projunn_core.nn.OrthogonalConv2d``.

All are circular convolutions, C -> C channels on an H x W grid, built as
``Layer(channels, height, width, dtype=..., device=..., **options)``, with ``forward`` on
``(B, C, H, W)`` real inputs, ``matrix()`` the ``(H, W // 2 + 1, C, C)`` frequency matrices
and ``optimizer(name, lr, **kw)``:

* :class:`CayleyConv2d` -- Trockman & Kolter (ICLR 2021): a k x k kernel (plus a learned
  scale alpha), its FFT, and the Cayley transform ``(I + A)^-1 (I - A)`` of
  ``A = S - S^H`` at every frequency (``S = alpha * FFT / ||FFT||``).
* :class:`ExpmConv2d` -- matrix exponential per frequency: ``B(u, v) exp(X - X^H)`` with the
  free frequency matrices X trained and B a fixed orthogonal convolution.
* :class:`SVDConv2d` -- a plain step on the free frequency matrices, then every one is
  replaced by its closest unitary (SVD polar factor).
* :class:`SOCConv2d` -- skew-orthogonal convolution (Singla & Feizi, ICML 2021): the
  truncated Taylor series ``sum_{i <= terms} L^i x / i!`` of a skew-symmetric k x k
  convolution L, evaluated in the spatial domain. It is orthogonal only up to the
  truncation; ``orthogonality_error(m.matrix())`` measures what is left (``matrix()``
  evaluates the same truncated series per frequency).
* :class:`UnconstrainedConv2d` -- the free frequency matrices trained by a plain optimizer
  (no constraint): the cost floor.

Circular padding throughout (SOC's paper pads with zeros), so that every method realises
an operator on the same space and the FFT describes it exactly.

>>> import torch
>>> m = CayleyConv2d(3, 6, 6, dtype=torch.float64)
>>> x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
>>> bool(torch.isclose(m(x).norm(), x.norm()))
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from projunn_core._checks import check_size
from projunn_core.conv import FourierConv2d, StoredFrequencyConv2d

from ._common import expm_skew, projected_optimizer
from .svd_projection import polar_unitary

__all__ = [
    "CONV_LAYERS",
    "CayleyConv2d",
    "ExpmConv2d",
    "SOCConv2d",
    "SVDConv2d",
    "UnconstrainedConv2d",
    "correlation_spectrum",
]


def _kernel_size(k, height: int, width: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int, got {k!r}")
    if k > min(height, width):
        raise ValueError(f"kernel_size={k} does not fit the {height} x {width} grid")
    return k


def correlation_spectrum(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Frequency matrices ``(H, W // 2 + 1, C_out, C_in)`` of the circular, centred
    cross-correlation by ``kernel`` ``(C_out, C_in, k, k)``, k odd (what ``F.conv2d`` with
    circular padding k // 2 computes).

    >>> K = torch.zeros(1, 1, 3, 3, dtype=torch.float64); K[0, 0, 1, 2] = 1  # x[i, j + 1]
    >>> correlation_spectrum(K, 4, 4)[0, 1, 0, 0]  # shift by +1: exp(2 pi i / 4)
    tensor(0.+1.j, dtype=torch.complex128)
    """
    k = kernel.shape[-1]
    padded = F.pad(kernel.flip(-2, -1), (0, width - k, 0, height - k))
    centred = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.rfft2(centred).permute(2, 3, 0, 1)


def _on_nonempty(fn, batch: torch.Tensor) -> torch.Tensor:
    """``fn(batch)``, or ``batch`` itself when it holds no matrices."""
    return fn(batch) if batch.numel() else batch


class _KernelConv2d(FourierConv2d):
    """Base of the convolutions parametrized by an odd ``kernel_size`` x ``kernel_size``
    kernel ``weight`` (Cayley, SOC): checks the size and holds the generator for init."""

    def __init__(self, channels, height, width, dtype, device, kernel_size):
        super().__init__(channels, height, width, dtype, device)
        self.kernel_size = _kernel_size(kernel_size, height, width)

    def _kernel(self, scale: float, generator, device, uniform: bool = False) -> nn.Parameter:
        """A random kernel parameter: ``scale`` times uniform(-1, 1) or N(0, 1) entries."""
        shape = (self.channels, self.channels, self.kernel_size, self.kernel_size)
        draw = torch.rand if uniform else torch.randn
        w = draw(shape, dtype=self.dtype, generator=generator)
        return nn.Parameter((scale * (2 * w - 1 if uniform else w)).to(device))


class CayleyConv2d(_KernelConv2d):
    """Trockman & Kolter's Cayley convolution: trained k x k ``weight`` and scale ``alpha``.

    ``kernel_size`` (odd, default 3) is that of the *parameter*; the orthogonal operator
    it defines has full H x W support. ``weight`` starts like ``nn.Conv2d``'s (uniform,
    bound 1/sqrt(C k^2)) and ``alpha`` at the norm of its spectrum, as in the paper's code.
    Cost per forward: one FFT of the kernel and a batched C x C solve per frequency.
    """

    def __init__(
        self,
        channels,
        height,
        width,
        dtype=torch.float32,
        device=None,
        *,
        kernel_size=3,
        generator=None,
    ):
        super().__init__(channels, height, width, dtype, device, kernel_size)
        k = self.kernel_size
        self.weight = self._kernel(1.0 / math.sqrt(channels * k * k), generator, device, True)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(correlation_spectrum(self.weight, height, width))
        self.alpha = nn.Parameter(norm)

    def frequency_matrices(self) -> torch.Tensor:
        S = correlation_spectrum(self.weight, self.height, self.width)
        S = self.alpha * S / torch.linalg.vector_norm(S)
        A = S - S.mH
        eye = torch.eye(self.channels, dtype=A.dtype, device=A.device)
        return torch.linalg.solve(eye + A, eye - A)


class ExpmConv2d(StoredFrequencyConv2d):
    """``K(u, v) = B(u, v) exp(X(u, v) - X(u, v)^H)`` per free frequency: the stored
    frequency matrices (``init``: "haar" or "identity") are the fixed base B (frozen),
    X (zero at start, real where the frequency is self-conjugate) is trained by a plain
    optimizer. Cost per forward: a batched C x C exponential (and its backward)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for base in (self.weight_real, self.weight):
            base.requires_grad_(False)
        self.skew_real = nn.Parameter(torch.zeros_like(self.weight_real))
        self.skew = nn.Parameter(torch.zeros_like(self.weight))

    def frequency_matrices(self) -> torch.Tensor:
        def rotate(base, X):
            return base @ _on_nonempty(expm_skew, X - X.mH)

        return self.layout.assemble(
            rotate(self.weight_real, self.skew_real), rotate(self.weight, self.skew)
        )


class SVDConv2d(StoredFrequencyConv2d):
    """Free frequency matrices trained by a plain step, then each replaced by its closest
    unitary (``U V^H`` of its SVD). Cost per step: a batched C x C SVD."""

    @torch.no_grad()
    def project(self) -> None:
        """Replace every free frequency matrix by its polar factor (in place)."""
        for p in self.free_matrices():
            p.copy_(polar_unitary(p))

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        return projected_optimizer(name, self.parameters(), lr, self.project, **kw)


class UnconstrainedConv2d(StoredFrequencyConv2d):
    """Free frequency matrices (orthogonal at start) trained by a plain optimizer, with
    nothing keeping them unitary: the cost floor and drift reference."""


class SOCConv2d(_KernelConv2d):
    """Skew-orthogonal convolution: ``exp(L) x ~ sum_{i=0}^{terms} L^i x / i!``.

    ``L`` is the circular cross-correlation by ``correction * S / sigma``, ``S = (P - P^T) / 2``
    with ``P^T`` the channel-transposed, spatially flipped kernel (so L is skew-adjoint) and
    ``sigma`` an estimate of ``||S||_2``. Options follow the paper's code: ``kernel_size`` 3,
    ``train_terms`` 5, ``eval_terms`` 12 (``terms`` follows ``self.training``),
    ``correction`` 0.7, ``P ~ N(0, 1/C)``; sigma by power iteration with a persistent vector,
    ``init_iters`` (50) iterations at the start and every ``update_every`` (200) training
    forwards, ``update_iters`` (1) otherwise. Here the power iteration runs on the operator
    itself rather than on the paper's four reshapes of the kernel (its "Fantastic Four"
    bound), which the circular setting makes exact. Cost per forward: ``terms``
    convolutions with a k x k kernel.
    """

    def __init__(
        self,
        channels,
        height,
        width,
        dtype=torch.float32,
        device=None,
        *,
        kernel_size=3,
        train_terms=5,
        eval_terms=12,
        correction=0.7,
        init_iters=50,
        update_iters=1,
        update_every=200,
        generator=None,
    ):
        super().__init__(channels, height, width, dtype, device, kernel_size)
        for name, value in (
            ("train_terms", train_terms),
            ("eval_terms", eval_terms),
            ("init_iters", init_iters),
            ("update_every", update_every),
        ):
            check_size(name, value)
        if not 0 < correction <= 1:
            raise ValueError(f"correction must be in (0, 1], got {correction!r}")
        self.train_terms, self.eval_terms, self.correction = train_terms, eval_terms, correction
        self.init_iters, self.update_iters, self.update_every = (
            init_iters,
            update_iters,
            update_every,
        )
        self.weight = self._kernel(1.0 / math.sqrt(channels), generator, device)
        u = torch.randn(1, channels, height, width, dtype=dtype, generator=generator)
        self.register_buffer("power_vector", (u / torch.linalg.vector_norm(u)).to(device))
        self.forwards = 0
        with torch.no_grad():
            self._power_iterate(self.skew_kernel(), init_iters)

    @property
    def terms(self) -> int:
        """Taylor terms used now (``train_terms`` in training mode, else ``eval_terms``)."""
        return self.train_terms if self.training else self.eval_terms

    def skew_kernel(self) -> torch.Tensor:
        P = self.weight
        return 0.5 * (P - P.transpose(0, 1).flip(-2, -1))

    def _correlate(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        r = kernel.shape[-1] // 2
        return F.conv2d(F.pad(x, (r, r, r, r), mode="circular"), kernel)

    @torch.no_grad()
    def _power_iterate(self, kernel: torch.Tensor, iters: int) -> None:
        u = self.power_vector
        for _ in range(iters):  # L^T L = -L L for skew-adjoint L
            u = -self._correlate(self._correlate(u, kernel), kernel)
            u = u / torch.linalg.vector_norm(u).clamp_min(torch.finfo(u.dtype).tiny)
        self.power_vector.copy_(u)

    def normalized_kernel(self, update: bool = False) -> torch.Tensor:
        """``correction * S / sigma``; ``update`` first advances the power iteration."""
        S = self.skew_kernel()
        if update:
            first = self.forwards % self.update_every == 0
            self._power_iterate(S.detach(), self.init_iters if first else self.update_iters)
            self.forwards += 1
        sigma = torch.linalg.vector_norm(self._correlate(self.power_vector, S))
        return self.correction * S / sigma.clamp_min(torch.finfo(S.dtype).tiny)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = self.check_input(x)
        kernel = self.normalized_kernel(update=self.training)
        z = term = x4
        for i in range(1, self.terms + 1):
            term = self._correlate(term, kernel) / i
            z = z + term
        return z if x.dim() == 4 else z.squeeze(0)

    def frequency_matrices(self) -> torch.Tensor:
        """The truncated series per frequency: exactly the operator ``forward`` applies."""
        L = correlation_spectrum(self.normalized_kernel(), self.height, self.width)
        out = power = torch.eye(self.channels, dtype=L.dtype, device=L.device).expand_as(L)
        for i in range(1, self.terms + 1):
            power = power @ L / i
            out = out + power
        return out


CONV_LAYERS = {
    "cayley": CayleyConv2d,
    "expm": ExpmConv2d,
    "svd": SVDConv2d,
    "soc": SOCConv2d,
    "unconstrained": UnconstrainedConv2d,
}
"""Method name (as in the dense ``METHODS``) -> baseline convolution class."""
