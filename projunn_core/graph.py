"""Capture one training step in a CUDA graph and replay it.

A CUDA graph records the kernels of a step once and replays them with a single launch,
which removes the Python and launch overhead of the many small kernels of a projUNN
step. The step must not synchronize the host: use ``capturable=True`` optimizers (or
``sync_free=True`` steps). :func:`capture_step` follows torch's recipe for capturing
whole training steps: warm-up calls on a side stream (they are real steps: they create
the optimizer state and the gradients), then one capture. Each call of the returned
:class:`CapturedStep` replays the step on the tensors it was captured with: copy new
inputs into those tensors (``x.copy_(batch)``) before the call.

Random draws inside the step (the sketches of the range finder) replay correctly when
their generator is registered with the graph: the default CUDA generator always is,
and ``capture_step`` registers the optimizer's own ``generator`` and any in
``generators``; a seeded generator gives the same sketches eagerly and replayed.

Without CUDA, or for a CPU step, ``capture_step`` warns, takes the same warm-up steps and
returns a :class:`CapturedStep` that runs the step eagerly, so that the same code takes
the same steps anywhere.

>>> import warnings, torch, projunn_core as pc
>>> W = torch.nn.Parameter(pc.init.haar(8))
>>> opt = pc.optim.SGD([{"params": [W], "unitary": True}], lr=0.1, capturable=True)
>>> x = torch.randn(4, 8)
>>> def train_step():
...     opt.zero_grad(set_to_none=True)
...     loss = (x @ W.mT).square().mean()
...     loss.backward()
...     opt.step()
...     return loss
>>> with warnings.catch_warnings(record=True):  # on a CPU: runs eagerly, with a warning
...     step = capture_step(train_step, optimizer=opt)
>>> loss = step()  # one training step (replayed where CUDA graphs are available)
>>> step.graphed, pc.unitarity_error(W) < 1e-5  # a CPU step always runs eagerly
(False, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["CapturedStep", "capture_step", "graph_unavailable"]


def graph_unavailable(device: torch.device | str) -> str | None:
    """Why a step on ``device`` cannot be captured in a CUDA graph here, or ``None``."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"CUDA graphs capture CUDA work only, and the step runs on {device}"
    if not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    return None


class CapturedStep:
    """A step captured by :func:`capture_step`; calling it replays the step and returns
    the step's (static) output. ``graphed`` says whether a CUDA graph replays it;
    otherwise ``reason`` says why it runs eagerly. ``graph`` is the
    ``torch.cuda.CUDAGraph`` (or ``None``)."""

    def __init__(self, fn: Callable[[], Any], graph=None, output: Any = None, reason=None):
        self.fn = fn
        self.graph = graph
        self.output = output
        self.reason = reason

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    def __call__(self) -> Any:
        if self.graph is None:
            return self.fn()
        self.graph.replay()
        return self.output

    def __repr__(self) -> str:
        how = "CUDA graph" if self.graphed else f"eager ({self.reason})"
        return f"CapturedStep({getattr(self.fn, '__name__', 'step')}, {how})"


def _optimizers(optimizer) -> list:
    if optimizer is None:
        return []
    return list(getattr(optimizer, "optimizers", [optimizer]))  # Combined holds several


def _device_of(optimizers) -> torch.device | None:
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                return p.device
    return None


def capture_step(
    fn: Callable[[], Any],
    *,
    optimizer=None,
    generators: Iterable[torch.Generator | None] = (),
    device: torch.device | str | None = None,
    warmup: int = 3,
    pool=None,
) -> CapturedStep:
    """Capture ``fn()`` (a whole training step, or any sync-free function) in a CUDA graph.

    ``optimizer``: the optimizer(s) ``fn`` steps (a :class:`projunn_core.optim.Combined`
    too); its ``generator`` is registered and its parameters give the device.
    ``generators``: more CUDA generators the step draws from. ``device``: the step's
    device when no optimizer tells it (default: CUDA if available). ``warmup`` (>= 1)
    eager calls come first, also without CUDA: they are real steps. ``pool``: a memory
    pool shared with other graphs (``torch.cuda.graph_pool_handle()``).

    Raises ``RuntimeError`` naming the likely cause when the capture fails (a host
    synchronization in the step, an unregistered generator).
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(
            f"warmup must be an int >= 1 (optimizer state is created then), got {warmup!r}"
        )
    optimizers = _optimizers(optimizer)
    if device is None:
        device = _device_of(optimizers) or ("cuda" if torch.cuda.is_available() else "cpu")
    reason = graph_unavailable(device)
    if reason is not None:
        warnings.warn(
            f"capture_step: {reason}, so it runs eagerly, without a CUDA graph",
            RuntimeWarning,
            stacklevel=2,
        )
        for _ in range(warmup):
            fn()
        return CapturedStep(fn, reason=reason)
    gens = [opt.generator for opt in optimizers if getattr(opt, "generator", None) is not None]
    gens += [g for g in generators if g is not None]
    for gen in gens:
        if gen.device.type != "cuda":
            raise ValueError(f"a graph can only replay CUDA generators, got one on {gen.device}")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for gen in {id(g): g for g in gens}.values():
        graph.register_generator_state(gen)
    try:
        with torch.cuda.graph(graph, pool=pool):
            output = fn()
    except Exception as e:
        raise RuntimeError(
            f"capture_step: capturing the step failed ({type(e).__name__}: {e}). A captured "
            "step must not synchronize the host (use capturable=True optimizers or "
            "sync_free=True steps, no .item() or printing of tensors) and must register "
            "every torch.Generator it draws from (optimizer= or generators=)"
        ) from e
    return CapturedStep(fn, graph, output)
