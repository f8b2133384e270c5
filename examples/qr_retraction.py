"""A plug-in method: an SGD step, then a QR retraction back onto the unitary matrices.

W <- qf(W - lr G): Q of the QR factorization of the moved weight, each column multiplied
by the phase of R's diagonal entry (its sign when real), so that Q is the unitary nearest
in the QR sense and does not flip sign from step to step. O(N^3) per step.

Load it in any front end with PYTHONPATH=examples PROJUNN_BENCH_PLUGINS=qr_retraction.
"""

import torch

import projunn_core as pc
from suite import Method, register_method


def qr_retract(W: torch.Tensor) -> torch.Tensor:
    """The Q factor of W, its columns' phases fixed by R's diagonal (sign-fixed QR)."""
    Q, R = torch.linalg.qr(W)
    phase = R.diagonal(dim1=-2, dim2=-1).sgn()
    phase = torch.where(phase == 0, torch.ones_like(phase), phase)
    return Q * phase.unsqueeze(-2)


class QRRetractionSGD(torch.optim.Optimizer):
    """Plain SGD on each weight, then its QR retraction."""

    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is not None:
                    w.copy_(qr_retract(w - group["lr"] * w.grad))
        return loss


class QRRetractionLinear(torch.nn.Module):
    """An n x n unitary layer (the protocol of projunn_core/protocol.py): y = x W^T."""

    def __init__(self, n: int, *, dtype=torch.float32, device="cpu", init: str = "haar"):
        super().__init__()
        W = pc.init.initial_matrix(init, n, dtype=dtype, device=device)
        self.weight = torch.nn.Parameter(W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.mT

    def matrix(self) -> torch.Tensor:
        return self.weight

    def optimizer(self, name: str = "sgd", lr: float = 1e-3, **kw) -> torch.optim.Optimizer:
        if str(name).lower() != "sgd" or kw:
            raise ValueError(f"qr_sgd has only optimizer 'sgd' (no options), got {name!r} {kw}")
        return QRRetractionSGD(self.parameters(), lr=lr)


def update(A: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """The functional step of the update workload, in place: A <- qf(A - lr G)."""
    return A.copy_(qr_retract(A - lr * G))


register_method(
    Method(
        "qr_sgd",
        "SGD step then QR retraction (sign-fixed Q of W - lr G), O(N^3); an example plug-in",
        QRRetractionLinear,
        update,
        cubic=True,
        initializable=True,
        optimizers=("sgd",),
        train_optimizer="sgd",
    )
)
