"""torch.distributed: two gloo processes train projUNN replicas that stay bit-identical."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import projunn_core as pc

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    from suite.cli import main
    from suite.tasks import TASKS
    from suite.tasks.train import Run, World, train

    world = World.from_env()
    device = world.start("cpu")
    task = TASKS["copy"]
    config = task.preset("quick").replace(T=3, hidden=8, batch=8, steps=3, test_size=4)
    problem = task.problem(config, seed=0, device=device, data_dir=None)
    sample = problem.sample

    def rank_dependent_sample(batch, generator):
        torch.rand(rank + 1)  # the ranks' global RNGs part ways, as data pipelines make them
        return sample(batch, generator)

    problem.sample = rank_dependent_sample
    for method in ("projunn_t", "projunn_d"):
        run = Run(task, method, 2, config, "quick", 0, device)
        model = train(run, problem, lambda *a, **k: None, world=world).model
        torch.save(model.cell.recurrent.matrix().detach(), Path(folder) / f"{method}{rank}.pt")
    argv = ["task", "copy", "--method", "projunn_t", "--no-progress", "--no-figure"]
    argv += ["--T", "3", "--hidden", "8", "--batch", "8", "--steps", "2", "--test-size", "4"]
    assert main(argv + ["--out", str(Path(folder) / "runs")]) == 0
    dist.destroy_process_group()


def test_two_gloo_processes_keep_projunn_replicas_identical_and_unitary(tmp_path):
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    torch.manual_seed(0)  # the model's starting weight, as train() draws it
    for method in ("projunn_t", "projunn_d"):
        w0, w1 = (torch.load(tmp_path / f"{method}{r}.pt") for r in range(WORLD))
        assert torch.equal(w0, w1)
        assert pc.unitarity_error(w0) < 1e-5
        assert not torch.equal(w0, pc.init.henaff(8))  # it trained
    (folder,) = (tmp_path / "runs").iterdir()  # rank 0 alone wrote one run folder
    meta = (folder / "machine.json").read_text()
    assert '"world_size": 2' in meta
