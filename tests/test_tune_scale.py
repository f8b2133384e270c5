"""``projunn-bench tune --hidden N [N ...] --time-budget SECONDS`` (issue 24): time to
target against the hidden size. A miss is "not reached", never a time, and infinite in
the performance profile; every output row carries the hidden size; the
``time_to_target_vs_n.png`` figure marks the misses at the budget."""

from __future__ import annotations

import csv
import math

import pytest

optuna = pytest.importorskip("optuna")

from suite.cli import main as cli  # noqa: E402
from suite.report import tune as report  # noqa: E402
from suite.tasks import tune  # noqa: E402


def _usage(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli(["tune", *argv, "--out", str(tmp_path / "out")])
    return e.value.code


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--hidden", "0"], "hidden size 0 is below 2"),
        (["--hidden", "1"], "hidden size 1 is below 2"),
        (["--hidden", "8", "-4"], "hidden size -4 is below 2"),
        (["--hidden", "abc"], "'abc' is not an integer hidden size"),
        (["--hidden", "64.5"], "'64.5' is not an integer hidden size"),
        (["--hidden", "8", "8"], "sizes must be distinct"),
        (["--hidden"], "expected at least one argument"),
        (["--time-budget", "-1"], "-1 is not a positive, finite number of seconds"),
        (["--time-budget", "0"], "0 is not a positive, finite number of seconds"),
        (["--time-budget", "inf"], "inf is not a positive, finite number of seconds"),
        (["--time-budget", "nan"], "nan is not a positive, finite number of seconds"),
        (["--time-budget", "ten"], "'ten' is not a number of seconds"),
    ],
)
def test_bad_hidden_or_time_budget_exits_2_before_anything_runs(argv, fragment, tmp_path, capsys):
    assert _usage(["copy-tiny", "--method", "expm", *argv], tmp_path) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out" / "campaign.journal").exists()


def test_the_campaign_checks_its_sizes_and_budget():
    for bad in [dict(hidden=(0,)), dict(hidden=(8, 8)), dict(hidden=(True,))]:
        with pytest.raises(tune.CampaignError, match="--hidden"):
            tune.Campaign(("copy-tiny",), ("expm",), **bad)
    for budget in (-1.0, 0.0, math.inf, math.nan):
        with pytest.raises(tune.CampaignError, match="--time-budget"):
            tune.Campaign(("copy-tiny",), ("expm",), time_budget=budget)
    with pytest.raises(KeyError, match="integer >= 2"):
        tune.tune_preset("copy-tiny@x")
    with pytest.raises(KeyError, match="integer >= 2"):
        tune.tune_preset("copy-tiny@1")


def test_each_size_is_its_own_study_with_the_budget_in_its_plan(tmp_path):
    c = tune.Campaign(("copy-tiny",), ("expm",), hidden=(8, 12), time_budget=5.0)
    assert c.instances() == ["copy-tiny@8", "copy-tiny@12"]
    assert [c.preset(k).config.hidden for k in c.instances()] == [8, 12]
    assert c.preset("copy-tiny@8").budget == 5.0
    assert c.studies() == [("copy-tiny@8", "expm"), ("copy-tiny@12", "expm")]
    assert c.describe()["hidden"] == [8, 12] and c.describe()["time_budget_s"] == 5.0
    # a family names its own sizes and budget; --hidden and --time-budget override them
    family = tune.Campaign(("pdigits-scale",), ("expm",))
    assert family.instances() == ["pdigits-scale@64", "pdigits-scale@256", "pdigits-scale@512"]
    assert family.preset("pdigits-scale@512").budget == tune.tune_preset("pdigits-scale").budget
    assert tune.Campaign(("pdigits-scale",), ("expm",), hidden=(32,)).instances() == [
        "pdigits-scale@32"
    ]
    assert tune.Campaign(("copy-tiny",), ("expm",)).instances() == ["copy-tiny"]
    storage = tune.open_storage(tmp_path)
    studies, _ = tune.prepare(c, storage)
    assert [s.user_attrs["time_budget"] for s in studies] == [5.0, 5.0]
    other = tune.Campaign(("copy-tiny",), ("expm",), hidden=(8, 12), time_budget=9.0)
    with pytest.raises(tune.CampaignError, match="planned with time_budget"):
        tune.prepare(other, storage)


