"""projunn-bench end to end, output files, machine description, atomic writes, asv check."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_asv

from suite.cli import main
from suite.measure import machine, output, runner
from suite.measure.cases import Case
from suite.measure.rows import COLUMNS, Row

ROOT = Path(__file__).resolve().parent.parent
TINY_RUN = [
    "run",
    "--grid",
    "tiny",
    "--no-progress",
    "--no-report",  # the report has its own tests (tests/test_report.py)
    "--sizes",
    "16",
    "12",
    "--ranks",
    "2",
    "--dtypes",
    "float32",
    "--max-time",
    "0.01",
    "--accuracy-steps",
    "2",
]


def _read(folder: Path):
    with open(folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    meta = json.loads((folder / "machine.json").read_text())
    return rows, meta


def test_cli_end_to_end(tmp_path, capsys):
    argv = TINY_RUN + [
        "--methods",
        "projunn_t",
        "svd",
        "eunn_fft",
        "--device",
        "all",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "results:" in out and "skipped" in out
    (first,) = list(tmp_path.iterdir())
    rows, meta = _read(first)
    assert tuple(rows[0]) == COLUMNS
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["metric"] for r in ok} >= {
        "time",
        "host_peak_rss",
        "unitarity_after_1_step",
        "dist_to_exact",
    }
    t = next(r for r in ok if r["metric"] == "time" and r["method"] == "projunn_t")
    assert float(t["value"]) > 0 and t["unit"] == "s" and t["k"] == "2"
    assert len(t["samples"].split(";")) == int(t["repeat"]) >= 1
    skipped = [r for r in rows if r["status"] == "skipped"]
    reasons = {r["reason"] for r in skipped}
    assert any("power of two" in r for r in reasons)  # eunn_fft at n=12
    assert any("no functional update" in r for r in reasons)  # eunn_fft asked for update
    if not torch.cuda.is_available():
        assert any("CUDA is not available" in r for r in reasons)
        assert all(r["status"] == "skipped" for r in rows if r["device"] == "cuda")
    for key in (
        "cpu_model",
        "cpu_logical_cores",
        "ram_bytes",
        "torch",
        "python",
        "platform",
        "git_commit",
        "gpu_name",
        "gpus",
    ):
        assert key in meta
    assert meta["run"]["status"] == "complete" and meta["run"]["interrupted"] is False
    assert meta["run"]["peak_rss_bytes"] > 0 and meta["run"]["grid"] == "tiny"

    assert main(argv[:-2] + ["--out", str(tmp_path), "--workloads", "update"]) == 0
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2 and first in folders
    assert _read(first)[0] == rows  # the first run is untouched


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("projunn_t", "eunn_fft", "torch_orthogonal", "quick", "full", "O(N^3)"):
        assert name in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--methods", "nope"], "--methods"),
        (["run", "--dtypes", "float16"], "--dtypes"),
        (["run", "--device", "tpu"], "--device"),
        (["run", "--sizes", "0"], "--sizes"),
        (["run", "--sizes", "ten"], "--sizes"),
        (["run", "--ranks", "-1"], "--ranks"),
        (["run", "--max-time", "0"], "--max-time"),
        (["run", "--min-time", "soon"], "--min-time"),
        (["run", "--threads", "0"], "--threads"),
        (["run", "--format", "xlsx"], "--format"),
        (["run", "--option", "approx=bogus"], "range"),
        (["run", "--option", "capacity=0"], ">= 1"),
        (["run", "--option", "orthogonal_map=bogus"], "householder"),
        (["run", "--option", "check=maybe"], "true or false"),
        (["run", "--workloads", "fly"], "--workloads"),
        (["run", "--option", "colour=red"], "--option"),
        (["run", "--quick", "--full"], "--full"),
        (["run", "--grid", "huge"], "--grid"),
        ([], "COMMAND"),
    ],
)
def test_bad_options_exit_with_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "--method", "projunn_t", "--n", "8", "--k", "9"],
        ["task", "copy", "--method", "all", "lstm"],
    ],
)
def test_errors_found_after_parsing_name_their_command(argv, capsys):
    """A command's own checks (after argparse) print that command's usage and prefix."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"projunn-bench {argv[0]}: error:" in err and f"usage: projunn-bench {argv[0]}" in err


