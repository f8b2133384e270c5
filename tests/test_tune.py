"""``projunn-bench tune``: the shared lr points, the claim of trials by several workers,
resuming, the chosen lr, the outputs and the usage errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from suite.cli import main as cli  # noqa: E402
from suite.tasks import tune  # noqa: E402

TINY = dict(trials=3, seeds=(0, 1))


def _campaign(labels=("expm", "landing"), **kw):
    return tune.Campaign(("copy-tiny",), tuple(labels), **{**TINY, **kw})


def _keys(studies):
    """(study, point, seed) of every COMPLETE trial, with repetitions."""
    return [
        (s.study_name, int(t.user_attrs["point"]), int(t.user_attrs["seed"]))
        for s in studies
        for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]


def test_every_method_gets_the_same_quasi_random_points():
    c = _campaign(labels=("expm", "projunn_t-k1", "geoopt_stiefel", "lstm"))
    plans = {label: c.plan("copy-tiny", label) for label in c.labels}
    rms = [[t["lr"] for t in plans[label]] for label in ("expm", "projunn_t-k1", "lstm")]
    assert rms[0] == rms[1] == rms[2]  # one family: the same learning rates
    assert c.family("copy-tiny", "geoopt_stiefel") == "adam"
    assert [t["u"] for t in plans["geoopt_stiefel"]] == [t["u"] for t in plans["expm"]]
    low, high = tune.LR_RANGES["rmsprop"]
    for t in plans["expm"]:
        assert low <= t["lr"] < high
        assert t["lr"] == pytest.approx(low * (high / low) ** t["u"])
    assert [(t["point"], t["seed"]) for t in plans["expm"]] == [
        (i, s) for i in range(3) for s in (0, 1)
    ]
    assert len(set(tune.lr_points(8))) == 8 and tune.lr_points(3) == tune.lr_points(8)[:3]
    assert tune.lr_points(3, sampler_seed=1) != tune.lr_points(3)


def test_two_workers_share_the_trials_none_lost_none_twice(tmp_path):
    campaign = _campaign(labels=("expm", "landing", "cayley", "lstm"), trials=3)
    result = tune.run_campaign(campaign, tmp_path, workers=2, progress=False)
    assert result.status == "complete" and result.exit_code == 0
    studies, _ = tune.prepare(campaign, tune.open_storage(tmp_path))
    keys = _keys(studies)
    planned = {
        (campaign.study_name(p, label), t["point"], t["seed"])
        for p, label in campaign.studies()
        for t in campaign.plan(p, label)
    }
    assert len(keys) == len(set(keys)) == len(planned) == 24  # none twice ...
    assert set(keys) == planned  # ... and none lost
    assert tune.counts(studies) == {"COMPLETE": 24}
    workers = {t.user_attrs["worker"] for s in studies for t in s.get_trials(deepcopy=False)}
    assert len(workers) == 2  # shared out between the two processes
    for name in ("time_to_target.csv", "time_to_target.md", "trials.csv", "results.csv",
                 "machine.json", "tune.json"):  # fmt: skip
        assert (tmp_path / name).is_file(), name


def test_a_stopped_campaign_goes_on_and_resume_reruns_abandoned_trials(tmp_path):
    campaign = _campaign(labels=("expm",), trials=2)
    storage = tune.open_storage(tmp_path)
    studies, _ = tune.prepare(campaign, storage)
    (study,) = studies
    claimed = tune._claim(storage, study)  # a worker that was killed while training
    assert claimed is not None
    _, stale = tune.prepare(campaign, storage)
    assert stale == 1
    tune.work(campaign, tmp_path)
    assert tune.counts(studies) == {"COMPLETE": 3, "RUNNING": 1}  # without --resume: kept
    _, stale = tune.prepare(campaign, storage, resume=True)
    assert stale == 1
    assert tune.work(campaign, tmp_path) == 1  # the abandoned trial, run again once
    assert tune.counts(studies) == {"COMPLETE": 4, "FAIL": 1}
    assert sorted(_keys(studies)) == [(study.study_name, i, s) for i in (0, 1) for s in (0, 1)]
    assert tune.work(campaign, tmp_path) == 0  # nothing left: finished trials are kept


def test_an_interrupted_trial_goes_back_in_the_queue(tmp_path, monkeypatch):
    campaign = _campaign(labels=("expm",), trials=1, seeds=(0,))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "run_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune.work(campaign, tmp_path)
    studies, stale = tune.prepare(campaign, tune.open_storage(tmp_path))
    assert stale == 0 and tune.counts(studies) == {"FAIL": 1, "WAITING": 1}
    monkeypatch.undo()
    assert tune.work(campaign, tmp_path) == 1


def test_a_campaign_planned_otherwise_is_refused(tmp_path):
    tune.prepare(_campaign(labels=("expm",)), tune.open_storage(tmp_path))
    with pytest.raises(tune.CampaignError, match="planned with points"):
        tune.prepare(_campaign(labels=("expm",), trials=4), tune.open_storage(tmp_path))
    code = _usage(["copy-tiny", "--method", "expm", "--trials", "4", "--out", str(tmp_path)])
    assert code == 2


def test_run_trial_stops_at_the_target_and_counts_misses_as_the_budget():
    preset = tune.tune_preset("copy-tiny")
    hit = tune.run_trial(preset, "expm", 3e-2, 0)
    steps = preset.config.steps
    assert hit.reached and hit.steps_to_target < steps and hit.final_metric <= 1.1
    assert hit.time_to_target_s == hit.train_time_s == hit.curve[-1][1]
    miss = tune.run_trial(preset, "expm", 1e-7, 0)  # too small to move
    assert not miss.reached and miss.steps_to_target is None and miss.steps_run == steps
    # a miss is never a time (issue 24); choosing the lr charges it the whole budget
    assert miss.time_to_target_s == math.inf and miss.stopped == "steps"
    assert miss.charged_s == pytest.approx(miss.train_time_s)
    assert [c[0] for c in miss.curve] == list(range(0, steps + 1, preset.config.log_every))


def test_choose_prefers_reaching_then_time_then_metric():
    def row(point, seed, reached, seconds, final):
        return dict(preset="p", method="m", point=point, seed=seed, reached=reached,
                    time_to_target_s=seconds, final_metric=final)  # fmt: skip

    assert tune.choose([row(0, 0, True, 9.0, 0.1), row(1, 0, False, 1.0, 0.5)]) == {("p", "m"): 0}
    assert tune.choose([row(0, 0, True, 9.0, 0.1), row(1, 0, True, 2.0, 0.5)]) == {("p", "m"): 1}
    misses = [row(0, 0, False, 1.0, 0.9), row(1, 0, False, 5.0, 0.4)]
    assert tune.choose(misses) == {("p", "m"): 1}  # lower loss
    assert tune.choose(misses, {"p": True}) == {("p", "m"): 0}  # higher accuracy


def test_the_cli_writes_the_table_and_the_report_draws_it(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "campaign"
    code = cli(["tune", "copy-tiny", "--method", "expm", "lstm", "--trials", "2", "--seeds",
                "0", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    with open(out / "time_to_target.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["expm", "lstm"]
    for r in rows:
        assert r["trials"] == "2" and r["optimizer"] == "RMSprop" and float(r["lr"]) > 0
        assert r["reached"] in ("True", "False") and r["hidden"] == "8"
        # a time only where the target was reached (issue 24: a miss is never a time)
        assert (r["time_to_target_s"] != "") == (r["reached"] == "True")
    assert (out / "performance_profile.png").stat().st_size > 0
    assert (out / "learning_curves.png").stat().st_size > 0
    report = tmp_path / "report"
    assert cli(["report", str(out), "--out", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "Time to target (campaign)" in text and "fig7_tune_profile.png" in text
    assert (report / "fig7_tune_wall.png").is_file()
    again = cli(["tune", "copy-tiny", "--method", "expm", "lstm", "--trials", "2", "--seeds",
                 "0", "--out", str(out), "--no-progress"])  # fmt: skip
    assert again == 0  # the same --out: nothing left to run, the outputs rewritten


def _usage(argv):
    with pytest.raises(SystemExit) as e:
        cli(["tune", *argv])
    return e.value.code


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["nosuch"], "unknown tune preset 'nosuch'"),
        (["copy-bogus"], "unknown tune preset 'copy-bogus'"),
        (["copy-tiny", "--method", "nope"], "unknown 'nope'"),
        (["copy-tiny", "--method", "soc"], "cannot run on copy-tiny"),
        (["copy-tiny", "--trials", "0"], "0 is not positive"),
        (["copy-tiny", "--lr-range", "rmsprop=1e-1:1e-3"], "is empty"),
        (["copy-tiny", "--lr-range", "rmsprop=-1:1"], "must be positive"),
        (["copy-tiny", "--lr-range", "lbfgs=1:2"], "unknown optimizer family"),
        (["copy-tiny", "--seeds", "0", "0"], "distinct"),
        (["copy-tiny", "--storage", "nosuchdb://x"], "cannot open"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(argv, fragment, tmp_path, capsys):
    assert _usage([*argv, "--out", str(tmp_path / "out")]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out" / "campaign.journal").exists()


def test_an_unusable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _usage(["copy-tiny", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert _usage(["copy-tiny", "--out", str(Path(blocker) / "below")]) == 2


def test_help_explains_the_rules(capsys):
    with pytest.raises(SystemExit):
        cli(["tune", "--help"])
    text = capsys.readouterr().out
    for fragment in ("copy-quick", "pdigits-quick", "QMCSampler", "rmsprop 0.0001..0.1",
                     "exit status", "--resume", "campaign.journal", "chosen lr"):  # fmt: skip
        assert fragment in text


def test_repeated_list_options_accumulate_in_every_command():
    import argparse

    from suite.cli import build_parser
    from suite.commands._args import Extend

    parser = build_parser()
    argv = ["tune", "copy-tiny", "--method", "projunn_t", "--method", "expm",
            "--seeds", "0", "--seeds", "3", "--rank", "1", "--rank", "4"]  # fmt: skip
    args = parser.parse_args(argv)
    assert (args.method, args.seeds, args.rank) == (["projunn_t", "expm"], [0, 3], [1, 4])
    args = parser.parse_args(["tune", "copy-tiny"])  # the defaults stay as they were
    assert (args.method, args.seeds, args.rank) == (["all"], [0, 1], [1])
    args = parser.parse_args(["run", "--methods", "projunn_t", "--methods", "svd"])
    assert args.methods == ["projunn_t", "svd"]
    with pytest.raises(SystemExit):  # each value is still checked
        parser.parse_args(["run", "--methods", "projunn_t", "--methods", "nosuch"])
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    lists = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.nargs in ("+", "*"):
                lists.append(f"{name} {action.option_strings[0]}")
                assert isinstance(action, Extend), f"{name} {action.option_strings[0]}"
    assert {"run --methods", "tune --method", "task --method", "gpu-check --sizes"} <= set(lists)
