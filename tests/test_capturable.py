"""The sync-free path through the public API: projunn_step / projunn_t / projunn_d with
sync_free=True, capturable optimizers and the capture helper's CPU fallback.

The CUDA side (no host sync under torch.cuda.set_sync_debug_mode("error"), capture and
replay equal to the eager steps) is in tests/test_cuda_graphs.py.
"""

import warnings

import pytest
import torch
from helpers import haar, max_abs, randn

import projunn_core as pc

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIMIZERS = [
    (pc.optim.SGD, {"momentum": 0.9}),
    (pc.optim.RMSprop, {"alpha": 0.9}),
    (pc.optim.Adam, {"betas": (0.8, 0.95)}),
]


@pytest.mark.parametrize("kernel", [pc.projunn_t, pc.projunn_d])
def test_kernels_sync_free_equal_eager(kernel, gen):
    A = haar(10, torch.complex128, batch=(2,), generator=gen)
    a = 0.3 * randn(2, 10, 3, dtype=A.dtype, generator=gen)
    b = randn(2, 10, 3, dtype=A.dtype, generator=gen)
    B = A.clone()
    kernel(A, a, b)
    assert kernel(B, a, b, sync_free=True) is B
    assert max_abs(A, B) < 1e-12


@pytest.mark.parametrize("variant", "TD")
def test_step_sync_free_equals_eager(variant, gen):
    A = haar(24, torch.float64, generator=gen)
    G = randn(24, 24, generator=gen)
    B = A.clone()
    pc.projunn_step(A, G, 0.1, 4, variant, generator=torch.Generator().manual_seed(7))
    pc.projunn_step(
        B, G, 0.1, 4, variant, generator=torch.Generator().manual_seed(7), sync_free=True
    )
    assert max_abs(A, B) < 1e-12


def test_sync_free_step_skips_non_finite_gradient_on_the_device(gen):
    A = haar(8, torch.float32, generator=gen)
    G = torch.full((8, 8), float("nan"))
    before = A.clone()
    skipped = torch.zeros((), dtype=torch.int64)
    pc.projunn_update(A, G, rank=2, sync_free=True, skipped=skipped)  # does not raise
    assert torch.equal(A, before) and skipped.item() == 1
    with pytest.raises(ValueError, match="non-finite"):
        pc.projunn_update(A, G, rank=2)  # the eager path keeps its error


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"approx": "column"}, ValueError, "needs approx in"),
        ({"approx": "exact"}, ValueError, "needs approx in"),
        ({"skipped": torch.zeros(())}, TypeError, "skipped must be"),
        ({"skipped": 0}, TypeError, "skipped must be"),
        ({"oversample": 2.0, "depth": 3}, TypeError, "unknown approximation option"),
        ({"power_iters": -1}, ValueError, "power_iters"),
    ],
)
def test_sync_free_bad_arguments(kwargs, error, match):
    A = torch.eye(6)
    with pytest.raises(error, match=match):
        pc.projunn_step(A, torch.ones(6, 6), 0.1, 2, sync_free=True, **kwargs)
    assert torch.equal(A, torch.eye(6))


def test_sync_free_generator_must_be_on_the_device():
    A = torch.eye(6, device="meta")  # any device other than the generator's
    with pytest.raises(ValueError, match="generator on meta"):
        pc.projunn_step(
            A, torch.ones(6, 6, device="meta"), 0.1, sync_free=True, generator=torch.Generator()
        )
    W = torch.nn.Parameter(torch.eye(4, device="meta"))
    with pytest.raises(ValueError, match="generator on the parameters' device"):
        pc.optim.SGD(
            [{"params": [W], "unitary": True}], capturable=True, generator=torch.Generator()
        )


def test_kernel_sync_free_rejects_a_bad_counter():
    with pytest.raises(TypeError, match="skipped must be"):
        pc.projunn_t(torch.eye(3), torch.ones(3, 1), torch.ones(3, 1), sync_free=True, skipped=[0])


def _model(seed, dtype=torch.float64, batch=()):
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(haar(8, dtype, batch=batch, generator=g))
    bias = torch.nn.Parameter(torch.randn(8, dtype=dtype, generator=g))
    return W, bias


