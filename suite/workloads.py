"""The workloads, built from a :class:`suite.cases.Case` and the method registry.

* ``update``: one in-place unitary update of a Haar-random N x N weight ``A`` from a fixed
  gradient ``G`` (``Method.update(A, G, lr, **options)``); repeating it is valid (A stays
  unitary), so it can be timed in a loop.
* ``train_step``: ``zero_grad``, forward ``m(x)`` on a batch, mean squared error,
  backward, ``optimizer.step()`` of the protocol module (RMSprop, ``TRAIN_LR``).
* ``accuracy``: unitarity ``||W^H W - I||_F / sqrt(N)`` at initialization, after one and
  after ``steps`` training steps; for ranked methods with a ``reference``, the relative
  distance of the rank-k update from the exact full-gradient step (see :func:`accuracy`).
* ``conv_update``: ``update`` on the free frequency matrices of a C-channel
  ``spatial x spatial`` circular convolution, a real batch and a complex batch
  (``projunn_core.conv.FrequencyLayout``), from fixed gradients of the same shapes.
* ``conv_train_step``: ``train_step`` of the method's convolution layer on a batch of
  ``(B, C, H, W)`` inputs.
* ``conv_accuracy``: the operator's orthogonality error, ``max |sigma - 1|`` over its
  frequency matrices, at initialization, after one and after ``steps`` training steps,
  and the norm error ``max | ||m(x)|| / ||x|| - 1 |`` on fixed random inputs at the end.

Every function takes the case and returns plain objects; no timing happens here
(``suite.timing`` does that, ``suite.runner`` / ``suite.benchmarks`` / the pytest
benchmarks call both).

>>> from suite.cases import Case
>>> work = prepare(Case("update", "unconstrained", 8))
>>> _ = work.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from projunn_core import unitarity_error
from projunn_core._checks import wide_dtype
from projunn_core.conv import FrequencyLayout, initial_frequency_matrices, orthogonality_error
from projunn_core.graph import capture_step
from projunn_core.init import haar

from .cases import REFERENCE_CAP, Case

__all__ = [
    "STEP_LR",
    "TRAIN_LR",
    "TRAIN_OPTIMIZER",
    "Measurement",
    "Prepared",
    "accuracy",
    "dist_to_exact",
    "make_gradient",
    "prepare",
    "train_state",
    "unitarity_metrics",
]

STEP_LR = 0.1
"""Learning rate of the update workload; the gradient's top singular value is ~1."""
TRAIN_OPTIMIZER = "rmsprop"
"""Optimizer of the train_step / accuracy workloads (the paper's choice)."""
TRAIN_LR = 1e-4
GRADIENT_RANK = 32
GRADIENT_DECAY = 0.7


@dataclass(frozen=True)
class Measurement:
    """One metric of one case: ``value`` in ``unit``; ``iqr``/``repeat``/``samples``
    for timings; ``status`` "ok", "skipped" or "error" with ``reason``; ``step`` for a
    learning-curve row (see :data:`suite.output.COLUMNS`)."""

    metric: str
    value: float | None
    unit: str
    iqr: float | None = None
    repeat: int | None = None
    status: str = "ok"
    reason: str = ""
    step: int | None = None
    samples: str = ""

    @classmethod
    def timing(cls, metric: str, t) -> Measurement:
        """A timing row from a :class:`suite.timing.Timing`: median seconds, IQR, sample
        count and the samples (``;``-separated)."""
        return cls(metric, t.median, "s", t.iqr, t.repeat, samples=";".join(map(repr, t.samples)))


@dataclass
class Prepared:
    """A built workload: ``step()`` is the operation to time; ``state`` keeps its tensors
    and modules alive (``A``, ``G`` or ``module``, ``optimizer``, ``x``, ``y``)."""

    case: Case
    step: Callable[[], Any]
    device: torch.device
    state: dict[str, Any] = field(default_factory=dict)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def make_gradient(n: int, dtype: torch.dtype, device, generator=None, *, batch=()) -> torch.Tensor:
    """A synthetic N x N gradient with a decaying spectrum, like real ones.

    ``G = P diag(s) Q^H`` with P, Q Gaussian N x r (r = min(n, GRADIENT_RANK), columns of
    norm ~1) and ``s_i = GRADIENT_DECAY**i``; so rank-k truncation error falls with k and
    the top singular value is ~1. Costs O(r N^2), no O(N^3) setup. ``batch`` (a shape)
    draws independent ones, ``(*batch, n, n)``.
    """
    r = min(n, GRADIENT_RANK)
    shape = (*batch, n, r)
    P = torch.randn(shape, dtype=dtype, device=device, generator=generator) / math.sqrt(n)
    Q = torch.randn(shape, dtype=dtype, device=device, generator=generator) / math.sqrt(n)
    s = GRADIENT_DECAY ** torch.arange(r, device=device, dtype=torch.float64)
    return (P * s.to(P.real.dtype)) @ Q.mH


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = out - y
    return (d * d.conj()).real.mean()


