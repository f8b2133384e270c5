"""The user's own method: ``suite.register_method``, plug-ins from entry points and
``PROJUNN_BENCH_PLUGINS`` in every front end, the refusals, and the optimizer that ran
in rows and tables."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import ROOT

import suite
from suite import plugins
from suite.measure import methods
from suite.measure.methods import METHODS, UPDATES, Method, RegistrationError, register_method

EXAMPLE = ROOT / "examples" / "qr_retraction.py"


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """The registry, the loaded plug-ins and the imported modules as they were, after
    the test; ``tmp_path`` on ``sys.path`` for the test's plug-in modules."""
    saved = plugins._snapshot()
    loaded = dict(plugins._LOADED)
    modules = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    plugins._restore(saved)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        if name.startswith("plug_") or name in ("qr_retraction", "qr_plugin"):
            del sys.modules[name]


def _module(folder: Path, name: str, body: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


_LAYER = """
import torch
from suite import Method, register_method

class Layer(torch.nn.Module):
    def __init__(self, n, *, dtype=torch.float32, device="cpu", scale=1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(scale * torch.eye(n, dtype=dtype, device=device))
    def forward(self, x):
        return x @ self.weight.mT
    def matrix(self):
        return self.weight
    def optimizer(self, name="sgd", lr=1e-3, **kw):
        return torch.optim.SGD(self.parameters(), lr=0.0)

def build(n, *, dtype, device):
    return Layer(n, dtype=dtype, device=device)
"""


def _method(name: str, build=None, **fields) -> Method:
    ns: dict = {"__name__": "plug_exec"}
    exec(textwrap.dedent(_LAYER), ns)  # a layer defined outside this module
    return Method(name, "a test method", build or ns["build"], **fields)


# ---------------------------------------------------------------------- register_method


def test_public_api_is_importable_from_suite():
    from suite import Method as M
    from suite import register_method as r

    assert M is Method and r is register_method
    assert {"Method", "register_method", "load_plugins"} <= set(suite.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        suite.nope  # noqa: B018


def test_registered_method_is_seen_by_every_view(registry):
    from suite.measure.cases import GRIDS, Case, iter_cases, parse_method_label

    m = _method("plug_eye", update=lambda A, G, lr: A, optimizers=("sgd",), train_optimizer="sgd")
    register_method(m)
    assert METHODS["plug_eye"] is m and "plug_eye" in UPDATES
    assert methods.method("plug_eye") is m
    assert methods.plugin_methods() == {"plug_eye": m.build.__module__}
    assert parse_method_label("plug_eye") == ("plug_eye", None)
    case = Case("train_step", "plug_eye", 8)
    assert case.skip_reason() is None and "optimizer=sgd" in case.identity()["options"]
    grid = GRIDS["tiny"]
    assert any(c.method == "plug_eye" for c in iter_cases(grid, workloads=["update"]))


def test_registering_again_from_the_same_module_replaces(registry):
    first = register_method(_method("plug_twice"))
    second = register_method(_method("plug_twice", cubic=True), origin=first.build.__module__)
    assert METHODS["plug_twice"] is second and METHODS["plug_twice"].cubic


@pytest.mark.parametrize(
    "name, fields, match",
    [
        ("expm", {}, "'expm' is a built-in method's"),
        ("projunn_t", {}, "'projunn_t' is a built-in method's"),
        ("lstm", {}, "reserved"),
        ("all", {}, "reserved"),
        ("qr-sgd", {}, "lower case letters"),
        ("QR", {}, "lower case letters"),
        ("plug_opt", {"defaults": {"tolerance": 1}}, "option 'tolerance' in defaults"),
        ("plug_val", {"defaults": {"eps": 5}}, r"defaults: option eps must be a number"),
        ("plug_dt", {"dtypes": ("float16",)}, "dtypes must be some of"),
    ],
)
def test_bad_methods_are_refused(registry, name, fields, match):
    before = dict(METHODS)
    with pytest.raises(RegistrationError, match=match):
        register_method(_method(name, **fields))
    assert dict(METHODS) == before


def test_a_name_another_module_registered_is_refused(registry):
    register_method(_method("plug_mine"), origin="plug_a")
    with pytest.raises(RegistrationError, match="already registered by plug_a; plug_b cannot"):
        register_method(_method("plug_mine"), origin="plug_b")
    assert methods.plugin_methods()["plug_mine"] == "plug_a"


def test_not_a_method_is_refused():
    with pytest.raises(RegistrationError, match="takes a suite.Method, got dict"):
        register_method({"name": "x"})
    with pytest.raises(RegistrationError, match="optimizers must be some of"):
        Method("plug_x", "", None, optimizers=("lbfgs",))


def test_a_layer_breaking_the_protocol_is_refused(registry):
    def scaled(n, *, dtype, device):  # 2 I is not unitary
        ns: dict = {}
        exec(textwrap.dedent(_LAYER), ns)
        return ns["Layer"](n, dtype=dtype, device=device, scale=2.0)

    with pytest.raises(RegistrationError, match="plug_big.*after build is not unitary"):
        register_method(_method("plug_big", build=scaled))

    def crashing(n, *, dtype, device):
        raise RuntimeError("no layer today")

    with pytest.raises(RegistrationError, match="plug_crash.*RuntimeError: no layer today"):
        register_method(_method("plug_crash", build=crashing))
    assert "plug_big" not in METHODS and "plug_crash" not in METHODS


def test_a_plugins_missing_library_is_a_skip_reason_with_its_install_line(registry):
    def needs_it(n, *, dtype, device):
        raise ImportError("plug_nolib_xyz")  # not built where the library is missing

    register_method(_method("plug_lib", build=needs_it, requires="plug_nolib_xyz"))
    from suite.measure.cases import Case

    why = "plug_nolib_xyz is not installed: pip install plug_nolib_xyz"
    assert METHODS["plug_lib"].unavailable() == why
    assert why in Case("train_step", "plug_lib", 8).skip_reason()
    assert _method("plug_lib2", requires="torch").unavailable() is None


def test_registration_leaves_the_random_state_alone(registry):
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    register_method(_method("plug_rng"))
    assert torch.equal(torch.rand(2), expected)


# ------------------------------------------------------------------------- loading


def test_a_plugin_module_loads_once(registry):
    name = _module(
        registry,
        "plug_ok",
        _LAYER + "\nCALLS = []\nCALLS.append(register_method(Method('plug_ok_m', 'x', build)))\n",
    )
    found = plugins.load_plugins(environ={plugins.ENV: f" {name} ,"})
    assert [p.spec for p in found] == [name] and "plug_ok_m" in METHODS
    assert found[0].source == "PROJUNN_BENCH_PLUGINS"
    plugins.load_plugins(environ={plugins.ENV: name})  # idempotent
    assert len(sys.modules[name].CALLS) == 1 and len(plugins.loaded()) == 1
    assert plugins.worker_specs() == ([name], [], ["plug_ok_m"])


def test_module_function_and_file_path_specs(registry):
    _module(
        registry,
        "plug_fn",
        _LAYER + "\ndef register():\n    register_method(Method('plug_fn_m', 'x', build))\n",
    )
    path = registry / "sub" / "plug_file.py"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(_LAYER) + "\nregister_method(Method('plug_file_m', 'x', build))\n"
    )
    plugins.load_plugins(environ={plugins.ENV: f"plug_fn:register,{path}"})
    assert {"plug_fn_m", "plug_file_m"} <= set(METHODS)
    assert METHODS["plug_file_m"].build.__module__ == "plug_file"
    assert plugins.worker_specs()[0] == ["plug_fn:register", str(path)]


@pytest.mark.parametrize(
    "body, spec, match",
    [
        (
            "raise ImportError('needs libfoo')",
            "plug_bad",
            "'plug_bad' .* failed in import: ImportError: needs libfoo",
        ),
        ("x = 1", "plug_none", "'plug_none' .* registered no method"),
        ("x = 1", "plug_nofn:go", "plug_nofn has no function 'go'"),
        ("def go():\n    raise KeyError('k')", "plug_fnerr:go", r"failed in go\(\): KeyError"),
        (
            _LAYER + "\nregister_method(Method('expm', 'x', build))",
            "plug_clash",
            "failed to register a method: method name 'expm' is a built-in",
        ),
        ("", "plug_missing_module", "No module named 'plug_missing_module' .*PYTHONPATH=DIR"),
        ("", "not a module!", "not a module name"),
        ("", "/no/such/plug.py", "no such file"),
    ],
)
def test_a_plugin_that_fails_names_itself(registry, body, spec, match):
    module = spec.partition(":")[0]
    if body and module.isidentifier():
        _module(registry, module, body)
    with pytest.raises(plugins.PluginError, match=match) as e:
        plugins.load_plugins(environ={plugins.ENV: spec})
    assert "from PROJUNN_BENCH_PLUGINS" in str(e.value)
    assert plugins.loaded() == []


def test_a_worker_loads_the_parents_plugins_or_exits_naming_what_is_missing(registry, capsys):
    _module(registry, "plug_wk", _LAYER + "\nregister_method(Method('plug_wk_m', 'x', build))\n")
    plugins.load_in_worker((["plug_wk"], [], ["plug_wk_m"]))
    assert "plug_wk_m" in METHODS
    with pytest.raises(SystemExit) as e:
        plugins.load_in_worker(([], [], ["plug_wk_m", "plug_in_main"]))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "worker: error: method(s) plug_in_main of the parent process" in err
    with pytest.raises(SystemExit):
        plugins.load_in_worker((["plug_absent"], [], []))
    assert "'plug_absent' (from the parent process) failed in import" in capsys.readouterr().err


def test_a_failing_plugin_takes_back_what_it_registered(registry):
    body = _LAYER + textwrap.dedent(
        """
        register_method(Method('plug_half_a', 'x', build))
        register_method(Method('plug_half_b', 'x', build, defaults={'nope': 1}))
        """
    )
    _module(registry, "plug_half", body)
    with pytest.raises(plugins.PluginError, match="plug_half_b.*'nope'"):
        plugins.load_plugins(["plug_half"])
    assert "plug_half_a" not in METHODS and "plug_half" not in sys.modules


def test_two_plugins_with_one_name_the_second_is_refused(registry):
    for mod in ("plug_one", "plug_two"):
        _module(registry, mod, _LAYER + "\nregister_method(Method('plug_same', 'x', build))\n")
    with pytest.raises(plugins.PluginError, match="'plug_two'.*already registered by plug_one"):
        plugins.load_plugins(environ={plugins.ENV: "plug_one,plug_two"})
    assert methods.plugin_methods() == {"plug_same": "plug_one"}


def _dist_info(folder: Path, package: str, entry: str) -> None:
    """A minimal installed-package record with an entry point (what pip writes)."""
    info = folder / f"{package.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{entry}\n")


