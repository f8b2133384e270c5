"""Sequence models for the task benchmarks: an LSTM reference and unitary-RNN factories.

``unitary_rnn`` builds ``projunn_core.nn.UnitaryRNN`` with a baseline as recurrent
matrix when the core package provides it, and this module's minimal ``ModReLURNN``
otherwise.

>>> lstm_param_count(1, 10, 1)
531
>>> lstm_hidden_for_params(1, 1, 531)
10
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from projunn_core.protocol import check_optimizer_name, torch_optimizer

from ._common import check_dtype

__all__ = [
    "LSTMReference",
    "ModReLURNN",
    "lstm_hidden_for_params",
    "lstm_param_count",
    "modrelu",
    "unitary_rnn",
]


def lstm_param_count(input_size: int, hidden_size: int, output_size: int) -> int:
    """Parameters of a one-layer ``nn.LSTM`` (both biases) plus a linear readout.

    ``4h(in + h) + 8h + h*out + out``.

    >>> lstm_param_count(2, 3, 1)
    88
    """
    h = hidden_size
    return 4 * h * (input_size + h) + 8 * h + h * output_size + output_size


def lstm_hidden_for_params(input_size: int, output_size: int, n_params: int) -> int:
    """The hidden size (>= 1) whose ``lstm_param_count`` is closest to ``n_params``.

    >>> lstm_hidden_for_params(1, 10, 10_000)
    47
    """
    if n_params < 1:
        raise ValueError(f"n_params must be >= 1, got {n_params!r}")
    # Solve 4h^2 + (4 in + 8 + out) h + out = n_params, then check the neighbours.
    b = 4 * input_size + 8 + output_size
    disc = b * b + 16 * max(n_params - output_size, 0)
    h0 = int((-b + math.sqrt(disc)) / 8)
    candidates = [h for h in range(h0 - 1, h0 + 3) if h >= 1]
    return min(
        candidates,
        key=lambda h: (abs(lstm_param_count(input_size, h, output_size) - n_params), h),
    )


class LSTMReference(nn.Module):
    """``nn.LSTM`` (batch first) + linear readout applied at every step.

    Give ``hidden_size`` or ``match_params`` (a target parameter count: the hidden size
    is then chosen by ``lstm_hidden_for_params``), not both.

    >>> import torch
    >>> m = LSTMReference(1, output_size=1, match_params=531)
    >>> m.hidden_size, m(torch.zeros(2, 5, 1)).shape
    (10, torch.Size([2, 5, 1]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None = None,
        *,
        output_size: int,
        match_params: int | None = None,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__()
        if (hidden_size is None) == (match_params is None):
            raise ValueError("give exactly one of hidden_size and match_params")
        if hidden_size is None:
            hidden_size = lstm_hidden_for_params(input_size, output_size, match_params)
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, dtype=dtype, device=device)
        self.readout = nn.Linear(hidden_size, output_size, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, T, input) -> outputs (batch, T, output)."""
        h, _ = self.lstm(x)
        return self.readout(h)

    def optimizer(self, name: str = "rmsprop", lr: float = 1e-3, **kw):
        """The named standard torch optimizer over all parameters."""
        return torch_optimizer(name, self.parameters(), lr, **kw)


def modrelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """modReLU: ``z / |z| * relu(|z| + bias)`` (0 where z = 0); real or complex ``z``.

    >>> modrelu(torch.tensor([-2.0, 0.5]), torch.tensor(-1.0))
    tensor([-1.,  0.])
    """
    mag = z.abs()
    scale = torch.relu(mag + bias) / torch.where(mag > 0, mag, torch.ones_like(mag))
    return z * scale


class _ChainedOptimizer:
    """Steps several optimizers together (the recurrent one keeps W unitary)."""

    def __init__(self, optimizers):
        self.optimizers = list(optimizers)

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)


class ModReLURNN(nn.Module):
    """Minimal unitary RNN: ``h_t = modReLU(recurrent(h_{t-1}) + V x_t + c, b)``, linear readout.

    ``recurrent`` is any protocol module (``recurrent(h) = h @ W.mT``) of size
    ``hidden_size``; its dtype sets the hidden state's (complex hidden states are read out
    through ``[Re h, Im h]``). ``None`` gives a plain (unconstrained, Haar-initialised) RNN.
    Returns the readout at every step, (batch, T, output_size).

    >>> import torch
    >>> from baselines import EUNN
    >>> rnn = ModReLURNN(2, 8, 3, recurrent=EUNN(8, torch.complex64))
    >>> rnn(torch.randn(4, 5, 2)).shape
    torch.Size([4, 5, 3])
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, recurrent=None):
        super().__init__()
        if recurrent is None:
            from .unconstrained import Unconstrained

            recurrent = Unconstrained(hidden_size)
        dtype = check_dtype(getattr(recurrent, "dtype", torch.float32))
        if getattr(recurrent, "n", hidden_size) != hidden_size:
            raise ValueError(f"recurrent size {recurrent.n} != hidden_size {hidden_size}")
        self.hidden_size = hidden_size
        self.dtype = dtype
        rdt = torch.empty((), dtype=dtype).real.dtype
        self.recurrent = recurrent
        self.input = nn.Linear(input_size, hidden_size, dtype=dtype)
        self.bias = nn.Parameter(torch.full((hidden_size,), -0.01, dtype=rdt))
        width = 2 * hidden_size if dtype.is_complex else hidden_size
        self.readout = nn.Linear(width, output_size, dtype=rdt)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (batch, T, input) -> outputs (batch, T, output)."""
        u = self.input(x.to(self.dtype))
        h = h0 if h0 is not None else torch.zeros_like(u[:, 0])
        hs = []
        for t in range(u.shape[1]):
            h = modrelu(self.recurrent(h) + u[:, t], self.bias)
            hs.append(h)
        H = torch.stack(hs, dim=1)
        if H.is_complex():
            H = torch.cat([H.real, H.imag], dim=-1)
        return self.readout(H)

    def optimizer(
        self, name: str = "rmsprop", lr: float = 1e-3, recurrent_lr: float | None = None, **kw
    ):
        """The recurrent module's own optimizer (lr ``recurrent_lr``, default ``lr``) chained
        with the named torch optimizer over every other parameter."""
        name = check_optimizer_name(name)
        rec_ids = {id(p) for p in self.recurrent.parameters()}
        others = [p for p in self.parameters() if id(p) not in rec_ids]
        rec_lr = lr if recurrent_lr is None else recurrent_lr
        opts = [torch_optimizer(name, others, lr, **kw)]
        if rec_ids:
            opts.insert(0, self.recurrent.optimizer(name, lr=rec_lr, **kw))
        return _ChainedOptimizer(opts)


def unitary_rnn(method, input_size: int, hidden_size: int, output_size: int, **options):
    """A unitary RNN whose recurrent matrix is baseline ``method`` (name or class).

    ``options`` go to the method (e.g. ``dtype``, ``capacity``). Uses
    ``projunn_core.nn.UnitaryRNN`` when it exists (looked up at call time), else
    ``ModReLURNN``.

    >>> import torch
    >>> rnn = unitary_rnn("cayley", 1, 6, 1)
    >>> rnn(torch.zeros(2, 3, 1)).shape
    torch.Size([2, 3, 1])
    """
    from . import METHODS

    if isinstance(method, str):
        try:
            cls = METHODS[method]
        except KeyError:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
    else:
        cls = method
    recurrent = cls(hidden_size, **options)
    try:
        from projunn_core.nn import UnitaryRNN
    except ImportError:
        return ModReLURNN(input_size, hidden_size, output_size, recurrent=recurrent)
    params = inspect.signature(UnitaryRNN).parameters
    if "output_size" in params:
        return UnitaryRNN(input_size, hidden_size, recurrent=recurrent, output_size=output_size)
    return UnitaryRNN(input_size, hidden_size, output_size, recurrent=recurrent)
