"""Image classifiers built from the registry's orthogonal convolutions (``Method.conv``).

* :class:`SmallConvNet` -- a stem convolution, ``depth`` orthogonal circular convolutions
  (each followed by a bias and ReLU) at the input resolution, 2 x 2 average pooling and a
  linear readout: the ``digits-conv`` task's model (8 x 8 digits on 2 CPU cores).
* :class:`ResNet9` -- the projUNN paper's CIFAR-10 network (its code's ``ResNet9``): a
  3 x 3 stem to 64 channels, then orthogonal convolutions of 128 channels at 32 x 32 and
  16 x 16 (a residual pair at 16), 256 channels at 16, 8 and 4 (a residual pair at 4),
  each followed by batch normalization and ReLU, max pooling between resolutions and a
  linear readout of the 2 x 2 x 256 features. Where the channel count doubles, the input
  channels are repeated, as in the paper's code.

Both train every orthogonal layer with its own optimizer (projUNN's keeps the frequency
matrices unitary, SVD projects, ...) at ``lr / lr_divisor`` and the other parameters with
the plain optimizer of the same name (:meth:`OrthogonalConvModel.optimizer`).

>>> import torch
>>> net = SmallConvNet("projunn_t", 1, channels=8, size=8, depth=1)
>>> net(torch.randn(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> opt = net.optimizer("rmsprop", lr=1e-3, lr_divisor=8)
>>> net.orthogonality_error() < 1e-5
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import projunn_core as pc
from projunn_core.conv import FourierConv2d, orthogonality_error

from ..measure.methods import METHODS

__all__ = ["OrthogonalConvModel", "ResNet9", "SmallConvNet", "orthogonal_conv"]


def orthogonal_conv(method: str, rank: int | None, channels: int, size: int, dtype, device):
    """The registry ``method``'s convolution, ``channels`` channels on a ``size`` x ``size``
    grid (``rank`` for ranked methods)."""
    spec = METHODS[method]
    options = {"rank": rank} if spec.ranked and rank is not None else {}
    return spec.build_conv(channels, size, size, dtype=dtype, device=device, **options)


class OrthogonalConvModel(nn.Module):
    """Base of the classifiers: finds their orthogonal layers and builds their optimizer."""

    def orthogonal_layers(self) -> list[FourierConv2d]:
        return [m for m in self.modules() if isinstance(m, FourierConv2d)]

    def optimizer(self, name: str = "rmsprop", lr: float = 1e-3, lr_divisor: float = 1.0, **kw):
        """Each orthogonal layer's own optimizer at ``lr / lr_divisor`` and the named
        ``projunn_core.optim`` optimizer for the rest, stepped as one."""
        own = {id(p) for layer in self.orthogonal_layers() for p in layer.parameters()}
        rest = [p for p in self.parameters() if id(p) not in own]
        layers = [
            layer.optimizer(name, lr=lr / lr_divisor, **kw) for layer in self.orthogonal_layers()
        ]
        return pc.optim.Combined(*layers, pc.optim.make(name, rest, lr=lr, **kw))

    @torch.no_grad()
    def orthogonality_error(self) -> float:
        """The largest ``max |sigma - 1|`` over the orthogonal layers."""
        return max(orthogonality_error(layer.matrix()) for layer in self.orthogonal_layers())


def _repeat_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    return x if x.shape[1] == channels else x.repeat(1, channels // x.shape[1], 1, 1)


class SmallConvNet(OrthogonalConvModel):
    """``in_channels`` x ``size`` x ``size`` images -> ``classes`` logits (see the module
    docstring); ``method`` (and ``rank``) pick the orthogonal convolutions."""

    def __init__(
        self,
        method,
        rank=None,
        *,
        channels=16,
        size=8,
        depth=2,
        in_channels=1,
        classes=10,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__()
        if size % 2:
            raise ValueError(f"size must be even (2 x 2 pooling), got {size}")
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype, device=device)
        self.convs = nn.ModuleList(
            orthogonal_conv(method, rank, channels, size, dtype, device) for _ in range(depth)
        )
        self.biases = nn.Parameter(torch.zeros(depth, channels, 1, 1, dtype=dtype, device=device))
        self.readout = nn.Linear(channels * (size // 2) ** 2, classes, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        for conv, bias in zip(self.convs, self.biases, strict=True):
            h = F.relu(conv(h) + bias)
        return self.readout(F.avg_pool2d(h, 2).flatten(1))


class _Block(nn.Sequential):
    """Orthogonal convolution (input channels repeated up to ``channels``), batch norm,
    ReLU, optional 2 x 2 max pooling."""

    def __init__(self, method, rank, channels, size, pool, dtype, device):
        layers = [
            orthogonal_conv(method, rank, channels, size, dtype, device),
            nn.BatchNorm2d(channels, dtype=dtype, device=device),
            nn.ReLU(),
        ]
        super().__init__(*layers, *([nn.MaxPool2d(2)] if pool else []))
        self.channels = channels

    def forward(self, x):
        return super().forward(_repeat_channels(x, self.channels))


class ResNet9(OrthogonalConvModel):
    """The paper's CIFAR-10 ResNet-9 with orthogonal convolutions (module docstring);
    ``widths`` are its three channel counts (the paper's 64, 128, 256 by default; each
    must divide the next).

    >>> net = ResNet9("svd", widths=(2, 4, 8))
    >>> net(torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """

    def __init__(
        self,
        method,
        rank=None,
        *,
        widths=(64, 128, 256),
        classes=10,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__()
        c1, c2, c3 = widths
        if c2 % c1 or c3 % c2:
            raise ValueError(f"each width must divide the next, got {tuple(widths)}")

        def block(channels, size, pool=False):
            return _Block(method, rank, channels, size, pool, dtype, device)

        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1, bias=False, dtype=dtype, device=device),
            nn.BatchNorm2d(c1, dtype=dtype, device=device),
            nn.ReLU(),
        )
        self.conv2 = block(c2, 32, pool=True)
        self.res1 = nn.Sequential(block(c2, 16), block(c2, 16))
        self.conv3 = block(c3, 16, pool=True)
        self.conv4 = block(c3, 8, pool=True)
        self.res2 = nn.Sequential(block(c3, 4), block(c3, 4))
        self.readout = nn.Linear(4 * c3, classes, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.stem(x))
        h = self.res1(h) + h
        h = self.conv4(self.conv3(h))
        h = self.res2(h) + h
        return self.readout(F.max_pool2d(h, 2).flatten(1))
