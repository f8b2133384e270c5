"""Optimizers that keep unitary parameters unitary through projUNN.

Each optimizer is the matching ``torch.optim`` optimizer with five extra per-group
options: ``unitary`` (bool), ``rank``, ``variant`` ("T" or "D"), ``approx`` (see
:func:`projunn_core.lowrank`) and ``reorthogonalize_every`` (None, the default, or M:
every M-th update of a parameter ends with :func:`projunn_core.reorthogonalize`, which
removes the float32 round-off drift). Non-unitary groups are updated by ``torch.optim``
itself.
For a unitary parameter the torch algorithm computes the additive update it wants
(momentum, RMS scaling, Adam moments included) and projUNN applies its rank-k
approximation unitarily. Parameters whose ``projunn_unitary`` attribute is true (as
:class:`projunn_core.nn.UnitaryLinear` sets on its weight) are put in unitary groups
automatically.

A parameter whose gradient is not finite is skipped, bit-for-bit unchanged, and
counted in ``optimizer.skipped_steps`` (disable with ``skip_nonfinite=False``, which
also removes the host synchronization of the check).

``capturable=True`` (like ``torch.optim``'s option) makes ``step()`` free of host
synchronization, so that a CUDA graph can capture it (see :mod:`projunn_core.graph`):
unitary parameters take the sync-free projUNN step (:mod:`projunn_core.syncfree`; the
range finder, ``approx="range"``), torch's own update runs with its ``capturable`` flag,
and a non-finite gradient is handled on the device: the weight (or the one matrix of a
batched weight) is left bit-for-bit unchanged and counted on the device, while moment
buffers take a step with a zero gradient. Reading ``skipped_steps`` then synchronizes
once. The randomized sketch draws from ``generator`` (or the device's default
generator); a seeded CUDA generator gives the same sketches on every process.
``impl`` (with ``capturable=True`` only) picks the implementation of that sync-free step,
one of :data:`projunn_core.syncfree.IMPLS`; the default ``"auto"`` takes the fused Triton
kernel (:mod:`projunn_core.fused`) where it can run, else torch operators.

>>> import torch, projunn_core as pc
>>> W = torch.nn.Parameter(pc.init.haar(6))
>>> opt = pc.optim.RMSprop([{"params": [W], "unitary": True, "rank": 2}], lr=1e-2)
>>> W.grad = torch.randn(6, 6); opt.step()
>>> pc.unitarity_error(W) < 1e-5, opt.skipped_steps
(True, 0)
"""

from __future__ import annotations

import torch

from . import syncfree
from ._checks import all_finite, check_choice, check_rank, check_size, check_square
from .kernels import check_impl
from .lowrank import lowrank_method
from .protocol import check_optimizer_name
from .repair import reorthogonalize
from .step import VARIANTS, check_sync_free_setup, projunn_update

__all__ = ["SGD", "RMSprop", "Adam", "Combined", "UNITARY_OPTIONS", "make", "make_unitary"]

UNITARY_DEFAULTS = {
    "unitary": False,
    "rank": 1,
    "variant": "T",
    "approx": "range",
    "reorthogonalize_every": None,
}
UNITARY_OPTIONS = ("rank", "variant", "approx", "reorthogonalize_every")
"""The per-group options that only a unitary group takes."""


