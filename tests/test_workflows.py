"""The GitHub workflows: actionlint passes, and everything they call exists here.

Every ``run:`` step is read as shell words: files under ``scripts/`` and ``.ci/`` must
exist, ``python -m MODULE`` must be importable, ``projunn-bench ...`` and ``asv ...``
must name real subcommands (projunn-bench's arguments must parse), ``pip install -e
".[extra]"`` must name extras of pyproject.toml, and ``workflow_run`` must follow a
workflow that exists.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # the test extra; collection never breaks without it

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "then", "else", "fi", "do", "done"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _run_commands(workflow: dict) -> list[list[str]]:
    """Each shell command line of every ``run:`` step, as words (continuations joined)."""
    out = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                words = shlex.split(line, comments=True)
                command: list[str] = []
                for word in [*words, ";"]:
                    if word in _OPERATORS or word.startswith(">"):
                        if command:
                            out.append(command)
                        command = []
                    else:
                        command.append(word)
    return out


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    beside = Path(sys.executable).parent / "actionlint"
    return found or (str(beside) if beside.exists() else None)


def test_there_are_workflows():
    names = {p.name for p in WORKFLOWS}
    assert {"pr.yml", "pr-comment.yml", "gpu.yml", "nightly.yml"} <= names


def test_actionlint_passes():
    exe = _actionlint()
    if exe is None:
        pytest.skip("actionlint is not installed (pip install -e '.[test]' brings it)")
    found = subprocess.run(
        [exe, "-no-color", *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stdout + found.stderr


def _subcommands(parser) -> set[str]:
    for action in parser._actions:
        if getattr(action, "choices", None) and hasattr(action, "add_parser"):
            return set(action.choices)
    return set()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_called_scripts_and_commands_exist(path, tmp_path, monkeypatch):
    from asv.commands import make_argparser

    from suite.cli import build_parser

    projunn = build_parser()
    asv_commands = set(make_argparser()[1].choices)
    extras = importlib.metadata.metadata("projunn-bench").get_all("Provides-Extra")
    monkeypatch.chdir(tmp_path)  # --out checks at parse time must not touch the tree
    commands = _run_commands(_load(path))
    assert commands, f"{path.name} runs nothing"
    for words in commands:
        for word in words:
            for ref in re.findall(r"(?:^|/|\s)((?:scripts|\.ci)/[\w./-]+)", word):
                assert (ROOT / ref).exists(), f"{path.name}: {ref} does not exist"
            extra = re.fullmatch(r"\.\[([\w,-]+)\]", word)
            if extra:
                unknown = set(extra.group(1).split(",")) - set(extras)
                assert not unknown, f"{path.name}: no extra(s) {unknown} (pyproject.toml)"
        program = Path(words[0]).name
        if program.startswith("python") and words[1:2] == ["-m"]:
            # pkgutil, not importlib.util.find_spec: finding "pip" through the import
            # system switches off setuptools' distutils shim for the whole process
            top = words[2].split(".")[0]
            assert top in {m.name for m in pkgutil.iter_modules()}, f"{path.name}: no {top}"
        elif program == "projunn-bench":
            assert words[1] in _subcommands(projunn), f"{path.name}: projunn-bench {words[1]}?"
            projunn.parse_args(words[1:])  # exits 2 on options the command does not take
        elif program == "asv":
            assert words[1] in asv_commands, f"{path.name}: asv has no command {words[1]}"


def test_workflow_run_follows_an_existing_workflow():
    names = {_load(p)["name"] for p in WORKFLOWS}
    for path in WORKFLOWS:
        # PyYAML reads the key "on" as True
        triggers = _load(path).get(True) or {}
        if isinstance(triggers, dict) and "workflow_run" in triggers:
            for name in triggers["workflow_run"]["workflows"]:
                assert name in names, f"{path.name} follows {name!r}, which does not exist"


def test_the_comment_marker_is_the_gate_s():
    from suite.gate.run import MARKER

    assert MARKER in (ROOT / ".github/workflows/pr-comment.yml").read_text()
