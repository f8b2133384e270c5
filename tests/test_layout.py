"""The generic import names (suite, baselines) cannot silently resolve to other packages,
and the suite's sub-packages import each other one way only."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import pytest

import suite


def test_our_three_packages_come_from_one_tree():
    suite.check_layout()


def test_a_shadowing_package_is_a_clear_error(monkeypatch, tmp_path):
    fake = tmp_path / "baselines"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "baselines", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ImportError, match="shadows it") as exc:
        suite.check_layout()
    assert str(fake) in str(exc.value) and "pip uninstall baselines" in str(exc.value)


# --------------------------------------------------------------------------- the layers

SUITE = Path(suite.__file__).resolve().parent
LAYERS = {
    "measure": {"measure"},
    "report": {"measure", "report"},
    "tasks": {"measure", "report", "tasks"},
    "gate": {"measure", "report", "gate"},
    "studies": {"measure", "report", "studies"},
}
"""Sub-package -> the sub-packages of ``suite`` its modules may import (docs/architecture.md)."""


def _suite_imports(path: Path) -> set[str]:
    """The ``suite`` sub-packages (first name below ``suite``) a module imports."""
    package = path.relative_to(SUITE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package[: len(package) - node.level + 1]
                names = [".".join((*base, node.module or ""))]
                names += [f"{names[0]}.{a.name}" for a in node.names] if not node.module else []
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.strip(".").split(".")
            if parts[0] == "suite" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_run_one_way(package):
    allowed = LAYERS[package]
    for path in sorted((SUITE / package).rglob("*.py")):
        wrong = _suite_imports(path) & set(LAYERS) - allowed
        assert not wrong, f"{path.relative_to(SUITE.parent)} imports suite.{sorted(wrong)}"


def test_the_layer_check_sees_relative_imports():
    assert _suite_imports(SUITE / "report" / "curves.py") >= {"measure", "report"}
    assert "measure" in _suite_imports(SUITE / "tasks" / "train.py")


OPTIONAL = ("asv", "asv_runner", "yaml", "sklearn", "json5", "optuna", "geoopt", "geotorch")
"""Packages of the extras a GPU machine's image may lack (it has torch, pytest, pandas,
seaborn, scipy and psutil)."""


def test_the_cuda_tests_collect_without_the_optional_packages():
    """``pytest -m cuda`` on a GPU image without asv (or another extra) collects: a test
    module that needs an optional package skips with its reason (pytest.importorskip)."""
    import subprocess

    code = (
        "import sys\n"
        f"for name in {OPTIONAL!r}:\n"
        "    sys.modules[name] = None  # an import of it raises ImportError\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '--collect-only', '-m', 'cuda', '-p', 'no:cacheprovider',"
        " 'tests']))\n"
    )
    root = Path(__file__).resolve().parents[1]
    # a GPU image is not CI: nothing there requires the PostgreSQL tests to run
    env = {k: v for k, v in os.environ.items() if k != "PROJUNN_BENCH_REQUIRE_POSTGRES"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.lower().split("short test summary")[-1]
