"""Initialisations, UnitaryLinear, modReLU and the unitary RNN."""

import math

import pytest
import torch

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("init", sorted(pc.init.INITS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_initialisations_are_unitary(init, dtype, n):
    W = pc.init.initial_matrix(init, n, dtype=dtype)
    assert W.shape == (n, n) and W.dtype == dtype
    assert pc.unitarity_error(W) < (1e-6 if dtype in (torch.float32, torch.complex64) else 1e-13)


def test_henaff_is_block_diagonal_rotations():
    W = pc.init.henaff(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = torch.block_diag(*[torch.ones(2, 2)] * 3).bool()
    assert torch.count_nonzero(W[~mask]) == 0
    assert torch.allclose(torch.linalg.det(W[:2, :2]), torch.tensor(1.0, dtype=torch.float64))


def test_haar_is_seeded_and_bad_init_rejected():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(pc.init.haar(5, generator=g()), pc.init.haar(5, generator=g()))
    with pytest.raises(ValueError, match="init must be one of"):
        pc.nn.UnitaryLinear(4, init="xavier")
    with pytest.raises(TypeError, match="the dtype torch.int32 is not supported"):
        pc.nn.UnitaryLinear(4, dtype=torch.int32)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        pc.nn.UnitaryLinear(0)
    with pytest.raises(ValueError, match="rank must satisfy"):
        pc.nn.UnitaryLinear(4, rank=5)
    with pytest.raises(ValueError, match="variant must be one of"):
        pc.nn.UnitaryLinear(4, variant="Z")


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_unitary_linear_follows_the_protocol(dtype):
    layer = pc.nn.UnitaryLinear(8, dtype=dtype)
    assert isinstance(layer, pc.UnitaryLayer)
    x = torch.randn(5, 3, 8, dtype=dtype)
    torch.testing.assert_close(layer(x), x @ layer.matrix().mT)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight))


@pytest.mark.parametrize("name", pc.OPTIMIZER_NAMES)
@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_training_fits_a_target_and_stays_unitary(name, variant, dtype):
    torch.manual_seed(0)
    n = 12
    layer = pc.nn.UnitaryLinear(n, dtype=dtype, rank=2, variant=variant, init="identity")
    target = pc.init.haar(n, dtype=dtype)
    opt = layer.optimizer(name, lr={"sgd": 0.5, "rmsprop": 0.05, "adam": 0.05}[name])
    x = torch.randn(64, n, dtype=dtype)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = (layer(x) - x @ target.mT).abs().pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert pc.unitarity_error(layer.matrix()) < 1e-5


def test_optimizer_overrides_layer_options():
    layer = pc.nn.UnitaryLinear(6, rank=1, variant="T")
    opt = layer.optimizer("adam", lr=0.1, rank=3, variant="D", betas=(0.5, 0.9))
    group = opt.param_groups[0]
    assert (group["rank"], group["variant"], group["betas"]) == (3, "D", (0.5, 0.9))
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        layer.optimizer("adagrad")


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_modrelu(dtype):
    act = pc.nn.ModReLU(3, dtype=dtype)
    with torch.no_grad():
        act.bias.copy_(torch.tensor([-0.5, 0.0, 0.5]))
    z = torch.tensor([[0.2, 2.0, -1.0], [0.0, -3.0, 0.0]], dtype=dtype)
    out = act(z)
    magnitude = z.abs()
    expected = torch.where(
        magnitude + act.bias > 0, z / magnitude.clamp_min(1e-300) * (magnitude + act.bias), 0
    )
    torch.testing.assert_close(out, expected.to(dtype))
    z.requires_grad_(True)
    act(z).abs().sum().backward()
    assert torch.isfinite(z.grad).all()  # no nan from z = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_rnn_learns_a_memory_task(dtype):
    """A few steps on a tiny "recall the first input" task: loss falls, W stays unitary."""
    torch.manual_seed(1)
    rnn = pc.nn.UnitaryRNN(2, 16, 2, dtype=dtype, init="henaff", rank=2)
    opt = rnn.optimizer("rmsprop", lr=3e-3, recurrent_lr=3e-3 / 8)
    x = torch.zeros(32, 6, 2)
    first = torch.randint(0, 2, (32,))
    x[torch.arange(32), 0, first] = 1.0
    losses = []
    for _ in range(60):
        opt.zero_grad()
        y = rnn(x)[:, -1]
        loss = torch.nn.functional.cross_entropy(y, first)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.7 * losses[0]
    assert pc.unitarity_error(rnn.cell.recurrent.matrix()) < 1e-5
    assert opt.skipped_steps == 0


def test_rnn_takes_any_protocol_layer_and_checks_input():
    recurrent = pc.nn.UnitaryLinear(4, variant="D")
    rnn = pc.nn.UnitaryRNN(3, 4, 1, recurrent=recurrent, nonlinearity="tanh")
    assert rnn.cell.recurrent is recurrent
    assert rnn(torch.randn(2, 5, 3)).shape == (2, 5, 1)
    with pytest.raises(ValueError, match="x must have shape"):
        rnn(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="only to the default recurrent layer"):
        pc.nn.UnitaryRNN(3, 4, 1, recurrent=recurrent, rank=2)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        pc.nn.UnitaryRNN(3, 4, 1, nonlinearity="gelu")
    with pytest.raises(ValueError, match="needs a real dtype"):
        pc.nn.UnitaryRNN(3, 4, 1, dtype=torch.complex64, nonlinearity="relu")


def test_rnn_parameter_count_is_small():
    rnn = pc.nn.UnitaryRNN(1, 10, 1)
    count = sum(p.numel() for p in rnn.parameters())
    assert count == 100 + 10 * 1 + 10 + 10 + 10 + 1  # W, V, c, modReLU bias, readout
    assert math.isclose(pc.unitarity_error(rnn.cell.recurrent.matrix()), 0, abs_tol=1e-6)
