"""projunn-bench report and compare: loading every input format, the analysis numbers on
synthetic tables with known answers, the report files, bad inputs, exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")

from helpers import write_asv_results  # noqa: E402

from suite.cli import main  # noqa: E402
from suite.measure import output  # noqa: E402
from suite.measure.rows import COLUMNS, Row  # noqa: E402
from suite.report import analysis as an  # noqa: E402
from suite.report.compare import compare_frames, significant  # noqa: E402
from suite.report.load import load, load_one  # noqa: E402
from suite.report.summary import run_summary  # noqa: E402

SIZES = (64, 128, 256, 512, 1024)
# time = c * N^p: projUNN O(N^2), SVD and expm O(N^3). Crossovers: SVD / projunn_t-k1 =
# 0.01 N > 1 from N = 128 on; expm / projunn_t-k1 = 0.005 N > 1 from N = 256 on.
MODELS = {
    ("projunn_t", 1): (1e-7, 2),
    ("projunn_t", 4): (1.2e-7, 2),
    ("projunn_d", 4): (1.1e-7, 2),
    ("svd", None): (1e-9, 3),
    ("expm", None): (0.5e-9, 3),
}


def _row(**kw):
    base = {c: "" for c in COLUMNS}
    base.update(options="", status="ok", reason="", k=None, step=None)
    base.update(kw)
    return base


def _timed(workload, method, n, k, seconds, device="cpu", rng=None, repeat=10):
    rng = rng or np.random.default_rng(0)
    samples = seconds * (1 + 0.01 * rng.standard_normal(repeat))
    q = np.percentile(samples, [25, 75])
    return _row(
        workload=workload,
        method=method,
        n=n,
        k=k,
        dtype="float32",
        device=device,
        metric="time",
        value=float(np.median(samples)),
        unit="s",
        iqr=float(q[1] - q[0]),
        repeat=repeat,
        samples=";".join(repr(float(s)) for s in samples),
    )


def scaling_rows(device="cpu", seed=0):
    """Update timings following MODELS, memory, accuracy, a skipped case."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        for (method, k), (c, p) in MODELS.items():
            rows.append(_timed("update", method, n, k, c * n**p, device, rng))
            rows.append(
                _row(
                    workload="update",
                    method=method,
                    n=n,
                    k=k,
                    dtype="float32",
                    device=device,
                    metric="host_peak_rss",
                    value=3e8 + 8 * n * n,
                    unit="bytes",
                )
            )
    for method, k in (("projunn_t", 1), ("projunn_t", 4), ("svd", None)):
        for metric, value in (("unitarity_init", 1e-7), ("unitarity_after_5_steps", 2e-6)):
            rows.append(
                _row(
                    workload="accuracy",
                    method=method,
                    n=256,
                    k=k,
                    dtype="float32",
                    device=device,
                    metric=metric,
                    value=value,
                    unit="1",
                )
            )
    for k, dist in ((1, 0.8), (4, 0.3)):
        rows.append(
            _row(
                workload="accuracy",
                method="projunn_t",
                n=256,
                k=k,
                dtype="float32",
                device=device,
                metric="dist_to_exact",
                value=dist,
                unit="1",
            )
        )
    rows.append(
        _row(
            workload="update",
            method="eunn",
            n=64,
            dtype="float32",
            device=device,
            status="skipped",
            reason="eunn has no functional update",
        )
    )
    return rows


def write_run(
    folder: Path, rows, *, status="complete", gpu="", date="2026-11-27T00:00:00+00:00", threads=1
):
    folder.mkdir(parents=True)
    output.write_table([Row(**r) for r in rows], folder / "results.csv")
    machine = {
        "cpu_model": "Test CPU",
        "cpu_logical_cores": 2,
        "gpu_name": gpu,
        "git_commit": "0123456789abcdef",
        "hostname": "testbox",
        "run": {"status": status, "started": date},
        "torch_threads": threads,
    }
    output.write_json(folder / "machine.json", machine)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cpu = write_run(root / "cpu", scaling_rows("cpu"))
    gpu_rows = [r for r in scaling_rows("cuda", seed=1) if r["workload"] != "accuracy"]
    gpu = write_run(root / "gpu", gpu_rows, gpu="Test GPU 80GB")
    return cpu, gpu


