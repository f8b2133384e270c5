"""The fused small problem of the sync-free step: Triton kernels registered as torch custom ops.

``impl="fused"`` of :mod:`projunn_core.syncfree` runs a projUNN step as a handful of large
products plus three operators of the ``projunn`` namespace (math: docs/design.md, section 7.1):

* ``projunn::gram`` -- partial Gram matrices ``X X^H`` of at most two blocks of rows, in float64
  whatever the rows' dtype, one program per matrix and chunk of columns;
* ``projunn::sketch_basis`` -- for the range finder: T with ``Y T`` nearly orthonormal, from the
  Gram matrix of the sketch Y;
* ``projunn::small_problem`` -- one program per matrix for everything between the Gram matrix
  of the rows ``X = [b^H; (A^H a)^H]`` and the update ``A += (A X^H) C X``: the basis, the
  exponential (T) or the polar factor (D), the coefficient matrix C, the guard and the skip
  counter.

Being custom operators, they are one node each for CUDA graphs, ``torch.compile`` (which traces
their fake implementations) and the profiler. The kernels need Triton and a CUDA tensor, or a
CPU tensor with ``TRITON_INTERPRET=1`` set before Triton is imported (Triton's interpreter: how
CPU tests run them); :func:`unavailable` says why they cannot run.

>>> import torch
>>> unavailable(torch.device("meta"))
'the fused kernels run on CUDA tensors (or on CPU tensors under TRITON_INTERPRET=1), got meta'
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import struct
from pathlib import Path

import torch

__all__ = ["MAX_RANK", "gram", "max_rank", "small_problem", "sketch_basis", "unavailable"]

_EMBEDDED = 64
"""Largest real size of the small problem: 2k rows, twice that for complex (real embedding)."""

MAX_RANK = {False: _EMBEDDED // 2, True: _EMBEDDED // 4}
"""Largest rank k of the fused kernels, for real (False) and complex (True) weights."""

_CHUNK = 512  # columns per program of the Gram kernel
_STATE: dict = {}


def max_rank(dtype: torch.dtype) -> int:
    """The largest rank the fused kernels take for weights of ``dtype``.

    >>> max_rank(torch.float32), max_rank(torch.complex64)
    (32, 16)
    """
    return MAX_RANK[dtype.is_complex]


def _triton():
    """(triton, None), or (None, why it cannot be imported); imported once."""
    if "triton" not in _STATE:
        try:
            import triton
        except ImportError as error:  # CPU builds of torch come without Triton
            _STATE["triton"] = (None, f"Triton is not installed ({error}; pip install triton)")
        else:
            _STATE["triton"] = (triton, None)
    return _STATE["triton"]


def _interpreting() -> bool:
    """Whether ``triton.language`` was set up for the interpreter: Triton reads
    ``TRITON_INTERPRET`` when it is imported, and its own helpers (``tl.sum``...) then run
    only in the interpreter, or only compiled."""
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.sum, InterpretedFunction)


def unavailable(device: torch.device | str, dtype: torch.dtype | None = None, rank=None):
    """Why ``impl="fused"`` cannot run for tensors on ``device`` (and of ``dtype`` at ``rank``),
    or ``None`` when it can."""
    device = torch.device(device)
    if device.type not in ("cuda", "cpu"):
        return (
            "the fused kernels run on CUDA tensors (or on CPU tensors under TRITON_INTERPRET=1), "
            f"got {device.type}"
        )
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return (
            "CPU tensors run the fused kernels only in Triton's interpreter, and "
            "TRITON_INTERPRET=1 is not set (set it before Triton is first imported)"
        )
    triton, why = _triton()
    if triton is None:
        return why
    if device.type == "cpu" and not _interpreting():
        return (
            "Triton was imported before TRITON_INTERPRET=1 was set, so its interpreter is off: "
            "set the variable before the first import of triton"
        )
    if dtype is not None and rank is not None and rank > max_rank(dtype):
        return f"the fused kernels take rank k <= {max_rank(dtype)} for {dtype}, got k = {rank}"
    return None


def kernels():
    """The kernel module, loaded once: compiled kernels, or interpreted ones when Triton is in
    interpreter mode (``_fused_kernels.py`` reads the flag the loader sets, not the
    environment)."""
    if "kernels" not in _STATE:
        interpret = _interpreting()
        path = Path(__file__).with_name("_fused_kernels.py")
        name = f"{__package__}._fused_kernels_{'interpreted' if interpret else 'compiled'}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        module.INTERPRET = interpret
        spec.loader.exec_module(module)
        _STATE["kernels"] = module
    return _STATE["kernels"]


def _on(device: torch.device):
    """Launch on ``device`` (Triton launches on the current CUDA device). Every launch asks
    for fused multiply-adds explicitly (Triton 3.9 warns when left to its default)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def _real(x: torch.Tensor) -> torch.Tensor:
    """x as real elements (``view_as_real`` for complex; x carries no lazy conjugation)."""
    return torch.view_as_real(x) if x.is_complex() else x


