"""The pull-request gate's selection and scripts, and the offline dashboard's rewriting
(no asv run, no network: seconds)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

asv = pytest.importorskip("asv")  # the test extra; collection never breaks without it
import browser_check  # noqa: E402
from asv.benchmarks import Benchmarks  # noqa: E402

from suite.cli import main as cli  # noqa: E402
from suite.gate import asv as gate  # noqa: E402
from suite.gate import noise as noise_module  # noqa: E402
from suite.gate import run as gate_run  # noqa: E402
from suite.measure.cases import GRIDS, method_labels  # noqa: E402
from suite.measure.methods import METHODS  # noqa: E402
from suite.report import asv_offline  # noqa: E402

GRID = GRIDS[gate.GRID]


def _asv_benchmarks() -> list[dict]:
    """The gate grid's timed benchmarks as asv discovers them (parameters as reprs)."""
    out = []
    for workload, name in gate.TIMED.items():
        shape = [GRID.channels, GRID.spatial] if workload.startswith("conv_") else [GRID.sizes]
        labels = method_labels(workload, GRID.ranks, devices=["cpu"])
        params = [labels, *shape, GRID.dtypes, ["cpu"]]
        out.append(
            {
                "name": f"benchmarks.{name}",
                "params": [[repr(v) for v in axis] for axis in params],
                "param_names": [f"p{i}" for i in range(len(params))],
            }
        )
    return out


class _Conf:
    benchmark_dir = "suite"


def _selected() -> list[tuple[str, tuple[str, ...]]]:
    """(benchmark, parameter reprs) of every combination asv's own filter keeps."""
    found = Benchmarks(_Conf(), _asv_benchmarks(), regex=gate.bench_regexes())
    out = []
    for b in _asv_benchmarks():
        combos = list(itertools.product(*b["params"]))
        for i in found.benchmark_selection.get(b["name"]) or []:
            out.append((b["name"], combos[i]))
    return out


def test_the_gate_covers_every_method_and_projunn_where_its_cost_shows():
    chosen = _selected()
    methods = {eval(params[0]).partition("-k")[0] for _, params in chosen}
    assert methods == {name for name, spec in METHODS.items() if not spec.graphed}  # CPU gate
    big = max(GRID.sizes)
    for workload in ("update", "train_step"):
        name = gate.TIMED[workload]
        for label in method_labels(workload, GRID.ranks, devices=["cpu"]):
            if label.startswith("projunn"):
                combo = (f"benchmarks.{name}", (repr(label), str(big), "'float32'", "'cpu'"))
                assert combo in chosen, combo


def test_the_gate_skips_cubic_methods_above_its_cap_and_times_the_rest():
    chosen = _selected()
    for _, params in chosen:
        method, n = eval(params[0]).partition("-k")[0], int(params[1])
        assert not (METHODS[method].cubic and n > gate.CUBIC_MAX_N), params
    every = sum(len(list(itertools.product(*b["params"]))) for b in _asv_benchmarks())
    cubic_big = sum(
        1
        for b in _asv_benchmarks()
        for p in itertools.product(*b["params"])
        if METHODS[eval(p[0]).partition("-k")[0]].cubic and int(p[1]) > gate.CUBIC_MAX_N
    )
    assert len(chosen) == every - cubic_big


def test_gate_environment_pins_every_pool_to_one_thread():
    env = gate.environment({"OMP_NUM_THREADS": "16", "PATH": "/bin"})
    assert env["PATH"] == "/bin" and env["PROJUNN_BENCH_GRID"] == "gate"
    assert all(env[v] == "1" for v in gate.THREAD_VARIABLES)
    assert GRID.settings.threads == 1 and GRID.settings.clock == "cpu"


def test_cpu_clock_measures_work_and_rejects_bad_clocks():
    from suite.measure.cases import Settings
    from suite.measure.timing import measure

    t = measure(lambda: sum(range(20000)), min_time=0.005, max_time=0.02, clock="cpu")
    assert t.median > 0 and t.repeat >= 1
    with pytest.raises(ValueError, match="unknown clock"):
        measure(lambda: None, clock="sundial")
    with pytest.raises(ValueError, match="clock must be"):
        Settings(clock="sundial")


