"""Layers with unitary weights trained by projUNN, and a unitary RNN.

>>> import torch, projunn_core as pc
>>> layer = pc.nn.UnitaryLinear(8, init="henaff")
>>> y = layer(torch.randn(3, 8)); opt = layer.optimizer("rmsprop", lr=1e-3, rank=2)
>>> y.pow(2).sum().backward(); opt.step(); pc.unitarity_error(layer.matrix()) < 1e-5
True
"""

from __future__ import annotations

import torch
from torch import nn

from . import optim
from ._checks import check_dtype, real_dtype
from .conv import OrthogonalConv2d as OrthogonalConv2d  # noqa: F401 (exported; see conv.py)
from .init import initial_matrix
from .protocol import sequence_operator

__all__ = ["UnitaryLinear", "ModReLU", "UnitaryRNNCell", "UnitaryRNN"]


class UnitaryLinear(nn.Module):
    """Square map ``y = x @ W^T`` with W unitary (orthogonal when real), trained by projUNN.

    ``init``: "haar", "identity", "henaff" or "cayley". ``rank``, ``variant`` ("T"/"D")
    and ``approx`` are the projUNN options its :meth:`optimizer` uses; ``impl`` (see
    :data:`projunn_core.syncfree.IMPLS`) the sync-free implementation of its capturable
    optimizers (``optimizer(..., capturable=True)``).
    """

    def __init__(
        self,
        n: int,
        dtype=torch.float32,
        device=None,
        *,
        init: str = "haar",
        rank: int = 1,
        variant: str = "T",
        approx: str = "range",
        impl: str | None = None,
        generator=None,
    ):
        super().__init__()
        self.n, self.rank, self.variant, self.approx = n, rank, variant, approx
        self.impl = impl
        W = initial_matrix(init, n, dtype=dtype, device=device, generator=generator)
        self.weight = nn.Parameter(W)
        self.weight.projunn_unitary = True
        # validate the projUNN options now rather than at the first step
        optim._ProjUNNMixin._check_unitary_group(
            {"params": [self.weight], "rank": rank, "variant": variant, "approx": approx}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.mT

    def matrix(self) -> torch.Tensor:
        """The current unitary weight."""
        return self.weight

    def operator(self):
        """``x -> x @ W.mT`` for a sequence forward (W is the weight itself: nothing to
        build; see ``projunn_core.protocol.sequence_operator``)."""
        W = self.matrix()
        return lambda x: x @ W.mT

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        """A projUNN optimizer (``name``: sgd, rmsprop, adam) that keeps W unitary;
        ``rank``/``variant``/``approx``/``reorthogonalize_every`` in ``kw`` override the
        layer's (see :mod:`projunn_core.optim`); the layer's ``impl`` is the default of the
        optimizer's."""
        if self.impl is not None:
            kw.setdefault("impl", self.impl)
        return optim.make_unitary(name, [self.weight], lr, self, **kw)

    def extra_repr(self) -> str:
        return f"n={self.n}, dtype={self.weight.dtype}, rank={self.rank}, variant={self.variant}"


class ModReLU(nn.Module):
    """modReLU (Arjovsky et al. 2016): ``z / |z| * relu(|z| + bias)``, real or complex."""

    def __init__(self, n: int, dtype=torch.float32, device=None):
        super().__init__()
        real = real_dtype(dtype)
        self.bias = nn.Parameter(torch.empty(n, dtype=real, device=device).uniform_(-0.01, 0.01))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        magnitude = z.abs()
        scale = torch.relu(magnitude + self.bias) / magnitude.clamp_min(
            torch.finfo(magnitude.dtype).tiny
        )
        return z * scale


_NONLINEARITIES = {"modrelu": None, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


class UnitaryRNNCell(nn.Module):
    """``h' = f(recurrent(h) + V x + c)`` with a unitary ``recurrent`` layer.

    ``recurrent`` is any module following the unitary-layer protocol (default: a
    :class:`UnitaryLinear` built from ``init``, ``rank``, ``variant``, ``approx``).
    Real inputs drive complex hidden states through a complex input map.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        recurrent: nn.Module | None = None,
        *,
        dtype=torch.float32,
        device=None,
        nonlinearity: str = "modrelu",
        **layer_options,
    ):
        super().__init__()
        check_dtype("dtype", dtype)
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {tuple(_NONLINEARITIES)}, got {nonlinearity!r}"
            )
        if nonlinearity == "relu" and dtype.is_complex:
            raise ValueError("nonlinearity 'relu' needs a real dtype; use 'modrelu'")
        self.input_size, self.hidden_size, self.dtype = input_size, hidden_size, dtype
        if recurrent is None:
            recurrent = UnitaryLinear(hidden_size, dtype=dtype, device=device, **layer_options)
        elif layer_options:
            raise ValueError(
                f"options {sorted(layer_options)} apply only to the default recurrent layer"
            )
        self.recurrent = recurrent
        self.input_map = nn.Linear(input_size, hidden_size, dtype=dtype, device=device)
        self.activation = (
            ModReLU(hidden_size, dtype=dtype, device=device)
            if nonlinearity == "modrelu"
            else _NONLINEARITIES[nonlinearity]()
        )

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.step(self.input_map(x.to(self.dtype)), h, self.recurrent)

    def step(self, u: torch.Tensor, h: torch.Tensor, recurrent) -> torch.Tensor:
        """``f(recurrent(h) + u)`` for an input term ``u = V x + c`` computed beforehand
        and ``recurrent`` = ``sequence_operator(self.recurrent)`` (W built once)."""
        return self.activation(recurrent(h) + u)


class UnitaryRNN(nn.Module):
    """Sequence model: a :class:`UnitaryRNNCell` over time plus a real linear readout.

    ``forward(x)`` with x (batch, time, input_size) returns readouts of every step,
    (batch, time, output_size) (complex hidden states are read as [Re h, Im h]). One
    forward builds the recurrent operator once (``sequence_operator``: W of a
    parametrized layer is computed once per sequence, not once per time step) and the
    input map of all steps in one product.
    :meth:`optimizer` steps the recurrent layer with its own unitary optimizer and all
    other parameters with the standard one.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        recurrent=None,
        *,
        dtype=torch.float32,
        device=None,
        nonlinearity: str = "modrelu",
        **layer_options,
    ):
        super().__init__()
        self.cell = UnitaryRNNCell(
            input_size,
            hidden_size,
            recurrent,
            dtype=dtype,
            device=device,
            nonlinearity=nonlinearity,
            **layer_options,
        )
        features = 2 * hidden_size if dtype.is_complex else hidden_size
        real = real_dtype(dtype)
        self.readout = nn.Linear(features, output_size, dtype=real, device=device)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.cell.input_size:
            raise ValueError(
                f"x must have shape (batch, time, {self.cell.input_size}), got {tuple(x.shape)}"
            )
        if h is None:
            h = torch.zeros(
                x.shape[0], self.cell.hidden_size, dtype=self.cell.dtype, device=x.device
            )
        cell = self.cell
        recurrent = sequence_operator(cell.recurrent)
        inputs = cell.input_map(x.to(cell.dtype))  # every step's V x_t + c at once
        states = []
        # unbind, not inputs[:, t]: its backward stacks T gradients once instead of
        # writing each into a zero tensor of the whole sequence (O(T^2) memory traffic)
        for u in inputs.unbind(1):
            h = cell.step(u, h, recurrent)
            states.append(h)
        H = torch.stack(states, dim=1)
        if H.is_complex():
            H = torch.cat([H.real, H.imag], dim=-1)
        return self.readout(H)

    def optimizer(
        self,
        name: str = "rmsprop",
        lr: float = 1e-3,
        recurrent_lr: float | None = None,
        *,
        lr_divisor: float = 1.0,
        **kw,
    ):
        """The recurrent layer's own optimizer plus the standard one for the rest.

        The recurrent layer learns at ``recurrent_lr``, by default ``lr / lr_divisor``
        (the projUNN paper divides the unitary learning rate by 32). The projUNN options
        ``rank``, ``variant``, ``approx`` and ``reorthogonalize_every`` go to the recurrent
        layer's optimizer only; every other option (``alpha``, ``momentum``,
        ``generator``, ...) to both.

        >>> rnn = UnitaryRNN(1, 4, 1, rank=2)
        >>> opt = rnn.optimizer("rmsprop", lr=1e-3, rank=3, lr_divisor=32)
        >>> [(g["lr"], g["rank"]) for g in opt.param_groups][:1]
        [(3.125e-05, 3)]
        """
        if not lr_divisor > 0:
            raise ValueError(f"lr_divisor must be > 0, got {lr_divisor!r}")
        if recurrent_lr is not None and lr_divisor != 1.0:
            raise ValueError("give recurrent_lr or lr_divisor, not both")
        unitary = {key: kw.pop(key) for key in optim.UNITARY_OPTIONS if key in kw}
        recurrent = self.cell.recurrent
        own = {id(p) for p in recurrent.parameters()}
        rest = [p for p in self.parameters() if id(p) not in own]
        rlr = lr / lr_divisor if recurrent_lr is None else recurrent_lr
        return optim.Combined(
            recurrent.optimizer(name, lr=rlr, **unitary, **kw),
            optim.make(name, rest, lr=lr, **kw),
        )
