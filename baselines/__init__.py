"""Baseline unitary/orthogonal layers, all following ``projunn_core.protocol``.

``METHODS`` maps names to layer classes; ``UPDATES`` maps names to functional in-place
updates ``(A, G, lr) -> A`` of an N x N unitary ``A`` from a gradient ``G``;
``CONV_LAYERS`` maps names to orthogonal convolutions (:mod:`baselines.conv`).

The peer methods (:mod:`baselines.peers`: geoopt, geotorch and Landing) have their own
maps, ``PEER_METHODS``, ``PEER_UPDATES``, ``PEER_CONV_LAYERS`` and ``PEER_DTYPES``;
geoopt and geotorch are optional (``peers.missing(name)`` says whether one can be built).

>>> import torch
>>> m = METHODS["cayley"](4, torch.float64)
>>> m.matrix().shape
torch.Size([4, 4])
"""

from ._common import SUPPORTED_DTYPES, expm_skew, haar_unitary, skew
from .cayley import CayleyUnitary, cayley_step
from .conv import CONV_LAYERS, CayleyConv2d, ExpmConv2d, SOCConv2d, SVDConv2d, UnconstrainedConv2d
from .eunn import EUNN
from .expm import ExpmUnitary, expm_step
from .landing import (
    Landing,
    LandingAdam,
    LandingConv2d,
    LandingRMSprop,
    LandingSGD,
    landing_distance,
    landing_step,
    make_landing_optimizer,
    safe_step_size,
)
from .peers import (
    INSTALL_LINE,
    PEER_CONV_LAYERS,
    PEER_DTYPES,
    PEER_METHODS,
    PEER_UPDATES,
    GeooptCanonical,
    GeooptStiefel,
    GeotorchCayley,
    GeotorchExpm,
    GeotorchOrthogonal,
    geoopt_canonical_step,
    geoopt_stiefel_step,
)
from .rnn import LSTMReference, lstm_hidden_for_params, lstm_param_count, unitary_rnn
from .svd_projection import SVDProjection, polar_unitary, svd_step
from .torch_orthogonal import ORTHOGONAL_MAPS, TorchOrthogonal
from .unconstrained import Unconstrained, unconstrained_step

METHODS = {
    "eunn": EUNN,
    "svd": SVDProjection,
    "expm": ExpmUnitary,
    "cayley": CayleyUnitary,
    "torch_orthogonal": TorchOrthogonal,
    "unconstrained": Unconstrained,
}

UPDATES = {
    "svd": svd_step,
    "expm": expm_step,
    "cayley": cayley_step,
    "unconstrained": unconstrained_step,
}

__all__ = [
    "CONV_LAYERS",
    "EUNN",
    "INSTALL_LINE",
    "METHODS",
    "ORTHOGONAL_MAPS",
    "PEER_CONV_LAYERS",
    "PEER_DTYPES",
    "PEER_METHODS",
    "PEER_UPDATES",
    "SUPPORTED_DTYPES",
    "UPDATES",
    "CayleyConv2d",
    "CayleyUnitary",
    "ExpmConv2d",
    "ExpmUnitary",
    "GeooptCanonical",
    "GeooptStiefel",
    "GeotorchCayley",
    "GeotorchExpm",
    "GeotorchOrthogonal",
    "LSTMReference",
    "Landing",
    "LandingAdam",
    "LandingConv2d",
    "LandingRMSprop",
    "LandingSGD",
    "SOCConv2d",
    "SVDConv2d",
    "SVDProjection",
    "TorchOrthogonal",
    "Unconstrained",
    "UnconstrainedConv2d",
    "cayley_step",
    "expm_skew",
    "expm_step",
    "geoopt_canonical_step",
    "geoopt_stiefel_step",
    "haar_unitary",
    "landing_distance",
    "landing_step",
    "lstm_hidden_for_params",
    "lstm_param_count",
    "make_landing_optimizer",
    "polar_unitary",
    "safe_step_size",
    "skew",
    "svd_step",
    "unconstrained_step",
    "unitary_rnn",
]
