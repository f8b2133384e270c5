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