def train_state(case: Case, batch: int = 32, seed: int = 0) -> dict[str, Any]:
    """The pieces of an eager training step of ``case``: ``module``, ``optimizer`` (with the
    method's ``optimizer_options``), batch ``x``, ``y``, ``loss()`` (forward and loss) and
    ``step()`` (zero_grad, forward, backward, ``optimizer.step()``)."""
    device = torch.device(case.device)
    torch.manual_seed(seed)  # module initializers use the global generator
    options = case.method_options()
    if case.conv:
        hw = case.spatial
        module = case.spec.conv(case.n, hw, hw, dtype=case.torch_dtype, device=device, **options)
        shape = (batch, case.n, hw, hw)
    else:
        module = case.spec(case.n, dtype=case.torch_dtype, device=device, **options)
        shape = (batch, case.n)
    opt = module.optimizer(TRAIN_OPTIMIZER, lr=TRAIN_LR, **case.spec.optimizer_options)
    gen = _generator(device, seed + 1)
    x = torch.randn(shape, dtype=case.torch_dtype, device=device, generator=gen)
    y = torch.randn(shape, dtype=case.torch_dtype, device=device, generator=gen)

    def loss():
        return _mse(module(x), y)

    def step():
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        opt.step()
        return value

    return {"module": module, "optimizer": opt, "x": x, "y": y, "loss": loss, "step": step}


def _conv_update(case: Case, device: torch.device, seed: int) -> Prepared:
    gen = _generator(device, seed)
    layout = FrequencyLayout(case.spatial, case.spatial)
    weights = initial_frequency_matrices(layout, case.n, "haar", case.torch_dtype, device, gen)
    grads = [make_gradient(case.n, A.dtype, device, gen, batch=A.shape[:1]) for A in weights]
    pairs = [(A, G) for A, G in zip(weights, grads, strict=True) if A.numel()]
    update, opts = case.spec.update, case.method_options()

    def step():
        for A, G in pairs:
            update(A, G, STEP_LR, **opts)

    return Prepared(case, step, device, {"A": weights, "G": grads})


def prepare(case: Case, *, batch: int = 32, seed: int = 0) -> Prepared:
    """Build ``case`` (update, train_step or their conv forms); raises
    ``NotImplementedError`` if skipped.

    For a ``graphed`` method the step is captured in a CUDA graph (after the capture's
    warm-up steps) and ``step()`` replays it.
    """
    case.require()
    device = torch.device(case.device)
    if case.workload == "conv_update":
        return _conv_update(case, device, seed)
    if case.workload in ("train_step", "conv_train_step"):
        state = train_state(case, batch, seed)
        step = state.pop("step")
        if case.spec.graphed:
            step = state["graph"] = capture_step(step, optimizer=state["optimizer"])
        return Prepared(case, step, device, state)
    if case.workload == "update":
        gen = _generator(device, seed)
        A = haar(case.n, case.torch_dtype, device, gen)
        G = make_gradient(case.n, case.torch_dtype, device, gen)
        update, opts = case.spec.update, case.method_options()

        def step():
            return update(A, G, STEP_LR, **opts)

        state = {"A": A, "G": G}
        if case.spec.graphed:
            step = state["graph"] = capture_step(step, device=device)
        return Prepared(case, step, device, state)
    raise ValueError(f"prepare() builds update and train_step cases, not {case.workload!r}")


@lru_cache(maxsize=8)
def _reference(kind: str, case_key: tuple, seed: int):
    """Start matrix A0, gradient G (case dtype) and the exact float64 step (host numpy)."""
    import scipy.linalg as sl

    n, dtype_name, device = case_key
    from .cases import DTYPES

    dtype = DTYPES[dtype_name]
    gen = _generator(torch.device(device), seed)
    A0 = haar(n, dtype, device, gen)
    G = make_gradient(n, dtype, device, gen)
    wide = wide_dtype(dtype)
    A = A0.to(wide).cpu().numpy()
    D = -STEP_LR * G.to(wide).cpu().numpy()
    if kind == "expm":
        X = A.conj().T @ D
        exact = A @ sl.expm((X - X.conj().T) / 2)
    elif kind == "polar":
        exact = sl.polar(A + D)[0]
    else:  # pragma: no cover - registry values are fixed
        raise ValueError(f"unknown reference {kind!r}")
    return A0, G, exact