def test_gate_command_dry_run_and_bad_input(capsys, tmp_path):
    gate_py = gate_run
    assert cli(["gate", "HEAD", "--dry-run", "--factor", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("asv continuous --interleave-rounds --factor 2.0")
    assert out.count("--bench") == len(gate.bench_regexes()) and out.rstrip().endswith("HEAD")
    for argv in (["no-such-commit-xyz"], ["HEAD", "--factor", "1"], ["HEAD", "--factor", "x"]):
        with pytest.raises(SystemExit) as e:
            cli(["gate", *argv])
        assert e.value.code == 2
    assert "PERFORMANCE DECREASED" in gate_py.summary("a", "b", 1.5, 1, "| t |", 60)
    assert gate_py.summary("a", "b", 1.5, 0, "| t |", 60).startswith(gate_py.MARKER)


def test_gate_command_without_asv_says_so(capsys, tmp_path, monkeypatch):
    gate_py = gate_run
    assert gate_py.asv_executable()  # the test extra's asv, found without activation
    monkeypatch.setattr(gate_py, "asv_executable", lambda: None)
    assert cli(["gate", "HEAD", "--out", str(tmp_path / "g")]) == 2
    assert "asv is not installed here" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()  # nothing was started


def test_gate_noise_stops_when_a_gate_run_cannot_run(tmp_path, monkeypatch, capsys):
    noise = noise_module
    calls = []

    def failed_run(repo, head, label, factor, data):
        calls.append(label)
        return noise.GateRun(label, 2, 1.0, (0.0, 0.0))

    monkeypatch.setattr(noise, "make_clone", lambda work, n: (work, "0" * 40))
    monkeypatch.setattr(noise, "run_gate", failed_run)
    out = tmp_path / "noise.md"
    assert cli(["gate-noise", "--out", str(out), "--work", str(tmp_path)]) == 2
    assert calls == ["planted"] and not out.exists()  # no A/A runs, no empty summary
    assert "the gate run 'planted' failed (exit 2)" in capsys.readouterr().err


def test_gate_noise_records_a_gate_that_exits_before_making_its_folder(tmp_path, monkeypatch):
    import types

    noise = noise_module
    # the gate exiting 2 at once (no asv, bad arguments) never creates --out
    monkeypatch.setattr(
        noise.subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=2)
    )
    monkeypatch.setattr(noise, "_git", lambda repo, *args: "0" * 40)
    run = noise.run_gate(tmp_path / "repo", "planted", "planted", 1.5, tmp_path / "data")
    assert run.status == 2 and run.label == "planted"
    info = json.loads((tmp_path / "data" / "planted" / "run.json").read_text())
    assert info["status"] == 2


COMPARE = """
| Change   | Before [b4ec1a6d] <base>   | After [8f3c9a5b] <planted>   |   Ratio | Benchmark (Parameter)   |
|----------|----------------------------|------------------------------|---------|-------------------------|
| +        | 1.62±0.02ms                | 3.31±0.05ms                  |    2.04 | benchmarks.Update.time_update('projunn_t-k1', 1024, 'float32', 'cpu') |
|          | 10.1±0.3ms                 | 12.9±2ms                     |   ~1.28 | benchmarks.TrainStep.time_train_step('projunn_t-k1', 1024, 'float32', 'cpu') |
| -        | 2.00±0.01ms                | 1.00±0.01ms                  |    0.50 | benchmarks.Update.time_update('svd', 64, 'float32', 'cpu') |
| !        | 2.00±0.01ms                | failed                       |     n/a | benchmarks.Update.time_update('svd', 256, 'float32', 'cpu') |
"""  # noqa: E501


def test_gate_noise_reads_asv_compare_tables_and_summarizes(tmp_path):
    noise = noise_module
    rows = noise.parse_table(COMPARE)
    assert [(r.mark, r.ratio) for r in rows] == [
        ("+", 2.04),
        ("", 1.28),
        ("-", 0.5),
        ("!", None),
    ]
    planted = noise.GateRun("planted", 1, 600.0, (2.0, 2.0), rows)
    aa = noise.GateRun("aa-1", 0, 300.0, (2.0, 2.0), [noise.Row("", 1.1, "x")])
    assert [r.mark for r in planted.flagged] == ["+", "!"]
    text = noise.report([aa], planted, 1.5, 1024, tmp_path)
    assert "A/A false alarms at factor 1.5: 0 in 1 runs; largest A/A ratio 1.10" in text
    assert "1 of 2 projUNN cases flagged; update ratios 2.04" in text
    assert "(1.10, 2.04]" in text


def test_plant_doubles_the_step_only_at_its_size(tmp_path, monkeypatch):
    import importlib.util
    import sys

    import torch

    src = Path(__file__).resolve().parents[1] / "projunn_core" / "step.py"
    planted = tmp_path / "step_planted.py"
    text = src.read_text().replace("from .", "from projunn_core.")
    planted.write_text(text + noise_module.PLANT.format(n=32))
    spec = importlib.util.spec_from_file_location("step_planted", planted)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "step_planted", module)
    spec.loader.exec_module(module)
    calls = []
    monkeypatch.setattr(module, "_update_once", lambda A, *a: calls.append(A.shape[-1]) or A)
    for n in (16, 32):
        module.projunn_step(torch.eye(n), torch.zeros(n, n), 0.1)
    assert calls == [16, 32, 32]


