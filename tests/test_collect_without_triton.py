"""The README's test command on a machine without Triton (no extra installs it): the
doctest collection of the packages leaves the Triton kernels' source out (conftest.py)
instead of stopping at its ``import triton.language``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TRITON = "import sys\nsys.modules['triton'] = None  # an import of it raises ImportError\n"


def _collect(prelude: str, *paths: str) -> subprocess.CompletedProcess:
    code = (
        prelude + "import pytest\n"
        f"sys.exit(pytest.main(['-q', '--collect-only', '-p', 'no:cacheprovider', *{paths!r}]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_packages_collect_without_triton():
    done = _collect("import sys\n" + BLOCK_TRITON, "projunn_core", "tests/test_fused.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "_fused_kernels.py" not in done.stdout
    assert "projunn_core/fused.py::" in done.stdout  # the loader's doctests still run
    assert "test_fused.py::" in done.stdout


def test_the_kernels_source_is_collected_where_triton_is():
    """The rule is conditional: with Triton (CI) the kernels' module is imported as before,
    so an error in it still fails collection."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("triton") is None:
        pytest.skip('Triton is not installed (pip install "triton==3.9.*", as .ci/run does)')
    done = _collect("import sys\n", "projunn_core")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
