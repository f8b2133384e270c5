"""The generic import names (suite, baselines) cannot silently resolve to other packages."""

from __future__ import annotations

import importlib
import sys

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