# --------------------------------------------------------------------------- loading


def test_load_runs_tables_and_old_tables_without_new_columns(runs, tmp_path):
    cpu, gpu = runs
    old = tmp_path / "old.csv"  # the H100 tables predate the step and samples columns
    header = [c for c in COLUMNS if c not in ("step", "samples")]
    old.write_text(",".join(header) + "\nupdate,svd,1024,,float32,cuda,,time,0.1,s,0.001,3,ok,\n")
    (tmp_path / "old.machine.json").write_text(json.dumps({"gpu_name": "Old GPU"}))
    loaded = load([cpu, gpu, old])
    assert loaded.warnings == []
    f = loaded.frame
    assert set(f["platform"]) == {"CPU: Test CPU, 2 cores", "GPU: Test GPU 80GB", "GPU: Old GPU"}
    assert set(f["run"]) == {"cpu", "gpu", "old"}
    assert f.loc[f["run"] == "old", "value"].tolist() == [0.1]
    assert f["k"].dtype == "Int64" and f["n"].dtype == "Int64"


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("truncated.csv", None, "partial"),
        ("garbage.json", "{not json", "not valid JSON"),
        ("badstatus.csv", "status", "status 'maybe'"),
        ("columns.csv", "a,b\n1,2\n", "missing columns"),
        ("empty.csv", "", "is empty"),
    ],
)
def test_a_corrupt_input_is_named_and_the_others_still_read(runs, tmp_path, name, text, problem):
    cpu, _ = runs
    bad = tmp_path / name
    good = (cpu / "results.csv").read_text()
    if text is None:  # cut in the middle of a row, as a killed writer would leave it
        bad.write_text(good[: good.index("\n", 400) - 20])
    elif text == "status":
        bad.write_text(good.replace(",ok,", ",maybe,", 1))
    else:
        bad.write_text(text)
    loaded = load([cpu, bad])
    assert len(loaded.warnings) == 1
    assert str(bad) in loaded.warnings[0] and problem in loaded.warnings[0]
    assert set(loaded.frame["run"]) == {"cpu"}


def test_a_run_left_running_is_skipped_with_a_warning(runs, tmp_path):
    killed = write_run(tmp_path / "killed", scaling_rows()[:10], status="running")
    loaded = load([runs[0], killed])
    assert set(loaded.frame["run"]) == {"cpu"}
    assert "running" in loaded.warnings[0] and str(killed) in loaded.warnings[0]


def test_asv_results_in_asv_own_format(tmp_path):
    root = write_asv_results(
        tmp_path,
        "abcdef0123456789",
        {
            "projunn_t-k4": [1e-3, 1.1e-3, 0.9e-3],
            "svd": [5e-3, 5.5e-3, 4.5e-3],
        },
    )
    ((source, df),) = [load_one(p) for p in (root / "box").glob("abcdef01*.json")]
    assert source.kind == "asv" and source.commit == "abcdef01"
    ok = df[df["status"] == "ok"].set_index("method")
    assert ok.loc["projunn_t", "k"] == 4 and ok.loc["projunn_t", "workload"] == "update"
    assert ok.loc["svd", "metric"] == "time" and ok.loc["svd", "value"] == pytest.approx(5e-3)
    assert ok.loc["svd", "samples"].count(";") == 2
    assert ok.loc["svd", "ci_low"] <= 5e-3 <= ok.loc["svd", "ci_high"]
    assert set(df.loc[df["device"] == "cuda", "status"]) == {"skipped"}