def test_parquet_without_pyarrow_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(output, "have_parquet", lambda: False)
    with pytest.raises(SystemExit):
        main(["run", "--format", "parquet", "--out", str(tmp_path)])
    assert "pyarrow" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["run", "list"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_interrupt_writes_partial_results(monkeypatch, tmp_path, capsys):
    real = runner.run_case
    calls = []

    def flaky(case, settings):
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, settings)

    monkeypatch.setattr(runner, "run_case", flaky)
    code = main(TINY_RUN + ["--methods", "unconstrained", "--out", str(tmp_path)])
    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    (folder,) = list(tmp_path.iterdir())
    rows, meta = _read(folder)
    assert rows and {r["n"] for r in rows} == {str(calls[0].n)}
    assert meta["run"]["interrupted"] is True and meta["run"]["cases_done"] == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_failing_case_is_an_error_row(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(runner.Case, "method_options", boom)
    (row,) = runner.run_case(Case("update", "svd", 8), runner.Settings()).rows
    assert row.status == "error" and "kaput" in row.reason


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "results.csv"
    output.atomic_write_text(target, "old,complete\n")

    def half(f):
        f.write(b"new,half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        output.atomic_write(target, half)
    assert target.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    output.write_table([Row("update", "", 8, value=1.0)], target)
    header, row = target.read_text().splitlines()
    assert header.split(",") == list(COLUMNS) and row.startswith("update,,8")


def test_new_run_dir_never_reuses(tmp_path):
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    a, b = output.new_run_dir(tmp_path, now), output.new_run_dir(tmp_path, now)
    assert a.name == "20260102-030405" and b.name == "20260102-030405-1"


def test_machine_without_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    d = machine.describe()
    for key, empty in machine.GPU_FIELDS.items():
        assert d[key] == empty
    assert d["gpus"] == [] and d["cpu_logical_cores"] >= 1 and d["ram_bytes"] > 0
    with machine.GpuMonitor() as mon:
        pass
    assert mon.summary()["gpu_power_w_mean"] is None
    json.dumps(d)


def test_machine_with_failing_nvml(monkeypatch):
    class Broken:
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", Broken())
    assert machine.gpu_info() == []
    assert machine.describe()["gpu_name"] == ""


def test_host_memory_sampler_sees_allocation():
    with machine.HostMemorySampler() as s:
        x = torch.ones(64, 1 << 20, dtype=torch.uint8)  # 64 MiB
        x.add_(1)
    assert s.peak >= 64 << 20
    assert machine.peak_rss() >= s.peak * 0.5


def test_asv_check_passes():
    proc = run_asv("check", "--python=same", PROJUNN_BENCH_GRID="quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


def test_sigterm_writes_partial_results_and_marks_the_run(monkeypatch, tmp_path, capsys):
    real = runner.run_case
    calls = []

    def terminated_midway(case, settings):
        calls.append(case)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what a CI time-out sends
        return real(case, settings)

    monkeypatch.setattr(runner, "run_case", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    code = main(TINY_RUN + ["--methods", "unconstrained", "--out", str(tmp_path)])
    assert code == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    (folder,) = list(tmp_path.iterdir())
    rows, meta = _read(folder)
    assert rows and meta["run"]["status"] == "terminated" and meta["run"]["cases_done"] == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_result_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        output.atomic_write_text(tmp_path / "r.csv", "a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_unusable_out_is_a_usage_error_before_anything_runs(where, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(TINY_RUN + ["--out", str(tmp_path / where)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and ("not a folder" in err or "is a file" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_pytest_benchmark_json_groups_entries_and_records_versions_once(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_benchmarks.py",
            "-k",
            "unconstrained",
            f"--benchmark-json={out}",
            "--benchmark-max-time=0.001",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["machine_info"]["projunn"]["torch"] == torch.__version__
    groups = {b["group"] for b in data["benchmarks"]}
    assert {"update n=16 cpu", "train_step n=16 cpu", "accuracy n=16 cpu"} <= groups
    assert all("gpu_name" not in b["extra_info"] for b in data["benchmarks"])


@pytest.mark.parametrize("extra, threads", [([], 1), (["--threads", "2"], 2)])
def test_run_keeps_the_grid_threads_unless_told(extra, threads, monkeypatch, tmp_path):
    """Without --threads a grid's own count holds (the gate grid times one thread)."""
    seen = {}

    def fake_sweep(cases, settings, out, **kw):
        seen["threads"] = settings.threads
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the test's pool
    argv = ["run", "--grid", "gate", "--workloads", "update", "--methods", "unconstrained"]
    with pytest.raises(SystemExit):
        main([*argv, "--no-report", "--out", str(tmp_path), *extra])
    assert seen["threads"] == threads


def test_conv_options_are_known_to_option(tmp_path):
    assert main(["run", "--workloads", "conv_train_step", "--methods", "cayley", "--channels", "4",
                 "--spatial", "4", "--option", "kernel_size=5", "--no-report", "--no-progress",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    (run,) = tmp_path.iterdir()
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert rows and all("kernel_size=5" in r["options"].split(";") for r in rows)
