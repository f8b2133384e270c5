"""The measurement script behind the core figures runs and writes its report atomically."""

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name="bench_core"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_core_smoke(tmp_path, capsys):
    out = tmp_path / "core.md"
    assert (
        _load().main(["--quick", "--time", "0.001", "--drift-steps", "2", "--out", str(out)]) == 0
    )
    text = out.read_text()
    assert text == capsys.readouterr().out
    for heading in ("N = 2048, k = 8", "k = 1 vs expm", "Scaling, k = 8", "float32 drift"):
        assert heading in text
    assert "log-log slope projUNN-T" in text and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("args", [["--time", "0"], ["--drift-steps", "-1"]])
def test_bench_core_rejects_bad_counts(args, capsys):
    with pytest.raises(SystemExit):
        _load().main(args)
    assert "must be positive" in capsys.readouterr().err


def test_drift_smoke(tmp_path, capsys):
    report = tmp_path / "drift.md"
    args = ["--sizes", "8:20", "--every", "5", "--max-time", "0.01", "--jobs", "1"]
    assert _load("drift").main([*args, "--out", str(tmp_path), "--report", str(report)]) == 0
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
def test_drift_rejects_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as info:
        _load("drift").main(args)
    assert info.value.code == 2 and "error" in capsys.readouterr().err
