"""Argument validation shared by the kernels (errors name the offending argument)."""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (float32 for complex64; float32 for float32).

    >>> real_dtype(torch.complex128)
    torch.float64
    """
    return torch.empty((), dtype=dtype).real.dtype


def check_dtype(name: str, dtype: torch.dtype) -> None:
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
        raise TypeError(f"{name} has dtype {dtype}; supported dtypes are {names}")


def check_square(name: str, A) -> int:
    """Check ``A`` is a supported (..., N, N) tensor; return N."""
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(A).__name__}")
    if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must have shape (..., N, N), got {tuple(A.shape)}")
    check_dtype(name, A.dtype)
    return A.shape[-1]


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
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    if not 1 <= k <= n:
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {n}, got {k}")
    return k


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of x is finite (one fast reduction in the common case).

    A sum is non-finite whenever an entry is, so a finite sum settles it; only a sum
    that overflowed needs the entry-wise check.
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_finite(name: str, x: torch.Tensor) -> None:
    if not all_finite(x):
        raise ValueError(f"{name} contains non-finite values (nan or inf); A was left unchanged")


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