class _ProjUNNMixin:
    """Adds unitary parameter groups to a ``torch.optim`` optimizer (mixed in first)."""

    DEFAULT_LR = 1e-3
    """The learning rate when none is given (the torch base class's default)."""

    def __init__(
        self,
        params,
        lr=None,
        *,
        generator=None,
        skip_nonfinite=True,
        capturable=False,
        impl=None,
        **kwargs,
    ):
        self.generator = generator
        self.skip_nonfinite = skip_nonfinite
        self.capturable = bool(capturable)
        self.impl = check_impl(impl, self.capturable) if impl is not None else None
        self._skipped = 0
        self._skipped_on_device = {}  # device -> int64 counter (capturable steps)
        self._standins = {}  # unitary parameter -> buffer torch's update writes into
        params = _as_list(params)  # torch's __init__ calls add_param_group: set up first
        kwargs.update(_base_options(self._torch_base(), capturable, params))
        super().__init__(params, lr=self.DEFAULT_LR if lr is None else lr, **kwargs)

    @classmethod
    def _torch_base(cls) -> type:
        """The ``torch.optim`` class this optimizer extends (next after the mixin)."""
        mro = cls.__mro__
        return mro[mro.index(_ProjUNNMixin) + 1]

    @property
    def skipped_steps(self) -> int:
        """Parameters (matrices of a batched unitary parameter) skipped so far for a
        non-finite gradient or update (reading the device counters of capturable steps
        synchronizes)."""
        return self._skipped + sum(int(c) for c in self._skipped_on_device.values())

    def add_param_group(self, param_group: dict) -> None:
        if "unitary" not in param_group:
            params = param_group["params"]
            params = _as_list(params)
            marked = [p for p in params if getattr(p, "projunn_unitary", False)]
            if marked and len(marked) < len(params):  # split into plain and unitary groups
                rest = [p for p in params if not getattr(p, "projunn_unitary", False)]
                self.add_param_group({**param_group, "params": rest, "unitary": False})
                self.add_param_group({**param_group, "params": marked, "unitary": True})
                return
            param_group = {**param_group, "params": params, "unitary": bool(marked)}
        for key, value in UNITARY_DEFAULTS.items():
            param_group.setdefault(key, value)
        if param_group["unitary"]:
            self._check_unitary_group(param_group)
            if self.capturable:
                self._check_capturable_group(param_group)
        super().add_param_group(param_group)
        if self.capturable:  # counters exist before any capture (a graph only replays)
            for p in self.param_groups[-1]["params"]:
                if p.device not in self._skipped_on_device:
                    self._skipped_on_device[p.device] = torch.zeros(
                        (), dtype=torch.int64, device=p.device
                    )

    def _check_capturable_group(self, group: dict) -> None:
        if group.get("reorthogonalize_every") is not None:
            raise ValueError(
                "capturable=True cannot reorthogonalize_every (reorthogonalize synchronizes "
                "the host): call projunn_core.reorthogonalize on the weight between replays"
            )
        who = "capturable=True"
        check_sync_free_setup(group["approx"], None, None, who=who)
        for p in _as_list(group["params"]):
            where = f"the parameters' device ({p.device})"
            check_sync_free_setup(group["approx"], self.generator, p.device, who=who, where=where)
            if self.impl == "fused":  # say now, not at the first step, why it cannot run
                syncfree.resolve_impl(self.impl, p, group["rank"])

    @staticmethod
    def _check_unitary_group(group: dict) -> None:
        check_choice("variant", group["variant"], tuple(VARIANTS))
        lowrank_method("approx", group["approx"])
        if group.get("reorthogonalize_every") is not None:
            check_size("reorthogonalize_every", group["reorthogonalize_every"])
        params = group["params"]
        for p in _as_list(params):
            check_rank("rank", group["rank"], check_square("a unitary parameter", p))
        if group.get("weight_decay", 0):
            raise ValueError(
                "weight_decay must be 0 in a unitary group: it cannot change a unitary weight"
            )

    def _torch_step(self) -> None:
        """The torch algorithm's own step, without torch's step hooks: torch wraps a
        class's ``step`` with the hook runner once an instance of that class exists, so
        a plain ``torch.optim.SGD`` made anywhere in the process would otherwise run our
        hooks twice per step, the first time before the unitary update."""
        step = super().step
        if getattr(step, "hooked", False):
            step = step.__wrapped__.__get__(self)
        step()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.capturable:
            self._capturable_step()
            return loss
        held = []  # (param, grad) hidden from torch because the gradient is not finite
        swapped = []  # (param, group, original data) of unitary parameters
        try:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if self.skip_nonfinite and not all_finite(p.grad):
                        held.append((p, p.grad))
                        p.grad = None
                        self._skipped += 1
                    elif group["unitary"]:
                        # torch updates a zero stand-in, which then holds exactly the
                        # additive update -lr * direction it wants to apply.
                        swapped.append((p, group, p.data))
                        p.data = torch.zeros_like(p.data)
            self._torch_step()
        except BaseException:
            for p, _, original in swapped:
                p.data = original
            raise
        finally:
            for p, grad in held:
                p.grad = grad
        for p, group, original in swapped:
            delta = p.data
            p.data = original
            if self.skip_nonfinite and not all_finite(delta):
                self._skipped += 1
                continue
            projunn_update(
                p.data,
                delta,
                rank=group["rank"],
                variant=group["variant"],
                approx=group["approx"],
                check=False,
                generator=self.generator,
            )
            every = group.get("reorthogonalize_every")  # absent from older state dicts
            if every is not None:
                state = self.state[p]
                state["projunn_updates"] = state.get("projunn_updates", 0) + 1
                if state["projunn_updates"] % every == 0:
                    reorthogonalize(p.data)
        return loss

    def _capturable_step(self) -> None:
        """``step()`` with no host synchronization (``capturable=True``)."""
        swapped = []  # (param, group, original data, finite flags) of unitary parameters
        plain = []  # (param, copy before the step, finite flag) of plain parameters
        try:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    ok = None
                    if self.skip_nonfinite:
                        # one flag per matrix of a unitary weight, one for a plain one
                        ok = syncfree.finite(p.grad if group["unitary"] else p.grad.reshape(1, -1))
                        mask = ok.view(*ok.shape, 1, 1) if group["unitary"] else ok
                        zero = syncfree._constant("zero", p.grad.dtype, p.grad.device)
                        torch.where(mask, p.grad, zero, out=p.grad)  # torch sees 0
                    if group["unitary"]:
                        standin = self._standins.get(p)
                        if standin is None:
                            standin = self._standins[p] = torch.zeros_like(p.data)
                        swapped.append((p, group, p.data, ok))
                        p.data = standin.zero_()
                    elif ok is not None:
                        plain.append((p, p.detach().clone(), ok))
            self._torch_step()
        finally:
            deltas = []
            for p, _, original, _ in swapped:
                deltas.append(p.data)
                p.data = original
        for (p, group, original, ok), delta in zip(swapped, deltas, strict=True):
            syncfree.step(
                original,
                delta,
                group["rank"],
                group["variant"],
                generator=self.generator,
                guard=self.skip_nonfinite,
                valid=ok,
                skipped=self._skipped_on_device[p.device],
                impl=self.impl or "auto",
            )
        for p, before, ok in plain:
            torch.where(ok, p.data, before, out=p.data)
            self._skipped_on_device[p.device].add_(ok.logical_not())


