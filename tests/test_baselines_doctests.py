"""The docstring examples of every baselines module run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "baselines",
    "baselines._common",
    "baselines.eunn",
    "baselines.svd_projection",
    "baselines.expm",
    "baselines.cayley",
    "baselines.torch_orthogonal",
    "baselines.unconstrained",
    "baselines.rnn",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
