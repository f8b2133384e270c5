"""projUNN: rank-k unitary updates in O(k N^2) (Kiani et al., NeurIPS 2022).

>>> import torch, projunn_core as pc
>>> W = pc.init.haar(16)
>>> pc.projunn_step(W, torch.randn(16, 16), lr=1e-2, rank=4, variant="T") is W
True
"""

from . import conv, fused, graph, init, nn, optim, syncfree
from .kernels import projunn_d, projunn_t
from .lowrank import LOWRANK_METHODS, lowrank
from .protocol import OPTIMIZER_NAMES, UnitaryLayer, sequence_operator, unitarity_error
from .repair import reorthogonalize
from .step import VARIANTS, projunn_step, projunn_update

__all__ = [
    "LOWRANK_METHODS",
    "OPTIMIZER_NAMES",
    "VARIANTS",
    "UnitaryLayer",
    "conv",
    "fused",
    "graph",
    "init",
    "lowrank",
    "nn",
    "optim",
    "projunn_d",
    "projunn_step",
    "projunn_t",
    "projunn_update",
    "reorthogonalize",
    "sequence_operator",
    "syncfree",
    "unitarity_error",
]