def test_pytest_benchmark_json(tmp_path):
    case = {
        "workload": "update",
        "method": "projunn_d",
        "n": 32,
        "k": 2,
        "dtype": "float32",
        "device": "cpu",
        "options": "",
        "gpu_name": "",
    }
    data = {
        "machine_info": {"node": "box", "cpu": {"brand_raw": "Test CPU", "count": 2}},
        "commit_info": {"id": "feedbeef00", "dirty": True},
        "datetime": "2026-11-27T00:00:00",
        "benchmarks": [
            {
                "name": "t",
                "stats": {"median": 2e-4, "iqr": 1e-5, "rounds": 7, "data": [2e-4] * 7},
                "extra_info": case,
            },
            {
                "name": "a",
                "stats": {"median": 0.1},
                "extra_info": {
                    **case,
                    "workload": "accuracy",
                    "dist_to_exact": 0.25,
                    "unitarity_after_1_step": 3e-7,
                },
            },
        ],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    source, df = load_one(path)
    assert source.commit == "feedbeef+dirty"
    got = dict(zip(df["metric"], df["value"], strict=True))
    assert got == {"time": 2e-4, "dist_to_exact": 0.25, "unitarity_after_1_step": 3e-7}


# --------------------------------------------------------------------------- analysis


def test_exponents_speedups_and_crossovers_have_the_known_values(runs):
    frame = load(list(runs)).frame
    times = an.timings(frame)
    exps = an.exponents(times, min_n=128).set_index(["platform", "label"])
    for platform in ("CPU: Test CPU, 2 cores", "GPU: Test GPU 80GB"):
        for (method, k), (_, p) in MODELS.items():
            label = method if k is None else f"{method}-k{k}"
            row = exps.loc[(platform, label)]
            assert abs(row["exponent"] - p) < 0.03 and 0 < row["se"] < 0.03
            assert row["sizes"] == 4 and row["expected"] == p
    cross = an.crossovers(an.speedups(times)).set_index(["platform", "projunn", "baseline"])
    assert cross.loc[("GPU: Test GPU 80GB", "projunn_t-k1", "svd"), "crossover"] == 128
    assert cross.loc[("CPU: Test CPU, 2 cores", "projunn_t-k1", "expm"), "crossover"] == 256
    best = an.speedups(times, best_k=True)
    at = best[(best["n"] == 1024) & (best["variant"] == "projunn_t") & (best["baseline"] == "svd")]
    assert set(at["k"]) == {1}
    assert at["speedup"].iloc[0] == pytest.approx(10.24, rel=0.03)


def test_crossover_needs_projunn_faster_at_every_larger_n():
    import pandas as pd

    speed = pd.DataFrame(
        {
            "platform": "p",
            "workload": "update",
            "dtype": "float32",
            "projunn": "projunn_t-k1",
            "baseline": "expm",
            "n": [64, 128, 256, 512],
            "speedup": [2.0, 0.9, 1.5, 3.0],
        }
    )
    (row,) = an.crossovers(speed).to_dict("records")
    assert row["crossover"] == 256 and not row["faster_everywhere"]
    never = an.crossovers(speed.assign(speedup=[2.0, 2.0, 2.0, 0.5]))
    assert math.isnan(never["crossover"].iloc[0])


def test_fit_error_comes_from_the_spread_with_two_sizes():
    slope, se = an.fit_loglog([256, 1024], [1.0, 16.0], sigma_log=[0.1, 0.1])
    assert slope == pytest.approx(2.0)
    assert se == pytest.approx(math.sqrt(2) * 0.1 / math.log(4))
    assert math.isnan(an.fit_loglog([256, 1024], [1.0, 16.0])[1])


def test_run_summary_shows_every_size_and_why_methods_are_absent(runs):
    import pandas as pd

    rows = pd.read_csv(runs[0] / "results.csv", keep_default_na=False).to_dict("records")
    text = run_summary([Row.from_record(r) for r in rows])
    assert "N=64" in text and "N=1024" in text
    assert "unconstrained" in text and "not selected" in text  # absent, named with why
    assert "skipped: eunn: has no functional update (1 cases in update)" in text


def test_run_folds_missing_packages_and_ends_with_its_summary(tmp_path, capsys, monkeypatch):
    """Without the peers extra a run printed one long line per method, workload and skip
    rule (20 on the tiny grid) below its time tables; now one line per missing package
    comes first and the tables, the counts and the paths end the output."""
    import sys

    for library in ("geoopt", "geotorch"):
        monkeypatch.setitem(sys.modules, library, None)  # an import of it fails
    argv = ["run", "--grid", "tiny", "--workloads", "update", "train_step", "--methods", "svd"]
    argv += ["geoopt_stiefel", "geoopt_canonical", "geotorch_expm", "--dtypes", "float32"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress", "--no-report"]) == 0
    lines = capsys.readouterr().out.splitlines()
    geoopt = [i for i, line in enumerate(lines) if "geoopt is not installed" in line]
    geotorch = [i for i, line in enumerate(lines) if "geotorch is not installed" in line]
    assert len(geoopt) == len(geotorch) == 1
    assert lines[geoopt[0]].startswith('skipped, geoopt is not installed: pip install "projunn')
    assert "geoopt_canonical" in lines[geoopt[0]] + lines[geoopt[0] + 1]
    first_table = next(i for i, line in enumerate(lines) if "median time per call" in line)
    assert max(geoopt + geotorch) < first_table
    assert not [line for line in lines[first_table:] if "skipped" in line and "cases:" not in line]
    assert lines[-2].startswith("results: ") and lines[-1].startswith("machine: ")


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cpu, gpu = runs
    extra = [
        _row(
            workload="copy",
            method="projunn_t",
            n=16,
            k=1,
            dtype="float32",
            device="cpu",
            metric=m,
            value=v,
            unit="1",
            step=s,
        )
        for s in range(0, 60, 10)
        for m, v in (
            ("train_loss", 1.0 / (1 + s)),
            ("test_loss", 1.2 / (1 + s)),
            ("wall_time", 0.5 * s),
        )
    ] + [
        _row(
            workload="profile_update",
            method="svd",
            n=64,
            dtype="float32",
            device="cpu",
            metric="self_cpu_time",
            value=1.0,
            unit="s",
        ),
        # a task's once-logged row, and a profile figure of a known workload
        _row(
            workload="copy",
            method="baseline",
            n=16,
            dtype="float32",
            device="cpu",
            metric="baseline_loss",
            value=0.3,
            unit="nats",
        ),
        _row(
            workload="update",
            method="svd",
            n=64,
            dtype="float32",
            device="cpu",
            metric="op_calls:aten::mm",
            value=3.0,
            unit="1",
        ),
    ]
    extra += [  # a conv workload: its crossovers get a table of their own
        {**_timed("conv_update", method, n, k, c * n**2), "options": "height=8;width=8"}
        for method, k, c in (("projunn_t", 1, 1e-7), ("cayley", None, 1e-8))
        for n in (16, 64, 256)
    ]
    task = write_run(root / "task", extra)
    out = root / "out"
    argv = ["report", str(cpu), str(gpu), str(task), "--out", str(out), "--note", "busy box"]
    assert main(argv) == 0
    return out


def test_report_files_exist_and_figures_are_png(report):
    names = {p.name for p in report.iterdir()}
    assert {"report.md", "report.html", "data.csv"} <= names
    figs = sorted(report.glob("*.png"))
    assert {
        "fig1_time_update.png",
        "fig2_exponents.png",
        "fig3_speedup_update.png",
        "fig4_memory_update.png",
        "fig5_unitarity.png",
        "fig5_dist_to_exact.png",
        "fig6_learning_copy_task.png",
    } <= {p.name for p in figs}
    for p in figs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report / "report.md").read_text()
    for p in figs:
        assert f"({p.name})" in md


def test_report_markdown_has_the_tables_and_notes(report):
    import re

    md = (report / "report.md").read_text()
    svd = r"\| CPU: Test CPU, 2 cores \| update \| float32 \| svd \| (2\.9\d|3\.0\d) ± 0\.0"
    assert re.search(svd + r"\d* \| 256–1024 \(3\) \| 3 \|", md)
    assert "GPU: Test GPU 80GB" in md
    assert "| 128 |" in md or "| 128 " in md  # a crossover at N=128
    assert "`profile_update` (1 rows): not known to the report" in md
    assert "`copy` (" not in md  # a task: drawn as learning curves, its baseline tabled
    assert "| baseline_loss |" in md or "baseline_loss |" in md
    assert "metrics no figure shows" in md and "`op_calls` (1)" in md
    assert "eunn has no functional update" in md
    assert "testbox" in md and "0123456789ab"[:8] in md  # the machines
    header = md.split("\n\n")[1]  # how it was made, as plain text: the note follows it
    assert "**Note:** busy box" in md and "(and the note below)" in header
    assert "--note" not in header and "`" not in header


def test_crossovers_of_dense_and_conv_workloads_are_separate_tables(report):
    md = (report / "report.md").read_text()
    section = md[md.index("### Crossover N") : md.index("## 4. Memory")]
    headers = [line for line in section.splitlines() if line.startswith("| platform |")]
    assert len(headers) == 2
    dense, conv = headers
    assert "projunn_t-k1 |" in dense and "[height=8;width=8]" not in dense
    assert "projunn_t-k1 [height=8;width=8]" in conv and "projunn_t-k4" not in conv
    assert "| conv_update | float32 | cayley [height=8;width=8] | none ≤ 256 |" in section


def test_report_html_is_self_contained(report):
    import re

    page = (report / "report.html").read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(list(report.glob("*.png")))


def test_report_replaces_an_earlier_report_and_refuses_other_folders(runs, tmp_path, capsys):
    cpu, _ = runs
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").write_text("old")
    (out / "stale.png").write_bytes(b"x")
    assert main(["report", str(cpu), "--out", str(out)]) == 0
    assert not (out / "stale.png").exists() and (out / "report.md").read_text() != "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary folders left
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["report", str(cpu), "--out", str(other)]) == 2
    assert "not a report folder" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep"
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "missing: does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- compare


