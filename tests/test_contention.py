"""Timings a busy machine makes are flagged, and the rough edges a new user hit: an
unusable --out, an interrupted summary, a diverging task, the profiler's log lines, the
commit of an unpacked copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.cli import main
from suite.measure import machine
from suite.measure.cases import Case
from suite.measure.runner import run_case
from suite.measure.settings import Settings
from suite.measure.timing import CONTENDED_BELOW, CpuShare

ONE_THREAD = Settings(warmup=1, min_time=0.15, max_time=0.15, threads=1)
CASES = [Case("update", "unconstrained", 256), Case("update", "projunn_t", 128, 2)]

HOG = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def _timed_rows(settings=ONE_THREAD):
    rows = [r for case in CASES for r in run_case(case, settings).rows]
    return [r for r in rows if r.metric == "time"]


QUIET = 0.95
"""The share a pure CPU loop gets on a quiet machine at least (about 1 measured)."""


def _busy() -> str:
    """Why the machine is not quiet now, or '': a 0.1 s pure CPU loop waited for a CPU,
    or more processes wanted one than there are cores over the last minute (the loop
    alone can miss it: beside 2 busy processes on 2 cores it once got 0.95 of a CPU)."""
    with CpuShare(threads=1) as probe:
        end = time.perf_counter() + 0.1
        while time.perf_counter() < end:
            pass
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if (probe.share is None or probe.share >= QUIET) and load <= cores:
        return ""
    share = "?" if probe.share is None else f"{probe.share:.2f}"
    return f"a 0.1 s CPU loop got {share} of a CPU (load {load:.1f}, {cores} cores)"


def test_a_quiet_machine_flags_nothing():
    """No false alarm on a quiet machine. Whether it is quiet is checked before and after
    (other jobs on a shared machine make a real contention, rightly flagged): a busy
    machine skips the check with the probe's share and the load."""
    busy = _busy()
    rows = _timed_rows()
    busy = busy or _busy()
    assert rows and all(r.cpu_share is not None for r in rows)
    if busy and any(r.contended for r in rows):
        pytest.skip(f"the machine is busy, so its timings are rightly contended: {busy}")
    assert not any(r.contended for r in rows), [(r.method, r.cpu_share) for r in rows]


