"""On CUDA: the sync-free step makes no host synchronization, and a captured step replays
exactly what the eager steps do, for both implementations of the sync-free step (torch
operators and the fused Triton kernels; skipped without CUDA; projunn-bench gpu-check runs
them)."""

import pytest
import torch
from helpers import max_abs

import projunn_core as pc
from projunn_core import fused

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEV = "cuda"
OPTIMIZERS = ("sgd", "rmsprop", "adam")


@pytest.fixture(params=["cholesky", "fused"])
def impl(request):
    """Both implementations of the sync-free step (the fused one needs Triton)."""
    why = fused.unavailable(DEV) if request.param == "fused" else None
    if why is not None:
        pytest.skip(f"impl='fused' cannot run here: {why}")
    return request.param


def _gen(seed):
    return torch.Generator(device=DEV).manual_seed(seed)


class _NoSync:
    """``torch.cuda.set_sync_debug_mode("error")`` for the duration of a block."""

    def __enter__(self):
        torch.cuda.synchronize()
        self.old = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(self.old)


@pytest.mark.parametrize("variant", "TD")
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("batch,k", [((), 1), ((), 16), ((3,), 2), ((3,), 16)])
def test_sync_free_step_makes_no_host_sync(variant, dtype, batch, k, impl):
    A = pc.init.haar(64, dtype=dtype, device=DEV).expand(*batch, 64, 64).clone()
    G = torch.randn(*batch, 64, 64, dtype=dtype, device=DEV)
    a, b = torch.randn(*batch, 64, k, dtype=dtype, device=DEV), torch.randn_like(G[..., :k])
    skipped = torch.zeros((), dtype=torch.int64, device=DEV)
    gen = _gen(0)

    def steps():
        pc.projunn_step(
            A, G, 0.1, k, variant, sync_free=True, generator=gen, skipped=skipped, impl=impl
        )
        pc.VARIANTS[variant](A, 0.01 * a, b, sync_free=True, skipped=skipped, impl=impl)

    steps()  # warm-up: cached constants, cuBLAS/cuSOLVER handles
    with _NoSync():
        steps()
    assert skipped.item() == 0 and pc.unitarity_error(A) < 1e-5


def test_eager_step_with_check_false_still_synchronizes():
    """The eager path's small eigh synchronizes even without checks: why sync_free exists."""
    A, G = pc.init.haar(64, device=DEV), torch.randn(64, 64, device=DEV)
    pc.projunn_step(A, G, 0.1, 2, check=False)
    with pytest.raises(RuntimeError, match="synchroniz"), _NoSync():
        pc.projunn_step(A, G, 0.1, 2, check=False)


def _model(seed, dtype=torch.float32, batch=()):
    torch.manual_seed(seed)
    recurrent = pc.nn.UnitaryLinear(32, dtype=dtype, device=DEV, rank=2)
    if batch:
        W = recurrent.weight.detach().expand(*batch, 32, 32).clone()
        recurrent.weight = torch.nn.Parameter(W)
        recurrent.weight.projunn_unitary = True
    readout = torch.nn.Linear(32, 32, dtype=dtype, device=DEV)
    return torch.nn.ModuleDict({"recurrent": recurrent, "readout": readout})


def _train_step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        out = model["readout"](model["recurrent"](x))
        loss = (out - y).square().mean()
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_capturable_optimizer_step_makes_no_host_sync(name):
    model = _model(0)
    opt = pc.optim.make(name, model.parameters(), lr=1e-3, capturable=True, generator=_gen(1))
    x, y = torch.randn(8, 32, device=DEV), torch.randn(8, 32, device=DEV)
    step = _train_step(model, opt, x, y)
    step()
    opt.zero_grad(set_to_none=True)
    model["readout"](model["recurrent"](x)).sub(y).square().mean().backward()
    with _NoSync():
        opt.step()
    assert opt.skipped_steps == 0


@pytest.mark.parametrize("variant", "TD")
def test_captured_update_replays_the_eager_steps(variant, impl):
    A0 = pc.init.haar(128, dtype=torch.float64, device=DEV)
    G = torch.randn(128, 128, dtype=torch.float64, device=DEV)
    eager, graphed = A0.clone(), A0.clone()
    g_eager, g_graph = _gen(5), _gen(5)
    for _ in range(3 + 4):  # the capture's 3 warm-up steps, then 4 replays
        pc.projunn_step(eager, G, 0.05, 4, variant, sync_free=True, generator=g_eager, impl=impl)

    def update():
        pc.projunn_step(graphed, G, 0.05, 4, variant, sync_free=True, generator=g_graph, impl=impl)

    step = pc.graph.capture_step(update, generators=[g_graph], warmup=3)
    assert step.graphed
    for _ in range(4):
        step()
    torch.cuda.synchronize()
    assert max_abs(graphed.cpu(), eager.cpu()) < 1e-12  # same sketches, same steps
    assert not torch.equal(graphed, A0) and pc.unitarity_error(graphed) < 1e-13


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("batch", [(), (3,)])
def test_captured_train_step_equals_the_eager_steps(name, batch):
    dtype = torch.float64
    eager_model, graph_model = _model(2, dtype, batch), _model(2, dtype, batch)
    opts = [
        pc.optim.make(name, m.parameters(), lr=1e-2, capturable=True, generator=_gen(9))
        for m in (eager_model, graph_model)
    ]
    data = torch.Generator(device=DEV).manual_seed(3)
    batches = [
        torch.randn(2, 8, 32, dtype=dtype, device=DEV, generator=data).unbind() for _ in range(6)
    ]
    x, y = (torch.empty(8, 32, dtype=dtype, device=DEV) for _ in range(2))
    eager_step = _train_step(eager_model, opts[0], x, y)
    graph_step = _train_step(graph_model, opts[1], x, y)
    x.copy_(batches[0][0]), y.copy_(batches[0][1])
    for _ in range(3):  # the warm-up steps of the capture, eagerly on the same batch
        eager_step()
    step = pc.graph.capture_step(graph_step, optimizer=opts[1], warmup=3)
    for bx, by in batches[1:]:
        x.copy_(bx), y.copy_(by)
        eager_loss = eager_step().item()
        assert abs(step().item() - eager_loss) < 1e-12
    for p, q in zip(eager_model.parameters(), graph_model.parameters(), strict=True):
        assert max_abs(p.detach().cpu(), q.detach().cpu()) < 1e-12
    assert pc.unitarity_error(graph_model["recurrent"].weight) < 1e-13


def test_replayed_step_skips_a_non_finite_gradient():
    model = _model(4)
    opt = pc.optim.make("rmsprop", model.parameters(), lr=1e-2, capturable=True)
    x, y = torch.randn(8, 32, device=DEV), torch.randn(8, 32, device=DEV)
    step = pc.graph.capture_step(_train_step(model, opt, x, y), optimizer=opt)
    step()
    W = model["recurrent"].weight
    before = W.detach().clone()
    x[0, 0] = float("nan")
    step()
    torch.cuda.synchronize()
    assert torch.equal(W.detach(), before)
    assert opt.skipped_steps == 3  # the unitary weight, the readout's weight and bias
    x[0, 0] = 0.0
    step()
    assert not torch.equal(W.detach(), before) and pc.unitarity_error(W) < 1e-5


def test_graphed_method_in_the_suite():
    from suite.measure.cases import GRIDS, Case
    from suite.measure.runner import run_case

    rows = run_case(
        Case("update", "projunn_t_graphed", 256, 4, device=DEV), GRIDS["tiny"].settings
    ).rows
    assert rows[0].metric == "time" and rows[0].status == "ok" and rows[0].value > 0
