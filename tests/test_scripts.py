"""The measurement script behind the core figures runs and writes its report atomically."""

import pytest


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
    with pytest.raises(SystemExit):
        script("bench_core").main(args)
    assert "must be positive" in capsys.readouterr().err


def test_bench_rnn_step_smoke(capsys, script):
    argv = ["--methods", "expm", "eunn", "--hidden", "8", "--T", "3", "--batch", "2"]
    assert script("bench_rnn_step").main(argv + ["--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| expm |" in out and "| eunn |" in out and "speed-up" in out


def test_drift_smoke(tmp_path, capsys, script):
    report = tmp_path / "drift.md"
    args = ["--sizes", "8:20", "--every", "5", "--max-time", "0.01", "--jobs", "1"]
    assert script("drift").main([*args, "--out", str(tmp_path), "--report", str(report)]) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    assert "## N = 8, 20 updates" in text and "projunn_t repair every 5" in text
    assert "| 20 |" in text and "## Cost" in text and "python scripts/drift.py --sizes" in text
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = (run / "results.csv").read_text().splitlines()
    assert rows[0].startswith("workload,method,n,k")
    assert len(rows) == 1 + 4 * 6 + 5  # 2 variants x 2 runs x (start + 5 checkpoints), costs
    assert (run / "machine.json").exists() and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("args", [["--sizes", "8"], ["--every", "0"], ["--sizes", "2:5"]])
def test_drift_rejects_bad_arguments(args, capsys, script):
    with pytest.raises(SystemExit) as info:
        script("drift").main(args)
    assert info.value.code == 2 and "error" in capsys.readouterr().err