def test_compare_a_run_with_itself_reports_nothing(runs, capsys, tmp_path):
    out = tmp_path / "cmp.md"
    assert main(["compare", str(runs[0]), str(runs[0]), "--out", str(out)]) == 0
    text = out.read_text()
    assert "0 regressed, 0 improved, 25 unchanged" in text
    assert text == capsys.readouterr().out


def test_compare_says_when_multithreaded_cpu_runs_exceed_what_the_factor_covers(tmp_path, capsys):
    rows = scaling_rows("cpu")
    write_run(tmp_path / "one", rows)
    two = write_run(tmp_path / "two", rows, threads=2)
    assert main(["compare", str(tmp_path / "one"), str(two)]) == 0
    out = capsys.readouterr().out
    assert f"{two}: timed with 2 CPU threads" in out and "--threads 1" in out
    assert f"{tmp_path / 'one'}: timed" not in out  # one thread: no note
    gpu = [r for r in scaling_rows("cuda", seed=1) if r["workload"] != "accuracy"]
    g1, g2 = write_run(tmp_path / "g1", gpu), write_run(tmp_path / "g2", gpu, threads=4)
    assert main(["compare", str(g1), str(g2)]) == 0
    assert "CPU threads" not in capsys.readouterr().out  # CUDA timings: threads do not matter


