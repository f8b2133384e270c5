"""The workloads: what a case runs, in one registry, :data:`WORKLOADS` (name ->
:class:`Workload`).

A :class:`Workload` says what it needs of a method (its functional ``update`` or its
layer), on which matrices (``dense`` N x N, or the ``conv`` batch of C x C frequency
matrices of a circular convolution), and how it runs: a *timed* workload's
:meth:`~Workload.prepare` builds a step to time (:class:`Prepared`); an *evaluated* one's
:meth:`~Workload.evaluate` returns its measurements (accuracy).

* ``update``: one in-place unitary update of a Haar-random N x N weight ``A`` from a fixed
  gradient ``G`` (``Method.update(A, G, lr, **options)``); repeating it is valid (A stays
  unitary), so it can be timed in a loop.
* ``train_step``: ``zero_grad``, forward ``m(x)`` on a batch, mean squared error,
  backward, ``optimizer.step()`` of the protocol module (RMSprop, ``TRAIN_LR``).
* ``accuracy``: unitarity ``||W^H W - I||_F / sqrt(N)`` at initialization, after one and
  after ``steps`` training steps; for ranked methods with a ``reference``, the relative
  distance of the rank-k update from the exact full-gradient step (see :func:`dist_to_exact`).
* ``conv_update``: ``update`` on the free frequency matrices of a C-channel
  ``spatial x spatial`` circular convolution, a real batch and a complex batch
  (``projunn_core.conv.FrequencyLayout``), from fixed gradients of the same shapes.
* ``conv_train_step``: ``train_step`` of the method's convolution layer on a batch of
  ``(B, C, H, W)`` inputs.
* ``conv_accuracy``: the operator's orthogonality error, ``max |sigma - 1|`` over its
  frequency matrices, at initialization, after one and after ``steps`` training steps,
  and the norm error ``max | ||m(x)|| / ||x|| - 1 |`` on fixed random inputs at the end.

No timing happens here (:mod:`suite.measure.probes` measures a prepared step;
:mod:`suite.measure.runner`, the asv benchmarks and the pytest benchmarks call both). A
new workload is one function and one :class:`Workload` entry below.

>>> from suite.measure.cases import Case
>>> work = prepare(Case("update", "unconstrained", 8))
>>> _ = work.step()
>>> [w.name for w in WORKLOADS.values() if not w.timed]
['accuracy', 'conv_accuracy']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from projunn_core import unitarity_error
from projunn_core._checks import wide_dtype
from projunn_core.conv import FrequencyLayout, initial_frequency_matrices, orthogonality_error
from projunn_core.graph import capture_step
from projunn_core.init import haar

from .rows import Measurement
from .settings import Settings

if TYPE_CHECKING:
    from .cases import Case
    from .methods import Method

__all__ = [
    "REFERENCE_CAP",
    "STEP_LR",
    "TRAIN_LR",
    "TRAIN_OPTIMIZER",
    "WORKLOADS",
    "Prepared",
    "Workload",
    "dist_to_exact",
    "evaluate",
    "make_gradient",
    "prepare",
    "train_state",
    "unitarity_metrics",
]

STEP_LR = 0.1
"""Learning rate of the update workload; the gradient's top singular value is ~1."""
TRAIN_OPTIMIZER = "rmsprop"
"""Optimizer of the train_step / accuracy workloads (the paper's choice); a method without
it trains with its ``Method.train_optimizer`` (geoopt: adam), said in its rows' reason."""
TRAIN_LR = 1e-4
GRADIENT_RANK = 32
GRADIENT_DECAY = 0.7
REFERENCE_CAP = 2048
"""Largest n for the float64 scipy reference of the accuracy workload (runs on the host)."""


