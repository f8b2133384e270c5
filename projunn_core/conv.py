"""Orthogonal 2-D circular convolutions in the Fourier domain, trained by projUNN.

A circular convolution with C input and C output channels on an H x W grid is
block-diagonalised by the 2-D DFT: ``Y(u, v) = K(u, v) X(u, v)`` with one C x C
*frequency matrix* ``K(u, v)`` per frequency. The convolution is orthogonal exactly when
every frequency matrix is unitary, and its singular values are theirs.

**Layout.** A real kernel has ``K(-u, -v) = conj(K(u, v))``, so ``rfft2`` keeps only the
columns ``v = 0 .. W // 2`` (``H x (W // 2 + 1)`` matrices). Within them:

* the frequencies that are their own conjugate, ``u in {0, H/2}`` x ``v in {0, W/2}``
  (halves only for even sizes), must hold *real* orthogonal matrices;
* in the columns ``v = 0`` and ``v = W/2`` (W even) row ``H - u`` is the conjugate of row
  ``u``, so only the rows ``0 < u < H/2`` of those columns are free;
* every other stored frequency is a free complex unitary.

:class:`FrequencyLayout` stores only the free frequencies: a real batch ``(R, C, C)``
(``R`` in 1..4) and a complex batch ``(F, C, C)``, ``R + 2 F`` real degrees of freedom per
channel pair (``= H W``: exactly those of a real H x W kernel). ``assemble`` builds the
full rfft layout by one gather that conjugates where needed, so the real frequencies stay
real and the conjugate pairs consistent *by construction*, through every update, with no
projection: the real batch is updated by the real projUNN kernels (real arithmetic only),
and autograd adds the gradients of both members of a pair into their one free matrix.

>>> import torch
>>> conv = OrthogonalConv2d(3, 8, 8, dtype=torch.float64)
>>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
>>> y = conv(x); y.shape, bool(torch.isclose(y.norm(), x.norm()))
(torch.Size([2, 3, 8, 8]), True)
>>> conv.matrix().shape, conv.layout.n_real, conv.layout.n_complex
(torch.Size([8, 5, 3, 3]), 4, 30)
"""

from __future__ import annotations

import torch
from torch import nn

from . import optim
from ._checks import check_choice, check_size, wide_dtype
from .init import haar

__all__ = [
    "CONV_INITS",
    "FourierConv2d",
    "FrequencyLayout",
    "OrthogonalConv2d",
    "StoredFrequencyConv2d",
    "initial_frequency_matrices",
    "orthogonality_error",
    "spectral_conv",
]

CONV_INITS = ("haar", "identity")
REAL_DTYPES = (torch.float32, torch.float64)