def test_timings_under_a_cpu_hog_are_flagged():
    """Two busy processes per core (bounded to 30 s, stopped by the test) besides the
    one-thread sweep: five runnable threads on two cores, a share of about 0.4."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG.format(seconds=30)])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        time.sleep(0.3)  # the hogs are running
        rows = _timed_rows()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert rows and all(r.contended for r in rows), [(r.method, r.cpu_share) for r in rows]
    assert all(r.cpu_share < CONTENDED_BELOW for r in rows)


def test_cpu_share_of_a_sleeping_block_is_not_contention():
    """Sleeping is not waiting for a CPU: a block that sleeps 0.5 s and computes a few
    milliseconds waited far less than the sleep, on a quiet machine or a busy one (other
    load makes the computing part wait, a few times its length: on a busy machine the
    share of such a block is rightly below the contention threshold)."""
    with CpuShare(threads=2) as meter:
        time.sleep(0.5)  # blocked, not waiting for a CPU
        sum(range(50_000))
    assert meter.share is not None and meter.ran is not None and meter.waited is not None
    assert meter.ran > 0 and meter.waited < 0.25, (meter.ran, meter.waited, meter.share)
    assert meter.share == pytest.approx(meter.ran / (meter.ran + meter.waited))


def test_run_warns_and_strict_exits_3_on_contention(tmp_path, capsys, monkeypatch):
    from suite.measure import probes

    real = probes.measure

    def contended(*args, **kwargs):
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), cpu_share=0.5)

    monkeypatch.setattr(probes, "measure", contended)
    argv = ["run", "--grid", "tiny", "--workloads", "update", "--methods", "unconstrained"]
    argv += ["--out", str(tmp_path), "--no-progress", "--no-report"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 of 2 cases were timed contended" in err and "--strict" in err
    assert main([*argv, "--strict"]) == 3
    folder = sorted(tmp_path.iterdir())[-1]
    meta = json.loads((folder / "machine.json").read_text())["run"]
    assert meta["cases_contended"] == 2
    assert set(meta["load"]) == {"start", "end"}
    assert meta["load"]["end"]["involuntary_context_switches"] >= 0
    table = (folder / "results.csv").read_text()
    assert ",0.5,True" in table


def test_an_unusable_out_is_a_usage_error_before_anything_runs(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("")
    for bad in ("/proc/projunn-bench-nope", str(file), str(file / "sub")):
        with pytest.raises(SystemExit) as e:
            main(["run", "--grid", "tiny", "--out", bad])
        assert e.value.code == 2 and "argument --out" in capsys.readouterr().err
    fresh = tmp_path / "new" / "deeper"
    assert main(["list", "--grid", "tiny"]) == 0 and not fresh.exists()
    from suite.commands._args import output_dir

    assert output_dir(str(fresh)) == fresh and not (tmp_path / "new").exists()  # checked, undone


def test_an_interrupted_summary_says_not_reached(tmp_path, capsys, monkeypatch):
    from suite.measure import runner

    real, calls = runner.run_case, []

    def stop_at_second(case, settings):
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, settings)

    monkeypatch.setattr(runner, "run_case", stop_at_second)
    argv = ["run", "--grid", "tiny", "--workloads", "update", "--sizes", "16", "--ranks", "1"]
    argv += ["--methods", "unconstrained", "svd", "expm", "--out", str(tmp_path)]
    assert main([*argv, "--no-progress", "--no-report"]) == 130
    out = " ".join(capsys.readouterr().out.split())
    assert "svd, expm: not reached (interrupted)" in out and "not selected" in out


def test_a_diverging_task_says_why_and_exits_1(tmp_path, capsys):
    argv = ["task", "copy", "--method", "unconstrained", "--lr", "100", "--steps", "4"]
    argv += ["--T", "4", "--hidden", "8", "--test-size", "8", "--out", str(tmp_path)]
    assert main([*argv, "--no-progress", "--no-figure"]) == 1
    out = capsys.readouterr().out
    assert "failed unconstrained: the training loss became non-finite by step" in out


def test_profile_output_has_no_profiler_log_lines(tmp_path, capfd):
    argv = ["profile", "--method", "unconstrained", "--n", "16", "--steps", "2"]
    assert main([*argv, "--min-time", "0.01", "--max-time", "0.02", "--out", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert "# Profile: update" in out
    assert "USDT" not in out + err and "profiler_start" not in out + err


def test_without_profiler_log_keeps_other_stderr(capfd):
    from suite.measure.profiling import without_profiler_log

    with without_profiler_log():
        os.write(2, b"USDT:2026 profiler_start\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"


def test_the_commit_is_the_projects_own_or_none(tmp_path):
    def git(*args, cwd):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    outer = tmp_path / "outer"
    (outer / "copy").mkdir(parents=True)
    git("init", "-q", cwd=outer)
    (outer / "f").write_text("x")
    git("add", "f", cwd=outer)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=outer)
    assert machine.git_commit(outer / "copy") == ""  # an unpacked copy inside a checkout
    assert len(machine.git_commit(outer)) == 40
    assert machine.git_commit(Path(__file__).resolve().parents[1]) != ""


def test_calibrate_judges_aa_pairs_and_picks_a_factor(tmp_path, capsys):
    """Three synthetic A/A runs shifted by 1.12x and 1/0.87x = 1.155x: the chosen factor is
    the smallest candidate above the shifts, and a planted 1.5x is caught there."""
    import numpy as np

    from suite.measure.output import write_json, write_table
    from suite.measure.rows import Row

    rng = np.random.default_rng(7)
    folders = []
    for run, shift in enumerate((1.0, 1.12, 0.97)):
        rows = []
        for method, k in (("projunn_t", 1), ("svd", None)):
            for n in (64, 256):
                samples = 1e-3 * n / 64 * shift * (1 + 0.002 * rng.standard_normal(20))
                rows.append(
                    Row("update", method, n, k, metric="time", value=float(np.median(samples)),
                        unit="s", repeat=20, samples=";".join(map(repr, samples.tolist())))
                )  # fmt: skip
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        write_table(rows, folder / "results.csv")
        write_json(folder / "machine.json", {"cpu_model": "x", "run": {"status": "complete"}})
        folders.append(folder)
    out = tmp_path / "cal"
    argv = ["calibrate", "--from", *map(str, folders), "--out", str(out)]
    assert main([*argv, "--report", str(tmp_path / "detector.md")]) == 0
    text = (tmp_path / "detector.md").read_text()
    assert text == (out / "detector.md").read_text() == capsys.readouterr().out
    assert "2 A/A pairs" in text and "**Chosen default factor: 1.2**" in text
    assert "| 1.1 | 8 |" in text and "| 1.15 | 4 |" in text  # both shifts, then the larger
    with pytest.raises(SystemExit):
        main(["calibrate", "--from", str(folders[0]), "--out", str(out)])
