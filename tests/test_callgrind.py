"""Instruction counts under callgrind: the probe, its rows, the parser, the count verdict.

Two callgrind processes run here (N = 16, two cases, in parallel: about a minute on 2
busy cores); they need valgrind (on these machines; elsewhere: apt-get install valgrind)
and are skipped without it. The rest needs no valgrind.
"""

from __future__ import annotations

import csv
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from suite.cli import main as cli
from suite.gate import counts as gate_counts
from suite.gate import run as gate_run
from suite.measure import callgrind
from suite.measure.cases import GRIDS, Case
from suite.measure.runner import count_rows
from suite.report.compare import COUNT_THRESHOLD, CYCLES_SCALE, Comparison, compare_counts

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason=f"valgrind is missing: {callgrind.INSTALL}"
)

CASES = [Case("update", "projunn_t", 16, 1), Case("train_step", "projunn_t", 16, 1)]


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """``projunn-bench run --instructions`` on CASES (in this thread: it handles signals)
    and, beside it in another thread, a second callgrind process counting the same cases:
    (the run's rows, the second :class:`CountRun`)."""
    if shutil.which("valgrind") is None:
        pytest.skip(f"valgrind is missing: {callgrind.INSTALL}")
    tmp = tmp_path_factory.mktemp("counts")
    found = {}

    def second():  # twice, its files in folders of very different path lengths
        long = tmp / ("a-folder-name-much-longer-than-the-other-one" * 3) / "cg"
        for key, folder in (("run", tmp / "cg"), ("again", long)):
            found[key] = callgrind.count_cases(CASES, GRIDS["tiny"].settings, folder=folder)

    thread = threading.Thread(target=second)
    thread.start()
    argv = ["run", "--grid", "tiny", "--workloads", "update", "train_step", "--sizes", "16"]
    argv += ["--methods", "projunn_t", "--ranks", "1"]
    argv += ["--dtypes", "float32", "--instructions", "--out", str(tmp / "runs")]
    status = cli([*argv, "--no-report", "--no-progress"])
    thread.join()
    table = next((tmp / "runs").glob("*/results.csv"))
    with open(table) as f:
        rows = list(csv.DictReader(f))
    return status, rows, found["run"], found["again"]


@needs_valgrind
def test_run_instructions_adds_both_counts_to_every_timed_cpu_case(counted):
    status, rows, *_ = counted
    assert status == 0
    timed = {(r["workload"], r["method"]) for r in rows if r["metric"] == "time"}
    for metric, unit in callgrind.METRICS.items():
        got = {(r["workload"], r["method"]): r for r in rows if r["metric"] == metric}
        assert set(got) == timed  # every timed case, nothing else
        assert all(r["status"] == "ok" and r["unit"] == unit for r in got.values())
        floor = 10 if metric == "operations" else 1e4
        assert all(float(r["value"]) > floor for r in got.values())
    ops = [float(r["value"]) for r in rows if r["metric"] == "operations"]
    assert all(v == int(v) for v in ops)  # whole operators, one step
    one = {r["metric"]: float(r["value"]) for r in rows if r["method"] == "projunn_t"}
    assert one["estimated_cycles"] > one["instructions"]  # every access costs >= 1


@needs_valgrind
def test_two_processes_count_the_same_case_within_the_calibrated_spread(counted):
    _, rows, second, again = counted
    first = {
        (r["workload"], r["method"], r["metric"]): float(r["value"])
        for r in rows
        if r["metric"] in callgrind.METRICS
    }
    assert len(first) == len(callgrind.METRICS) * len(CASES)
    for case in CASES:
        for m in second.measurements(case.id):
            a = first[(case.workload, case.method, m.metric)]
            limit = COUNT_THRESHOLD * (CYCLES_SCALE if m.metric == "estimated_cycles" else 1)
            assert abs(m.value / a - 1) <= limit / 2, (case.id, m.metric, a, m.value)
            # one spec counted from folders of different path lengths: every path the
            # child sees has one length, so the memory layout and the counts are the same
            assert m.value == {x.metric: x.value for x in again.measurements(case.id)}[m.metric]
    # the counting was switched on around the steps only: import and setup were not counted
    assert second.timing["import"] > 0 and second.timing["measured"] > 0
    assert set(second.dumps) == {c.id for c in CASES}
    train = second.dumps[CASES[1].id]
    assert any("backward" in f.lower() or "autograd" in f for f in train.inclusive)
    assert train.totals["Ir"] < 50e6  # 3 steps at N = 16, not torch's import (billions)


@needs_valgrind
def test_the_attribution_names_the_functions_that_changed(counted):
    _, _, run, _ = counted
    a, b = run.dumps[CASES[0].id], run.dumps[CASES[1].id]  # the update vs the train step
    rows = gate_counts.attribution(a, b, top=5)
    assert len(rows) == 5 and all(before != after for _, before, after in rows)
    assert not any(gate_counts.GLUE.match(f) for f, _, _ in rows)
    changes = [abs(after - before) for _, before, after in rows]
    assert changes == sorted(changes, reverse=True)