def test_a_trial_out_of_time_is_not_reached_even_if_it_would_have_been():
    preset = tune.tune_preset("copy-tiny")
    hit = tune.run_trial(preset, "expm", 3e-2, 0)  # reaches the target without a budget
    assert hit.reached and hit.stopped == "target" and hit.charged_s == hit.time_to_target_s
    # any training takes longer than a nanosecond: evaluated and stopped after the first
    # step, not at the first evaluation (log_interval steps later)
    late = tune.run_trial(tune.Campaign(("copy-tiny",), ("expm",), time_budget=1e-9).preset(
        "copy-tiny"), "expm", 3e-2, 0)  # fmt: skip
    assert not late.reached and late.stopped == "time"
    assert late.time_to_target_s == math.inf and late.steps_to_target is None
    assert preset.config.log_interval > 1 and late.steps_run == 1
    assert [point[0] for point in late.curve] == [0, 1]
    assert late.charged_s == 1e-9  # the whole (time) budget, to choose the lr
    assert late.attrs()["time_to_target_s"] is None  # JSON-ready: no Infinity


def _row(preset, hidden, method, seed, reached, seconds, budget=20.0):
    return dict(preset=preset, hidden=hidden, method=method, seed=seed, reached=reached,
                time_to_target_s=seconds if reached else math.inf, time_budget_s=budget,
                train_time_s=seconds, target="test_accuracy >= 92", optimizer="RMSprop",
                lr=1e-3, steps_to_target=10 if reached else None, final_metric=90.0,
                trials_reached=1, trials=2)  # fmt: skip


