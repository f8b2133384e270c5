"""Sequence models for the task benchmarks: an LSTM reference and a unitary-RNN factory.

``unitary_rnn`` builds ``projunn_core.nn.UnitaryRNN`` (modReLU) with a baseline layer as
its recurrent matrix.

>>> lstm_param_count(1, 10, 1)
531
>>> lstm_hidden_for_params(1, 1, 531)
10
"""

from __future__ import annotations

import math

import torch
from torch import nn

from projunn_core.nn import UnitaryRNN
from projunn_core.optim import make as make_optimizer

__all__ = [
    "LSTMReference",
    "lstm_hidden_for_params",
    "lstm_param_count",
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
        """The named optimizer over all parameters (non-finite gradients skipped)."""
        return make_optimizer(name, self.parameters(), lr, **kw)


def unitary_rnn(method, input_size: int, hidden_size: int, output_size: int, **options):
    """``projunn_core.nn.UnitaryRNN`` whose recurrent matrix is baseline ``method``.

    ``method`` is a key of ``baselines.METHODS`` or a protocol class; ``options`` go to
    it (``dtype``, ``device``, ``capacity``, ...); the RNN takes the recurrent layer's
    dtype.

    >>> import torch
    >>> rnn = unitary_rnn("cayley", 1, 6, 1)
    >>> rnn(torch.zeros(2, 3, 1)).shape
    torch.Size([2, 3, 1])
    """
    from . import METHODS  # the package's registry (this module is part of it)

    if isinstance(method, str):
        try:
            cls = METHODS[method]
        except KeyError:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
    else:
        cls = method
    recurrent = cls(hidden_size, **options)
    return UnitaryRNN(
        input_size,
        hidden_size,
        output_size,
        recurrent,
        dtype=recurrent.dtype,
        device=options.get("device"),
    )