def test_offline_dashboard_knows_every_cdn_url_of_this_asv():
    offline = asv_offline
    index = Path(asv.__file__).parent / "www" / "index.html"
    html = offline.rewrite(index.read_text())
    remote = re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=[\"'](https?://[^\"']+)", html)
    assert remote == []
    assert html.count('src="vendor/') == sum(u.endswith(".js") for u in offline.ASSETS)
    with pytest.raises(ValueError, match="https://example.org/x.js"):
        offline.rewrite('<script src="https://example.org/x.js"></script>')


def test_offline_dashboard_copies_package_files(tmp_path):
    import io
    import tarfile

    offline = asv_offline
    tarball = tmp_path / "pkg-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("package/dist/a.js", "package/dist/fonts/f.woff", "package/other.js"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    files = offline.unpack(tarball, ["dist/a.js", "dist/fonts/"], tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == [
        "dist/a.js",
        "dist/fonts/f.woff",
    ]
    with pytest.raises(FileNotFoundError, match="missing.js"):
        offline.unpack(tarball, ["missing.js"], tmp_path / "out")


def test_browser_check_reads_chromium_console_lines():
    check = browser_check
    log = (
        '[1:1:1127/021508.157168:INFO:CONSOLE:1] "boom", source: http://x/t.html (1)\n'
        "[1:1:1127/021508.2:ERROR:bus.cc(408)] Failed to connect to the bus\n"
    )
    assert check.console_messages(log) == ('"boom", source: http://x/t.html (1)',)
    page = check.Page("u", "<div>list</div>", ())
    assert check.check(page, ["list"]) == [] and check.check(page, ["graph"])


def test_gate_noise_rewrites_its_summary_from_saved_runs(tmp_path):
    for label, table in (("planted", COMPARE), ("aa-1", COMPARE.replace("| +", "|  "))):
        (tmp_path / label).mkdir()
        (tmp_path / label / "compare.md").write_text(table)
        info = {"status": int(label == "planted"), "wall_s": 480.0, "loadavg_1_5": [2, 2]}
        (tmp_path / label / "run.json").write_text(json.dumps(info))
    out = tmp_path / "gate_noise.md"
    assert cli(["gate-noise", "--from-data", "--data", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Commit b4ec1a6d" in text and "| planted | 1 | 8.0 | 2.0, 2.0 | 3 |" in text
    assert "A/A false alarms at factor 1.5: 1 in 1 runs" in text  # the "!" row


def _asv_result(times: dict[str, list[float]]) -> dict:
    """An asv result file (format version 2) of ``benchmarks.X.time_x`` over ``times``."""
    names = list(times)
    q = [sorted(ts) for ts in times.values()]
    columns = {
        "result": [ts[len(ts) // 2] for ts in q],
        "params": [[repr(n) for n in names]],
        "version": "v",
        "started_at": 0,
        "duration": 1.0,
        "stats_ci_99_a": [ts[0] for ts in q],
        "stats_ci_99_b": [ts[-1] for ts in q],
        "stats_q_25": [ts[len(ts) // 4] for ts in q],
        "stats_q_75": [ts[3 * len(ts) // 4] for ts in q],
        "stats_number": [1] * len(q),
        "stats_repeat": [len(ts) for ts in q],
        "samples": [list(ts) for ts in times.values()],
    }
    return {
        "commit_hash": "0" * 40,
        "env_name": "env",
        "date": 0,
        "params": {"machine": "m"},
        "python": "3.11",
        "requirements": {},
        "env_vars": {},
        "result_columns": [*columns, "profile"],
        "results": {"benchmarks.X.time_x": [*columns.values(), None]},
        "durations": {},
        "version": 2,
    }


def test_gate_noise_judges_saved_asv_results_at_any_factor(tmp_path):
    noise = noise_module
    one = [1.0 + 0.01 * i for i in range(10)]
    base = {"slow": one, "same": one}
    head = {"slow": [2 * t for t in one], "same": one}
    (tmp_path / "run" / "asv").mkdir(parents=True)
    for side, times in (("base", base), ("head", head)):
        (tmp_path / "run" / "asv" / f"{side}.json").write_text(json.dumps(_asv_result(times)))
    slow = ["benchmarks.X.time_x('slow')"]
    assert noise.flags(tmp_path / "run", 1.5) == slow
    assert noise.flags(tmp_path / "run", 1.5, samples=False) == slow
    assert noise.flags(tmp_path / "run", 2.5) == []
    assert noise.flags(tmp_path / "missing", 1.5) == []