def test_a_miss_is_infinite_in_the_profile_and_never_shown_as_a_time():
    # seed 1: "slow" misses after spending 2.19 s, its whole budget (issue 24's example)
    rows = [_row("p", 64, "fast", 0, True, 1.0), _row("p", 64, "slow", 0, True, 4.0),
            _row("p", 64, "fast", 1, True, 1.0), _row("p", 64, "slow", 1, False, 2.19)]  # fmt: skip
    curves = report.profile(rows)
    assert curves["fast"] == [(1.0, 1.0)]
    assert curves["slow"] == [(4.0, 0.5)]  # the miss never counts as solved, at any tau
    table = report.summary_table(rows)
    by_method = {r[2]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
    assert by_method["slow"]["median time to target"] == "> 20 s"
    assert by_method["slow"]["seeds reached"] == "1/2"
    assert "2.19" not in " ".join(by_method["slow"])
    assert by_method["fast"]["median time to target"] == "1.00 s"
    assert report.reach_text(math.inf) == "–" and report.reach_text(None, 30.0) == "> 30 s"
    # the same N in another preset, or another N, is another problem
    more = [*rows, _row("p", 256, "fast", 0, False, 9.0), _row("p", 256, "slow", 0, True, 3.0)]
    assert report.profile(more)["fast"] == [(1.0, 2 / 3)]
    assert report.profile(more)["slow"] == [(1.0, 1 / 3), (4.0, 2 / 3)]


def test_an_older_table_with_a_miss_written_as_its_budget_reads_as_not_reached(tmp_path):
    columns = ["preset", "task", "target", "method", "optimizer", "lr", "seed", "reached",
               "time_to_target_s", "steps_to_target", "final_metric", "trials_reached",
               "trials", "budget_steps", "status"]  # fmt: skip
    with open(tmp_path / report.TABLE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerow(["p", "copy", "test_loss <= 1", "m", "rmsprop", "0.01", "0", "False",
                    "2.19", "", "1.5", "0", "3", "400", "ok"])  # fmt: skip
    (row,) = report.read_table(tmp_path)
    assert row["time_to_target_s"] == math.inf and row["hidden"] is None
    assert report.summary_table([row]).rows[0][6] == "–"


def test_vs_n_marks_misses_at_the_budget_and_draws_them(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    cases = [(64, "a", 0, True, 1.0), (64, "a", 1, True, 2.0), (512, "a", 0, True, 5.0),
             (512, "a", 1, True, 7.0), (64, "b", 0, True, 3.0), (64, "b", 1, True, 5.0),
             (512, "b", 0, False, 20.5), (512, "b", 1, True, 9.0)]  # fmt: skip
    rows = [_row("p", n, m, s, r, t) for n, m, s, r, t in cases]
    points = report.vs_n_points(rows)
    assert points[("p", "a")] == [(64, 1.5, False), (512, 6.0, False)]
    assert points[("p", "b")] == [(64, 4.0, False), (512, 20.0, True)]  # at the budget
    # without a time budget a miss is drawn at the longest training time (the step budget)
    steps_only = [{**r, "time_budget_s": None} for r in rows]
    assert report.vs_n_points(steps_only)[("p", "b")][-1] == (512, 20.5, True)
    drawn = {}

    def keep(fig, path):
        drawn["fig"] = fig
        path.write_bytes(b"png")
        return path

    monkeypatch.setattr(report, "_save", keep)
    assert report.plot_vs_n(rows, tmp_path / report.VS_N) == tmp_path / report.VS_N
    ax = drawn["fig"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    marked = [c.get_offsets().tolist() for c in ax.collections if len(c.get_offsets())]
    assert marked == [[[512.0, 20.0]]]  # one arrow, method b's miss at the 20 s budget
    assert any("not reached" in t.get_text() for t in ax.get_legend().get_texts())
    lines = {ln.get_label(): (ln.get_color(), ln.get_marker()) for ln in ax.get_lines()}
    lines = {label: style for label, style in lines.items() if not label.startswith("_")}
    assert len(set(lines.values())) == len(lines) == 2  # a and b: each its colour and marker
    (budget,) = [t for t in ax.texts if "time budget" in t.get_text()]
    assert 64 < budget.get_position()[0] < 512  # between the sizes, not on a miss's arrow
    assert report.MISS not in {shape for _, shape in lines.values()}
    one_size = [r for r in rows if r["hidden"] == 64]
    assert report.plot_vs_n(one_size, tmp_path / "none.png") is None  # needs two N


def test_every_output_row_carries_hidden_and_the_report_shows_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scale"
    argv = ["tune", "copy-tiny", "--hidden", "8", "12", "--method", "expm", "--trials", "1",
            "--seeds", "0", "--time-budget", "60", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli(argv) == 0
    with open(out / "time_to_target.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["hidden"], r["method"]) for r in table] == [("8", "expm"), ("12", "expm")]
    assert all(r["time_budget_s"] == "60.0" for r in table)
    for name in ("trials.csv", "results.csv"):
        with open(out / name, newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["n"] for r in rows} == {"8", "12"}, name
        for r in rows:
            assert f"hidden={r['n']};" in r["options"], name
    assert (out / report.VS_N).stat().st_size > 0
    chosen = (out / "tune.json").read_text()
    assert "copy-tiny@8/expm" in chosen and "copy-tiny@12/expm" in chosen
    text = (out / "time_to_target.md").read_text()
    assert "| preset | N | method |" in text
    assert cli(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "fig7_tune_vs_n.png" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "fig7_tune_vs_n.png").is_file()


def test_help_text(capsys):
    with pytest.raises(SystemExit):
        cli(["tune", "--help"])
    text = capsys.readouterr().out
    for fragment in ("--hidden N [N ...]", "--time-budget SECONDS", "pdigits-scale",
                     "time_to_target_vs_n.png", "not reached"):  # fmt: skip
        assert fragment in text