def test_compare_threads_note_reads_the_runs_own_threads(tmp_path, capsys):
    """A ``--threads 1`` run on a machine whose torch default is 2 threads timed with one
    (machine.json: run.settings.threads) and gets no note; a run that kept the default
    (threads None) is judged by torch_threads."""
    import json

    rows = scaling_rows("cpu")
    one = write_run(tmp_path / "one", rows, threads=2)
    default = write_run(tmp_path / "default", rows, threads=2)
    for folder, threads in ((one, 1), (default, None)):
        meta = json.loads((folder / "machine.json").read_text())
        meta["run"]["settings"] = {"threads": threads}
        output.write_json(folder / "machine.json", meta)
    assert main(["compare", str(one), str(default)]) == 0
    out = capsys.readouterr().out
    assert f"{one}: timed" not in out
    assert f"{default}: timed with 2 CPU threads" in out


def test_compare_tripled_case_is_exactly_the_one_regression(runs, tmp_path, capsys):
    import pandas as pd

    cpu, _ = runs
    rows = pd.read_csv(cpu / "results.csv", keep_default_na=False).to_dict("records")
    target = next(
        r for r in rows if r["method"] == "projunn_d" and r["n"] == 256 and r["metric"] == "time"
    )
    target["value"] = 3 * float(target["value"])
    target["samples"] = ";".join(repr(3 * float(s)) for s in target["samples"].split(";"))
    new = write_run(tmp_path / "new", rows)
    assert main(["compare", str(cpu), str(new)]) == 1
    out = capsys.readouterr().out
    assert "1 regressed, 0 improved, 24 unchanged" in out
    assert "| update projunn_d-k4 N=256 float32 cpu | " in out
    assert out.count("| update ") == 1
    assert main(["compare", str(new), str(cpu)]) == 0  # the other way: one improvement
    assert "0 regressed, 1 improved" in capsys.readouterr().out


