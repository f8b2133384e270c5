"""EUNN: the tunable / FFT-style efficient unitary network of Jing et al. (2017).

The matrix is a product of layers of disjoint 2x2 rotations (and, when complex, a final
diagonal phase layer): ``W = D R_{L-1} ... R_1 R_0``. Each rotation acts on a pair
``(i, j)`` of coordinates of a column vector ``v``:

* real: ``[[cos t, -sin t], [sin t, cos t]]`` (so real EUNN spans SO(n): det W = +1);
* complex: ``[[e^{ip} cos t, -e^{ip} sin t], [sin t, cos t]]`` and ``D = diag(e^{iw})``.

Tunable style (default): layer ``l`` pairs ``(0,1),(2,3),...`` when ``l`` is even and
``(1,2),(3,4),...`` when ``l`` is odd; ``capacity = L`` layers (L = n gives full
capacity). FFT style (``fft=True``, n a power of two): layer ``l`` pairs ``i`` with
``i + 2^j`` (``j = l mod log2 n``, ``i`` with bit ``j`` clear); ``capacity`` defaults to
``log2 n``.

The forward never builds W: each layer is ``v <- a * v + b * v[perm]`` on the last axis
(two elementwise products and one gather), so a vector costs O(L n).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ._common import BaseUnitary, real_dtype

__all__ = ["EUNN"]

DEFAULT_CAPACITY = 2


class EUNN(BaseUnitary):
    """Efficient unitary network: ``capacity`` layers of 2x2 rotations (see module doc).

    Options: ``capacity`` (int >= 1; default 2 for the tunable style, log2 n for the FFT
    style), ``fft`` (bool), ``init`` ("random": angles uniform in [-pi, pi); "identity":
    all angles zero, so W = I).

    >>> import torch
    >>> m = EUNN(4, capacity=4)
    >>> x = torch.randn(3, 4)
    >>> bool(torch.allclose(m(x), x @ m.matrix().mT, atol=1e-6))
    True
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        capacity: int | None = None,
        fft: bool = False,
        init: str = "random",
    ):
        super().__init__(n, dtype, device)
        n = self.n
        self.fft = bool(fft)
        if self.fft and n & (n - 1):
            raise ValueError(f"EUNN with fft=True needs n to be a power of two, got n={n}")
        if capacity is None:
            capacity = int(math.log2(n)) if self.fft else DEFAULT_CAPACITY
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        if init not in ("random", "identity"):
            raise ValueError(f"init must be 'random' or 'identity', got {init!r}")
        self.capacity = capacity
        self.init = init

        # Pair structure of each layer: first/second index of every pair, and the
        # partner permutation (unpaired coordinates map to themselves).
        firsts, seconds = [], []
        for l in range(capacity):
            if self.fft:
                s = 1 << (l % int(math.log2(n)))
                i = torch.tensor([k for k in range(n) if not k & s], dtype=torch.long)
                j = i + s
            else:
                i = torch.arange(l % 2, n - 1, 2, dtype=torch.long)
                j = i + 1
            firsts.append(i)
            seconds.append(j)
        self._pairs = [len(i) for i in firsts]
        for l, (i, j) in enumerate(zip(firsts, seconds, strict=True)):
            perm = torch.arange(n, dtype=torch.long)
            perm[i] = j
            perm[j] = i
            self.register_buffer(f"_first{l}", i.to(self.device), persistent=False)
            self.register_buffer(f"_second{l}", j.to(self.device), persistent=False)
            self.register_buffer(f"_perm{l}", perm.to(self.device), persistent=False)

        rdt = real_dtype(self.dtype)
        total = sum(self._pairs)

        def angles(k):
            t = torch.empty(k, dtype=rdt, device=self.device)
            if init == "random":
                t.uniform_(-math.pi, math.pi)
            else:
                t.zero_()
            return nn.Parameter(t)

        # All layers' angles in one flat vector (layer l owns a contiguous slice).
        self.theta = angles(total)
        if self.is_complex:
            self.phi = angles(total)
            self.omega = angles(n)
        else:
            self.register_parameter("phi", None)
            self.register_parameter("omega", None)

    def _coefficients(self):
        """Per layer ``(a, b, perm)`` with layer(v) = a * v + b * v[..., perm]."""
        c, s = torch.cos(self.theta), torch.sin(self.theta)
        if self.is_complex:
            e = torch.polar(torch.ones_like(self.phi), self.phi)
            alpha, beta = e * c, -e * s
            gamma, delta = s.to(self.dtype), c.to(self.dtype)
        else:
            alpha, beta, gamma, delta = c, -s, s, c
        ones = torch.ones(self.n, dtype=self.dtype, device=self.theta.device)
        zeros = torch.zeros(self.n, dtype=self.dtype, device=self.theta.device)
        out, start = [], 0
        for l, k in enumerate(self._pairs):
            sl = slice(start, start + k)
            start += k
            i, j = getattr(self, f"_first{l}"), getattr(self, f"_second{l}")
            a = ones.index_put((i,), alpha[sl]).index_put((j,), delta[sl])
            b = zeros.index_put((i,), beta[sl]).index_put((j,), gamma[sl])
            out.append((a, b, getattr(self, f"_perm{l}")))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply W to the rows of ``x`` (``x @ W.mT``), layer by layer, in O(L n) per row."""
        return self.operator()(x)

    def operator(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The rotations as a function of ``x`` (rows), their coefficients computed once:
        a sequence forward keeps applying rotations, W is never built."""
        layers = self._coefficients()
        phases = None
        if self.omega is not None:
            phases = torch.polar(torch.ones_like(self.omega), self.omega)

        def apply(x: torch.Tensor) -> torch.Tensor:
            v = x
            for a, b, perm in layers:
                v = a * v + b * v.index_select(-1, perm)
            return v if phases is None else v * phases

        return apply

    def matrix(self) -> torch.Tensor:
        """W itself: the rows of the identity pushed through the layer give W^T."""
        eye = torch.eye(self.n, dtype=self.dtype, device=self.theta.device)
        return self.forward(eye).mT

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}, capacity={self.capacity}, fft={self.fft}"
