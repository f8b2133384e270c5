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
from helpers import write_asv_results  # noqa: E402

from suite.cli import main as cli  # noqa: E402
from suite.gate import asv as gate  # noqa: E402
from suite.gate import noise as noise_module  # noqa: E402
from suite.gate import run as gate_run  # noqa: E402
from suite.measure.cases import GRIDS, method_labels  # noqa: E402
from suite.measure.methods import METHODS  # noqa: E402
from suite.report import asv_offline  # noqa: E402
from suite.report.compare import FACTOR  # noqa: E402

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
    own = {name for name, spec in METHODS.items() if not spec.graphed and spec.requires is None}
    assert methods == own  # a CPU gate of the project's code: no peer library is gated
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
    left_out = sum(
        1
        for b in _asv_benchmarks()
        for p in itertools.product(*b["params"])
        if (spec := METHODS[eval(p[0]).partition("-k")[0]]).requires is not None
        or (spec.cubic and int(p[1]) > gate.CUBIC_MAX_N)
    )
    assert len(chosen) == every - left_out


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
    from suite.report.compare import CaseChange, Comparison

    slower = CaseChange("update svd N=64 float32 cpu", 1.0, 2.0, 2.0, "intervals apart", True,
                        "regressed")  # fmt: skip
    assert "PERFORMANCE DECREASED" in gate_py.summary("a", "b", Comparison([slower], 1.5), 60)
    assert gate_py.summary("a", "b", Comparison([], 1.5), 60).startswith(gate_py.MARKER)


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
    monkeypatch.setattr(noise, "git", lambda repo, *args: "0" * 40)
    run = noise.run_gate(tmp_path / "repo", "planted", "planted", 1.5, tmp_path / "data")
    assert run.status == 2 and run.label == "planted"
    info = json.loads((tmp_path / "data" / "planted" / "run.json").read_text())
    assert info["status"] == 2


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


ONE = [1e-3 * (1 + 0.002 * i) for i in range(12)]  # a tight spread: intervals are narrow


