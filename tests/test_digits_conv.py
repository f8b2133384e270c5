"""The digits-conv task: orthogonal-convolution classifiers on the 8x8 digits, and the
CIFAR-10 preset's data reading."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.tasks import TASKS
from suite.tasks.base import DataError
from suite.tasks.digits_conv import CIFAR_FOLDER, load_cifar10

pytestmark = pytest.mark.usefixtures("one_thread")
TASK = TASKS["digits-conv"]
TINY = ["--hidden", "4", "--steps", "4", "--log-every", "2", "--test-size", "32", "--batch", "8"]


def _rows(folder):
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_digits_conv_trains_conv_methods_and_records_orthogonality(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code = main(["task", "digits-conv", "--method", "projunn_t", "soc", *TINY, "--out",
                 str(tmp_path), "--no-progress", "--no-figure"])  # fmt: skip
    assert code == 0
    (folder,) = tmp_path.iterdir()
    rows = _rows(folder)
    final = {(r["method"], r["metric"]): float(r["value"]) for r in rows if not r["step"]}
    assert final[("projunn_t", "orthogonality")] < 1e-5
    assert 0 < final[("soc", "orthogonality")] < 1e-3  # SOC's truncation, measured
    accuracy = [r for r in rows if r["metric"] == "test_accuracy"]
    assert {r["step"] for r in accuracy} == {"0", "2", "4"}
    assert all(0 <= float(r["value"]) <= 100 for r in accuracy)
    assert {r["workload"] for r in rows} == {"digits-conv"}
    assert "| projunn_t-k1 | RMSprop | 4 |" in capsys.readouterr().out


def test_method_all_means_the_conv_methods_and_others_are_refused(tmp_path, capsys):
    methods = {m for m in TASK.methods}
    conv = {"projunn_t", "projunn_d", "svd", "expm", "cayley", "unconstrained", "soc"}
    assert methods == conv | {"landing"}  # the one peer with a convolution
    config = TASK.preset("quick")
    assert "LSTM has none" in TASK.skip_reason("lstm", None, config, "cpu")
    assert "eunn does not apply to conv_train_step" in TASK.skip_reason("eunn", None, config, "cpu")
    pytest.importorskip("sklearn")  # the command checks the preset's data first
    with pytest.raises(SystemExit) as e:
        main(["task", "digits-conv", "--method", "eunn", "--out", str(tmp_path)])
    assert e.value.code == 2 and "cannot run" in capsys.readouterr().err


def _fake_cifar(folder, count=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, count).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_preset_reads_the_python_batches_and_never_downloads(tmp_path, capsys):
    with pytest.raises(DataError, match="never downloads"):
        load_cifar10(None)
    with pytest.raises(DataError, match="data_batch_1.*test_batch.*nothing is downloaded"):
        load_cifar10(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["task", "digits-conv", "--preset", "paper-cifar10", "--data-dir", str(tmp_path),
              "--method", "projunn_t"])  # fmt: skip
    assert e.value.code == 2 and "CIFAR-10 not found" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing was written or fetched
    _fake_cifar(tmp_path / CIFAR_FOLDER)
    train_x, train_y, test_x, test_y = load_cifar10(tmp_path)
    assert train_x.shape == (30, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (6, 3, 32, 32) and train_y.shape == (30,)
    config = TASK.preset("paper-cifar10").replace(test_size=6)
    TASK.check(config, tmp_path)
    problem = TASK.problem(config, seed=0, device="cpu", data_dir=tmp_path)
    x, y = problem.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (4,)
    assert problem.test[0].shape == (6, 3, 32, 32)


def test_paper_cifar10_rows_ship_as_reference_data():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "reference" / "projunn_cifar10.csv"
    with open(path, newline="") as f:
        rows = {r["method"]: float(r["test_accuracy"]) for r in csv.DictReader(f)}
    assert rows == {"projunn_t": 80.75, "projunn_d": 82.06, "unconstrained": 92.26}


def test_parameter_count_leaves_out_frozen_tensors():
    from suite.tasks.base import count_parameters
    from suite.tasks.convnets import SmallConvNet

    expm, svd = (SmallConvNet(m, channels=4, size=4) for m in ("expm", "svd"))
    assert count_parameters(expm) == count_parameters(svd)  # expm's base B is frozen
