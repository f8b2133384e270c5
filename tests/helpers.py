"""Shared test helpers: fresh random inputs, float64 references and dtype lists.

Fixtures live in conftest.py; everything else the tests share is imported from here.
"""

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from projunn_core._checks import wide_dtype

REAL = (torch.float32, torch.float64)
COMPLEX = (torch.complex64, torch.complex128)
ALL_DTYPES = REAL + COMPLEX
DOUBLE = (torch.float64, torch.complex128)


def randn(*shape, dtype=torch.float64, generator=None):
    return torch.randn(*shape, dtype=dtype, generator=generator)


def haar(n, dtype=torch.float64, batch=(), generator=None):
    """Batched Haar unitaries built independently of projunn_core.init."""
    Q, R = torch.linalg.qr(torch.randn(*batch, n, n, dtype=wide_dtype(dtype), generator=generator))
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    return (Q * (d / d.abs()).unsqueeze(-2)).to(dtype)


def _batched_reference(step):
    """Apply ``step(A, a, b)`` (2-D NumPy, float64/complex128) over the batch dimensions."""

    def reference(A, a, b):
        A, a, b = (np.asarray(t.detach().to(wide_dtype(t.dtype))) for t in (A, a, b))
        out = np.empty_like(A)
        for idx in np.ndindex(A.shape[:-2]):
            out[idx] = step(A[idx], a[idx], b[idx])
        return out

    reference.__doc__ = step.__doc__
    return reference


@_batched_reference
def ref_expm_step(A, a, b):
    """float64 SciPy reference of projUNN-T: A expm(skew(A^H a b^H)), batched."""
    X = A.conj().T @ a @ b.conj().T
    return A @ scipy.linalg.expm((X - X.conj().T) / 2)


@_batched_reference
def ref_polar_step(A, a, b):
    """float64 SciPy reference of projUNN-D: polar factor of A + a b^H, batched."""
    return scipy.linalg.polar(A + a @ b.conj().T)[0]


def max_abs(x, y):
    return float(np.max(np.abs(np.asarray(x) - np.asarray(y))))


ROOT = Path(__file__).resolve().parent.parent


def rnn_losses(rnn, opt, x, y, steps: int) -> list[float]:
    """Train ``rnn`` to map ``x`` to ``y`` (mean squared error) for ``steps`` steps of
    ``opt``; the loss before each step."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (rnn(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def run_asv(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``asv ARGS`` in the repository (this venv's asv; the test is skipped without
    one) with ``env`` added to the environment; returns the finished process."""
    exe = shutil.which(
        "asv", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if exe is None:
        pytest.skip("asv is not installed")
    return subprocess.run(
        [exe, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def workloads_of(matrices: str) -> tuple[str, ...]:
    """The registry's workloads on ``matrices`` ("dense" or "conv")."""
    from suite.measure.workloads import WORKLOADS

    return tuple(name for name, w in WORKLOADS.items() if w.matrices == matrices)


DENSE_WORKLOADS = workloads_of("dense")
CONV_WORKLOADS = workloads_of("conv")


def write_asv_results(root: Path, commit: str, samples: dict[str, list[float]], n: int = 64):
    """Write asv results the way asv itself does (its Results class): one benchmark,
    ``benchmarks.Update.time_update``, a parameter combination per method label of
    ``samples`` at size ``n`` (float32; CPU, and a skipped CUDA one); returns ``root``."""
    asv_results = pytest.importorskip("asv.results")
    from asv.runner import BenchmarkResult

    machine = {
        "machine": "box",
        "arch": "x86_64",
        "cpu": "Test CPU",
        "num_cpu": "2",
        "os": "Linux",
        "ram": "1",
    }
    res = asv_results.Results(machine, {}, commit, 1795744264000, "3.11", "existing-py", {})
    labels = list(samples)
    bench = {
        "name": "benchmarks.Update.time_update",
        "version": "v1",
        "params": [[repr(x) for x in labels], [str(n)], ["'float32'"], ["'cpu'", "'cuda'"]],
    }
    values, sample_lists, numbers = [], [], []
    for label in labels:
        values += [statistics.median(samples[label]), math.nan]
        sample_lists += [samples[label], None]
        numbers += [1, None]
    res.add_result(
        bench, BenchmarkResult(values, sample_lists, numbers, None, "", None), record_samples=True
    )
    res.save(str(root))
    (root / "box" / "machine.json").write_text(json.dumps({**machine, "version": 1}))
    meta = {
        "benchmarks.Update.time_update": {
            "name": "benchmarks.Update.time_update",
            "param_names": ["method", "n", "dtype", "device"],
            "type": "time",
            "unit": "seconds",
        },
        "version": 2,
    }
    (root / "benchmarks.json").write_text(json.dumps(meta))
    return root


def asv_config(tmp_path: Path) -> Path:
    """The project's ``asv.conf.json`` with asv's folders under ``tmp_path`` (a real
    ``asv run`` in a test leaves nothing in the checkout); returns its path."""
    json5 = pytest.importorskip("json5")
    conf = json5.loads((ROOT / "asv.conf.json").read_text())
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / "suite"),
        results_dir=str(tmp_path / "results"),
        html_dir=str(tmp_path / "html"),
        env_dir=str(tmp_path / "env"),
    )
    path = tmp_path / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path
