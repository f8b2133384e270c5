"""Running the fused Triton kernels (impl="fused") in tests.

The CPU tests run them on CPU tensors in Triton's interpreter, which needs two things:
``TRITON_INTERPRET=1`` when Triton is first imported (Triton sets up its own helpers for the
interpreter or for the compiler then), and the variable still set while the kernels run
(``projunn_core.fused`` asks for it). Importing this module imports Triton with the variable set
and then restores the environment, so that other test modules keep the torch path of
``impl="auto"``; :func:`require_interpreter` sets the variable for one test only. A machine with
CUDA keeps Triton compiled (tests/test_cuda_graphs.py runs the kernels there), so these tests
skip on it.
"""

import importlib.util
import os
import sys

import pytest
import torch

from projunn_core import fused

CUDA = torch.cuda.is_available()


def _import_triton_for_the_interpreter() -> None:
    if CUDA or "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401
    except ImportError:  # a broken install: projunn_core.fused will say so
        pass
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


_import_triton_for_the_interpreter()


def fused_reason() -> str | None:
    """Why the fused kernels cannot run on CPU tensors in this test session (None: they can)."""
    if CUDA:
        return (
            "this machine has CUDA, so Triton stays compiled: the CPU tests of the fused kernels "
            "use Triton's interpreter (tests/test_cuda_graphs.py runs them on CUDA)"
        )
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return fused.unavailable("cpu")
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


def require_interpreter(monkeypatch) -> None:
    """TRITON_INTERPRET=1 for the calling test, so that impl="fused" runs on CPU tensors; skips
    it, saying why, where that cannot work."""
    why = fused_reason()
    if why is not None:
        pytest.skip(f"impl='fused' cannot run here: {why}")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