def test_entry_points_are_discovered_and_loaded(registry):
    _module(registry, "plug_ep", _LAYER + "\nregister_method(Method('plug_ep_m', 'x', build))\n")
    _dist_info(registry, "plug-ep-pkg", "ep = plug_ep")
    found = plugins.discover(environ={plugins.ENV: "plug_other"})
    assert [p.spec for p in found] == ["plug_ep", "plug_other"]
    assert "entry point projunn_bench.methods: ep = plug_ep, package plug-ep-pkg 0.1" in (
        found[0].source
    )
    plugins.load_plugins(environ={})
    assert "plug_ep_m" in METHODS


def test_the_example_registers_a_working_method(registry):
    plugins.load_plugins([str(EXAMPLE)])
    m = METHODS["qr_sgd"]
    assert m.optimizer_for("rmsprop") == "sgd" and m.optimizer_label("rmsprop") == "SGD"
    layer = m(16, dtype=torch.complex64, init="henaff")
    opt = layer.optimizer("sgd", lr=0.1)
    layer(torch.randn(4, 16, dtype=torch.complex64)).abs().sum().backward()
    before = layer.matrix().detach().clone()
    opt.step()
    assert not torch.allclose(before, layer.matrix())
    from projunn_core import unitarity_error

    assert unitarity_error(layer.matrix()) < 1e-5
    A = METHODS["qr_sgd"](8, dtype=torch.float64).matrix().detach().clone()
    UPDATES["qr_sgd"](A, torch.randn(8, 8, dtype=torch.float64), 0.1)
    assert unitarity_error(A) < 1e-12
    with pytest.raises(ValueError, match="only optimizer 'sgd'"):
        layer.optimizer("adam", lr=0.1)