def _saved_run(data: Path, label: str, slow: dict[str, float], status: int) -> Path:
    """A campaign run folder as the gate leaves it: run.json and asv's results of both
    commits, projUNN-T at N = 1024 and svd, ``slow`` = factors applied in HEAD."""
    folder = data / label
    (folder / "asv").mkdir(parents=True)
    for side, commit in (("base", "b4ec1a6d" + "0" * 32), ("head", "8f3c9a5b" + "0" * 32)):
        times = {m: [x * (slow.get(m, 1.0) if side == "head" else 1.0) for x in ONE]
                 for m in ("projunn_t-k1", "svd")}  # fmt: skip
        root = write_asv_results(folder / "tmp" / side, commit, times, n=1024)
        (result,) = (root / "box").glob(f"{commit[:8]}-*.json")
        (folder / "asv" / f"{side}.json").write_text(result.read_text())
        (folder / "asv" / "benchmarks.json").write_text((root / "benchmarks.json").read_text())
    info = {"status": status, "wall_s": 480.0, "loadavg_1_5": [2, 2]}
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_gate_noise_rewrites_its_summary_from_saved_runs(tmp_path):
    _saved_run(tmp_path, "planted", {"projunn_t-k1": 2.0}, status=1)
    _saved_run(tmp_path, "aa-1", {}, status=0)
    out = tmp_path / "gate_noise.md"
    assert cli(["gate-noise", "--from-data", "--data", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Commit b4ec1a6d" in text and "| planted | 1 | 8.0 | 2.0, 2.0 | 2 |" in text
    assert f"A/A false alarms at factor {FACTOR}: 0 in 1 runs" in text
    assert "1 of 1 projUNN cases flagged; update ratios 2.00" in text
    assert "| factor | A/A false alarms |" in text  # the pair judged at other factors


def test_the_gate_and_compare_give_the_same_verdicts(tmp_path, capsys):
    """The gate judges asv's results with compare's detector: same files, same verdict."""
    run = _saved_run(tmp_path, "pair", {"projunn_t-k1": 2.0, "svd": 1.2}, status=1)
    base, head = run / "asv" / "base.json", run / "asv" / "head.json"
    comp = gate_run.verdict(base, head, 1.5)
    assert [c.case for c in comp.regressed] == ["update projunn_t-k1 N=1024 float32 cpu"]
    assert cli(["compare", str(base), str(head), "--factor", "1.5"]) == 1
    out = capsys.readouterr().out
    assert "1 regressed, 0 improved, 1 unchanged" in out
    assert "| update projunn_t-k1 N=1024 float32 cpu |" in out
    for factor in (1.1, 2.5):  # and at other factors too
        regressed = {c.case for c in gate_run.verdict(base, head, factor).regressed}
        from suite.report.compare import compare

        assert regressed == {c.case for c in compare(base, head, factor=factor).regressed}


def test_the_gate_never_calls_a_contended_case_slower(tmp_path):
    run = _saved_run(tmp_path, "pair", {"projunn_t-k1": 2.0}, status=1)
    log = run / "contention.jsonl"
    case = {"workload": "update", "method": "projunn_t", "n": 1024, "k": 1}
    case |= {"dtype": "float32", "device": "cpu"}
    lines = [  # the longest process of a case is its timing one
        {"commit": "8f3c9a5b" + "0" * 32, **case, "cpu_share": 0.55, "seconds": 3.0},
        {"commit": "8f3c9a5b" + "0" * 32, **case, "cpu_share": 0.99, "seconds": 0.2},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut')
    from suite.report.contention import contention_marks

    marks = contention_marks(log)
    assert marks[("8f3c9a5b", "update", "projunn_t", 1024, 1, "float32", "cpu")] == 0.55
    comp = gate_run.verdict(run / "asv" / "base.json", run / "asv" / "head.json", 1.5, log)
    assert comp.regressed == [] and [c.case for c in comp.contended] == [
        "update projunn_t-k1 N=1024 float32 cpu"
    ]
    assert "Contended: not judged (1)" in gate_run.summary("b", "h", comp, 60)


def _planted_step(text: str):
    """projunn_core/step.py with a plant appended, as a module of the package."""
    import types

    import projunn_core.step as step

    module = types.ModuleType("projunn_core._planted_step")
    module.__package__ = "projunn_core"
    source = Path(step.__file__).read_text() + text
    exec(compile(source, "planted_step.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("name", sorted(__import__("suite.gate.plants").gate.plants.PLANTS))
def test_every_reference_plant_adds_work_but_not_a_different_result(name):
    import torch

    from projunn_core.init import haar
    from projunn_core.step import projunn_step
    from suite.gate import plants

    module = _planted_step(plants.PLANTS[name][1])
    calls = []
    wrapped = "_lowrank_plain" if "lowrank" in plants.PLANTS[name][1] else "_update_plain"
    inner = getattr(module, wrapped)
    setattr(module, wrapped, lambda *a, **k: calls.append(1) or inner(*a, **k))
    gen = torch.Generator().manual_seed(0)
    A, G = haar(32, torch.float64, generator=gen), torch.randn(32, 32, generator=gen)
    G = G.double()
    want = projunn_step(A.clone(), G, 0.1, 2, generator=torch.Generator().manual_seed(1))
    got = module.projunn_step(A.clone(), G, 0.1, 2, generator=torch.Generator().manual_seed(1))
    if wrapped == "_lowrank_plain":  # the basis is computed twice: the second draws on
        assert len(calls) == 2  # from the generator, the step itself is unchanged
    else:
        assert len(calls) == 1
    torch.testing.assert_close(got, want)


def test_the_count_calibration_chooses_its_threshold_and_judges_the_plants(tmp_path):
    from suite.gate import plants

    def write(label, values, wall=60.0):
        folder = tmp_path / label
        folder.mkdir(parents=True)
        cases = {
            c: {"instructions": v, "estimated_cycles": 2 * v, "operations": ops}
            for c, (v, ops) in values.items()
        }
        info = {"commit": "0" * 40, "wall_s": wall, "loadavg_1_5": [1.0, 1.0], "cases": cases}
        (folder / "counts.json").write_text(json.dumps(info))

    t, svd, free = (f"update-{m}-n64{k}-float32-cpu" for m, k in
                    (("projunn_t", "-k1"), ("svd", ""), ("unconstrained", "")))  # fmt: skip
    base = {t: (1e6, 40), svd: (2e6, 30), free: (1e5, 5)}
    write("aa-1/base", base)
    write("aa-1/aa", {k: (v * 1.001, ops) for k, (v, ops) in base.items()})  # 0.1 % A/A
    # below any count threshold, one more operator; an untouched case moved by 0.4 %
    write("plant-extra_pass", {t: (1.002e6, 41), svd: (2e6, 30), free: (1.004e5, 5)})
    write("plant-extra_op", {t: (1.03e6, 42), svd: (2e6, 30), free: (1e5, 5)})
    text, chosen = plants.report(tmp_path)
    assert chosen == 0.01  # the smallest candidate at least twice the 0.4 % of other code
    assert "| 0.25 % | 0 | 1 | 1 of 2 | 2 of 2 |" in text  # the moved case would be flagged
    assert "| 1 % | 0 | 0 | 1 of 2 | 2 of 2 |" in text
    assert "| extra_pass | one extra pass" in text and "| 1 | 0 of 1 | 1 of 1 | +0.20 %" in text
    assert "| 1 | 1 of 1 | 1 of 1 | +3.00 %" in text
    assert "thresholds catch: +3.00 %" in text and "missed by every measure: none." in text
    assert "| basis_1.2x |" in text and "not measured" in text
    assert plants.choose(0.0) == plants.CANDIDATES[0]
    assert plants.choose(0.5) == plants.CANDIDATES[-1]  # noisier than any candidate