def unitarity_metrics(
    case: Case, *, steps: int = 10, batch: int = 32, seed: int = 0
) -> list[Measurement]:
    """``unitarity_init``, ``unitarity_after_1_step``, ``unitarity_after_{steps}_steps``:
    ``||W^H W - I||_F / sqrt(N)`` of the module's matrix while training it (train_step).

    Conv cases: ``orthogonality_*`` (``max |sigma - 1|`` over the frequency matrices, see
    :func:`projunn_core.conv.orthogonality_error`) at the same points, then
    ``norm_error_after_{steps}_steps``: ``max | ||m(x)|| / ||x|| - 1 |`` over a batch of
    fresh random inputs (what the operator's orthogonality means for a user).
    """
    case.require()
    state = train_state(case, batch, seed)
    module, step = state["module"], state["step"]
    prefix, error = (
        ("orthogonality", orthogonality_error)
        if case.conv
        else (
            "unitarity",
            unitarity_error,
        )
    )
    with torch.no_grad():
        out = [Measurement(f"{prefix}_init", error(module.matrix()), "1")]
    for i in range(1, steps + 1):
        step()
        if i == 1 or i == steps:
            with torch.no_grad():
                W = module.matrix()
            name = "after_1_step" if i == 1 else f"after_{steps}_steps"
            out.append(Measurement(f"{prefix}_{name}", error(W), "1"))
    if case.conv:
        out.append(Measurement(f"norm_error_after_{steps}_steps", _norm_error(state, seed), "1"))
    return out


@torch.no_grad()
def _norm_error(state: dict[str, Any], seed: int) -> float:
    x = state["x"]
    probe = torch.randn(
        x.shape, dtype=x.dtype, device=x.device, generator=_generator(x.device, seed + 2)
    )
    dims = tuple(range(1, x.dim()))
    ratio = torch.linalg.vector_norm(state["module"](probe), dim=dims) / torch.linalg.vector_norm(
        probe, dim=dims
    )
    return float((ratio.double() - 1).abs().max())


def dist_to_exact(case: Case, *, seed: int = 0) -> Measurement | None:
    """Relative distance of the rank-k update from the exact full-gradient step.

    Starting from the same ``A0`` and gradient ``G``: ``||A_k - A_exact||_F /
    ||A_exact - A0||_F`` where A_k is ``Method.update`` at rank k and A_exact the exact step
    with the full gradient, computed in float64 by scipy (``Method.reference``: ``expm``
    retraction for projUNN-T, polar projection for projUNN-D). 0 = exact; 1 = as far off
    as not moving at all. ``None`` for methods without a reference; a skipped measurement
    above ``REFERENCE_CAP``.
    """
    spec = case.spec
    if spec.reference is None or spec.update is None or case.conv:
        return None
    case.require()
    if case.n > REFERENCE_CAP:
        return Measurement(
            "dist_to_exact",
            None,
            "1",
            status="skipped",
            reason=f"float64 reference is O(N^3) on the host: skipped above "
            f"N={REFERENCE_CAP} (suite.cases.REFERENCE_CAP)",
        )
    A0, G, exact = _reference(spec.reference, (case.n, case.dtype, case.device), seed)
    A = spec.update(A0.clone(), G, STEP_LR, **case.method_options())
    wide = wide_dtype(A.dtype)
    ex = torch.from_numpy(exact)
    denom = torch.linalg.matrix_norm(ex - A0.to(wide).cpu())
    dist = torch.linalg.matrix_norm(A.to(wide).cpu() - ex) / denom
    return Measurement("dist_to_exact", float(dist), "1")


def accuracy(case: Case, *, steps: int = 10, batch: int = 32, seed: int = 0) -> list[Measurement]:
    """All accuracy metrics of ``case`` (unit "1" = dimensionless):
    :func:`unitarity_metrics` and, for ranked methods with a reference,
    :func:`dist_to_exact`."""
    out = unitarity_metrics(case, steps=steps, batch=batch, seed=seed)
    dist = dist_to_exact(case, seed=seed)
    if dist is not None:
        out.append(dist)
    return out
