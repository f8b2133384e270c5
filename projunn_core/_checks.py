"""Argument validation shared by projunn_core and the baselines (errors name the argument).

>>> check_square("A", torch.eye(3))
3
>>> check_size("n", 1, minimum=2)
Traceback (most recent call last):
    ...
ValueError: n must be an integer >= 2, got 1
"""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (float32 for complex64; float32 for float32).

    >>> real_dtype(torch.complex128)
    torch.float64
    """
    return torch.empty((), dtype=dtype).real.dtype


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The double-precision dtype of the same kind: complex128 if complex, else float64.

    >>> wide_dtype(torch.complex64), wide_dtype(torch.float32)
    (torch.complex128, torch.float64)
    """
    return torch.complex128 if dtype.is_complex else torch.float64


def check_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """Return ``dtype``, or raise ``TypeError`` unless it is float32/64 or complex64/128
    (``name`` is the argument: a tensor's name, or "dtype" for a dtype argument).

    >>> check_dtype("dtype", torch.float16)
    Traceback (most recent call last):
    ...
    TypeError: the dtype torch.float16 is not supported; the supported dtypes are float32, ...
    """
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
        what = (
            f"the dtype {dtype} is not supported"
            if name == "dtype"
            else f"{name} has dtype {dtype}"
        )
        raise TypeError(f"{what}; the supported dtypes are {names}")
    return dtype


def check_size(name: str, n, *, minimum: int = 1) -> int:
    """Return the matrix size ``n``, or raise ``ValueError`` unless it is an int >= minimum."""
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return n


def check_matrix(name: str, x, *, square: bool = False) -> int:
    """Check ``x`` is a non-empty (..., M, N) tensor of a supported dtype; return N."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or (square and x.shape[-1] != x.shape[-2]):
        shape = "(..., N, N)" if square else "(..., M, N)"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    check_dtype(name, x.dtype)
    if 0 in x.shape[-2:]:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): the matrix needs N >= 1")
    return x.shape[-1]


def check_square(name: str, A) -> int:
    """Check ``A`` is a non-empty supported (..., N, N) tensor; return N."""
    return check_matrix(name, A, square=True)


def check_like(name: str, x, A: torch.Tensor, *, last: int | None = None) -> None:
    """Check ``x`` has A's dtype, device and batch dimensions, and ``last`` rows."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != A.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but A has dtype {A.dtype}")
    if x.device != A.device:
        raise ValueError(f"{name} is on {x.device} but A is on {A.device}")
    if x.dim() != A.dim() or x.shape[:-2] != A.shape[:-2]:
        raise ValueError(
            f"{name} must have shape {tuple(A.shape[:-2]) + ('N', 'k')} to match A "
            f"{tuple(A.shape)}, got {tuple(x.shape)}"
        )
    if last is not None and x.shape[-2] != last:
        raise ValueError(f"{name} must have {last} rows to match A, got shape {tuple(x.shape)}")


def check_rank(name: str, k, n: int) -> int:
    """Return the rank ``k``, or raise unless it is an int with ``1 <= k <= n``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    if not 1 <= k <= n:
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {n}, got {k}")
    return k


def check_no_overlap(name: str, A: torch.Tensor) -> None:
    """Refuse a tensor whose memory overlaps itself (e.g. from ``expand``), as torch's own
    in-place operations do: writing it in place would let elements collide.

    Sorted by stride, each dimension of size > 1 must step past everything the smaller
    strides reach. That suffices for distinct elements to have distinct addresses; the
    rare layouts that interleave without overlapping are refused too.

    >>> check_no_overlap("A", torch.eye(4)[:, 1:3].mT)  # a strided view is fine
    """
    reach = 0  # the largest offset reachable through the dimensions seen so far
    for stride, size in sorted((s, n) for s, n in zip(A.stride(), A.shape, strict=True) if n > 1):
        if stride <= reach:
            raise ValueError(
                f"{name} has elements that share memory (shape {tuple(A.shape)}, strides "
                f"{A.stride()}, e.g. from expand()): in-place writes would collide; "
                f"pass {name}.clone()"
            )
        reach += stride * (size - 1)


def check_has_data(
    name: str, x: torch.Tensor, why: str = "check=True reads values (check=False traces shapes)"
) -> None:
    """Refuse a meta tensor (shapes only, no values) where values are needed."""
    if x.is_meta:
        raise ValueError(f"{name} is a meta tensor (no values), but {why}")


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of x is finite (one fast reduction in the common case).

    A sum is non-finite whenever an entry is, so a finite sum settles it; only a sum
    that overflowed needs the entry-wise check.
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_finite(name: str, x: torch.Tensor) -> None:
    check_has_data(name, x, "its values must be checked to be finite")
    if not all_finite(x):
        raise ValueError(f"{name} contains non-finite values (nan or inf); A was left unchanged")


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