def test_without_valgrind_the_rows_are_skipped_with_the_install_line(monkeypatch):
    monkeypatch.setattr(callgrind, "valgrind", lambda: None)
    rows = count_rows(
        [Case("update", "svd", 8), Case("accuracy", "svd", 8)], GRIDS["tiny"].settings
    )
    assert [(r.method, r.metric, r.status) for r in rows] == [("svd", "instructions", "skipped")]
    assert "apt-get install valgrind" in rows[0].reason
    with pytest.raises(RuntimeError, match="valgrind is not installed"):
        callgrind.count_cases([Case("update", "svd", 8)], GRIDS["tiny"].settings)


def test_gpu_and_evaluated_cases_are_never_counted():
    assert callgrind.countable(Case("update", "svd", 8))
    assert not callgrind.countable(Case("update", "svd", 8, device="cuda"))
    assert not callgrind.countable(Case("accuracy", "svd", 8))
    assert count_rows([Case("update", "svd", 8, device="cuda")], GRIDS["tiny"].settings) == []
    with pytest.raises(ValueError, match="steps must be >= 1"):
        if shutil.which("valgrind") is None:
            raise ValueError("steps must be >= 1")  # the check comes after valgrind's
        callgrind.count_cases([Case("update", "svd", 8)], GRIDS["tiny"].settings, steps=0)


def test_parser_reads_compressed_names_calls_and_relative_positions(tmp_path):
    f = tmp_path / "callgrind.out.3"
    f.write_text(
        "# callgrind format\nversion: 1\npositions: line\n"
        "desc: Trigger: Client Request: update-svd-n8-float32-cpu\n"
        "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n"
        "fl=(1) a.c\nfn=(1) step\n10 100 20 5 1 2 0 0 1 0\n+2 50\n"
        "cfn=(2) matmul\ncalls=3 40\n*  900 300 50 0 10 5 0 2 1\n"
        "fn=(2)\n40 900 300 50 0 10 5 0 2 1\n"
        "fn=(3) helper\n-5 7\n"
        "summary: 18446744073709551000 1 1 1 1 1 1 1 1\n"  # callgrind's wrapped summary
    )
    d = callgrind.parse(f)
    assert d.name == "update-svd-n8-float32-cpu"
    assert d.totals["Ir"] == 100 + 50 + 900 + 7  # the cost lines, not the summary
    assert d.inclusive == {"step": 1050, "matmul": 900, "helper": 7}
    assert callgrind.estimated_cycles(d.totals) >= d.totals["Ir"]
    unnamed = "desc: Trigger: Client Request\nevents: Ir\nfn=(1) x\n1 5\n"  # torch's
    (tmp_path / "callgrind.out.4").write_text(unnamed)
    found = callgrind._read_dumps(tmp_path, ["update-svd-n8-float32-cpu", "b"])  # in order
    assert set(found) == {"update-svd-n8-float32-cpu", "b"}


