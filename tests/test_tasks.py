"""Task benchmarks: the problems and their baselines, MNIST files, the `task` command."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from suite.cli import main
from suite.measure.rows import COLUMNS
from suite.tasks import TASKS, mnist
from suite.tasks.paper import PMNIST_CSV, reference
from suite.tasks.pixels import permutation

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--hidden", "8", "--steps", "4", "--log-every", "2", "--test-size", "16", "--batch", "8"]


def _problem(name, **overrides):
    task = TASKS[name]
    config = task.preset("quick").replace(**overrides)
    return task.problem(config, seed=0, device="cpu", data_dir=None), config


def _read(folder: Path):
    with open(folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((folder / "machine.json").read_text())


def _run(tmp_path, argv, capsys=None):
    code = main(["task", *argv, "--out", str(tmp_path), "--no-progress"])
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    return code, folders


def test_copy_baseline_is_the_loss_of_a_network_without_memory():
    p, config = _problem("copy", T=7, test_size=64)
    x, y = p.test
    assert x.shape == (64, 27, 10) and y.shape == (64, 27)
    assert (x.argmax(-1)[:, 16] == 9).all() and (x.argmax(-1)[:, 17:] == 0).all()
    assert torch.equal(x.argmax(-1)[:, :10], y[:, -10:]) and (y[:, :-10] == 0).all()
    # blanks with certainty, then a uniform guess among the 8 symbols
    logits = torch.full((64, 27, 9), -1e9)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    assert float(p.loss(logits, y)) == pytest.approx(p.baselines["baseline_loss"], rel=1e-6)
    assert p.baselines["baseline_loss"] == pytest.approx(10 * math.log(8) / 27)


def test_adding_baseline_is_the_variance_of_the_sum():
    p, _ = _problem("adding", T=30, test_size=20000)
    x, y = p.test
    assert x.shape == (20000, 30, 2) and (x[..., 1].sum(1) == 2).all()
    assert (x[:, :15, 1].sum(1) == 1).all()  # one marker in each half
    marked = (x[..., 0] * x[..., 1]).sum(1)
    torch.testing.assert_close(marked, y)
    constant = torch.ones(20000, 30, 1)  # "always 1": no memory
    assert float(p.loss(constant, y)) == pytest.approx(p.baselines["baseline_loss"], abs=0.01)
    assert p.baselines["baseline_loss"] == pytest.approx(0.167, abs=1e-3)


def test_pdigits_sequences_split_and_permutation():
    pytest.importorskip("sklearn", reason="pdigits needs scikit-learn (the tasks extra)")
    p, config = _problem("pdigits")
    x, y = p.test
    assert x.shape == (config.test_size, 64, 1) and 0 <= float(x.min()) and float(x.max()) <= 1
    train_x, _ = p.sample(5, torch.Generator().manual_seed(0))
    assert train_x.shape == (5, 64, 1)
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().data).float() / 16
    order = permutation(64, 0)
    assert any(torch.equal(x[0, :, 0], d[order]) for d in digits)  # a permuted real digit
    assert not torch.equal(order, permutation(64, 1))
    assert torch.equal(order, permutation(64, 0))
    assert 10 <= p.baselines["baseline_accuracy"] < 20
    assert p.baselines["baseline_loss"] == pytest.approx(math.log(10), abs=0.01)


def _write_mnist(folder: Path, gz: bool, train=12, test=6):
    gen = torch.Generator().manual_seed(0)
    suffix = ".gz" if gz else ""
    parts = {
        "train_images": torch.randint(0, 256, (train, 28, 28), generator=gen, dtype=torch.uint8),
        "train_labels": torch.arange(train, dtype=torch.uint8) % 10,
        "test_images": torch.randint(0, 256, (test, 28, 28), generator=gen, dtype=torch.uint8),
        "test_labels": torch.arange(test, dtype=torch.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, tensor in parts.items():
        mnist.write_idx(folder / (mnist.FILES[key] + suffix), tensor)
    return parts


@pytest.mark.parametrize("gz,layout", [(True, "."), (False, "MNIST/raw")])
def test_mnist_idx_files_are_read_in_both_layouts(tmp_path, gz, layout):
    parts = _write_mnist(tmp_path / layout, gz)
    found = mnist.find(tmp_path)
    assert set(found) == set(mnist.FILES)
    for key, tensor in parts.items():
        assert torch.equal(mnist.read_idx(found[key]), tensor)
    task = TASKS["pmnist"]
    config = task.preset("quick").replace(test_size=4)
    p = task.problem(config, seed=3, device="cpu", data_dir=tmp_path)
    x, y = p.test
    assert x.shape == (4, 784, 1) and y.tolist() == [0, 1, 2, 3]
    expected = parts["test_images"][0].reshape(-1)[permutation(784, 3)].float() / 255
    torch.testing.assert_close(x[0, :, 0], expected)


def test_mnist_reader_rejects_bad_files(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01")
    with pytest.raises(mnist.DataError, match="not an IDX file of unsigned bytes"):
        mnist.read_idx(tmp_path / "x")
    mnist.write_idx(tmp_path / "y", torch.zeros(3, dtype=torch.uint8))
    (tmp_path / "y").write_bytes((tmp_path / "y").read_bytes()[:-1])
    with pytest.raises(mnist.DataError, match="header says"):
        mnist.read_idx(tmp_path / "y")


def test_pmnist_without_files_names_them_and_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["task", "pmnist", "--data-dir", str(tmp_path), "--method", "expm"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err
    assert "never downloads" in err and not list(tmp_path.iterdir())


def test_task_command_end_to_end(tmp_path, capsys):
    argv = ["copy", "--method", "projunn_t", "eunn", "lstm", "--rank", "1", "2", "--T", "5"]
    code, folders = _run(tmp_path, argv + TINY)
    assert code == 0 and len(folders) == 1
    rows, meta = _read(folders[0])
    assert list(rows[0]) == list(COLUMNS)
    assert meta["run"]["status"] == "complete" and meta["run"]["task"] == "copy"
    assert meta["run"]["methods"] == ["projunn_t-k1", "projunn_t-k2", "eunn", "lstm"]
    assert meta["cpu_model"] and meta["torch"]
    base = {r["metric"]: float(r["value"]) for r in rows if r["method"] == "baseline"}
    assert base["baseline_loss"] == pytest.approx(10 * math.log(8) / 25)
    for method, k in (("projunn_t", "1"), ("projunn_t", "2"), ("eunn", ""), ("lstm", "")):
        mine = [r for r in rows if r["method"] == method and r["k"] == k]
        assert {r["status"] for r in mine} == {"ok"}
        curve = {(r["metric"], r["step"]) for r in mine if r["step"]}
        assert {("test_loss", s) for s in ("0", "2", "4")} <= curve
        assert {("train_loss", "2"), ("train_loss", "4"), ("wall_time", "4")} <= curve
        times = [float(r["value"]) for r in mine if r["metric"] == "wall_time"]
        assert times == sorted(times) and times[0] == 0
        assert all(r["n"] == "8" and r["workload"] == "copy" for r in mine)
        assert "preset=quick" in mine[0]["options"] and "T=5" in mine[0]["options"]
        unitarity = [float(r["value"]) for r in mine if r["metric"] == "unitarity"]
        assert unitarity == [] if method == "lstm" else unitarity[0] < 1e-5
    assert (folders[0] / "curves.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| projunn_t-k2 | RMSprop | 4 |" in out and "no-memory baseline" in out


def _values(folder):
    rows, _ = _read(folder)
    return [
        (r["method"], r["metric"], r["step"], r["value"])
        for r in rows
        if r["metric"] != "wall_time"
    ]


@pytest.mark.parametrize("task", ["copy", "pdigits"])
def test_same_seed_gives_the_same_numbers(tmp_path, task):
    if task == "pdigits":
        pytest.importorskip("sklearn", reason="pdigits needs scikit-learn (the tasks extra)")
    argv = [task, "--method", "projunn_t", "cayley", "--no-figure"] + TINY
    argv += ["--T", "4"] if task == "copy" else []
    for sub in ("a", "b", "c"):
        seed = ["--seed", "1"] if sub != "c" else ["--seed", "2"]
        assert _run(tmp_path / sub, argv + seed)[0] == 0
    a, b, c = (_values(next((tmp_path / s).iterdir())) for s in "abc")
    assert a == b and a != c


def test_method_all_skips_what_cannot_run_and_keeps_going(tmp_path, monkeypatch):
    import suite.tasks.train as train_mod

    real = train_mod.train

    def failing(run, *args, **kwargs):
        if run.method == "svd":
            raise RuntimeError("boom")
        return real(run, *args, **kwargs)

    monkeypatch.setattr("suite.tasks.runs.train", failing)
    argv = ["adding", "--method", "all", "--T", "4", "--hidden", "6", "--no-figure"]
    code, folders = _run(tmp_path, argv + TINY[2:])
    rows, meta = _read(folders[0])
    status = meta["run"]["method_status"]
    assert code == 1 and status["svd"] == "error" and status["eunn_fft"] == "skipped"
    assert status["projunn_t-k1"] == status["lstm"] == "ok"
    assert any("power of two" in r["reason"] for r in rows if r["method"] == "eunn_fft")
    assert any("boom" in r["reason"] for r in rows if r["method"] == "svd")
    assert status["projunn_t_graphed-k1"] == "skipped"
    graphed = [r["reason"] for r in rows if r["method"] == "projunn_t_graphed"]
    assert graphed[0].endswith("task runs train projunn_t")


def test_interrupt_writes_what_was_measured(tmp_path, monkeypatch, capsys):
    calls = []
    real = TASKS["copy"].problem

    def problem(*args, **kwargs):
        p = real(*args, **kwargs)
        sample = p.sample

        def interrupting(batch, generator):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return sample(batch, generator)

        p.sample = interrupting
        return p

    monkeypatch.setattr(TASKS["copy"], "problem", problem)
    argv = ["copy", "--method", "expm", "cayley", "--T", "3", "--no-figure"]
    code, folders = _run(tmp_path, argv + TINY)
    rows, meta = _read(folders[0])
    assert code == 130 and meta["run"]["interrupted"] is True
    assert {r["method"] for r in rows} == {"baseline", "expm"}
    assert any(r["metric"] == "train_loss" and r["step"] == "2" for r in rows)
    assert not list(folders[0].glob(".*.tmp"))


def test_diverging_loss_is_an_error_row(tmp_path, monkeypatch):
    real = TASKS["adding"].problem

    def problem(*args, **kwargs):
        p = real(*args, **kwargs)
        p.loss = lambda out, y: out.sum() * float("nan")
        return p

    monkeypatch.setattr(TASKS["adding"], "problem", problem)
    code, folders = _run(tmp_path, ["adding", "--method", "expm", "--T", "3", "--no-figure"] + TINY)
    rows, meta = _read(folders[0])
    assert code == 1 and meta["run"]["method_status"] == {"expm": "error"}
    assert any("non-finite by step 2" in r["reason"] for r in rows)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["copy", "--method", "nope"], "unknown 'nope'"),
        (["copy", "--method", "all", "expm"], "cannot be combined"),
        (["copy", "--preset", "paper512"], "no preset 'paper512'"),
        (["pdigits", "--T", "10"], "T = 64 steps"),
        (["pmnist", "--method", "expm"], "--data-dir"),
        (["copy", "--method", "projunn_t", "--rank", "9", "--hidden", "8"], "exceeds n=8"),
        (["copy", "--method", "eunn_fft", "--hidden", "12"], "power of two"),
        (["copy", "--method", "projunn_d_graphed"], "task runs train projunn_d"),
        (["copy", "--steps", "0"], "not positive"),
        (["copy", "--lr", "-1"], "not positive"),
        (["copy", "--seed", "-1"], "--seed"),
        (["copy", "--init", "xavier"], "--init"),
        (["pdigits", "--test-size", "1797"], "test_size must be < 1797"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["task", *argv, "--out", str(tmp_path)])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["task", "copy", "--method", "expm", "--device", "cuda", "--out", str(tmp_path)])
    assert e.value.code == 2 and "CUDA" in capsys.readouterr().err


def test_pmnist_run_prints_the_paper_beside(tmp_path, capsys):
    _write_mnist(tmp_path / "data", gz=True)
    argv = ["pmnist", "--data-dir", str(tmp_path / "data"), "--method", "expm", "--no-figure"]
    argv += ["--hidden", "170", "--steps", "1", "--test-size", "2", "--batch", "2"]
    code, folders = _run(tmp_path / "runs", argv)
    out = capsys.readouterr().out
    assert code == 0 and "paper (hidden 170)" in out and "expRNN 94.9" in out


def test_paper_pmnist_table():
    assert PMNIST_CSV.is_file()
    rows = {(r["model"], r["k"], r["group"]): r["test_accuracy"] for r in reference(512)}
    assert rows[("LSTM", None, None)] == 92.0 and rows[("scoRNN", None, None)] == 96.6
    assert rows[("projUNN", 16, 1)] == 97.0 and rows[("projUNN", 4, 2)] == 96.8
    assert len(reference(116)) == len(reference(360)) == 13
    assert reference(999) == []


def test_every_preset_is_valid_and_names_its_source():
    for task in TASKS.values():
        assert "quick" in task.presets
        for name, make in task.presets.items():
            try:
                task.check(make(), None)
            except ValueError as e:  # a missing optional package or data set only
                assert "scikit-learn" in str(e) or "--data-dir" in str(e)
            doc = " ".join((make.__doc__ or "").split())
            assert ("Kiani et al. 2022" in doc or "paper170" in doc) == name.startswith("paper")
            assert name != "quick" or "Our choice" in doc


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_task_command_on_cuda(tmp_path):
    argv = ["copy", "--method", "projunn_t", "expm", "eunn", "lstm", "--device", "cuda"]
    code, folders = _run(tmp_path, argv + ["--T", "4", "--no-figure"] + TINY)
    rows, meta = _read(folders[0])
    assert code == 0 and set(meta["run"]["method_status"].values()) == {"ok"}
    assert {r["device"] for r in rows} == {"cuda"}
    assert all(float(r["value"]) < 1e-5 for r in rows if r["metric"] == "unitarity")
