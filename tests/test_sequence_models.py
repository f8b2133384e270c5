"""Sequence models: W once per sequence forward for every method, and the RNN optimizer."""

import pytest
import torch

import projunn_core as pc
from suite.measure.cases import Case
from suite.measure.methods import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")

T = 5
DENSE = sorted(name for name, m in METHODS.items() if m.build is not None)  # not SOC


def _rnn(name, dtype=torch.float32, n=8):
    spec = METHODS[name]
    layer = spec(n, dtype=dtype, **({"rank": 2} if spec.ranked else {}))
    return pc.nn.UnitaryRNN(2, n, 3, layer, dtype=dtype)


def _count(obj, attr):
    """Wrap ``obj.attr`` (a method) so that its calls are counted in the returned list."""
    calls = []
    original = getattr(obj, attr)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(obj, attr, counted)
    return calls


@pytest.mark.parametrize("name", DENSE)
def test_one_sequence_forward_builds_w_once(name):
    if reason := METHODS[name].unavailable():
        pytest.skip(reason)
    rnn = _rnn(name)
    layer = rnn.cell.recurrent
    matrix_calls = _count(layer, "matrix")
    rnn(torch.randn(4, T, 2)).sum().backward()
    if name.startswith("eunn"):  # EUNN applies its rotations and never builds W ...
        assert matrix_calls == []
        coefficient_calls = _count(layer, "_coefficients")
        rnn(torch.randn(4, T, 2))
        assert len(coefficient_calls) == 1  # ... but computes their coefficients once
    else:
        assert len(matrix_calls) == 1
    if name == "torch_orthogonal":  # torch's parametrization itself runs once too
        runs = []
        param = layer.linear.parametrizations.weight[0]
        param.register_forward_hook(lambda *a: runs.append(1))
        rnn(torch.randn(4, T, 2))
        assert len(runs) == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("name", DENSE)
def test_sequence_forward_matches_per_step_forward_and_gradients(name, dtype):
    """The W-once forward gives the outputs and gradients of calling the layer per step."""
    rank = 2 if METHODS[name].ranked else None
    case = Case("train_step", name.removesuffix("_graphed"), 8, rank, str(dtype)[6:])
    if reason := case.skip_reason():  # real-only peers, a peer library not installed
        pytest.skip(reason)
    torch.manual_seed(0)
    rnn = _rnn(name, dtype)
    x = torch.randn(3, T, 2, dtype=torch.float64)

    def per_step():
        h = torch.zeros(3, 8, dtype=dtype)
        states = []
        for t in range(T):
            h = rnn.cell(x[:, t], h)
            states.append(h)
        H = torch.stack(states, dim=1)
        return rnn.readout(torch.cat([H.real, H.imag], -1) if H.is_complex() else H)

    grads = []
    for forward in (lambda: rnn(x), per_step):
        rnn.zero_grad()
        out = forward()
        out.pow(2).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in rnn.parameters()]))
    (out_a, g_a), (out_b, g_b) = grads
    torch.testing.assert_close(out_a, out_b, atol=1e-12, rtol=1e-10)
    assert len(g_a) == len(g_b) and any(g.abs().sum() > 0 for g in g_a)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_rnn_optimizer_sends_each_group_its_own_options():
    rnn = pc.nn.UnitaryRNN(2, 8, 3, rank=1)
    opt = rnn.optimizer("rmsprop", lr=1e-3, rank=2, variant="D", alpha=0.9, lr_divisor=32)
    unitary, plain = opt.optimizers
    (ug,) = unitary.param_groups
    assert ug["unitary"] and (ug["rank"], ug["variant"], ug["alpha"]) == (2, "D", 0.9)
    assert ug["lr"] == pytest.approx(1e-3 / 32)
    for g in plain.param_groups:
        assert not g["unitary"] and g["lr"] == 1e-3 and g["alpha"] == 0.9
    # a parametrized recurrent layer takes the divisor and the plain options as well
    expm = pc.nn.UnitaryRNN(2, 8, 3, METHODS["expm"](8))
    opt = expm.optimizer("adam", lr=1e-2, lr_divisor=4, betas=(0.8, 0.9))
    assert [g["lr"] for g in opt.param_groups] == [1e-2 / 4, 1e-2]
    with pytest.raises(ValueError, match="lr_divisor must be > 0"):
        rnn.optimizer("sgd", lr=0.1, lr_divisor=0)
    with pytest.raises(ValueError, match="not both"):
        rnn.optimizer("sgd", lr=0.1, recurrent_lr=0.01, lr_divisor=2)


def test_rnn_optimizer_steps_with_projunn_options():
    """The call that raised TypeError before: projUNN options next to a plain group."""
    torch.manual_seed(0)
    rnn = pc.nn.UnitaryRNN(2, 8, 3, init="henaff")
    opt = rnn.optimizer("rmsprop", lr=1e-2, rank=2, lr_divisor=32)
    before = rnn.cell.recurrent.weight.detach().clone()
    rnn(torch.randn(4, T, 2)).pow(2).sum().backward()
    opt.step()
    W = rnn.cell.recurrent.weight
    assert not torch.equal(W, before) and pc.unitarity_error(W) < 1e-5


@pytest.mark.parametrize("name", DENSE)
def test_registry_methods_start_from_a_named_unitary(name):
    spec = METHODS[name]
    if not spec.initializable:
        with pytest.raises(ValueError, match="does not take a starting matrix"):
            spec(8, init="henaff")
        return
    eye = torch.eye(8, dtype=torch.float64)
    torch.testing.assert_close(spec(8, dtype=torch.float64, init="identity").matrix(), eye)
    W = spec(8, dtype=torch.float64, init="henaff").matrix().detach()
    blocks = torch.block_diag(*[torch.ones(2, 2)] * 4).bool()
    assert W[~blocks].abs().max() < 1e-15 and pc.unitarity_error(W) < 1e-14
