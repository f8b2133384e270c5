"""The one-off figure scripts, and the drift and GPU-check commands, run and write their
results atomically."""

import pytest

from suite.cli import build_parser
from suite.cli import main as cli
from suite.measure.rows import Row
from suite.studies import gpu_check


def test_bench_core_smoke(tmp_path, capsys, script):
    out = tmp_path / "core.md"
    argv = ["--quick", "--time", "0.001", "--drift-steps", "2", "--out", str(out)]
    assert script("bench_core").main(argv) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    for heading in ("N = 2048, k = 8", "k = 1 vs expm", "Scaling, k = 8", "float32 drift"):
        assert heading in text
    assert "log-log slope projUNN-T" in text and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("args", [["--time", "0"], ["--drift-steps", "-1"]])
def test_bench_core_rejects_bad_counts(args, capsys, script):
    with pytest.raises(SystemExit) as info:
        script("bench_core").main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {args[0]}" in err and "is not positive" in err


def test_bench_rnn_step_smoke(capsys, script):
    argv = ["--methods", "expm", "eunn", "--hidden", "8", "--T", "3", "--batch", "2"]
    assert script("bench_rnn_step").main(argv + ["--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| expm |" in out and "| eunn |" in out and "speed-up" in out


def test_drift_smoke(tmp_path, capsys):
    report = tmp_path / "drift.md"
    args = ["--sizes", "8:20", "--every", "5", "--max-time", "0.01", "--jobs", "1"]
    assert cli(["drift", *args, "--out", str(tmp_path), "--report", str(report)]) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    assert "## N = 8, 20 updates" in text and "projunn_t repair every 5" in text
    assert "| 20 |" in text and "## Cost" in text and "projunn-bench drift --sizes" in text
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = (run / "results.csv").read_text().splitlines()
    assert rows[0].startswith("workload,method,n,k")
    assert len(rows) == 1 + 4 * 6 + 5  # 2 variants x 2 runs x (start + 5 checkpoints), costs
    assert (run / "machine.json").exists() and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("args", [["--sizes", "8"], ["--every", "0"], ["--sizes", "2:5"]])
def test_drift_rejects_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as info:
        cli(["drift", *args])
    assert info.value.code == 2 and "error" in capsys.readouterr().err


def test_gpu_check_runs_its_cpu_parts(tmp_path, capsys):
    """On a CPU the GPU script runs what a CPU can: the sweep and profile at a small N
    (graphed methods and host-sync counts are skipped rows with their reason)."""
    import csv
    import json

    from suite.measure.rows import COLUMNS

    args = ["--out", str(tmp_path), "--device", "cpu", "--budget", "60"]
    args += ["--parts", "syncs", "sweep", "profile", "--sizes", "16", "--ranks", "2"]
    assert cli(["gpu-check", *args]) == 0
    (folder,) = tmp_path.iterdir()
    with open(folder / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    by = {(r["method"], r["metric"], r["status"]) for r in rows}
    assert ("projunn_t", "time", "ok") in by and ("expm", "time", "ok") in by
    assert ("byte_floor", "time", "ok") in by
    notes = json.loads((folder / "machine.json").read_text())["run"]["gpu_check"]
    assert notes["copy_bandwidth_bytes_per_s"] > 0
    assert ("projunn_t", "ops_per_step", "ok") in by  # the profile part
    graphed = [r for r in rows if r["method"] == "projunn_t_graphed" and r["metric"] == ""]
    assert graphed and all(r["status"] == "skipped" for r in graphed)
    assert "replayed as a CUDA graph" in graphed[0]["reason"]
    syncs = [r for r in rows if r["metric"] == "host_syncs_per_step"]
    assert syncs and {r["reason"] for r in syncs} == {"host syncs are counted on CUDA only"}
    summary = (folder / "summary.md").read_text()
    assert "| 16 |" in summary and "(they need CUDA)" in summary
    out = capsys.readouterr().out
    assert out.index("# GPU check") < out.index("results:")  # the summary is printed last
    from suite.report.load import load_one

    _, frame = load_one(folder)  # the report reads the folder as it is
    assert len(frame) == len(rows)


def test_gpu_check_profile_reuses_the_sweeps_timing(tmp_path, monkeypatch):
    """A case the sweep timed is not timed again by the profile part."""
    import suite.measure.profiling

    calls, real = [], suite.measure.profiling.measure
    monkeypatch.setattr(
        suite.measure.profiling, "measure", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    args = ["--out", str(tmp_path), "--device", "cpu", "--budget", "60"]
    args += ["--parts", "sweep", "profile", "--sizes", "16", "--ranks", "2"]
    assert cli(["gpu-check", *args]) == 0
    (folder,) = tmp_path.iterdir()
    text = (folder / "results.csv").read_text()
    assert "ops_per_step" in text and calls == []  # profiled, on the sweep's timing


def test_gpu_check_interrupted_keeps_its_rows_and_exits_130(tmp_path, monkeypatch):
    import json

    def interrupt(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(gpu_check.PART_FUNCS, "sweep", interrupt)
    args = ["--out", str(tmp_path), "--device", "cpu", "--parts", "syncs", "sweep"]
    assert cli(["gpu-check", *args, "--sizes", "16"]) == 130
    (folder,) = tmp_path.iterdir()
    assert json.loads((folder / "machine.json").read_text())["run"]["status"] == "interrupted"
    assert "host_syncs_per_step" in (folder / "results.csv").read_text()


def test_gpu_check_stops_at_its_budget_and_sizes_itself_to_a_cpu(tmp_path, capsys, monkeypatch):
    """Once the budget is spent the remaining parts are skipped and noted (nothing runs
    past it), and without --sizes a CPU run takes the CPU sizes, not N = 16384."""
    import json

    monkeypatch.setattr(gpu_check.Context, "left", lambda self: -1.0)
    args = ["--out", str(tmp_path), "--device", "cpu", "--parts", "sweep", "profile"]
    assert cli(["gpu-check", *args]) == 0
    (folder,) = tmp_path.iterdir()
    notes = json.loads((folder / "machine.json").read_text())["run"]["gpu_check"]
    assert notes["sweep_skipped"] == notes["profile_skipped"] == "gpu-check budget spent"
    assert "sweep skipped, the budget is spent" in capsys.readouterr().err
    parsed = build_parser().parse_args(["gpu-check", "--out", "x", "--device", "cpu"])
    assert parsed.sizes is None  # main() fills in CPU_SIZES
    assert max(gpu_check.CPU_SIZES) <= 1024 < max(gpu_check.SIZES)


def test_gpu_check_rejects_bad_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["gpu-check", "--out", str(tmp_path), "--budget", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --budget" in err and "is not positive" in err


@pytest.mark.parametrize(
    "args",
    [["--ranks", "1", "0"], ["--sizes", "1"], ["--out", "{file}/sub"], ["--out", "{file}"]],
)
def test_gpu_check_rejects_bad_arguments_before_it_starts(args, tmp_path, capsys):
    """A folder that cannot be made is a usage error, not a traceback once the watchdog
    is armed and the recording has begun."""
    file = tmp_path / "a-file"
    file.write_text("")
    argv = ["--out", str(tmp_path), "--device", "cpu"]
    argv += [a.format(file=file) for a in args]
    with pytest.raises(SystemExit) as e:
        cli(["gpu-check", *argv])
    assert e.value.code == 2 and args[0] in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [file]  # nothing was recorded


def test_gpu_check_summary_judges_the_targets():
    """The summary's verdicts, from made-up GPU rows (the real ones need a GPU)."""

    def row(method, n, value, k=None, metric="time_cuda_events"):
        return Row("update", method, n, k, metric=metric, value=value)

    rows = [row("byte_floor", n, 6 * n * n * 4 / 3e12, metric="time") for n in (256, 8192)]
    rows += [row("projunn_t_graphed", 256, 8e-5, 1), row("projunn_t_graphed", 8192, 7e-4, 1)]
    rows += [row("expm", 256, 4e-4), row("cayley", 256, 6e-5), row("expm", 8192, 0.07)]
    rows += [row("projunn_t_graphed", 256, 9e-5, 1, metric="time")]  # wall: events win
    text = gpu_check.summary(rows, "test GPU", [1])
    assert "| 256 | 0.080 |" in text
    assert "replayed step < 0.1 ms: met (max 0.080 ms)" in text
    assert "within 1.5x the byte floor: 1.30x" in text
    assert "faster than expm and Cayley at every N >= 128: not met: cayley at N=256" in text


def test_gpu_check_times_the_training_step_of_projunn_baselines_and_peers(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--device", "cpu", "--budget", "60", "--parts", "train"]
    assert cli(["gpu-check", *args, "--sizes", "16", "--ranks", "2"]) == 0
    (folder,) = tmp_path.iterdir()
    rows = (folder / "results.csv").read_text()
    for method in ("projunn_t", "expm", "landing"):
        assert f"train_step,{method},16," in rows
    summary = (folder / "summary.md").read_text()
    assert "## The training step, batch 128" in summary and "| landing |" in summary
    assert "train_step,projunn_t_graphed,16,2" in rows  # a skipped row: CUDA graphs need CUDA
