"""The classifiers built from the registry's orthogonal convolutions."""

import pytest
import torch
import torch.nn.functional as F

from suite.measure.methods import METHODS
from suite.tasks.convnets import ResNet9, SmallConvNet

pytestmark = pytest.mark.usefixtures("one_thread")

CONV_METHODS = sorted(m.name for m in METHODS.values() if m.conv is not None)


def step(net, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("method", CONV_METHODS)
def test_small_net_trains_every_conv_method(method, gen):
    rank = 2 if METHODS[method].ranked else None
    net = SmallConvNet(method, rank, channels=4, size=4, depth=2)
    assert len(net.orthogonal_layers()) == 2
    sketches = {"generator": torch.Generator()} if rank else {}  # projUNN's sketches only
    opt = net.optimizer("rmsprop", lr=1e-2, lr_divisor=4, **sketches)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == [2.5e-3, 1e-2]  # orthogonal layers at lr / lr_divisor, the rest at lr
    x, y = torch.randn(8, 1, 4, 4, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    stem = net.stem.weight.detach().clone()
    losses = [step(net, opt, x, y) for _ in range(3)]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert not torch.equal(stem, net.stem.weight)
    if METHODS[method].approximate:  # Landing: |sigma - 1| <= eps by design, not exactly 0
        assert net.orthogonality_error() <= METHODS[method].conv_defaults["eps"]
    elif METHODS[method].unitary and method != "soc":
        assert net.orthogonality_error() < 1e-5
    elif method == "soc":  # its 5-term series leaves a measured truncation error
        assert 0 < net.orthogonality_error() < 1e-3


def test_resnet9_shapes_and_orthogonality(gen):
    net = ResNet9("projunn_d", 1, widths=(2, 4, 8))
    heights = [layer.height for layer in net.orthogonal_layers()]
    assert heights == [32, 16, 16, 16, 8, 4, 4]
    assert [layer.channels for layer in net.orthogonal_layers()] == [4, 4, 4, 8, 8, 8, 8]
    opt = net.optimizer("rmsprop", lr=1e-3)
    x, y = torch.randn(2, 3, 32, 32, generator=gen), torch.tensor([1, 7])
    step(net, opt, x, y)
    assert net.orthogonality_error() < 1e-5


def test_bad_models_give_clear_errors():
    with pytest.raises(ValueError, match="has no convolution layer"):
        SmallConvNet("eunn", channels=4, size=4)
    with pytest.raises(ValueError, match="size must be even"):
        SmallConvNet("svd", channels=4, size=5)
    with pytest.raises(ValueError, match="each width must divide the next"):
        ResNet9("svd", widths=(3, 4, 8))