def test_compare_unusable_inputs_exit_2_naming_the_file(runs, tmp_path, capsys):
    cpu, _ = runs
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text("workload,method\nupdate,svd\n")
    killed = write_run(tmp_path / "killed", scaling_rows(), status="running")
    other = write_run(tmp_path / "other", [_timed("update", "svd", 8, None, 1e-4)])
    for bad, says in (
        (tmp_path / "nope", "does not exist"),
        (corrupt, "missing columns"),
        (killed, '"running"'),
        (other, "no timed case in common"),
    ):
        assert main(["compare", str(cpu), str(bad)]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and says in err


def test_noise_decides_with_few_samples_and_with_spread():
    base = {"value": 1.0, "samples": "0.9;1.0;1.1"}
    apart = {"value": 3.0, "samples": "2.9;3.0;3.1"}
    close = {"value": 1.2, "samples": "0.8;1.2;1.6"}
    assert significant(base, apart) == (True, "intervals apart")
    assert significant(base, close) == (False, "intervals overlap")
    assert significant({"value": 1.0}, {"value": 2.0})[1].startswith("ratio only")
    asv_like = {"value": 1.0, "ci_low": 0.5, "ci_high": 1.5}
    assert not significant(asv_like, {"value": 1.4, "ci_low": 1.2, "ci_high": 1.6})[0]


def test_compare_noisy_ratio_is_unchanged():
    import pandas as pd

    spread = np.linspace(0.5, 1.5, 10)  # +-50 % noise: a 1.3x shift is not significant
    rows = [_timed("update", "svd", 64, None, 1.0) for _ in range(2)]
    for r, scale in zip(rows, (1.0, 1.3), strict=True):
        r["samples"] = ";".join(repr(float(scale * x)) for x in spread)
        r["value"] = float(scale * np.median(spread))
    frames = [pd.DataFrame([r]).assign(platform="p", step=pd.NA) for r in rows]
    comp = compare_frames(frames[0], frames[1], factor=1.1)
    (change,) = comp.changes
    assert change.kind == "unchanged" and change.ratio == pytest.approx(1.3)
    assert change.test == "intervals overlap"  # the 99 % intervals of the two medians
    assert "within the noise (1)" in comp.markdown()


def test_compare_judges_runs_not_samples():
    """A shift between two runs whose samples are tight: a rank test between the samples
    calls a 1.19x A/A shift significant; the detector leaves it to the factor."""
    import pandas as pd

    tight = np.linspace(0.995, 1.005, 30)
    rows = [_timed("update", "cayley", 64, None, 1.0) for _ in range(2)]
    for r, scale in zip(rows, (1.0, 1.19), strict=True):
        r["samples"] = ";".join(repr(float(scale * x)) for x in tight)
        r["value"] = float(scale * np.median(tight))
    frames = [pd.DataFrame([r]).assign(platform="p", step=pd.NA) for r in rows]
    (change,) = compare_frames(frames[0], frames[1]).changes  # the default factor
    assert change.significant and change.kind == "unchanged"
    (change,) = compare_frames(frames[0], frames[1], factor=1.1).changes
    assert change.kind == "regressed"


def test_compare_never_judges_a_contended_case():
    import pandas as pd

    rows = [_timed("update", "svd", 64, None, s) for s in (1.0, 3.0)]
    rows[1]["contended"] = True
    frames = [pd.DataFrame([r]).assign(platform="p", step=pd.NA) for r in rows]
    comp = compare_frames(frames[0], frames[1])
    (change,) = comp.changes
    assert change.kind == "contended" and comp.regressed == [] and comp.contended == [change]
    assert "1 contended" in comp.counts() and "Contended: not judged (1)" in comp.markdown()


def test_median_interval_covers_the_median_at_its_level():
    from suite.report.compare import median_interval

    rng = np.random.default_rng()
    misses = 0
    for _ in range(400):
        x = rng.exponential(size=25)
        lo, hi = median_interval(list(x))
        misses += not lo <= np.log(2) <= hi  # the exponential's true median
    assert misses <= 12  # 99 %: about 4 misses expected in 400
    assert median_interval([1.0]) is None and median_interval([2.0, 1.0]) == (1.0, 2.0)


def test_compare_asv_commits(tmp_path, capsys):
    fast = [1e-3 * (1 + 0.01 * i) for i in range(8)]
    write_asv_results(tmp_path, "aaaa111122223333", {"svd": fast, "expm": fast})
    write_asv_results(tmp_path, "bbbb111122223333", {"svd": [3 * x for x in fast], "expm": fast})
    assert main(["compare", "--asv", str(tmp_path), "aaaa1111", "bbbb1111"]) == 1
    out = capsys.readouterr().out
    assert "1 regressed" in out and "update svd N=64 float32 cpu" in out
    assert main(["compare", "--asv", str(tmp_path), "aaaa1111", "cccc1111"]) == 2
    assert "no asv results of commit cccc1111" in capsys.readouterr().err


# --------------------------------------------------------------------------- run


TINY = [
    "run",
    "--grid",
    "tiny",
    "--no-progress",
    "--workloads",
    "update",
    "--methods",
    "projunn_t",
    "svd",
    "--sizes",
    "16",
    "32",
    "--ranks",
    "2",
    "--dtypes",
    "float32",
]


def test_run_writes_its_report_and_compares_with_itself(tmp_path, capsys):
    assert main(TINY + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.iterdir()
    html = run / "report" / "report.html"
    assert f"report: {html}" in out and html.is_file()
    assert (run / "report" / "fig1_time_update.png").read_bytes()[:4] == b"\x89PNG"
    assert "N=16" in out and "N=32" in out  # the summary covers every size
    assert main(["compare", str(run), str(run)]) == 0


def test_run_without_the_report_extra_still_succeeds(tmp_path, capsys, monkeypatch):
    import suite.report

    monkeypatch.setattr(suite.report, "REPORT_PACKAGES", ("seaborn", "no_such_package_xyz"))
    assert main(TINY + ["--sizes", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "report: not written (no_such_package_xyz missing: pip install" in out
    assert '".[report]"' in out
    (run,) = tmp_path.iterdir()
    assert not (run / "report").exists()


def test_report_modules_import_without_pandas_or_matplotlib():
    """asv imports every module under suite/, and run works without the report extra."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, suite.report as r\n"
        "for m in pkgutil.walk_packages(r.__path__, 'suite.report.'):\n"
        "    importlib.import_module(m.name)\n"
        "import suite.commands.report, suite.commands.compare, suite.commands.run\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'seaborn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _lab(rgb):
    """CIELAB of an sRGB colour (D65), to judge how far apart two colours look."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    m = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
    xyz = [sum(a * b for a, b in zip(row, lin, strict=True)) for row in m]
    xyz = [v / w for v, w in zip(xyz, (0.95047, 1.0, 1.08883), strict=True)]
    f = [v ** (1 / 3) if v > 216 / 24389 else (24389 / 27 * v + 16) / 116 for v in xyz]
    return (116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2]))


def test_every_method_has_its_own_colour_and_marker_in_every_figure():
    """The full registry, the LSTM reference and a plug-in the registry does not know:
    no two share a colour (and none is hard to tell from another: CIE76 difference >= 20)
    or a marker; a figure of a few methods draws them as the full set does."""
    from matplotlib.colors import to_rgb

    from suite.measure.methods import METHODS
    from suite.report.figures import _palette, method_styles

    names = [*METHODS, "lstm", "my_qr_plugin"]
    everything = method_styles(names)
    assert list(everything) == names  # registry order, then the unknown names
    colours = [to_rgb(s.colour) for s in everything.values()]
    assert len(set(colours)) == len(names)
    assert len({(s.marker, s.filled) for s in everything.values()}) == len(names)
    labs = [_lab(c) for c in colours]
    closest = min(math.dist(a, b) for i, a in enumerate(labs) for b in labs[i + 1 :])
    assert closest >= 20, closest
    assert method_styles(["unconstrained", "svd", "lstm", "my_qr_plugin"]) == {
        m: everything[m] for m in ("svd", "unconstrained", "lstm", "my_qr_plugin")
    }
    assert _palette(["svd"]) == {"svd": to_rgb(everything["svd"].colour)}
    many = method_styles([f"plugin_{i:02d}" for i in range(40)])  # past the palette
    assert len({(s.colour, s.marker, s.filled) for s in many.values()}) == 40


def _times_rows(platforms: dict[str, tuple[str, ...]], contended_below=0):
    """Update timings of svd and projunn_t-k1 at N = 64, 256, 1024 per device and dtypes;
    the timings of N < ``contended_below`` with a CPU share of 0.5, flagged contended."""
    rows = []
    for device, dtypes in platforms.items():
        for dtype in dtypes:
            for method, k in (("svd", None), ("projunn_t", 1)):
                for n in (64, 256, 1024):
                    row = {**_timed("update", method, n, k, 1e-9 * n**3), "dtype": dtype}
                    row["device"] = device
                    row["cpu_share"] = 0.5 if n < contended_below else 0.99
                    row["contended"] = n < contended_below
                    rows.append(row)
    return rows


def test_contended_timings_are_one_line_and_a_folded_list(tmp_path):
    from suite.report.build import build_report

    run = write_run(tmp_path / "busy", _times_rows({"cpu": ("float32",)}, contended_below=512))
    out = build_report([run], tmp_path / "out")
    md = out.markdown.read_text()
    section = md[md.index("## 1. Time vs N") : md.index("### Workload update")]
    unfolded = section[: section.index("<details>")] + section[section.index("</details>") :]
    lines = [line for line in unfolded.splitlines() if line.strip()]
    assert len(lines) == 4, lines  # heading, intro, the one line, the folded list's end
    assert "**4 of 6 timings (marked †) were contended** (CPU: Test CPU, 2 cores: 4" in section
    assert "lowest cpu_share 0.5" in section
    folded = md[md.index("<details>") : md.index("</details>")]
    assert folded.count("| update |") == 4 and "<summary>The 4 contended timings" in folded
    page = out.html.read_text()
    assert page.count("<details><summary>The 4 contended timings</summary>") == 1
    assert page.index("<details>") < page.index("<img")  # the list, folded, before figure 1


def test_panels_without_data_are_left_out_and_named(tmp_path):
    from suite.report.build import build_report

    rows = _times_rows({"cpu": ("float32", "complex64"), "cuda": ("float32",)})
    cpu = write_run(tmp_path / "cpu", [r for r in rows if r["device"] == "cpu"])
    gpu = write_run(
        tmp_path / "gpu", [r for r in rows if r["device"] == "cuda"], gpu="Test GPU 80GB"
    )
    out = build_report([cpu, gpu], tmp_path / "out")
    md = out.markdown.read_text()
    after = md[md.index("(fig1_time_update.png)") :]
    assert after.split("\n\n")[2] == "Not measured (no panel): complex64 on GPU: Test GPU 80GB."
    assert md.count("Not measured (no panel)") >= 1

    from suite.report import analysis as an
    from suite.report import figures as fg
    from suite.report.load import load

    times = an.timings(load([cpu, gpu]).frame)
    drawn = fg.plot_times(times, "update", tmp_path / "t.png")
    assert drawn.left_out == ("complex64 on GPU: Test GPU 80GB",)
    everywhere = fg.plot_times(times[times["dtype"] == "float32"], "update", tmp_path / "f.png")
    assert everywhere.left_out == () and everywhere.path.read_bytes()[:4] == b"\x89PNG"
    assert fg.plot_times(times.iloc[:0], "update", tmp_path / "none.png") is None


def test_header_is_plain_text_and_accuracy_tables_fit(runs, tmp_path):
    cpu, _ = runs
    out = tmp_path / "out"
    note = "2 threads, torch's default"
    assert main(["report", str(cpu), "--out", str(out), "--note", note]) == 0
    md = (out / "report.md").read_text()
    header = md.split("\n\n")[1]
    assert header.startswith("Generated ") and f"report {cpu} --out {out} (and the note" in header
    assert "'\"'\"'" not in md and "`" not in header and f"**Note:** {note}" in md
    accuracy = md[md.index("## 5. Accuracy") :]
    assert "*accuracy: unitarity error*" in accuracy
    assert "| platform | dtype | method | N | init | after 5 steps |" in accuracy
    assert "unitarity_after" not in accuracy.split("dist_to_exact")[0]
    page = (out / "report.html").read_text()
    assert "<th>after 5 steps</th>" in page and "projunn_<wbr>t-k1" in page
