"""Test fixtures and pytest hooks (shared helpers that are not fixtures live in helpers.py)."""

import importlib.util
import sys

import pytest
import torch
from helpers import ROOT


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: small matrices gain nothing from threads, and one thread avoids
    OpenMP oversubscription slowdowns when other jobs share the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def script():
    """``script("bench_core")`` imports ``scripts/bench_core.py`` as a module."""

    def load(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def gen():
    """A generator seeded afresh from the OS, so every run draws new inputs."""
    g = torch.Generator()
    g.seed()
    return g


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the GPU and library versions once per pytest-benchmark JSON file."""
    from suite.measure.machine import describe

    d = describe()
    keys = ("torch", "cuda", "cudnn", "torch_threads", "git_commit", "gpu_name", "gpu_driver")
    machine_info["projunn"] = {k: d[k] for k in keys} | {"gpus": d["gpus"]}