def _bits(x: float) -> int:
    """The int64 bit pattern of the float64 x (Triton would pass a float as float32)."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _taylor(device: torch.device) -> torch.Tensor:
    """1/j!, j = 1..25, float64 on ``device`` (made on the device, cached)."""
    from .syncfree import _constant

    return _constant("taylor", torch.float64, device).view(-1)


def _gram_shape(rows: int, n: int, cplx: bool) -> tuple[int, int, int, int]:
    return (math.ceil(n / _CHUNK) if n else 1), (2 if cplx else 1), _pow2(rows), _pow2(rows)


# -- operators -----------------------------------------------------------------------------


@torch.library.custom_op("projunn::gram", mutates_args=())
def _gram(
    first: torch.Tensor, conj_first: bool, second: torch.Tensor | None, conj_second: bool
) -> torch.Tensor:
    x0 = _real(first)
    x1 = _real(second) if second is not None else x0
    B, r0, n = first.shape
    r1 = 0 if second is None else second.shape[1]
    chunks, parts, R, _ = _gram_shape(r0 + r1, n, first.is_complex())
    out = torch.empty(B, chunks, parts, R, R, dtype=torch.float64, device=first.device)
    if B == 0:
        return out
    c0, c1 = (-1 if conj_first else 1), (-1 if conj_second else 1)
    with _on(first.device):
        kernels().gram_kernel[(B, chunks)](
            x0, *x0.stride()[:3], r0, c0, x1, *x1.stride()[:3], r1, c1,
            out, out.stride(0), out.stride(1), out.stride(2), n, _CHUNK,
            R=R, CPLX=first.is_complex(), TWO=second is not None, BN=32 if R >= 64 else 64,
            num_warps=8 if R >= 64 else 4, enable_fp_fusion=True,
        )  # fmt: skip
    return out


@_gram.register_fake
def _gram_fake(first, conj_first, second, conj_second):
    r1 = 0 if second is None else second.shape[1]
    shape = _gram_shape(first.shape[1] + r1, first.shape[2], first.is_complex())
    return first.new_empty((first.shape[0], *shape), dtype=torch.float64)


def gram(
    first: torch.Tensor,
    second: torch.Tensor | None = None,
    *,
    conj_first: bool = False,
    conj_second: bool = False,
) -> torch.Tensor:
    """Partial Gram matrices ``X X^H`` of the rows X of ``first`` (B, r0, N) followed by those of
    ``second`` (B, r1, N), conjugated where ``conj_*`` says so (so that ``Y^H`` is passed as
    ``Y.mT`` with ``conj_first=True``, without a copy), by ``projunn::gram``: float64
    (B, chunks, parts, R, R) whose sum over chunks is the Gram matrix, zero-padded to
    R >= r0 + r1 rows (parts: real and, for complex rows, imaginary). The tensors must not carry
    a lazy conjugation (``x.is_conj()``): torch would copy them to resolve it."""
    return _gram(first, conj_first, second, conj_second)


@torch.library.custom_op("projunn::sketch_basis", mutates_args=())
def sketch_basis(partials: torch.Tensor, rank: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """T (B, rank, rank) of ``dtype`` with ``Y T`` nearly orthonormal (a zero or dependent
    direction of Y stays short), from the partial Gram matrices of the rows ``Y^H``."""
    B, chunks = partials.shape[:2]
    cplx = dtype.is_complex
    out = torch.empty(B, rank, rank, dtype=dtype, device=partials.device)
    if B:
        o = _real(out)
        with _on(partials.device):
            kernels().sketch_kernel[(B,)](
                partials, partials.stride(0), partials.stride(1), partials.stride(2),
                partials.shape[-1], chunks, o, o.stride(0), o.stride(1), o.stride(2), n,
                K=rank, CPLX=cplx, PS=_pow2((2 if cplx else 1) * rank), num_warps=4,
                enable_fp_fusion=True,
            )  # fmt: skip
    return out


@sketch_basis.register_fake
def _sketch_fake(partials, rank, n, dtype):
    return partials.new_empty((partials.shape[0], rank, rank), dtype=dtype)


@torch.library.custom_op("projunn::small_problem", mutates_args=("rows", "skipped"))
def small_problem(
    partials: torch.Tensor,
    rows: torch.Tensor,
    valid: torch.Tensor | None,
    skipped: torch.Tensor | None,
    variant: str,
    scale: float,
    step: bool,
    guard: bool,
) -> torch.Tensor:
    """The coefficient matrix C (B, 2k, 2k) of the projUNN-``variant`` update
    ``A += (A X^H) C X`` for ``scale * a b^H``, from the partial Gram matrices of the rows
    ``X = rows`` (B, 2k, N) = ``[b^H; (A^H a)^H]`` (followed by those of ``a^H`` if ``step``:
    a is then a nearly orthonormal sketch basis, and the update is for ``scale`` times the
    projection of ``a b^H`` on span a). ``guard``: where the step is not finite, out of range,
    not converged or not ``valid`` (or has a row so long, a quarter of the dtype's largest
    number, that ``A X^H`` could overflow), C and the rows are zeroed and ``skipped`` counts
    it."""
    B, m, n = rows.shape
    k = m // 2
    cplx = rows.is_complex()
    u = 2 if cplx else 1
    out = torch.empty(B, m, m, dtype=rows.dtype, device=rows.device)
    if B == 0:
        return out
    o, x = _real(out), _real(rows)
    P = _pow2(2 * u * k)
    with _on(rows.device):
        kernels().small_kernel[(B,)](
            partials, partials.stride(0), partials.stride(1), partials.stride(2),
            partials.shape[-1], partials.shape[1], _taylor(rows.device),
            x, x.stride(0), x.stride(1), x.stride(2), o, o.stride(0), o.stride(1), o.stride(2),
            o if valid is None else valid, o if skipped is None else skipped,
            _bits(scale), _bits(torch.finfo(rows.dtype).max / 4), n,
            K=k, CPLX=cplx, POLAR=variant == "D", STEP=step, GUARD=guard,
            HAS_VALID=valid is not None, HAS_SKIPPED=skipped is not None, P=P,
            PS=_pow2(u * k), BN=64, num_warps=8 if P >= 64 else 4, enable_fp_fusion=True,
        )  # fmt: skip
    return out


@small_problem.register_fake
def _small_fake(partials, rows, valid, skipped, variant, scale, step, guard):
    m = rows.shape[1]
    return rows.new_empty((rows.shape[0], m, m))