def _base_options(base, capturable: bool, params: list) -> dict:
    """``capturable`` for the torch base class: only where torch takes it (not SGD) and
    only on CUDA (torch refuses it for CPU parameters)."""
    if not capturable or "capturable" not in base.__init__.__code__.co_varnames:
        return {}
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    tensors = [t for ts in tensors for t in ([ts] if isinstance(ts, torch.Tensor) else ts)]
    return {"capturable": any(t.is_cuda for t in tensors)}


def _as_list(params) -> list:
    return [params] if isinstance(params, torch.Tensor) else list(params)


class SGD(_ProjUNNMixin, torch.optim.SGD):
    """``torch.optim.SGD`` (momentum, Nesterov) with projUNN for unitary groups."""


class RMSprop(_ProjUNNMixin, torch.optim.RMSprop):
    """``torch.optim.RMSprop`` with projUNN for unitary groups."""

    DEFAULT_LR = 1e-2


class Adam(_ProjUNNMixin, torch.optim.Adam):
    """``torch.optim.Adam`` with projUNN for unitary groups."""


_CLASSES = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def make(name: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """The projUNN optimizer called ``name`` ("sgd", "rmsprop" or "adam")."""
    return _CLASSES[check_optimizer_name(name)](params, lr=lr, **kwargs)


def make_unitary(name: str, params, lr: float, layer, **kwargs) -> torch.optim.Optimizer:
    """:func:`make` with ``params`` in one unitary group whose :data:`UNITARY_OPTIONS`
    are ``layer``'s attributes (the defaults where it has none) unless ``kwargs`` give
    them (a layer's ``optimizer()``)."""
    group = {"params": list(params), "unitary": True}
    for key in UNITARY_OPTIONS:
        group[key] = kwargs.pop(key, getattr(layer, key, UNITARY_DEFAULTS[key]))
    return make(name, [group], lr=lr, **kwargs)


class Combined:
    """Several optimizers stepped as one (e.g. a recurrent layer's own optimizer and a
    standard one for the rest of a model).

    >>> import torch
    >>> p, q = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    >>> opt = Combined(torch.optim.SGD([p], lr=1.0), torch.optim.SGD([q], lr=0.5))
    >>> p.grad = q.grad = torch.ones(1); opt.step(); (p.item(), q.item())
    (0.0, 0.5)
    """

    def __init__(self, *optimizers):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def skipped_steps(self) -> int:
        return sum(getattr(opt, "skipped_steps", 0) for opt in self.optimizers)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
