"""projUNN: rank-k unitary updates in O(kN^2) (Kiani et al., NeurIPS 2022)."""

from .protocol import OPTIMIZER_NAMES, UnitaryLayer, torch_optimizer, unitarity_error

__all__ = ["OPTIMIZER_NAMES", "UnitaryLayer", "torch_optimizer", "unitarity_error"]
