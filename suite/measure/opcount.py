"""Count the compute operators a function dispatches, on any device.

A ``TorchDispatchMode`` sees every ATen operator a function dispatches below autograd (and each
custom operator once, as one node: its inside is not seen). :func:`count_ops` sorts them:

* **views** (counted apart, not in the total): operators that write no argument and whose every
  returned tensor aliases an input. The schema says so for declared views
  (``view``, ``t``, ``transpose``, ``select``, ``_conj``, ``detach``, ``split``...); a returned
  tensor sharing an input's storage says so for the undeclared ones (``_unsafe_view``, which
  ``matmul`` uses to reshape its result);
* **metadata-only** operators (also apart): in-place views (``Tag.inplace_view``: ``t_``,
  ``transpose_``...), allocations that write no value (``empty``, ``empty_like``,
  ``empty_strided``, ``new_empty``...), shape queries (``sym_size``...), ``resize_``/``set_``,
  and ``scalar_tensor``, the host tensor that wraps a Python number (as in
  ``torch.where(c, x, 0.0)``);
* **compute** operators: everything else, in-place and ``out=`` operators included (they write
  an argument), factories that fill memory (``zeros``, ``randn``), host reads (``item``) and
  custom operators.

>>> import torch
>>> x, y = torch.randn(3, 3), torch.randn(3, 3)
>>> c = count_ops(lambda: (x.t() @ y).add_(1.0).view(9))
>>> c.total, sorted(c.ops), sorted(c.excluded)
(2, ['aten.add_.Tensor', 'aten.mm.default'], ['aten.t.default', 'aten.view.default'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["METADATA_OPS", "OpCount", "classify", "count_ops", "count_triton_ops"]

METADATA_OPS = frozenset(
    {
        "empty",
        "empty_like",
        "empty_permuted",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "resize_",
        "resize_as_",
        "set_",
        "scalar_tensor",
        "sym_numel",
        "sym_size",
        "sym_storage_offset",
        "sym_stride",
        "is_contiguous",
        "is_non_overlapping_and_dense",
        "is_same_size",
        "is_strides_like_format",
    }
)
"""Operator names (without overload) that change or allocate no tensor values."""


@dataclass(frozen=True)
class OpCount:
    """What :func:`count_ops` saw: ``total`` compute operators, by name in ``ops``
    (``"aten.mm.default"``, ``"projunn.gram.default"``...), the views and metadata-only
    operators in ``excluded``, and ``result``, what the function returned."""

    total: int
    ops: Counter
    excluded: Counter
    result: Any = field(default=None, repr=False, compare=False)


def _tensors(x) -> list[torch.Tensor]:
    return [t for t in tree_leaves(x) if isinstance(t, torch.Tensor)]


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # sparse, nested...: no plain storage
        return None


def classify(func, args=(), kwargs=None, out=None) -> str:
    """``"view"``, ``"metadata"`` or ``"compute"`` for the operator ``func`` (an ``OpOverload``)
    called on ``args``/``kwargs`` and returning ``out`` (see the module docstring).

    >>> import torch
    >>> x = torch.ones(2, 2)
    >>> classify(torch.ops.aten.t.default, (x,), {}, x.t())
    'view'
    >>> classify(torch.ops.aten.add_.Tensor, (x, x), {}, x)
    'compute'
    """
    name = func.__name__.split(".")[0]
    if name in METADATA_OPS or torch.Tag.inplace_view in func.tags:
        return "metadata"
    schema = func._schema
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        return "compute"  # in place or out=
    returned = _tensors(out)
    if not returned:
        return "compute"  # a host read (item, equal) or a custom operator's side effect
    if all(r.alias_info is not None for r in schema.returns):
        return "view"
    inputs = {_storage(t) for t in _tensors((args, kwargs))} - {None}
    if all(_storage(t) in inputs for t in returned):
        return "view"  # an undeclared view such as _unsafe_view
    return "compute"


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()
        self.excluded = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = classify(func, args, kwargs, out)
        (self.ops if kind == "compute" else self.excluded)[str(func)] += 1
        return out


def count_ops(fn, *args, **kwargs) -> OpCount:
    """Run ``fn(*args, **kwargs)`` and count the compute operators it dispatches (views and
    metadata-only operators excluded; see the module docstring).

    >>> import torch
    >>> x = torch.randn(4, 4)
    >>> c = count_ops(lambda: torch.where(x > 0, x, 0.0))
    >>> c.total, c.excluded["aten.scalar_tensor.default"]  # gt and where; 0.0 wrapped apart
    (2, 1)
    """
    mode = _Counter()
    with mode:
        result = fn(*args, **kwargs)
    return OpCount(sum(mode.ops.values()), mode.ops, mode.excluded, result)


_TRITON_LAYOUT = frozenset(
    {
        "make_range",
        "splat",
        "unsplat",
        "broadcast",
        "expand_dims",
        "trans",
        "reshape",
        "permute",
        "join",
        "split",
        "cat",
        "get_program_id",
        "get_num_programs",
        "addptr",
        "bitcast",
    }
)


def _triton_kind(op: str) -> str | None:
    if op in _TRITON_LAYOUT:
        return None
    if op == "dot":
        return "dot"
    if "load" in op or "store" in op or "atomic" in op:
        return "memory"
    return "elementwise"


def count_triton_ops(fn, *args, **kwargs) -> Counter:
    """Run ``fn(*args, **kwargs)`` and count the tile operations that Triton kernels execute in
    Triton's interpreter (``TRITON_INTERPRET=1``), by kind: ``"dot"`` (``tl.dot``),
    ``"reduce"`` (``tl.sum``, ``tl.max``, ``tl.argmax``...), ``"memory"`` (loads, stores,
    atomics) and ``"elementwise"`` (arithmetic, comparisons, ``tl.where``, casts, scalar loop
    arithmetic). Layout-only operations (``arange``, broadcasts, reshapes, transposes, pointer
    arithmetic) are not counted. Every program of a grid counts; compiled kernels are not seen.
    A proxy for the sequential work of a kernel whose tiles fit one program: on a GPU a
    reduction or a dot costs more than an elementwise operation.

    >>> import importlib.util
    >>> counts = count_triton_ops(lambda: None) if importlib.util.find_spec("triton") else {}
    >>> sum(counts.values())  # no kernel ran
    0
    """
    from triton.runtime import interpreter

    counts = Counter()
    saved = []

    def counting(original, kind):
        def wrapper(*a, **k):
            counts[kind] += 1
            return original(*a, **k)

        return wrapper

    builder = interpreter.InterpreterBuilder
    for name, value in list(vars(builder).items()):
        kind = _triton_kind(name.removeprefix("create_")) if name.startswith("create_") else None
        if kind is not None and callable(value):
            saved.append((builder, name, value))
    saved.append((interpreter.ReduceOps, "apply", interpreter.ReduceOps.apply))
    try:
        for owner, name, value in saved:
            kind = "reduce" if owner is interpreter.ReduceOps else _triton_kind(name[7:])
            setattr(owner, name, counting(value, kind))
        fn(*args, **kwargs)
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
    return counts