# -------------------------------------------------------------- the optimizer that ran


def test_task_rows_say_the_optimizer_that_ran(registry):
    from suite.tasks import TASKS
    from suite.tasks.base import optimizer_label
    from suite.tasks.train import Run

    plugins.load_plugins([str(EXAMPLE)])
    task = TASKS["copy"]
    config = task.preset("quick")
    assert config.optimizer == "rmsprop"
    options = {
        m: dict(
            kv.split("=", 1) for kv in Run(task, m, None, config).identity()["options"].split(";")
        )
        for m in ("qr_sgd", "expm", "geoopt_stiefel", "lstm")
    }
    assert options["qr_sgd"]["optimizer"] == "sgd" and options["expm"]["optimizer"] == "rmsprop"
    assert options["geoopt_stiefel"]["optimizer"] == "adam"
    assert options["lstm"]["optimizer"] == "rmsprop"
    assert optimizer_label("geoopt_stiefel", config) == "Riemannian Adam (geoopt)"
    assert optimizer_label("qr_sgd", config) == "SGD"
    register_method(_method("plug_sgd_only", optimizers=("sgd",)))  # no substitute
    reason = Run(task, "plug_sgd_only", None, config).skip_reason()
    assert "plug_sgd_only has no rmsprop optimizer" in reason and "--optimizer" in reason


