"""projUNN optimizers: torch.optim semantics for plain parameters, unitary for the rest."""

import copy

import pytest
import torch
from helpers import haar, max_abs, ref_polar_step

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [
    ("sgd", pc.optim.SGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("sgd", pc.optim.SGD, torch.optim.SGD, {"momentum": 0.5, "weight_decay": 0.1}),
    ("rmsprop", pc.optim.RMSprop, torch.optim.RMSprop, {"alpha": 0.9, "centered": True}),
    ("rmsprop", pc.optim.RMSprop, torch.optim.RMSprop, {"momentum": 0.3, "weight_decay": 0.01}),
    ("adam", pc.optim.Adam, torch.optim.Adam, {"betas": (0.8, 0.95)}),
    ("adam", pc.optim.Adam, torch.optim.Adam, {"amsgrad": True, "weight_decay": 0.01}),
]
TORCH = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}


def _params(gen, dtype=torch.float64):
    return [
        torch.nn.Parameter(torch.randn(5, 3, dtype=dtype, generator=gen)),
        torch.nn.Parameter(torch.randn(4, dtype=dtype, generator=gen)),
    ]


@pytest.mark.parametrize("name,ours,theirs,kw", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_plain_parameters_match_torch_bit_for_bit(name, ours, theirs, kw, dtype, gen):
    p1 = _params(gen, dtype)
    p2 = [torch.nn.Parameter(p.detach().clone()) for p in p1]
    # two groups with different lr: every group must be updated
    o1 = ours([{"params": p1[:1]}, {"params": p1[1:], "lr": 0.05}], lr=0.01, **kw)
    o2 = theirs([{"params": p2[:1]}, {"params": p2[1:], "lr": 0.05}], lr=0.01, **kw)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in p1]
        for p, q, g in zip(p1, p2, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    for p, q in zip(p1, p2, strict=True):
        assert torch.equal(p, q)
    assert o1.skipped_steps == 0


@pytest.mark.parametrize("name,ours,theirs,kw", [c for c in CASES if "weight_decay" not in c[3]])
@pytest.mark.parametrize("variant", "TD")
def test_unitary_parameter_follows_the_torch_update(name, ours, theirs, kw, variant, gen):
    """With rank = n and the exact approximation, the D step is polar(W + torch's update)."""
    n = 6
    W = torch.nn.Parameter(haar(n, generator=gen))
    shadow = torch.nn.Parameter(torch.zeros(n, n, dtype=torch.float64))  # accumulates updates
    opt = ours(
        [{"params": [W], "unitary": True, "rank": n, "variant": variant, "approx": "exact"}],
        lr=0.01,
        **kw,
    )
    ref = theirs([shadow], lr=0.01, **kw)
    for _ in range(3):
        G = torch.randn(n, n, dtype=torch.float64, generator=gen)
        W.grad, shadow.grad = G.clone(), G.clone()
        before_shadow = shadow.detach().clone()
        before = W.detach().clone()
        opt.step()
        ref.step()
        delta = shadow.detach() - before_shadow  # what torch wanted to add (shadow grads only
        # depend on G, so the moment buffers match those of W)
        if variant == "D":
            expected = ref_polar_step(before, delta, torch.eye(n, dtype=torch.float64))
            assert max_abs(W.detach(), expected) < 1e-8
        assert pc.unitarity_error(W) < 1e-13


def test_non_finite_gradient_skips_that_parameter_bit_for_bit(gen):
    W = torch.nn.Parameter(haar(8, torch.float32, generator=gen))
    b = torch.nn.Parameter(torch.randn(3, generator=gen))
    opt = pc.optim.Adam([{"params": [W], "unitary": True}, {"params": [b]}], lr=0.1)
    for bad in (float("nan"), float("inf")):
        W_before, b_before = W.detach().clone(), b.detach().clone()
        W.grad = torch.randn(8, 8)
        W.grad[2, 3] = bad
        b.grad = torch.ones(3)
        opt.step()
        assert torch.equal(W.detach(), W_before)
        assert not torch.equal(b.detach(), b_before)  # the finite one still moved
        assert W.grad is not None  # the user's gradient is given back
    b.grad[0] = float("nan")
    b_before = b.detach().clone()
    W.grad = torch.randn(8, 8)
    opt.step()
    assert torch.equal(b.detach(), b_before)
    assert opt.skipped_steps == 3
    assert torch.isfinite(W).all() and pc.unitarity_error(W) < 1e-5
    assert "step" not in opt.state[b] or int(opt.state[b]["step"]) == 2


def test_marked_parameters_are_grouped_automatically():
    layer = pc.nn.UnitaryLinear(6)
    extra = torch.nn.Parameter(torch.zeros(6))
    opt = pc.optim.SGD([layer.weight, extra], lr=0.1)
    unitary = [g["unitary"] for g in opt.param_groups]
    assert sorted(unitary) == [False, True]
    layer.weight.grad, extra.grad = torch.randn(6, 6), torch.ones(6)
    opt.step()
    assert pc.unitarity_error(layer.weight) < 1e-5
    assert torch.equal(extra.detach(), torch.full((6,), -0.1))


def test_state_dict_round_trip(gen):
    W = torch.nn.Parameter(haar(5, generator=gen))
    opt = pc.optim.RMSprop([{"params": [W], "unitary": True, "rank": 2, "variant": "D"}], lr=0.01)
    W.grad = torch.randn(5, 5, dtype=torch.float64)
    opt.step()
    clone = pc.optim.RMSprop([{"params": [W], "unitary": True}], lr=0.5)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))
    group = clone.param_groups[0]
    assert (group["rank"], group["variant"], group["lr"]) == (2, "D", 0.01)
    assert torch.equal(clone.state[W]["square_avg"], opt.state[W]["square_avg"])