@pytest.mark.parametrize("cls,kw", OPTIMIZERS)
@pytest.mark.parametrize("variant", "TD")
def test_capturable_optimizer_equals_the_eager_one(cls, kw, variant, gen):
    """On the CPU the capturable step runs the same sync-free math: same seed, same steps."""
    models, opts = [], []
    for capturable in (False, True):
        W, bias = _model(3)
        groups = [
            {"params": [W], "unitary": True, "rank": 2, "variant": variant},
            {"params": [bias]},
        ]
        opt = cls(
            groups,
            lr=0.05,
            generator=torch.Generator().manual_seed(11),
            capturable=capturable,
            **kw,
        )
        models.append((W, bias))
        opts.append(opt)
    for _ in range(4):
        grads = (randn(8, 8, generator=gen), randn(8, generator=gen))
        for (W, bias), opt in zip(models, opts, strict=True):
            W.grad, bias.grad = grads[0].clone(), grads[1].clone()
            opt.step()
    (W0, b0), (W1, b1) = models
    assert max_abs(W0.detach(), W1.detach()) < 1e-12
    assert torch.equal(b0, b1)
    assert opts[1].skipped_steps == 0 and pc.unitarity_error(W1) < 1e-13


@pytest.mark.parametrize("cls,kw", OPTIMIZERS)
def test_capturable_optimizer_skips_bad_matrices_on_the_device(cls, kw, gen):
    W, bias = _model(5, torch.float32, batch=(3,))
    opt = cls([{"params": [W], "unitary": True}, {"params": [bias]}], lr=0.1, capturable=True, **kw)
    W.grad, bias.grad = randn(3, 8, 8, dtype=W.dtype, generator=gen), torch.ones(8)
    opt.step()  # a good step first: moment buffers exist
    W_before, b_before = W.detach().clone(), bias.detach().clone()
    W.grad = randn(3, 8, 8, dtype=W.dtype, generator=gen)
    W.grad[1, 2, 3] = float("inf")
    bias.grad = torch.full((8,), float("nan"))
    opt.step()
    assert torch.equal(W[1].detach(), W_before[1])  # the bad matrix of the batch
    assert not torch.equal(W[0].detach(), W_before[0])  # the good ones still moved
    assert torch.equal(bias.detach(), b_before)
    assert opt.skipped_steps == 2
    assert torch.isfinite(W).all() and pc.unitarity_error(W) < 1e-5
    assert all(torch.isfinite(t).all() for s in opt.state.values() for t in s.values())


def test_capturable_needs_the_range_finder():
    W = torch.nn.Parameter(torch.eye(4))
    with pytest.raises(ValueError, match="capturable=True needs approx"):
        pc.optim.Adam([{"params": [W], "unitary": True, "approx": "column"}], capturable=True)
    layer = pc.nn.UnitaryLinear(4, approx="exact")
    with pytest.raises(ValueError, match="capturable=True needs approx"):
        layer.optimizer("rmsprop", capturable=True)


def test_capture_step_falls_back_on_the_cpu_with_a_message(gen):
    layer = pc.nn.UnitaryLinear(8, dtype=torch.float64)
    opt = layer.optimizer("rmsprop", lr=1e-2, rank=2, capturable=True)
    x, y = randn(4, 8, generator=gen), randn(4, 8, generator=gen)
    calls = []

    def train_step():
        calls.append(1)
        opt.zero_grad(set_to_none=True)
        loss = (layer(x) - y).square().mean()
        loss.backward()
        opt.step()
        return loss

    with pytest.warns(RuntimeWarning, match="runs eagerly") as record:
        step = pc.graph.capture_step(train_step, optimizer=opt, warmup=2)
    assert "CUDA graphs capture CUDA work only, and the step runs on cpu" in str(record[0].message)
    assert not step.graphed and "cpu" in step.reason and "eager" in repr(step)
    assert len(calls) == 2  # the warm-up steps are taken as with a graph
    losses = [step().item() for _ in range(3)]
    assert len(calls) == 5 and losses[-1] < losses[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="runs eagerly"):
            pc.graph.capture_step(train_step, device="cpu")


def test_capture_step_argument_checks():
    with pytest.raises(ValueError, match="warmup"):
        pc.graph.capture_step(lambda: None, warmup=0)
    assert pc.graph.graph_unavailable("cpu").startswith("CUDA graphs capture CUDA work only")
    if not torch.cuda.is_available():
        assert pc.graph.graph_unavailable("cuda") == "CUDA is not available on this machine"