# ------------------------------------------------------------ the README and front ends


def test_the_readme_example_is_the_tested_file():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- examples/qr_retraction.py -->\n```python\n(.*?)```", text, re.S)
    assert found, "the README's plug-in example (marked <!-- examples/qr_retraction.py -->)"
    assert found.group(1) == EXAMPLE.read_text(encoding="utf-8")


def _readme_commands() -> dict[str, list[str]]:
    """The README's plug-in commands: the variables it exports, ``run`` and ``tune``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- examples/qr_retraction.py -->") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#")[0].split() for line in block.splitlines()]
    out = {"export": next(words[1:] for words in lines if words[:1] == ["export"])}
    for words in lines:
        if words[:1] == ["projunn-bench"] and words[1] in ("run", "tune"):
            out[words[1]] = words[2:]
    return out


def _cli(args, env_extra, cwd=ROOT, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in (plugins.ENV, "PYTHONPATH")}
    env.update(env_extra, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run_and_tune(tmp_path: Path, env: dict, cwd: Path) -> None:
    """The README's run and tune commands, made small (later options override), with the
    plug-in given by ``env``; checks the plug-in's rows beside projUNN's."""
    readme = _readme_commands()
    small = ["--sizes", "16", "--out", str(tmp_path / "run"), "--no-progress", "--no-report"]
    proc = _cli(["run", *readme["run"], *small], env, cwd)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "run").iterdir()
    rows = _rows(folder / "results.csv")
    ours = {(r["workload"], r["method"]) for r in rows if r["status"] == "ok"}
    assert {("update", "qr_sgd"), ("train_step", "qr_sgd"), ("train_step", "projunn_t")} <= ours
    train = [r for r in rows if r["method"] == "qr_sgd" and r["workload"] == "train_step"]
    assert train and all("optimizer=sgd" in r["options"] for r in train)
    machine = json.loads((folder / "machine.json").read_text())
    assert machine["plugin_methods"]["qr_sgd"] in ("qr_retraction", "qr_plugin")
    tune = [*readme["tune"], "--trials", "1", "--out", str(tmp_path / "tune"), "--no-progress"]
    tune[0] = "copy-tiny"  # the README's preset, at test size
    proc = _cli(["tune", *tune], env, cwd)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    table = _rows(tmp_path / "tune" / "time_to_target.csv")
    by_method = {r["method"]: r for r in table}
    assert by_method["qr_sgd"]["optimizer"] == "SGD"
    assert by_method["projunn_t-k1"]["optimizer"] == "RMSprop"
    trials = _rows(tmp_path / "tune" / "trials.csv")
    assert any(r["method"] == "qr_sgd" and "optimizer=sgd" in r["options"] for r in trials)
    assert "--workers" in tune  # the README's workers: spawned processes loaded it too


def test_plugin_from_the_environment_runs_and_tunes(tmp_path):
    env = dict(kv.split("=", 1) for kv in _readme_commands()["export"])
    assert env == {"PYTHONPATH": "examples", plugins.ENV: "qr_retraction"}
    _run_and_tune(tmp_path, env, ROOT)


def test_plugin_installed_as_a_package_runs_and_tunes(tmp_path):
    """A throwaway package with the entry point, really built and installed by pip (into
    a folder of its own, not the shared environment)."""
    source, site = tmp_path / "pkg", tmp_path / "site"
    source.mkdir()
    (source / "qr_plugin.py").write_text(EXAMPLE.read_text())
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "qr-plugin"
            version = "0.1"

            [tool.setuptools]
            py-modules = ["qr_plugin"]

            [project.entry-points."projunn_bench.methods"]
            qr_sgd = "qr_plugin"
            """
        )
    )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    pip += ["--no-index", "--target", str(site), str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    assert (site / "qr_plugin-0.1.dist-info" / "entry_points.txt").is_file()
    _run_and_tune(tmp_path, {"PYTHONPATH": str(site)}, tmp_path)


_BROKEN = (
    "raise RuntimeError('broken on purpose')",
    "failed in import: RuntimeError: broken on purpose",
)
_CLASHING = (
    "from suite import Method, register_method\nimport baselines\n"
    "register_method(Method('expm', 'mine', baselines.ExpmUnitary))",
    "failed to register a method: method name 'expm' is a built-in",
)


@pytest.mark.parametrize(
    "command, body, match",
    [
        *((command, *_BROKEN) for command in ("run", "tune", "task", "profile")),
        *((command, *_CLASHING) for command in ("run", "tune")),
    ],
)
def test_a_bad_plugin_stops_every_front_end_before_results(tmp_path, command, body, match):
    (tmp_path / "plug_cli.py").write_text(body + "\n")
    out = tmp_path / "out"
    args = {
        "run": ["run", "--grid", "tiny", "--out", str(out)],
        "tune": ["tune", "copy-tiny", "--out", str(out)],
        "task": ["task", "copy", "--method", "expm", "--out", str(out)],
        "profile": ["profile", "--method", "expm", "--out", str(out)],
    }[command]
    proc = _cli(args, {"PYTHONPATH": str(tmp_path), plugins.ENV: "plug_cli"}, tmp_path, 120)
    assert proc.returncode == 2
    assert "projunn-bench: error: plug-in 'plug_cli' (from PROJUNN_BENCH_PLUGINS)" in proc.stderr
    assert re.search(match, proc.stderr), proc.stderr
    assert not out.exists()


def test_task_profile_asv_and_pytest_benchmark_see_the_plugin(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "examples"), plugins.ENV: "qr_retraction"}
    task = ["task", "copy", "--method", "qr_sgd", "expm", "--steps", "4", "--test-size", "20"]
    task += ["--out", str(tmp_path / "task"), "--no-progress", "--no-figure"]
    proc = _cli(task, env)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\| qr_sgd \| SGD \| 4 \|", proc.stdout), proc.stdout
    (folder,) = (tmp_path / "task").iterdir()
    opts = {r["method"]: r["options"] for r in _rows(folder / "results.csv") if r["step"]}
    assert "optimizer=sgd" in opts["qr_sgd"] and "optimizer=rmsprop" in opts["expm"]
    profile = ["profile", "--method", "qr_sgd", "--n", "16", "--steps", "2", "--warmup", "1"]
    proc = _cli([*profile, "--out", str(tmp_path / "profile")], env)
    assert proc.returncode == 0, proc.stderr
    assert "qr_sgd" in proc.stdout
    code = (
        "import suite.benchmarks as b; "
        "print(sorted({m for m in b._methods('train_step') if m.startswith('qr')}))"
    )
    env_all = {**os.environ, **env, "PROJUNN_BENCH_GRID": "tiny"}
    got = subprocess.run([sys.executable, "-c", code], env=env_all, capture_output=True, text=True)
    assert got.stdout.strip() == "['qr_sgd']", got.stderr
    tests = [sys.executable, "-m", "pytest", "-q", "--benchmark-disable", "-p", "no:cacheprovider"]
    tests += [str(ROOT / "tests" / "test_benchmarks.py"), "-k", "qr_sgd and n16"]
    got = subprocess.run(tests, cwd=ROOT, env=env_all, capture_output=True, text=True)
    assert got.returncode == 0 and re.search(r"\b[1-9]\d* passed", got.stdout), got.stdout