def _frame(values: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, v in values.items():
        for metric, scale in (("instructions", 1.0), ("estimated_cycles", 1.5)):
            rows.append(
                dict(workload="update", method=method, k=None, n=64, dtype="float32",
                     device="cpu", options="", status="ok", step=None, metric=metric,
                     value=v * scale)
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_counts_are_judged_at_the_threshold_both_ways():
    base = _frame({"svd": 1e6, "expm": 1e6, "cayley": 1e6})
    new = _frame({"svd": 1e6 * (1 + 3 * COUNT_THRESHOLD), "expm": 1e6 * 1.001, "cayley": 5e5})
    new.loc[(new["method"] == "expm"), "value"] *= 1 + 1.5 * COUNT_THRESHOLD
    kinds = {(c.case.split()[1], c.test): c.kind for c in compare_counts(base, new)}
    assert kinds[("svd", "instructions")] == kinds[("svd", "estimated_cycles")] == "regressed"
    # estimated cycles (the cache model's spread) are judged at twice the threshold
    assert kinds[("expm", "instructions")] == "regressed"
    assert kinds[("expm", "estimated_cycles")] == "unchanged"
    assert kinds[("cayley", "instructions")] == "improved"
    with pytest.raises(ValueError, match="threshold must be > 0"):
        compare_counts(base, new, threshold=0)
    comp = Comparison([], 1.6, counted=compare_counts(base, new))
    text = comp.markdown()
    t = 100 * COUNT_THRESHOLD
    assert f"Counts beyond {t:g} % (5)" in text and f"+{3 * t:.2f} %" in text


def test_compare_command_fails_on_a_count_regression(tmp_path, capsys):
    for name, v in (("base", 1e6), ("new", 1.05e6)):
        frame = _frame({"svd": v}).assign(unit="instructions", iqr=None, repeat=None, reason="")
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    status = cli(["compare", str(tmp_path / "base.csv"), str(tmp_path / "new.csv")])
    out = capsys.readouterr().out
    assert "+5.00 %" in out
    assert status == 1
    assert cli(["compare", *(str(tmp_path / f"{n}.csv") for n in ("base", "new")),
                "--threshold", "6"]) == 0  # fmt: skip
    with pytest.raises(SystemExit):
        cli(["compare", "a", "b", "--threshold", "0"])


def test_the_gate_refuses_the_same_commit_twice(tmp_path, capsys):
    out = tmp_path / "g"
    assert cli(["gate", "HEAD", "HEAD", "--no-times", "--out", str(out)]) == 2
    said = capsys.readouterr().out
    assert "are the same commit" in said and "nothing to compare" in said
    assert "same commit" in (out / "compare.md").read_text()
    with pytest.raises(SystemExit):
        cli(["gate", "HEAD", "--threshold", "x"])


def test_the_gate_comment_says_which_measure_flagged_what():
    from suite.report.compare import CaseChange

    class Verdict:  # the parts of a CountVerdict the summary reads
        threshold, failed = 0.01, []
        regressed = [CaseChange("update svd N=64 float32 cpu", 1e6, 1.1e6, 1.1, "instructions",
                                True, "regressed")]  # fmt: skip

        def markdown(self):
            return "#### Instruction counts\n| `at::native::mm` | 1 | 2 | +1 |\n"

    slower = CaseChange("update expm N=64 float32 cpu", 1.0, 2.0, 2.0, "intervals apart", True,
                        "regressed")  # fmt: skip
    text = gate_run.summary("a", "b", Comparison([slower], 1.6), 60, counts=Verdict())
    assert "PERFORMANCE DECREASED" in text and "instructions +1 % / estimated cycles +2 %" in text
    assert "`update svd N=64 float32 cpu`: instructions +10.00 %" in text
    assert "`update expm N=64 float32 cpu`: time 2.00x" in text
    assert "`at::native::mm`" in text and "#### Times" in text
    quiet = gate_run.summary("a", "b", None, 60, counts=type("V", (Verdict,), {"regressed": []})(),
                             times_note="--no-times")  # fmt: skip
    assert "No benchmark is slower" in quiet and "Not measured: --no-times" in quiet


def test_the_counted_gate_cases_are_cpu_float32_and_projunn_at_1024():
    cases = gate_counts.cases()
    assert all(c.device == "cpu" and c.dtype == "float32" for c in cases)
    big = {(c.workload, c.method) for c in cases if c.n > 256}
    assert big == {("update", "projunn_t"), ("update", "projunn_d")}
    assert {"update", "train_step", "conv_train_step"} == {c.workload for c in cases}
    assert not any(c.method in ("geoopt", "geotorch") for c in cases)


def test_export_takes_the_measured_code_of_a_commit(tmp_path):
    root = Path(__file__).resolve().parents[1]
    code = gate_counts.export(root, "HEAD", tmp_path / "code")
    assert (code / "projunn_core" / "step.py").is_file()
    assert not (code / "suite").exists()  # the benchmark code stays the working tree's


def test_the_asv_count_benchmarks_read_one_cache_and_skip_without_valgrind():
    from suite.benchmarks import Counts

    bench = Counts()
    assert bench.params == [[c.id for c in gate_counts.cases()]]
    case = bench.params[0][0]
    cache = {case: {"instructions": 1e6, "estimated_cycles": 2e6, "operations": 40.0}}
    assert bench.track_instructions(cache, case) == 1e6
    assert bench.track_estimated_cycles(cache, case) == 2e6
    assert bench.track_operations(cache, case) == 40.0
    with pytest.raises(NotImplementedError, match="apt-get install valgrind"):
        bench.track_instructions({"missing": callgrind.missing_reason(None)}, case)
    with pytest.raises(NotImplementedError, match="boom"):
        bench.track_instructions({case: {"reason": "RuntimeError: boom"}}, case)


def test_one_more_operator_fails_the_gate_and_is_named(tmp_path):
    """An extra small op: instructions within the threshold, one operator more per step."""
    case = Case("update", "projunn_t", 64, 1)
    ops = {"aten.mm.default": 8, "aten.linalg_qr.default": 2}

    def run(ir, extra):
        dump = callgrind.Dump(case.id, {"Ir": 3 * ir}, {"main": 3 * ir, "at::mm": 3 * ir // 2})
        status = {"status": "ok", "dumped": True, "operations": 10 + len(extra),
                  "ops": {**ops, **extra}}  # fmt: skip
        timing = {"import": 1.0, "setup": 2.0, "measured": 3.0, "total": 6.0}
        return callgrind.CountRun({case.id: dump}, {case.id: status}, timing, 3, tmp_path)

    base, head = run(1_000_000, {}), run(1_002_000, {"aten.sum.default": 1})
    assert [m.metric for m in head.measurements(case.id)] == list(callgrind.METRICS)
    verdict = gate_counts.CountVerdict(base, head, [case], COUNT_THRESHOLD)
    assert [(c.test, c.base, c.new) for c in verdict.regressed] == [("operations", 10, 11)]
    text = gate_run.summary("a", "b", None, 60, counts=verdict, times_note="--no-times")
    assert "PERFORMANCE DECREASED" in text and "operators 10 → 11" in text
    assert "`aten.sum.default` 0 → 1" in text and "one more compute operator" in text
    same = gate_counts.CountVerdict(base, run(1_002_000, {}), [case], COUNT_THRESHOLD)
    assert same.regressed == []  # +0.2 % instructions alone is within the threshold