@dataclass
class Prepared:
    """A built timed workload: ``step()`` is the operation to time; ``state`` keeps its
    tensors and modules alive (``A``, ``G`` or ``module``, ``optimizer``, ``x``, ``y``)."""

    case: Case
    step: Callable[[], Any]
    device: torch.device
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """One registry entry: ``name``, a one-line ``description``; ``matrices`` "dense" (n is
    N) or "conv" (n is the channel count C, the case's ``spatial`` the grid side);
    ``uses`` "update" (the method's functional update) or "layer" (its module: ``build``
    for dense, ``conv`` for conv); ``run`` builds the step to time (a *timed* workload)
    or, when ``timed`` is false, returns the measurements."""

    name: str
    description: str
    matrices: str
    uses: str
    run: Callable[..., Any]
    timed: bool = True

    def applies_to(self, method: Method, device: str | None = None) -> bool:
        """Whether ``method`` can take part (it has what this workload uses), and on
        ``device`` if given (a CUDA-graph method runs on CUDA devices only).

        >>> from suite.measure.methods import METHODS
        >>> WORKLOADS["update"].applies_to(METHODS["eunn"])  # EUNN has no functional update
        False
        >>> WORKLOADS["update"].applies_to(METHODS["projunn_t_graphed"], "cpu")
        False
        """
        layer = method.build if self.matrices == "dense" else method.conv
        if layer is None or (self.uses == "update" and method.update is None):
            return False
        return device is None or not method.graphed or torch.device(device).type == "cuda"

    def options_of(self, method: Method) -> Mapping[str, Any]:
        """The options ``method`` takes here, with their defaults: the convolution layer's
        (``conv_defaults``) when this workload trains a convolution, else ``defaults``."""
        conv_layer = self.matrices == "conv" and self.uses == "layer"
        return method.conv_defaults if conv_layer else method.defaults

    def prepare(self, case: Case, settings: Settings | None = None) -> Prepared:
        """The step of ``case`` to time; raises :class:`suite.measure.cases.Skip` when the
        case cannot run here."""
        if not self.timed:
            raise ValueError(f"{self.name} is not a timed workload: use evaluate()")
        case.require()
        return self.run(case, settings or Settings())

    def evaluate(self, case: Case, settings: Settings | None = None) -> list[Measurement]:
        """The measurements of ``case`` (evaluated workloads); raises
        :class:`suite.measure.cases.Skip` when the case cannot run here."""
        if self.timed:
            raise ValueError(f"{self.name} is a timed workload: use prepare()")
        case.require()
        return self.run(case, settings or Settings())


def prepare(case: Case, settings: Settings | None = None) -> Prepared:
    """``WORKLOADS[case.workload].prepare(case, settings)``."""
    return WORKLOADS[case.workload].prepare(case, settings)


def evaluate(case: Case, settings: Settings | None = None) -> list[Measurement]:
    """``WORKLOADS[case.workload].evaluate(case, settings)``."""
    return WORKLOADS[case.workload].evaluate(case, settings)