class FrequencyLayout:
    """Which ``rfft2`` frequencies of an H x W grid are free, and how to rebuild the rest.

    ``real_positions`` / ``complex_positions``: the ``(u, v)`` of the free real and complex
    frequency matrices, in storage order; ``index``: for each of the ``H * (W // 2 + 1)``
    stored frequencies (row-major), its row in ``cat([real, complex, complex.conj()])``.

    >>> lay = FrequencyLayout(4, 4)
    >>> lay.real_positions
    [(0, 0), (2, 0), (0, 2), (2, 2)]
    >>> lay.n_complex, lay.index.view(4, 3)[3, 0] == lay.n_real + lay.n_complex  # conj of (1, 0)
    (6, tensor(True))
    """

    def __init__(self, height: int, width: int):
        self.height = check_size("height", height)
        self.width = check_size("width", width)
        self.half_width = width // 2 + 1
        real, free, conjugate_of = [], [], {}
        for v in range(self.half_width):
            edge = v == 0 or 2 * v == width  # columns that hold their own conjugates
            for u in range(height):
                partner = (-u) % height
                if edge and partner == u:
                    real.append((u, v))
                elif edge and partner < u:
                    conjugate_of[(u, v)] = (partner, v)
                else:
                    free.append((u, v))
        self.real_positions, self.complex_positions = real, free
        self.n_real, self.n_complex = len(real), len(free)
        row = {pos: i for i, pos in enumerate(real)}
        row.update({pos: self.n_real + i for i, pos in enumerate(free)})
        index = []  # a conjugate sits n_complex rows after its free matrix
        for u in range(height):
            for v in range(self.half_width):
                source = conjugate_of.get((u, v))
                index.append(row[(u, v)] if source is None else row[source] + self.n_complex)
        self.index = torch.tensor(index, dtype=torch.long)
        self._index_on = {self.index.device: self.index}  # a copy per device, made once

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W // 2 + 1)``: the frequency grid of ``rfft2``."""
        return self.height, self.half_width

    def assemble(self, real: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """The ``(H, W // 2 + 1, C, C)`` complex frequency matrices from the free ones
        (``real``: ``(n_real, C, C)``, ``free``: ``(n_complex, C, C)``); differentiable."""
        parts = torch.cat([real.to(free.dtype), free, free.conj()])
        index = self._index_on.get(parts.device)
        if index is None:
            index = self._index_on[parts.device] = self.index.to(parts.device)
        return parts.index_select(0, index).view(*self.shape, *parts.shape[-2:])

    def split(self, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The free matrices (real part of the self-conjugate ones) of a full
        ``(H, W // 2 + 1, ..., ...)`` batch; the inverse of :meth:`assemble`."""
        real = torch.stack([matrices[u, v].real for u, v in self.real_positions])
        if not self.complex_positions:
            return real, matrices.new_zeros(0, *matrices.shape[2:])
        return real, torch.stack([matrices[u, v] for u, v in self.complex_positions])

    def __repr__(self) -> str:
        return (
            f"FrequencyLayout(height={self.height}, width={self.width}: "
            f"{self.n_real} real + {self.n_complex} complex free matrices)"
        )


def initial_frequency_matrices(
    layout: FrequencyLayout,
    channels: int,
    init: str = "haar",
    dtype=torch.float32,
    device=None,
    generator=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Free frequency matrices ``(real, complex)`` of an orthogonal convolution.

    ``init``: "haar" (every free matrix Haar-random: the Haar measure on orthogonal
    convolutions) or "identity" (the identity map). ``dtype`` is the real dtype.
    """
    check_choice("init", init, CONV_INITS)
    cdtype = dtype.to_complex()
    shapes = ((layout.n_real, dtype), (layout.n_complex, cdtype))
    if init == "identity":
        eye = torch.eye(channels, device=device)
        return tuple(eye.to(dt).expand(count, -1, -1).clone() for count, dt in shapes)
    return tuple(
        haar(channels, dt, device=device, generator=generator, batch=(count,))
        for count, dt in shapes
    )


def spectral_conv(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``irfft2(K(u, v) rfft2(x)(u, v))`` of real ``x``
    ``(B, C, H, W)`` by the frequency matrices ``(H, W // 2 + 1, C, C)``.

    >>> x = torch.randn(1, 2, 4, 4)
    >>> eye = torch.eye(2, dtype=torch.complex64).expand(4, 3, 2, 2)
    >>> bool(torch.allclose(spectral_conv(x, eye), x, atol=1e-6))
    True
    """
    H, Wf, C, _ = matrices.shape
    batch = x.shape[0]
    X = torch.fft.rfft2(x).permute(2, 3, 1, 0).reshape(H * Wf, C, batch)
    Y = (matrices.reshape(H * Wf, C, C) @ X).reshape(H, Wf, C, batch).permute(3, 2, 0, 1)
    return torch.fft.irfft2(Y, s=x.shape[-2:])


def orthogonality_error(matrices: torch.Tensor) -> float:
    """Largest ``|sigma - 1|`` over the singular values of a ``(..., N, N)`` batch, in
    double precision. For a convolution's frequency matrices these are the singular values
    of the whole operator, so 0 means exactly orthogonal.

    >>> orthogonality_error(torch.eye(3).expand(2, 3, 3) * 1.5)
    0.5
    """
    M = matrices.detach()
    M = M.to(wide_dtype(M.dtype))
    return float((torch.linalg.svdvals(M) - 1).abs().max())


class FourierConv2d(nn.Module):
    """Base of the Fourier-domain convolutions: C -> C channels on an H x W grid.

    Subclasses define :meth:`frequency_matrices`; ``forward`` applies them by
    :func:`spectral_conv` to inputs ``(B, C, H, W)`` or ``(C, H, W)`` of the layer's real
    dtype. The unitary-layer protocol carries over: ``matrix()`` is the batch of frequency
    matrices (so ``unitarity_error(m.matrix())`` means what it means for a dense layer) and
    ``optimizer(name, lr, **kw)`` returns the layer's optimizer.
    """

    def __init__(self, channels: int, height: int, width: int, dtype=torch.float32, device=None):
        super().__init__()
        self.channels = check_size("channels", channels)
        if dtype not in REAL_DTYPES:
            raise TypeError(
                f"dtype must be torch.float32 or torch.float64 (the convolution is real; "
                f"its frequency matrices are complex), got {dtype}"
            )
        self.layout = FrequencyLayout(height, width)
        self.height, self.width, self.dtype = height, width, dtype

    def frequency_matrices(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The ``(H, W // 2 + 1, C, C)`` complex frequency matrices of the convolution."""
        raise NotImplementedError

    def matrix(self) -> torch.Tensor:
        """The frequency matrices (the protocol's "current unitary", batched)."""
        return self.frequency_matrices()

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(B, C, H, W)``; ``ValueError``/``TypeError`` naming the problem."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        expected = (self.channels, self.height, self.width)
        if x.dim() not in (3, 4) or tuple(x.shape[-3:]) != expected:
            raise ValueError(
                f"input must have shape (batch, {', '.join(map(str, expected))}) or "
                f"({', '.join(map(str, expected))}) (channels, height, width), "
                f"got {tuple(x.shape)}"
            )
        if x.dtype != self.dtype:
            raise TypeError(f"input has dtype {x.dtype} but the layer computes in {self.dtype}")
        return x if x.dim() == 4 else x.unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = self.check_input(x)
        y = spectral_conv(x4, self.frequency_matrices())
        return y if x.dim() == 4 else y.squeeze(0)

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """``projunn_core.optim`` optimizer over the parameters (non-finite gradients
        skipped); subclasses with a constraint to keep override it."""
        return optim.make(name, self.parameters(), lr=lr, **kw)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, height={self.height}, width={self.width}, " + (
            f"dtype={self.dtype}"
        )


class StoredFrequencyConv2d(FourierConv2d):
    """A convolution whose parameters *are* its free frequency matrices:
    ``weight_real`` ``(n_real, C, C)`` (real) and ``weight`` ``(n_complex, C, C)`` (complex),
    initialised orthogonal (``init``: "haar" or "identity"). Plain training lets them drift
    (the unconstrained baseline); subclasses keep them unitary."""

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
    ):
        super().__init__(channels, height, width, dtype, device)
        real, free = initial_frequency_matrices(
            self.layout, channels, init, dtype, device, generator
        )
        self.weight_real = nn.Parameter(real)
        self.weight = nn.Parameter(free)

    def frequency_matrices(self) -> torch.Tensor:
        return self.layout.assemble(self.weight_real, self.weight)

    def free_matrices(self) -> list[nn.Parameter]:
        """The non-empty parameter batches (``weight`` is empty for H, W <= 2)."""
        return [p for p in (self.weight_real, self.weight) if p.numel()]


class OrthogonalConv2d(StoredFrequencyConv2d):
    """Orthogonal circular convolution, C -> C channels on an H x W grid, trained by projUNN.

    Its weight is the batch of unitary frequency matrices (see the module docstring for
    the layout); ``forward`` is rfft2 -> batched product -> irfft2, real in and out.
    :meth:`optimizer` moves every frequency matrix by a rank-``rank`` projUNN step
    (``variant`` "T" or "D", low-rank method ``approx``) through the batched kernels; both
    weight batches carry ``projunn_unitary``, so ``pc.optim`` recognises them anywhere.

    >>> import torch, projunn_core as pc
    >>> conv = pc.nn.OrthogonalConv2d(4, 6, 5, rank=2, variant="D")
    >>> opt = conv.optimizer("adam", lr=1e-2)
    >>> conv(torch.randn(3, 4, 6, 5)).square().sum().backward(); opt.step()
    >>> pc.conv.orthogonality_error(conv.matrix()) < 1e-5
    True
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        dtype=torch.float32,
        device=None,
        *,
        rank: int = 1,
        variant: str = "T",
        approx: str = "range",
        init: str = "haar",
        generator=None,
    ):
        super().__init__(channels, height, width, dtype, device, init=init, generator=generator)
        self.rank, self.variant, self.approx = rank, variant, approx
        for p in (self.weight_real, self.weight):
            p.projunn_unitary = True
        # validate the projUNN options now rather than at the first step
        optim._ProjUNNMixin._check_unitary_group(
            {"params": self.free_matrices(), "rank": rank, "variant": variant, "approx": approx}
        )

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """A projUNN optimizer (``name``: sgd, rmsprop, adam) keeping every frequency matrix
        unitary; ``rank``/``variant``/``approx`` in ``kw`` override the layer's."""
        return optim.make_unitary(name, self.free_matrices(), lr, self, **kw)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}, variant={self.variant}"