@pytest.mark.parametrize(
    "group,error,match",
    [
        ({"rank": 0}, ValueError, "rank must satisfy"),
        ({"rank": 9}, ValueError, "rank must satisfy"),
        ({"rank": 2.0}, TypeError, "rank must be an int"),
        ({"variant": "Q"}, ValueError, "variant must be one of"),
        ({"approx": "svd"}, ValueError, "approx must be one of"),
        ({"weight_decay": 0.1}, ValueError, "weight_decay must be 0"),
    ],
)
def test_bad_unitary_group_options(group, error, match):
    W = torch.nn.Parameter(torch.eye(8))
    with pytest.raises(error, match=match):
        pc.optim.Adam([{"params": [W], "unitary": True, **group}], lr=0.1)


def test_non_square_unitary_parameter_rejected():
    with pytest.raises(ValueError, match="a unitary parameter must have shape"):
        pc.optim.SGD([{"params": [torch.nn.Parameter(torch.ones(3, 4))], "unitary": True}])


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (pc.optim.SGD, torch.optim.SGD),
        (pc.optim.RMSprop, torch.optim.RMSprop),
        (pc.optim.Adam, torch.optim.Adam),
    ],
)
def test_default_learning_rate_is_torchs(ours, theirs):
    w = torch.nn.Parameter(torch.zeros(3))
    assert ours([w]).defaults["lr"] == theirs([w]).defaults["lr"]
    assert ours([w], lr=0.25).defaults["lr"] == 0.25


def test_make_and_unknown_name():
    p = torch.nn.Parameter(torch.ones(2))
    assert isinstance(pc.optim.make("RMSprop", [p], lr=0.1), pc.optim.RMSprop)
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        pc.optim.make("lbfgs", [p], lr=0.1)


def test_closure_is_evaluated():
    W = torch.nn.Parameter(torch.eye(3))
    opt = pc.optim.SGD([{"params": [W], "unitary": True}], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (W - 2).pow(2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == pytest.approx(27.0)  # 3 * 1 + 6 * 4
    assert pc.unitarity_error(W) < 1e-6


@pytest.mark.parametrize("capturable", [False, True])
@pytest.mark.parametrize("name", pc.OPTIMIZER_NAMES)
def test_step_hooks_run_once_after_the_unitary_update(name, capturable, gen):
    """torch hooks a class's step once any instance of it exists; a plain torch optimizer
    made first must not make ours run its hooks twice (once on the zero stand-in)."""
    plain = torch.nn.Parameter(torch.zeros(2))
    pc.optim.make(name, [plain], lr=0.1)  # patches our class
    TORCH[name]([plain], lr=0.1)  # patches torch's class
    W = torch.nn.Parameter(pc.init.haar(6, dtype=torch.float64, generator=gen))
    group = {"params": [W], "unitary": True, "rank": 2}
    opt = pc.optim.make(name, [group], lr=0.01, capturable=capturable)
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(pc.unitarity_error(W)))
    W.grad = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    opt.step()
    assert len(seen) == 1 and seen[0] < 1e-12