# -- inputs -----------------------------------------------------------------------------


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
    """The pieces of an eager training step of ``case``: ``module``, ``optimizer``
    (:data:`TRAIN_OPTIMIZER`, or the method's ``train_optimizer`` where it has none, with the
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
        module = case.spec.build(case.n, dtype=case.torch_dtype, device=device, **options)
        shape = (batch, case.n)
    name = case.spec.optimizer_for(TRAIN_OPTIMIZER)  # geoopt has no RMSprop: its Adam
    opt = module.optimizer(name, lr=TRAIN_LR, **case.spec.optimizer_options)
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


# -- timed workloads ----------------------------------------------------------------------


def _update(case: Case, settings: Settings) -> Prepared:
    device = torch.device(case.device)
    gen = _generator(device, settings.seed)
    A = haar(case.n, case.torch_dtype, device, gen)
    G = make_gradient(case.n, case.torch_dtype, device, gen)
    update, opts = case.spec.update, case.method_options()

    def step():
        return update(A, G, STEP_LR, **opts)

    state = {"A": A, "G": G}
    if case.spec.graphed:
        step = state["graph"] = capture_step(step, device=device)
    return Prepared(case, step, device, state)


def _train_step(case: Case, settings: Settings) -> Prepared:
    """``train_step`` and ``conv_train_step``: a CUDA-graph method's step is captured
    (after the capture's warm-up steps) and ``step()`` replays it."""
    state = train_state(case, settings.batch, settings.seed)
    step = state.pop("step")
    if case.spec.graphed:
        step = state["graph"] = capture_step(step, optimizer=state["optimizer"])
    return Prepared(case, step, torch.device(case.device), state)


def _conv_update(case: Case, settings: Settings) -> Prepared:
    device = torch.device(case.device)
    gen = _generator(device, settings.seed)
    layout = FrequencyLayout(case.spatial, case.spatial)
    weights = initial_frequency_matrices(layout, case.n, "haar", case.torch_dtype, device, gen)
    grads = [make_gradient(case.n, A.dtype, device, gen, batch=A.shape[:1]) for A in weights]
    pairs = [(A, G) for A, G in zip(weights, grads, strict=True) if A.numel()]
    update, opts = case.spec.update, case.method_options()

    def step():
        for A, G in pairs:
            update(A, G, STEP_LR, **opts)

    return Prepared(case, step, device, {"A": weights, "G": grads})


# -- evaluated workloads ------------------------------------------------------------------


@lru_cache(maxsize=8)
def _reference(kind: str, case_key: tuple, seed: int):
    """Start matrix A0, gradient G (case dtype) and the exact float64 step (host numpy)."""
    import scipy.linalg as sl

    n, dtype, device = case_key
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


def unitarity_metrics(case: Case, settings: Settings | None = None) -> list[Measurement]:
    """``unitarity_init``, ``unitarity_after_1_step``, ``unitarity_after_{S}_steps`` (S =
    ``settings.accuracy_steps``): ``||W^H W - I||_F / sqrt(N)`` of the module's matrix
    while training it (train_step).

    Conv cases: ``orthogonality_*`` (``max |sigma - 1|`` over the frequency matrices, see
    :func:`projunn_core.conv.orthogonality_error`) at the same points, then
    ``norm_error_after_{S}_steps``: ``max | ||m(x)|| / ||x|| - 1 |`` over a batch of
    fresh random inputs (what the operator's orthogonality means for a user).
    """
    settings = settings or Settings()
    case.require()
    steps = settings.accuracy_steps
    state = train_state(case, settings.batch, settings.seed)
    module, step = state["module"], state["step"]
    prefix, error = (
        ("orthogonality", orthogonality_error) if case.conv else ("unitarity", unitarity_error)
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
        norm = _norm_error(state, settings.seed)
        out.append(Measurement(f"norm_error_after_{steps}_steps", norm, "1"))
    note = _accuracy_note(case)
    return [dataclasses.replace(m, reason=note) for m in out] if note else out


def _accuracy_note(case: Case) -> str:
    """What a reader of a method's accuracy rows must know: the optimizer it trained with
    when not :data:`TRAIN_OPTIMIZER`, and the bound of a near-unitary method (whose
    distance to the group is a result of its design, not a rounding error)."""
    spec, notes = case.spec, [case.spec.optimizer_note(TRAIN_OPTIMIZER)]
    if spec.approximate:
        opts = case.method_options()
        tol = opts[spec.tolerance_option]
        bound = f"{tol / math.sqrt(case.n):.3g}" if not case.conv else f"{tol:g}"
        what = "||W^H W - I||_F / sqrt(N)" if not case.conv else "max |sigma - 1|"
        notes.append(
            f"{spec.name} is near-unitary by design: {what} <= {bound} "
            f"({spec.tolerance_option}={tol:g})"
        )
    return "; ".join(n for n in notes if n)


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


def dist_to_exact(case: Case, settings: Settings | None = None) -> Measurement | None:
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
        return Measurement.skipped(
            f"the float64 reference is O(N^3) on the host: skipped above N={REFERENCE_CAP} "
            "(suite.measure.workloads.REFERENCE_CAP)",
            "dist_to_exact",
        )
    seed = (settings or Settings()).seed
    A0, G, exact = _reference(spec.reference, (case.n, case.torch_dtype, case.device), seed)
    A = spec.update(A0.clone(), G, STEP_LR, **case.method_options())
    wide = wide_dtype(A.dtype)
    ex = torch.from_numpy(exact)
    denom = torch.linalg.matrix_norm(ex - A0.to(wide).cpu())
    dist = torch.linalg.matrix_norm(A.to(wide).cpu() - ex) / denom
    return Measurement("dist_to_exact", float(dist), "1")


def _accuracy(case: Case, settings: Settings) -> list[Measurement]:
    """All accuracy metrics (unit "1" = dimensionless): :func:`unitarity_metrics` and,
    for ranked methods with a reference, :func:`dist_to_exact`."""
    out = unitarity_metrics(case, settings)
    dist = dist_to_exact(case, settings)
    return out if dist is None else [*out, dist]


WORKLOADS: Mapping[str, Workload] = MappingProxyType(
    {
        w.name: w
        for w in (
            Workload(
                "update",
                "one unitary update of an N x N weight from a given gradient",
                "dense",
                "update",
                _update,
            ),
            Workload(
                "train_step",
                "forward + backward + optimizer step of the layer on a batch",
                "dense",
                "layer",
                _train_step,
            ),
            Workload(
                "accuracy",
                "unitarity while training, distance of a rank-k step to the exact one",
                "dense",
                "layer",
                _accuracy,
                timed=False,
            ),
            Workload(
                "conv_update",
                "update of the C x C frequency matrices of a circular convolution",
                "conv",
                "update",
                _conv_update,
            ),
            Workload(
                "conv_train_step",
                "train_step of an orthogonal convolution on (B, C, H, W) inputs",
                "conv",
                "layer",
                _train_step,
            ),
            Workload(
                "conv_accuracy",
                "orthogonality of a convolution while training, norm error at the end",
                "conv",
                "layer",
                unitarity_metrics,
                timed=False,
            ),
        )
    }
)
"""name -> :class:`Workload`, in the order tables and grids list them."""