def test_asv_runs_the_plugin_given_as_a_file(tmp_path):
    """A real ``asv run`` (which drops PYTHONPATH, hence the file's path) times the plug-in."""
    from helpers import asv_config, run_asv

    path = asv_config(tmp_path)
    env = {"PROJUNN_BENCH_GRID": "tiny", "OMP_NUM_THREADS": "1", plugins.ENV: str(EXAMPLE)}
    found = run_asv("--config", str(path), "machine", "--yes", "--machine", "plug", **env)
    assert found.returncode == 0, found.stderr[-3000:]
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    found = run_asv(
        "--config", str(path), "run", "--quick", "--python=same", f"--set-commit-hash={sha}",
        "--bench", r"^benchmarks\.Update\.time_update", "--machine", "plug", **env,
    )  # fmt: skip
    assert found.returncode == 0, (found.stdout + found.stderr)[-3000:]
    (result,) = (tmp_path / "results" / "plug").glob(f"{sha[:8]}*.json")
    values, params = json.loads(result.read_text())["results"]["benchmarks.Update.time_update"][:2]
    timed = dict(zip(itertools.product(*params), values, strict=True))  # asv's order
    ours = [v for key, v in timed.items() if key[0] == "'qr_sgd'"]
    assert ours and all(v > 0 for v in ours), timed  # timed in every dtype, none skipped
