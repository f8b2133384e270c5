"""``torch.nn.utils.parametrizations.orthogonal`` on a square bias-free ``nn.Linear``.

``orthogonal_map`` is one of "matrix_exp", "cayley", "householder"; torch's householder
map does not support complex weights, so complex + "householder" raises ValueError.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from ._common import BaseUnitary, initial_unitary

__all__ = ["ORTHOGONAL_MAPS", "TorchOrthogonal"]

ORTHOGONAL_MAPS = ("matrix_exp", "cayley", "householder")


class TorchOrthogonal(BaseUnitary):
    """PyTorch's own orthogonal parametrization.

    Options: ``orthogonal_map`` (default "matrix_exp"), ``use_trivialization`` (passed on),
    ``init`` (the starting weight, a name of ``projunn_core.init.INITS``; default "haar").

    >>> import torch
    >>> m = TorchOrthogonal(4, orthogonal_map="cayley")
    >>> x = torch.randn(2, 4)
    >>> bool(torch.allclose(m(x), x @ m.matrix().mT, atol=1e-6))
    True
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        orthogonal_map: str = "matrix_exp",
        use_trivialization: bool = True,
        init: str = "haar",
    ):
        super().__init__(n, dtype, device)
        if orthogonal_map not in ORTHOGONAL_MAPS:
            raise ValueError(
                f"orthogonal_map must be one of {ORTHOGONAL_MAPS}, got {orthogonal_map!r}"
            )
        if orthogonal_map == "householder" and self.is_complex:
            raise ValueError(
                "orthogonal_map='householder' does not support complex dtypes in torch; "
                "use 'matrix_exp' or 'cayley'"
            )
        self.orthogonal_map = orthogonal_map
        self.linear = nn.Linear(self.n, self.n, bias=False, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            self.linear.weight.copy_(initial_unitary(init, self.n, self.dtype, self.device))
        parametrizations.orthogonal(
            self.linear,
            "weight",
            orthogonal_map=orthogonal_map,
            use_trivialization=use_trivialization,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def matrix(self) -> torch.Tensor:
        return self.linear.weight

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.dtype}, orthogonal_map={self.orthogonal_map!r}"
